-- recipes/hybrid.lua — any mixer at any ratio: the parametrised recipe.
--
--   hyblua recipes/hybrid.lua --mixer gla --ratio 6
--   hyblua recipes/hybrid.lua --mixer retnet --ratio 0          # pure linear
--   hyblua recipes/hybrid.lua --mixer transformer               # pure Transformer
--   hyblua recipes/hybrid.lua --mixer gla --ratio 0 --set attn.layers=[1,5]   # attention exactly there
-- mixers: hgrn, retnet, gla, hgrn2, delta_net, gated_deltanet, transformer. ratio r puts attention at
-- layers r, 2r+1, ... (hb.schedule.ratio); 0 means no attention layer. --help lists every key.
local hb = require "hyblua"

-- per-mixer sizes that keep roughly the same parameter budget at hidden_size 128
local shapes = {
  hgrn = { expand_ratio = 1 },
  retnet = { num_heads = 2, expand_k = 1.0, expand_v = 2.0 },
  gla = { num_heads = 2, expand_k = 0.5, expand_v = 1.0 },
  hgrn2 = { expand_ratio = 32 },
  delta_net = { num_heads = 2, expand_k = 0.5, expand_v = 2.0 },
  gated_deltanet = { num_heads = 2, head_dim = 48, expand_v = 2.0 },
  transformer = {},
}
local names = {}
for k in pairs(shapes) do names[#names + 1] = k end
table.sort(names)

local defaults = hb.recipe.defaults {
  name = "hybrid",
  mixer = hb.config.key("gated_deltanet", "the mixer of the linear layers (its sizes below are filled in per mixer); " ..
    "transformer: attention in every layer", { choices = names }),
  ratio = 3, attn = { num_heads = 4 },
  model = { hidden_size = 128, num_hidden_layers = 8 },
  train = { steps = 400, batch_size = 16, seq_len = 256, lr = 3e-3 },
}

-- after a first reading of the command line: the chosen mixer's shape and the run name become defaults
local function adjust(d, first)
  local mixer = first.mixer
  d.model.model_type = mixer
  for k, v in pairs(shapes[mixer]) do d.model[k] = v end
  if mixer == "transformer" then d.ratio = 0 end
  local A = first.attn
  local where
  if A.layers ~= hb.io.null then where = "_layers" .. table.concat(A.layers, "-")
  elseif A.every ~= hb.io.null then where = "_every" .. A.every
  else
    local r = mixer == "transformer" and 0 or first.ratio
    where = r > 0 and ("_" .. r .. "to1") or "_pure"
  end
  d.name = mixer == "transformer" and "transformer" or mixer .. where
end

hb.recipe.lm(defaults, arg, {
  description = "Any mixer at any attention placement: --mixer NAME --ratio R (0: pure). The run is named " ..
    "<mixer>_<R>to1, <mixer>_pure or transformer.",
  adjust = adjust,
})
