-- tests/scripts/train_resume.lua CONFIG.json OUT STEPS [STOP_AT] — a small deterministic training run
-- of the model CONFIG.json describes, used by tests/test_resume_exact.lua. With STOP_AT the run sends
-- itself SIGINT (Ctrl-C) after step STOP_AT, so hb.train saves a checkpoint of that step and returns,
-- as an interrupted run does. Prints one line per step: "loss <step> <loss as %a>" (exact bits).
local hb = require "hyblua"
local cfg_path, out, steps, stop_at = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4] or "")
dofile("tests/scripts/test_ema_mixer.lua")(hb)   -- the Lua-defined mixer the registry test includes
local V, B, T = 256, 4, 128
local cfg = hb.io.read_json(cfg_path)
local m = hb.models.new(cfg, { seed = 3 })
local r = hb.train {
  model = m, batch = function(k) return hb.tensor(hb.train_utils.synthetic_batch(k, B, T + 1, V), "int64") end,
  steps = steps, lr = 3e-3, warmup = 3, schedule = "cosine", out = out, save_every = 4, keep = 2, progress = false,
  log_every = 1000,
  on_step = function(step, info)
    print(string.format("loss %d %a", step, info.loss))
    io.stdout:flush()
    -- io.popen, not os.execute: system() ignores SIGINT in the caller while the shell runs
    if step == stop_at then io.popen("kill -INT $PPID"):close() end
  end,
}
print(string.format("done step %d interrupted %s", r.step or -1, tostring(r.interrupted)))
