-- test_kda.lua — the KDA model type (lua/hyblua/mixers/kda.lua) beyond the fla fixtures:
--   * float64 finite-difference gradient checks of one WHOLE layer (every parameter and the input) in
--     chunk and recurrent modes at T = 67 (not a multiple of the chunk 64): decays near 0 and near 1,
--     β near 0, β near 2 with negative eigenvalues, GVA, the lower_bound gate, safe_gate, no short conv;
--   * chunk == recurrent, decode == forward, prefill + decode, state_bytes == the real cache, save →
--     load for random configs (head counts, GVA, expand_v, lower_bound, safe_gate, conv sizes, a hybrid);
--   * fla's config rules (safe_gate needs lower_bound in [−5, 0), GVA divisibility, ...) and init;
--   * a hybrid (attn) KDA model trains and decodes; hb.eval.efficiency and hb.schedule.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
math.randomseed(5)

local function maxabs(t) return t:abs():max():item() end
local function rel(a, b) return maxabs(a - b) / math.max(maxabs(b), 1e-30) end

local BASE = { model_type = "kda", hidden_size = 12, num_hidden_layers = 1, num_heads = 2, num_v_heads = 4,
  head_dim = 4, expand_v = 0.75, vocab_size = 16 }
local function with(base, over)
  local c = {}
  for k, v in pairs(base) do c[k] = v end
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

