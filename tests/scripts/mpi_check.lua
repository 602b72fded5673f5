-- tests/scripts/mpi_check.lua — the body of tests/test_mpi.sh, run by the plain ./hyblua once
-- ./hyblua-mpi is built: data-parallel training under mpirun against one process (TAP).
--
-- Tolerance: N ranks with B/N rows each compute the same global-mean gradient as one process with B
-- rows, except for the order of float32 additions (per-rank partial sums over B·T/N rows, then a sum
-- of N partial results in the allreduce, scaled by 1/N). That perturbs each gradient by a few float32
-- ulps (~1e-7 relative), which 12 AdamW steps carry into the losses at about the same size (we observe
-- ≤ 1e-7). We require every step's loss within 1e-5 relative: 100× the observed noise, while a wrong
-- slice, a missing average or a skipped rank changes the losses by 1e-3 or more.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local TOL = 1e-5

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)
local function slurp(p)
  local f = io.open(p, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- a container without network: shared memory only, no single-copy (ptrace) mechanism, ranks that
-- yield when idle (they outnumber the cores); one thread per rank; Open MPI leaks under LeakSanitizer
local ENV = "OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1 " ..
  "OMPI_MCA_orte_base_help_aggregate=0 OMPI_MCA_rmaps_base_oversubscribe=1 HYBLUA_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0"
local AS_ROOT = (io.popen("id -u"):read("l") == "0") and " --allow-run-as-root" or ""
local n_run = 0
-- run a command; returns ok, stdout, stderr, seconds
local function run(cmd)
  n_run = n_run + 1
  local o, e = string.format("%s/%d.out", tmp, n_run), string.format("%s/%d.err", tmp, n_run)
  local t0 = hb.now()
  local ok = os.execute(string.format("%s > %s 2> %s", cmd, o, e))
  return ok == true, slurp(o), slurp(e), hb.now() - t0
end
local function mpirun(n, args)
  return run(string.format("%s timeout 120 mpirun --oversubscribe%s -np %d ./hyblua-mpi %s", ENV, AS_ROOT, n, args))
end
-- loss of each step in a metrics log (the last record wins: a resumed run appends)
local function losses(dir)
  local t = {}
  for line in io.lines(dir .. "/metrics.jsonl") do
    local r = hb.io.decode_json(line)
    if r.loss then t[r.step] = r end
  end
  return t
end
local function max_rel(a, b, from, to)
  local m = 0
  for s = from, to do
    if not (a[s] and b[s]) then return math.huge end
    m = math.max(m, math.abs(a[s].loss - b[s].loss) / math.abs(a[s].loss))
  end
  return m
end

local RECIPE = "recipes/gdn_3to1.lua --tiny --set train.batch_size=4 --set train.steps=12 --set train.save_every=6 " ..
  "--set train.check_every=1 --set threads=1 --set eval.probe=2 --set eval.val_tokens=256"

-- 1. the reference: one process, global batch 4
local ref = tmp .. "/ref"
local ok, _, err = run(string.format("HYBLUA_NUM_THREADS=1 ./hyblua %s --set out=%s", RECIPE, ref))
T.ok(ok, "reference run: one process, batch 4, 12 steps", err)
local L1 = losses(ref)

-- 2. the default build refuses data_parallel with a clear message
ok, _, err = run(string.format("./hyblua %s --set out=%s/nompi --set train.data_parallel=true", RECIPE, tmp))
T.ok(not ok and err:find("this hyblua was built without MPI; rebuild with make MPI=1", 1, true),
  "./hyblua without MPI: data_parallel fails with 'rebuild with make MPI=1'", err)

-- 3. two ranks × batch 2 = the same global batch; 50 KB buckets split the 0.6 MB of gradients (and
-- tensors) across a dozen all-reduces
local dp2 = tmp .. "/dp2"
local out, dt
ok, out, err, dt = mpirun(2, string.format("%s --set train.data_parallel=true --set train.bucket_mb=0.05 --set out=%s",
  RECIPE, dp2))
T.ok(ok, string.format("mpirun -np 2: data-parallel run completes (%.1f s)", dt), err)
local L2 = ok and losses(dp2) or {}
local rel = max_rel(L1, L2, 1, 12)
T.ok(rel <= TOL, string.format("2 ranks vs 1 process: every loss within rel %g (max rel diff %.2e)", TOL, rel))
T.diag(string.format("max relative loss difference, 2 ranks vs 1 process over 12 steps: %.3e", rel))
T.ok(L2[12] and L2[12].ranks == 2 and type(L2[12].allreduce_s) == "number" and L2[12].tokens == L1[12].tokens,
  "the log (rank 0 only) records ranks, allreduce_s and the global token count")
local n12 = 0
for line in io.lines(dp2 .. "/metrics.jsonl") do
  local r = hb.io.decode_json(line)
  if r.step == 12 and r.loss then n12 = n12 + 1 end
end
T.is(n12, 1, "exactly one rank wrote the log (one loss record of step 12)")

-- 4. weights are bit-identical across ranks (an explicit check besides the run's own per-step check)
local drv = tmp .. "/drv"
ok, out, err = mpirun(2, string.format("tests/scripts/mpi_train.lua %s 5", drv))
local c0, c1 = out:match("rank 0 checksum (%-?%d+)"), out:match("rank 1 checksum (%-?%d+)")
T.ok(ok and c0 and c0 == c1, "weights checksum equal on both ranks after 5 steps", out .. err)
ok, out, err = mpirun(2, string.format("tests/scripts/mpi_train.lua %s2 5", drv))
T.ok(ok and out:match("rank 0 checksum (%-?%d+)") == c0, "a second 2-rank run ends with bit-identical weights", out .. err)

-- 5. drifting weights stop the job loudly, naming the step and the rank
ok, out, err, dt = mpirun(2, string.format("tests/scripts/mpi_train.lua %s/drift 6 drift", tmp))
T.ok(not ok and err:find("the weights after step 3 differ across ranks (rank 1 differs from rank 0)", 1, true),
  string.format("a rank whose weights drift ends the job: step and rank named (%.1f s)", dt), err)

-- 6. a Lua error on one rank aborts every rank instead of hanging; the last checkpoint stays loadable
local fail = tmp .. "/fail"
ok, out, err, dt = mpirun(2, string.format("tests/scripts/mpi_train.lua %s 6 fail", fail))
T.ok(not ok and err:find("injected failure on rank 1 at step 3", 1, true) and err:find("rank 1 of 2 stopped", 1, true)
  and dt < 60, string.format("an error on rank 1 ends the whole job with its message (%.1f s)", dt), err)
local ck = hb.train_utils.checkpoints(fail)[1]
T.ok(ck and ck.step >= 1 and pcall(hb.load_pretrained, ck.path), "the last checkpoint before the failure loads",
  ck and ck.path)

-- 7. resume with a different rank count: drop the final checkpoint, continue from step 6 on 4 ranks
os.execute(string.format("rm -rf %s/ckpt-00000012 %s/model", dp2, dp2))
ok, out, err = mpirun(4, string.format("%s --set train.data_parallel=true --set out=%s", RECIPE, dp2))
T.ok(ok and err:find("resuming from " .. dp2 .. "/ckpt-00000006", 1, true), "4 ranks resume the 2-rank run from step 6", err)
local L4 = ok and losses(dp2) or {}
rel = max_rel(L1, L4, 7, 12)
T.ok(rel <= TOL and L4[12] and L4[12].ranks == 4,
  string.format("resumed on 4 ranks: steps 7-12 match the single process within rel %g (max %.2e)", TOL, rel))

-- 8. configuration errors every rank agrees on
ok, out, err = mpirun(3, string.format("%s --set train.data_parallel=true --set out=%s/np3", RECIPE, tmp))
T.ok(not ok and err:find("the global batch of 4 rows is not divisible by 3 ranks", 1, true),
  "a global batch not divisible by the rank count is refused", err)
ok, out, err = mpirun(2, string.format("%s --set out=%s/nodp", RECIPE, tmp))
T.ok(not ok and err:find("train.data_parallel is false", 1, true), "mpirun without train.data_parallel is refused", err)

os.execute("rm -rf " .. tmp)
T.done()
