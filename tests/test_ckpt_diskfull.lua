-- test_ckpt_diskfull.lua — a checkpoint that cannot be written (disk full, file too large) stops
-- training with a message naming the error, the checkpoint and the last good one; it leaves nothing
-- half-written behind, the previous checkpoint is untouched, and the same command resumes from it to
-- the same losses as a run that never failed.
--
-- Disk full is injected with HB_FAIL_WRITE=N (io/jsonfile.h: the atomic writes of the process may
-- commit N bytes in all, then fail with ENOSPC); "file too large" is real: RLIMIT_FSIZE (ulimit -f) with
-- SIGXFSZ ignored makes write(2) fail with EFBIG. tests/scripts/diskfull_tmpfs.sh does the same on a
-- real, tiny tmpfs (needs root; not part of make test).
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local HY = arg[-1] or "./hyblua"   -- the training runs use the executable running this test (make asan)
local tmp = os.tmpname(); os.remove(tmp)
os.execute("mkdir -p " .. tmp)

local function read(p) local f = io.open(p, "rb"); if not f then return nil end local s = f:read("a"); f:close(); return s end
-- run the small training script; wrap (optional) is a format with one %s for the hyblua command
local function run(dir, steps, wrap)
  local cmd = string.format("%s tests/scripts/train_small.lua %s %d", HY, dir, steps)
  local ok = os.execute(string.format("%s > %s/out.txt 2> %s/err.txt", wrap and string.format(wrap, cmd) or cmd, tmp, tmp))
  return ok, read(tmp .. "/err.txt") or ""
end
local function losses(dir)
  local t = {}
  for line in io.lines(dir .. "/metrics.jsonl") do
    local r = hb.io.decode_json(line)
    if r.loss then t[r.step] = r.loss end   -- a resumed run's lines come later and win
  end
  return t
end
local function listing(d)
  local t, p = {}, io.popen("ls -1a " .. d)
  for l in p:lines() do if l ~= "." and l ~= ".." then t[#t + 1] = l end end
  p:close()
  table.sort(t)
  return table.concat(t, " ")
end
local CKPT_FILES = { "config.json", "generation_config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json" }

-- reference: six steps, never interrupted
local ok = run(tmp .. "/ref", 6)
T.ok(ok, "reference run completes")
local ref = losses(tmp .. "/ref")
local model_bytes = #read(tmp .. "/ref/ckpt-00000002/model.safetensors")

local function case(name, wrap, reason)
  local d = tmp .. "/" .. name
  local ok1 = run(d, 2)
  local before = {}
  for _, f in ipairs(CKPT_FILES) do before[f] = read(d .. "/ckpt-00000002/" .. f) end
  local ok2, err = run(d, 6, wrap)
  T.ok(not ok2 and ok1, name .. ": the failed checkpoint stops training with a failure status", err)
  T.like(err, string.format("training stopped: checkpoint of step 4 (%s/ckpt-00000004) could not be written", d),
    name .. ": the message names the checkpoint that failed")
  T.like(err, reason, name .. ": the message gives the reason (" .. reason .. ")")
  T.like(err, "the last good checkpoint is " .. d .. "/ckpt-00000002", name .. ": the message names the last good checkpoint")
  T.is(listing(d), "ckpt-00000002 metrics.jsonl", name .. ": nothing half-written is left behind")
  local same = true
  for _, f in ipairs(CKPT_FILES) do same = same and before[f] ~= nil and read(d .. "/ckpt-00000002/" .. f) == before[f] end
  T.ok(same, name .. ": the previous checkpoint is byte-for-byte intact")
  local okl, e = pcall(hb.load_pretrained, d .. "/ckpt-00000002")
  T.ok(okl, name .. ": the previous checkpoint loads", e)
  local ok3, err3 = run(d, 6)
  T.ok(ok3 and err3:find("resuming from " .. d .. "/ckpt-00000002", 1, true), name .. ": the same command resumes from it", err3)
  local l = losses(d)
  T.ok(l[5] == ref[5] and l[6] == ref[6], name .. ": and reaches the losses of the run that never failed",
    string.format("step 6: %s vs %s", tostring(l[6]), tostring(ref[6])))
end

case("full_at_first_file", "HB_FAIL_WRITE=0 %s", "model.safetensors: write failed: No space left on device")
case("full_mid_optimizer", "HB_FAIL_WRITE=" .. (model_bytes + 5000) .. " %s", "optimizer.safetensors: write failed: No space left on device")
if os.execute("command -v bash > /dev/null 2>&1") then
  -- 400 KiB per file: model.safetensors (~270 KB) fits, optimizer.safetensors (~540 KB) does not
  case("file_too_large", "bash -c \"trap '' XFSZ; ulimit -f 400; exec %s\"", "File too large")
else
  T.skip("file_too_large", "no bash for ulimit -f")
end
os.execute("rm -rf " .. tmp)
T.done()
