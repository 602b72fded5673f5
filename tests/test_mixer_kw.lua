-- test_mixer_kw.lua — the keyword-table calls of the mixers and sequence ops (lua/lmixer.c, lua/lnn.c,
-- lua/lkw.c): argument errors with their exact messages, defaults, and chunk == recurrent == decode steps
-- for every mixer through the binding.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

hb.manual_seed(3)
local B, Tn, H, K, V = 2, 9, 2, 4, 3
local function rnd(...) return hb.randn(...):double() * 0.5 end
local function decay(...) return -(hb.rand(...):double() * 0.9 + 0.05) end
local q, k, v, g = rnd(B, Tn, H, K), rnd(B, Tn, H, K), rnd(B, Tn, H, V), decay(B, Tn, H, K)

-- argument errors
T.raises(function() return hb.gla { q = q, k = k, v = v, gk = g } end, "hb.gla: unknown argument 'gk' (did you mean 'g'?)",
  "unknown key with a suggestion")
T.raises(function() return hb.gla { q = q, k = k, v = v, g = g, chunk_size = 16 } end,
  "hb.gla: unknown argument 'chunk_size' (it takes q, k, v, g, scale, mode, chunk, state, cu_seqlens)", "unknown key: the names it takes")
T.raises(function() return hb.gla { q = q, k = k, v = v } end, "hb.gla: missing argument 'g'", "missing required argument")
T.raises(function() return hb.gla { q = 1, k = k, v = v, g = g } end, "hb.gla: argument 'q' must be a hyblua.Tensor, got number",
  "tensor argument of the wrong type")
T.raises(function() return hb.gla { q = q, k = k, v = v, g = g, scale = "x" } end,
  "hb.gla: argument 'scale' must be a number, got string", "number argument of the wrong type")
T.raises(function() return hb.gla { q = q, k = k, v = v, g = g, state = 1 } end,
  "hb.gla: argument 'state' must be a boolean, got number", "boolean argument of the wrong type")
T.raises(function() return hb.gla { q = q, k = k, v = v, g = g, chunk = 0 } end, "hb.gla: chunk must be a positive integer, got 0",
  "chunk must be positive")
T.raises(function() return hb.gla { q = q, k = k, v = v, g = g, mode = "fast" } end,
  "hb.gla: mode must be 'chunk' or 'recurrent', got 'fast'", "bad mode")
T.raises(function() return hb.gla(q, k, v, g, K ^ -0.5) end, "hb.gla takes a table of named arguments, e.g. hb.gla{q = ...} (got hyblua.Tensor)",
  "the old positional form is refused")
T.raises(function() return hb.gla({ q = q, k = k, v = v, g = g }, 1) end, "hb.gla takes one table of named arguments (got 2 arguments)",
  "extra positional arguments are refused")
T.raises(function() return hb.gla { q, k, v, g } end, "hb.gla takes named arguments only (got a number key)", "a list is refused")
T.raises(function() return hb.hgrn { x = q, g = g, chunk = 64 } end, "hb.hgrn: unknown argument 'chunk' (it takes x, g, mode, state, cu_seqlens)",
  "hgrn takes no chunk")
T.raises(function() return hb.delta_rule_step { q = q, k = k, v = v, beta = q } end, "hb.delta_rule_step: missing argument 'state'",
  "a step needs its state")
T.raises(function() return hb.retention { q = q, k = k, v = v, decay = hb.zeros(3, "float64") } end,
  "retention: decay has shape [3], expected [2]", "shape errors come from the op with the keyword's name")
T.raises(function() return hb.conv1d { x = hb.ones(1, 4, 6), w = hb.ones(6, 1, 4), act = "relu" } end,
  "hb.conv1d: act must be nil or 'silu', got 'relu'", "conv1d: unknown activation")
T.raises(function() return hb.attention_step { q = hb.ones(1, 2, 8), k_cache = hb.ones(1, 4, 2, 8), v_cache = hb.ones(1, 4, 2, 8) } end,
  "hb.attention_step: missing argument 'pos'", "attention_step needs pos")
