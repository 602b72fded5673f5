-- tests/scripts/train_resume.lua CONFIG.json OUT STEPS [STOP_AT [OPTIONS.json]] — a small deterministic
-- training run of the model CONFIG.json describes, used by tests/test_resume_exact.lua and
-- tests/test_run_folder.lua. With STOP_AT (0: none) the run sends itself SIGINT (Ctrl-C) after step
-- STOP_AT, so hb.train saves a checkpoint of that step and returns, as an interrupted run does.
-- OPTIONS.json: hb.train fields that replace the defaults below (resume, overwrite, keep, save_every,
-- log, ...), plus `plant = {{at = step, from = dir, to = dir}, ...}`: after step `at`, copy `from` to `to`
-- (another process writing into the run folder). Prints one line per step: "loss <step> <loss as %a>".
local hb = require "hyblua"
local cfg_path, out, steps, stop_at = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4] or "")
local opts = arg[5] and hb.io.read_json(arg[5]) or {}
dofile("tests/scripts/test_ema_mixer.lua")(hb)   -- the Lua-defined mixer the registry test includes
local V, B, T = 256, 4, 128
local cfg = hb.io.read_json(cfg_path)
local m = hb.models.new(cfg, { seed = 3 })
local o = {
  model = m, batch = function(k) return hb.tensor(hb.train_utils.synthetic_batch(k, B, T + 1, V), "int64") end,
  steps = steps, lr = 3e-3, warmup = 3, schedule = "cosine", out = out, save_every = 4, keep = 2, progress = false,
  log_every = 1000,
  on_step = function(step, info)
    print(string.format("loss %d %a", step, info.loss))
    io.stdout:flush()
    for _, p in ipairs(opts.plant or {}) do
      if p.at == step then os.execute(string.format("cp -r '%s' '%s'", p.from, p.to)) end
    end
    -- io.popen, not os.execute: system() ignores SIGINT in the caller while the shell runs
    if step == stop_at then io.popen("kill -INT $PPID"):close() end
  end,
}
for k, v in pairs(opts) do if k ~= "plant" then o[k] = v end end
local r = hb.train(o)
print(string.format("done step %d interrupted %s", r.step or -1, tostring(r.interrupted)))
