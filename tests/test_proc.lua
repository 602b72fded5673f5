-- test_proc.lua — hb.proc: spawning without a shell, exit codes, and per-path locks (paper_grid --jobs).
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local P = hb.proc

local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local function slurp(p) local f = io.open(p, "rb"); if not f then return nil end local s = f:read("a"); f:close(); return s end
local exe = P.self_exe()
-- children run small scripts (hyblua's -e takes no arguments after it: the next word would be a script)
local function script(name, code)
  local path = tmp .. "/" .. name .. ".lua"
  local f = assert(io.open(path, "w")); f:write(code); f:close()
  return path
end
local echo = script("echo", "io.write(arg[1]); io.stderr:write('E'); os.exit(7)")
local spin = script("spin", "local t = os.time(); while os.time() - t < 20 do end")
local try = script("try", "local hb = require \"hyblua\"; local k = hb.proc.lock(arg[1]); os.exit(k and 0 or 3)")
local hold = script("hold", "local hb = require \"hyblua\"; local k = hb.proc.lock(arg[1]); io.open(arg[1] .. '.ready', 'w'):close(); while true do end")
T.ok(exe:sub(1, 1) == "/" and exe:find("hyblua", 1, true), "self_exe is the absolute path of the running hyblua", exe)

-- spawn + wait: arguments reach the child verbatim (no shell), output is redirected, the exit code comes back
local weird = "a b;$(echo no)'\"*"
local pid = P.spawn({ exe, echo, weird },
  { stdout = tmp .. "/out", stderr = tmp .. "/err" })
T.ok(math.type(pid) == "integer" and pid > 0, "spawn returns a pid")
T.is(P.wait(pid), 7, "wait returns the child's exit code")
T.is(slurp(tmp .. "/out"), weird, "an argument with shell metacharacters arrives unchanged (no shell)")
T.is(slurp(tmp .. "/err"), "E", "stderr goes to its own file")
T.is(P.wait(P.spawn { "/nonexistent/program" }), 127, "a program that cannot be executed exits 127")

-- nohang, alive, kill
pid = P.spawn { exe, spin }
T.is(P.wait(pid, true), nil, "wait(pid, true) returns nil while the child runs")
T.ok(P.alive(pid), "alive while running")
T.ok(P.kill(pid, 9), "kill sends the signal")
T.is(P.wait(pid), 128 + 9, "a killed child reports 128 + signal")

-- bad input: clear errors
T.raises(function() P.spawn {} end, "argv must be a non-empty list", "empty argv refused")
T.raises(function() P.spawn { exe, 3 } end, "argv[2] is a number (strings expected)", "non-string argument refused")
T.raises(function() P.spawn { exe, "a\0b" } end, "argv[2] contains a NUL byte", "NUL in an argument refused")
T.raises(function() P.spawn({ exe }, { stderr = tmp .. "/x\0y" }) end, "an output path contains a NUL byte", "NUL in an output path refused")
T.raises(function() P.spawn({ exe }, { stdout = 1 }) end, "stdout must be a path (string), got number", "bad stdout refused")
T.raises(function() P.spawn({ exe }, { stdout = tmp .. "/no/such/dir/x" }) end, "cannot open " .. tmp .. "/no/such/dir/x",
  "unopenable output file named")
T.raises(function() P.wait(0) end, "pid must be a positive process id, got 0", "wait(0) refused (not a group)")
T.raises(function() P.kill(-1) end, "pid must be a positive process id, got -1", "kill(-1) refused (never all processes)")
T.raises(function() P.kill(P.getpid(), 999) end, "signal must be in 0..64, got 999", "bad signal refused")
T.raises(function() P.wait(P.getpid()) end, "not a child of this process", "wait on a non-child names the problem")
T.raises(function() P.lock("") end, "path must be a non-empty string", "empty lock path refused")

-- locks: exclusive within this process and against another process; released on release() and on exit
local lp = tmp .. "/cell.lock"
local k = P.lock(lp)
T.ok(k ~= nil, "lock acquired")
T.like(slurp(lp), P.hostname() .. " " .. P.getpid(), "the lock file names its holder (host pid)")
local k2, holder = P.lock(lp)
T.is(k2, nil, "a second lock of the same path in the same process fails")
T.is(holder, P.hostname() .. " " .. P.getpid(), "and names the holder")
local code = P.wait(P.spawn { exe, try, lp })
T.is(code, 3, "another process cannot take a held lock")
k:release()
T.ok(slurp(lp) == nil, "release removes the lock file")
k:release() -- idempotent
code = P.wait(P.spawn { exe, try, lp })
T.is(code, 0, "after release another process takes it")
-- a holder that dies (SIGKILL, no cleanup) leaves a file but no stale lock
pid = P.spawn { exe, hold, lp }
local t0 = hb.now()
while not slurp(lp .. ".ready") and hb.now() - t0 < 30 do end
local busy = P.lock(lp)
T.is(busy, nil, "a live holder in another process blocks the lock")
P.kill(pid, 9); P.wait(pid)
T.ok(slurp(lp) ~= nil, "a killed holder leaves its lock file behind")
do
  local k3 <close> = P.lock(lp)
  T.ok(k3 ~= nil, "but the lock is free: the kernel released it with the process")
end
T.ok(slurp(lp) == nil, "a <close> lock is released at the end of its scope")

os.execute("rm -rf '" .. tmp .. "'")
T.done()
