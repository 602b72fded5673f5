-- test_limits.lua — work and memory stay bounded, conversions defined (issue 17, items 9, 10 and 13):
--   * YAML duplicate-key detection and anchor lookup are hash tables: a document of 10^6 keys (or 2·10^5
--     anchors and aliases) loads or is refused within a CPU-time limit in a child process, where the
--     linear scans of the branch point took minutes;
--   * a model whose float32 weights exceed the machine's memory (or hb.models.max_bytes) is refused
--     before anything is allocated, and hb.train refuses one whose weights, gradients and AdamW moments
--     (16 bytes a parameter) would not fit, before the first step;
--   * float → int conversions saturate (NaN → 0) instead of being undefined, values that no integer
--     dtype holds are refused where the user gives them, and a GLA chunk of 2^40 is clamped.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local HY = arg[-1] or "./hyblua"
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)

-- run code in a child hyblua under a CPU-time limit (seconds) and an address-space limit (KB); returns
-- the exit status and output. The limits are resource bounds, not timings: the child either finishes or
-- is killed.
local function child(code, cpu_s, vm_kb)
  local f = io.open(tmp .. "/child.lua", "w")
  f:write('local hb = require "hyblua"\n' .. code)
  f:close()
  local lim = string.format("ulimit -t %d;%s", cpu_s, (vm_kb and not os.getenv("ASAN_OPTIONS")) and (" ulimit -v " .. vm_kb .. ";") or "")
  local p = io.popen(string.format("(%s exec %s %s/child.lua) 2>&1; echo \"rc=$?\"", lim, HY, tmp))
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

