-- test_threads.lua — results do not depend on the thread count (kernels/threads.c, docs/performance.md
-- "Threads"): two AdamW training steps of small models of several mixer types give bit-identical losses
-- and parameters with 1, 2, 3, 5 and 16 threads (more threads than cores and than (batch × head) items;
-- regions that wake fewer workers than the pool has), in the pool's simulation mode too; the pool's
-- accounting (hb.pool_stats) counts regions.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local configs = {
  { name = "gated_deltanet 3:1", cfg = { model_type = "gated_deltanet", hidden_size = 64, num_hidden_layers = 4, num_heads = 2,
    head_dim = 32, vocab_size = 96, attn = { layers = { 3 }, num_heads = 4, num_kv_heads = 4 } } },
  { name = "gla", cfg = { model_type = "gla", hidden_size = 64, num_hidden_layers = 2, num_heads = 2, vocab_size = 96 } },
  { name = "transformer", cfg = { model_type = "transformer", hidden_size = 64, num_hidden_layers = 2, num_heads = 4, vocab_size = 96 } },
  { name = "kda", cfg = { model_type = "kda", hidden_size = 64, num_hidden_layers = 2, num_heads = 2, head_dim = 32, vocab_size = 96 } },
  { name = "delta_net", cfg = { model_type = "delta_net", hidden_size = 64, num_hidden_layers = 2, num_heads = 2, vocab_size = 96 } },
}

