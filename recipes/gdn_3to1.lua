-- recipes/gdn_3to1.lua — GatedDeltaNet with one softmax-attention layer after every three linear ones,
-- trained on the State of the Union corpus (byte-level), evaluated on validation bits-per-byte and a
-- copy/recall probe. The default finishes in a few minutes on 2 cores.
--
--   hyblua recipes/gdn_3to1.lua --help                 # every key, its default and meaning
--   hyblua recipes/gdn_3to1.lua                        # small (default)
--   hyblua recipes/gdn_3to1.lua --size medium          # bigger model, longer run
--   hyblua recipes/gdn_3to1.lua --set train.steps=2000 --set model.hidden_size=256
--   hyblua recipes/gdn_3to1.lua --set attn.window_size=64 --set attn.num_kv_heads=2   # windowed GQA attention
--   hyblua recipes/gdn_3to1.lua --config my.yaml       # any key, from YAML
-- Writes runs/gdn_3to1/: metrics.jsonl, config.yaml, checkpoints (resumable), model/ (fla format),
-- results.json. Run the same command again to resume an interrupted run.
local hb = require "hyblua"
local defaults = hb.recipe.defaults {
  name = "gdn_3to1",
  ratio = 3,
  attn = { num_heads = 4 },
  model = { model_type = "gated_deltanet", hidden_size = 128, num_hidden_layers = 8, num_heads = 2, head_dim = 48,
            expand_v = 2.0 },
  train = { steps = 400, batch_size = 16, seq_len = 256, lr = 3e-3 },
}
hb.recipe.lm(defaults, arg, {
  description = "GatedDeltaNet with one softmax-attention layer after every three linear ones, trained on the " ..
    "State of the Union corpus (byte-level); reports validation bits per byte and a copy/recall probe.",
})
