-- test_train.lua — the training loop: schedules, SIGKILL + resume is bit-exact, a corrupt newest
-- checkpoint falls back to the previous one, a NaN loss stops with a clear message and keeps the last
-- good checkpoint, checkpoints load with hb.load_pretrained and carry fla's names.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local tu = hb.train_utils

-- ---- schedules ----
local o = { lr = 1.0, min_lr = 0.1, warmup = 10, steps = 110, schedule = "cosine" }
T.ok(math.abs(tu.lr_at(5, o) - 0.5) < 1e-12, "warm-up is linear")
T.ok(math.abs(tu.lr_at(10, o) - 1.0) < 1e-12 and math.abs(tu.lr_at(110, o) - 0.1) < 1e-12, "cosine goes from lr to min_lr")
T.ok(math.abs(tu.lr_at(60, o) - 0.55) < 1e-12, "cosine midpoint is the mean of lr and min_lr")
o.schedule = "wsd"; o.decay_frac = 0.2
T.ok(tu.lr_at(88, o) == 1.0 and math.abs(tu.lr_at(110, o) - 0.1) < 1e-12 and tu.lr_at(99, o) < 1.0, "wsd: stable then linear decay over the last 20%")
o.schedule = "constant"
T.is(tu.lr_at(100, o), 1.0, "constant schedule")
T.raises(function() o.schedule = "bogus"; tu.lr_at(50, o) end, "unknown schedule 'bogus'", "unknown schedule is rejected")

local tmp = os.tmpname(); os.remove(tmp)
os.execute("mkdir -p " .. tmp)
local function run(dir, steps, extra_env, extra_args)
  local cmd = string.format("%s ./hyblua tests/scripts/train_small.lua %s %d %s > %s/out.txt 2> %s/err.txt",
    extra_env or "", dir, steps, extra_args or "", tmp, tmp)
  local ok = os.execute(cmd)
  local f = io.open(tmp .. "/err.txt"); local err = f:read("a"); f:close()
  return ok, err
end
local function losses(dir)
  local t = {}
  for line in io.lines(dir .. "/metrics.jsonl") do
    local step, loss = line:match('"loss":([%d%.e%-]+).*"step":(%d+)')
    local r = hb.io.decode_json(line)
    if r.loss then t[r.step] = r.loss end
  end
  return t
end

-- reference: an uninterrupted run
local A = tmp .. "/a"
local ok = run(A, 12)
T.ok(ok, "uninterrupted run completes")
local la = losses(A)
T.ok(la[12] ~= nil, "12 losses logged")

-- SIGKILL mid-run, then resume
local Bd = tmp .. "/b"
os.execute(string.format("mkdir -p %s; (HB_STEP_DELAY=0.25 ./hyblua tests/scripts/train_small.lua %s 12 > /dev/null 2>&1 & echo $! > %s/pid)", Bd, Bd, tmp))
local f = io.open(tmp .. "/pid"); local pid = f:read("l"); f:close()
local waited = 0
while waited < 600 do
  if io.open(Bd .. "/ckpt-00000006/trainer_state.json") then break end
  os.execute("sleep 0.1"); waited = waited + 1
end
os.execute("kill -9 " .. pid .. " 2>/dev/null; sleep 0.2")
local lb_partial = losses(Bd)
local killed_at = 0
for s in pairs(lb_partial) do if s > killed_at then killed_at = s end end
T.ok(killed_at >= 6 and killed_at < 12, "run killed with SIGKILL mid-way (after step " .. killed_at .. ")")
local ok2, err2 = run(Bd, 12)
T.ok(ok2 and err2:find("resuming from", 1, true), "the killed run resumes", err2)
local lb = losses(Bd)
local same = true
for s = 1, 12 do same = same and lb[s] == la[s] end
T.ok(same, "losses after resume are bit-identical to the uninterrupted run",
  string.format("step 12: %s vs %s", tostring(lb[12]), tostring(la[12])))

