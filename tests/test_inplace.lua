-- tests/test_inplace.lua — in-place changes and autograd (issue 17, item 12): version counters make a
-- backward that would read a changed tensor fail instead of returning wrong gradients, in-place updates
-- that no saved tensor sees (optimizer steps, KV caches, decode states) pass, and .grad owns its memory.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local MSG = "a tensor needed for backward was modified in place"
local function list(t) local r = {}; for i, v in ipairs(t:tolist()) do r[i] = string.format("%g", v) end; return table.concat(r, ",") end

-- the issue's case: w*w, then w:mul_(10) under no_grad (backward gave 20, 40, 60 instead of 2, 4, 6)
do
  local w = hb.tensor({ 1, 2, 3 }):requires_grad(true)
  local y = (w * w):sum()
  hb.no_grad(function() w:mul_(10) end)
  T.raises(function() y:backward() end, "mul: " .. MSG, "w*w then w:mul_(10): backward raises, naming mul")
  T.is(w.grad, nil, "... and leaves no gradient behind")
  local ok, err = pcall(function() y:backward() end)
  T.like(tostring(err), "its input 1, of shape [3], is at version 1; the forward saw version 0",
    "the message names the input, its shape and both versions")
  T.ok(not ok, "it stays an error on a second try (the refused backward kept the graph)")
end

-- through :set, fill_, copy_, add_ on a tensor that does not require grad but is read by the backward
for _, case in ipairs {
  { "set", function(x) x:set(5, 1) end },
  { "fill_", function(x) x:fill_(0) end },
  { "copy_", function(x) x:copy_(hb.tensor({ 7, 8, 9 })) end },
  { "add_", function(x) x:add_(hb.ones(3)) end },
  { "zero_", function(x) x:zero_() end },
} do
  local w = hb.tensor({ 1, 2, 3 }):requires_grad(true)
  local x = hb.tensor({ 4, 5, 6 })
  local y = (w * x):sum()
  case[2](x)
  T.raises(function() y:backward() end, "mul: " .. MSG, "x:" .. case[1] .. " after w*x: backward raises")
end

-- through a view: writing into part of x's storage (a narrow, a select) or through an alias of w
do
  local w = hb.tensor({ 1, 2, 3 }):requires_grad(true)
  local base = hb.tensor({ 1, 2, 3, 4 })
  local y = (w * base:narrow(1, 1, 3)):sum()
  base:narrow(1, 4, 1):fill_(0)   -- the one element the product does not read: same storage, still refused
  T.raises(function() y:backward() end, "mul: " .. MSG, "a write into a view of the same storage raises")
  local w2 = hb.tensor({ { 1, 2 }, { 3, 4 } }):requires_grad(true)
  local y2 = w2:matmul(w2):sum()
  hb.no_grad(function() w2:select(1, 2):mul_(2) end)
  T.raises(function() y2:backward() end, "matmul: " .. MSG, "a write through a view of the parameter raises")
  local w3 = hb.tensor({ 1, 2, 3 }):requires_grad(true)
  local y3 = w3:exp():sum()
  w3:detach():copy_(hb.zeros(3))
  T.raises(function() y3:backward() end, "exp: " .. MSG, "a write through detach() (same storage) raises")
end

-- a saved output: softmax's backward reads its own result
do
  local x = hb.tensor({ 1, 2, 3 }):requires_grad(true)
  local s = x:softmax(1)
  local y = s:select(1, 1)   -- select reads no values: softmax's own check fires
  hb.no_grad(function() s:mul_(2) end)
  T.raises(function() y:backward() end, "softmax: " .. MSG, "changing softmax's output before backward raises")
end

