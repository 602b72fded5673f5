-- hyblua/mixers/hgrn.lua — HGRN (model_type "hgrn", fla's HGRNAttention): an element-wise gated linear
-- recurrence h_t = e^{f_t} ⊙ h_{t−1} + i_t whose forget gate is raised to a per-layer lower bound.
-- Maths and fla's layer: docs/mixers.md#hgrn. Kernels: hb.hgrn / hb.hgrn_step (kernels/hgrn.c).
local hb = require "hyblua.binding"
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL = C.NULL
local lin, conv, recur, W = common.lin, common.conv, common.recur, common.W

local hgrn = {
  model_type = "hgrn",
  architecture = "HGRNForCausalLM",
  packed = true,
  config = {
    attn_mode = "fused_recurrent", expand_ratio = 1, use_short_conv = false, conv_size = 4,
    use_lower_bound = true, elementwise_affine = true, attn = NULL,
  },
  declare_model = common.declare_lower_bounds,
  prepare = common.lower_bounds,
}

-- input_dim E = hidden_size · expand_ratio; the lower bound has width hidden_size, so E = d with it
function hgrn.validate(cfg)
  local d = cfg.hidden_size
  local E = C.derived("hidden_size * expand_ratio", d * C.need_num(cfg, "expand_ratio", 0, C.MAX_SIZE), 1)
  if cfg.use_lower_bound and E ~= d then
    C.cerr("hgrn: expand_ratio must be 1 when use_lower_bound is true (got %s)", tostring(cfg.expand_ratio))
  end
  cfg._E = E
end

function hgrn.declare(add, d, i, c)
  local E = c._E
  add("i_proj.weight", { E, d })
  add("f_proj.weight", { E, d })
  add("g_proj.weight", { E, d })
  if c.use_short_conv then common.declare_conv(add, "i_conv1d.weight", E, c); common.declare_conv(add, "f_conv1d.weight", E, c) end
  if c.elementwise_affine ~= false then add("g_norm.weight", { E }, "ones") end
  add("o_proj.weight", { d, E })
  return { E = E }
end

function hgrn.forward(ctx, x)
  local c = ctx.m.config
  local i, f = lin(ctx, x, "i_proj"), lin(ctx, x, "f_proj")
  if c.use_short_conv then i = conv(ctx, i, "i_conv1d", nil); f = conv(ctx, f, "f_conv1d", nil) end
  f = f:logsigmoid()
  local lb = common.lower_bound(ctx)
  if lb then f = common.apply_lb(f, lb) end
  i = i:silu() * (1 - f:exp())
  local o = recur(ctx, function(ws, cu) return hb.hgrn { x = i, g = f, mode = ctx.mode, state = ws, cu_seqlens = cu } end,
    function(st) return hb.hgrn_step { state = st, x = i:select(2, 1), g = f:select(2, 1) }:unsqueeze(2) end)
  local gw = c.elementwise_affine ~= false and W(ctx, "g_norm.weight") or nil
  o = common.normgate(o, lin(ctx, x, "g_proj"), gw, c.norm_eps)
  return lin(ctx, o, "o_proj")
end

-- cache.state [B, E]; conv tails of i_conv1d and f_conv1d (E channels each)
function hgrn.state_bytes(L, c) return L.E * 4, common.conv_bytes(c, 2 * L.E) end

-- paper formula: 5·d
function hgrn.flops(_, c) return 5 * c.hidden_size end

registry.register("hgrn", hgrn)
return hgrn
