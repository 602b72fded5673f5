-- hyblua/mixers/delta_net.lua — DeltaNet (model_type "delta_net", fla's DeltaNet): the delta rule
-- S_t = S_{t−1} + β_t k_t (v_t − S_{t−1}ᵀ k_t)ᵀ with l2- (or sum-) normalised keys.
-- Maths and fla's layer: docs/mixers.md#deltanet. Kernels: hb.delta_rule / hb.delta_rule_step with
-- g = nil (kernels/delta_rule.c).
local hb = require "hyblua.binding"
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL = C.NULL
local lin, conv, heads, l2n = common.lin, common.conv, common.heads, common.l2n

local delta_net = {
  model_type = "delta_net",
  architecture = "DeltaNetForCausalLM",
  packed = true,
  -- use_output_norm is stored but ignored by fla (the output norm is always there)
  config = {
    attn_mode = "chunk", expand_k = 1.0, expand_v = 1.0, num_heads = 16, use_gate = false,
    use_short_conv = true, conv_size = 4, use_beta = true, allow_neg_eigval = false, qk_norm = "l2",
    qk_activation = "silu", use_output_norm = true, attn = NULL,
  },
}

local ACTS = { silu = true, relu = true, elu = true, identity = true }

function delta_net.validate(cfg)
  local d = cfg.hidden_size
  local H = C.need_int(cfg, "num_heads", 1)
  local kd = C.derived("key_dim (hidden_size * expand_k)", d * C.need_num(cfg, "expand_k", 0, C.MAX_SIZE), H)
  local vd = C.derived("value_dim (hidden_size * expand_v)", d * C.need_num(cfg, "expand_v", 0, C.MAX_SIZE), H)
  if kd % H ~= 0 or vd % H ~= 0 then C.cerr("key_dim %d / value_dim %d not divisible by num_heads %d", kd, vd, H) end
  if cfg.qk_norm ~= "l2" and cfg.qk_norm ~= "sum" then C.cerr("qk_norm = %s (expected 'l2' or 'sum')", C.show(cfg.qk_norm)) end
  if not ACTS[cfg.qk_activation] then
    C.cerr("qk_activation = %s (expected silu, relu, elu or identity)", C.show(cfg.qk_activation))
  end
  cfg._kd, cfg._vd = kd, vd
end

function delta_net.declare(add, d, i, c)
  local H = c.num_heads
  add("q_proj.weight", { c._kd, d })
  add("k_proj.weight", { c._kd, d })
  add("v_proj.weight", { c._vd, d })
  if c.use_beta then add("b_proj.weight", { H, d }) end
  if c.use_short_conv then
    common.declare_conv(add, "q_conv1d.weight", c._kd, c)
    common.declare_conv(add, "k_conv1d.weight", c._kd, c)
    common.declare_conv(add, "v_conv1d.weight", c._vd, c)
  end
  if c.use_gate then add("g_proj.weight", { c._vd, d }) end
  add("o_norm.weight", { c._vd // H }, "ones")
  add("o_proj.weight", { d, c._vd })
  return { H = H, HV = H, dk = c._kd // H, dv = c._vd // H }
end

function delta_net.forward(ctx, x)
  local c, L = ctx.m.config, ctx.layer
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
  return common.delta_output(ctx, common.delta_core(ctx, q, k, v, beta, nil, L), x, L)
end

-- cache.state [B, H, dk, dv]; conv tails of q, k (key_dim each) and v (value_dim)
function delta_net.state_bytes(L, c)
  return L.H * L.dk * L.dv * 4, common.conv_bytes(c, 2 * c._kd + c._vd)
end

-- paper formula: 8·d²/H
function delta_net.flops(L, c) return 8 * c.hidden_size * c.hidden_size / L.H end

registry.register("delta_net", delta_net)
return delta_net
