-- test_run_folder.lua — no run is lost or silently continued wrongly (issue 17, items 1-4 and the
-- trainer_state / unwritable-out cases of item 14; issue 12 item 5):
--   * a checkpoint of another model config is an error naming the differing fields, and nothing in the
--     folder changes; resume compares the whole config (layers, heads, rope_theta), trainer settings that
--     changed are reported and logged;
--   * a run never deletes or replaces a checkpoint it did not write; Ctrl-C names a checkpoint that exists;
--   * starting afresh in a folder that holds a run is an error unless overwrite = true (moved aside);
--   * resume is all or nothing: a bad trainer_state.json leaves weights, optimizer and RNG untouched;
--   * trainer_state steps -3 and 1e12 are refused; an unwritable out is refused before the first step;
--   * the checkpoint path has no shell in it.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local HY = arg[-1] or "./hyblua"
local tu = hb.train_utils
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)

local function read(p) local f = io.open(p, "rb"); if not f then return nil end local s = f:read("a"); f:close(); return s end
local function listing(d)
  local ok, t = pcall(hb.data.list_dir, d)
  return ok and table.concat(t, " ") or "(none)"
end
-- a snapshot of every file under d (name → bytes), to prove a folder was left exactly as it was
local function snapshot(d, out, prefix)
  out, prefix = out or {}, prefix or ""
  for _, n in ipairs(hb.data.list_dir(d)) do
    local p = d .. "/" .. n
    if hb.data.is_dir(p) then snapshot(p, out, prefix .. n .. "/") else out[prefix .. n] = read(p) end
  end
  return out
end
local function same_snapshot(a, b)
  for k, v in pairs(a) do if b[k] ~= v then return false, k end end
  for k in pairs(b) do if a[k] == nil then return false, k end end
  return true
end
local cfgn = 0
local function config(c)
  cfgn = cfgn + 1
  local p = string.format("%s/config%d.json", tmp, cfgn)
  local base = { model_type = "gla", hidden_size = 32, num_hidden_layers = 2, vocab_size = 256, num_heads = 2,
    attn = { layers = { 1 }, num_heads = 2 } }
  for k, v in pairs(c or {}) do base[k] = v end
  hb.io.write_json(p, base)
  return p
end
local optn = 0
local function options(o)
  optn = optn + 1
  local p = string.format("%s/opts%d.json", tmp, optn)
  hb.io.write_json(p, o)
  return p
end
-- run tests/scripts/train_resume.lua; returns ok, stdout .. stderr. ok: exit status 0, or with `stop` (a
-- Ctrl-C after that step) 130, the status of every script that Ctrl-C ended
local function run(cfg, out, steps, stop, opts)
  local cmd = string.format("%s tests/scripts/train_resume.lua %s %s %d %d %s > %s/out.txt 2> %s/err.txt", HY, cfg, out,
    steps, stop or 0, opts or "", tmp, tmp)
  local ok, _, code = os.execute(cmd)
  if stop and stop > 0 then ok = not ok and code == 130 end
  return ok, (read(tmp .. "/out.txt") or "") .. (read(tmp .. "/err.txt") or "")
end

-- ---- 1. a checkpoint of another config is an error, not a fresh start over it ------------------------------
local base = config()
local d1 = tmp .. "/one"
local ok = run(base, d1, 6)
T.ok(ok and read(d1 .. "/ckpt-00000006/trainer_state.json"), "a 6-step run leaves its checkpoints")
local before = snapshot(d1)
local ok1, out1 = run(config({ hidden_size = 48 }), d1, 8)
T.ok(not ok1, "hidden_size 32 → 48 with the same out: the run stops with a failure status", out1)
T.like(out1, "hidden_size (checkpoint 32, this model 48)", "the message names the differing field and both values")
T.like(out1, "set overwrite = true", "and says how to start afresh on purpose")
T.ok(same_snapshot(before, snapshot(d1)), "nothing in the run folder changed (no checkpoint overwritten or deleted)")

