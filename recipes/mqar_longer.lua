-- recipes/mqar_longer.lua — MQAR beyond the training length, for the cells of a paper_grid run.
--
-- A paper_grid cell is trained on MQAR at mqar.seq_len (with up to seq_len/4 key-value pairs) and tested at
-- that length. A recurrent state of fixed size must hold every pair until it is queried, attention looks
-- them up; so a longer sequence with more pairs (Zoology's setting: pairs = seq_len / 4) is where a linear
-- mixer's state runs out, as the paper's needle-in-a-haystack tests go beyond the training length.
-- This recipe loads each finished cell-seed's MQAR model (the final checkpoint of the learning rate the cell
-- kept) and measures it at longer lengths, without training anything:
--
--   hyblua recipes/mqar_longer.lua --grid results                    # lengths 128 and 256, 32 and 64 pairs
--   hyblua recipes/mqar_longer.lua --grid results --set lengths=[96,128] --set kv=[24,32]
--
-- Writes <grid>/longer/<cell>__s<seed>.json (one per cell-seed; re-running skips those present) and
-- <grid>/mqar_longer.md / .csv: mean ± 95% t-interval over seeds per cell and length, and per mixer the
-- difference hybrid − pure with its Welch interval. The test data of seed s is a function of s and the
-- length alone (the same for every cell), different from the grid's training and test examples.
local hb = require "hyblua"
local K = hb.config.key
local S = hb.stats

local defaults = hb.config.declare {
  grid = K("results", "a paper_grid output directory (its cells/*.json and ckpt/)"),
  lengths = K({ 128, 256 }, "test sequence lengths (each < the MQAR vocabulary, as MQAR requires)", { min = 4 }),
  kv = K({}, "key-value pairs at each length (default: length / 4, Zoology's ratio)", { min = 1 }),
  examples = K(500, "test examples per length", { min = 1 }),
  batch_size = K(32, "examples per forward pass", { min = 1 }),
  threads = K(0, "worker threads (0: HYBLUA_NUM_THREADS or all CPUs)", { min = 0, max = 256 }),
}
local cfg = hb.config.parse_args(arg, defaults, { description = "MQAR at lengths beyond a paper_grid run's training " ..
  "length, from the cells' saved MQAR models; writes <grid>/mqar_longer.md and .csv" })
