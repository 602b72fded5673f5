-- test_killckpt.lua — SIGKILL a training run at random moments, many times, and check after every kill
-- that each checkpoint directory resume would pick up (ckpt-N, as listed by train_utils.checkpoints)
-- loads, and that the next run resumes from the newest one without skipping any.
--
-- tests/scripts/train_kill.lua checkpoints after every step, ~3.5 MB each (write + fsync), so many
-- kills land inside a checkpoint write; each kill is classified by what it left behind (a ckpt-N.tmp
-- directory: inside a write; ckpt-N.del: inside the pruning of an old one; neither: between writes).
-- The kill times come from a seeded generator: HB_KILL_SEED=<n> replays a run, HB_KILLS=<n> sets the
-- number of kills (default 20). The whole test takes ~12 s (under 30 s on 2 busy cores).
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local tu = hb.train_utils
local HY = arg[-1] or "./hyblua"   -- the training runs use the executable running this test (make asan)
local new_model = dofile("tests/scripts/train_kill.lua")

local seed = tonumber(os.getenv("HB_KILL_SEED") or "") or 20261127
local kills = tonumber(os.getenv("HB_KILLS") or "") or 20
math.randomseed(seed)
T.diag(string.format("seed %d (HB_KILL_SEED=%d replays this run), %d kills", seed, seed, kills))

local tmp = os.tmpname(); os.remove(tmp)
local dir = tmp .. "/run"
os.execute("mkdir -p " .. dir)

local function read(p) local f = io.open(p, "rb"); if not f then return "" end local s = f:read("a"); f:close(); return s end
local function entries(d)
  local t, p = {}, io.popen("ls -1a " .. d .. " 2>/dev/null")
  for l in p:lines() do if l ~= "." and l ~= ".." then t[#t + 1] = l end end
  p:close()
  return t
end

-- start the training run; returns a handle whose close() waits for the process to end
local function start(steps, errfile)
  local p = io.popen(string.format("echo $$; exec %s tests/scripts/train_kill.lua %s %d > %s/out.txt 2> %s",
    HY, dir, steps, tmp, errfile))
  return p, p:read("l")
end

-- every directory resume would accept must load: the weights (as load_pretrained and resume read them),
-- the optimiser state and the trainer state
local function verify_all()
  local n, bad = 0, nil
  for _, c in ipairs(tu.checkpoints(dir)) do
    local ok, err = pcall(function()
      local m = new_model()
      local st = tu.load_checkpoint(c.path, m, nil)
      assert(st.step == c.step, "trainer_state.json step " .. tostring(st.step) .. " in " .. c.path)
      local opt = hb.io.load_safetensors(c.path .. "/optimizer.safetensors")
      for name in m:named_parameters() do
        if st.opt_t > 0 then assert(opt["m." .. name] and opt["v." .. name], "optimizer state of " .. name) end
      end
      hb.load_pretrained(c.path)
    end)
    n = n + 1
    if not ok then bad = c.path .. ": " .. tostring(err) end
  end
  return n, bad
end

local t0 = hb.now()
local mid_write, mid_prune, between, verified, lost = 0, 0, 0, 0, 0
local newest_before, regressions, skipped = 0, 0, 0
for i = 1, kills do
  local errfile = string.format("%s/err%d.txt", tmp, i)
  local p, pid = start(1000000, errfile)
  local delay = 0.15 + math.random() * 0.6
  hb.sleep(delay)
  os.execute("kill -9 " .. pid .. " 2>/dev/null")
  p:close()
  local where, names = "between checkpoint writes", entries(dir)
  for _, e in ipairs(names) do
    if e:match("^ckpt%-%d+%.tmp$") then where = "inside the write of " .. e:gsub("%.tmp$", "") end
  end
  if where:match("^inside") then mid_write = mid_write + 1
  else
    for _, e in ipairs(names) do if e:match("%.del$") then where = "inside the removal of " .. e end end
    if where:match("removal") then mid_prune = mid_prune + 1 else between = between + 1 end
  end
  local n, bad = verify_all()
  verified = verified + n
  if bad then lost = lost + 1 end
  local cks = tu.checkpoints(dir)
  local newest = cks[1] and cks[1].step or 0
  if newest < newest_before then regressions = regressions + 1 end
  -- the run that was killed must have resumed from the newest checkpoint of the previous round
  local err = read(errfile)
  if err:find("unusable", 1, true) then skipped = skipped + 1 end
  local resumed = err:match("resuming from (%S+)")
  local expect = newest_before > 0 and string.format("%s/ckpt-%08d", dir, newest_before) or nil
  T.ok(not bad and not err:find("unusable", 1, true) and (resumed == expect or (expect and not resumed)),
    string.format("kill %d after %.0f ms, %s: %d checkpoints listed, all load (newest step %d)", i, delay * 1000,
      where, n, newest), bad or err:sub(-400))
  newest_before = newest
  if hb.now() - t0 > 45 then T.diag("stopping early to stay within the time budget"); break end
end
T.diag(string.format("%d kills: %d inside a checkpoint write, %d inside the removal of an old checkpoint, %d between "
  .. "writes; %d checkpoint loads verified, %d unloadable, %d newest-step regressions", mid_write + mid_prune + between,
  mid_write, mid_prune, between, verified, lost, regressions))
T.ok(mid_write >= 3, string.format("kills landed inside checkpoint writes (%d)", mid_write))
T.ok(lost == 0 and skipped == 0 and regressions == 0, "no checkpoint was lost, corrupt or skipped")

-- and the run still finishes: resume from the newest and train two more steps
local cks = tu.checkpoints(dir)
local last = cks[1] and cks[1].step or 0
local p = start(last + 2, tmp .. "/errfinal.txt")
local ok = p:close()
local err = read(tmp .. "/errfinal.txt")
T.ok(ok and (last == 0 or err:find(string.format("resuming from %s/ckpt-%08d", dir, last), 1, true)) and
  read(tmp .. "/out.txt"):find("done step " .. (last + 2), 1, true), "after the kills the run resumes and finishes", err)
os.execute("rm -rf " .. tmp)
T.done()
