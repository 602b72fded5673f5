-- test_mamba2.lua — the Mamba-2 model type (lua/hyblua/mixers/mamba2.lua) beyond the fla fixtures:
--   * float64 finite-difference gradient checks of one WHOLE layer (every parameter and the input) in
--     chunk and recurrent modes at T = 67 (not a multiple of the chunk 64): decays e^{ΔA} near 0 and
--     near 1, n_groups > 1 (both group mappings), D per channel, biases, norm before the gate, no
--     RMSNorm, a finite dt_limit;
--   * chunk == recurrent, decode == forward, prefill + decode, state_bytes == the real cache, save →
--     load for random configs (head counts, groups, state sizes, conv sizes, a hybrid);
--   * the config rules (sizes, pairs, group_mapping, hidden_act) and fla's init;
--   * a hybrid (attn) Mamba-2 model trains and decodes; hb.eval.efficiency and hb.schedule.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
math.randomseed(5)

local function maxabs(t) return t:abs():max():item() end
local function rel(a, b) return maxabs(a - b) / math.max(maxabs(b), 1e-30) end

-- hidden 12, expand 2 → I = 24, head_dim 6 → 4 heads; state 5
local BASE = { model_type = "mamba2", hidden_size = 12, num_hidden_layers = 1, head_dim = 6, state_size = 5,
  vocab_size = 16 }
local function with(base, over)
  local c = {}
  for k, v in pairs(base) do c[k] = v end
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

