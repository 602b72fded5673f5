-- tests/bench/scaling.lua [THREADS] [STEPS] — the thread-scaling section of the benchmark (issue 15), no Python:
-- `tests/bench/run.sh --scaling` (or `make bench BENCH_ARGS=--scaling`) runs it after building ./hyblua and
-- build/bench/kernels_bench.
--
-- THREADS: comma list of thread counts (default 1,2,4,8,16); STEPS timed training steps (default 3, best of).
-- Every measurement is a fresh process with HYBLUA_NUM_THREADS=n (OpenBLAS stays at 1 thread: the pool does
-- all the parallelism), in this order per thread count, so that a drifting machine load hits all counts alike:
--   training  tests/bench/train_step.lua bench on the bench's d 512 / T 2048 configs (4 layers, vocab 4096,
--             B 2 = 4096 tokens per step): gated_deltanet 3:1, gla, transformer → tokens/s, and inference
--             on the same models: prefill tokens/s of a 256-token prompt and decode tokens/s (batch 1)
--   kernels   kernels_bench train gla / gdelta at T 2048, D 64 and 128 (fwd + bwd) → GFLOP/s
--   gemm      kernels_bench gemm NT:4096:1536:512 (hb_matmul fp32: the d 512 MLP product) → GFLOP/s; the
--             kernels' "sgemm ratio" is their GFLOP/s over this one at the same thread count
-- The table gives each figure, its speed-up over 1 thread and the parallel efficiency (speed-up / threads).
local hb = require "hyblua"

