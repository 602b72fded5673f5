-- recipes/transformer.lua — the pure-Transformer baseline (RoPE softmax attention in every layer),
-- same corpus, budget and evaluation as the hybrid recipes.
local hb = require "hyblua"
hb.recipe.lm(hb.recipe.defaults {
  name = "transformer",
  ratio = 0,
  model = { model_type = "transformer", hidden_size = 128, num_hidden_layers = 8, num_heads = 4 },
  train = { steps = 400, batch_size = 16, seq_len = 256, lr = 3e-3 },
}, arg)
