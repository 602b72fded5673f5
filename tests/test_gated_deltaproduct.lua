-- test_gated_deltaproduct.lua — the gated_deltaproduct model type (lua/hyblua/mixers/gated_deltaproduct.lua)
-- beyond the fla fixtures:
--   * float64 finite-difference gradient checks of one WHOLE layer (every parameter and the input) in
--     chunk and recurrent modes at T = 67 (not a multiple of the chunk; with num_householder = 2 and 3 the
--     T·NH sub-steps are not either): decays near 0 and near 1, β near 0, β near 2 with negative
--     eigenvalues, num_householder 1..3, no forget gate, no short conv, no output gate;
--   * chunk == recurrent, decode == forward, prefill + decode, state_bytes == the real cache, save → load
--     for random configs (num_householder 1..3, use_forget_gate, allow_neg_eigval, use_output_gate, a
--     hybrid);
--   * fla's config rules and defaults, init (A_log = log U(0, 16), dt_bias, no weight decay);
--   * a hybrid (attn) model trains and decodes; hb.eval.efficiency and hb.schedule.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
math.randomseed(11)

local function maxabs(t) return t:abs():max():item() end
local function rel(a, b) return maxabs(a - b) / math.max(maxabs(b), 1e-30) end

local BASE = { model_type = "gated_deltaproduct", hidden_size = 12, num_hidden_layers = 1, num_heads = 2,
  head_dim = 4, expand_v = 0.75, vocab_size = 16, num_householder = 2, use_forget_gate = true }
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
-- numeric: the 4-point central difference (error O(h⁴)), h = 1e-5. Its rounding noise reaches ~1.5e-6 of
-- the scale on dt_bias when one head decays as e^{−48} (h = 1e-4 trades it for ~2e-5 of truncation on
-- k_proj with β near 2), hence the bound 5e-6 below; a wrong gradient term shows as ≥ 1e-3.
local gradcheck_h = dofile("tests/layer_gradcheck.lua")
local function gradcheck(f, P, x, mode) return gradcheck_h(f, P, x, mode, 1e-5) end

-- x with a positive mean (so that a b_proj of one sign pushes β to one side)
local function input(B, Tn, d) return (hb.randn(B, Tn, d) * 0.5 + 1):double() end

local function set_rows(t, rows, v)
  local s = t:shape()
  for _, r in ipairs(rows) do for j = 1, s[2] do t:set(v * (1 + 0.1 * (j % 3)), r, j) end end
end
local function all_rows(t) local r = {}; for i = 1, t:shape()[1] do r[i] = i end; return r end