-- corrupt the newest checkpoint: resume falls back to the previous one and still matches
local f2 = io.open(Bd .. "/ckpt-00000012/model.safetensors", "r+b"); f2:write("garbage!"); f2:close()
os.execute("rm -f " .. Bd .. "/metrics.jsonl")
local ok3, err3 = run(Bd, 12)
T.ok(ok3 and err3:find("unusable", 1, true) and err3:find("ckpt-00000010", 1, true), "corrupt newest checkpoint is skipped; resume from the previous one", err3)
local lc = losses(Bd)
T.ok(lc[11] == la[11] and lc[12] == la[12], "steps 11-12 redone from the fallback match the reference")

-- NaN loss stops with a clear message and keeps the last good checkpoint
local Nd = tmp .. "/n"
local ok4, err4 = run(Nd, 12, "", "5")
T.ok(not ok4, "a NaN loss stops training with a failure status")
T.like(err4, "loss is NaN at step 5", "the message names the NaN and the step")
T.like(err4, "ckpt-00000004", "the message names the last good checkpoint")
local okl, m = pcall(hb.load_pretrained, Nd .. "/ckpt-00000004")
T.ok(okl, "the last good checkpoint is intact and loads", m)

-- Ctrl-C (SIGINT) during training saves a checkpoint at the step boundary and exits cleanly
local Id = tmp .. "/i"
os.execute(string.format("mkdir -p %s; (HB_STEP_DELAY=0.25 ./hyblua tests/scripts/train_small.lua %s 40 > %s/iout.txt 2> %s/ierr.txt; echo $? > %s/irc) & echo $! > %s/ipid",
  Id, Id, tmp, tmp, tmp, tmp))
local waited = 0
while waited < 600 do
  local fm = io.open(Id .. "/metrics.jsonl")
  local n = 0
  if fm then for _ in fm:lines() do n = n + 1 end fm:close() end
  if n >= 3 then break end
  os.execute("sleep 0.1"); waited = waited + 1
end
os.execute("pkill -INT -f 'train_small.lua " .. Id .. "'")
waited = 0
while waited < 300 and not io.open(tmp .. "/irc") do os.execute("sleep 0.1"); waited = waited + 1 end
os.execute("sleep 0.2")
local fr = io.open(tmp .. "/irc"); local rc = fr and fr:read("l"); if fr then fr:close() end
local fe = io.open(tmp .. "/ierr.txt"); local ierr = fe:read("a"); fe:close()
local istep = tonumber(ierr:match("interrupted at step (%d+)") or "")
T.ok(rc == "130" and istep and istep < 40, "Ctrl-C stops training cleanly at a step boundary (exit status 130)",
  "exit status " .. tostring(rc) .. "\n" .. ierr:sub(-300))
T.ok(istep and io.open(string.format("%s/ckpt-%08d/model.safetensors", Id, istep)) ~= nil, "Ctrl-C saved a checkpoint of the last finished step")
local ok5, err5 = run(Id, 40)
T.ok(ok5 and err5:find("resuming from", 1, true), "the interrupted run resumes with the same command")

-- checkpoints are fla checkpoints
local m2 = hb.load_pretrained(A .. "/ckpt-00000012")
local cfg = hb.io.read_json(A .. "/ckpt-00000012/config.json")
T.ok(cfg.model_type == "gated_deltanet" and cfg.architectures[1] == "GatedDeltaNetForCausalLM", "config.json has model_type and architectures")
local t = hb.io.load_safetensors(A .. "/ckpt-00000012/model.safetensors")
local n, bad = 0, nil
for name in m2:named_parameters() do
  n = n + 1
  if not t[name] then bad = name end
  if not (name:match("^model%.layers%.%d+%.") or name == "model.embeddings.weight" or name == "model.norm.weight" or name == "lm_head.weight") then bad = name end
end
T.ok(bad == nil and n > 10, "tensor names follow fla's (model.layers.N.attn.*, model.embeddings.weight, ...)", bad)
T.ok(cfg.attn and cfg.attn.layers and cfg.attn.layers[1] == 1, "hybrid attn spec saved with its layers")
os.execute("rm -rf " .. tmp)
T.done()
