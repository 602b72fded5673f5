-- recipes/paper_grid.lua — the paper's study in miniature.
--
-- 6 linear mixers × {pure, 24:1, 12:1, 6:1, 3:1} + a Transformer = 31 models, all at the same depth,
-- width and (by adjusting the MLP width) the same parameter budget, each trained twice with the same
-- number of tokens: (a) on the text corpus (language modelling → validation bits-per-byte) and (b) on
-- Zoology's MQAR (recall → accuracy on held-out lengths). Results go to <out>/grid.csv, grid.md and
-- three SVG plots (recall vs attention share, LM vs ratio, recall vs state+KV bytes).
--
--   hyblua recipes/paper_grid.lua                 # the default size (a few hours on 2 cores)
--   hyblua recipes/paper_grid.lua --tiny          # seconds per cell; used by the test suite
--   hyblua recipes/paper_grid.lua --set grid.mixers=[gla,hgrn2] --set lm.steps=500
-- Re-running skips finished cells (<out>/cells/*.json) and resumes a half-trained one from its
-- checkpoint; everything is deterministic given the seed.
--
-- Attention placement: with L layers, ratio r gives n = max(1, round(L/(r+1))) attention layers at the
-- ends of n equal blocks (layer ⌊(k+1)·L/n⌋ − 1, k = 0..n−1). At L = 24 this is exactly r linear layers
-- then one attention layer for 3:1 (6 layers of attention), and 3, 2, 1 attention layers for 6:1,
-- 12:1, 24:1 — the paper's 24:1 and 12:1 do not tile 24 layers either.
local hb = require "hyblua"

local defaults = hb.recipe.defaults {
  name = "paper_grid", out = "results", tiny = false,
  grid = { mixers = { "hgrn", "retnet", "gla", "hgrn2", "delta_net", "gated_deltanet" }, ratios = { 0, 24, 12, 6, 3 },
           transformer = true, tasks = { "lm", "mqar" }, budget = 0 },
  model = { hidden_size = 64, num_hidden_layers = 12, vocab_size = 256 },
  heads = 2,
  lm = { steps = 250, batch_size = 8, seq_len = 128, lr = 3e-3, val_tokens = 16384 },
  mqar = { steps = 800, batch_size = 16, seq_len = 48, vocab_size = 64, lr = 3e-3, train_kv = { 2, 4, 6 },
           test_kv = { 4, 6 }, train_examples = 12000, test_examples = 256 },
}
local cfg = hb.config.parse_args(arg, defaults)
if cfg.tiny then
  cfg.model.hidden_size, cfg.model.num_hidden_layers = 32, 6
  cfg.lm.steps, cfg.lm.batch_size, cfg.lm.seq_len, cfg.lm.val_tokens = 3, 2, 64, 1024
  cfg.mqar.steps, cfg.mqar.batch_size, cfg.mqar.seq_len = 3, 4, 32
  cfg.mqar.train_kv, cfg.mqar.test_kv, cfg.mqar.train_examples, cfg.mqar.test_examples = { 2, 4 }, { 4 }, 64, 16
  cfg.grid.ratios = { 0, 3 }
  if cfg.out == "results" then cfg.out = "results/tiny" end
end
if cfg.threads > 0 then hb.set_num_threads(cfg.threads) end
local out = cfg.out
hb.data.mkdir(out .. "/cells")   -- no shell: out may hold any character
hb.config.save(out .. "/config.yaml", cfg, "paper grid")
local d, L, H = cfg.model.hidden_size, cfg.model.num_hidden_layers, cfg.heads

-- ---- the cells ------------------------------------------------------------------------------------
local function mixer_cfg(mixer)
  local c = { model_type = mixer, hidden_size = d, num_hidden_layers = L }
  if mixer == "hgrn" then c.expand_ratio = 1
  elseif mixer == "retnet" then c.num_heads = H
  elseif mixer == "gla" then c.num_heads = H
  elseif mixer == "hgrn2" then c.expand_ratio = d // H
  elseif mixer == "delta_net" then c.num_heads = H
  elseif mixer == "gated_deltanet" then c.num_heads = H; c.head_dim = (3 * d // 4) // H
  elseif mixer == "transformer" then c.num_heads = H end
  return c
end

local function attn_layers(r)
  if r <= 0 then return {} end
  local n = math.max(1, math.floor(L / (r + 1) + 0.5))
  local out_l = {}
  for k = 0, n - 1 do out_l[#out_l + 1] = (k + 1) * L // n - 1 end
  return out_l
end

local cells = {}
for _, mixer in ipairs(cfg.grid.mixers) do
  for _, r in ipairs(cfg.grid.ratios) do
    cells[#cells + 1] = { mixer = mixer, ratio = r, name = mixer .. (r == 0 and "_pure" or ("_" .. r .. "to1")) }
  end
end
if cfg.grid.transformer then cells[#cells + 1] = { mixer = "transformer", ratio = -1, name = "transformer" } end

-- model config for a cell at vocabulary V, with the MLP width chosen to hit the parameter budget
local function cell_config(cell, V, budget)
  local c = mixer_cfg(cell.mixer)
  c.vocab_size = V
  if cell.mixer ~= "transformer" then
    local layers = attn_layers(cell.ratio)
    if #layers > 0 then c.attn = { layers = layers, num_heads = H } end
  end
  if budget then
    -- params are linear in intermediate_size I (3·d·I per layer): solve for I, round to a multiple of 8
    c.intermediate_size = 64
    local p0 = hb.models.new(c, { seed = 0 }):num_parameters()
    local I = math.max(8, math.floor((64 + (budget - p0) / (3 * d * L)) / 8 + 0.5) * 8)
    c.intermediate_size = I
  end
  return c
end

-- the budget: the parameter count of the Transformer at fla's default MLP width (or grid.budget)
local function budget_for(V)
  if cfg.grid.budget > 0 then return cfg.grid.budget end
  local c = mixer_cfg("transformer")
  c.vocab_size = V
  return hb.models.new(c, { seed = 0 }):num_parameters()
end

-- ---- data ---------------------------------------------------------------------------------------------
local train_shard, val_shard, meta = hb.recipe.open_data(cfg)
local bpt = (meta.val_bytes and meta.val_tokens and meta.val_tokens > 0) and meta.val_bytes / meta.val_tokens or 1
local mq = cfg.mqar
local mqar_train = hb.eval.mqar.mixture {
  vocab_size = mq.vocab_size, seed = cfg.seed + 17,
  train = (function()
    local t = {}
    for _, kv in ipairs(mq.train_kv) do t[#t + 1] = { seq_len = mq.seq_len, num_kv_pairs = kv, num_examples = mq.train_examples // #mq.train_kv } end
    return t
  end)(),
  test = (function()
    local t = {}
    for _, kv in ipairs(mq.test_kv) do t[#t + 1] = { seq_len = mq.seq_len, num_kv_pairs = kv, num_examples = mq.test_examples } end
    return t
  end)(),
}
-- MQAR training examples as one pool; batch k is a fixed function of k
local pool_x = hb.cat((function() local l = {} for i, s in ipairs(mqar_train.train) do l[i] = s.inputs end return l end)(), 1)
local pool_y = hb.cat((function() local l = {} for i, s in ipairs(mqar_train.train) do l[i] = s.labels end return l end)(), 1)
local pool_n = pool_x:size(1)
local function mqar_batch(k)
  local idx = {}
  local x = (k * 2654435761 + cfg.seed) % 4294967296
  for i = 1, mq.batch_size do
    x = (x * 1103515245 + 12345) % 2147483648
    idx[i] = x % pool_n
  end
  local it = hb.tensor(idx, "int64")
  return pool_x:index_select(1, it), pool_y:index_select(1, it)
end

-- a model wrapper whose loss is MQAR's: cross-entropy only at supervised positions (labels ≠ −100),
-- with logits computed only there (hidden states gathered first, then the vocabulary projection)
local function mqar_loss(model, x, y)
  local B, T = x:size(1), x:size(2)
  local ylist = y:view(B * T):tolist()
  local rows, tgt = {}, {}
  for i, v in ipairs(ylist) do if v ~= -100 then rows[#rows + 1] = i - 1; tgt[#tgt + 1] = v end end
  local h = model:hidden(x):view(B * T, -1):index_select(1, hb.tensor(rows, "int64"))
  local w = model.params["lm_head.weight"] or model.params["model.embeddings.weight"]
  return hb.cross_entropy(hb.linear(h, w), hb.tensor(tgt, "int64"), -100)
end

-- ---- running one cell ------------------------------------------------------------------------------------
local function exists(p) local f = io.open(p, "rb"); if f then f:close(); return true end return false end

local arch_done = {} -- "mixer|layers" → result, so a ratio that gives the same stack is not retrained

local function run_cell(cell)
  local path = out .. "/cells/" .. cell.name .. ".json"
  if exists(path) then
    local r = hb.io.read_json(path)
    arch_done[cell.mixer .. "|" .. table.concat(cell.mixer == "transformer" and {} or attn_layers(cell.ratio), ",")] = r
    return r, true
  end
  local key = cell.mixer .. "|" .. table.concat(cell.mixer == "transformer" and {} or attn_layers(cell.ratio), ",")
  if arch_done[key] then
    local r = {}
    for k, v in pairs(arch_done[key]) do r[k] = v end
    r.name, r.ratio, r.same_as = cell.name, cell.ratio, arch_done[key].name
    hb.io.write_json(path, r)
    return r, true
  end
  local t0 = hb.now()
  local res = { name = cell.name, mixer = cell.mixer, ratio = cell.ratio }
  local has = {}
  for _, t in ipairs(cfg.grid.tasks) do has[t] = true end
  if has.lm then
    local V = cfg.model.vocab_size
    local c = cell_config(cell, V, budget_for(V))
    local m = hb.models.new(c, { seed = cfg.seed })
    local lm = cfg.lm
    local v0 = hb.eval.lm(m, val_shard, { T = lm.seq_len, max_tokens = math.min(lm.val_tokens, val_shard:len() - 1), bytes_per_token = bpt })
    res.lm_val_loss_init = v0.loss
    local tr = hb.train {
      model = m, name = cell.name .. " lm",
      batch = function(k) return train_shard:batch(lm.batch_size, lm.seq_len, cfg.seed, k) end,
      steps = lm.steps, lr = lm.lr, min_lr = lm.lr / 10, warmup = math.min(30, lm.steps), schedule = "cosine",
      weight_decay = 0.1, clip = 1.0, out = out .. "/ckpt/" .. cell.name .. "-lm", save_every = math.max(50, lm.steps // 3), keep = 1,
      log = out .. "/logs/" .. cell.name .. "-lm.jsonl", seed = cfg.seed,
    }
    if tr.interrupted then os.exit(130) end
    local ev = hb.eval.lm(m, val_shard, { T = lm.seq_len, max_tokens = math.min(lm.val_tokens, val_shard:len() - 1), bytes_per_token = bpt })
    local eff = hb.eval.efficiency(m, { N = lm.seq_len })
    res.params = m:num_parameters()
    res.intermediate_size = c.intermediate_size
    res.attn_layers = #(c.attn and c.attn.layers or {})
    if cell.mixer == "transformer" then res.attn_layers = L end
    res.attn_share = res.attn_layers / L
    res.layers = hb.schedule.describe(m.config)
    res.lm_val_loss, res.lm_val_bpb = ev.loss, ev.bpb
    res.lm_train_loss_first, res.lm_train_loss_last = tr.losses[1], tr.losses[lm.steps]
    res.state_bytes = eff.state_bytes + (eff.conv_state_bytes or 0)
    res.kv_bytes_at_T = eff.kv_bytes_at_N
    res.lm_seconds = hb.now() - t0
  end
  if has.mqar then
    local t1 = hb.now()
    local V = mq.vocab_size
    local c = cell_config(cell, V, budget_for(V))
    local m = hb.models.new(c, { seed = cfg.seed + 1 })
    local tr = hb.train {
      model = m,
      loss_fn = function(k) local x, y = mqar_batch(k); return mqar_loss(m, x, y), x:numel() end,
      name = cell.name .. " mqar",
      steps = mq.steps, lr = mq.lr, min_lr = mq.lr / 10, warmup = math.min(30, mq.steps), schedule = "cosine",
      weight_decay = 0.1, clip = 1.0, out = out .. "/ckpt/" .. cell.name .. "-mqar", save_every = math.max(50, mq.steps // 3), keep = 1,
      log = out .. "/logs/" .. cell.name .. "-mqar.jsonl", seed = cfg.seed,
    }
    if tr.interrupted then os.exit(130) end
    local r = hb.eval.mqar.evaluate(m, mqar_train.test, { batch_size = 32 })
    res.mqar_acc = r.accuracy
    res.mqar_by_kv = {}
    for kv, acc in pairs(r.by_num_kv_pairs or {}) do res.mqar_by_kv["kv" .. kv] = acc end
    res.mqar_train_loss_last = tr.losses[mq.steps]
    res.mqar_seconds = hb.now() - t1
  end
  res.seconds = hb.now() - t0
  hb.io.write_json(path, res)
  arch_done[key] = res
  return res, false
end

-- ---- the grid --------------------------------------------------------------------------------------------
local tstart = hb.now()
local results = {}
for i, cell in ipairs(cells) do
  local r, cached = run_cell(cell)
  results[i] = r
  io.stderr:write(string.format("[%2d/%d] %-22s %s lm bpb %s  mqar %s  (%s)\n", i, #cells, cell.name,
    cached and "(cached)" or string.format("%5.0fs", r.seconds or 0),
    r.lm_val_bpb and string.format("%.3f", r.lm_val_bpb) or "-", r.mqar_acc and string.format("%.3f", r.mqar_acc) or "-",
    r.layers or ""))
end

-- ---- outputs -------------------------------------------------------------------------------------------
local cols = { "name", "mixer", "ratio", "attn_layers", "attn_share", "params", "intermediate_size", "state_bytes",
               "kv_bytes_at_T", "lm_val_loss_init", "lm_val_loss", "lm_val_bpb", "mqar_acc", "lm_seconds", "mqar_seconds",
               "layers", "same_as" }
local f = assert(io.open(out .. "/grid.csv", "w"))
f:write(table.concat(cols, ","), "\n")
for _, r in ipairs(results) do
  local row = {}
  for i, c in ipairs(cols) do
    local v = r[c]
    row[i] = v == nil and "" or (type(v) == "number" and math.type(v) == "float" and string.format("%.6g", v) or tostring(v))
  end
  f:write(table.concat(row, ","), "\n")
end
f:close()

local function ratio_label(r) return r == -1 and "Transformer" or (r == 0 and "pure" or (r .. ":1")) end
local md = { "| mixer | ratio | attn layers | params | state+KV bytes @T | LM val bpb | MQAR acc |", "|---|---|---|---|---|---|---|" }
for _, r in ipairs(results) do
  md[#md + 1] = string.format("| %s | %s | %s | %s | %s | %s | %s |", r.mixer, ratio_label(r.ratio), tostring(r.attn_layers or "-"),
    r.params and string.format("%.3fM", r.params / 1e6) or "-",
    r.state_bytes and tostring(r.state_bytes + (r.kv_bytes_at_T or 0)) or "-",
    r.lm_val_bpb and string.format("%.4f", r.lm_val_bpb) or "-", r.mqar_acc and string.format("%.3f", r.mqar_acc) or "-")
end
md[#md + 1] = ""
md[#md + 1] = string.format("Grid wall time (this invocation): %.0f s. Config: %s/config.yaml.", hb.now() - tstart, out)
local g = assert(io.open(out .. "/grid.md", "w")); g:write(table.concat(md, "\n"), "\n"); g:close()

-- ---- SVG plots (no dependencies) ---------------------------------------------------------------------------
local palette = { hgrn = "#1f77b4", retnet = "#ff7f0e", gla = "#2ca02c", hgrn2 = "#d62728", delta_net = "#9467bd",
                  gated_deltanet = "#8c564b", transformer = "#000000" }
local function svg_plot(path, title, xlabel, ylabel, series, opts)
  opts = opts or {}
  local W, Hh, m = 640, 420, { l = 70, r = 150, t = 40, b = 55 }
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  local function tx(x) return opts.logx and math.log(x, 10) or x end
  for _, s in ipairs(series) do
    for _, p in ipairs(s.points) do
      xmin, xmax = math.min(xmin, tx(p[1])), math.max(xmax, tx(p[1]))
      ymin, ymax = math.min(ymin, p[2]), math.max(ymax, p[2])
    end
  end
  if xmin == math.huge then return end
  if xmax == xmin then xmax = xmin + 1 end
  if ymax == ymin then ymax = ymin + 1 end
  local pw, ph = W - m.l - m.r, Hh - m.t - m.b
  local function X(x) return m.l + (tx(x) - xmin) / (xmax - xmin) * pw end
  local function Y(y) return m.t + ph - (y - ymin) / (ymax - ymin) * ph end
  local o = { string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">', W, Hh),
              string.format('<rect width="%d" height="%d" fill="white"/>', W, Hh),
              string.format('<text x="%d" y="22" font-size="15">%s</text>', m.l, title),
              string.format('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>', m.l, m.t + ph, m.l + pw, m.t + ph),
              string.format('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>', m.l, m.t, m.l, m.t + ph),
              string.format('<text x="%d" y="%d" text-anchor="middle">%s</text>', m.l + pw // 2, Hh - 12, xlabel),
              string.format('<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">%s</text>', m.t + ph // 2, m.t + ph // 2, ylabel) }
  for i = 0, 4 do
    local yv = ymin + (ymax - ymin) * i / 4
    o[#o + 1] = string.format('<text x="%d" y="%.1f" text-anchor="end">%.3g</text>', m.l - 6, Y(yv) + 4, yv)
    local xv = xmin + (xmax - xmin) * i / 4
    local lab = opts.logx and string.format("%.3g", 10 ^ xv) or string.format("%.3g", xv)
    o[#o + 1] = string.format('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', m.l + pw * i / 4, m.t + ph + 18, lab)
  end
  for si, s in ipairs(series) do
    local pts = {}
    for _, p in ipairs(s.points) do pts[#pts + 1] = string.format("%.1f,%.1f", X(p[1]), Y(p[2])) end
    if #pts > 1 and not opts.scatter then
      o[#o + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>', s.color, table.concat(pts, " "))
    end
    for _, p in ipairs(s.points) do
      o[#o + 1] = string.format('<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>', X(p[1]), Y(p[2]), s.color)
    end
    o[#o + 1] = string.format('<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>',
      W - m.r + 15, m.t + 18 * (si - 1), s.color, W - m.r + 32, m.t + 18 * (si - 1) + 11, s.name)
  end
  o[#o + 1] = "</svg>"
  local fh = assert(io.open(path, "w")); fh:write(table.concat(o, "\n"), "\n"); fh:close()
end

local by_mixer = {}
for _, r in ipairs(results) do
  by_mixer[r.mixer] = by_mixer[r.mixer] or {}
  table.insert(by_mixer[r.mixer], r)
end
local recall_share, lm_ratio, pareto = {}, {}, {}
for _, mixer in ipairs { "hgrn", "retnet", "gla", "hgrn2", "delta_net", "gated_deltanet", "transformer" } do
  local rs = by_mixer[mixer]
  if rs then
    table.sort(rs, function(a, b) return (a.attn_share or 0) < (b.attn_share or 0) end)
    local s1, s2, s3 = { name = mixer, color = palette[mixer], points = {} }, { name = mixer, color = palette[mixer], points = {} },
      { name = mixer, color = palette[mixer], points = {} }
    for _, r in ipairs(rs) do
      if r.mqar_acc and r.attn_share then table.insert(s1.points, { r.attn_share, r.mqar_acc }) end
      if r.lm_val_bpb and r.attn_share then table.insert(s2.points, { r.attn_share, r.lm_val_bpb }) end
      if r.mqar_acc and r.state_bytes then table.insert(s3.points, { math.max(1, r.state_bytes + (r.kv_bytes_at_T or 0)), r.mqar_acc }) end
    end
    recall_share[#recall_share + 1], lm_ratio[#lm_ratio + 1], pareto[#pareto + 1] = s1, s2, s3
  end
end
svg_plot(out .. "/recall_vs_attention.svg", "MQAR accuracy vs attention share", "attention layers / total layers", "MQAR accuracy", recall_share)
svg_plot(out .. "/lm_vs_ratio.svg", "Validation bits/byte vs attention share", "attention layers / total layers", "bits per byte", lm_ratio)
svg_plot(out .. "/recall_vs_state.svg", "Recall vs decode memory (state + KV at T)", "bytes per sequence (log)", "MQAR accuracy", pareto,
  { logx = true, scatter = true })
print(string.format("grid: %d cells → %s/grid.csv, grid.md, *.svg (%.0f s)", #results, out, hb.now() - tstart))
