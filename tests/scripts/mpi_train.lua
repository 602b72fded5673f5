-- tests/scripts/mpi_train.lua OUT STEPS [MODE] — a tiny data-parallel training run for tests/test_mpi.sh,
-- run as `mpirun -np N ./hyblua-mpi tests/scripts/mpi_train.lua ...`. Every rank prints
-- "rank R checksum H" at the end (H = hb.mpi.checksum of the weights).
--   MODE drift: rank 1 perturbs one weight after step 3 (the checksum check must stop the job)
--   MODE fail:  rank 1 raises a Lua error at step 3 (MPI_Abort must end every rank)
local hb = require "hyblua"
local out, steps, mode = arg[1], tonumber(arg[2]), arg[3] or "plain"
local V, B, T = 64, 4, 32
hb.set_num_threads(1)
hb.manual_seed(7)
local m = hb.models.new({ model_type = "gated_deltanet", hidden_size = 32, num_hidden_layers = 2, num_heads = 2,
  head_dim = 16, vocab_size = V, attn = hb.schedule.ratio(1, { num_heads = 2 }) }, { seed = 7 })
local ctx = hb.dist.init()
local r = hb.train {
  model = m, data_parallel = true, check_every = 1, bucket_mb = 0.01, -- 10 KB buckets: several per step
  batch = function(k)
    if mode == "fail" and ctx.rank == 1 and k + 1 == 3 then error("injected failure on rank 1 at step 3", 0) end
    return hb.train_utils.synthetic_batch(k, B, T + 1, V)
  end,
  on_step = function(step)
    if mode == "drift" and ctx.rank == 1 and step == 3 then
      hb.no_grad(function() local w = m.params["model.norm.weight"]; w:set(w:get(1) + 1e-3, 1) end)
    end
  end,
  steps = steps, lr = 3e-3, warmup = 3, schedule = "cosine", out = out, save_every = 1, keep = 3,
  log = out .. "/metrics.jsonl", progress = false,
}
print(string.format("rank %d checksum %d steps %d", ctx.rank, hb.mpi.checksum(m:parameters()), r.step or -1))