T.raises(function() return hb.attention { q = q, k = k, v = v, windw = 2 } end, "hb.attention: unknown argument 'windw' (did you mean 'window'?)",
  "attention: did you mean")

local function maxdiff(a, b) return (a - b):abs():max():item() end

-- defaults: scale = K^-1/2, mode = "chunk", one return value unless state = true
do
  local o1 = hb.gla { q = q, k = k, v = v, g = g }
  local o2, s2 = hb.gla { q = q, k = k, v = v, g = g, scale = K ^ -0.5, mode = "chunk", chunk = 64, state = true }
  T.ok(maxdiff(o1, o2) == 0 and s2 ~= nil and select("#", hb.gla { q = q, k = k, v = v, g = g }) == 1,
    "gla defaults: scale K^-1/2, chunk mode; the state only on request")
end

-- every mixer: chunk == recurrent (output and final state), and T decode steps == the forward
local beta = hb.rand(B, Tn, H):double() * 0.8 + 0.1
local lg = hb.tensor({ math.log(1 - 2 ^ -5), math.log(1 - 2 ^ -6) }, "float64")
local x, gx = rnd(B, Tn, 5), decay(B, Tn, 5)
local kn = k / (k:square():sum(-1, true) + 1e-6):sqrt()
local cases = {
  { "gla", { q = q, k = k, v = v, g = g } },
  { "retention", { q = q, k = k, v = v, decay = lg } },
  { "delta_rule", { q = q, k = kn, v = v, beta = beta } },
  { "delta_rule", { q = q, k = kn, v = v, beta = beta, g = decay(B, Tn, H) }, "gated " },
  { "hgrn", { x = x, g = gx } },
}
for _, c in ipairs(cases) do
  local name, args, tag = c[1], c[2], c[3] or ""
  local function call(extra)
    local t = {}
    for key, val in pairs(args) do t[key] = val end
    for key, val in pairs(extra) do t[key] = val end
    return hb[name](t)
  end
  local oc, sc = call { mode = "chunk", state = true, chunk = name ~= "hgrn" and 4 or nil }
  local orr, sr = call { mode = "recurrent", state = true }
  T.ok(maxdiff(oc, orr) < 1e-10 and maxdiff(sc, sr) < 1e-10, tag .. name .. ": chunk == recurrent through the binding",
    string.format("%.2e / %.2e", maxdiff(oc, orr), maxdiff(sc, sr)))
  local st = hb.zeros(table.unpack(sc:shape())):double()
  local worst = 0
  for t = 1, Tn do
    local a = { state = st }
    for key, val in pairs(args) do a[key] = (key == "decay") and val or val:select(2, t) end
    worst = math.max(worst, maxdiff(hb[name .. "_step"](a), oc:select(2, t)))
  end
  T.ok(worst < 1e-10 and maxdiff(st, sc) < 1e-10, tag .. name .. "_step: " .. Tn .. " steps == the forward",
    string.format("%.2e", worst))
end

-- conv1d and attention keyword forms agree with their step forms
do
  local xs, w = rnd(1, 5, 6), rnd(6, 1, 3)
  local y, cache = hb.conv1d { x = xs:narrow(2, 1, 4), w = w, act = "silu", cache = true }
  local yall = hb.conv1d { x = xs, w = w, act = "silu" }
  local y5 = hb.conv1d_step { cache = cache, x = xs:select(2, 5), w = w, act = "silu" }
  T.ok(maxdiff(y, yall:narrow(2, 1, 4)) < 1e-12 and maxdiff(y5, yall:select(2, 5)) < 1e-12, "conv1d{cache = true} + conv1d_step == conv1d")
  local qa, ka, va = rnd(1, 6, 2, 8), rnd(1, 6, 2, 8), rnd(1, 6, 2, 8)
  local o = hb.attention { q = qa, k = ka, v = va, window = 3 }
  local o6 = hb.attention_step { q = qa:select(2, 6), k_cache = ka, v_cache = va, window = 3, pos = 5 }
  T.ok(maxdiff(o:select(2, 6), o6) < 1e-12, "attention_step{pos = 5} == attention{} at the last position (default scale D^-1/2)")
end
T.done()
