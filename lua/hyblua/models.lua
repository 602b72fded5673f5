-- hyblua/models.lua — fla's seven model types and their hybrids, built from a config table.
--
-- A model is a table of parameters keyed by fla's names (model.layers.3.attn.q_proj.weight, ...) plus
-- per-layer mixer functions. Every mixer is written once over a tiny "context" so the same code runs
-- the full-sequence forward (chunk or recurrent kernels) and the decode step (state updates):
--   conv(x, name, act)  — short convolution; with a cache it prefills/steps the conv state
--   kernel(...)         — the recurrence; with a cache it returns/steps the recurrent state
-- Semantics: shared/spec/fla-models.md (section numbers in comments). Index convention: Lua dims are
-- 1-based (hb binding), fla layer indices are 0-based as in config.json.
return function(hb)
  local C = require "hyblua.config_fla"
  C.init(hb.io.null)
  local models = {}
  hb.models = models

  local Model = {}
  Model.__index = Model

  -- ---- parameters ---------------------------------------------------------------------------------
  -- The largest model new/from_tensors/load_pretrained build, in parameters (4 bytes each in float32):
  -- a config asking for more is refused with a message before anything is allocated (a typo such as
  -- hidden_size 40960000 must not take the machine down). Raise it for a bigger machine.
  models.max_params = 2 ^ 34
  -- The most bytes a model's float32 weights may take (nil: this machine's physical memory); hb.train
  -- checks weights + gradients + AdamW's two moments (16 bytes a parameter) against the same limit.
  models.max_bytes = nil
  function models.memory_limit()
    local lim = models.max_bytes or hb.physical_memory()
    return lim, models.max_bytes and "hb.models.max_bytes" or "this machine's memory"
  end
  function models.format_bytes(b)
    if b >= 2 ^ 30 then return string.format("%.1f GiB", b / 2 ^ 30) end
    if b >= 2 ^ 20 then return string.format("%.1f MiB", b / 2 ^ 20) end
    return string.format("%.1f KiB", b / 2 ^ 10)
  end

  local function too_big(n)
    return string.format("config: the model would have at least %.4g parameters (%.1f GiB in float32), more " ..
      "than hb.models.max_params = %.4g; check hidden_size, num_hidden_layers, vocab_size and the expansion " ..
      "ratios, or raise hb.models.max_params", n, n * 4 / 2 ^ 30, models.max_params)
  end

  -- declare(name, shape, init): init is {"normal", std} | {"ones"} | {"zeros"} | {"A_log"} | {"dt_bias"}
  -- Checks the shape (non-negative integers) and keeps the running parameter count under max_params.
  local function declare(m, name, shape, init, no_decay)
    local n = 1.0
    for k, v in ipairs(shape) do
      if math.type(v) ~= "integer" or v < 0 then
        error(string.format("config: parameter '%s' would have size %s in dimension %d (sizes must be " ..
          "non-negative integers; check the config's sizes and ratios)", name, tostring(v), k), 0)
      end
      n = n * v
    end
    m._nparams = (m._nparams or 0) + n
    if m._nparams > models.max_params then error(too_big(m._nparams), 0) end
    local lim, what = models.memory_limit()
    if lim and m._nparams * 4 > lim then
      error(string.format("config: the model's weights would take at least %s (%.4g parameters × 4 bytes), more " ..
        "than %s (%s); check the config's sizes, or set hb.models.max_bytes (bytes) to override",
        models.format_bytes(m._nparams * 4), m._nparams, what, models.format_bytes(lim)), 0)
    end
    m._order[#m._order + 1] = name
    m._spec[name] = { shape = shape, init = init, no_decay = no_decay }
  end

  local function init_param(spec, rng_std)
    local t
    local kind = spec.init[1]
    if kind == "normal" then
      t = hb.randn(spec.shape) * spec.init[2]
    elseif kind == "ones" then
      t = hb.ones(spec.shape)
    elseif kind == "zeros" then
      t = hb.zeros(spec.shape)
    elseif kind == "A_log" then -- log U(0, 16)
      t = (hb.rand(spec.shape) * 16):clamp(1e-12):log()
    elseif kind == "dt_bias" then -- inverse softplus of dt ~ logU(1e-3, 1e-1), floored at 1e-4
      local u = hb.rand(spec.shape)
      local dt = (u * (math.log(0.1) - math.log(0.001)) + math.log(0.001)):exp():clamp(1e-4)
      -- dt + log(-expm1(-dt))
      t = dt + (dt:neg():expm1():neg()):log()
    end
    return t
  end

  local function shape_str(s) return "[" .. table.concat(s, ", ") .. "]" end

  -- ---- layer construction (declares parameters; returns the mixer description) --------------------
  local function P(i) return "model.layers." .. i .. ".attn." end

  local function declare_attention(m, i, spec, qk_norm)
    local d = m.config.hidden_size
    local H, Hkv = spec.num_heads, spec.num_kv_heads
    local D = d // H
    local std = { "normal", m.config.initializer_range }
    local p = P(i)
    declare(m, p .. "q_proj.weight", { H * D, d }, std)
    if spec.qkv_bias then declare(m, p .. "q_proj.bias", { H * D }, { "zeros" }) end
    declare(m, p .. "k_proj.weight", { Hkv * D, d }, std)
    if spec.qkv_bias then declare(m, p .. "k_proj.bias", { Hkv * D }, { "zeros" }) end
    declare(m, p .. "v_proj.weight", { Hkv * D, d }, std)
    if spec.qkv_bias then declare(m, p .. "v_proj.bias", { Hkv * D }, { "zeros" }) end
    declare(m, p .. "o_proj.weight", { d, H * D }, std)
    if qk_norm then
      declare(m, p .. "q_norm.weight", { D }, { "ones" })
      declare(m, p .. "k_norm.weight", { D }, { "ones" })
    end
    return { kind = "attention", H = H, Hkv = Hkv, D = D, qkv_bias = spec.qkv_bias, qk_norm = qk_norm,
             window = C.is_null(spec.window_size) and 0 or spec.window_size, theta = spec.rope_theta }
  end

  local function declare_conv(m, name, D)
    declare(m, name, { D, 1, m.config.conv_size }, { "normal", m.config.initializer_range })
  end

  local function output_norm_name(cfg)
    if cfg.hidden_act == "swish" and cfg.fuse_norm ~= false and cfg.use_output_gate then return "g_norm_swish_gate" end
    return "g_norm"
  end

  local declare_mixer = {}

  declare_mixer.hgrn = function(m, i)
    local c, p = m.config, P(i)
    local d, E = c.hidden_size, c._E
    local std = { "normal", c.initializer_range }
    declare(m, p .. "i_proj.weight", { E, d }, std)
    declare(m, p .. "f_proj.weight", { E, d }, std)
    declare(m, p .. "g_proj.weight", { E, d }, std)
    if c.use_short_conv then declare_conv(m, p .. "i_conv1d.weight", E); declare_conv(m, p .. "f_conv1d.weight", E) end
    if c.elementwise_affine ~= false then declare(m, p .. "g_norm.weight", { E }, { "ones" }) end
    declare(m, p .. "o_proj.weight", { d, E }, std)
    return { kind = "hgrn", E = E }
  end

  declare_mixer.retnet = function(m, i)
    local c, p = m.config, P(i)
    local d, H, G = c.hidden_size, c.num_heads, c.num_heads // c._kv
    local std = { "normal", c.initializer_range }
    declare(m, p .. "q_proj.weight", { c._kd, d }, std)
    declare(m, p .. "k_proj.weight", { c._kd // G, d }, std)
    declare(m, p .. "v_proj.weight", { c._vd // G, d }, std)
    if c.use_output_gate then declare(m, p .. "g_proj.weight", { c._vd, d }, std) end
    local nn = output_norm_name(c)
    declare(m, p .. nn .. ".weight", { c._vd // H }, { "ones" })
    declare(m, p .. "o_proj.weight", { d, c._vd }, std)
    return { kind = "retnet", H = H, G = G, dk = c._kd // H, dv = c._vd // H, norm = nn }
  end

  declare_mixer.gla = function(m, i)
    local c, p = m.config, P(i)
    local d, H, G = c.hidden_size, c.num_heads, c.num_heads // c._kv
    local std = { "normal", c.initializer_range }
    local kdg, vdg = c._kd // G, c._vd // G
    declare(m, p .. "q_proj.weight", { c._kd, d }, std)
    declare(m, p .. "k_proj.weight", { kdg, d }, std)
    declare(m, p .. "v_proj.weight", { vdg, d }, std)
    if c.use_output_gate then declare(m, p .. "g_proj.weight", { c._vd, d }, std) end
    if c.use_short_conv then
      declare_conv(m, p .. "q_conv1d.weight", c._kd)
      declare_conv(m, p .. "k_conv1d.weight", kdg)
      declare_conv(m, p .. "v_conv1d.weight", vdg)
    end
    declare(m, p .. "gk_proj.0.weight", { 16, d }, std)
    declare(m, p .. "gk_proj.1.weight", { kdg, 16 }, std)
    declare(m, p .. "gk_proj.1.bias", { kdg }, { "zeros" })
    local nn = output_norm_name(c)
    declare(m, p .. nn .. ".weight", { c._vd // H }, { "ones" })
    declare(m, p .. "o_proj.weight", { d, c._vd }, std)
    return { kind = "gla", H = H, G = G, dk = c._kd // H, dv = c._vd // H, norm = nn }
  end

  declare_mixer.hgrn2 = function(m, i)
    local c, p = m.config, P(i)
    local d, E = c.hidden_size, c.expand_ratio
    local H = c._H
    local std = { "normal", c.initializer_range }
    declare(m, p .. "q_proj.weight", { H * E, d }, std)
    declare(m, p .. "f_proj.weight", { H * E, d }, std)
    declare(m, p .. "i_proj.weight", { d, d }, std)
    if c.use_short_conv then
      declare_conv(m, p .. "q_conv1d.weight", H * E)
      declare_conv(m, p .. "f_conv1d.weight", H * E)
      declare_conv(m, p .. "i_conv1d.weight", d)
    end
    if c.elementwise_affine ~= false then declare(m, p .. "g_norm.weight", { d }, { "ones" }) end
    declare(m, p .. "o_proj.weight", { d, d }, std)
    return { kind = "hgrn2", H = H, E = E, dv = d // H }
  end

  declare_mixer.delta_net = function(m, i)
    local c, p = m.config, P(i)
    local d, H = c.hidden_size, c.num_heads
    local std = { "normal", c.initializer_range }
    declare(m, p .. "q_proj.weight", { c._kd, d }, std)
    declare(m, p .. "k_proj.weight", { c._kd, d }, std)
    declare(m, p .. "v_proj.weight", { c._vd, d }, std)
    if c.use_beta then declare(m, p .. "b_proj.weight", { H, d }, std) end
    if c.use_short_conv then
      declare_conv(m, p .. "q_conv1d.weight", c._kd)
      declare_conv(m, p .. "k_conv1d.weight", c._kd)
      declare_conv(m, p .. "v_conv1d.weight", c._vd)
    end
    if c.use_gate then declare(m, p .. "g_proj.weight", { c._vd, d }, std) end
    declare(m, p .. "o_norm.weight", { c._vd // H }, { "ones" })
    declare(m, p .. "o_proj.weight", { d, c._vd }, std)
    return { kind = "delta_net", H = H, HV = H, dk = c._kd // H, dv = c._vd // H }
  end

  declare_mixer.gated_deltanet = function(m, i)
    local c, p = m.config, P(i)
    local d, H, HV, dk, dv = c.hidden_size, c.num_heads, c._HV, c.head_dim, c._dv
    local std = { "normal", c.initializer_range }
    declare(m, p .. "q_proj.weight", { H * dk, d }, std)
    declare(m, p .. "k_proj.weight", { H * dk, d }, std)
    declare(m, p .. "v_proj.weight", { HV * dv, d }, std)
    declare(m, p .. "a_proj.weight", { HV, d }, std)
    declare(m, p .. "b_proj.weight", { HV, d }, std)
    declare(m, p .. "A_log", { HV }, { "A_log" }, true)
    declare(m, p .. "dt_bias", { HV }, { "dt_bias" }, true)
    if c.use_short_conv then
      declare_conv(m, p .. "q_conv1d.weight", H * dk)
      declare_conv(m, p .. "k_conv1d.weight", H * dk)
      declare_conv(m, p .. "v_conv1d.weight", HV * dv)
    end
    if c.use_gate then declare(m, p .. "g_proj.weight", { HV * dv, d }, std) end
    declare(m, p .. "o_norm.weight", { dv }, { "ones" })
    declare(m, p .. "o_proj.weight", { d, HV * dv }, std)
    return { kind = "gated_deltanet", H = H, HV = HV, dk = dk, dv = dv }
  end

  -- ---- mixer forward functions -------------------------------------------------------------------
  -- ctx: { m = model, i = layer, W = params, cache = layer cache or nil, mode = "chunk"|"recurrent" }
  local function W(ctx, name)
    local t = ctx.W[P(ctx.i) .. name]
    if not t then error(string.format("missing parameter %s%s", P(ctx.i), name), 0) end
    return t
  end
  local function lin(ctx, x, name, bias)
    return hb.linear(x, W(ctx, name .. ".weight"), bias and W(ctx, name .. ".bias") or nil)
  end
  local function normgate(x, g, w, eps) return hb.rmsnorm(x, w, eps) * g:silu() end
  local function l2n(x) return x * (x:square():sum(-1, true) + 1e-6):rsqrt() end
  local function heads(x, H, D) local s = x:shape(); return x:view(s[1], s[2], H, D) end
  local function flat(x) local s = x:shape(); return x:view(s[1], s[2], s[3] * s[4]) end

  -- causal short conv with cache handling (act: "silu" or nil)
  local function conv(ctx, x, name, act)
    local w = W(ctx, name .. ".weight")
    local cache = ctx.cache
    if not cache then return (hb.conv1d(x, w, nil, act)) end
    local key = name
    if cache[key] then
      local T = x:size(2)
      if T ~= 1 then error("decode cache: only one token per step after the prefill", 0) end
      local y = hb.conv1d_step(cache[key], x:select(2, 1), w, nil, act)
      return y:unsqueeze(2)
    end
    local y, c = hb.conv1d(x, w, nil, act, true)
    cache[key] = c
    return y
  end

  -- recurrence with cache: fwd(want_state) → o, state ; step(state) → o (one token)
  local function recur(ctx, fwd, step)
    local cache = ctx.cache
    if not cache then return (fwd(false)) end
    if cache.state then return step(cache.state) end
    local o, st = fwd(true)
    cache.state = st
    return o
  end

  local mixers = {}

  mixers.custom = function(ctx, x, L)
    return L.def.forward(ctx, x, L.opts, function(name) return W(ctx, name) end)
  end

  -- §3 softmax attention (transformer layers and hybrid layers)
  mixers.attention = function(ctx, x, L)
    local B, T = x:size(1), x:size(2)
    local q = heads(lin(ctx, x, "q_proj", L.qkv_bias), L.H, L.D)
    local k = heads(lin(ctx, x, "k_proj", L.qkv_bias), L.Hkv, L.D)
    local v = heads(lin(ctx, x, "v_proj", L.qkv_bias), L.Hkv, L.D)
    if L.qk_norm then
      q = hb.rmsnorm(q, W(ctx, "q_norm.weight"), 1e-5)
      k = hb.rmsnorm(k, W(ctx, "k_norm.weight"), 1e-5)
    end
    local cache = ctx.cache
    local pos0 = cache and cache.pos or 0
    q = hb.rope(q, L.theta, pos0)
    k = hb.rope(k, L.theta, pos0)
    local scale = 1 / math.sqrt(L.D)
    local o
    if cache then
      -- grow the KV cache by doubling, then append
      local need = pos0 + T
      if not cache.k or cache.k:size(2) < need then
        local cap = math.max(need, cache.k and cache.k:size(2) * 2 or 64)
        local nk, nv = hb.zeros(B, cap, L.Hkv, L.D), hb.zeros(B, cap, L.Hkv, L.D)
        if cache.k and pos0 > 0 then
          nk:narrow(2, 1, pos0):copy_(cache.k:narrow(2, 1, pos0))
          nv:narrow(2, 1, pos0):copy_(cache.v:narrow(2, 1, pos0))
        end
        cache.k, cache.v = nk, nv
      end
      cache.k:narrow(2, pos0 + 1, T):copy_(k)
      cache.v:narrow(2, pos0 + 1, T):copy_(v)
      cache.pos = pos0 + T
      if pos0 == 0 then
        o = hb.attention(q, k, v, scale, L.window)
      elseif T == 1 then
        o = hb.attention_step(q:select(2, 1), cache.k, cache.v, scale, L.window, pos0):unsqueeze(2)
      else
        error("decode cache: only one token per step after the prefill", 0)
      end
    else
      o = hb.attention(q, k, v, scale, L.window)
    end
    return lin(ctx, flat(o), "o_proj")
  end

  -- lower bound of layer i (§5.3): computed once per forward into ctx.m._lb
  local function lower_bound(ctx)
    local lbs = ctx.lb
    if not lbs or ctx.i == 0 then return nil end
    return lbs[ctx.i]
  end
  local function apply_lb(f_log, lb)
    -- log(lb + (1 − lb)·exp(f))
    return ((f_log:exp() * (1 - lb)) + lb):log()
  end

  -- §5.4 HGRN
  mixers.hgrn = function(ctx, x, L)
    local c = ctx.m.config
    local i, f = lin(ctx, x, "i_proj"), lin(ctx, x, "f_proj")
    if c.use_short_conv then i = conv(ctx, i, "i_conv1d", nil); f = conv(ctx, f, "f_conv1d", nil) end
    f = f:logsigmoid()
    local lb = lower_bound(ctx)
    if lb then f = apply_lb(f, lb) end
    i = i:silu() * (1 - f:exp())
    local o = recur(ctx, function(ws) return hb.hgrn(i, f, ctx.mode, 64, ws) end,
      function(st) return hb.hgrn_step(st, i:select(2, 1), f:select(2, 1)):unsqueeze(2) end)
    local gw = c.elementwise_affine ~= false and W(ctx, "g_norm.weight") or nil
    o = normgate(o, lin(ctx, x, "g_proj"), gw, c.norm_eps)
    return lin(ctx, o, "o_proj")
  end

  local function gated_output(ctx, o, x, L)
    local c = ctx.m.config
    local w = W(ctx, L.norm .. ".weight")
    if c.use_output_gate then
      local g = heads(lin(ctx, x, "g_proj"), L.H, L.dv)
      o = normgate(o, g, w, c.norm_eps)
    else
      o = hb.rmsnorm(o, w, c.norm_eps)
    end
    return lin(ctx, flat(o), "o_proj")
  end

  -- §6.3 RetNet
  mixers.retnet = function(ctx, x, L)
    local Hkv = L.H // L.G
    local q = heads(lin(ctx, x, "q_proj"), L.H, L.dk)
    local k = heads(lin(ctx, x, "k_proj"), Hkv, L.dk)
    local v = heads(lin(ctx, x, "v_proj"), Hkv, L.dv)
    local pos0 = ctx.cache and (ctx.cache.pos or 0) or 0
    q = hb.rope(q, 10000.0, pos0)
    k = hb.rope(k, 10000.0, pos0)
    if L.G > 1 then k = k:repeat_interleave(L.G, 3); v = v:repeat_interleave(L.G, 3) end
    if not L.lg then
      local t = {}
      for h = 0, L.H - 1 do t[h + 1] = math.log(1 - 2 ^ (-5 - h)) end
      L.lg = hb.tensor(t, "float64")
    end
    local scale = L.dk ^ -0.5
    local o = recur(ctx, function(ws) return hb.retention(q, k, v, L.lg, scale, ctx.mode, 64, ws) end,
      function(st) return hb.retention_step(st, q:select(2, 1), k:select(2, 1), v:select(2, 1), L.lg, scale):unsqueeze(2) end)
    if ctx.cache then ctx.cache.pos = pos0 + x:size(2) end
    return gated_output(ctx, o, x, L)
  end

  -- §7.3 GLA
  mixers.gla = function(ctx, x, L)
    local c = ctx.m.config
    local Hkv = L.H // L.G
    local q, k, v = lin(ctx, x, "q_proj"), lin(ctx, x, "k_proj"), lin(ctx, x, "v_proj")
    if c.use_short_conv then
      q = conv(ctx, q, "q_conv1d", "silu"); k = conv(ctx, k, "k_conv1d", "silu"); v = conv(ctx, v, "v_conv1d", "silu")
    end
    local gk = hb.linear(lin(ctx, x, "gk_proj.0"), W(ctx, "gk_proj.1.weight"), W(ctx, "gk_proj.1.bias"))
    q, k, v, gk = heads(q, L.H, L.dk), heads(k, Hkv, L.dk), heads(v, Hkv, L.dv), heads(gk, Hkv, L.dk)
    if L.G > 1 then
      k, v, gk = k:repeat_interleave(L.G, 3), v:repeat_interleave(L.G, 3), gk:repeat_interleave(L.G, 3)
    end
    gk = gk:logsigmoid() / 16
    if not C.is_null(c.clamp_min) then gk = gk:clamp(c.clamp_min) end
    local scale = L.dk ^ -0.5
    local o = recur(ctx, function(ws) return hb.gla(q, k, v, gk, scale, ctx.mode, 64, ws) end,
      function(st) return hb.gla_step(st, q:select(2, 1), k:select(2, 1), v:select(2, 1), gk:select(2, 1), scale):unsqueeze(2) end)
    return gated_output(ctx, o, x, L)
  end

  -- §8.3 HGRN-2
  mixers.hgrn2 = function(ctx, x, L)
    local c = ctx.m.config
    local q, f, i = lin(ctx, x, "q_proj"), lin(ctx, x, "f_proj"), lin(ctx, x, "i_proj")
    if c.use_short_conv then
      q = conv(ctx, q, "q_conv1d", nil); f = conv(ctx, f, "f_conv1d", nil); i = conv(ctx, i, "i_conv1d", nil)
    end
    q = q:silu()
    local g = f:logsigmoid()
    local lb = lower_bound(ctx)
    if lb then g = apply_lb(g, lb) end
    local k = 1 - g:exp()
    q, k, g = heads(q, L.H, L.E), heads(k, L.H, L.E), heads(g, L.H, L.E)
    local v = heads(i, L.H, L.dv)
    local scale = L.E ^ -0.5
    local o = recur(ctx, function(ws) return hb.gla(q, k, v, g, scale, ctx.mode, 64, ws) end,
      function(st) return hb.gla_step(st, q:select(2, 1), k:select(2, 1), v:select(2, 1), g:select(2, 1), scale):unsqueeze(2) end)
    o = flat(o)
    o = hb.rmsnorm(o, c.elementwise_affine ~= false and W(ctx, "g_norm.weight") or nil, 1e-5)
    return lin(ctx, o, "o_proj")
  end

  -- §9.3 DeltaNet and §10.3 Gated DeltaNet share the delta-rule core
  local function delta_output(ctx, o, x, L)
    local c = ctx.m.config
    local w = W(ctx, "o_norm.weight")
    if c.use_gate then
      o = normgate(o, heads(lin(ctx, x, "g_proj"), L.HV, L.dv), w, c.norm_eps)
    else
      o = hb.rmsnorm(o, w, c.norm_eps)
    end
    return lin(ctx, flat(o), "o_proj")
  end

  local function delta_core(ctx, q, k, v, beta, g, L)
    local scale = L.dk ^ -0.5
    return recur(ctx, function(ws) return hb.delta_rule(q, k, v, beta, g, scale, ctx.mode, 64, ws) end,
      function(st)
        return hb.delta_rule_step(st, q:select(2, 1), k:select(2, 1), v:select(2, 1), beta:select(2, 1),
          g and g:select(2, 1) or nil, scale):unsqueeze(2)
      end)
  end

  mixers.delta_net = function(ctx, x, L)
    local c = ctx.m.config
    local q, k, v = lin(ctx, x, "q_proj"), lin(ctx, x, "k_proj"), lin(ctx, x, "v_proj")
    local qk_act = c.qk_activation == "silu" and "silu" or nil
    if c.use_short_conv then
      q = conv(ctx, q, "q_conv1d", qk_act); k = conv(ctx, k, "k_conv1d", qk_act); v = conv(ctx, v, "v_conv1d", "silu")
    else
      if c.qk_activation == "silu" then q, k = q:silu(), k:silu() end
      v = v:silu()
    end
    q, k, v = heads(q, L.H, L.dk), heads(k, L.H, L.dk), heads(v, L.H, L.dv)
    if c.qk_activation == "relu" then q, k = q:relu(), k:relu()
    elseif c.qk_activation == "elu" then q, k = q:elu() + 1, k:elu() + 1 end
    if c.qk_norm == "l2" then q, k = l2n(q), l2n(k)
    else q, k = q / q:sum(-1, true), k / k:sum(-1, true) end
    local beta
    if c.use_beta then beta = lin(ctx, x, "b_proj"):sigmoid() else beta = hb.ones(x:size(1), x:size(2), L.H) end
    if c.allow_neg_eigval then beta = beta * 2 end
    return delta_output(ctx, delta_core(ctx, q, k, v, beta, nil, L), x, L)
  end

  mixers.gated_deltanet = function(ctx, x, L)
    local c = ctx.m.config
    local q, k, v = lin(ctx, x, "q_proj"), lin(ctx, x, "k_proj"), lin(ctx, x, "v_proj")
    if c.use_short_conv then
      q = conv(ctx, q, "q_conv1d", "silu"); k = conv(ctx, k, "k_conv1d", "silu"); v = conv(ctx, v, "v_conv1d", "silu")
    else
      q, k, v = q:silu(), k:silu(), v:silu()
    end
    q, k, v = l2n(heads(q, L.H, L.dk)), l2n(heads(k, L.H, L.dk)), heads(v, L.HV, L.dv)
    local beta = lin(ctx, x, "b_proj"):sigmoid()
    if c.allow_neg_eigval then beta = beta * 2 end
    local g = (lin(ctx, x, "a_proj") + W(ctx, "dt_bias")):softplus() * W(ctx, "A_log"):exp():neg()
    return delta_output(ctx, delta_core(ctx, q, k, v, beta, g, L), x, L)
  end

  -- ---- model ----------------------------------------------------------------------------------------
  -- ---- user-defined mixers (Lua, autograd does the backward) --------------------------------------
  -- hb.models.register_mixer(name, { declare = function(add, d, i, opts) ... end,
  --                                  forward = function(ctx, x, opts, W) ... end })
  -- `add(name, shape, init)` declares a parameter model.layers.<i>.attn.<name> (init "normal"|"ones"|"zeros");
  -- `W(name)` fetches it in forward; x is [B, T, d] and forward returns [B, T, d].
  -- Place it with cfg.custom_mixers = { { mixer = name, layers = schedule | {i, ...}, ...opts } }.
  local registered = {}
  function models.register_mixer(name, def)
    if type(name) ~= "string" or type(def) ~= "table" or type(def.forward) ~= "function" then
      error("register_mixer(name, {declare=fn, forward=fn})", 2)
    end
    registered[name] = def
  end

  -- resolve custom mixer placements to plain layer lists (what config.json stores) → i → spec
  local function custom_layers(cfg)
    local at, resolved = {}, {}
    local list = cfg.custom_mixers
    if list == nil or list == hb.io.null then list = {} end
    if type(list) ~= "table" then error("config: custom_mixers must be a list of {mixer =, layers =} (got " .. C.show(list) .. ")", 0) end
    for k, spec0 in ipairs(list) do
      if type(spec0) ~= "table" then error(string.format("config: custom_mixers[%d] must be an object (got %s)", k, C.show(spec0)), 0) end
      local spec = {}
      for kk, vv in pairs(spec0) do spec[kk] = vv end
      resolved[k] = spec
      if not registered[spec.mixer] then
        error(string.format("config: custom_mixers[%d].mixer = '%s' is not registered (hb.models.register_mixer)", k, tostring(spec.mixer)), 0)
      end
      local layers = spec.layers
      if hb.schedule.is_schedule(layers) then
        local r = layers.pick
        layers = {}
        for i = 0, cfg.num_hidden_layers - 1 do if r(i, cfg.num_hidden_layers) then layers[#layers + 1] = i end end
      end
      spec.layers = layers
      for _, i in ipairs(layers or {}) do at[i] = spec end
    end
    return at, resolved
  end

  local function build(cfg_in)
    if type(cfg_in) ~= "table" then
      error("config: expected a table (a JSON object in config.json), got " .. C.show(cfg_in), 0)
    end
    local user = {}
    for k, v in pairs(cfg_in) do user[k] = v end
    if user.attn ~= nil and hb.schedule then
      user.attn = hb.schedule.resolve(user.attn, user.num_hidden_layers or 24)
    end
    local custom = user.custom_mixers
    user.custom_mixers = nil
    local cfg = C.normalize(user)
    cfg.custom_mixers = custom
    local custom_at, resolved = custom_layers(cfg)
    if custom then cfg.custom_mixers = resolved end
    local m = setmetatable({ config = cfg, _order = {}, _spec = {}, params = {}, mode = "chunk", layers = {} }, Model)
    local d, L, V = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    -- a lower bound first (embeddings + every layer's MLP), so a huge num_hidden_layers fails at once
    local least = 1.0 * V * d + 3.0 * L * d * cfg._mlp
    if least > models.max_params then error(too_big(least), 0) end
    local std = { "normal", cfg.initializer_range }
    declare(m, "model.embeddings.weight", { V, d }, std)
    if (cfg.model_type == "hgrn" or cfg.model_type == "hgrn2") and cfg.use_lower_bound then
      declare(m, "model.lower_bounds", { L, d }, { "zeros" })
    end
    for i = 0, L - 1 do
      declare(m, "model.layers." .. i .. ".attn_norm.weight", { d }, { "ones" })
      local spec = cfg._attn_at[i]
      local layer
      local cust = custom_at[i]
      if cust and (spec or cfg.model_type == "transformer") then
        error(string.format("config: layer %d is both an attention layer and a custom mixer ('%s')", i, cust.mixer), 0)
      end
      if cust then
        local def = registered[cust.mixer]
        local prefix = P(i)
        local function add(name, shape, init)
          local iv = init == "ones" and { "ones" } or init == "zeros" and { "zeros" } or { "normal", cfg.initializer_range }
          declare(m, prefix .. name, shape, iv)
        end
        if def.declare then def.declare(add, cfg.hidden_size, i, cust) end
        layer = { kind = "custom", def = def, opts = cust, name = cust.mixer }
      elseif cfg.model_type == "transformer" then
        layer = declare_attention(m, i, { num_heads = cfg.num_heads, num_kv_heads = cfg._kv, qkv_bias = cfg.qkv_bias,
          window_size = cfg.window_size, rope_theta = cfg.rope_theta }, cfg.qk_norm)
      elseif spec then
        layer = declare_attention(m, i, spec, false)
      else
        layer = declare_mixer[cfg.model_type](m, i)
      end
      layer.index = i
      m.layers[i + 1] = layer
      declare(m, "model.layers." .. i .. ".mlp_norm.weight", { d }, { "ones" })
      declare(m, "model.layers." .. i .. ".mlp.gate_proj.weight", { cfg._mlp, d }, std)
      declare(m, "model.layers." .. i .. ".mlp.up_proj.weight", { cfg._mlp, d }, std)
      declare(m, "model.layers." .. i .. ".mlp.down_proj.weight", { d, cfg._mlp }, std)
    end
    declare(m, "model.norm.weight", { d }, { "ones" })
    if not cfg.tie_word_embeddings then declare(m, "lm_head.weight", { V, d }, std) end
    return m
  end

  -- hb.models.new(config [, {seed = n}]) — a freshly initialised model (fla's _init_weights, §11)
  function models.new(cfg, opts)
    local m = build(cfg)
    if opts and opts.seed then hb.manual_seed(opts.seed) end
    for _, name in ipairs(m._order) do
      m.params[name] = init_param(m._spec[name]):requires_grad(true)
    end
    return m
  end

  -- Build from config + a name → tensor table, checking names and shapes.
  function models.from_tensors(cfg, tensors, where)
    local m = build(cfg)
    where = where or "checkpoint"
    local used = {}
    for _, name in ipairs(m._order) do
      local t = tensors[name]
      if not t then
        error(string.format("%s: tensor '%s' is missing (config %s implies it)", where, name, m.config.model_type), 0)
      end
      local want = m._spec[name].shape
      local got = t:shape()
      local same = #got == #want
      for k = 1, #want do same = same and got[k] == want[k] end
      if not same then
        error(string.format("%s: tensor '%s' has shape %s but the config implies %s", where, name, shape_str(got), shape_str(want)), 0)
      end
      if t:dtype() ~= "float32" and t:dtype() ~= "float64" then   -- integer data is no weight: never convert it
        error(string.format("%s: tensor '%s' holds integer data (%s); a parameter needs F32, BF16, F16 or F64", where, name, t:dtype()), 0)
      end
      if t:dtype() ~= "float32" then t = t:float() end
      m.params[name] = t:requires_grad(true)
      used[name] = true
    end
    if m.config.tie_word_embeddings then used["lm_head.weight"] = true end
    local extra = {}
    for name in pairs(tensors) do if not used[name] then extra[#extra + 1] = name end end
    if #extra > 0 then
      table.sort(extra)
      error(string.format("%s: unexpected tensor '%s' (not part of a %s model with this config)", where, extra[1], m.config.model_type), 0)
    end
    return m
  end

  local function exists(path) return hb.io.file_kind(path) ~= nil end   -- never opens (a FIFO would block)

  -- hb.load_pretrained(dir): config.json + model.safetensors (or a sharded index)
  function hb.load_pretrained(dir)
    local cpath = dir .. "/config.json"
    if not exists(cpath) then error("load_pretrained: " .. cpath .. " not found", 2) end
    local cfg = hb.io.read_json(cpath)
    local ok, tensors = pcall(hb.io.load_safetensors, dir)
    if not ok then error("load_pretrained: " .. tostring(tensors), 2) end
    local ok2, m = pcall(models.from_tensors, cfg, tensors, dir)
    if not ok2 then error("load_pretrained: " .. tostring(m), 2) end
    return m
  end
  models.load_pretrained = hb.load_pretrained

  function Model:named_parameters()
    local i = 0
    return function()
      i = i + 1
      local name = self._order[i]
      if name then return name, self.params[name] end
    end
  end

  function Model:parameters()
    local out = {}
    for _, name in ipairs(self._order) do out[#out + 1] = self.params[name] end
    return out
  end

  function Model:num_parameters()
    local n = 0
    for _, name in ipairs(self._order) do n = n + self.params[name]:numel() end
    return n
  end

  -- names that fla's training recipes exclude from weight decay (§11): A_log, dt_bias, biases
  function Model:no_weight_decay(name)
    local s = self._spec[name]
    return (s and s.no_decay) or name:sub(-4) == "bias"
  end

  function Model:set_mode(mode)
    if mode ~= "chunk" and mode ~= "recurrent" then
      error("set_mode: mode must be 'chunk' or 'recurrent' (got " .. tostring(mode) .. ")", 2)
    end
    self.mode = mode
    return self
  end

  local function lm_weight(self)
    return self.params["lm_head.weight"] or self.params["model.embeddings.weight"]
  end

  local function to_ids(ids)
    if type(ids) == "table" then
      if type(ids[1]) ~= "table" then error("forward: ids must be a [B, T] tensor or a table of tables", 3) end
      return hb.tensor(ids, "int64")
    end
    if ids:dim() ~= 2 then error("forward: ids must have shape [B, T], got [" .. table.concat(ids:shape(), ", ") .. "]", 3) end
    return ids
  end

  -- lower bounds for all layers (§5.3), a table i → tensor [d] (i >= 1)
  local function lower_bounds(self)
    local lbw = self.params["model.lower_bounds"]
    if not lbw then return nil end
    local s = lbw:softmax(1)
    local c = s:cumsum(1)
    local first = s:select(1, 1)
    local out = {}
    for i = 1, self.config.num_hidden_layers - 1 do out[i] = c:select(1, i + 1) - first end
    return out
  end

  -- hidden states through every block; cache (optional) is a model cache for decoding
  function Model:hidden(ids, cache)
    local cfg = self.config
    local h = hb.embedding(self.params["model.embeddings.weight"], ids)
    local lbs = lower_bounds(self)
    for li, layer in ipairs(self.layers) do
      local i = li - 1
      local pre = "model.layers." .. i .. "."
      local ctx = { m = self, i = i, W = self.params, cache = cache and cache.layers[li] or nil, mode = self.mode, lb = lbs }
      local x = hb.rmsnorm(h, self.params[pre .. "attn_norm.weight"], cfg.norm_eps)
      local fn = mixers[layer.kind]
      local ok, y = pcall(fn, ctx, x, layer)
      if not ok then
        error(string.format("layer %d (%s): %s", i, layer.kind, tostring(y)), 0)
      end
      h = h + y
      x = hb.rmsnorm(h, self.params[pre .. "mlp_norm.weight"], cfg.norm_eps)
      local a = hb.linear(x, self.params[pre .. "mlp.gate_proj.weight"])
      local b = hb.linear(x, self.params[pre .. "mlp.up_proj.weight"])
      h = h + hb.linear(a:silu() * b, self.params[pre .. "mlp.down_proj.weight"])
    end
    return hb.rmsnorm(h, self.params["model.norm.weight"], cfg.norm_eps)
  end

  -- logits [B, T, V]
  function Model:forward(ids)
    ids = to_ids(ids)
    return hb.linear(self:hidden(ids), lm_weight(self))
  end

  -- mean next-token cross-entropy (§1.8); labels default to ids (shifted inside)
  function Model:loss(ids, labels)
    ids = to_ids(ids)
    labels = labels and to_ids(labels) or ids
    local B, T = ids:size(1), ids:size(2)
    if T < 2 then error("loss: need at least 2 tokens per row", 2) end
    local h = self:hidden(ids):narrow(2, 1, T - 1)
    local logits = hb.linear(h, lm_weight(self)):view(B * (T - 1), -1)
    local tgt = labels:narrow(2, 2, T - 1):contiguous():view(B * (T - 1))
    return hb.cross_entropy(logits, tgt, -100)
  end

  -- ---- decoding -------------------------------------------------------------------------------------
  local Cache = {}
  Cache.__index = Cache
  function Cache:nbytes()
    local n = 0
    for _, lc in ipairs(self.layers) do
      for key, t in pairs(lc) do
        if key == "k" or key == "v" then
          local s = t:shape() -- count only filled positions
          n = n + s[1] * (lc.pos or 0) * s[3] * s[4] * 4
        elseif type(t) == "userdata" then
          n = n + t:nbytes()
        end
      end
    end
    return n
  end

  function Model:new_cache(B)
    local c = setmetatable({ B = B or 1, layers = {}, pos = 0 }, Cache)
    for li = 1, #self.layers do c.layers[li] = {} end
    return c
  end

  -- one column of ids [B] or [B,1] (tensor or table) → logits [B, V] for the next position
  function Model:step(ids, cache)
    if type(ids) == "table" then
      local col = {}
      for b = 1, #ids do col[b] = { type(ids[b]) == "table" and ids[b][1] or ids[b] } end
      ids = hb.tensor(col, "int64")
    elseif ids:dim() == 1 then
      ids = ids:view(ids:size(1), 1)
    end
    if ids:size(1) ~= cache.B then
      error(string.format("step: ids have %d rows but the cache was made for batch %d (m:new_cache(B))", ids:size(1), cache.B), 2)
    end
    return hb.no_grad(function()
      local h = self:hidden(ids, cache)
      cache.pos = cache.pos + ids:size(2)
      local logits = hb.linear(h, lm_weight(self))
      return logits:select(2, logits:size(2))
    end)
  end

  -- prefill a cache with a [B, T] prompt; returns logits of the last position [B, V]
  function Model:prefill(ids, cache)
    ids = to_ids(ids)
    if ids:size(1) ~= cache.B then
      error(string.format("prefill: ids have %d rows but the cache was made for batch %d (m:new_cache(B))", ids:size(1), cache.B), 2)
    end
    return hb.no_grad(function()
      local h = self:hidden(ids, cache)
      cache.pos = cache.pos + ids:size(2)
      local last = h:narrow(2, ids:size(2), 1)
      return hb.linear(last, lm_weight(self)):select(2, 1)
    end)
  end

  -- greedy (temperature 0) or sampled generation; returns a table of B lists of new token ids
  function Model:generate(prompt, n, opts)
    opts = opts or {}
    prompt = to_ids(prompt)
    local B = prompt:size(1)
    local temp = opts.temperature or 0
    local rng_seed = opts.seed
    if rng_seed then hb.manual_seed(rng_seed) end
    local cache = self:new_cache(B)
    local logits = self:prefill(prompt, cache)
    local out = {}
    for b = 1, B do out[b] = {} end
    for step = 1, n do
      local nxt
      if temp <= 0 then
        nxt = logits:argmax(2)
      else
        local p = (logits / temp):softmax(2)
        local u = hb.rand(B, 1, "float32")
        local cs = p:cumsum(2)
        local col = {}
        for b = 1, B do
          local row = cs:select(1, b):tolist()
          local r, pick = u:get(b, 1), #row
          for j = 1, #row do if row[j] >= r then pick = j; break end end
          col[b] = pick - 1
        end
        nxt = hb.tensor(col, "int64")
      end
      local ids = {}
      for b = 1, B do
        local t = nxt:get(b)
        out[b][step] = t
        ids[b] = { t }
      end
      if step < n then logits = self:step(ids, cache) end
    end
    return out
  end

  -- ---- saving ----------------------------------------------------------------------------------------
  function Model:state_dict()
    local t = {}
    for _, name in ipairs(self._order) do t[name] = self.params[name] end
    return t
  end

  -- save_pretrained(dir [, {dtype = "bf16"}]): config.json + model.safetensors as fla writes them
  -- the config as config.json stores it (public fields only; what resume compares, hb.train_utils)
  function Model:to_config() return C.to_json(self.config, hb.io.null) end

  function Model:save_pretrained(dir, opts)
    hb.data.mkdir(dir)
    local cfg = self:to_config()
    cfg.dtype = (opts and opts.dtype == "bf16") and "bfloat16" or "float32"
    cfg.torch_dtype = cfg.dtype
    cfg.transformers_version = cfg.transformers_version or "4.53.0"
    hb.io.save_safetensors(dir .. "/model.safetensors", self:state_dict(), { format = "pt" }, opts)
    hb.io.write_json(dir .. "/config.json", cfg)
    hb.io.write_json(dir .. "/generation_config.json", {
      _from_model_config = true, bos_token_id = self.config.bos_token_id, eos_token_id = self.config.eos_token_id,
      transformers_version = cfg.transformers_version })
  end

  models.Model = Model
  models.mixers = mixers
  models.normalize_config = C.normalize
  models.C_is_null = C.is_null
end
