-- recipes/hgrn2_6to1.lua — HGRN-2 with one attention layer after every six (the ratio the paper found
-- best for HGRN-2), same corpus and evaluation as gdn_3to1.lua. Options as in that recipe (--help).
local hb = require "hyblua"
hb.recipe.lm(hb.recipe.defaults {
  name = "hgrn2_6to1",
  ratio = 6,
  attn = { num_heads = 4 },
  model = { model_type = "hgrn2", hidden_size = 128, num_hidden_layers = 7, expand_ratio = 32 },
  train = { steps = 400, batch_size = 16, seq_len = 256, lr = 3e-3 },
}, arg, {
  description = "HGRN-2 with one softmax-attention layer after every six linear ones (the paper's best ratio " ..
    "for HGRN-2), on the State of the Union corpus; reports validation bits per byte and a copy/recall probe.",
})
