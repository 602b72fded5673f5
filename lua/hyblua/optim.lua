-- hyblua/optim.lua — optimisers. hb.optim.AdamW follows torch.optim.AdamW exactly (decoupled weight
-- decay, bias correction, eps after the square root); the per-tensor update is one fused C loop.
local hb = require "hyblua.binding"
local optim = {}

local AdamW = {}
AdamW.__index = AdamW

-- params: a list of tensors, or a list of groups {params = {...}, weight_decay = ..., lr = ...}
function optim.AdamW(params, opts)
  opts = opts or {}
  local betas = opts.betas or { 0.9, 0.999 }
  local self = setmetatable({
    lr = opts.lr or 1e-3, b1 = betas[1], b2 = betas[2], eps = opts.eps or 1e-8,
    weight_decay = opts.weight_decay or 1e-2, t = 0, groups = {}, state = {},
  }, AdamW)
  if type(params) ~= "table" or #params == 0 then error("AdamW: params must be a non-empty list", 2) end
  if type(params[1]) == "table" and params[1].params then
    for _, g in ipairs(params) do self.groups[#self.groups + 1] = g end
  else
    self.groups[1] = { params = params }
  end
  for gi, g in ipairs(self.groups) do
    for pi, p in ipairs(g.params) do
      if p:dtype() ~= "float32" and p:dtype() ~= "float64" then
        error(string.format("AdamW: group %d param %d is %s, expected a float tensor", gi, pi, p:dtype()), 2)
      end
    end
  end
  return self
end

-- step([lr]): one update; a given lr replaces every group's learning rate for this step (schedules)
function AdamW:step(lr_override)
  self.t = self.t + 1
  hb.no_grad(function()
    for _, g in ipairs(self.groups) do
      local lr = lr_override or g.lr or self.lr
      local wd = g.weight_decay or self.weight_decay
      for _, p in ipairs(g.params) do
        local grad = p.grad
        if grad then
          local s = self.state[p]
          if not s then
            s = { m = hb.zeros(p:shape(), p:dtype()), v = hb.zeros(p:shape(), p:dtype()) }
            self.state[p] = s
          end
          hb.adamw_update(p, grad, s.m, s.v, lr, self.b1, self.b2, self.eps, wd, self.t)
        end
      end
    end
  end)
end

function AdamW:zero_grad()
  for _, g in ipairs(self.groups) do
    for _, p in ipairs(g.params) do p:zero_grad() end
  end
end

-- flat list of parameters in group order
function AdamW:params()
  local out = {}
  for _, g in ipairs(self.groups) do for _, p in ipairs(g.params) do out[#out + 1] = p end end
  return out
end

-- state as name → tensor (for checkpoints), given a parallel list of parameter names
function AdamW:state_tensors(names)
  local out = {}
  for i, p in ipairs(self:params()) do
    local s = self.state[p]
    if s then out["m." .. names[i]] = s.m; out["v." .. names[i]] = s.v end
  end
  return out
end

function AdamW:load_state_tensors(names, tensors, t)
  for i, p in ipairs(self:params()) do
    local m, v = tensors["m." .. names[i]], tensors["v." .. names[i]]
    if m and v then self.state[p] = { m = m, v = v } end
  end
  self.t = t
end

-- global L2 norm of all gradients; clip_grad_norm scales them to max_norm and returns the norm
function optim.grad_norm(params)
  local s = 0
  for _, p in ipairs(params) do local g = p.grad; if g then s = s + hb.sumsq(g) end end
  return math.sqrt(s)
end
function optim.clip_grad_norm(params, max_norm)
  local n = optim.grad_norm(params)
  if max_norm and max_norm > 0 and n > max_norm then
    local c = max_norm / (n + 1e-6)
    hb.no_grad(function() for _, p in ipairs(params) do local g = p.grad; if g then g:mul_(c) end end end)
  end
  return n
end

return optim
