-- tests/layer_gradcheck.lua — the float64 finite-difference check of one whole layer that the model-type
-- tests (test_kda.lua, test_gated_deltaproduct.lua, test_mamba2.lua) share:
--   local gradcheck = dofile("tests/layer_gradcheck.lua")
--   worst, name, ntensors = gradcheck(f, P, x, mode, h)
-- f(x, mode) → the layer's output (float64); P the parameter tensors (requires_grad) by name; x the input
-- (requires_grad). Samples use hb's and Lua's global random generators, as the caller seeded them.
local hb = require "hyblua"

local function maxabs(t) return t:abs():max():item() end

-- the 1-based index tuple of flat element i (0-based) of a tensor of shape s
local function unflat(i, s)
  local idx = {}
  for d = #s, 1, -1 do idx[d] = i % s[d] + 1; i = i // s[d] end
  return idx
end

-- max over tensors of max_i |numeric − analytic| / max|analytic gradient of that tensor|, over a sample
-- of elements of each tensor (all of the small ones), plus one random direction through every element;
-- numeric: the 4-point central difference (error O(h⁴)) with step h = eps
local function gradcheck(f, P, x, mode, eps)
  local w = hb.randn(table.unpack(x:shape())):double()
  local function loss() return (f(x, mode) * w):sum() end
  local l = loss()
  l:backward()
  local all = { x = x }
  for k, t in pairs(P) do all[k] = t end
  local names = {}
  for k in pairs(all) do names[#names + 1] = k end
  table.sort(names)
  local worst, wname = 0, ""
  hb.no_grad(function()
    for _, name in ipairs(names) do
      local t = all[name]
      local n, s = t:numel(), t:shape()
      local g = t.grad or hb.zeros(s):double() -- no gradient at all: every nonzero difference fails
      local scale = math.max(maxabs(g), 1e-12)
      local picks = {}
      if n <= 24 then for i = 0, n - 1 do picks[#picks + 1] = i end
      else for _ = 1, 12 do picks[#picks + 1] = math.random(0, n - 1) end end
      local e = 0
      for _, i in ipairs(picks) do
        local idx = unflat(i, s)
        local old = t:get(table.unpack(idx))
        local function at(h) t:set(old + h, table.unpack(idx)); return loss():item() end
        local num = (8 * (at(eps) - at(-eps)) - (at(2 * eps) - at(-2 * eps))) / (12 * eps)
        t:set(old, table.unpack(idx))
        e = math.max(e, math.abs(num - g:get(table.unpack(idx))) / scale)
      end
      -- a random direction through all elements at once
      local d = hb.randn(s):double()
      local saved = t:clone()
      local function at(h) t:copy_(saved + d * h); return loss():item() end
      local num = (8 * (at(eps) - at(-eps)) - (at(2 * eps) - at(-2 * eps))) / (12 * eps)
      t:copy_(saved)
      local dir = (g * d):sum():item()
      e = math.max(e, math.abs(num - dir) / math.max(maxabs(g) * maxabs(d), 1e-12))
      if e > worst then worst, wname = e, name end
    end
  end)
  return worst, wname, #names
end

return gradcheck
