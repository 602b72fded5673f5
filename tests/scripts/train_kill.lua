-- tests/scripts/train_kill.lua OUT STEPS — a training run that writes a checkpoint after every step,
-- for tests/test_killckpt.lua, which SIGKILLs it at random moments. The model is tiny to train but has
-- a large vocabulary, so each checkpoint is ~3.5 MB and its write takes a good share of every step
-- (kills land inside writes). Loaded with dofile (no arguments) it returns the model constructor, so
-- that the test can load the checkpoints into the same architecture.
local hb = require "hyblua"
local V, B, T = 2048, 2, 16
local function new_model()
  hb.manual_seed(11)
  return hb.models.new({ model_type = "gated_deltanet", hidden_size = 64, num_hidden_layers = 1, num_heads = 2,
    head_dim = 16, vocab_size = V }, { seed = 11 })
end
local out, steps = ...
if not out then return new_model end
-- a pause after each file of a checkpoint keeps the write window wide even on a fast disk (tmpfs, no
-- real fsync), so that some kills land inside it wherever the test runs
local save = hb.io.save_safetensors
hb.io.save_safetensors = function(...) save(...); hb.sleep(0.03) end
local m = new_model()
local r = hb.train {
  model = m, batch = function(k) return hb.tensor(hb.train_utils.synthetic_batch(k, B, T + 1, V), "int64") end,
  steps = tonumber(steps), lr = 1e-3, warmup = 2, schedule = "constant", out = out, save_every = 1, keep = 3,
  log = out .. "/metrics.jsonl", progress = false, log_every = 1000000,
}
print(string.format("done step %d", r.step or -1))