-- ---- float64 finite differences of one whole layer -------------------------------------------------
-- A float64 copy of layer 0's mixer of a fresh model, run through the mixer's own forward (the def),
-- with the parameter values `setup` puts in place (weights N(0, 1/fan_in) so nothing is trivially small,
-- biases and the norm weight perturbed away from 0 and 1).
local function layer64(cfg, setup)
  local m = hb.models.new(cfg, { seed = 7 })
  local L = m.layers[1]
  local P = {}
  for name, p in m:named_parameters() do
    local short = name:match("^backbone%.layers%.0%.mixer%.(.+)$")
    if short then
      local t = p:detach():double()
      local s = t:shape()
      if short == "in_proj.weight" or short == "out_proj.weight" then
        t = hb.randn(s):double() * (1 / math.sqrt(s[2]))
      elseif short == "conv1d.weight" then
        t = hb.randn(s):double() * 0.4
      elseif short:find("bias$") and short ~= "dt_bias" then
        t = hb.randn(s):double() * 0.1
      elseif short == "norm.weight" or short == "D" then
        t = hb.randn(s):double() * 0.2 + 1
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
-- numeric: the 4-point central difference (error O(h⁴)), h = 1e-4 (at 1e-5 the rounding of the loss,
-- ~1e-16·|loss|/h, reaches 1.7e-6 of A_log's small gradient when every decay is near 1 and nothing is normed)
local gradcheck_h = dofile("tests/layer_gradcheck.lua")
local function gradcheck(f, P, x, mode) return gradcheck_h(f, P, x, mode, 1e-4) end

local function input(B, Tn, d) return (hb.randn(B, Tn, d) * 0.5 + 0.5):double() end

-- the per-head decays e^{ΔA} layer 0 sees for input x (fla's torch_forward, recomputed here), and the
-- smallest distance of Δ to the ends of dt_limit (a clamp edge would make the difference quotient wrong)
local function regime(P, x, L, cfg)
  local zxbcdt = hb.linear(x, P["in_proj.weight"], P["in_proj.bias"])
  local dt = zxbcdt:narrow(3, L.I + L.conv_dim + 1, L.H) + P["dt_bias"]
  dt = dt:softplus()
  local lim = cfg.dt_limit or { 0, math.huge }
  local edge = math.min((dt - lim[1]):abs():min():item(), lim[2] == math.huge and math.huge or (dt - lim[2]):abs():min():item())
  local clamped = ((dt - lim[1]):min():item() < 0) or (lim[2] ~= math.huge and (dt - lim[2]):max():item() > 0)
  local d = (dt:clamp(lim[1], lim[2]) * P["A_log"]:exp():neg()):exp()
  return d:min():item(), d:max():item(), edge, clamped
end

-- head 0: A = 16, Δ ≈ 3 → e^{ΔA} ≈ e^{−48}; head 1: A = 0.05, Δ ≈ 1e−3 → 1 − 5e−5
local function extremes(P)
  hb.no_grad(function()
    P["A_log"]:set(math.log(16), 1); P["A_log"]:set(math.log(0.05), 2)
    P["dt_bias"]:set(3, 1); P["dt_bias"]:set(-7, 2)
  end)
end

local Tn = 67 -- one chunk of 64 and a partial one
local cases = {
  { name = "fla's defaults (1 group), decays near 0 (head 0) and near 1 (head 1)",
    cfg = BASE, setup = extremes,
    expect = function(d0, d1) return d0 < 1e-9 and d1 > 0.999 end },
  { name = "n_groups 2 tiled, D per channel, biases, norm before the gate, conv 3, decays near 0 and 1",
    cfg = with(BASE, { n_groups = 2, D_has_hdim = true, use_bias = true, norm_before_gate = true, conv_kernel = 3 }),
    setup = extremes,
    expect = function(d0, d1) return d0 < 1e-9 and d1 > 0.999 end },
  { name = "n_groups 4 blocked, no RMSNorm, no conv bias, decays near 1 everywhere",
    cfg = with(BASE, { n_groups = 4, group_mapping = "blocked", rmsnorm = false, use_conv_bias = false }),
    setup = function(P) hb.no_grad(function() P["A_log"]:fill_(math.log(0.1)); P["dt_bias"]:fill_(-6) end) end,
    expect = function(d0) return d0 > 0.99 end },
  { name = "n_groups 2 blocked, dt_limit [0.02, 0.5] clamping some Δ, 8 heads of 3",
    cfg = with(BASE, { n_groups = 2, group_mapping = "blocked", head_dim = 3, dt_limit = { 0.02, 0.5 } }),
    setup = function(P) hb.no_grad(function() for h = 1, 8 do P["dt_bias"]:set(h % 2 == 0 and -5 or 1.5, h) end end) end,
    expect = function(d0, d1, edge, clamped) return clamped and edge > 1e-4 and d1 < 1 end },
}
for _, c in ipairs(cases) do
  local f, P, L = layer64(c.cfg, c.setup)
  local x = input(2, Tn, c.cfg.hidden_size)
  local d0, d1, edge, clamped = hb.no_grad(function() return regime(P, x, L, c.cfg) end)
  local what = string.format("decays e^{ΔA} in [%.3g, %.6f], Δ %.2e from a clamp edge%s", d0, d1, edge, clamped and " (clamped)" or "")
  T.ok(c.expect(d0, d1, edge, clamped), "the regime holds: " .. c.name, what)
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

-- ---- group mappings against an explicit per-head expansion ------------------------------------------------
-- n_groups = G, H heads: 'tiled' is head h ← group h mod G (fla's torch_forward repeat), 'blocked' is
-- h ← h // (H/G) (mamba_ssm, fla's decode step's expand); both equal hb.ssd with q/k expanded per head
do
  local B, Tn2, G, H, N, Pd = 1, 20, 2, 6, 3, 4
  local q, k = hb.randn(B, Tn2, G, N):double(), hb.randn(B, Tn2, G, N):double()
  local v, g = hb.randn(B, Tn2, H, Pd):double(), (hb.rand(B, Tn2, H) * -0.5):double()
  for _, tiled in ipairs { 1, 0 } do
    local qs, ks = {}, {}
    for h = 0, H - 1 do
      local grp = tiled == 1 and h % G or h // (H // G)
      qs[#qs + 1] = q:narrow(3, grp + 1, 1); ks[#ks + 1] = k:narrow(3, grp + 1, 1)
    end
    local qe, ke = hb.cat(qs, 3), hb.cat(ks, 3)
    local want = hb.ssd { q = qe, k = ke, v = v, g = g }
    local got = hb.ssd { q = q, k = k, v = v, g = g, tiled_groups = tiled }
    T.ok(rel(got, want) < 1e-12, (tiled == 1 and "tiled" or "blocked") .. " group mapping == q/k expanded per head",
      string.format("%.2e", rel(got, want)))
  end
end

-- ---- random configs: chunk == recurrent, decoding, cache bytes, save → load ----------------------------
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local configs = {
  { head_dim = 8, state_size = 16, n_groups = 2 },
  { head_dim = 16, state_size = 8, n_groups = 4, group_mapping = "blocked", conv_kernel = 3, D_has_hdim = true },
  { head_dim = 4, state_size = 32, expand = 1, use_bias = true, rmsnorm = false, tie_word_embeddings = true },
  { head_dim = 8, state_size = 16, num_hidden_layers = 3, norm_before_gate = true,
    attn = { layers = { 1 }, num_heads = 4, num_kv_heads = 2 } },
}
for k, over in ipairs(configs) do
  local cfg = with({ model_type = "mamba2", hidden_size = 32, num_hidden_layers = 2, vocab_size = 64,
    initializer_range = 0.15 }, over)
  local m = hb.models.new(cfg, { seed = 10 + k })
  local ids = hb.randint(0, 64, 2, 150)
  local lc = hb.no_grad(function() return m:set_mode("chunk"):forward(ids) end)
  local lr = hb.no_grad(function() return m:set_mode("recurrent"):forward(ids) end)
  m:set_mode("chunk")
  local L1 = m.layers[1]
  local tag = string.format("config %d (H %d, G %d, N %d, P %d)", k, L1.H, L1.G, L1.N, L1.P)
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
  -- state_bytes (recurrent + conv) == what the Mamba-2 layers' caches hold; constant in context
  local eff = hb.eval.efficiency(m, { N = 40 })
  local ok_bytes, why = true, ""
  for li, L in ipairs(m.layers) do
    if L.kind == "mamba2" then
      local real = 0
      for _, t in pairs(cache.layers[li]) do real = real + t:nbytes() end
      local e = eff.layers[li]
      if real ~= 2 * (e.state_bytes + e.conv_state_bytes) or e.state_bytes ~= L.H * L.N * L.P * 4
        or e.conv_state_bytes ~= (L.W - 1) * L.conv_dim * 4 then
        ok_bytes, why = false, string.format("layer %d: cache %d, mixer says 2 × (%d + %d)", li - 1, real, e.state_bytes, e.conv_state_bytes)
      end
      if e.mixer_flops ~= 5 * L.H * L.N * L.P then ok_bytes, why = false, "flops " .. e.mixer_flops end
    end
  end
  local grows = cfg.attn and (nb[40] > nb[2]) or (nb[40] == nb[1])
  T.ok(ok_bytes and grows, tag .. ": state_bytes and flops match the decode cache; cache bytes " ..
    (cfg.attn and "grow by the attention KV only" or "constant in context"), why .. string.format(" %d → %d", nb[1], nb[40]))
  -- save → load: bit-exact, the config's Mamba-2 fields kept
  local dir = tmp .. "/c" .. k
  m:save_pretrained(dir)
  local m2 = hb.load_pretrained(dir)
  local saved = hb.io.read_json(dir .. "/config.json")
  local same_cfg = saved.n_groups == (cfg.n_groups or 1) and saved.head_dim == cfg.head_dim
    and saved.state_size == cfg.state_size and saved.num_heads == L1.H
    and saved.group_mapping == (cfg.group_mapping or "tiled") and saved.D_has_hdim == (cfg.D_has_hdim or false)
    and saved.architectures[1] == "Mamba2ForCausalLM"
  T.ok(same_cfg and maxabs(hb.no_grad(function() return m2:forward(ids) end) - lc) == 0,
    tag .. ": save_pretrained → load_pretrained is bit-exact and keeps the Mamba-2 fields")
end

-- ---- config rules ---------------------------------------------------------------------------------------
local function cfgerr(over, pat, desc)
  T.raises(function() hb.models.new(with(BASE, over)) end, pat, desc)
end
cfgerr({ head_dim = 5 }, "expand * hidden_size = 24 must be divisible by head_dim 5", "head_dim must divide expand·hidden_size")
cfgerr({ num_heads = 3 }, "num_heads * head_dim = 18 must equal expand * hidden_size = 24", "an inconsistent num_heads is refused")
cfgerr({ n_groups = 3 }, "num_heads 4 must be a multiple of n_groups 3", "n_groups must divide the heads")
cfgerr({ group_mapping = "x" }, "group_mapping must be 'tiled'", "group_mapping is 'tiled' or 'blocked'")
cfgerr({ dt_limit = { 0.5, 0.1 } }, "'dt_limit' must be a pair [lo, hi] of numbers with lo <= hi", "dt_limit must be ordered")
cfgerr({ A_init_range = { 0, 16 } }, "'A_init_range' must be a positive finite pair", "A_init_range must be positive")
cfgerr({ dt_min = 0.5, dt_max = 0.1 }, "dt_min and dt_max must satisfy 0 < dt_min <= dt_max", "dt_min <= dt_max")
cfgerr({ rmsnorm = 1 }, "'rmsnorm' must be true or false", "rmsnorm must be a boolean")
cfgerr({ hidden_act = "swish" }, "hidden_act = 'swish' is not implemented by hyblua", "hidden_act other than silu is refused naming the field")
cfgerr({ use_l2warp = 1 }, "'use_l2warp' must be true or false (got 1)", "use_l2warp must be a boolean")
cfgerr({ use_gate = true }, "'use_gate' is not a field of mamba2 configs", "another type's field is refused")
do
  local m = hb.models.new({ model_type = "mamba2", num_hidden_layers = 1, hidden_size = 64, vocab_size = 8 })
  local c = m.config
  T.ok(c.head_dim == 64 and c.state_size == 128 and c.expand == 2 and c.num_heads == 2 and c.n_groups == 1
    and c.conv_kernel == 4 and c.chunk_size == 256 and c.hidden_act == "silu" and c.norm_eps == 1e-5
    and c.architectures[1] == "Mamba2ForCausalLM", "fla's Mamba2Config defaults (num_heads derived)")
  T.ok(m.params["backbone.embeddings.weight"] and m.params["backbone.norm_f.weight"] and m.params["backbone.layers.0.norm.weight"]
    and m.params["backbone.layers.0.mixer.in_proj.weight"] and not m.params["backbone.layers.0.mlp.gate_proj.weight"],
    "fla's names: backbone.*, layers.<i>.norm and .mixer, norm_f; no MLP")
  local n = 0
  for _ in m:named_parameters() do n = n + 1 end
  T.is(n, 12, "12 tensors: embeddings, norm, 8 mixer tensors, norm_f, lm_head")
end

-- ---- initialisation (fla's _init_weights) -----------------------------------------------------------------
do
  local m = hb.models.new(with(BASE, { hidden_size = 256, head_dim = 2, num_hidden_layers = 4 }), { seed = 3 })
  local p = function(n) return m.params["backbone.layers.0.mixer." .. n] end
  local A, dt = p("A_log"), p("dt_bias"):softplus()
  T.ok(A:min():item() >= 0 and A:min():item() < 0.3 and A:max():item() <= math.log(16) and A:max():item() > 2.7,
    "A_log = log U(1, 16)", string.format("[%.3f, %.3f] over %d heads", A:min():item(), A:max():item(), A:numel()))
  T.ok(dt:min():item() >= 1e-4 * (1 - 1e-5) and dt:min():item() < 2e-3 and dt:max():item() <= 0.1 * (1 + 1e-5)
    and dt:max():item() > 0.05, "dt_bias = inverse softplus of dt ∈ [1e-3, 0.1] (floored at 1e-4)",
    string.format("[%.3g, %.3g]", dt:min():item(), dt:max():item()))
  T.ok(maxabs(p("D") - 1) == 0 and maxabs(p("norm.weight") - 1) == 0 and maxabs(p("conv1d.bias")) == 0,
    "D 1, norm.weight 1, conv1d.bias 0")
  local o = p("out_proj.weight")
  local bound = 1 / math.sqrt(256 * 2) / math.sqrt(4)
  T.ok(maxabs(o) <= bound and maxabs(o) > 0.9 * bound, "out_proj: kaiming-uniform U(±1/√fan_in) over √num_hidden_layers",
    string.format("max %.4g, bound %.4g", maxabs(o), bound))
  local sd = p("in_proj.weight"):double():square():mean():sqrt():item()
  T.ok(math.abs(sd - 0.02) < 0.004, "in_proj N(0, initializer_range)", sd)
  T.ok(m:no_weight_decay("backbone.layers.0.mixer.A_log") and m:no_weight_decay("backbone.layers.0.mixer.dt_bias")
    and m:no_weight_decay("backbone.layers.0.mixer.D") and not m:no_weight_decay("backbone.layers.0.mixer.in_proj.weight"),
    "A_log, dt_bias and D are excluded from weight decay")
  local mr = hb.models.new(with(BASE, { rescale_prenorm_residual = false }), { seed = 3 })
  local sdo = mr.params["backbone.layers.0.mixer.out_proj.weight"]:double():square():mean():sqrt():item()
  T.ok(math.abs(sdo - 0.02) < 0.006, "rescale_prenorm_residual false: out_proj N(0, initializer_range)", sdo)
end

-- ---- a hybrid Mamba-2 model trains and decodes ------------------------------------------------------------------
do
  local cfg = { model_type = "mamba2", hidden_size = 64, num_hidden_layers = 4, head_dim = 16, state_size = 16,
    vocab_size = 64, attn = hb.schedule.ratio(3, { num_heads = 4 }) }
  local m = hb.models.new(cfg, { seed = 5 })
  T.is(hb.schedule.describe(m.config), "LLLA", "hb.schedule.describe: Mamba-2 layers are L, attention at layer 3")
  T.ok(m.params["backbone.layers.3.attn_norm.weight"] and m.params["backbone.layers.3.mlp.gate_proj.weight"]
    and m.params["backbone.layers.3.mixer.q_proj.weight"] and not m.params["backbone.layers.3.norm.weight"],
    "the attention layer of a Mamba-2 hybrid has the standard block (attn_norm, mlp_norm, mlp)")
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
  T.ok(last < first - 0.5, "a 3:1 Mamba-2/attention hybrid trains (AdamW, 8 steps)", string.format("%.4f → %.4f", first, last))
  local out = m:generate(ids:narrow(2, 1, 13), 10)
  local full = hb.no_grad(function() return m:forward(hb.tensor({ { table.unpack(row, 1, 13) } }, "int64")) end)
  T.ok(#out == 2 and #out[1] == 10 and out[1][1] == full:select(2, 13):argmax(2):get(1),
    "generate decodes from the prompt's cache (first greedy token == argmax of the forward)")
end

os.execute("rm -rf '" .. tmp .. "'")
T.done()