-- ---- 3. resume compares the whole model config -----------------------------------------------------------
local ok3, out3 = run(config({ num_hidden_layers = 1, attn = { layers = { 0 }, num_heads = 2 } }), d1, 8)
T.ok(not ok3, "a 2-layer checkpoint does not resume into a 1-layer model", out3)
T.like(out3, "num_hidden_layers (checkpoint 2, this model 1)", "the message names num_hidden_layers")
local ok3b, out3b = run(config({ num_heads = 4 }), d1, 8)
T.ok(not ok3b and out3b:find("num_heads (checkpoint 2, this model 4)", 1, true), "a num_heads change is refused, naming it", out3b)
local tr = tmp .. "/rope"
run(config({ model_type = "transformer", attn = hb.io.null }), tr, 2)
local ok3c, out3c = run(config({ model_type = "transformer", attn = hb.io.null, rope_theta = 500000.0 }), tr, 4)
T.ok(not ok3c and out3c:find("rope_theta (checkpoint 10000, this model 500000)", 1, true), "a rope_theta change is refused, naming it", out3c)
local ok3d, out3d = run(config({ attn = { layers = { 1 }, num_heads = 2, rope_theta = 1000.0 } }), d1, 8)
T.ok(not ok3d and out3d:find("attn.rope_theta (checkpoint 10000, this model 1000)", 1, true), "a change inside the attention spec is refused, naming attn.rope_theta", out3d)
T.ok(same_snapshot(before, snapshot(d1)), "after the refused resumes the folder is still untouched")
-- trainer settings may change: they are reported and logged
local ok3e, out3e = run(base, d1, 8, 0, options({ lr = 1e-3, log = d1 .. "/metrics.jsonl" }))
T.ok(ok3e and out3e:find("resuming from " .. d1 .. "/ckpt-00000006", 1, true), "the same config resumes", out3e)
T.like(out3e, "trainer settings changed since the checkpoint: steps 6 → 8; lr 0.003 → 0.001", "changed trainer settings are reported")
local logged
for line in (read(d1 .. "/metrics.jsonl") or ""):gmatch("[^\n]+") do
  local r = hb.io.decode_json(line)
  if r.event == "resume" then logged = r end
end
T.ok(logged and logged.step == 6 and logged.changes[1] == "steps 6 → 8", "and logged as a resume event in the metrics log",
  read(d1 .. "/metrics.jsonl"))

-- ---- 2. never delete what this run did not write; Ctrl-C names a checkpoint that exists --------------------
local d2 = tmp .. "/two"
local foreign = tmp .. "/foreign"
run(base, foreign, 4)                                  -- another run's checkpoint, to plant into d2 mid-run
local ok2, out2 = run(base, d2, 40, 5, options({ keep = 1, save_every = 2, plant = {
  { at = 3, from = foreign .. "/ckpt-00000004", to = d2 .. "/ckpt-00000099" },
  { at = 3, from = foreign .. "/ckpt-00000004", to = d2 .. "/ckpt-00000001" } } }))
local saved = out2:match("saved (%S+) — run the same command")
T.ok(ok2 and saved == d2 .. "/ckpt-00000005", "Ctrl-C at step 5 saves ckpt-00000005 and says so", out2)
T.ok(saved and read(saved .. "/trainer_state.json") and pcall(hb.load_pretrained, saved),
  "the checkpoint the Ctrl-C message names exists and loads")
T.ok(read(d2 .. "/ckpt-00000099/config.json") and read(d2 .. "/ckpt-00000001/config.json"),
  "keep rotation left the checkpoints this run did not write (a newer and an older one) alone", listing(d2))
T.ok(not hb.data.is_dir(d2 .. "/ckpt-00000004") and not hb.data.is_dir(d2 .. "/ckpt-00000002"),
  "and removed its own older ones (keep = 1)", listing(d2))

-- resume = false into a folder that holds a run: an error, nothing deleted
local before2 = snapshot(d1)
local ok2b, out2b = run(base, d1, 4, 0, options({ resume = false }))
T.ok(not ok2b, "resume = false into a folder holding a run stops with a failure status", out2b)
T.like(out2b, "already holds a run (ckpt-00000006, ckpt-00000008) and resume is false",
  "the message names what the folder holds")
T.ok(same_snapshot(before2, snapshot(d1)), "and nothing in the folder changed")
-- overwrite = true moves the earlier run aside and starts at step 0
local ok2c, out2c = run(base, d1, 4, 0, options({ resume = false, overwrite = true }))
local aside = out2c:match("was moved to (%S+)")
T.ok(ok2c and aside and aside:find(d1 .. ".old-", 1, true) and not out2c:find("resuming", 1, true),
  "overwrite = true moves the folder aside (out.old-<time>) and starts afresh", out2c)
T.ok(aside and same_snapshot(before2, snapshot(aside)), "the moved folder holds the earlier run byte for byte")
T.is(listing(d1), "ckpt-00000004", "the new run's folder holds only its own checkpoint")

-- ---- 4 and 14. resume is all or nothing; trainer_state.json is checked --------------------------------------
local function tiny()
  return hb.models.new({ model_type = "gla", hidden_size = 32, num_hidden_layers = 2, vocab_size = 256, num_heads = 2,
    attn = { layers = { 1 }, num_heads = 2 } }, { seed = 3 })