if cfg.threads > 0 then hb.set_num_threads(cfg.threads) end
if #cfg.kv > 0 and #cfg.kv ~= #cfg.lengths then
  hb.user_error(string.format("config key 'kv': %d values for %d lengths (give one per length, or none)", #cfg.kv, #cfg.lengths))
end
local tests = {}
for i, T in ipairs(cfg.lengths) do tests[i] = { seq_len = T, kv = cfg.kv[i] or T // 4 } end

local G = cfg.grid
local function exists(p) return hb.io.file_kind(p) ~= nil end -- a file or a directory (a stat; never opens)
if not exists(G .. "/cells") then hb.user_error("mqar_longer: " .. G .. "/cells not found (is --grid a paper_grid output directory?)") end

-- the final checkpoint of the rate a cell-seed kept: ckpt/<cell>__s<seed>-mqar[-lr<lr>]/ckpt-<step>
local function model_dir(r, swept)
  local base = string.format("%s/ckpt/%s__s%d-mqar", G, r.name, r.seed) .. (swept and string.format("-lr%g", r.mqar_lr) or "")
  if not exists(base) then return nil, base end
  local best
  for _, n in ipairs(hb.data.list_dir(base)) do
    if n:match("^ckpt%-%d+$") and (not best or n > best) then best = n end
  end
  return best and (base .. "/" .. best) or nil, base
end

local names = hb.data.list_dir(G .. "/cells")
table.sort(names)
hb.data.mkdir(G .. "/longer")
local recs, skipped = {}, {}
for _, f in ipairs(names) do
  local cellseed = f:match("^(.+__s%d+)%.json$")
  if cellseed then
    local r = hb.io.read_json(G .. "/cells/" .. f)
    local outp = G .. "/longer/" .. cellseed .. ".json"
    if r.same_as then -- a copy of another cell's stack: it has no model of its own
    elseif exists(outp) then recs[#recs + 1] = hb.io.read_json(outp)
    elseif type(r.mqar_acc) ~= "number" then skipped[#skipped + 1] = cellseed .. " (no MQAR result)"
    else
      local dir, base = model_dir(r, r.mqar_sweep ~= nil)
      if not dir then skipped[#skipped + 1] = cellseed .. " (no checkpoint in " .. base .. ")"
      else
        local m = hb.load_pretrained(dir)
        local V = m.config.vocab_size
        local res = { name = r.name, mixer = r.mixer, ratio = r.ratio, seed = r.seed, attn_share = r.attn_share,
                      layers = r.layers, mqar_acc = r.mqar_acc, mqar_lr = r.mqar_lr, model = dir, tests = {} }
        local t0 = hb.now()
        for _, t in ipairs(tests) do
          if t.seq_len >= V then
            hb.user_error(string.format("mqar_longer: length %d needs an MQAR vocabulary above it; %s has %d", t.seq_len, cellseed, V))
          end
          local mix = hb.eval.mqar.mixture { vocab_size = V, seed = 7919 * (r.seed + 1) + t.seq_len,
            test = { { seq_len = t.seq_len, num_kv_pairs = t.kv, num_examples = cfg.examples } } }
          local e = hb.eval.mqar.evaluate(m, mix.test, { batch_size = cfg.batch_size })
          res.tests[#res.tests + 1] = { seq_len = t.seq_len, kv = t.kv, accuracy = e.accuracy, n = e.n }
        end
        res.seconds = hb.now() - t0
        hb.io.write_json(outp, res)
        recs[#recs + 1] = res
        io.stderr:write(string.format("%-32s", cellseed))
        for _, t in ipairs(res.tests) do io.stderr:write(string.format("  T%d/%dkv %.3f", t.seq_len, t.kv, t.accuracy)) end
        io.stderr:write(string.format("  (%.0f s)\n", res.seconds))
      end
    end
  end
end
for _, s in ipairs(skipped) do io.stderr:write("skipped: " .. s .. "\n") end
if #recs == 0 then hb.user_error("mqar_longer: no cell-seed of " .. G .. " could be evaluated") end

-- per cell: the values over seeds at each length
local cells, by = {}, {}
for _, r in ipairs(recs) do
  local c = by[r.name]
  if not c then
    c = { name = r.name, mixer = r.mixer, ratio = r.ratio, share = r.attn_share, layers = r.layers, seeds = {}, train = {}, at = {} }
    by[r.name] = c
    cells[#cells + 1] = c
  end
  c.seeds[#c.seeds + 1] = r.seed
  c.train[#c.train + 1] = r.mqar_acc
  for i, t in ipairs(r.tests) do c.at[i] = c.at[i] or {}; table.insert(c.at[i], t.accuracy) end
end
table.sort(cells, function(a, b)
  if a.mixer ~= b.mixer then
    if a.mixer == "transformer" or b.mixer == "transformer" then return b.mixer == "transformer" end
    return a.mixer < b.mixer
  end
  return (a.share or 0) < (b.share or 0)
end)
local function pm(v)
  if not v or #v == 0 then return "-" end
  local ci = S.ci(v, 0.95)
  if not ci.half then return string.format("%.3f", ci.mean) end
  return string.format("%.3f ± %.3f", ci.mean, ci.half)
end
local md = { "# MQAR beyond the training length", "",
  string.format("Grid: %s. Each cell-seed's MQAR model (the kept learning rate's final checkpoint) tested on %d new " ..
    "examples per length; the trained length's accuracy is the grid's. Mean ± half-width of the 95%% t-interval over seeds.",
    G, cfg.examples), "" }
local head = { "cell", "layers", "seeds", "trained length" }
for _, t in ipairs(tests) do head[#head + 1] = string.format("T %d, %d pairs", t.seq_len, t.kv) end
md[#md + 1] = "| " .. table.concat(head, " | ") .. " |"
md[#md + 1] = "|" .. string.rep("---|", #head)
local csv = { "name,mixer,ratio,attn_share,n_seeds,seq_len,kv,accuracy_mean,accuracy_ci95,accuracy_per_seed" }
for _, c in ipairs(cells) do
  local row = { c.name, c.layers or "", tostring(#c.seeds), pm(c.train) }
  for i, t in ipairs(tests) do
    row[#row + 1] = pm(c.at[i])
    local ci = S.ci(c.at[i] or {}, 0.95)
    local per = {}
    for k, v in ipairs(c.at[i] or {}) do per[k] = string.format("%.6g", v) end
    csv[#csv + 1] = string.format("%s,%s,%s,%s,%d,%d,%d,%.6g,%s,%s", c.name, c.mixer, tostring(c.ratio), tostring(c.share or ""),
      #c.seeds, t.seq_len, t.kv, ci.mean, ci.half and string.format("%.6g", ci.half) or "", table.concat(per, ";"))
  end
  md[#md + 1] = "| " .. table.concat(row, " | ") .. " |"
end
-- per mixer: its hybrid − its pure cell at each length (Welch interval), and the Transformer for reference
md[#md + 1] = ""
md[#md + 1] = "Hybrid − pure per mixer (Welch 95% interval; above 0: attention adds recall at that length):"
md[#md + 1] = ""
local h2 = { "mixer", "hybrid" }
for _, t in ipairs(tests) do h2[#h2 + 1] = string.format("T %d", t.seq_len) end
md[#md + 1] = "| " .. table.concat(h2, " | ") .. " |"
md[#md + 1] = "|" .. string.rep("---|", #h2)
for _, p in ipairs(cells) do
  if p.mixer ~= "transformer" and p.ratio == 0 then
    for _, h in ipairs(cells) do
      if h.mixer == p.mixer and h.ratio ~= 0 then
        local row = { p.mixer, h.name }
        for i in ipairs(tests) do
          local a, b = h.at[i] or {}, p.at[i] or {}
          if #a >= 2 and #b >= 2 then
            local w = S.welch(a, b, 0.95)
            row[#row + 1] = string.format("%+.3f [%+.3f, %+.3f]", w.diff, w.lo, w.hi)
          elseif #a >= 1 and #b >= 1 then row[#row + 1] = string.format("%+.3f", S.mean(a) - S.mean(b))
          else row[#row + 1] = "-" end
        end
        md[#md + 1] = "| " .. table.concat(row, " | ") .. " |"
      end
    end
  end
end
if #skipped > 0 then md[#md + 1] = ""; md[#md + 1] = "Not evaluated: " .. table.concat(skipped, "; ") .. "." end
hb.config.write_text(G .. "/mqar_longer.md", table.concat(md, "\n") .. "\n")
hb.config.write_text(G .. "/mqar_longer.csv", table.concat(csv, "\n") .. "\n")
io.stderr:write(string.format("mqar_longer: %d cell-seeds → %s/mqar_longer.md, mqar_longer.csv\n", #recs, G))
