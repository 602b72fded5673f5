-- test_grid_sweep.lua — paper_grid's MQAR learning-rate sweep (mqar.lrs) at tiny size, MQAR only: every rate is
-- recorded in the cell's mqar_sweep, the cell keeps the best (the first on a tie), each rate's result equals a
-- run without the sweep at that rate (same initialisation and batches), a resumed cell-seed reads the rates
-- already finished instead of training them again, and a repeated rate is a clear error.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local run, exists = T.run, T.exists

local base = "./hyblua recipes/paper_grid.lua --tiny --set grid.tasks=[mqar] --set grid.mixers=[gla] --set grid.ratios=[0] " ..
  "--set grid.transformer=false --set grid.seeds=1 --set mqar.steps=20 --set threads=1 --set data.cache=" .. tmp .. "/cache"
local lrs = { 1e-4, 1e-2, 3e-3 }
local ok, out = run(base .. " --set mqar.lrs=[0.0001,0.01,0.003] --out " .. tmp .. "/sweep")
T.ok(ok and out:find("grid: 1 cells × 1 seed(s)", 1, true), "a tiny MQAR-only grid with a sweep of three rates runs", out:sub(-600))
local cellp = tmp .. "/sweep/cells/gla_pure__s0.json"
local r = exists(cellp) and hb.io.read_json(cellp) or {}
local sw = r.mqar_sweep or {}
T.is(#sw, 3, "mqar_sweep records every rate")
local order_ok, best = true, nil
for i, s in ipairs(sw) do
  if s.lr ~= lrs[i] or type(s.accuracy) ~= "number" or not (s.by_kv and s.by_kv.kv4) or type(s.train_loss_last) ~= "number" then
    order_ok = false
  end
  if not best or s.accuracy > best.accuracy then best = s end
end
T.ok(order_ok, "each rate in the order given, with its accuracy, per-kv accuracy and final training loss")
T.ok(best and r.mqar_acc == best.accuracy and r.mqar_lr == best.lr and r.mqar_by_kv.kv4 == best.by_kv.kv4
  and r.mqar_train_loss_last == best.train_loss_last, "the cell keeps the best rate (the first on a tie)",
  best and string.format("kept lr %s acc %s; best lr %s acc %s", tostring(r.mqar_lr), tostring(r.mqar_acc), best.lr, best.accuracy))
T.ok(r.attn_share == 0 and r.params and r.params > 0 and r.layers == "LLLLLL", "an MQAR-only cell records its structure",
  tostring(r.layers))
local seeds_csv = io.open(tmp .. "/sweep/grid_seeds.csv"):read("a")
T.ok(seeds_csv:find(",mqar_lr,", 1, true), "grid_seeds.csv has the kept rate (mqar_lr)", seeds_csv)

-- a rate of the sweep is the run without a sweep at that rate: same initialisation, batches and data
ok, out = run(base .. " --set mqar.lr=0.01 --out " .. tmp .. "/single")
local s1 = exists(tmp .. "/single/cells/gla_pure__s0.json") and hb.io.read_json(tmp .. "/single/cells/gla_pure__s0.json") or {}
T.ok(ok and s1.mqar_sweep == nil and s1.mqar_lr == 0.01 and sw[2] and s1.mqar_acc == sw[2].accuracy
  and s1.mqar_train_loss_last == sw[2].train_loss_last, "without mqar.lrs: one run at mqar.lr, equal to the sweep's run at that rate",
  string.format("%s %s vs %s %s", tostring(s1.mqar_acc), tostring(s1.mqar_train_loss_last), tostring(sw[2] and sw[2].accuracy),
    tostring(sw[2] and sw[2].train_loss_last)))
T.ok(exists(tmp .. "/single/ckpt/gla_pure__s0-mqar") and not exists(tmp .. "/single/ckpt/gla_pure__s0-mqar-lr0.01.json"),
  "without a sweep the checkpoint keeps its old name (grids from before mqar.lrs resume)")

-- resuming: a finished rate is read from ckpt/<cell>-mqar-lr<lr>.json, not trained again
local part = tmp .. "/sweep/ckpt/gla_pure__s0-mqar-lr0.0001.json"
local p = exists(part) and hb.io.read_json(part) or {}
p.seconds = -1 -- a marker: only a record read back from this file carries it
hb.io.write_json(part, p)
os.remove(cellp)
ok, out = run(base .. " --set mqar.lrs=[0.0001,0.01,0.003] --out " .. tmp .. "/sweep")
local r2 = exists(cellp) and hb.io.read_json(cellp) or {}
T.ok(ok and r2.mqar_sweep and r2.mqar_sweep[1].seconds == -1 and r2.mqar_acc == r.mqar_acc and r2.mqar_lr == r.mqar_lr,
  "a resumed cell-seed reads its finished rates and keeps the same best", out:sub(-400))

ok, out = run(base .. " --set mqar.lrs=[0.001,1e-3] --out " .. tmp .. "/bad")
T.ok(not ok and out:find("config key 'mqar.lrs' must not list a learning rate twice", 1, true), "a repeated rate is a clear error", out)
-- mqar.lr_select = first_seed: seed 0 sweeps, seeds 1 and 2 train once at seed 0's rate; --jobs runs each rate as a
-- job of its own and gives the same records as the serial run
local fs = base:gsub("grid.seeds=1", "grid.seeds=3") .. " --set mqar.lrs=[0.0001,0.01] --set mqar.lr_select=first_seed"
local function strip(rec)
  rec.seconds, rec.mqar_seconds, rec.lm_seconds, rec.threads = nil, nil, nil, nil
  for _, x in ipairs(rec.mqar_sweep or {}) do x.seconds = nil end
  return rec
end
ok, out = run(fs .. " --out " .. tmp .. "/fs1")
local ok2, out2 = run(fs .. " --out " .. tmp .. "/fs2 --jobs 2")
T.ok(ok and ok2, "first_seed: serial and --jobs 2 runs finish", out:sub(-300) .. out2:sub(-300))
local f0 = exists(tmp .. "/fs1/cells/gla_pure__s0.json") and hb.io.read_json(tmp .. "/fs1/cells/gla_pure__s0.json") or {}
local later_ok, same = true, true
for s = 0, 2 do
  local a = tmp .. "/fs1/cells/gla_pure__s" .. s .. ".json"
  local b = tmp .. "/fs2/cells/gla_pure__s" .. s .. ".json"
  local ra, rb = exists(a) and strip(hb.io.read_json(a)) or {}, exists(b) and strip(hb.io.read_json(b)) or {}
  if s > 0 and not (ra.mqar_sweep and #ra.mqar_sweep == 1 and ra.mqar_lr == f0.mqar_lr and ra.mqar_lr_from_seed == 0) then
    later_ok = false
  end
  if hb.io.encode_json(ra) ~= hb.io.encode_json(rb) then same = false end
  if ra.mqar_acc ~= rb.mqar_acc or ra.mqar_lr ~= rb.mqar_lr or ra.mqar_train_loss_last ~= rb.mqar_train_loss_last then same = false end
end
T.ok(f0.mqar_sweep and #f0.mqar_sweep == 2, "first_seed: the first seed sweeps both rates")
T.ok(later_ok, "first_seed: seeds 1 and 2 train once, at the rate seed 0 kept (mqar_lr_from_seed = 0)")
T.ok(same, "first_seed: --jobs 2 (one job per rate) gives the serial run's records")
T.ok(exists(tmp .. "/fs2/logs/gla_pure__s0-lr0.0001.out") and exists(tmp .. "/fs2/logs/gla_pure__s1-lr" ..
  string.format("%g", f0.mqar_lr or 0) .. ".out"), "--jobs: each rate ran as its own job (logs/<cell>__s<seed>-lr<lr>.out)")
-- a later seed alone, before its first seed has a result: a clear error naming what is missing
ok, out = run(fs .. " --out " .. tmp .. "/fs3 --set grid.only=gla_pure__s1")
T.ok(not ok and out:find("mqar.lr_select=first_seed", 1, true) and out:find("gla_pure__s0", 1, true),
  "first_seed: a later seed before the first has a result is a clear error", out)
ok, out = run(base .. " --set mqar.lrs=[0.001] --set mqar.lr_select=best --out " .. tmp .. "/bad2")
T.ok(not ok and out:find("mqar.lr_select", 1, true), "an unknown mqar.lr_select is refused", out)


-- grid.matmul_precision: bf16 training reaches hb.train (the records say so and the arithmetic differs), and a
-- grid's records never mix precisions: resuming or reporting an --out of the other precision is an error
ok, out = run(base .. " --set mqar.lr=0.01 --set grid.matmul_precision=bf16 --out " .. tmp .. "/bf16")
local b1 = exists(tmp .. "/bf16/cells/gla_pure__s0.json") and hb.io.read_json(tmp .. "/bf16/cells/gla_pure__s0.json") or {}
T.ok(ok and b1.matmul_precision == "bf16" and s1.matmul_precision == "fp32", "records carry the matmul precision they were trained at",
  tostring(b1.matmul_precision) .. " / " .. tostring(s1.matmul_precision) .. out:sub(-300))
T.ok(type(b1.mqar_train_loss_last) == "number" and b1.mqar_train_loss_last ~= s1.mqar_train_loss_last,
  "bf16 products change the training (final loss differs from the fp32 run's)",
  tostring(b1.mqar_train_loss_last) .. " vs " .. tostring(s1.mqar_train_loss_last))
ok, out = run(base .. " --set mqar.lr=0.01 --set grid.matmul_precision=bf16 --out " .. tmp .. "/single")
T.ok(not ok and out:find("grid.matmul_precision = \"fp32\" (this run: \"bf16\")", 1, true) and out:find("gla_pure__s0.json", 1, true),
  "resuming an fp32 grid in bf16 is refused, naming the record", out)
ok, out = run(base .. " --set mqar.lr=0.01 --set grid.plot_only=true --out " .. tmp .. "/bf16")
T.ok(not ok and out:find("grid.matmul_precision = \"bf16\" (this run: \"fp32\")", 1, true), "reporting a bf16 grid without saying so is refused", out)
ok, out = run(base .. " --set mqar.lr=0.01 --set grid.plot_only=true --set grid.matmul_precision=bf16 --out " .. tmp .. "/bf16")
T.ok(ok, "and with grid.matmul_precision=bf16 it reports", out:sub(-300))
ok, out = run(base .. " --set grid.matmul_precision=fp16 --out " .. tmp .. "/bad3")
T.ok(not ok and out:find("matmul_precision", 1, true), "an unknown precision is refused", out)


-- every record carries what it was trained with, so a re-run with other settings in the same --out is refused
-- (before config.yaml is rewritten) instead of reporting the old cells as trained with the new settings
do
  local cfg0 = io.open(tmp .. "/single/config.yaml"):read("a")
  ok, out = run(base .. " --set mqar.lr=0.01 --set mqar.steps=25 --out " .. tmp .. "/single")
  T.ok(not ok and out:find("gla_pure__s0.json was trained with other settings than this run's: mqar.steps = 20 (this run: 25)", 1, true),
    "another mqar.steps in the same --out is refused, naming the record and the setting", out)
  T.is(io.open(tmp .. "/single/config.yaml"):read("a"), cfg0, "and config.yaml still describes the records")
  ok, out = run(base .. " --set mqar.lr=0.01 --set model.hidden_size=40 --set mqar.train_kv=[2,3] --out " .. tmp .. "/single")
  T.ok(not ok and out:find("model.hidden_size = 32 (this run: 40)", 1, true) and out:find("mqar.train_kv = [2,4] (this run: [2,3])", 1, true),
    "several differing settings are all named", out)
  ok, out = run(base .. " --set mqar.lr=0.01 --set grid.jobs=2 --set threads=2 --out " .. tmp .. "/single")
  T.ok(ok and out:find("0 of 1 cell-seeds to train", 1, true), "the run's mechanics (jobs, threads) are not part of it: the cell is reused", out:sub(-300))
  -- a finished rate of a sweep is checked too (its part record)
  ok, out = run(base .. " --set mqar.lrs=[0.0001,0.01,0.003] --set mqar.steps=21 --set grid.only=gla_pure__s0 --set grid.only_lr=0.01 --out " .. tmp .. "/sweep")
  T.ok(not ok and out:find("-mqar-lr0.01.json was trained with other settings than this run's: mqar.steps = 20 (this run: 21)", 1, true),
    "a sweep's finished rate with other settings is refused", out)
end

ok, out = run("./hyblua recipes/paper_grid.lua --help")
T.ok(ok and out:find("mqar.lrs", 1, true) and out:find("mqar.warmup", 1, true), "--help lists mqar.lrs and mqar.warmup")
os.execute("rm -rf " .. tmp)
T.done()
