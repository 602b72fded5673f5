-- test_custom_mixer.lua — a mixer defined in Lua (recipes/custom_mixer.lua) trains beside built-in
-- ones: its parameters get gradients from autograd, a float64 finite-difference check of the Lua
-- mixer passes, decoding through its cache reproduces the full forward, and the recipe runs, resumes
-- its finished run and starts afresh with train.overwrite. The runs go to a fresh temporary folder, so
-- the test passes however often it runs.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local out = tmp .. "/run"
local function recipe(...)
  arg = { "--tiny", "--out", out, ... }
  return pcall(dofile, "recipes/custom_mixer.lua")
end
local ok, res = recipe()
T.ok(ok, "recipes/custom_mixer.lua --tiny runs", res)
if not ok then T.done() end
local ok2, again = recipe()
T.ok(ok2 and #again.losses == 0, "the same command again resumes the finished run: no step is trained twice",
  ok2 and #again.losses or again)
local ok3, fresh = recipe("--set", "train.overwrite=true")
local aside = false
for _, n in ipairs(hb.data.list_dir(tmp)) do if n:match("^run%.old%-") then aside = true end end
T.ok(ok3 and #fresh.losses == #res.losses and aside, "train.overwrite=true moves the run aside and trains afresh",
  ok3 and #fresh.losses or fresh)
local m = res.model
T.is(hb.schedule.describe(m.config), "LCLCLA", "schedule: GLA and EMA layers alternate, then attention")
T.ok(m.params["model.layers.1.attn.decay_logit"] ~= nil and m.params["model.layers.3.attn.v_proj.weight"] ~= nil,
  "the custom mixer's parameters are declared with fla-style names")
T.ok(res.losses[#res.losses] < res.losses[1], "training loss decreases", string.format("%.4f → %.4f", res.losses[1], res.losses[#res.losses]))

-- gradients reach the Lua mixer's parameters
local ids = hb.randint(0, 256, 2, 17)
for _, p in m:named_parameters() do p:zero_grad() end
m:loss(ids):backward()
local g = m.params["model.layers.1.attn.decay_logit"].grad
T.ok(g and g:abs():sum():item() > 0, "autograd gives the custom decay parameter a gradient")

-- float64 finite differences through the Lua-defined forward (double copy of one mixer)
local def_forward
do
  local x = hb.randn(1, 5, 32, "float64")
  local params = {}
  for name, p in m:named_parameters() do
    if name:find("^model%.layers%.1%.attn%.") then params[name:match("attn%.(.+)$")] = p:detach():double():requires_grad(true) end
  end
  local mixer = hb.models.mixers.custom
  local L = m.layers[2]
  local function f()
    local ctx = { W = {}, i = 1, m = m }
    return L.def.forward(ctx, x, L.opts, function(n) return params[n] end)
  end
  local w = hb.randn(1, 5, 32, "float64")
  local loss = (f() * w):sum()
  loss:backward()
  local p = params["decay_logit"]
  local worst = 0
  for h = 1, 2 do
    local old = p:get(h)
    hb.no_grad(function() p:set(old + 1e-6, h) end)
    local lp = hb.no_grad(function() return (f() * w):sum():item() end)
    hb.no_grad(function() p:set(old - 1e-6, h) end)
    local lm = hb.no_grad(function() return (f() * w):sum():item() end)
    hb.no_grad(function() p:set(old, h) end)
    local num = (lp - lm) / 2e-6
    worst = math.max(worst, math.abs(num - p.grad:get(h)) / math.max(1e-3, math.abs(num)))
  end
  T.ok(worst < 1e-6, "float64 finite differences of the Lua mixer's decay gradient", string.format("%.2e", worst))
end

-- decoding through the mixer's cache matches the full forward
local full = hb.no_grad(function() return m:forward(ids) end)
local cache = m:new_cache(2)
local worst = 0
for t = 1, 17 do
  local lt = m:step(ids:narrow(2, t, 1), cache)
  worst = math.max(worst, (lt - full:select(2, t)):abs():max():item())
end
T.ok(worst < 1e-4 * full:abs():max():item(), "step-by-step decode through the Lua mixer matches the forward", string.format("%.2e", worst))
os.execute("rm -rf '" .. tmp .. "'")
T.done()
