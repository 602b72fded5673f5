-- recipes/transformer.lua — the pure-Transformer baseline (RoPE softmax attention in every layer),
-- same corpus, budget and evaluation as the hybrid recipes. Its heads, window and GQA are the attn.*
-- keys (--help).
local hb = require "hyblua"
hb.recipe.lm(hb.recipe.defaults {
  name = "transformer",
  ratio = 0,
  attn = { num_heads = 4 },
  model = { model_type = "transformer", hidden_size = 128, num_hidden_layers = 8 },
  train = { steps = 400, batch_size = 16, seq_len = 256, lr = 3e-3 },
}, arg, {
  description = "The pure-Transformer baseline: RoPE softmax attention in every layer (heads, window and GQA " ..
    "from attn.*), same corpus, budget and evaluation as the hybrid recipes.",
})
