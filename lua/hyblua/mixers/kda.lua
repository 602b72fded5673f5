-- hyblua/mixers/kda.lua — Kimi Delta Attention (model_type "kda", fla's KimiDeltaAttention): the gated
-- delta rule with a per-key-channel decay, S' = diag(e^{g_t}) S_{t−1}; S_t = S' + β_t k_t (v_t − S'ᵀ k_t)ᵀ,
-- g_t ∈ R^K from a low-rank gate projection, more value heads than q/k heads allowed (GVA), a sigmoid-
-- gated output norm. Maths and fla's layer: docs/mixers.md#kda. Kernels: hb.kda / hb.kda_step
-- (kernels/kda.c).
local hb = require "hyblua.binding"
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL = C.NULL
local lin, conv, heads, flat, l2n, W = common.lin, common.conv, common.heads, common.flat, common.l2n, common.W

local kda = {
  model_type = "kda",
  architecture = "KDAForCausalLM",
  letter = "L",
  config = {
    attn_mode = "chunk", head_dim = 128, num_heads = 16, num_v_heads = NULL, expand_v = 1.0,
    use_short_conv = true, conv_size = 4, allow_neg_eigval = false, safe_gate = false, lower_bound = NULL,
    attn = NULL,
  },
}

local function need_bool(cfg, k)
  if type(cfg[k]) ~= "boolean" then C.cerr("'%s' must be true or false (got %s)", k, C.show(cfg[k])) end
end

-- q/k heads H of width head_dim (K), value heads HV (a multiple of H) of width int(head_dim·expand_v)
-- (integral within 1e-5, as fla checks); the gate: lower_bound null (−e^{A_log}·softplus) or a number
-- < 0 (lower_bound·σ(...)); safe_gate needs lower_bound in [−5, 0) (fla's config and chunk_kda)
function kda.validate(cfg)
  local H = C.need_int(cfg, "num_heads", 1)
  local hd = C.need_int(cfg, "head_dim", 1)
  local HV = C.is_null(cfg.num_v_heads) and H or C.need_int(cfg, "num_v_heads", 1)
  if HV % H ~= 0 then C.cerr("num_v_heads %d must be a multiple of num_heads %d", HV, H) end
  local dv = hd * C.need_num(cfg, "expand_v", 0, C.MAX_SIZE)
  if math.abs(dv - math.floor(dv + 0.5)) > 1e-5 * math.max(1, dv) then
    C.cerr("head_dim * expand_v = %s is not an integer", tostring(dv))
  end
  if cfg.attn_mode ~= "chunk" and cfg.attn_mode ~= "fused_recurrent" then
    C.cerr("attn_mode = %s (expected 'chunk' or 'fused_recurrent')", C.show(cfg.attn_mode))
  end
  for _, k in ipairs { "use_short_conv", "allow_neg_eigval", "safe_gate" } do need_bool(cfg, k) end
  local lb = cfg.lower_bound
  if not C.is_null(lb) and (type(lb) ~= "number" or lb ~= lb or lb >= 0 or lb == -math.huge) then
    C.cerr("lower_bound must be null or a finite negative number (a log-space bound on the decay), got %s", C.show(lb))
  end
  if cfg.safe_gate then
    if C.is_null(lb) then C.cerr("safe_gate = true needs lower_bound (fla recommends -5)") end
    if lb < -5 then C.cerr("safe_gate = true needs lower_bound in [-5, 0) (got %s)", tostring(lb)) end
  end
  cfg._HV, cfg._dv = HV, C.derived("head_dim * expand_v", math.floor(dv + 0.5), 1)
end

-- fla's _init_weights for KDA: A_log = log U(1, 16) (zeros with safe_gate), dt_bias = inverse softplus of
-- a log-uniform dt in [1e-3, 0.1] (models.lua's "dt_bias"); both without weight decay
local function A_log_init(shape) return (hb.rand(shape) * 15 + 1):log() end

function kda.declare(add, d, i, c)
  local H, HV, dk, dv = c.num_heads, c._HV, c.head_dim, c._dv
  add("q_proj.weight", { H * dk, d })
  add("k_proj.weight", { H * dk, d })
  add("v_proj.weight", { HV * dv, d })
  if c.use_short_conv then
    common.declare_conv(add, "q_conv1d.weight", H * dk, c)
    common.declare_conv(add, "k_conv1d.weight", H * dk, c)
    common.declare_conv(add, "v_conv1d.weight", HV * dv, c)
  end
  add("f_proj.0.weight", { dv, d })
  add("f_proj.1.weight", { HV * dk, dv })
  add("b_proj.weight", { HV, d })
  add("A_log", { HV }, c.safe_gate and "zeros" or A_log_init, true)
  add("dt_bias", { HV * dk }, "dt_bias", true)
  add("g_proj.0.weight", { dv, d })
  add("g_proj.1.weight", { HV * dv, dv })
  add("g_proj.1.bias", { HV * dv }, "zeros")
  add("o_norm.weight", { dv }, "ones")
  add("o_proj.weight", { d, HV * dv })
  return { H = H, HV = HV, dk = dk, dv = dv }
end

-- the log decay g [B, T, HV, K] from the gate projection f [B, T, HV, K]:
--   −e^{A_log_j} · softplus(f + dt_bias_j)            (lower_bound null)
--   lower_bound · σ(e^{A_log_j} · (f + dt_bias_j))      (lower_bound set; safe_gate or not)
local function gate_of(f, A_log, dt_bias, lower_bound, HV, K)
  local A = A_log:exp():view(HV, 1)
  local z = f + dt_bias:view(HV, K)
  if C.is_null(lower_bound) then return z:softplus() * A:neg() end
  return (z * A):sigmoid() * lower_bound
end

function kda.forward(ctx, x)
  local c, L = ctx.m.config, ctx.layer
  local q, k, v = lin(ctx, x, "q_proj"), lin(ctx, x, "k_proj"), lin(ctx, x, "v_proj")
  if c.use_short_conv then
    q = conv(ctx, q, "q_conv1d", "silu"); k = conv(ctx, k, "k_conv1d", "silu"); v = conv(ctx, v, "v_conv1d", "silu")
  else
    q, k, v = q:silu(), k:silu(), v:silu()
  end
  q, k, v = l2n(heads(q, L.H, L.dk)), l2n(heads(k, L.H, L.dk)), heads(v, L.HV, L.dv)
  local f = heads(lin(ctx, lin(ctx, x, "f_proj.0"), "f_proj.1"), L.HV, L.dk)
  local g = gate_of(f, W(ctx, "A_log"), W(ctx, "dt_bias"), c.lower_bound, L.HV, L.dk)
  local beta = lin(ctx, x, "b_proj"):sigmoid()
  if c.allow_neg_eigval then beta = beta * 2 end
  local scale = L.dk ^ -0.5
  local o = common.recur(ctx,
    function(ws) return hb.kda { q = q, k = k, v = v, g = g, beta = beta, scale = scale, mode = ctx.mode, state = ws } end,
    function(st)
      return hb.kda_step { state = st, q = q:select(2, 1), k = k:select(2, 1), v = v:select(2, 1), g = g:select(2, 1),
        beta = beta:select(2, 1), scale = scale }:unsqueeze(2)
    end)
  -- fla's FusedRMSNormGated(activation = "sigmoid"): rms per value head · σ(gate)
  local gate = heads(lin(ctx, lin(ctx, x, "g_proj.0"), "g_proj.1", true), L.HV, L.dv)
  o = hb.rmsnorm(o, W(ctx, "o_norm.weight"), c.norm_eps) * gate:sigmoid()
  return lin(ctx, flat(o), "o_proj")
end

-- cache.state [B, HV, dk, dv]; conv tails of q, k (H·dk each) and v (HV·dv)
function kda.state_bytes(L, c)
  return L.HV * L.dk * L.dv * 4, common.conv_bytes(c, 2 * L.H * L.dk + L.HV * L.dv)
end

-- the delta-rule row of the paper's table, per value head (8·K·V: decay, Sᵀk, the rank-1 update, the
-- read-out); with K = V = d/H and HV = H it is the paper's 8·d²/H
function kda.flops(L) return 8 * L.HV * L.dk * L.dv end

registry.register("kda", kda)
return kda