-- a mixer (its context keeps the inputs) and attention (saved copies)
do
  local function qkvg() return hb.randn(1, 4, 1, 4):requires_grad(true), hb.randn(1, 4, 1, 4):requires_grad(true),
      hb.randn(1, 4, 1, 4):requires_grad(true), (hb.randn(1, 4, 1, 4) * 0.1):requires_grad(true) end
  local q, k, v, g = qkvg()
  local o = hb.gla { q = q, k = k, v = v, g = g, scale = 0.5 }
  hb.no_grad(function() k:add_(hb.ones(1, 4, 1, 4)) end)
  T.raises(function() o:sum():backward() end, "gla: " .. MSG, "gla: changing k before backward raises")
  local q2, k2, v2 = qkvg()
  local a = hb.attention { q = q2, k = k2, v = v2, scale = 0.5 }
  hb.no_grad(function() v2:fill_(0) end)
  T.raises(function() a:sum():backward() end, "attention: " .. MSG, "attention: changing v before backward raises")
  -- kda (added after the version counters: every mixer descriptor's context is watched)
  local q3, k3, v3, g3 = qkvg()
  local beta = (hb.rand(1, 4, 1) * 0.5):requires_grad(true)
  local o3 = hb.kda { q = q3, k = k3, v = v3, g = -(g3:abs()), beta = beta, scale = 0.5 }
  hb.no_grad(function() beta:mul_(2) end)
  T.raises(function() o3:sum():backward() end, "kda: " .. MSG, "kda: changing beta before backward raises")
end

-- no false alarms: ops whose backward reads no values, and changes after the backward
do
  local w = hb.tensor({ 1, 2, 3 }):requires_grad(true)
  local y = (w + 1):sum() + (w:narrow(1, 1, 2) * 2):sum() + w:view(3, 1):sum()
  hb.no_grad(function() w:mul_(10) end)
  y:backward()
  T.is(list(w.grad), "4,4,2", "add, scalar mul, narrow and view read no values: no error")
  local w2 = hb.tensor({ 1, 2, 3 }):requires_grad(true)
  local y2 = (w2 * w2):sum()
  y2:backward()
  hb.no_grad(function() w2:mul_(10) end)
  T.is(list(w2.grad), "2,4,6", "a change after the backward is fine (gradients 2, 4, 6)")
end

-- optimizer steps: a training loop runs; a retained graph after a step is refused (AdamW changed w)
do
  local w = hb.randn(4, 4):requires_grad(true)
  local x = hb.randn(2, 4)
  local opt = hb.optim.AdamW({ w }, { lr = 0.01 })
  local losses = {}
  for i = 1, 3 do
    opt:zero_grad()
    local loss = x:matmul(w):square():mean()
    loss:backward()
    opt:step()
    losses[i] = loss:item()
  end
  T.ok(losses[3] < losses[1], "forward, backward, AdamW step: three steps run and the loss falls")
  opt:zero_grad()
  local loss = x:matmul(w):square():mean()
  loss:backward(nil, true)
  opt:step()
  T.raises(function() loss:backward() end, "matmul: " .. MSG, "a retained graph after an AdamW step raises")
end

-- the model's own in-place updates: KV cache and recurrent-state writes while a graph is alive
-- (every model type of the mixer registry as a 1:1 hybrid with a windowed attention layer, and a transformer)
local cfgs = { { model_type = "transformer", hidden_size = 16, num_hidden_layers = 2, num_heads = 2, vocab_size = 32 } }
local shapes = { hgrn = { expand_ratio = 1 }, hgrn2 = { expand_ratio = 8 }, gated_deltanet = { num_heads = 2, head_dim = 8 },
  mamba2 = { head_dim = 8, state_size = 8 } }
local types = require("hyblua.config_fla").types
for _, mt in ipairs(require("hyblua.mixers.registry").model_types()) do
  if mt ~= "transformer" then
    local c = { model_type = mt, hidden_size = 16, num_hidden_layers = 2, vocab_size = 32,
      attn = { layers = { 1 }, num_heads = 2, window_size = 4 } }
    for k, v in pairs(shapes[mt] or {}) do c[k] = v end
    if not shapes[mt] and types[mt].num_heads ~= nil then c.num_heads = 2 end
    if not shapes[mt] and types[mt].head_dim ~= nil then c.head_dim = 8 end
    cfgs[#cfgs + 1] = c
  end
end
for _, cfg in ipairs(cfgs) do
  local m = hb.models.new(cfg, { seed = 1 })
  local cache = m:new_cache(1)
  local h = m:hidden(hb.tensor({ { 1, 2, 3, 4, 5 } }, "int64"), cache)   -- grad mode on, cache filled
  cache.pos = cache.pos + 5
  for t = 1, 6 do m:step({ t }, cache) end                              -- writes into the cache
  local ok, err = pcall(function() h:sum():backward() end)
  T.ok(ok, cfg.model_type .. ": cache writes after a prefill in grad mode do not trip the backward", err)
end

-- .grad owns its storage
do
  local p = hb.tensor({ 1, 2, 3 }):requires_grad(true)
  local base = hb.zeros(1)
  p.grad = base:expand(3)
  ;(p * 2):sum():backward()
  T.is(list(p.grad), "2,2,2", ".grad assigned an expanded view: accumulation is per element")
  T.is(base:item(), 0, "... and the viewed memory is untouched (it took 6 before)")
  local q = hb.tensor({ 1, 2 }):requires_grad(true)
  local g = hb.ones(2)
  q.grad = g
  ;(q * 3):sum():backward()
  T.is(list(q.grad), "4,4", ".grad assigned a tensor: backward accumulates into .grad")
  T.is(list(g), "1,1", "... not into the assigned tensor")
  local nc = hb.tensor({ { 1, 2 }, { 3, 4 } }):t()
  local r = hb.zeros(2, 2):requires_grad(true)
  r.grad = nc
  T.ok(r.grad:is_contiguous() and list(r.grad:view(4)) == "1,3,2,4",
    ".grad assigned a transposed view: a contiguous copy with the same values")
end

T.done()
