-- test_blas_kernels.lua — OpenBLAS's kernels for this CPU (kernels/parallel.h, lua/main.c): a CPU newer than
-- OpenBLAS's table of models gets SSE3 (Prescott) kernels, 5x slower; hyblua then re-runs itself with
-- OPENBLAS_CORETYPE set. Checks: hb.blas_corename() names a core; on a CPU with AVX2 and FMA the core is
-- never a pre-AVX2 one (this fails without the re-exec on such a CPU, e.g. an Emerald Rapids Xeon with
-- Debian 12's OpenBLAS 0.3.21); a user's OPENBLAS_CORETYPE is kept; the re-run keeps the arguments. And
-- kgemm's path (hb.kgemm_path): HYBLUA_KGEMM=own|blas is obeyed, another value reported on stderr, and by
-- default OpenBLAS keeps the block products where it runs its AVX-512 kernels.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local name = hb.blas_corename()
T.ok(type(name) == "string" and #name > 0 and name ~= "?", "hb.blas_corename() names OpenBLAS's kernels", name)

local f = io.open("/proc/cpuinfo")
local info = f and f:read("a") or ""
if f then f:close() end
local flags = info:match("\nflags%s*:%s*([^\n]+)") or ""
local function has(x) return (" " .. flags .. " "):find(" " .. x .. " ", 1, true) ~= nil end
local old = { katmai = 1, coppermine = 1, northwood = 1, prescott = 1, banias = 1, atom = 1, core2 = 1, penryn = 1,
  dunnington = 1, nehalem = 1, opteron = 1, barcelona = 1, nano = 1, sandybridge = 1, bobcat = 1, bulldozer = 1,
  piledriver = 1 }
local ok, out = T.run("env -u OPENBLAS_CORETYPE ./hyblua -e 'io.write(hb.blas_corename())'")
if has("avx2") and has("fma") then
  T.ok(ok and not old[out:lower()], "a CPU with AVX2 and FMA runs AVX2 (or better) kernels", out)
else
  T.skip("a CPU with AVX2 and FMA runs AVX2 (or better) kernels", "the CPU has no AVX2 + FMA (" .. out .. ")")
end
ok, out = T.run("OPENBLAS_CORETYPE=Prescott ./hyblua -e 'io.write(hb.blas_corename())'")
T.ok(ok and out:lower() == "prescott", "a user's OPENBLAS_CORETYPE is kept, not overridden", out)
local script = os.tmpname()
f = assert(io.open(script, "w"))
f:write('io.write(table.concat(arg, ","), "|", arg[0], "|", tostring(os.getenv("HB_TEST_KEEP")))')
f:close()
ok, out = T.run("env -u OPENBLAS_CORETYPE HB_TEST_KEEP=yes ./hyblua " .. script .. " a 'b c'")
os.remove(script)
T.is(out, "a,b c|" .. script .. "|yes", "the re-run keeps the script, its arguments and the environment")
-- kgemm's path (kernels/kgemm.h): HYBLUA_KGEMM chooses; a wrong value is reported and the default used
ok, out = T.run("HYBLUA_KGEMM=blas ./hyblua -e 'io.write((hb.kgemm_path()))'")
T.is(out, "blas", "HYBLUA_KGEMM=blas puts the kernels' block products on OpenBLAS")
-- what the build compiled in (OPT decides: make asan builds without -march=native, so no own kernel there)
local _, isa = hb.kgemm_path()
T.ok(isa == "avx512" or isa == "avx2" or isa == "none", "hb.kgemm_path() names the own kernel compiled in", isa)
ok, out = T.run("HYBLUA_KGEMM=own ./hyblua -e 'io.write((hb.kgemm_path()))'")
if isa == "none" then
  T.ok(ok and out:find("no own kernel", 1, true) and out:sub(-4) == "blas",
    "HYBLUA_KGEMM=own in a build without the kernel: reported, OpenBLAS used", out)
else
  T.is(out, "own", "HYBLUA_KGEMM=own: the own kernel")
end
ok, out = T.run("env -u HYBLUA_KGEMM OPENBLAS_CORETYPE=SkylakeX ./hyblua -e 'io.write(hb.blas_corename(), \" \", (hb.kgemm_path()))'")
local core, path = out:match("^(%S+) (%S+)$")
T.ok(core and (core:lower() ~= "skylakex" or path == "blas"),
  "by default OpenBLAS keeps the block products where it runs its AVX-512 kernels", out)
T.done()
