-- hyblua/mixers/gated_deltanet.lua — Gated DeltaNet (model_type "gated_deltanet", fla's GatedDeltaNet):
-- the delta rule after a per-head decay, S' = e^{α_t} S_{t−1}; S_t = S' + β_t k_t (v_t − S'ᵀ k_t)ᵀ, with
-- more value heads than q/k heads allowed (GVA). Maths and fla's layer: docs/mixers.md#gated-deltanet.
-- Kernels: hb.delta_rule / hb.delta_rule_step (kernels/delta_rule.c).
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL = C.NULL
local lin, conv, heads, l2n, W = common.lin, common.conv, common.heads, common.l2n, common.W

local gated_deltanet = {
  model_type = "gated_deltanet",
  architecture = "GatedDeltaNetForCausalLM",
  packed = true,
  config = {
    attn_mode = "chunk", head_dim = 256, num_heads = 6, num_v_heads = NULL, expand_v = 2.0,
    use_gate = true, use_short_conv = true, conv_size = 4, allow_neg_eigval = false, num_hidden_layers = 21,
    attn = NULL,
  },
}

-- q/k heads H of width head_dim, value heads HV (a multiple of H) of width head_dim·expand_v (integral)
function gated_deltanet.validate(cfg)
  local H = C.need_int(cfg, "num_heads", 1)
  local hd = C.need_int(cfg, "head_dim", 1)
  local HV = C.is_null(cfg.num_v_heads) and H or C.need_int(cfg, "num_v_heads", 1)
  if HV > H and HV % H ~= 0 then C.cerr("num_v_heads %d must be a multiple of num_heads %d", HV, H) end
  if HV < H then C.cerr("num_v_heads %d must be >= num_heads %d", HV, H) end
  local dv = hd * C.need_num(cfg, "expand_v", 0, C.MAX_SIZE)
  if math.abs(dv - math.floor(dv + 0.5)) > 1e-5 * math.max(1, dv) then
    C.cerr("head_dim * expand_v = %s is not an integer", tostring(dv))
  end
  cfg._HV, cfg._dv = HV, C.derived("head_dim * expand_v", math.floor(dv + 0.5), 1)
end

function gated_deltanet.declare(add, d, i, c)
  local H, HV, dk, dv = c.num_heads, c._HV, c.head_dim, c._dv
  add("q_proj.weight", { H * dk, d })
  add("k_proj.weight", { H * dk, d })
  add("v_proj.weight", { HV * dv, d })
  add("a_proj.weight", { HV, d })
  add("b_proj.weight", { HV, d })
  add("A_log", { HV }, "A_log", true)
  add("dt_bias", { HV }, "dt_bias", true)
  if c.use_short_conv then
    common.declare_conv(add, "q_conv1d.weight", H * dk, c)
    common.declare_conv(add, "k_conv1d.weight", H * dk, c)
    common.declare_conv(add, "v_conv1d.weight", HV * dv, c)
  end
  if c.use_gate then add("g_proj.weight", { HV * dv, d }) end
  add("o_norm.weight", { dv }, "ones")
  add("o_proj.weight", { d, HV * dv })
  return { H = H, HV = HV, dk = dk, dv = dv }
end

function gated_deltanet.forward(ctx, x)
  local c, L = ctx.m.config, ctx.layer
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
  return common.delta_output(ctx, common.delta_core(ctx, q, k, v, beta, g, L), x, L)
end

-- cache.state [B, HV, dk, dv]; conv tails of q, k (H·dk each) and v (HV·dv)
function gated_deltanet.state_bytes(L, c)
  return L.HV * L.dk * L.dv * 4, common.conv_bytes(c, 2 * L.H * L.dk + L.HV * L.dv)
end

-- paper formula: 8·d²/H (H = q/k heads)
function gated_deltanet.flops(L, c) return 8 * c.hidden_size * c.hidden_size / L.H end

registry.register("gated_deltanet", gated_deltanet)
return gated_deltanet
