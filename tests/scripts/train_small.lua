-- tests/scripts/train_small.lua OUT STEPS [nan_at] — a tiny deterministic training run used by
-- tests/test_train.lua (kill/resume, corrupt checkpoints, NaN stop).
local hb = require "hyblua"
local out, steps, nan_at = arg[1], tonumber(arg[2]), tonumber(arg[3] or "")
local V, B, T = 64, 2, 32
hb.manual_seed(7)
local m = hb.models.new({ model_type = "gated_deltanet", hidden_size = 32, num_hidden_layers = 2, num_heads = 2,
  head_dim = 16, vocab_size = V, attn = hb.schedule.ratio(1, { num_heads = 2 }) }, { seed = 7 })
local function batch(k)
  local ids = hb.tensor(hb.train_utils.synthetic_batch(k, B, T + 1, V), "int64")
  return ids
end
local r = hb.train {
  model = m, batch = function(k)
    if nan_at and k + 1 == nan_at then
      -- poison the model so the loss is NaN at this step
      hb.no_grad(function() m.params["model.norm.weight"]:fill_(0 / 0) end)
    end
    return batch(k)
  end,
  steps = steps, lr = 3e-3, warmup = 3, schedule = "cosine", out = out, save_every = 2, keep = 3,
  log = out .. "/metrics.jsonl", progress = false, step_delay = tonumber(os.getenv("HB_STEP_DELAY") or "0"),
}
print(string.format("done step %d", r.step or -1))