-- a string that changes if any bit of the losses or of any parameter changes
local function fingerprint(m, losses)
  local parts = {}
  for _, l in ipairs(losses) do parts[#parts + 1] = string.format("%a", l) end
  for _, p in ipairs(m:parameters()) do
    parts[#parts + 1] = string.format("%a|%a", p:sum():item(), (p * p):sum():item())
  end
  return table.concat(parts, ",")
end

local function train(cfg, threads)
  hb.set_num_threads(threads)
  local m = hb.models.new(cfg, { seed = 3 })
  hb.manual_seed(4)
  local ids = hb.randint(0, cfg.vocab_size, { 2, 160 }, "int64") -- 160 = 2.5 chunks of 64
  local opt = hb.optim.AdamW(m:parameters(), { lr = 1e-2, betas = { 0.9, 0.95 }, weight_decay = 0.1 })
  local losses = {}
  for s = 1, 2 do
    opt:zero_grad()
    local loss = m:loss(ids)
    loss:backward()
    opt:step()
    losses[s] = loss:item()
  end
  return fingerprint(m, losses), losses[1]
end

local saved = hb.get_num_threads()
for _, c in ipairs(configs) do
  local ref, l1 = train(c.cfg, 1)
  T.ok(l1 == l1 and l1 > 0, c.name .. ": the 1-thread loss is finite", tostring(l1))
  for _, n in ipairs({ 2, 3, 5, 16 }) do
    local got = train(c.cfg, n)
    T.ok(got == ref, string.format("%s: %d threads give bit-identical losses and parameters to 1 thread", c.name, n))
  end
end

-- broadcast element-wise ops and the sums back to a broadcast source (core/ops.c binary_raw's strided path,
-- core/views.c sum_dim) run on the pool: large enough here to be split, and bit-identical for 1, 3 and 16
-- threads; the sums are those of float64 (they accumulate in double)
local function bcast(threads)
  hb.set_num_threads(threads)
  hb.manual_seed(11)
  local x = hb.randn(16, 1024, 96):requires_grad(true)
  local w = hb.randn(96):requires_grad(true)
  local r = hb.randn(16, 1, 96):requires_grad(true)
  local xt = x:transpose(1, 2)                    -- a strided operand: [1024, 16, 96]
  local y = (xt * w + r:transpose(1, 2)) * xt      -- broadcast over rows, over the middle dim, strided
  y:sum():backward()
  return string.format("%a|%a|%a|%a", y:sum():item(), w.grad:sum():item(), (w.grad * w.grad):sum():item(),
    (r.grad * r.grad):sum():item()), w, r, x, y
end
local ref, w1, r1, x1, y1 = bcast(1)
T.ok(bcast(3) == ref and bcast(16) == ref, "broadcast mul/add and their sums to the broadcast sources: bit-identical for 1, 3, 16 threads")
-- d/dw of sum((x w + r) x) is the sum of x² over the broadcast dims, d/dr the sum of x: compared with float64
local x64 = x1:detach():to("float64")
local gw = (x64 * x64):sum(1):sum(1)               -- [96]
local gr = x64:sum(2, true)                          -- [16, 1, 96]
local function reldiff(a, b) return (a - b):abs():max():item() / b:abs():max():item() end
local dw, dr = reldiff(w1.grad:to("float64"), gw), reldiff(r1.grad:to("float64"), gr)
-- elements of y against scalar arithmetic (positions in every range of rows the split makes)
local worst, xd, wd, rd, yd = 0, x1:detach(), w1:detach(), r1:detach(), y1:detach()
for s = 0, 400 do
  local i, j, k = 1 + (s * 37) % 1024, 1 + (s * 7) % 16, 1 + (s * 13) % 96
  local xv = xd:get(j, i, k)
  local want = (xv * wd:get(k) + rd:get(j, 1, k)) * xv
  worst = math.max(worst, math.abs(yd:get(i, j, k) - want) / math.max(1, math.abs(want)))
end
T.ok(worst < 1e-5, "the broadcast / strided products equal scalar arithmetic element by element", worst)
T.ok(dw < 1e-6 and dr < 1e-6, "the sums to the broadcast sources equal float64 sums (to float32 rounding)",
  string.format("%g %g", dw, dr))

-- the pool's accounting: every top-level region is counted once
hb.set_num_threads(4)
local s0 = hb.pool_stats()
local a = hb.randn(256, 256)
local _ = a:matmul(a)
local s1 = hb.pool_stats()
T.ok(s1.regions > s0.regions and s1.region_s >= s0.region_s, "hb.pool_stats counts the regions of a matrix product",
  string.format("%d → %d", s0.regions, s1.regions))
T.is(s1.threads, 4, "hb.pool_stats reports the thread count")
T.is(s1.simulated, false, "simulation mode is off unless asked for")
hb.set_num_threads(saved)


-- decode: the per-head state steps and the attention over the cache are regions of their own once their
-- memory traffic is worth a second thread (kernels/parallel.h: hb_state_step_work, hb_cache_read_work); the
-- logits of a decode are bit-identical for 1, 2, 5 and 16 threads, and the steps do run regions
do
  local cfg = { model_type = "gated_deltanet", hidden_size = 128, num_hidden_layers = 4, num_heads = 4, head_dim = 64,
    expand_v = 2, vocab_size = 64, attn = { layers = { 3 }, num_heads = 8, num_kv_heads = 8 } }
  local function decode(threads)
    hb.set_num_threads(threads)
    local m = hb.models.new(cfg, { seed = 5 })
    hb.manual_seed(6)
    local ids = hb.randint(0, 64, { 1, 520 }, "int64")
    local cache = m:new_cache(1)
    local parts = {}
    local r0 = hb.pool_stats().regions
    hb.no_grad(function()
      m:prefill(ids:narrow(2, 1, 512):contiguous(), cache)
      for i = 1, 8 do
        local lg = m:step(ids:narrow(2, 512 + i, 1):contiguous(), cache)
        parts[#parts + 1] = string.format("%a|%a", lg:sum():item(), (lg * lg):sum():item())
      end
    end)
    return table.concat(parts, ","), hb.pool_stats().regions - r0
  end
  local ref = decode(1)
  for _, n in ipairs({ 2, 5, 16 }) do
    local got, regions = decode(n)
    T.ok(got == ref, string.format("decode: %d threads give bit-identical logits to 1 thread", n))
    if n == 16 then T.ok(regions > 0, "decode steps run pool regions", tostring(regions)) end
  end
  hb.set_num_threads(saved)
end

-- simulation mode (HYBLUA_POOL_SIM=1) runs regions serially but splits work as for 16 threads: same result,
-- and a predicted region time no larger than the measured serial one (plus the modelled 3 µs fork/join per region)
local script = os.tmpname()
local f = assert(io.open(script, "w"))
f:write([[
local hb = require "hyblua"
hb.set_num_threads(16)
local cfg = { model_type = "gla", hidden_size = 64, num_hidden_layers = 2, num_heads = 2, vocab_size = 96 }
local m = hb.models.new(cfg, { seed = 3 })
hb.manual_seed(4)
local ids = hb.randint(0, 96, { 2, 160 }, "int64")
local s0 = hb.pool_stats()
local l = m:loss(ids)
l:backward()
local s1 = hb.pool_stats()
print(string.format("%a %s %.9f %.9f", l:item(), tostring(s1.simulated), s1.sim_s - s0.sim_s, s1.items_s - s0.items_s + 3e-6 * (s1.regions - s0.regions)))
]])
f:close()
local function run(env)
  local p = io.popen(env .. " ./hyblua " .. script .. " 2>&1")
  local out = p:read("a")
  p:close()
  return out
end
local plain, sim = run("HYBLUA_POOL_SIM=0"), run("HYBLUA_POOL_SIM=1 HYBLUA_POOL_SIM_OVERHEAD_US=3")
os.remove(script)
local lp = plain:match("^(%S+) false")
local ls, sim_s, items_s = sim:match("^(%S+) true (%S+) (%S+)")
T.ok(lp ~= nil and ls == lp, "simulation mode gives the same loss as normal mode", plain .. " / " .. sim)
T.ok(tonumber(sim_s) and tonumber(sim_s) > 0 and tonumber(sim_s) <= tonumber(items_s),
  "simulation mode predicts a region time between 0 and the serial time", sim)

T.done()
