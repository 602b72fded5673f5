-- hyblua/stats.lua — the statistics behind paper_grid's findings (hb.stats; docs/reproduction.md says
-- what each number means). Pure Lua, deterministic: every random resample comes from a seeded
-- splitmix64 generator, so a table computed twice from the same records is the same table.
--
--   S.mean(xs), S.sd(xs) (n − 1), S.lgamma(x), S.betainc(x, a, b) (regularised), S.t_cdf(t, df),
--   S.t_quantile(p, df)                      Student's t (real df > 0), to ~1e-12
--   S.ci(xs [, level = 0.95]) → {n, mean, sd, half, lo, hi}   t-interval; n = 1: half/lo/hi nil
--   S.welch(xs, ys [, level]) → {diff, half, lo, hi, df}      mean(xs) − mean(ys), Welch–Satterthwaite df
--   S.ranks(xs)       average ranks (ties share the mean of their positions), 1-based
--   S.pearson(x, y), S.spearman(x, y)        nil when either side is constant (undefined)
--   S.quantile(sorted, p)                    linear interpolation between order statistics (numpy's default)
--   S.rng(seed) → r with r:int(n) ∈ [1, n]   splitmix64
--   S.bootstrap(groups, stat, {B = 2000, seed = 0, level = 0.95}) → {estimate, lo, hi, valid, B}
--       groups: a list of lists of samples (one list per cell); each replicate redraws every group with
--       replacement at its own size (a stratified bootstrap: the design is kept, the seeds are redrawn)
--       and calls stat(means) with the per-group means; stat may return nil (undefined), such replicates
--       are left out (`valid` counts the others). estimate = stat(the observed means); lo/hi are the
--       percentile interval. Without a group of ≥ 2 samples there is nothing to redraw: lo/hi are nil.
--   S.findings(records, opts) → the paper's four findings over grid records (see below)
local S = {}

local function check_list(xs, what, min)
  if type(xs) ~= "table" then error(what .. ": a list of numbers expected", 3) end
  for i, x in ipairs(xs) do
    if type(x) ~= "number" or x ~= x then error(string.format("%s: element %d is not a number", what, i), 3) end
  end
  if #xs < (min or 1) then error(string.format("%s: needs at least %d values, got %d", what, min or 1, #xs), 3) end
end

function S.mean(xs)
  check_list(xs, "stats.mean")
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

function S.sd(xs)
  check_list(xs, "stats.sd", 2)
  local m, q = S.mean(xs), 0
  for _, x in ipairs(xs) do q = q + (x - m) ^ 2 end
  return math.sqrt(q / (#xs - 1))
end

-- log Γ(x), x > 0: Lanczos (g = 7, 9 coefficients; ~1e-15 relative)
local LC = { 0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7 }
function S.lgamma(x)
  if x < 0.5 then return math.log(math.pi / math.abs(math.sin(math.pi * x))) - S.lgamma(1 - x) end
  x = x - 1
  local a, t = LC[1], x + 7.5
  for i = 1, 8 do a = a + LC[i + 1] / (x + i) end
  return 0.5 * math.log(2 * math.pi) + (x + 0.5) * math.log(t) - t + math.log(a)
end

-- continued fraction of the incomplete beta function (modified Lentz)
local function betacf(x, a, b)
  local tiny = 1e-300
  local qab, qap, qam = a + b, a + 1, a - 1
  local c, d = 1, 1 - qab * x / qap
  if math.abs(d) < tiny then d = tiny end
  d = 1 / d
  local h = d
  for m = 1, 10000 do
    local m2 = 2 * m
    local aa = m * (b - m) * x / ((qam + m2) * (a + m2))
    d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
    c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
    d = 1 / d
    h = h * d * c
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
    d = 1 + aa * d; if math.abs(d) < tiny then d = tiny end
    c = 1 + aa / c; if math.abs(c) < tiny then c = tiny end
    d = 1 / d
    local del = d * c
    h = h * del
    if math.abs(del - 1) < 1e-15 then break end
  end
  return h
end

function S.betainc(x, a, b)
  if x <= 0 then return 0 elseif x >= 1 then return 1 end
  local lbt = S.lgamma(a + b) - S.lgamma(a) - S.lgamma(b) + a * math.log(x) + b * math.log(1 - x)
  if x < (a + 1) / (a + b + 2) then return math.exp(lbt) * betacf(x, a, b) / a end
  return 1 - math.exp(lbt) * betacf(1 - x, b, a) / b
end

function S.t_cdf(t, df)
  if not (df > 0) then error("stats.t_cdf: df must be > 0", 2) end
  local tail = 0.5 * S.betainc(df / (df + t * t), df / 2, 0.5)
  return t >= 0 and 1 - tail or tail
end

function S.t_quantile(p, df)
  if not (p > 0 and p < 1) then error("stats.t_quantile: p must be in (0, 1)", 2) end
  if not (df > 0) then error("stats.t_quantile: df must be > 0", 2) end
  if p < 0.5 then return -S.t_quantile(1 - p, df) end
  if p == 0.5 then return 0 end
  local lo, hi = 0, 1
  while S.t_cdf(hi, df) < p do lo, hi = hi, hi * 2 end
  for _ = 1, 200 do
    local mid = 0.5 * (lo + hi)
    if S.t_cdf(mid, df) < p then lo = mid else hi = mid end
    if hi - lo <= 1e-13 * hi then break end
  end
  return 0.5 * (lo + hi)
end

function S.ci(xs, level)
  check_list(xs, "stats.ci")
  level = level or 0.95
  local n, m = #xs, S.mean(xs)
  if n < 2 then return { n = 1, mean = m } end
  local sd = S.sd(xs)
  local half = S.t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
  return { n = n, mean = m, sd = sd, half = half, lo = m - half, hi = m + half }
end

function S.welch(xs, ys, level)
  check_list(xs, "stats.welch (first sample)", 2)
  check_list(ys, "stats.welch (second sample)", 2)
  level = level or 0.95
  local vx, vy = S.sd(xs) ^ 2 / #xs, S.sd(ys) ^ 2 / #ys
  local diff = S.mean(xs) - S.mean(ys)
  local se2 = vx + vy
  if se2 == 0 then return { diff = diff, half = 0, lo = diff, hi = diff, df = math.huge } end
  local df = se2 ^ 2 / (vx ^ 2 / (#xs - 1) + vy ^ 2 / (#ys - 1))
  local half = S.t_quantile(0.5 + level / 2, df) * math.sqrt(se2)
  return { diff = diff, half = half, lo = diff - half, hi = diff + half, df = df }
end

function S.ranks(xs)
  check_list(xs, "stats.ranks")
  local idx = {}
  for i = 1, #xs do idx[i] = i end
  table.sort(idx, function(a, b) if xs[a] ~= xs[b] then return xs[a] < xs[b] end return a < b end)
  local r, i = {}, 1
  while i <= #idx do
    local j = i
    while j < #idx and xs[idx[j + 1]] == xs[idx[i]] do j = j + 1 end
    for k = i, j do r[idx[k]] = (i + j) / 2 end
    i = j + 1
  end
  return r
end

function S.pearson(x, y)
  check_list(x, "stats.pearson")
  check_list(y, "stats.pearson")
  if #x ~= #y then error(string.format("stats.pearson: %d x values but %d y values", #x, #y), 2) end
  local mx, my = S.mean(x), S.mean(y)
  local sxy, sxx, syy = 0, 0, 0
  for i = 1, #x do
    local a, b = x[i] - mx, y[i] - my
    sxy, sxx, syy = sxy + a * b, sxx + a * a, syy + b * b
  end
  if sxx == 0 or syy == 0 then return nil end
  return sxy / math.sqrt(sxx * syy)
end

function S.spearman(x, y)
  if type(x) ~= "table" or type(y) ~= "table" or #x ~= #y then error("stats.spearman: two lists of the same length expected", 2) end
  return S.pearson(S.ranks(x), S.ranks(y))
end

function S.quantile(sorted, p)
  local n = #sorted
  if n == 0 then return nil end
  local h = (n - 1) * p + 1
  local lo = math.floor(h)
  if lo >= n then return sorted[n] end
  return sorted[lo] + (h - lo) * (sorted[lo + 1] - sorted[lo])
end

-- splitmix64 (Steele, Lea, Flood 2014); Lua integers wrap modulo 2^64 as the algorithm needs
function S.rng(seed)
  local st = math.tointeger(seed) or error("stats.rng: integer seed expected", 2)
  local r = {}
  function r.next()
    st = st + 0x9E3779B97F4A7C15
    local z = st
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    return z ~ (z >> 31)
  end
  -- uniform integer in [1, n]: the top 53 bits as a fraction in [0, 1), times n
  function r:int(n) return math.floor(((r.next() >> 11) * 2.0 ^ -53) * n) + 1 end
  return r
end

function S.bootstrap(groups, stat, opts)
  opts = opts or {}
  local B, level = opts.B or 2000, opts.level or 0.95
  local means, can = {}, false
  for i, g in ipairs(groups) do
    check_list(g, "stats.bootstrap: group " .. i)
    means[i] = S.mean(g)
    if #g >= 2 then can = true end
  end
  local res = { estimate = stat(means), B = B }
  if not can then res.valid = 0; return res end
  local r = S.rng(opts.seed or 0)
  local vals = {}
  for _ = 1, B do
    local m = {}
    for i, g in ipairs(groups) do
      local s = 0
      for _ = 1, #g do s = s + g[r:int(#g)] end
      m[i] = s / #g
    end
    local v = stat(m)
    if v ~= nil and v == v then vals[#vals + 1] = v end
  end
  table.sort(vals)
  res.valid = #vals
  if #vals > 0 then
    res.lo, res.hi = S.quantile(vals, (1 - level) / 2), S.quantile(vals, 1 - (1 - level) / 2)
  end
  return res
end

-- ---- the paper's findings over grid records ----------------------------------------------------------
-- records: paper_grid's per-seed cell records {name, mixer, ratio, attn_share, layers, seed, lm_val_bpb,
-- mqar_acc, same_as}. A record with same_as is a copy of another cell (the same layer stack) and is left
-- out; the Transformer is the record with mixer "transformer".
-- opts: B (bootstrap replicates, 2000), seed (0), level (0.95), lm (metric, "lm_val_bpb"), recall
-- ("mqar_acc"), flat_below (0.5: the ratio effect counts as flat when its share of the between-mixer
-- spread is below this with the interval), recover_margin (0.05: a hybrid recovers the Transformer's
-- recall when the difference's lower bound is ≥ −margin).
-- Returns {cells = {...}, f1_lm, f1_recall, f2, f3 = {per mixer}, f4 = {per mixer}, seeds_min}.
local function cells_of(records, metric)
  local cells, order = {}, {}
  for _, r in ipairs(records) do
    local v = r[metric]
    if not r.same_as and type(v) == "number" and v == v then
      local key = r.mixer .. "|" .. tostring(r.layers or r.ratio)
      local c = cells[key]
      if not c then
        c = { key = key, mixer = r.mixer, ratio = r.ratio, share = r.attn_share, name = r.name, vals = {}, by_seed = {} }
        cells[key] = c
        order[#order + 1] = c
      end
      c.vals[#c.vals + 1] = v
      c.by_seed[r.seed or 0] = v
    end
  end
  return order
end

local function mixers_in(cells)
  local seen, list = {}, {}
  for _, c in ipairs(cells) do
    if c.mixer ~= "transformer" and not seen[c.mixer] then seen[c.mixer] = true; list[#list + 1] = c.mixer end
  end
  return list
end

-- F1: the best mixer standalone vs the best hybrid (each mixer's hybrid value: its best hybrid cell)
-- Per seed, values within `tie` of each other are ties: the top changes only when no mixer within `tie` of
-- the best standalone value is within `tie` of the best hybrid value, and the order changes only when some
-- pair is ordered one way beyond `tie` standalone and the other way beyond `tie` in the hybrids (two
-- mixers at a ceiling, 1.000 vs 0.9997, are not a rank change).
local function rank_change(cells, better, boot, tie)
  tie = tie or 0
  local mixers = mixers_in(cells)
  local pure, hyb = {}, {}
  for i, c in ipairs(cells) do
    if c.mixer ~= "transformer" then
      if c.ratio == 0 then pure[c.mixer] = i else
        hyb[c.mixer] = hyb[c.mixer] or {}
        table.insert(hyb[c.mixer], i)
      end
    end
  end
  local ms = {}
  for _, m in ipairs(mixers) do if pure[m] and hyb[m] then ms[#ms + 1] = m end end
  if #ms < 2 then return nil end
  local function best(a, b) if better == "lower" then return math.min(a, b) end return math.max(a, b) end
  local function order_of(vals) -- mixers sorted best first
    local o = {}
    for i = 1, #ms do o[i] = i end
    table.sort(o, function(a, b)
      if vals[a] ~= vals[b] then if better == "lower" then return vals[a] < vals[b] end return vals[a] > vals[b] end
      return a < b
    end)
    local names = {}
    for i, k in ipairs(o) do names[i] = ms[k] end
    return names
  end
  local function values(get) -- get(cell index) → value; → pure list, hybrid list (over ms)
    local p, h = {}, {}
    for i, m in ipairs(ms) do
      p[i] = get(pure[m])
      local b
      for _, ci in ipairs(hyb[m]) do local v = get(ci); b = b and best(b, v) or v end
      h[i] = b
    end
    return p, h
  end
  local means = {}
  for i, c in ipairs(cells) do means[i] = S.mean(c.vals) end
  local p, h = values(function(i) return means[i] end)
  local po, ho = order_of(p), order_of(h)
  local res = { pure_order = po, hybrid_order = ho, top_pure = po[1], top_hybrid = ho[1], top_changed = po[1] ~= ho[1] }
  -- per seed: seeds present in every cell involved
  local seeds = {}
  for s in pairs(cells[pure[ms[1]]].by_seed) do seeds[#seeds + 1] = s end
  table.sort(seeds)
  local n, top, ord = 0, 0, 0
  for _, s in ipairs(seeds) do
    local ok = true
    for i, c in ipairs(cells) do if c.mixer ~= "transformer" and c.by_seed[s] == nil then ok = false end; local _ = i end
    if ok then
      local ps, hs = values(function(i) return cells[i].by_seed[s] end)
      n = n + 1
      local sgn = better == "lower" and -1 or 1
      local function top_set(v) -- the mixers within `tie` of the best value
        local b
        for i = 1, #ms do b = b and best(b, v[i]) or v[i] end
        local t = {}
        for i = 1, #ms do if sgn * (b - v[i]) <= tie then t[i] = true end end
        return t
      end
      local tp, th = top_set(ps), top_set(hs)
      local shared = false
      for i = 1, #ms do if tp[i] and th[i] then shared = true end end
      if not shared then top = top + 1 end
      local flipped = false
      for i = 1, #ms do
        for j = 1, #ms do
          if sgn * (ps[i] - ps[j]) > tie and sgn * (hs[j] - hs[i]) > tie then flipped = true end
        end
      end
      if flipped then ord = ord + 1 end
    end
  end
  res.seeds, res.seeds_top_changed, res.seeds_order_changed = n, top, ord
  -- agreement of the two rankings: Spearman ρ between pure and best-hybrid values, with an interval
  local groups = {}
  for i, c in ipairs(cells) do groups[i] = c.vals end
  res.rho = S.bootstrap(groups, function(m)
    local a, b = values(function(i) return m[i] end)
    return S.spearman(a, b)
  end, boot)
  return res
end

function S.findings(records, opts)
  opts = opts or {}
  local boot = { B = opts.B or 2000, seed = opts.seed or 0, level = opts.level or 0.95 }
  local lm_key, rec_key = opts.lm or "lm_val_bpb", opts.recall or "mqar_acc"
  local flat_below, margin = opts.flat_below or 0.5, opts.recover_margin or 0.05
  local out = { level = boot.level, B = boot.B, flat_below = flat_below, recover_margin = margin }

  local lm, rec = cells_of(records, lm_key), cells_of(records, rec_key)
  local smin
  for _, c in ipairs(lm) do smin = math.min(smin or #c.vals, #c.vals) end
  for _, c in ipairs(rec) do smin = math.min(smin or #c.vals, #c.vals) end
  out.seeds_min = smin or 0

  -- F1
  out.tie_lm, out.tie_recall = opts.tie_lm or 0.005, opts.tie_recall or 0.005
  if #lm > 0 then out.f1_lm = rank_change(lm, "lower", boot, out.tie_lm) end
  if #rec > 0 then out.f1_recall = rank_change(rec, "higher", boot, out.tie_recall) end

  -- F2: LM flat across ratios: mean over mixers of the range of its cells' means (the ratio effect) vs
  -- the range over mixers of their average (the between-mixer spread)
  local mixers = mixers_in(lm)
  if #mixers >= 2 then
    local idx = {}
    for _, m in ipairs(mixers) do idx[m] = {} end
    local groups = {}
    for i, c in ipairs(lm) do
      groups[i] = c.vals
      if idx[c.mixer] then table.insert(idx[c.mixer], i) end
    end
    local function parts(m)
      local eff, avgs = 0, {}
      for k, mx in ipairs(mixers) do
        local lo, hi, s = math.huge, -math.huge, 0
        for _, i in ipairs(idx[mx]) do lo, hi, s = math.min(lo, m[i]), math.max(hi, m[i]), s + m[i] end
        eff = eff + (hi - lo)
        avgs[k] = s / #idx[mx]
      end
      eff = eff / #mixers
      local lo, hi = math.huge, -math.huge
      for _, a in ipairs(avgs) do lo, hi = math.min(lo, a), math.max(hi, a) end
      return eff, hi - lo
    end
    local e = S.bootstrap(groups, function(m) return (parts(m)) end, boot)
    local sp = S.bootstrap(groups, function(m) return select(2, parts(m)) end, boot)
    local rel = S.bootstrap(groups, function(m) local a, b = parts(m); if b == 0 then return nil end return a / b end, boot)
    local noise, nn = 0, 0
    for _, c in ipairs(lm) do local ci = S.ci(c.vals, boot.level); if ci.half then noise, nn = noise + ci.half, nn + 1 end end
    out.f2 = { ratio_effect = e, mixer_spread = sp, relative = rel, noise = nn > 0 and noise / nn or nil }
    local verdict = "undecided"
    if rel.hi and rel.hi < flat_below then verdict = "holds"
    elseif rel.lo and rel.lo >= flat_below then verdict = "does not hold" end
    if not rel.hi then verdict = "no interval (1 seed)" end
    out.f2.verdict = verdict
  end

  -- F3: recall rises with the attention share: Spearman ρ per mixer over its distinct stacks
  out.f3 = {}
  for _, mx in ipairs(mixers_in(rec)) do
    local groups, xs = {}, {}
    for _, c in ipairs(rec) do
      if c.mixer == mx and c.share then groups[#groups + 1] = c.vals; xs[#xs + 1] = c.share end
    end
    if #groups >= 3 then
      local b = S.bootstrap(groups, function(m) return S.spearman(xs, m) end, boot)
      local v = "undecided"
      if b.estimate == nil then v = "undefined (recall constant)"
      elseif not b.lo then v = "no interval (1 seed)"
      elseif b.lo > 0 then v = "holds"
      elseif b.hi < 0 then v = "reversed" end
      out.f3[#out.f3 + 1] = { mixer = mx, points = #groups, rho = b, verdict = v }
    elseif #groups == 2 and xs[1] ~= xs[2] then
      -- two stacks (pure and one hybrid, e.g. at 4 layers): the Welch interval of the difference in recall,
      -- more attention minus less; a rank correlation of two points is only this difference's sign
      local lo_i, hi_i = 1, 2
      if xs[1] > xs[2] then lo_i, hi_i = 2, 1 end
      local row = { mixer = mx, points = 2, shares = { xs[lo_i], xs[hi_i] } }
      if #groups[1] >= 2 and #groups[2] >= 2 then
        row.diff = S.welch(groups[hi_i], groups[lo_i], boot.level)
        row.verdict = row.diff.lo > 0 and "holds" or (row.diff.hi < 0 and "reversed" or "undecided")
      else
        row.diff = { diff = S.mean(groups[hi_i]) - S.mean(groups[lo_i]) }
        row.verdict = "no interval (1 seed)"
      end
      out.f3[#out.f3 + 1] = row
    end
  end

  -- F4: the best hybrid's recall minus the Transformer's (Welch interval)
  out.f4 = {}
  local tr
  for _, c in ipairs(rec) do if c.mixer == "transformer" then tr = c end end
  if tr then
    out.transformer_recall = S.ci(tr.vals, boot.level)
    for _, mx in ipairs(mixers_in(rec)) do
      local bestc
      for _, c in ipairs(rec) do
        if c.mixer == mx and c.ratio ~= 0 and (not bestc or S.mean(c.vals) > S.mean(bestc.vals)) then bestc = c end
      end
      if bestc then
        local row = { mixer = mx, cell = bestc.name, ratio = bestc.ratio, recall = S.ci(bestc.vals, boot.level) }
        if #bestc.vals >= 2 and #tr.vals >= 2 then
          row.diff = S.welch(bestc.vals, tr.vals, boot.level)
          if row.diff.lo >= -margin then row.verdict = "recovers"
          elseif row.diff.hi < -margin then row.verdict = "does not recover"
          else row.verdict = "undecided" end
        else
          row.diff = { diff = S.mean(bestc.vals) - S.mean(tr.vals) }
          row.verdict = "no interval (1 seed)"
        end
        out.f4[#out.f4 + 1] = row
      end
    end
  end
  return out
end

-- the findings as markdown lines (grid.md's findings table)
function S.findings_markdown(f)
  local function num(v, fmt) return v and string.format(fmt or "%.3f", v) or "-" end
  local function iv(b, fmt)
    if not b then return "-" end
    if b.lo then return string.format("%s [%s, %s]", num(b.estimate, fmt), num(b.lo, fmt), num(b.hi, fmt)) end
    return num(b.estimate, fmt)
  end
  local pct = math.floor(f.level * 100 + 0.5)
  local L = { "| # | paper's finding | test | result | verdict |", "|---|---|---|---|---|" }
  for _, which in ipairs { { "f1_lm", "LM (bpb)" }, { "f1_recall", "recall" } } do
    local r = f[which[1]]
    if r then
      L[#L + 1] = string.format("| 1 | standalone rank ≠ hybrid rank (%s) | best pure vs best hybrid by cell means; " ..
        "seeds where the top mixer changes (values within %g are ties); Spearman ρ(pure, best hybrid) with %d%% " ..
        "bootstrap interval | pure: %s; hybrid: %s; top changes in %d of %d seeds; order changes in %d of %d; ρ = %s | %s |",
        which[2], (which[1] == "f1_lm" and f.tie_lm or f.tie_recall) or 0, pct, table.concat(r.pure_order, " > "),
        table.concat(r.hybrid_order, " > "),
        r.seeds_top_changed, r.seeds, r.seeds_order_changed, r.seeds, iv(r.rho, "%.2f"),
        r.seeds == 0 and "-" or r.seeds < 2 and "no test (1 seed)" or
        (r.seeds_top_changed * 2 > r.seeds and "holds" or "does not hold"))
    end
  end
  if f.f2 then
    L[#L + 1] = string.format("| 2 | LM nearly flat across ratios | ratio effect (mean over mixers of the range of " ..
      "cell means, bpb) vs between-mixer spread (range of mixer averages); flat when effect/spread < %.2f with " ..
      "the %d%% interval | effect %s, spread %s, effect/spread %s; seed noise ± %s | %s |",
      f.flat_below, pct, iv(f.f2.ratio_effect), iv(f.f2.mixer_spread), iv(f.f2.relative, "%.2f"), num(f.f2.noise), f.f2.verdict)
  end
  for _, r in ipairs(f.f3 or {}) do
    if r.diff then
      L[#L + 1] = string.format("| 3 | recall rises with attention (%s) | two distinct stacks (attention share %.3g and %.3g): " ..
        "recall difference, Welch %d%% interval; holds when the interval is above 0 | %s | %s |", r.mixer, r.shares[1],
        r.shares[2], pct, r.diff.lo and string.format("%+.3f [%+.3f, %+.3f]", r.diff.diff, r.diff.lo, r.diff.hi)
          or string.format("%+.3f", r.diff.diff), r.verdict)
    else
      L[#L + 1] = string.format("| 3 | recall rises with attention (%s) | Spearman ρ(attention share, recall) over %d " ..
        "distinct stacks, %d%% bootstrap interval; holds when the interval is above 0 | ρ = %s | %s |",
        r.mixer, r.points, pct, iv(r.rho, "%.2f"), r.verdict)
    end
  end
  for _, r in ipairs(f.f4 or {}) do
    L[#L + 1] = string.format("| 4 | hybrids recover Transformer recall (%s) | best hybrid (%s) − Transformer, Welch " ..
      "%d%% interval; recovers when the lower bound ≥ −%.2f | %s − %s = %s | %s |",
      r.mixer, r.cell, pct, f.recover_margin, num(r.recall.mean), num(f.transformer_recall.mean),
      r.diff.lo and string.format("%.3f [%.3f, %.3f]", r.diff.diff, r.diff.lo, r.diff.hi) or num(r.diff.diff), r.verdict)
  end
  return L
end

return S
