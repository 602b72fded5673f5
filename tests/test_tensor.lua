-- test_tensor.lua — the Lua binding: constructors, metamethods, views, autograd from Lua, printing,
-- index convention, GC pressure, and the error message of every bad-input case guarded here.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local x = hb.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
T.is(table.concat(x:shape(), ","), "2,3", "hb.tensor infers the shape")
T.is(x:dtype(), "float32", "default dtype float32")
T.is(x:numel(), 6, "numel")
T.is(x:get(2, 3), 6, "get is 1-based")
T.is((x * 2):get(1, 2), 4, "tensor * number")
T.is((2 - x):get(1, 1), 1, "number - tensor")
T.is((x + x):sum():item(), 42, "tensor + tensor, sum():item()")
T.is((-x):get(2, 1), -4, "unary minus")
T.is(x:sum(2):tolist()[2], 15, "sum over dim 2 (1-based)")
T.is(x:sum(-1):tolist()[1], 6, "negative dim counts from the end")
T.is(x:mean():item(), 3.5, "mean")
T.is(x:max():item(), 6, "max")
T.is(x:argmax(2):tolist()[1], 2, "argmax returns 0-based positions as values (int64)")
T.is(x:transpose(1, 2):get(3, 1), 3, "transpose view")
T.is(x:view(3, 2):get(3, 1), 5, "view")
T.is(x:view(-1):numel(), 6, "view with -1")
T.is(x:narrow(2, 2, 2):get(1, 1), 2, "narrow(dim, start, len) 1-based start")
T.is(x:t():is_contiguous(), false, "t() is a non-contiguous view")
T.is(x:double():dtype(), "float64", ":double()")
T.is(hb.arange(5):dtype(), "int64", "arange of integers is int64 (like torch)")
T.raises(function() hb.arange(math.maxinteger) end, "arange: 9.22337e+18 elements", "arange past 2^63 elements is an error (no undefined float → int cast)")
T.is(hb.zeros(2, 3, "float64"):dtype(), "float64", "zeros with a dtype")
T.is(hb.ones({ 2, 2 }):sum():item(), 4, "ones with a shape table")
T.is(#hb.randn(4, 3), 4, "# gives the first dim")
T.is(hb.tensor(3.5):item(), 3.5, "scalar tensor")
T.like(tostring(hb.tensor({ 1, 2, 3 }) * 2), "tensor([2, 4, 6], shape=[3], dtype=float32)", "__tostring shows values, shape and dtype")
T.like(tostring(hb.zeros(100)), "..., ", "__tostring elides long tensors")

-- autograd from Lua
local a = hb.tensor({ 1, 2, 3 }):requires_grad(true)
local l = (a * a):sum()
l:backward()
local g = a.grad:tolist()
T.ok(g[1] == 2 and g[2] == 4 and g[3] == 6, "backward fills .grad")
local b = hb.no_grad(function() return a * 3 end)
T.is(b:requires_grad(), false, "hb.no_grad records nothing")
T.is(hb.is_grad_enabled(), true, "grad mode restored after no_grad")
a:zero_grad()
T.is(a.grad, nil, "zero_grad clears .grad")
do local c <close> = hb.ones(3); T.is(c:sum():item(), 3, "<close> variables work") end

-- error messages name the function, the argument and the shapes
T.raises(function() return hb.ones(2, 3):matmul(hb.ones(4, 5)) end, "matmul: inner dimensions differ: [2, 3] @ [4, 5] (3 vs 4)", "matmul shape error")
T.raises(function() return hb.ones(2, 3) + hb.ones(4, 3) end, "add: shapes [2, 3] and [4, 3] cannot be broadcast", "broadcast error")
T.raises(function() return hb.ones(2, 3):view(4, 2) end, "view: shape [2, 3] (6 elements) cannot be viewed as 8 elements", "view error")
T.raises(function() return hb.ones(2, 3):sum(3) end, "dim 3 out of range for a 2-d tensor", "dim out of range")
T.raises(function() return hb.ones(2, 3):get(3, 1) end, "index 3 out of range 1..2 at dim 1", "get index out of range")
T.raises(function() return hb.ones(2, 3) + "x" end, "arithmetic on a tensor needs a tensor or a number", "arithmetic with a string")
T.raises(function() return hb.tensor({ { 1, 2 }, { 3 } }) end, "ragged nested table", "ragged table")
T.raises(function() return hb.tensor({ 1, "a" }) end, "element 2 is a string, expected a number", "non-number element")
T.raises(function() return hb.zeros(2, "float16") end, "unknown dtype 'float16'", "unknown dtype")
T.raises(function() return hb.ones(2):item() end, "item: tensor of shape [2] has 2 elements, expected 1", "item of a non-scalar")
T.raises(function() return hb.ones(2):foo() end, "hyblua.Tensor has no method or field 'foo'", "unknown method")
T.raises(function() return hb.exp("x") end, "hyblua.Tensor expected, got string", "wrong argument type")
T.raises(function() return hb.embedding(hb.ones(4, 2), hb.tensor({ 5 }, "int64")) end, "token id 5 at position 0 is out of range [0, 4)", "embedding id out of range")
T.raises(function() return hb.ones(2):requires_grad(true):add_(hb.ones(2)) end, "in-place update of a tensor that requires grad", "in-place on a leaf requiring grad")
T.raises(function() hb.tensor({ 1, 2 }, "int64"):requires_grad(true) end, "only float tensors can require grad", "int tensors cannot require grad")
T.raises(function() return hb.ones(2, 3):float() * hb.ones(2, 3):double() end, "dtypes differ (float32 vs float64)", "mixed dtypes")
T.raises(function() return hb.cross_entropy(hb.ones(2, 3), hb.tensor({ 0, 5 }, "int64")) end, "target 5 at row 1 is out of range [0, 3)", "cross_entropy target out of range")
T.raises(function() return hb.attention { q = hb.ones(1, 4, 2, 8), k = hb.ones(1, 4, 3, 8), v = hb.ones(1, 4, 3, 8), scale = 1 } end, "2 query heads are not a multiple of 3 kv heads", "attention GQA mismatch")
T.raises(function() return hb.gla { q = hb.ones(1, 4, 2, 8), k = hb.ones(1, 4, 2, 8), v = hb.ones(1, 4, 2, 8), g = hb.ones(1, 5, 2, 8), scale = 1 } end, "gla: g has shape [1, 5, 2, 8], expected [1, 4, 2, 8]", "gla shape mismatch")
T.raises(function() return hb.gla { q = hb.ones(1, 4, 2, 8), k = hb.ones(1, 4, 2, 8), v = hb.ones(1, 4, 2, 8), g = hb.ones(1, 4, 2, 8), scale = 1, mode = "fast" } end, "mode must be 'chunk' or 'recurrent', got 'fast'", "bad mode")
T.raises(function() return hb.conv1d { x = hb.ones(1, 4, 6), w = hb.ones(5, 1, 4) } end, "conv1d: weight has shape [5, 1, 4], expected [6, 1, W]", "conv1d weight mismatch")

-- decode-step kernels check every shape (a wrong state must be an error, never a crash)
T.raises(function() return hb.gla_step { state = hb.zeros(1, 2, 3), q = hb.ones(1, 2, 4), k = hb.ones(1, 2, 4), v = hb.ones(1, 2, 4), g = hb.ones(1, 2, 4), scale = 1 } end,
  "gla_step: state must have 4 dims", "gla_step with a 3-d state")
T.raises(function() return hb.gla_step { state = hb.zeros(1, 2, 4, 4), q = hb.ones(1, 2, 4), k = hb.ones(1, 2, 4), v = hb.ones(1, 2, 8), g = hb.ones(1, 2, 4), scale = 1 } end,
  "gla_step: v has shape [1, 2, 8], expected [1, 2, 4]", "gla_step with a mismatched v")
T.raises(function() return hb.hgrn_step { state = hb.zeros(1, 2), x = hb.ones(1, 8), g = hb.ones(1, 8) } end,
  "hgrn_step: x has shape [1, 8], expected [1, 2]", "hgrn_step with a too-small state")
T.raises(function() return hb.conv1d_step { cache = hb.zeros(1, 3, 4), x = hb.ones(4), w = hb.ones(4, 1, 4) } end,
  "conv1d_step: x must have 2 dims", "conv1d_step with a 1-d x")
T.raises(function() return hb.delta_rule_step { state = hb.zeros(1, 2, 4, 4), q = hb.ones(1, 2, 4), k = hb.ones(1, 2, 4), v = hb.ones(1, 2, 4), beta = hb.ones(1, 3), scale = 1 } end,
  "delta_rule_step: beta has shape [1, 3], expected [1, 2]", "delta_rule_step with a mismatched beta")
T.raises(function() return hb.retention_step { state = hb.zeros(1, 2, 4, 4), q = hb.ones(1, 2, 4), k = hb.ones(1, 2, 4), v = hb.ones(1, 2, 4), decay = hb.zeros(3, "float64"), scale = 1 } end,
  "retention_step: decay has shape [3], expected [2]", "retention_step with a wrong decay")
do
  local m = hb.models.new { model_type = "gla", hidden_size = 16, num_hidden_layers = 1, num_heads = 2, vocab_size = 8 }
  local c = m:new_cache(1)
  T.raises(function() return m:step({ { 1 }, { 2 } }, c) end, "step: ids have 2 rows but the cache was made for batch 1", "decode with the wrong batch size")
end
do
  local x = hb.ones(3):requires_grad(true)
  local y = (x * x):sum()
  y:backward()
  T.raises(function() y:backward() end, "was released by an earlier backward", "a second backward on a released graph is an error")
end

-- GC pressure: C allocations trigger collection, so a loop of big temporaries stays bounded
local peak = 0
for i = 1, 60 do
  local t = hb.zeros(1024, 1024) -- 4 MiB each, never closed explicitly
  peak = math.max(peak, hb.tensor_bytes())
end
T.ok(peak < 600 * 1024 * 1024, "GC pressure keeps live tensor bytes bounded", string.format("peak %.0f MiB", peak / 2 ^ 20))

-- small temporaries (a decode step's): a young collection after every 512 KiB of them, so their blocks are
-- reused while still in cache; with a full collection every 16 MiB only, this loop peaked at ~17 MB
do
  local p = io.popen([[./hyblua -e 'local x = hb.randn({1, 1, 1024})
    hb.no_grad(function() for i = 1, 20000 do local _ = x + x end end)
    io.write(hb.memory_stats().peak)' 2>&1]])
  local out = p:read("a"); p:close()
  local pk = tonumber(out)
  T.ok(pk and pk < 6 * 2 ^ 20, "a loop of 4 KiB temporaries keeps its peak of tensor bytes small (young collections)",
    string.format("peak %s bytes", out))
end

-- the block cache: a freed block of >= 1 MiB is kept for the next tensor of its size
do
  -- garbage tensors of earlier tests must not be freed into the cache while this block counts it
  collectgarbage("collect"); collectgarbage("collect"); collectgarbage("stop")
  hb.set_cache_limit(nil)
  hb.release_cache()
  local t = hb.zeros(512, 1024) -- 2 MiB
  t:close()
  local m = hb.memory_stats()
  T.ok(m.cached == 2 ^ 21 and m.cache_limit >= 2 ^ 30 and m.peak >= m.live, "memory_stats: a closed 2 MiB tensor is cached",
    string.format("cached %d, limit %d", m.cached, m.cache_limit))
  local hits = m.cache_hits
  local u <close> = hb.zeros(512, 1024)
  m = hb.memory_stats()
  T.ok(m.cached == 0 and m.cache_hits == hits + 1, "the next tensor of that size takes the cached block")
  u:close()
  T.ok(hb.release_cache() == 2 ^ 21 and hb.memory_stats().cached == 0, "release_cache frees it and says how much")
  hb.set_cache_limit(0)
  hb.zeros(512, 1024):close()
  T.ok(hb.memory_stats().cached == 0 and hb.memory_stats().cache_limit == 0, "set_cache_limit(0): nothing is kept")
  hb.set_cache_limit(nil)
  T.raises(function() hb.set_cache_limit(-5) end, "block cache limit in MiB must be between 0 and 2^40", "a negative limit is an error")
  T.raises(function() hb.set_cache_limit("lots") end, "number expected", "a non-number limit is an error")
  collectgarbage("restart")
end

-- the REPL example from the issue, through the real module
local p = io.popen([[printf 'x = hb.tensor({1,2,3})\nx*2\nfunction f(a)\n return a+1\nend\nf(41)\n' | ./hyblua -i 2>&1]])
local out = p:read("a"); p:close()
T.like(out, "tensor([2, 4, 6]", "piped -i: expression auto-printed (the doubled tensor)")
T.like(out, "42", "piped -i: multi-line function then call prints 42")
local p2 = io.popen("./hyblua --version"); local v = p2:read("a"); p2:close()
T.like(v, "hyblua " .. hb.version, "--version matches hb.version")

-- fp32 products against float64 for every path of core/linalg.c's gemm: one BLAS call (small), tiles
-- (large), matrix-vector rows (≤ 8 rows of C, tiled or not), with either operand a transposed view
do
  hb.manual_seed(7)
  for _, M in ipairs({ 1, 3, 8, 9, 130 }) do
    for _, NK in ipairs({ { 5, 7 }, { 700, 1024 } }) do
      local N, K = NK[1], NK[2]
      local worst = 0
      for _, ta in ipairs({ false, true }) do
        for _, tb in ipairs({ false, true }) do
          local a = ta and hb.randn(K, M):t() or hb.randn(M, K)
          local b = tb and hb.randn(N, K):t() or hb.randn(K, N)
          local r = a:double():matmul(b:double())
          local d = (a:matmul(b):double() - r):abs():max():item() / r:abs():max():item()
          worst = math.max(worst, d)
        end
      end
      T.ok(worst < 1e-5, string.format("matmul %dx%dx%d (all transposes) matches float64", M, N, K),
        "worst relative error " .. worst)
    end
  end
end
T.done()