end
local d4 = d1 .. "/ckpt-00000004"
local function with_state(field, value)
  local ck = string.format("%s/bad_%s", tmp, field)
  os.execute(string.format("rm -rf '%s' && cp -r '%s' '%s'", ck, d4, ck))
  local st = hb.io.read_json(ck .. "/trainer_state.json")
  st[field] = value
  hb.io.write_json(ck .. "/trainer_state.json", st)
  return ck
end
local function params_of(m)
  local t = {}
  for n, p in m:named_parameters() do t[n] = p:clone() end
  return t
end
local function unchanged(m, t)
  for n, p in m:named_parameters() do if (p - t[n]):abs():max():item() ~= 0 then return false end end
  return true
end
do
  local m = tiny()
  local opt = hb.optim.AdamW(m:parameters(), { lr = 1e-3 })
  local w, rng = params_of(m), hb.get_rng_state()
  local bad = with_state("rng", "not a state")
  local okl, e = pcall(tu.load_checkpoint, bad, m, opt)
  T.ok(not okl and tostring(e):find("'rng' is not a random generator state", 1, true), "a bad rng field is an error", e)
  T.ok(unchanged(m, w) and next(opt.state) == nil and opt.t == 0 and hb.get_rng_state() == rng,
    "and nothing was copied in: weights, optimizer moments and RNG are as before")
  for _, v in ipairs({ -3, 1e12, 2.5, "7" }) do
    local okv, ev = pcall(tu.load_checkpoint, with_state("step", v), m, opt)
    T.ok(not okv and tostring(ev):find("'step' must be an integer in [0, 2^31)", 1, true) and unchanged(m, w),
      "trainer_state step " .. tostring(v) .. " is refused and changes nothing", ev)
  end
  local okt, et = pcall(tu.load_checkpoint, with_state("opt_t", 1e12), m, opt)
  T.ok(not okt and tostring(et):find("'opt_t'", 1, true), "an optimizer step count beyond the step is refused", et)
  local okg, sg = pcall(tu.load_checkpoint, d4, m, opt)
  T.ok(okg and sg.step == 4 and not unchanged(m, w) and opt.t == 4, "the intact checkpoint loads", sg)
end
-- hb.train with only a damaged checkpoint: an error, not a fresh start that would rotate it away
local d5 = tmp .. "/five"
hb.data.mkdir(d5)
os.execute(string.format("cp -r '%s' '%s/ckpt-00000004'", with_state("rng", "zz"), d5))
local before5 = snapshot(d5)
local ok5, out5 = run(base, d5, 6)
T.ok(not ok5 and out5:find("holds checkpoints but none can be resumed", 1, true) and out5:find("'rng'", 1, true),
  "a run whose only checkpoint is damaged stops, naming the problem", out5)
T.ok(same_snapshot(before5, snapshot(d5)), "and leaves the damaged checkpoint where it was")

-- ---- 14. an unwritable out is refused before the first step ------------------------------------------------
local okw, outw = run(base, "/proc/self", 3)
T.ok(not okw and outw:find("the run folder /proc/self is not writable", 1, true) and not outw:find("loss 1 ", 1, true),
  "an unwritable out is refused before training starts", outw)
local okf, outf = run(base, base .. "/sub", 3)
T.ok(not okf and outf:find("cannot create the run folder", 1, true) and not outf:find("loss 1 ", 1, true),
  "an out that cannot be created is refused before training starts", outf)

-- ---- issue 12 item 5: no shell in the checkpoint path ------------------------------------------------------
local src = read("lua/hyblua/train.lua") .. read("recipes/paper_grid.lua")
T.ok(not src:find("os.execute", 1, true) and not src:find("io.popen", 1, true),
  "train.lua and paper_grid.lua start no shell (os.execute, io.popen)")
local odd = tmp .. "/-a 'b\" $(x) c"
local oko, outo = run(base, "'" .. odd:gsub("'", "'\\''") .. "'", 4)
T.ok(oko and read(odd .. "/ckpt-00000004/trainer_state.json"), "an out with quotes, $(...) and a leading '-' works", outo)
T.raises(function() hb.data.remove_checkpoint(tmp) end, "is not a ckpt-N.tmp or ckpt-N.del directory",
  "remove_checkpoint refuses anything but a checkpoint being removed")
hb.data.mkdir(tmp .. "/victim")
io.open(tmp .. "/victim/keep.txt", "w"):close()
hb.data.mkdir(tmp .. "/ckpt-7.del/sub")
os.execute(string.format("ln -s '%s/victim' '%s/ckpt-7.del/link'", tmp, tmp))
hb.data.remove_checkpoint(tmp .. "/ckpt-7.del")
T.ok(not hb.data.is_dir(tmp .. "/ckpt-7.del") and read(tmp .. "/victim/keep.txt"),
  "remove_checkpoint removes the tree but never follows a symbolic link out of it")

os.execute("rm -rf '" .. tmp .. "'")
T.done()
