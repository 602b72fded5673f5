-- hyblua/mixers/gated_deltaproduct.lua — Gated DeltaProduct (model_type "gated_deltaproduct", fla's
-- GatedDeltaProduct): per token, one decay S ← e^{g_t} S (use_forget_gate) and then num_householder steps
-- of the delta rule S ← S + β_{t,i} k_{t,i} (v_{t,i} − Sᵀ k_{t,i})ᵀ, each with its own key, value and β;
-- the output is read after the last step. Maths and fla's layer: docs/mixers.md#gated-deltaproduct.
-- Kernels: hb.deltaproduct / hb.deltaproduct_step (kernels/deltaproduct.c).
local hb = require "hyblua.binding"
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL = C.NULL
local lin, conv, heads, flat, l2n, W = common.lin, common.conv, common.heads, common.flat, common.l2n, common.W

-- fla's GatedDeltaProductConfig defaults (they differ from the layer's: no forget gate, no negative
-- eigenvalues, one Householder step)
local gated_deltaproduct = {
  model_type = "gated_deltaproduct",
  architecture = "GatedDeltaProductForCausalLM",
  letter = "L",
  packed = true,                            -- handles ctx.cu_seqlens (packed documents)
  config = {
    attn_mode = "chunk", head_dim = 256, num_heads = 6, expand_v = 2.0, use_output_gate = true,
    use_short_conv = true, conv_size = 4, num_hidden_layers = 21, use_forget_gate = false,
    allow_neg_eigval = false, num_householder = 1, attn = NULL,
  },
}

local function need_bool(cfg, k)
  if type(cfg[k]) ~= "boolean" then C.cerr("'%s' must be true or false (got %s)", k, C.show(cfg[k])) end
end

-- heads H of width head_dim (keys) and head_dim·expand_v (values, integral within 1e-5 as fla checks);
-- fla's config has no num_v_heads, so value heads = q/k heads; num_householder ≥ 1
function gated_deltaproduct.validate(cfg)
  C.need_int(cfg, "num_heads", 1)
  local hd = C.need_int(cfg, "head_dim", 1)
  C.need_int(cfg, "num_householder", 1)
  local dv = hd * C.need_num(cfg, "expand_v", 0, C.MAX_SIZE)
  if math.abs(dv - math.floor(dv + 0.5)) > 1e-5 * math.max(1, dv) then
    C.cerr("head_dim * expand_v = %s is not an integer", tostring(dv))
  end
  if cfg.attn_mode ~= "chunk" and cfg.attn_mode ~= "fused_recurrent" then
    C.cerr("attn_mode = %s (expected 'chunk' or 'fused_recurrent')", C.show(cfg.attn_mode))
  end
  for _, k in ipairs { "use_output_gate", "use_short_conv", "use_forget_gate", "allow_neg_eigval" } do
    need_bool(cfg, k)
  end
  cfg._dv = C.derived("head_dim * expand_v", math.floor(dv + 0.5), 1)
end

-- fla's layer: k/v/b projections carry num_householder blocks ((n h d) order); A_log = log U(0, 16) and
-- dt_bias (models.lua's "A_log" and "dt_bias" inits, no weight decay) only with the forget gate
function gated_deltaproduct.declare(add, d, i, c)
  local H, NH, dk, dv = c.num_heads, c.num_householder, c.head_dim, c._dv
  add("q_proj.weight", { H * dk, d })
  add("k_proj.weight", { NH * H * dk, d })
  add("v_proj.weight", { NH * H * dv, d })
  add("b_proj.weight", { NH * H, d })
  if c.use_forget_gate then
    add("a_proj.weight", { H, d })
    add("A_log", { H }, "A_log", true)
    add("dt_bias", { H }, "dt_bias", true)
  end
  if c.use_short_conv then
    common.declare_conv(add, "q_conv1d.weight", H * dk, c)
    common.declare_conv(add, "k_conv1d.weight", NH * H * dk, c)
    common.declare_conv(add, "v_conv1d.weight", NH * H * dv, c)
  end
  if c.use_output_gate then add("g_proj.weight", { H * dv, d }) end
  add("o_norm.weight", { dv }, "ones")
  add("o_proj.weight", { d, H * dv })
  return { H = H, HV = H, NH = NH, dk = dk, dv = dv }
end

-- [B, T, NH·X·D] → [B, T, NH, X, D]: fla's '... t (n h d) -> ... (t n) h d' is this view
local function steps(x, NH, X, D)
  local s = x:shape()
  return x:view(s[1], s[2], NH, X, D)
end

function gated_deltaproduct.forward(ctx, x)
  local c, L = ctx.m.config, ctx.layer
  local q, k, v = lin(ctx, x, "q_proj"), lin(ctx, x, "k_proj"), lin(ctx, x, "v_proj")
  if c.use_short_conv then
    q = conv(ctx, q, "q_conv1d", "silu"); k = conv(ctx, k, "k_conv1d", "silu"); v = conv(ctx, v, "v_conv1d", "silu")
  else
    q, k, v = q:silu(), k:silu(), v:silu()
  end
  -- q and every Householder key l2-normalised (fla: use_qk_l2norm_in_kernel)
  q, k, v = l2n(heads(q, L.H, L.dk)), l2n(steps(k, L.NH, L.H, L.dk)), steps(v, L.NH, L.HV, L.dv)
  local beta = lin(ctx, x, "b_proj"):sigmoid()
  if c.allow_neg_eigval then beta = beta * 2 end
  local s = beta:shape()
  beta = beta:view(s[1], s[2], L.NH, L.HV)
  local g = nil
  if c.use_forget_gate then
    g = (lin(ctx, x, "a_proj") + W(ctx, "dt_bias")):softplus() * W(ctx, "A_log"):exp():neg()
  end
  local scale = L.dk ^ -0.5
  local o = common.recur(ctx,
    function(ws, cu)
      return hb.deltaproduct { q = q, k = k, v = v, beta = beta, g = g, scale = scale, mode = ctx.mode, state = ws,
        cu_seqlens = cu }
    end,
    function(st)
      return hb.deltaproduct_step { state = st, q = q:select(2, 1), k = k:select(2, 1), v = v:select(2, 1),
        beta = beta:select(2, 1), g = g and g:select(2, 1) or nil, scale = scale }:unsqueeze(2)
    end)
  -- fla's FusedRMSNormGated (swish) with the output gate, else a plain RMSNorm
  local w = W(ctx, "o_norm.weight")
  if c.use_output_gate then
    o = common.normgate(o, heads(lin(ctx, x, "g_proj"), L.HV, L.dv), w, c.norm_eps)
  else
    o = hb.rmsnorm(o, w, c.norm_eps)
  end
  return lin(ctx, flat(o), "o_proj")
end

-- cache.state [B, H, dk, dv]; conv tails of q (H·dk), k (NH·H·dk) and v (NH·H·dv)
function gated_deltaproduct.state_bytes(L, c)
  return L.HV * L.dk * L.dv * 4, common.conv_bytes(c, (1 + L.NH) * L.H * L.dk + L.NH * L.HV * L.dv)
end

-- per value head: the decay and read-out of the delta-rule row (8·K·V for one step) plus 4·K·V (Sᵀk and
-- the rank-1 update) for every further Householder step: (4 + 4·NH)·K·V
function gated_deltaproduct.flops(L) return (4 + 4 * L.NH) * L.HV * L.dk * L.dv end

registry.register("gated_deltaproduct", gated_deltaproduct)
return gated_deltaproduct
