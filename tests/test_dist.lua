-- test_dist.lua — the data-parallel helpers (hb.dist) in the default, MPI-free build: the slicing
-- contract, canonical config comparison, and the error that asks for `make MPI=1`. The MPI runs
-- themselves are tests/test_mpi.sh.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

T.ok(hb.mpi == nil and not hb.dist.available(), "./hyblua has no hb.mpi")
local NO_MPI = "this hyblua was built without MPI; rebuild with make MPI=1"
T.raises(function() hb.dist.init() end, NO_MPI, "hb.dist.init() asks for make MPI=1")
local m = hb.models.new({ model_type = "gated_deltanet", hidden_size = 16, num_hidden_layers = 1, num_heads = 1,
  head_dim = 16, vocab_size = 32 }, { seed = 1 })
T.raises(function()
  hb.train { model = m, steps = 1, data_parallel = true, progress = false,
    batch = function(k) return hb.train_utils.synthetic_batch(k, 2, 9, 32) end }
end, "data_parallel: " .. NO_MPI, "hb.train{data_parallel=true} asks for make MPI=1")

-- rank r of N takes rows r·B/N+1 .. (r+1)·B/N: disjoint, in order, covering the batch
local covered, ok = {}, true
for r = 0, 3 do
  local first, n = hb.dist.rows(16, { rank = r, size = 4 })
  if n ~= 4 then ok = false end
  for i = first, first + n - 1 do
    if covered[i] then ok = false end
    covered[i] = r
  end
end
for i = 1, 16 do if covered[i] ~= (i - 1) // 4 then ok = false end end
T.ok(ok, "4 ranks split a 16-row batch into consecutive disjoint slices of 4")
T.is(select(2, hb.dist.rows(5, { rank = 0, size = 1 })), 5, "one rank keeps the whole batch")
T.raises(function() hb.dist.rows(4, { rank = 0, size = 3 }) end,
  "the global batch of 4 rows is not divisible by 3 ranks", "an indivisible batch is refused")

-- configs compare by value, whatever the insertion (and so iteration) order
local a, b = { x = 1, y = { 2, 3 }, z = hb.io.null }, {}
b.z = hb.io.null; b.y = { 2, 3 }; b.x = 1
T.is(hb.dist.canonical(a), hb.dist.canonical(b), "canonical form ignores key order")
T.ok(hb.dist.canonical({ x = 1 }) ~= hb.dist.canonical({ x = 1.0 }) and
  hb.dist.canonical({ x = "1" }) ~= hb.dist.canonical({ x = 1 }), "canonical form keeps types apart")
T.ok(hb.dist.check_same({ size = 1, rank = 0 }, "anything", a) == nil, "one rank is always consistent")
T.ok(hb.dist.launched_size() >= 1, "launched_size() reads the launcher's environment (1 outside mpirun)")
T.done()