-- ---- item 9: YAML in O(n) ------------------------------------------------------------------------------
local function write(name, n, line)
  local f = io.open(tmp .. "/" .. name, "w")
  local buf = {}
  for i = 1, n do
    buf[#buf + 1] = line(i)
    if #buf == 10000 then f:write(table.concat(buf)); buf = {} end
  end
  f:write(table.concat(buf))
  f:close()
  return tmp .. "/" .. name
end
local keys = write("keys.yaml", 400000, function(i) return string.format("k%d: %d\n", i, i) end)
local rc, out = child(string.format("local v = hb.config.load(%q); local n = 0; for _ in pairs(v) do n = n + 1 end; print('keys ' .. n)", keys), 60)
T.ok(rc == 0 and out:find("keys 400000", 1, true), "400 000 distinct keys load (duplicate detection is not a linear scan)", out:sub(1, 300))
local dup = write("dup.yaml", 400001, function(i) return i <= 400000 and string.format("k%d: %d\n", i, i) or "k17: 0\n" end)
rc, out = child(string.format("print(pcall(hb.config.load, %q))", dup), 60)
T.ok(rc == 0 and out:find("dup.yaml:400001:1: duplicate key 'k17' (first at line 17)", 1, true),
  "a duplicate among 400 000 keys is found, naming both lines", out:sub(1, 300))
local big = write("big.yaml", 1200000, function(i) return string.format("k%d: %d\n", i, i) end)
rc, out = child(string.format("print(pcall(hb.config.load, %q))", big), 60)
T.ok(rc == 0 and out:find("document too large (more than 1000000 nodes", 1, true), "1.2 million keys are refused at the node limit", out:sub(1, 300))
local anchors = write("anchors.yaml", 200001, function(i)
  if i <= 200000 then return string.format("a%d: &x%d %d\n", i, i, i) end
  local l = {}
  for k = 1, 200000 do l[#l + 1] = "*x" .. k end
  return "b: [" .. table.concat(l, ", ") .. "]\n"
end)
rc, out = child(string.format("local v = hb.config.load(%q); print('aliases ' .. #v.b .. ' ' .. v.b[2])", anchors), 60)
T.ok(rc == 0 and out:find("aliases 200000 2", 1, true), "200 000 anchors and as many aliases resolve (anchor lookup is hashed)", out:sub(1, 300))
local redef = write("redef.yaml", 3, function(i) return ({ "a: &x 1\n", "b: &x 2\n", "c: *x\n" })[i] end)
T.is(hb.config.load(redef).c, 2, "a redefined anchor: the alias takes the latest definition")

-- ---- item 10: the model's bytes against memory --------------------------------------------------------------
local phys = hb.physical_memory()
T.ok(math.type(phys) == "integer" and phys > 0, "hb.physical_memory() gives the machine's memory in bytes")
rc, out = child([[
hb.models.max_params = 2 ^ 62     -- only the memory check stands in the way
print(pcall(hb.models.new, { model_type = "gla", hidden_size = 4096, num_hidden_layers = 100000, vocab_size = 32000, num_heads = 4 }))
print("allocated " .. hb.tensor_bytes())]], 60, 4000000)
T.ok(rc == 0 and out:find("config: the model's weights would take at least", 1, true) and out:find("more than this machine's memory", 1, true)
  and out:find("set hb.models.max_bytes (bytes) to override", 1, true) and out:find("allocated 0", 1, true),
  "a model larger than the machine's memory is refused before anything is allocated, saying how to override", out:sub(1, 500))
hb.models.max_bytes = 1 << 20
local ok, e = pcall(hb.models.new, { model_type = "gla", hidden_size = 256, num_hidden_layers = 2, vocab_size = 256, num_heads = 2 })
T.ok(not ok and tostring(e):find("more than hb.models.max_bytes (1.0 MiB)", 1, true), "hb.models.max_bytes lowers the limit", e)
local m = hb.models.new({ model_type = "gla", hidden_size = 32, num_hidden_layers = 2, vocab_size = 256, num_heads = 2 })
local stepped = false
ok, e = pcall(hb.train, { model = m, steps = 1, progress = false,
  batch = function(k) stepped = true; return hb.tensor(hb.train_utils.synthetic_batch(k, 1, 9, 256), "int64") end })
T.ok(not ok and not stepped and tostring(e):find("hb.train: training this model needs at least 1.2 MiB (75488 parameters × 16 bytes", 1, true),
  "hb.train refuses a model whose weights, gradients and AdamW moments exceed the limit, before the first step", e)
hb.models.max_bytes = nil
T.ok(pcall(hb.train, { model = m, steps = 1, progress = false,
  batch = function(k) return hb.tensor(hb.train_utils.synthetic_batch(k, 1, 9, 256), "int64") end }), "and trains it with the default limit")

-- ---- item 13: no undefined float → int conversion, a GLA chunk of 2^40 --------------------------------------
-- (make asan now names -fsanitize=float-cast-overflow, which reports each of these on the branch point)
local l = hb.tensor({ 1e300, -1e300, 0 / 0, -2.7, 2.7 }):long():tolist()
T.ok(l[1] == math.maxinteger and l[2] == math.mininteger and l[3] == 0 and l[4] == -2 and l[5] == 2,
  "float → int64 truncates toward zero, saturates at the limits, NaN → 0", table.concat(l, " "))
local i32 = hb.tensor({ 3e9, -3e9, 0 / 0 }):int():tolist()
T.ok(i32[1] == 2147483647 and i32[2] == -2147483648 and i32[3] == 0, "float → int32 saturates too", table.concat(i32, " "))
T.is(hb.tensor({ math.maxinteger }, "int64"):get(1), math.maxinteger, "int64 elements are read exactly (2^63 - 1 stays itself)")
T.raises(function() return hb.tensor({ 1e300 }, "int64") end, "hb.tensor: element 1 is 1e+300, not an integer that fits int64",
  "hb.tensor refuses a value no int64 holds")
T.raises(function() return hb.tensor({ 1, 2 ^ 40 }, "int32") end, "element 2 is 1099511627776.0, not an integer that fits int32",
  "and one beyond int32")
T.raises(function() return hb.tensor({ 2.5 }, "int64") end, "element 1 is 2.5, not an integer", "and a fraction for an integer dtype")
T.raises(function() return hb.full(0 / 0, { 2 }, "int32") end, "hb.full: the value is", "hb.full refuses NaN for an int32 tensor")
T.raises(function() return hb.zeros({ 2 }, "int64"):fill_(1e300) end, "fill_: the value is 1e+300", "fill_ refuses 1e300 for int64")
T.raises(function() hb.zeros({ 2 }, "int32"):set(1e20, 1) end, "set: the value is 1e+20", "set refuses 1e20 for int32")
do
  local q = hb.randn(1, 20, 2, 8)
  local g = q:sigmoid():log()
  local ok, big = pcall(hb.gla, { q = q, k = q, v = q, g = g, scale = 0.35, mode = "chunk", chunk = 1 << 40 })
  local ref = hb.gla { q = q, k = q, v = q, g = g, scale = 0.35, mode = "chunk", chunk = 64 }
  T.ok(ok and (big - ref):abs():max():item() == 0, "hb.gla with chunk 2^40 is one chunk of the whole sequence (the same output as chunk 64 here)", big)
end

os.execute("rm -rf '" .. tmp .. "'")
T.done()
