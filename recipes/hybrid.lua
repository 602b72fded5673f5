-- recipes/hybrid.lua — any mixer at any ratio: the parametrised recipe.
--
--   hyblua recipes/hybrid.lua --mixer gla --ratio 6
--   hyblua recipes/hybrid.lua --mixer retnet --ratio 0          # pure linear
--   hyblua recipes/hybrid.lua --mixer transformer               # pure Transformer
-- mixers: hgrn, retnet, gla, hgrn2, delta_net, gated_deltanet, transformer. ratio r puts attention at
-- layers r, 2r+1, ... (hb.schedule.ratio); 0 means no attention layer.
local hb = require "hyblua"

-- per-mixer sizes that keep roughly the same parameter budget at hidden_size 128
local shapes = {
  hgrn = { expand_ratio = 1 },
  retnet = { num_heads = 2, expand_k = 1.0, expand_v = 2.0 },
  gla = { num_heads = 2, expand_k = 0.5, expand_v = 1.0 },
  hgrn2 = { expand_ratio = 32 },
  delta_net = { num_heads = 2 },
  gated_deltanet = { num_heads = 2, head_dim = 48 },
  transformer = { num_heads = 4 },
}
local defaults = hb.recipe.defaults {
  name = "hybrid", mixer = "gated_deltanet", ratio = 3, attn_heads = 4,
  model = { hidden_size = 128, num_hidden_layers = 8 },
  train = { steps = 400, batch_size = 16, seq_len = 256, lr = 3e-3 },
}
-- read --mixer first, then fill the mixer's shape into the defaults before the full parse
local mixer = defaults.mixer
for i = 1, #arg do
  local v = arg[i]:match("^%-%-mixer=(.+)$") or (arg[i] == "--mixer" and arg[i + 1])
  if v then mixer = v end
end
local shape = shapes[mixer]
if not shape then error("hybrid.lua: unknown mixer '" .. tostring(mixer) .. "'", 0) end
defaults.mixer = mixer
defaults.model.model_type = mixer
for k, v in pairs(shape) do defaults.model[k] = v end
if mixer == "transformer" then defaults.ratio = 0 end
local r = defaults.ratio
for i = 1, #arg do r = tonumber(arg[i]:match("^%-%-ratio=(%d+)$") or (arg[i] == "--ratio" and arg[i + 1]) or "") or r end
defaults.name = mixer .. (mixer == "transformer" and "" or (r > 0 and ("_" .. r .. "to1") or "_pure"))
hb.recipe.lm(defaults, arg)