-- the decays e^g and βs layer 0 sees for input x (fla's gate, recomputed here from the parameters)
local function regime(P, x, cfg)
  local d0, d1 = 1, 1
  if cfg.use_forget_gate then
    local g = (hb.linear(x, P["a_proj.weight"]) + P["dt_bias"]):softplus() * P["A_log"]:exp():neg()
    d0, d1 = g:exp():min():item(), g:exp():max():item()
  end
  local beta = hb.linear(x, P["b_proj.weight"]):sigmoid() * (cfg.allow_neg_eigval and 2 or 1)
  return d0, d1, beta:min():item(), beta:max():item()
end

local Tn = 67 -- one chunk of 64 tokens and a partial one
local cases = {
  { name = "NH = 2, β near 2 with negative eigenvalues, decays near 0 (head 0) and near 1 (head 1)",
    cfg = with(BASE, { allow_neg_eigval = true }),
    setup = function(P)
      set_rows(P["b_proj.weight"], all_rows(P["b_proj.weight"]), 0.7)   -- b ≈ +8 → β = 2σ(b) ≈ 2
      hb.no_grad(function()
        P["A_log"]:set(math.log(16), 1); P["A_log"]:set(math.log(0.05), 2)
        P["dt_bias"]:set(3, 1); P["dt_bias"]:set(-7, 2)                   -- e^g ≈ e^{−48} | 1 − 5e−5
      end)
    end,
    expect = function(d0, d1, b0) return d0 < 1e-9 and d1 > 0.999 and b0 > 1.98 end },
  { name = "NH = 3, β near 0, decays near 1 everywhere",
    cfg = with(BASE, { num_householder = 3 }),
    setup = function(P)
      set_rows(P["b_proj.weight"], all_rows(P["b_proj.weight"]), -0.7)  -- β ≈ σ(−8) ≈ 3e−4
      hb.no_grad(function() P["A_log"]:fill_(math.log(0.1)); P["dt_bias"]:fill_(-6) end)
    end,
    expect = function(d0, _, _, b1) return d0 > 0.99 and b1 < 0.01 end },
  { name = "NH = 1, no forget gate, no short convolution, allow_neg_eigval (β up to 2)",
    cfg = with(BASE, { num_householder = 1, use_forget_gate = false, use_short_conv = false, allow_neg_eigval = true }),
    setup = function(P) set_rows(P["b_proj.weight"], { 1 }, 0.7) end,
    expect = function(d0, d1, _, b1) return d0 == 1 and d1 == 1 and b1 > 1.98 end },
  { name = "NH = 3, no forget gate, no output gate, conv_size 3, 1 head, expand_v 1.5",
    cfg = with(BASE, { num_householder = 3, use_forget_gate = false, use_output_gate = false, conv_size = 3,
      num_heads = 1, expand_v = 1.5 }),
    expect = function(d0, d1, b0, b1) return d0 == 1 and d1 == 1 and b0 > 0 and b1 < 1 end },
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
    T.ok(worst < 5e-6, string.format("float64 whole-layer gradients == finite differences, %d tensors incl. the input, %s mode, T = %d (%s)",
      n, mode, Tn, c.name), string.format("worst %.2e at %s", worst, wname))
    T.diag(string.format("%s %s: worst %.2e at %s", mode, c.name:sub(1, 40), worst, wname))
  end
end

-- ---- random configs: chunk == recurrent, decoding, cache bytes, save → load ----------------------------
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local configs = {
  { num_heads = 3, head_dim = 8, expand_v = 2.0, num_householder = 1, use_forget_gate = true },
  { num_heads = 1, head_dim = 16, expand_v = 0.5, num_householder = 2, allow_neg_eigval = true, conv_size = 3 },
  { num_heads = 2, head_dim = 8, num_householder = 3, use_forget_gate = true, allow_neg_eigval = true,
    use_output_gate = false, use_short_conv = false, tie_word_embeddings = true },
  { num_heads = 2, head_dim = 16, num_householder = 2, use_forget_gate = true, num_hidden_layers = 3,
    attn = { layers = { 1 }, num_heads = 4, num_kv_heads = 2 } },
}
for k, over in ipairs(configs) do
  local cfg = with({ model_type = "gated_deltaproduct", hidden_size = 32, num_hidden_layers = 2, vocab_size = 64,
    initializer_range = 0.15 }, over)
  local m = hb.models.new(cfg, { seed = 10 + k })
  local ids = hb.randint(0, 64, 2, 150)
  local lc = hb.no_grad(function() return m:set_mode("chunk"):forward(ids) end)
  local lr = hb.no_grad(function() return m:set_mode("recurrent"):forward(ids) end)
  m:set_mode("chunk")
  local tag = string.format("config %d (H %d, K %d, NH %d, forget gate %s, neg eigval %s)", k, cfg.num_heads, cfg.head_dim,
    cfg.num_householder, tostring(cfg.use_forget_gate or false), tostring(cfg.allow_neg_eigval or false))
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
  -- state_bytes (recurrent + conv) == what the layers' caches hold; constant in context
  local eff = hb.eval.efficiency(m, { N = 40 })
  local ok_bytes, why = true, ""
  for li, L in ipairs(m.layers) do
    if L.kind == "gated_deltaproduct" then
      local real = 0
      for _, t in pairs(cache.layers[li]) do real = real + t:nbytes() end
      local e = eff.layers[li]
      if real ~= 2 * (e.state_bytes + e.conv_state_bytes) or e.state_bytes ~= L.HV * L.dk * L.dv * 4 then
        ok_bytes, why = false, string.format("layer %d: cache %d, mixer says 2 × (%d + %d)", li - 1, real, e.state_bytes, e.conv_state_bytes)
      end
      if e.mixer_flops ~= (4 + 4 * L.NH) * L.HV * L.dk * L.dv then ok_bytes, why = false, "flops " .. e.mixer_flops end
    end
  end
  local grows = cfg.attn and (nb[40] > nb[2]) or (nb[40] == nb[1])
  T.ok(ok_bytes and grows, tag .. ": state_bytes and flops match the decode cache; cache bytes " ..
    (cfg.attn and "grow by the attention KV only" or "constant in context"), why .. string.format(" %d → %d", nb[1], nb[40]))
  -- save → load: bit-exact, the config's fields kept
  local dir = tmp .. "/c" .. k
  m:save_pretrained(dir)
  local m2 = hb.load_pretrained(dir)
  local saved = hb.io.read_json(dir .. "/config.json")
  local same_cfg = saved.num_householder == cfg.num_householder and saved.use_forget_gate == (cfg.use_forget_gate or false)
    and saved.allow_neg_eigval == (cfg.allow_neg_eigval or false) and saved.head_dim == cfg.head_dim
    and saved.use_output_gate == (cfg.use_output_gate ~= false)
  T.ok(same_cfg and maxabs(hb.no_grad(function() return m2:forward(ids) end) - lc) == 0,
    tag .. ": save_pretrained → load_pretrained is bit-exact and keeps the DeltaProduct fields")
end

-- ---- fla's config rules ---------------------------------------------------------------------------------
local function cfgerr(over, pat, desc)
  T.raises(function() hb.models.new(with(BASE, over)) end, pat, desc)
end
cfgerr({ num_householder = 0 }, "'num_householder' must be >= 1", "num_householder 0 is refused")
cfgerr({ num_householder = 1.5 }, "'num_householder' must be an integer", "a fractional num_householder is refused")
cfgerr({ expand_v = 0.3 }, "head_dim * expand_v = 1.2 is not an integer", "a non-integral head_v_dim is refused")
cfgerr({ attn_mode = "parallel" }, "attn_mode = 'parallel' (expected 'chunk' or 'fused_recurrent')", "fla's layer modes only")
cfgerr({ num_v_heads = 4 }, "unknown config key 'num_v_heads'", "num_v_heads (not in fla's config class) is refused")
cfgerr({ use_forget_gate = 1 }, "'use_forget_gate' must be true or false", "use_forget_gate must be a boolean")
cfgerr({ allow_neg_eigval = "yes" }, "'allow_neg_eigval' must be true or false", "allow_neg_eigval must be a boolean")
cfgerr({ attnres_block_size = 2 }, "attnres_block_size = 2 is not implemented by hyblua", "attnres_block_size is refused naming the field")
local defaults = hb.models.new({ model_type = "gated_deltaproduct", num_hidden_layers = 1, hidden_size = 64, vocab_size = 8 }).config
T.ok(defaults.head_dim == 256 and defaults.num_heads == 6 and defaults.expand_v == 2.0 and defaults.conv_size == 4
  and defaults.use_short_conv == true and defaults.use_output_gate == true and defaults.use_forget_gate == false
  and defaults.allow_neg_eigval == false and defaults.num_householder == 1 and defaults.norm_eps == 1e-6
  and defaults.architectures[1] == "GatedDeltaProductForCausalLM", "fla's GatedDeltaProductConfig defaults")

-- ---- initialisation and parameter shapes (fla's layer and _init_weights) -------------------------------------
do
  -- 256 heads: log U(0, 16) puts some A_log below 0 (P ≈ 1 − (15/16)^256)
  local m = hb.models.new(with(BASE, { num_heads = 256, head_dim = 2, expand_v = 1.0, hidden_size = 32, num_householder = 3 }), { seed = 3 })
  local p = function(n) return m.params["model.layers.0.attn." .. n] end
  local A, dt = p("A_log"), p("dt_bias"):softplus()
  T.ok(A:min():item() < 0 and A:max():item() <= math.log(16) and A:max():item() > 2.7,
    "A_log = log U(0, 16)", string.format("[%.3f, %.3f]", A:min():item(), A:max():item()))
  T.ok(dt:min():item() >= 1e-4 * (1 - 1e-5) and dt:min():item() < 2e-3 and dt:max():item() <= 0.1 * (1 + 1e-5)
    and dt:max():item() > 0.05 and dt:numel() == 256, "dt_bias [H] = inverse softplus of dt ∈ [1e-3, 0.1] (floored at 1e-4)",
    string.format("[%.3g, %.3g]", dt:min():item(), dt:max():item()))
  local shp = function(n) return table.concat(p(n):shape(), "x") end
  T.ok(shp("k_proj.weight") == "1536x32" and shp("v_proj.weight") == "1536x32" and shp("b_proj.weight") == "768x32"
    and shp("k_conv1d.weight") == "1536x1x4" and shp("a_proj.weight") == "256x32" and shp("q_proj.weight") == "512x32",
    "k/v/b projections and the k/v convolutions carry num_householder blocks (fla's shapes)")
  T.ok(maxabs(p("o_norm.weight") - 1) == 0, "o_norm.weight 1")
  local sd = p("k_proj.weight"):double():square():mean():sqrt():item()
  T.ok(math.abs(sd - 0.02) < 0.004, "projections N(0, initializer_range)", sd)
  T.ok(m:no_weight_decay("model.layers.0.attn.A_log") and m:no_weight_decay("model.layers.0.attn.dt_bias")
    and not m:no_weight_decay("model.layers.0.attn.a_proj.weight"), "A_log and dt_bias are excluded from weight decay")
  local m2 = hb.models.new(with(BASE, { use_forget_gate = false, use_output_gate = false }), { seed = 3 })
  local P2 = m2.params
  T.ok(not P2["model.layers.0.attn.A_log"] and not P2["model.layers.0.attn.a_proj.weight"]
    and not P2["model.layers.0.attn.g_proj.weight"] and P2["model.layers.0.attn.o_norm.weight"] ~= nil,
    "without the forget gate: no a_proj/A_log/dt_bias; without the output gate: no g_proj")
end

-- ---- a hybrid model trains and decodes ------------------------------------------------------------------
do
  local cfg = { model_type = "gated_deltaproduct", hidden_size = 64, num_hidden_layers = 4, num_heads = 2, head_dim = 32,
    num_householder = 2, use_forget_gate = true, vocab_size = 64, attn = hb.schedule.ratio(3, { num_heads = 4 }) }
  local m = hb.models.new(cfg, { seed = 5 })
  T.is(hb.schedule.describe(m.config), "LLLA", "hb.schedule.describe: DeltaProduct layers are L, attention at layer 3")
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
  T.ok(last < first - 0.5, "a 3:1 DeltaProduct/attention hybrid trains (AdamW, 8 steps)", string.format("%.4f → %.4f", first, last))
  local out = m:generate(ids:narrow(2, 1, 13), 10)
  local full = hb.no_grad(function() return m:forward(hb.tensor({ { table.unpack(row, 1, 13) } }, "int64")) end)
  T.ok(#out == 2 and #out[1] == 10 and out[1][1] == full:select(2, 13):argmax(2):get(1),
    "generate decodes from the prompt's cache (first greedy token == argmax of the forward)")
end

os.execute("rm -rf '" .. tmp .. "'")
T.done()
