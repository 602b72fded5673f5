-- test_lua_random.lua — thousands of random calls into the public Lua API; the process must never
-- crash, and every failure must be a Lua error whose message is a non-empty string.
--
-- The API is enumerated, not listed: every function reachable from the module table (hb.*, hb.io.*,
-- hb.models.*, hb.optim.*, hb.schedule.*, hb.config.*, hb.data.*, hb.tokenizer.*, hb.train_utils.*,
-- hb.models.Model.*), every method and metamethod of hyblua.Tensor, and every method of the objects
-- that successful calls return (models, optimisers, tokenizers, ...) — so new functions are covered
-- without touching this file. Arguments are drawn from pools of awkward values: sizes 0, negative and
-- 2^40..2^63, every dtype name and wrong ones, nil, booleans, NaN and ±inf, strings (empty, binary,
-- 10 kB), tables (empty, ragged, deeply nested, cyclic, huge), functions that error, userdata, released
-- tensors, and the values earlier calls returned; sometimes extra arguments.
--
-- Seed: fixed and printed; HB_FUZZ_SEED=<n> replays or explores another run, HB_FUZZ_CALLS=<n> sets the
-- number of calls (default 30000). The calls run in a child process started in a scratch directory (so
-- that random relative paths land there); the child logs each call before making it, and when it dies
-- the parent reports the signal and the last call. Run it with a sanitizer build of hyblua as well:
-- ASAN_OPTIONS=detect_leaks=1 /path/to/asan/hyblua tests/test_lua_random.lua (the child uses the same
-- executable; with ASAN_OPTIONS set, the 4 GB address-space limit is not applied).
local hb = require "hyblua"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local repo = os.getenv("HB_FUZZ_REPO")
if not repo then -- the parent
  local p = io.popen("pwd"); local pwd = p:read("l"); p:close()
  local exe = arg[-1] or "./hyblua"
  if exe:sub(1, 1) ~= "/" then exe = pwd .. "/" .. exe end
  local tmp = os.tmpname(); os.remove(tmp); os.execute("mkdir -p " .. q(tmp))
  -- the child may use 4 GB of address space at most (HB_FUZZ_ULIMIT_KB; 0, or ASAN_OPTIONS set as make asan
  -- does, means no limit: sanitizer builds reserve terabytes of shadow memory), single tensors 64 MB, 120 s
  local lim = tonumber(os.getenv("HB_FUZZ_ULIMIT_KB") or "") or (os.getenv("ASAN_OPTIONS") and 0 or 4000000)
  local cmd = string.format("cd %s && %s HB_MAX_TENSOR_BYTES=67108864 HB_FUZZ_REPO=%s exec timeout -s KILL 120 %s " ..
    "%s/tests/test_lua_random.lua 2> stderr.txt", q(tmp), lim > 0 and string.format("ulimit -v %d &&", lim) or "",
    q(pwd), q(exe), q(pwd))
  local ok, how, code = os.execute(cmd)
  if not ok then -- a failed check (the child printed its TAP), a sanitizer report, or a crash
    local last = {}
    local f = io.open(tmp .. "/calls.log")
    if f then for l in f:lines() do last[#last + 1] = l; if #last > 3 then table.remove(last, 1) end end f:close() end
    print(string.format("# the fuzzing process ended with %s %s; its last calls:\n# %s", how, tostring(code),
      table.concat(last, "\n# ")))
    local f2 = io.open(tmp .. "/stderr.txt")
    local e = f2 and f2:read("a") or ""
    if f2 then f2:close() end
    print("# its stderr ends with:\n# " .. e:sub(-1500):gsub("\n", "\n# "))
    print("# the log is kept in " .. tmp)
    if how == "signal" or code >= 128 then print("Bail out! the fuzzing process died") end
    os.exit(1)
  end
  os.execute("rm -rf " .. q(tmp))
  os.exit(0)
end

-- ---- the child ------------------------------------------------------------------------------------------
local T = dofile(repo .. "/tests/tap.lua")
local seed = tonumber(os.getenv("HB_FUZZ_SEED") or "") or 7
local ncalls = tonumber(os.getenv("HB_FUZZ_CALLS") or "") or 30000
math.randomseed(seed)
T.diag(string.format("seed %d (HB_FUZZ_SEED=%d replays this run), %d calls", seed, seed, ncalls))
local log = assert(io.open("calls.log", "w"))
local R = math.random
local function pick(t) return t[R(#t)] end

-- ---- value pools -----------------------------------------------------------------------------------------
local BIG = { 1 << 40, 1 << 53, 1 << 62, math.maxinteger, math.mininteger, -(1 << 40), 2 ^ 40, 1e300 }
local SMALL = { 0, 1, 2, 3, 4, -1, -2, 8 }
local NUMS = { 0, 1, -1, 2, 3, 0.5, -0.5, 1e-300, 1e300, 0 / 0, math.huge, -math.huge, 7, 1e-8, 2 ^ 53, -7.25 }
local STRS = { "", "float32", "float64", "int64", "int32", "bfloat16", "bf16", "chunk", "recurrent", "cosine", "wsd",
  "gla", "gated_deltanet", "attention", "mean", "sum", "x", "\0", "\xff\xfe\xfd", string.rep("a", 10000),
  "out.safetensors", "sub/dir/x.json", "nonexistent/dir/file", "/", ".", "..", "/nonexistent/x", "/proc/self/status",
  "model.safetensors", "config.json", "{\"a\": [1, 2", "[1, 2, 3]", "lr=3e-4", "--steps=5", "a\nb", "%s%d%n", "ckpt",
  string.rep("[", 900) .. string.rep("]", 900), string.rep("{\"a\":", 500) .. "1" .. string.rep("}", 500),
  "a: [1, *x]", "-rf", "-", "x'y\"z", "model: {type: gla}\nlr: 3e-4\n" }
local function shape()
  local n = R(0, 4)
  local s = {}
  for i = 1, n do s[i] = R() < 0.08 and pick(BIG) or pick(SMALL) end
  return s
end
local deep = {}
do local c = deep for _ = 1, 300 do c[1] = {}; c = c[1] end end
local cyclic = { 1, 2 }; cyclic[3] = cyclic; cyclic.self = cyclic
local huge_list = {}
for i = 1, 5000 do huge_list[i] = i % 7 end
local released = hb.zeros({ 2, 2 }); released:close()
local scratch_file, closed_file = io.tmpfile(), io.tmpfile()
closed_file:close()

local pool = {}            -- values returned by successful calls (objects, tensors, tables)
local function tensor_seeds()
  local t = {}
  local function add(f) local ok, v = pcall(f); if ok and v ~= nil then t[#t + 1] = v end end
  add(function() return hb.zeros({ 2, 3 }) end)
  add(function() return hb.randn({ 2, 3 }) end)
  add(function() return hb.randn({ 3 }, "float64") end)
  add(function() return hb.tensor({ 1, 2, 3 }, "int64") end)
  add(function() return hb.tensor({ { 0, 1 }, { 1, 0 } }, "int32") end)
  add(function() return hb.tensor(2.5) end)
  add(function() return hb.zeros({ 0 }) end)
  add(function() return hb.zeros({ 0, 3 }) end)
  add(function() return hb.randn({ 1, 4, 2, 8 }) end)
  add(function() return hb.randn({ 1, 4, 2, 8 }, "float64") end)
  add(function() return hb.randn({ 1, 4, 2 }) end)
  add(function() return hb.randn({ 3, 2 }):t() end)
  add(function() return hb.full(0 / 0, { 2, 2 }) end)
  add(function() return hb.full(math.huge, { 3 }) end)
  add(function() local x = hb.randn({ 2, 2 }); x:requires_grad(true); return x end)
  add(function() local x = hb.randn({ 4 }); x:requires_grad(true); return (x * 2):sum() end)
  add(function() return hb.randint(0, 5, { 2, 3 }) end)
  add(function() return hb.randn({ 2, 1, 4 }):expand({ 2, 3, 4 }) end)
  return t
end
local TENSORS = tensor_seeds()
TENSORS[#TENSORS + 1] = released

-- (no function raising a non-string error: hyblua passes a callback's error object through unchanged)
local FUNCS = { function() end, function() error("boom") end, function(...) return ... end,
  function() return 1 end, function() return hb.zeros({ 2 }) end, tostring }
local function rtable()
  local c = R(14)
  if c == 1 then return {} elseif c == 2 then return shape() elseif c == 3 then return { { 1, 2 }, { 3, 4 } }
  elseif c == 4 then return { { 1 }, { 2, 3 } } elseif c == 5 then return deep elseif c == 6 then return cyclic
  elseif c == 7 then return huge_list elseif c == 8 then return { 1, "a", true }
  elseif c == 9 then return { pick(TENSORS), pick(TENSORS) }
  elseif c == 10 then -- a model config, sometimes plausible
    return { model_type = pick({ "gla", "gated_deltanet", "delta_net", "retnet", "hgrn", "hgrn2", "transformer", "mamba", 5 }),
      hidden_size = R() < 0.8 and pick({ 8, 16, 32 }) or pick(NUMS), num_hidden_layers = R() < 0.8 and R(0, 2) or pick(BIG),
      num_heads = R() < 0.8 and pick({ 1, 2, 4 }) or pick(SMALL), vocab_size = R() < 0.8 and pick({ 8, 16 }) or pick(BIG),
      head_dim = R() < 0.5 and pick({ 4, 8 }) or nil, attn = R() < 0.3 and { layers = shape(), num_heads = 2 } or nil,
      [pick({ "expand_k", "expand_v", "conv_size", "use_short_conv", "hidden_act", "norm_eps" })] = R() < 0.5 and pick(NUMS) or pick(STRS) }
  elseif c == 11 then return { lr = pick(NUMS), steps = pick(SMALL), schedule = pick(STRS), warmup = pick(NUMS) }
  elseif c == 12 then return { [pick(STRS)] = pick(NUMS), [1] = pick(STRS) }
  elseif c == 13 then return setmetatable({}, { __index = function() error("metatable trap") end })
  else return pool[R(math.max(#pool, 1))] or {} end
end

local value -- forward
local function value_of(kind)
  if kind == 1 then return nil
  elseif kind == 2 then return R() < 0.5
  elseif kind == 3 then return pick(NUMS)
  elseif kind == 4 then return R() < 0.5 and pick(SMALL) or pick(BIG)
  elseif kind == 5 then return pick(STRS)
  elseif kind == 6 then return rtable()
  elseif kind == 7 then return pick(TENSORS)
  elseif kind == 8 then return pick(FUNCS)
  elseif kind == 9 then return pick({ hb.io.null, hb.io.empty_array, coroutine.create(function() end), scratch_file, closed_file })
  else return pool[R(math.max(#pool, 1))] end
end
-- tensors and small integers are the most useful arguments; everything else keeps showing up
local WEIGHTS = { 1, 1, 2, 4, 2, 3, 6, 1, 1, 3 }
local WTOTAL = 0
for _, w in ipairs(WEIGHTS) do WTOTAL = WTOTAL + w end
function value()
  local r = R(WTOTAL)
  for k, w in ipairs(WEIGHTS) do
    if r <= w then return value_of(k) end
    r = r - w
  end
end

local function args(nmax)
  local n = R(0, nmax)
  if R() < 0.1 then n = n + R(1, 4) end   -- extra arguments
  local a = {}
  for i = 1, n do a[i] = value() end
  return a, n
end

local function repr(v)
  local t = type(v)
  if t == "string" then return #v > 20 and string.format("string(%d)", #v) or string.format("%q", v) end
  if t == "number" then return tostring(v) end
  if t == "userdata" then
    local mt = getmetatable(v)
    if mt and mt.__name == "hyblua.Tensor" then
      local ok, s = pcall(function() return "tensor" .. hb.io.encode_json(v:shape()) .. v:dtype() end)
      return ok and s or "tensor(released)"
    end
    return mt and mt.__name or "userdata"
  end
  if t == "table" then
    if v == deep then return "deep" elseif v == cyclic then return "cyclic" elseif v == huge_list then return "list(5000)" end
    local ok, s = pcall(hb.io.encode_json, v)
    return ok and #s < 60 and s or "table"
  end
  return t
end

-- ---- the API --------------------------------------------------------------------------------------------------
-- never called at random: they sleep, change process-wide settings, or run whole trainings/recipes; and
-- hb.user_error / hb.rethrow, which raise the message they are given (an empty one too) by design
local SKIP = { ["hb.sleep"] = true, ["hb.set_num_threads"] = true, ["hb.train"] = true, ["hb.defer_interrupts"] = true,
  ["hb.user_error"] = true, ["hb.rethrow"] = true }
local api, seen = {}, {}
local function walk(t, name, depth)
  if seen[t] or depth > 3 then return end
  seen[t] = true
  local keys = {}
  for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v, full = rawget(t, k), name .. "." .. k
    if type(v) == "function" and not SKIP[full] then api[#api + 1] = { name = full, fn = v }
    elseif type(v) == "table" and k ~= "mixers" then walk(v, full, depth + 1) end
  end
end
walk(hb, "hb", 0)
local tmt = getmetatable(TENSORS[1])
local methods = {}
for k, v in pairs(tmt.methods) do methods[#methods + 1] = { name = "Tensor:" .. k, fn = v } end
for _, k in ipairs({ "__add", "__sub", "__mul", "__div", "__pow", "__unm", "__eq", "__len", "__tostring", "__index",
  "__newindex", "__close", "__gc" }) do
  if tmt[k] then methods[#methods + 1] = { name = "Tensor." .. k, fn = tmt[k] } end
end
table.sort(methods, function(a, b) return a.name < b.name end)
T.diag(string.format("%d module functions and %d Tensor methods/metamethods enumerated", #api, #methods))

-- methods of an object from the pool (models, optimisers, tokenizers, data sources, ...)
local function object_methods(o)
  local out = {}
  local function add(t)
    if type(t) ~= "table" then return end
    for k, v in pairs(t) do if type(v) == "function" and type(k) == "string" then out[#out + 1] = { name = k, fn = v } end end
  end
  if type(o) == "table" then add(o) end
  local mt = getmetatable(o)
  if mt and mt ~= tmt then add(mt.__index); add(mt.methods) end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

-- ---- calling -----------------------------------------------------------------------------------------------------
local stats = {}
local bad_msgs, slow = {}, {}
local ncall = 0
local function call(group, name, fn, a, n)
  ncall = ncall + 1
  local parts = {}
  for i = 1, n do parts[i] = repr(a[i]) end
  log:write(ncall, " ", name, "(", table.concat(parts, ", "), ")\n")
  log:flush()
  local tc = hb.now()
  local res = table.pack(pcall(fn, table.unpack(a, 1, n)))
  tc = hb.now() - tc
  if tc > 0.2 and #slow < 20 then slow[#slow + 1] = string.format("%.2f s: %s(%s)", tc, name, table.concat(parts, ", ")) end
  local st = stats[group] or { calls = 0, errors = 0 }
  stats[group] = st
  st.calls = st.calls + 1
  if not res[1] then
    st.errors = st.errors + 1
    local e = res[2]
    if type(e) ~= "string" or #e == 0 then
      if #bad_msgs < 20 then bad_msgs[#bad_msgs + 1] = string.format("%s(%s) raised %s %s", name, table.concat(parts, ", "), type(e), tostring(e)) end
    end
  else
    for i = 2, math.min(res.n, 4) do
      local v = res[i]
      local tv = type(v)
      if (tv == "userdata" or tv == "table") and v ~= cyclic and v ~= deep and #pool < 200 then pool[#pool + 1] = v end
      if tv == "userdata" and getmetatable(v) == tmt and #TENSORS < 60 then TENSORS[#TENSORS + 1] = v end
    end
  end
end

local t0 = hb.now()
for i = 1, ncalls do
  local r = R()
  if r < 0.40 then
    local m = pick(methods)
    local a, n = args(3)
    table.insert(a, 1, R() < 0.9 and pick(TENSORS) or value())
    call("Tensor methods and metamethods", m.name, m.fn, a, n + 1)
  elseif r < 0.85 then
    local f = pick(api)
    local a, n = args(4)
    local group = f.name:match("^hb%.([%w_]+)%.") and "hb." .. f.name:match("^hb%.([%w_]+)%.") .. ".*" or "hb.* functions"
    call(group, f.name, f.fn, a, n)
  else
    local objs = {}
    for _, v in ipairs(pool) do   -- hyblua's objects only (an identity callback may return a Lua FILE*)
      local mt = getmetatable(v)
      if type(v) == "table" or (mt and mt ~= tmt and tostring(mt.__name):match("^hyblua%.")) then objs[#objs + 1] = v end
    end
    local o = objs[R(math.max(#objs, 1))]
    local ms = o and object_methods(o) or {}
    if #ms > 0 then
      local m = pick(ms)
      local a, n = args(3)
      table.insert(a, 1, R() < 0.9 and o or value())
      call("methods of returned objects", "obj:" .. m.name, m.fn, a, n + 1)
    end
  end
  if i % 500 == 0 then
    collectgarbage()
    if #pool > 150 then for k = 1, 100 do table.remove(pool, 1) end end
    hb.set_grad_enabled(true)
  end
end
log:close()

local groups = {}
for g in pairs(stats) do groups[#groups + 1] = g end
table.sort(groups)
local total, errs = 0, 0
for _, g in ipairs(groups) do
  local st = stats[g]
  total, errs = total + st.calls, errs + st.errors
  T.ok(true, string.format("%s: %d calls, %d raised errors, none crashed", g, st.calls, st.errors))
end
T.ok(#bad_msgs == 0, string.format("every error of %d raised is a non-empty string message", errs),
  table.concat(bad_msgs, "\n"))
T.diag(string.format("%d calls in %.1f s: %d errors, %d returned values", total, hb.now() - t0, errs, total - errs))
for _, s in ipairs(slow) do T.diag("slow call " .. s) end

-- the few functions kept out of the random calls, with bad arguments only
for _, a in ipairs({ { 0 }, { 257 }, { -1 }, { 0 / 0 }, { "x" }, { 1 << 40 }, {} }) do
  local ok, e = pcall(hb.set_num_threads, table.unpack(a))
  T.ok(not ok and type(e) == "string" and #e > 0, "set_num_threads(" .. repr(a[1]) .. ") is refused with a message", e)
end
T.ok(not pcall(hb.sleep, "x") and not pcall(hb.sleep), "sleep refuses non-numbers")

-- what the fuzzing found, with the exact messages (docs/reliability.md, bad-input catalogue)
T.raises(function() hb.zeros({ 1 << 40 }) end, "tensor of 1099511627776 elements (4.4e+03 GB) is larger than",
  "a tensor larger than memory is refused before allocating")
T.raises(function() hb.zeros({ 1 << 32, 1 << 32 }) end, "shape has too many elements (the product of its sizes exceeds 2^62)",
  "sizes whose product overflows are refused")
T.raises(function() hb.zeros({ 1 }):expand({ 1 << 53 }) end, "expand: the result, a tensor of 9007199254740992 elements",
  "expand cannot make a view larger than memory")
T.raises(function() getmetatable(hb.zeros({ 1 })).__index(5, "x") end, "hyblua.Tensor expected, got number",
  "Tensor.__index called on a non-tensor raises")
T.raises(function() hb.zeros({ 2 }):softmax(math.mininteger) end,
  "dim -9223372036854775808 out of range for a 1-d tensor", "dim = math.mininteger is out of range")
T.raises(function() local c = {}; c.a = c; hb.io.encode_json(c) end, "write_json: nesting deeper than 64 (a cycle?)", "a cyclic table cannot be encoded")
T.raises(function() hb.io.encode_json({ a = { 1, print } }) end, "write_json: cannot encode a function", "a function cannot be encoded")
T.raises(function() hb.schedule.ratio(3, { num_heads = 2 }):resolve(1 << 62) end,
  "the number of layers must be an integer in [0, 1048576], got 4611686018427387904", "a schedule over 2^62 layers is refused")
T.raises(function() hb.train_utils.synthetic_batch(0, 1 << 40, 1 << 40, 5) end, "synthetic_batch: B·T = 1099511627776·1099511627776 is over 2^24 tokens",
  "synthetic_batch refuses sizes it cannot hold")
T.raises(function() hb.train_utils.save_checkpoint(hb.zeros({ 1 }), 1, nil) end, "train: a checkpoint path must be a string, got a userdata",
  "a checkpoint path must be a string")
T.raises(function() hb.train_utils.checkpoints("a\0b") end, "train: checkpoint path contains a NUL byte", "a path with a NUL byte is refused")
T.done()
