-- tests/bench/op_overhead.lua [N] [ELEMS] — the fixed cost of one small tensor operation from Lua: N (default
-- 100000) each of x + y, x * y, silu(x) and sigmoid(x) on [1, 1, ELEMS] (default 1024) float32 tensors, one
-- thread, no autograd; prints µs per operation and the process's peak of live + cached tensor bytes.
-- The per-op part of a decode step (~1000 such operations per token at 340M) and of any Lua loop over small
-- tensors: the call, the result's storage (core/tensor.c's small tier) and its collection (lua/ltensor.c).
local hb = require "hyblua"
local n, elems = tonumber(arg[1] or "100000"), tonumber(arg[2] or "1024")
hb.set_num_threads(1)
local x, y = hb.randn({ 1, 1, elems }), hb.randn({ 1, 1, elems })
local ops = {
  { "add", function() return x + y end }, { "mul", function() return x * y end },
  { "silu", function() return hb.silu(x) end }, { "sigmoid", function() return hb.sigmoid(x) end },
}
hb.no_grad(function()
  for _, op in ipairs(ops) do
    local f, t0 = op[2], hb.now()
    for _ = 1, n do f() end
    print(string.format("%-8s %.2f us/op", op[1], 1e6 * (hb.now() - t0) / n))
  end
end)
local m = hb.memory_stats()
print(string.format("peak live %.1f MB, cached %.1f MB (small blocks %.1f MB)", m.peak / 1e6, m.cached / 1e6, m.cached_small / 1e6))
