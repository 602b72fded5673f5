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
local recs, skipped = hb.grid.evaluate { grid = G, subdir = "longer", task = "mqar", who = "mqar_longer",
  settings = { tests = tests, examples = cfg.examples },
  needs = function(r) return type(r.mqar_acc) ~= "number" and "no MQAR result" or nil end,
  evaluate = function(m, r)
    local V = m.config.vocab_size
    local res = { mqar_acc = r.mqar_acc, mqar_lr = r.mqar_lr, tests = {} }
    for _, t in ipairs(tests) do
      if t.seq_len >= V then
        hb.user_error(string.format("mqar_longer: length %d needs an MQAR vocabulary above it; %s__s%d has %d", t.seq_len,
          r.name, r.seed, V))
      end
      local mix = hb.eval.mqar.mixture { vocab_size = V, seed = 7919 * (r.seed + 1) + t.seq_len,
        test = { { seq_len = t.seq_len, num_kv_pairs = t.kv, num_examples = cfg.examples } } }
      local e = hb.eval.mqar.evaluate(m, mix.test, { batch_size = cfg.batch_size })
      res.tests[#res.tests + 1] = { seq_len = t.seq_len, kv = t.kv, accuracy = e.accuracy, n = e.n }
    end
    io.stderr:write(string.format("%-32s", r.name .. "__s" .. r.seed))
    for _, t in ipairs(res.tests) do io.stderr:write(string.format("  T%d/%dkv %.3f", t.seq_len, t.kv, t.accuracy)) end
    io.stderr:write("\n")
    return res
  end }
hb.grid.report { grid = G, name = "mqar_longer", recs = recs, skipped = skipped, title = "MQAR beyond the training length",
  intro = string.format("Grid: %s. Each cell-seed's MQAR model (the kept learning rate's final checkpoint) tested on %d new " ..
    "examples per length; the trained length's accuracy is the grid's. Mean ± half-width of the 95%% t-interval over seeds.",
    G, cfg.examples),
  keys = { "seq_len", "kv" }, metrics = { { field = "accuracy", label = "accuracy" } },
  base = { field = "mqar_acc", label = "trained length" },
  column = function(t, short) return short and string.format("T %d", t.seq_len) or string.format("T %d, %d pairs", t.seq_len, t.kv) end }
io.stderr:write(string.format("mqar_longer: %d cell-seeds → %s/mqar_longer.md, mqar_longer.csv\n", #recs, G))
