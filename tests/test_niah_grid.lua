-- test_niah_grid.lua — recipes/niah_grid.lua on a tiny LM-only grid: it loads each cell-seed's LM checkpoint,
-- runs RULER's NIAH tasks at a length beyond training, writes one record per cell-seed and the tables, skips what
-- it has done on a re-run, and refuses bad input (no grid, no LM models, a tokenizer of another vocabulary)
-- with a clear message.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local run, exists = T.run, T.exists
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local g = tmp .. "/grid"
local ok, out = run("./hyblua recipes/paper_grid.lua --tiny --set grid.tasks=[lm] --set grid.mixers=[gla] " ..
  "--set grid.seeds=2 --set threads=1 --out " .. g)
T.ok(ok, "a tiny LM-only grid (gla pure and 3:1, Transformer, 2 seeds)", out:sub(-400))
local args = " --set tasks=[niah_single_1,niah_multikey_1] --set lengths=[600] --set depths=[0.25,0.75] --set samples=1 " ..
  "--set tokens_to_generate=8 --set threads=1"
ok, out = run("./hyblua recipes/niah_grid.lua --grid " .. g .. args)
T.ok(ok and out:find("niah_grid: 6 cell-seeds", 1, true), "niah_grid evaluates the 6 cell-seeds", out)
local r = exists(g .. "/niah/gla_3to1__s1.json") and hb.io.read_json(g .. "/niah/gla_3to1__s1.json") or {}
local t = r.tests or {}
T.ok(#t == 2 and t[1].task == "niah_single_1" and t[2].task == "niah_multikey_1" and t[1].length == 600 and t[1].n == 2
  and t[1].score >= 0 and t[1].score <= 1 and t[1].answer_acc >= 0 and t[1].answer_acc <= 1,
  "a record per cell-seed: one test per task and length, 2 depths × 1 sample, fractions in [0, 1]", hb.io.encode_json(r))
T.ok(r.model and r.model:find("gla_3to1__s1%-lm/ckpt%-") ~= nil, "the model is the cell-seed's final LM checkpoint", tostring(r.model))
-- the numbers are the checkpoint's: the same model and cases (seed 42 + 1000·s) give the same scores
local m = hb.load_pretrained(r.model)
local bytes = hb.tokenizer.byte()
local cases = hb.eval.niah.cases { task = "niah_single_1", lengths = { 600 }, depths = { 0.25, 0.75 }, samples = 1,
  tokenizer = bytes, tokens_to_generate = 8, seed = 42 + 1000 * 1 }
local score = hb.eval.niah.run(m, bytes, cases, { tokens_to_generate = 8 })
T.is(hb.eval.niah.answer_accuracy(m, bytes, cases), t[1].answer_acc, "the recorded answer accuracy is the checkpoint's")
T.is(score / 100, t[1].score, "the recorded RULER score is the checkpoint's")
local md = io.open(g .. "/niah_grid.md"):read("a")
T.ok(md:find("| gla_3to1 | LLLALL | 2 |", 1, true) and md:find("| transformer | AAAAAA | 2 |", 1, true)
  and md:find("answer-token accuracy (Welch", 1, true) and md:find("RULER score (Welch", 1, true)
  and md:find("| gla | gla_3to1 |", 1, true), "niah_grid.md: a row per cell and the hybrid − pure rows of both metrics", md)
local csv = io.open(g .. "/niah_grid.csv"):read("a")
T.ok(select(2, csv:gsub("\n", "")) == 7 and csv:find("gla_pure,gla,0,0,2,niah_single_1,600,", 1, true),
  "niah_grid.csv: header + 3 cells × 2 tasks", csv)
-- a re-run reads the records it has (a marker survives)
t[1].answer_acc = -1
hb.io.write_json(g .. "/niah/gla_3to1__s1.json", r)
ok, out = run("./hyblua recipes/niah_grid.lua --grid " .. g .. args)
T.ok(ok and io.open(g .. "/niah_grid.csv"):read("a"):find(";-1", 1, true), "a re-run reuses niah/<cell>__s<seed>.json", out)
ok, out = run("./hyblua recipes/niah_grid.lua --grid " .. g .. args .. " --set samples=3")
T.ok(not ok and out:find("was computed with other settings than this run's: samples = 1 (this run: 3)", 1, true),
  "a re-run with other settings is refused, naming the file and the setting", out)
-- bad input
ok, out = run("./hyblua recipes/niah_grid.lua --grid " .. tmp .. "/nothing")
T.ok(not ok and out:find("cells not found", 1, true), "a directory that is no grid: a clear error", out)
ok, out = run("./hyblua recipes/niah_grid.lua --grid " .. g .. " --set tasks=[niah_single_9]")
T.ok(not ok and out:find("niah_single_9", 1, true), "an unknown task: a clear error", out)
os.execute("rm -rf " .. g .. "/niah")
ok, out = run("./hyblua recipes/niah_grid.lua --grid " .. g .. args:gsub("600", "100"))
T.ok(not ok and out:find("too small for task niah_single_1", 1, true), "a length below the prompt's: a clear error", out)
local tokf = tmp .. "/tok.json"
hb.tokenizer.train_bpe("tests/data/sample/texts/1790_george_washington_n.txt", 300):save(tokf)
ok, out = run("./hyblua recipes/niah_grid.lua --grid " .. g .. args .. " --set tokenizer=" .. tokf)
T.ok(not ok and out:find("has a 256-token vocabulary but the tokenizer has 300", 1, true),
  "a tokenizer of another vocabulary: a clear error", out)
local q = tmp .. "/mq"
ok = run("./hyblua recipes/paper_grid.lua --tiny --set grid.tasks=[mqar] --set grid.mixers=[gla] --set grid.seeds=1 " ..
  "--set grid.transformer=false --set threads=1 --out " .. q)
ok, out = run("./hyblua recipes/niah_grid.lua --grid " .. q .. args)
T.ok(not ok and out:find("no LM result", 1, true) and out:find("could be evaluated", 1, true),
  "an MQAR-only grid has no LM models: each is named, then a clear error", out)
os.execute("rm -rf " .. tmp)
T.done()
