-- test_mqar_longer.lua — recipes/mqar_longer.lua on a tiny MQAR-only grid: it loads each cell-seed's kept
-- MQAR checkpoint, tests it at a longer length, writes one record per cell-seed and the tables, skips
-- what it has done on a re-run, and refuses bad input with a clear message.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local run, exists = T.run, T.exists
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local g = tmp .. "/grid"
local ok, out = run("./hyblua recipes/paper_grid.lua --tiny --set grid.tasks=[mqar] --set grid.mixers=[gla] " ..
  "--set grid.seeds=2 --set mqar.steps=10 --set mqar.lrs=[0.001,0.01] --set threads=1 --out " .. g)
T.ok(ok, "a tiny MQAR-only grid (gla pure and 3:1, Transformer, 2 seeds, a sweep of two rates)", out:sub(-400))
ok, out = run("./hyblua recipes/mqar_longer.lua --grid " .. g .. " --set lengths=[48] --set examples=16 --set threads=1")
T.ok(ok and out:find("mqar_longer: 6 cell-seeds", 1, true), "mqar_longer evaluates the 6 cell-seeds", out)
local r = exists(g .. "/longer/gla_3to1__s1.json") and hb.io.read_json(g .. "/longer/gla_3to1__s1.json") or {}
local cell = hb.io.read_json(g .. "/cells/gla_3to1__s1.json")
local t1 = r.tests and r.tests[1] or {}
T.ok(t1.seq_len == 48 and t1.kv == 12 and t1.n == 16 and t1.accuracy >= 0 and t1.accuracy <= 1,
  "a record per cell-seed: length 48, 12 pairs (length / 4), 16 examples, an accuracy in [0, 1]", hb.io.encode_json(r))
T.ok(r.mqar_lr == cell.mqar_lr and r.model and r.model:find(string.format("-mqar%%-lr%g/ckpt%%-", cell.mqar_lr)) ~= nil,
  "the model is the final checkpoint of the rate the cell kept", tostring(r.model))
-- the evaluation is the model's: the same checkpoint and data give the same accuracy
local m = hb.load_pretrained(r.model)
local mix = hb.eval.mqar.mixture { vocab_size = m.config.vocab_size, seed = 7919 * (1 + 1) + 48,
  test = { { seq_len = 48, num_kv_pairs = 12, num_examples = 16 } } }
T.is(hb.eval.mqar.evaluate(m, mix.test, { batch_size = 32 }).accuracy, t1.accuracy, "the recorded accuracy is the checkpoint's")
local md = io.open(g .. "/mqar_longer.md"):read("a")
T.ok(md:find("| gla_3to1 | LLLALL | 2 |", 1, true) and md:find("| transformer | AAAAAA | 2 |", 1, true)
  and md:find("| gla | gla_3to1 |", 1, true), "mqar_longer.md: a row per cell and the hybrid − pure row", md)
local csv = io.open(g .. "/mqar_longer.csv"):read("a")
T.ok(select(2, csv:gsub("\n", "")) == 4 and csv:find("gla_pure,gla,0,0,2,48,12,", 1, true), "mqar_longer.csv: header + 3 cells", csv)
-- a re-run reads the records it has (a marker survives)
r.tests[1].accuracy = -1
hb.io.write_json(g .. "/longer/gla_3to1__s1.json", r)
ok, out = run("./hyblua recipes/mqar_longer.lua --grid " .. g .. " --set lengths=[48] --set examples=16 --set threads=1")
T.ok(ok and io.open(g .. "/mqar_longer.csv"):read("a"):find("-1", 1, true), "a re-run reuses longer/<cell>__s<seed>.json", out)
-- a stored result of other settings is never reused silently
ok, out = run("./hyblua recipes/mqar_longer.lua --grid " .. g .. " --set lengths=[48] --set examples=20 --set threads=1")
T.ok(not ok and out:find("was computed with other settings than this run's: examples = 16 (this run: 20)", 1, true),
  "a re-run with other examples is refused, naming the file and the setting", out)
ok, out = run("./hyblua recipes/mqar_longer.lua --grid " .. g .. " --set lengths=[40] --set examples=16 --set threads=1")
T.ok(not ok and out:find("tests = [{\"kv\":12,\"seq_len\":48}] (this run: [{\"kv\":10,\"seq_len\":40}])", 1, true),
  "and one with other lengths", out)
-- bad input
ok, out = run("./hyblua recipes/mqar_longer.lua --grid " .. tmp .. "/nothing")
T.ok(not ok and out:find("cells not found", 1, true), "a directory that is no grid: a clear error", out)
ok, out = run("./hyblua recipes/mqar_longer.lua --grid " .. g .. " --set lengths=[48,64] --set kv=[4]")
T.ok(not ok and out:find("config key 'kv': 1 values for 2 lengths", 1, true), "kv must give one count per length", out)
os.execute("rm -rf " .. g .. "/longer")
ok, out = run("./hyblua recipes/mqar_longer.lua --grid " .. g .. " --set lengths=[64]")
T.ok(not ok and out:find("needs an MQAR vocabulary above it", 1, true), "a length ≥ the MQAR vocabulary: a clear error", out)
os.execute("rm -rf " .. tmp)
T.done()