local threads = {}
for n in (arg[1] or "1,2,4,8,16"):gmatch("%d+") do threads[#threads + 1] = tonumber(n) end
local steps = tonumber(arg[2] or "3")
local work = os.tmpname()
os.remove(work)
assert(os.execute("mkdir -p " .. work))

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>" .. work .. "/err.txt"))
  local out = p:read("a")
  local ok = p:close()
  local last
  for line in out:gmatch("[^\n]+") do if line:sub(1, 1) == "{" then last = line end end
  if not ok or not last then
    local f = io.open(work .. "/err.txt")
    local err = f and f:read("a") or ""
    if f then f:close() end
    error("scaling: command failed: " .. cmd .. "\n" .. out .. err)
  end
  return hb.io.decode_json(last)
end

local models = {
  { name = "gated_deltanet 3:1", cfg = { model_type = "gated_deltanet", hidden_size = 512, num_hidden_layers = 4,
    vocab_size = 4096, num_heads = 6, head_dim = 64, attn = { layers = { 3 }, num_heads = 8, num_kv_heads = 8 } } },
  { name = "gla", cfg = { model_type = "gla", hidden_size = 512, num_hidden_layers = 4, vocab_size = 4096, num_heads = 8 } },
  { name = "transformer", cfg = { model_type = "transformer", hidden_size = 512, num_hidden_layers = 4, vocab_size = 4096,
    num_heads = 8 } },
}
local B, T = 2, 2048
for i, m in ipairs(models) do
  m.dir = string.format("%s/m%d", work, i)
  local f = assert(io.open(m.dir .. ".json", "w"))
  f:write(hb.io.encode_json(m.cfg))
  f:close()
  m.params = run(string.format("HYBLUA_NUM_THREADS=1 ./hyblua tests/bench/train_step.lua init %s.json %s 1 %d %d", m.dir, m.dir, B, T)).params
end

local kernels = { { "gla", 64 }, { "gla", 128 }, { "gdelta", 64 }, { "gdelta", 128 } }
local rows = {} -- rows[name][threads] = value
local order = {}
local function put(name, unit, n, v)
  if not rows[name] then rows[name] = { unit = unit }; order[#order + 1] = name end
  rows[name][n] = v
  -- each figure also goes to stderr at once, so that a run cut short still leaves what it measured
  io.stderr:write(string.format('scaling-row {"name": "%s", "unit": "%s", "threads": %d, "value": %.6g}\n', name, unit, n, v))
end

local env = "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 HYBLUA_NUM_THREADS="
for _, n in ipairs(threads) do
  io.stderr:write(string.format("scaling: %d thread(s)\n", n))
  for _, m in ipairs(models) do
    local r = run(string.format("%s%d ./hyblua tests/bench/train_step.lua bench %s %d 1 0 256 16", env, n, m.dir, steps))
    put("train " .. m.name, "tok/s", n, B * T / r.train.best_s)
    -- the step's parts (best of the steps each) and, for the best step, the share of its time outside the
    -- pool's parallel regions (serial: Lua, dispatch, unparallelised ops)
    local ib = 1
    for i, t in ipairs(r.train.total) do if t < r.train.total[ib] then ib = i end end
    for _, part in ipairs({ "fwd", "bwd", "opt" }) do
      local best = math.huge
      for _, t in ipairs(r.train[part]) do best = math.min(best, t) end
      put(string.format("train %s: %s", m.name, part), "tok/s", n, B * T / best)
      local reg = r.train.region_s and r.train.region_s[ib]
      if reg then
        put(string.format("train %s: %s serial share", m.name, part), "share", n,
          math.max(0, r.train[part][ib] - reg[part]) / r.train[part][ib])
      end
    end
    put("prefill " .. m.name, "tok/s", n, r.decode.prompt / r.decode.prefill_s)
    put("decode b1 " .. m.name, "tok/s", n, 1 / r.decode.median_step_s)
  end
  local g = run(string.format("%s%d build/bench/kernels_bench gemm NT:4096:1536:512 3", env, n))
  put("gemm fp32 4096x1536x512", "GFLOP/s", n, g.gflops_fp32)
  -- model FLOPs utilisation against this gemm at the same thread count (6·N·tokens: the mixers' and
  -- attention's own FLOPs are left out, so this is a lower bound)
  for _, m in ipairs(models) do
    put("train " .. m.name .. ": MFU (6·N·tokens / gemm)", "ratio", n,
      6 * m.params * rows["train " .. m.name][n] / (g.gflops_fp32 * 1e9))
  end
  for _, k in ipairs(kernels) do
    local r = run(string.format("%s%d build/bench/kernels_bench train %s 2048 %d 3", env, n, k[1], k[2]))
    local gf = (r.flops_fwd + r.flops_bwd) / r.total_best_s / 1e9
    put(string.format("kernel %s D %d fwd+bwd", k[1], k[2]), "GFLOP/s", n, gf)
    put(string.format("kernel %s D %d / gemm", k[1], k[2]), "ratio", n, gf / g.gflops_fp32)
  end
end
os.execute("rm -rf " .. work)
-- measured in the order given (e.g. 1,16,8,4,2 puts the extremes first); shown in increasing order, the
-- smallest thread count as the base of the speed-ups
table.sort(threads)

local out = {}
local function emit(s) out[#out + 1] = s; print(s) end
local f = io.open("/proc/cpuinfo")
local cpu = f and f:read("a"):match("model name%s*:%s*([^\n]+)") or "?"
if f then f:close() end
local p = io.popen("env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc")
local ncpu = p:read("l")
p:close()
emit(string.format("## Thread scaling (%s, %s CPUs, %s UTC; best of %d steps)", cpu, ncpu, os.date("!%Y-%m-%d %H:%M"), steps))
emit("")
local head = { "| figure | unit |" }
local sep = { "|---|---|" }
for _, n in ipairs(threads) do head[#head + 1] = string.format(" %d thr |", n); sep[#sep + 1] = "---:|" end
for _, n in ipairs(threads) do
  if n ~= threads[1] then head[#head + 1] = string.format(" ×%d (eff) |", n); sep[#sep + 1] = "---:|" end
end
emit(table.concat(head))
emit(table.concat(sep))
for _, name in ipairs(order) do
  local r = rows[name]
  local line = { string.format("| %s | %s |", name, r.unit) }
  for _, n in ipairs(threads) do
    line[#line + 1] = string.format((r.unit == "ratio" or r.unit == "share") and " %.2f |" or " %.4g |", r[n])
  end
  for _, n in ipairs(threads) do
    if n ~= threads[1] then
      local s = r[n] / r[threads[1]]
      line[#line + 1] = (r.unit == "ratio" or r.unit == "share") and " — |" or string.format(" %.2f (%.0f%%) |", s, 100 * s / (n / threads[1]))
    end
  end
  emit(table.concat(line))
end
emit("")
emit("Targets (issue 15): training at 16 threads ≥ 12× 1 thread; kernels ≥ 0.5 of the gemm; decode vs the memory")
emit("bandwidth bound is not measured here (the 340M / 1.3B inference configs are not part of this section yet).")

-- kept for docs/performance.md: tests/bench/harness.py copies this file into its "Threads" section
local o = io.open("tests/bench/results/scaling.md", "w")
if o then o:write(table.concat(out, "\n"), "\n"); o:close() end
