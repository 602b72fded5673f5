-- test_grid_merge.lua — recipes/grid_merge.lua: an LM-only and an MQAR-only tiny grid of the same cells
-- merge into records with both tasks (structure from the LM record, mqar_* from the MQAR one, seconds
-- summed), which paper_grid's report reads as one grid; a second run is harmless; a cell that differs, a
-- cell-seed the LM grid lacks and missing arguments are clear errors.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local run, exists = T.run, T.exists
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local base = "./hyblua recipes/paper_grid.lua --tiny --set grid.mixers=[gla] --set grid.seeds=1 --set threads=1 " ..
  "--set lm.steps=4 --set mqar.steps=4 "
local ok, out = run(base .. "--set grid.tasks=[lm] --out " .. tmp .. "/lm")
T.ok(ok, "a tiny LM-only grid", out:sub(-300))
ok, out = run(base .. "--set grid.tasks=[mqar] --out " .. tmp .. "/mq")
T.ok(ok, "a tiny MQAR-only grid of the same cells", out:sub(-300))

ok, out = run("./hyblua recipes/grid_merge.lua --lm " .. tmp .. "/lm --mqar " .. tmp .. "/mq --out " .. tmp .. "/all")
T.ok(ok and out:find("grid_merge: 3 merged, 0 already complete, 0 without an LM record", 1, true),
  "the three cell-seeds (gla pure, gla 3:1, Transformer) merge", out)
local l = hb.io.read_json(tmp .. "/lm/cells/gla_3to1__s0.json")
local q = hb.io.read_json(tmp .. "/mq/cells/gla_3to1__s0.json")
local a = exists(tmp .. "/all/cells/gla_3to1__s0.json") and hb.io.read_json(tmp .. "/all/cells/gla_3to1__s0.json") or {}
T.ok(a.lm_val_bpb == l.lm_val_bpb and a.mqar_acc == q.mqar_acc and a.mqar_lr == q.mqar_lr and a.params == l.params
  and a.params ~= q.params and math.abs(a.seconds - (l.seconds + q.seconds)) < 1e-9 and a.mqar_from == tmp .. "/mq",
  "merged record: LM fields and structure (params at the LM vocabulary) + MQAR fields, seconds summed", hb.io.encode_json(a))

-- the report reads the merged cells as one grid with both tasks
ok, out = run(base .. "--set grid.tasks=[lm,mqar] --set grid.plot_only=true --out " .. tmp .. "/all")
local md = exists(tmp .. "/all/grid.md") and io.open(tmp .. "/all/grid.md"):read("a") or ""
T.ok(ok and md:find(string.format("%.4f", l.lm_val_bpb), 1, true) and md:find(string.format("| %.3f |", q.mqar_acc), 1, true),
  "paper_grid's report of the merged directory shows the LM bpb and the MQAR accuracy", out:sub(-300) .. md:sub(1, 1200))

-- in place, twice: the second run finds every record complete
ok, out = run("./hyblua recipes/grid_merge.lua --lm " .. tmp .. "/lm --mqar " .. tmp .. "/mq")
local ok2, out2 = run("./hyblua recipes/grid_merge.lua --lm " .. tmp .. "/lm --mqar " .. tmp .. "/mq")
T.ok(ok and ok2 and out2:find("0 merged, 3 already complete", 1, true), "merging in place twice is harmless", out2)

-- errors
local q2 = tmp .. "/mq2"
hb.data.mkdir(q2); hb.data.mkdir(q2 .. "/cells")
q.layers = "LLAL"
hb.io.write_json(q2 .. "/cells/gla_3to1__s0.json", q)
ok, out = run("./hyblua recipes/grid_merge.lua --lm " .. tmp .. "/lm --mqar " .. q2)
T.ok(not ok and out:find("differ in layers", 1, true), "records of different cells are refused, naming the field", out)
q.layers = l.layers
hb.io.write_json(q2 .. "/cells/gla_3to1__s0.json", q)
q.seed = 5 -- an MQAR record of a seed the LM grid has not trained
hb.io.write_json(q2 .. "/cells/gla_3to1__s5.json", q)
ok, out = run("./hyblua recipes/grid_merge.lua --lm " .. tmp .. "/lm --mqar " .. q2)
T.ok(not ok and out:find("gla_3to1__s5.json has no LM record", 1, true) and
  hb.io.read_json(q2 .. "/cells/gla_3to1__s0.json").lm_val_bpb == nil,
  "a cell-seed the LM grid lacks is an error, and nothing is written", out)
ok, out = run("./hyblua recipes/grid_merge.lua --lm " .. tmp .. "/lm --mqar " .. q2 .. " --set partial=true")
T.ok(ok and out:find("1 merged, 0 already complete, 1 without an LM record (gla_3to1__s5.json)", 1, true),
  "--set partial=true merges what it can and lists the rest", out)
ok, out = run("./hyblua recipes/grid_merge.lua --mqar " .. q2)
T.ok(not ok and out:find("--lm DIR is required", 1, true), "a missing --lm is an error", out)
ok, out = run("./hyblua recipes/grid_merge.lua --lm " .. tmp .. "/nope --mqar " .. q2)
T.ok(not ok and out:find("nope/cells not found", 1, true), "a directory without cells/ is an error", out)
os.execute("rm -rf " .. tmp)
T.done()
