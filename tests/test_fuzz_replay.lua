-- tests/test_fuzz_replay.lua — replays every fuzz target's committed inputs without libFuzzer: the seeds
-- (tests/fuzz/corpus/<target>/) and the reproducers of fixed bugs (tests/fuzz/regress/<target>/) go
-- through the target's LLVMFuzzerTestOneInput, built with the normal compiler and tests/fuzz/replay.c
-- ($(B)/fuzz/replay_<target>, see tests/fuzz/fuzz.mk; `make test` builds them and sets HB_FUZZ_BIN).
-- One TAP line per target: it passes when every input runs without a crash or a broken property.
local T = dofile("tests/tap.lua")
local hb = require "hyblua"

local bin = os.getenv("HB_FUZZ_BIN") or "build/fuzz"
local targets = {}
for _, name in ipairs(hb.data.list_dir("tests/fuzz")) do
  local t = name:match("^(.+)%.c$")
  if t and t ~= "replay" then targets[#targets + 1] = t end
end
T.ok(#targets >= 6, "found the fuzz targets in tests/fuzz/", table.concat(targets, " "))

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local log = os.tmpname()
for _, t in ipairs(targets) do
  local exe = bin .. "/replay_" .. t
  local f = io.open(exe, "rb")
  if not f then
    T.ok(false, "replay " .. t, exe .. " is missing (make test builds it)")
  else
    f:close()
    local cmd = string.format("%s %s %s >%s 2>&1", q(exe), q("tests/fuzz/corpus/" .. t), q("tests/fuzz/regress/" .. t),
      q(log))
    local ok = os.execute(cmd)
    local out = io.open(log, "rb"):read("a")
    local counts = {}
    for n, dir in out:gmatch("# (%d+) inputs? from ([^\n]+)") do counts[#counts + 1] = n .. " " .. dir:match("[^/]+/[^/]+$") end
    if ok then
      T.ok(true, "replay " .. t .. ": " .. table.concat(counts, ", "))
    else
      -- the last input named is the one that failed; show the end of the output
      T.ok(false, "replay " .. t, out:sub(-3000))
    end
  end
end
os.remove(log)
T.done()