-- ---- float64 finite differences of one whole layer -------------------------------------------------
-- A float64 copy of layer 0 of a fresh model, run through the mixer's own forward (the def), with the
-- parameter values `setup` puts in place (projections N(0, 1/fan_in) so nothing is trivially small).
local function layer64(cfg, setup)
  local m = hb.models.new(cfg, { seed = 7 })
  local L = m.layers[1]
  local P = {}
  for name, p in m:named_parameters() do
    local short = name:match("^model%.layers%.0%.attn%.(.+)$")
    if short then
      local t = p:detach():double()
      if short:find("weight$") and short ~= "o_norm.weight" then
        local s = t:shape()
        t = hb.randn(s):double() * (1 / math.sqrt(s[#s] == 1 and 1 or s[#s]))
      end
      P[short] = t
    end
  end
  if setup then setup(P, L) end
  for k, t in pairs(P) do P[k] = t:contiguous():requires_grad(true) end
  local function f(x, mode)
    local ctx = { m = m, i = 0, layer = L, prefix = "", W = P, mode = mode }
    return L.def.forward(ctx, x, L.opts, function(n) return P[n] end)
  end
  return f, P, L
end

-- the whole-layer check (tests/layer_gradcheck.lua): max over tensors of |numeric − analytic| / max|analytic|;
-- numeric: the 4-point central difference (error O(h⁴)), h = 1e-5
local gradcheck_h = dofile("tests/layer_gradcheck.lua")
local function gradcheck(f, P, x, mode) return gradcheck_h(f, P, x, mode, 1e-5) end

-- x with a positive mean (so that a b_proj of one sign pushes β to one side)
local function input(B, Tn, d) return (hb.randn(B, Tn, d) * 0.5 + 1):double() end

local function set_rows(t, rows, v)
  local s = t:shape()
  for _, r in ipairs(rows) do for j = 1, s[2] do t:set(v * (1 + 0.1 * (j % 3)), r, j) end end
end

-- the decays e^g and βs layer 0 sees for input x (fla's gate, recomputed here from the parameters)
local function regime(P, x, cfg)
  local HV = cfg.num_v_heads or cfg.num_heads
  local f = hb.linear(hb.linear(x, P["f_proj.0.weight"]), P["f_proj.1.weight"])
  local s = f:shape()
  local z = f:view(s[1], s[2], HV, cfg.head_dim) + P["dt_bias"]:view(HV, cfg.head_dim)
  local A = P["A_log"]:exp():view(HV, 1)
  local g = cfg.lower_bound and (z * A):sigmoid() * cfg.lower_bound or z:softplus() * A:neg()
  local beta = hb.linear(x, P["b_proj.weight"]):sigmoid() * (cfg.allow_neg_eigval and 2 or 1)
  local d = g:exp()
  return d:min():item(), d:max():item(), beta:min():item(), beta:max():item()
end

local Tn = 67 -- one chunk of 64 and a partial one
local cases = {
  { name = "GVA (HV = 2H), β near 2 with negative eigenvalues, decays near 0 (head 0) and near 1 (head 1)",
    cfg = with(BASE, { allow_neg_eigval = true }),
    setup = function(P)
      set_rows(P["b_proj.weight"], { 1, 2, 3, 4 }, 0.7)          -- b ≈ +8 → β = 2σ(b) ≈ 2
      hb.no_grad(function()
        P["A_log"]:set(math.log(16), 1); P["A_log"]:set(math.log(0.05), 2)
        for j = 1, 4 do P["dt_bias"]:set(3, j); P["dt_bias"]:set(-7, 4 + j) end -- e^g ≈ e^{−48} | 1 − 5e−5
      end)
    end,
    expect = function(d0, d1, b0) return d0 < 1e-9 and d1 > 0.999 and b0 > 1.98 end },
  { name = "β near 0, decays near 1 everywhere",
    cfg = BASE,
    setup = function(P)
      set_rows(P["b_proj.weight"], { 1, 2, 3, 4 }, -0.7)         -- β ≈ σ(−8) ≈ 3e−4
      hb.no_grad(function() P["A_log"]:fill_(math.log(0.1)); P["dt_bias"]:fill_(-6) end)
    end,
    expect = function(d0, _, _, b1) return d0 > 0.99 and b1 < 0.01 end },
  { name = "lower_bound = −20 (no safe_gate), decays near 0 and near 1, no short convolution",
    cfg = with(BASE, { lower_bound = -20, use_short_conv = false, num_heads = 4, num_v_heads = 4 }),
    setup = function(P)
      hb.no_grad(function()
        P["A_log"]:fill_(0)
        for j = 1, 16 do P["dt_bias"]:set(j % 2 == 0 and 3 or -9, j) end -- g ≈ −19 | −2e−3: e^g ≈ 5e−9 | 0.998
      end)
    end,
    expect = function(d0, d1) return d0 < 1e-6 and d1 > 0.99 end },
  { name = "safe_gate with lower_bound = −5 (A_log = 0 at init), GVA HV = 4, H = 1, expand_v = 1.5",
    cfg = with(BASE, { safe_gate = true, lower_bound = -5, num_heads = 1, num_v_heads = 4, expand_v = 1.5,
      allow_neg_eigval = true, conv_size = 3 }),
    expect = function(d0, d1, b0, b1) return d0 >= math.exp(-5) * (1 - 1e-12) and d1 < 1 and b1 > 1 end },
}
for _, c in ipairs(cases) do
  local f, P = layer64(c.cfg, c.setup)
  local x = input(2, Tn, c.cfg.hidden_size)
  local d0, d1, b0, b1 = hb.no_grad(function() return regime(P, x, c.cfg) end)
  local what = string.format("decays e^g in [%.3g, %.6f], β in [%.4g, %.4g]", d0, d1, b0, b1)
  T.ok(c.expect(d0, d1, b0, b1), "the regime holds: " .. c.name, what)
  T.diag(what)
  local yc, yr = hb.no_grad(function() return f(x, "chunk"), f(x, "recurrent") end)
  local e = rel(yc, yr)
  T.ok(e < 1e-10, "float64 layer: chunk == recurrent (" .. c.name .. ")", string.format("rel %.2e", e))
  for _, mode in ipairs { "chunk", "recurrent" } do
    x = x:detach():requires_grad(true)
    for _, t in pairs(P) do t:zero_grad() end
    local worst, wname, n = gradcheck(f, P, x, mode)
    T.ok(worst < 1e-6, string.format("float64 whole-layer gradients == finite differences, %d tensors incl. the input, %s mode, T = %d (%s)",
      n, mode, Tn, c.name), string.format("worst %.2e at %s", worst, wname))
    T.diag(string.format("%s %s: worst %.2e at %s", mode, c.name:sub(1, 40), worst, wname))
  end
end

-- ---- random configs: chunk == recurrent, decoding, cache bytes, save → load ----------------------------
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local configs = {
  { num_heads = 3, head_dim = 8, expand_v = 2.0, use_short_conv = false, lower_bound = -3.0 },
  { num_heads = 1, num_v_heads = 4, head_dim = 16, expand_v = 0.5, allow_neg_eigval = true, conv_size = 3 },
  { num_heads = 2, num_v_heads = 6, head_dim = 8, safe_gate = true, lower_bound = -5.0, tie_word_embeddings = true },
  { num_heads = 2, head_dim = 16, num_hidden_layers = 3, attn = { layers = { 1 }, num_heads = 4, num_kv_heads = 2 } },
}
for k, over in ipairs(configs) do
  local cfg = with({ model_type = "kda", hidden_size = 32, num_hidden_layers = 2, vocab_size = 64,
    initializer_range = 0.15 }, over)
  local m = hb.models.new(cfg, { seed = 10 + k })
  local ids = hb.randint(0, 64, 2, 150)
  local lc = hb.no_grad(function() return m:set_mode("chunk"):forward(ids) end)
  local lr = hb.no_grad(function() return m:set_mode("recurrent"):forward(ids) end)
  m:set_mode("chunk")
  local tag = string.format("config %d (H %d, HV %s, K %d)", k, cfg.num_heads, tostring(cfg.num_v_heads or cfg.num_heads), cfg.head_dim)
  T.ok(rel(lc, lr) < 1e-5, tag .. ": chunk == recurrent logits at T = 150", string.format("rel %.2e", rel(lc, lr)))
  -- decode token by token and prefill + decode
  local cache = m:new_cache(2)
  local worst, nb = 0, {}
  for t = 1, 40 do
    worst = math.max(worst, rel(m:step(ids:narrow(2, t, 1), cache), lc:select(2, t)))
    nb[t] = cache:nbytes()
  end
  local c2 = m:new_cache(2)
  local e2 = rel(m:prefill(ids:narrow(2, 1, 33), c2), lc:select(2, 33))
  for t = 34, 40 do e2 = math.max(e2, rel(m:step(ids:narrow(2, t, 1), c2), lc:select(2, t))) end
  T.ok(worst < 1e-4 and e2 < 1e-4, tag .. ": step-by-step decode and prefill + decode == the forward",
    string.format("%.2e, %.2e", worst, e2))
  -- state_bytes (recurrent + conv) == what the KDA layers' caches hold; constant in context
  local eff = hb.eval.efficiency(m, { N = 40 })
  local ok_bytes, why = true, ""
  for li, L in ipairs(m.layers) do
    if L.kind == "kda" then
      local real = 0
      for _, t in pairs(cache.layers[li]) do real = real + t:nbytes() end
      local e = eff.layers[li]
      if real ~= 2 * (e.state_bytes + e.conv_state_bytes) or e.state_bytes ~= L.HV * L.dk * L.dv * 4 then
        ok_bytes, why = false, string.format("layer %d: cache %d, mixer says 2 × (%d + %d)", li - 1, real, e.state_bytes, e.conv_state_bytes)
      end
      if e.mixer_flops ~= 8 * L.HV * L.dk * L.dv then ok_bytes, why = false, "flops " .. e.mixer_flops end
    end
  end
  local grows = cfg.attn and (nb[40] > nb[2]) or (nb[40] == nb[1])
  T.ok(ok_bytes and grows, tag .. ": state_bytes and flops match the decode cache; cache bytes " ..
    (cfg.attn and "grow by the attention KV only" or "constant in context"), why .. string.format(" %d → %d", nb[1], nb[40]))
  -- save → load: bit-exact, the config's KDA fields kept
  local dir = tmp .. "/c" .. k
  m:save_pretrained(dir)
  local m2 = hb.load_pretrained(dir)
  local saved = hb.io.read_json(dir .. "/config.json")
  local same_cfg = saved.num_v_heads == (cfg.num_v_heads or hb.io.null) and saved.safe_gate == (cfg.safe_gate or false)
    and saved.lower_bound == (cfg.lower_bound or hb.io.null) and saved.head_dim == cfg.head_dim
  T.ok(same_cfg and maxabs(hb.no_grad(function() return m2:forward(ids) end) - lc) == 0,
    tag .. ": save_pretrained → load_pretrained is bit-exact and keeps the KDA fields")
end

-- ---- fla's config rules ---------------------------------------------------------------------------------
local function cfgerr(over, pat, desc)
  T.raises(function() hb.models.new(with(BASE, over)) end, pat, desc)
end
cfgerr({ safe_gate = true }, "safe_gate = true needs lower_bound", "safe_gate without lower_bound is refused (fla's KDAConfig)")
cfgerr({ safe_gate = true, lower_bound = -6 }, "safe_gate = true needs lower_bound in [-5, 0)", "safe_gate with lower_bound < −5 is refused (fla's chunk_kda)")
cfgerr({ lower_bound = 0.5 }, "lower_bound must be null or a finite negative number", "a non-negative lower_bound is refused")
cfgerr({ lower_bound = "x" }, "lower_bound must be null or a finite negative number", "a non-number lower_bound is refused")
cfgerr({ num_heads = 2, num_v_heads = 3 }, "num_v_heads 3 must be a multiple of num_heads 2", "GVA needs num_v_heads a multiple of num_heads")
cfgerr({ num_heads = 4, num_v_heads = 2 }, "num_v_heads 2 must be a multiple of num_heads 4", "fewer value heads than q/k heads is refused")
cfgerr({ expand_v = 0.3 }, "head_dim * expand_v = 1.2 is not an integer", "a non-integral head_v_dim is refused")
cfgerr({ attn_mode = "parallel" }, "attn_mode = 'parallel' (expected 'chunk' or 'fused_recurrent')", "fla's layer modes only")
cfgerr({ use_gate = true }, "'use_gate' is not a field of kda configs", "another type's field is refused")
cfgerr({ safe_gate = 1 }, "'safe_gate' must be true or false", "safe_gate must be a boolean")
cfgerr({ hidden_act = "gelu" }, "hidden_act = 'gelu' is not implemented by hyblua", "a common field with an unimplemented value is refused naming it")
T.ok(pcall(hb.models.new, with(BASE, { attn_mode = "fused_recurrent", safe_gate = true, lower_bound = -5 })),
  "attn_mode fused_recurrent and safe_gate with lower_bound −5 are accepted")
local defaults = hb.models.new({ model_type = "kda", num_hidden_layers = 1, hidden_size = 64, vocab_size = 8 }).config
T.ok(defaults.head_dim == 128 and defaults.num_heads == 16 and defaults.expand_v == 1.0 and defaults.conv_size == 4
  and defaults.use_short_conv == true and defaults.safe_gate == false and defaults.lower_bound == hb.io.null
  and defaults.allow_neg_eigval == false and defaults.architectures[1] == "KDAForCausalLM", "fla's KDAConfig defaults")

-- ---- initialisation (fla's _init_weights) -----------------------------------------------------------------
do
  -- 256 value heads: log U(0, 16) (Gated DeltaNet's) would put some A_log below 0 (P ≈ 1 − (15/16)^256)
  local m = hb.models.new(with(BASE, { num_heads = 4, num_v_heads = 256, head_dim = 4, expand_v = 1.0, hidden_size = 64 }), { seed = 3 })
  local p = function(n) return m.params["model.layers.0.attn." .. n] end
  local A, dt = p("A_log"), p("dt_bias"):softplus()
  T.ok(A:min():item() >= 0 and A:min():item() < 0.3 and A:max():item() <= math.log(16) and A:max():item() > 2.7,
    "A_log = log U(1, 16)", string.format("[%.3f, %.3f]", A:min():item(), A:max():item()))
  T.ok(dt:min():item() >= 1e-4 * (1 - 1e-5) and dt:min():item() < 2e-3 and dt:max():item() <= 0.1 * (1 + 1e-5)
    and dt:max():item() > 0.05 and dt:numel() == 256 * 4, "dt_bias [HV·K] = inverse softplus of dt ∈ [1e-3, 0.1] (floored at 1e-4)",
    string.format("[%.3g, %.3g]", dt:min():item(), dt:max():item()))
  T.ok(maxabs(p("g_proj.1.bias")) == 0 and maxabs(p("o_norm.weight") - 1) == 0, "g_proj.1.bias 0, o_norm.weight 1")
  local sd = p("f_proj.1.weight"):double():square():mean():sqrt():item()
  T.ok(math.abs(sd - 0.02) < 0.004, "projections N(0, initializer_range)", sd)
  T.ok(m:no_weight_decay("model.layers.0.attn.A_log") and m:no_weight_decay("model.layers.0.attn.dt_bias")
    and not m:no_weight_decay("model.layers.0.attn.f_proj.0.weight"), "A_log and dt_bias are excluded from weight decay")
  local ms = hb.models.new(with(BASE, { safe_gate = true, lower_bound = -5 }), { seed = 3 })
  T.ok(maxabs(ms.params["model.layers.0.attn.A_log"]) == 0, "safe_gate: A_log initialised to 0")
end

-- ---- a hybrid KDA model trains and decodes ------------------------------------------------------------------
do
  local cfg = { model_type = "kda", hidden_size = 64, num_hidden_layers = 4, num_heads = 2, head_dim = 32,
    vocab_size = 64, attn = hb.schedule.ratio(3, { num_heads = 4 }) }
  local m = hb.models.new(cfg, { seed = 5 })
  T.is(hb.schedule.describe(m.config), "LLLA", "hb.schedule.describe: KDA layers are L, attention at layer 3")
  local row = {}
  for t = 1, 48 do row[t] = (t * 7) % 13 end
  local ids = hb.tensor({ row, row }, "int64")
  local opt = hb.optim.AdamW(m:parameters(), { lr = 3e-3 })
  local first, last
  for s = 1, 8 do
    local l = m:loss(ids)
    if s == 1 then first = l:item() end
    last = l:item()
    opt:zero_grad(); l:backward(); opt:step()
  end
  T.ok(last < first - 0.5, "a 3:1 KDA/attention hybrid trains (AdamW, 8 steps)", string.format("%.4f → %.4f", first, last))
  local out = m:generate(ids:narrow(2, 1, 13), 10)
  local full = hb.no_grad(function() return m:forward(hb.tensor({ { table.unpack(row, 1, 13) } }, "int64")) end)
  T.ok(#out == 2 and #out[1] == 10 and out[1][1] == full:select(2, 13):argmax(2):get(1),
    "generate decodes from the prompt's cache (first greedy token == argmax of the forward)")
end

os.execute("rm -rf '" .. tmp .. "'")
T.done()
