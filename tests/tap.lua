-- tests/tap.lua — a tiny TAP producer for the Lua tests (dofile("tests/tap.lua") returns it).
-- ok(cond, desc), is(a, b, desc), like(str, pattern, desc), raises(fn, pattern, desc), done(); run(cmd), exists(path).
local T = { n = 0, failed = 0 }
function T.ok(cond, desc, diag)
  T.n = T.n + 1
  print(string.format("%sok %d - %s", cond and "" or "not ", T.n, desc or ""))
  if not cond then
    T.failed = T.failed + 1
    if diag then print("# " .. tostring(diag):gsub("\n", "\n# ")) end
  end
  io.stdout:flush()
  return cond
end
function T.is(a, b, desc) return T.ok(a == b, desc, string.format("got %s, expected %s", tostring(a), tostring(b))) end
function T.like(s, pat, desc) return T.ok(type(s) == "string" and s:find(pat, 1, true) ~= nil, desc, "got: " .. tostring(s)) end
-- fn must raise an error whose message contains `pat` (plain text)
function T.raises(fn, pat, desc)
  local ok, err = pcall(fn)
  if ok then return T.ok(false, desc, "no error raised") end
  return T.like(tostring(err), pat, desc)
end
-- a known gap: "not ok N - desc # TODO why" (prove counts it, but it does not fail the file)
function T.todo(desc, why) T.n = T.n + 1; print(string.format("not ok %d - %s # TODO %s", T.n, desc, why)) end
function T.skip(desc, why) T.n = T.n + 1; print(string.format("ok %d - %s # SKIP %s", T.n, desc, why)) end
function T.diag(s) print("# " .. tostring(s)) end
function T.done()
  print("1.." .. T.n)
  os.exit(T.failed == 0 and 0 or 1)
end
-- run a shell command: whether it succeeded and its stdout and stderr together
function T.run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end
function T.exists(path) local f = io.open(path); if f then f:close(); return true end return false end
-- where the reference fixtures live (make test sets HB_FIXTURES)
T.fixtures = os.getenv("HB_FIXTURES") or "tests/fixtures"
return T
