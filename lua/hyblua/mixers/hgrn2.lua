-- hyblua/mixers/hgrn2.lua — HGRN-2 (model_type "hgrn2", fla's HGRN2Attention): GLA's recurrence with
-- keys k = 1 − e^{g} tied to the forget gate, per-head state width E = expand_ratio, lower bounds as HGRN.
-- Maths and fla's layer: docs/mixers.md#hgrn-2. Kernels: hb.gla / hb.gla_step (kernels/gla.c).
local hb = require "hyblua.binding"
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL = C.NULL
local lin, conv, recur, heads, W = common.lin, common.conv, common.recur, common.heads, common.W

local hgrn2 = {
  model_type = "hgrn2",
  architecture = "HGRN2ForCausalLM",
  packed = true,
  config = {
    attn_mode = "chunk", expand_ratio = 128, num_heads = NULL, use_short_conv = false, conv_size = 4,
    use_lower_bound = true, elementwise_affine = true, attn = NULL,
  },
  declare_model = common.declare_lower_bounds,
  prepare = common.lower_bounds,
}

-- expand_ratio wins over num_heads (fla's layer recomputes H = d // expand_ratio); one of them is needed
function hgrn2.validate(cfg)
  local d = cfg.hidden_size
  if C.is_null(cfg.expand_ratio) then
    if C.is_null(cfg.num_heads) then C.cerr("hgrn2: expand_ratio and num_heads cannot both be null") end
    cfg.expand_ratio = d // C.need_int(cfg, "num_heads", 1)
  end
  local E = C.need_int(cfg, "expand_ratio", 1)
  if d % E ~= 0 then C.cerr("hgrn2: hidden_size %d is not divisible by expand_ratio %d", d, E) end
  if C.is_null(cfg.num_heads) then cfg.num_heads = d // E end
  cfg._H = d // E
end

function hgrn2.declare(add, d, i, c)
  local E, H = c.expand_ratio, c._H
  add("q_proj.weight", { H * E, d })
  add("f_proj.weight", { H * E, d })
  add("i_proj.weight", { d, d })
  if c.use_short_conv then
    common.declare_conv(add, "q_conv1d.weight", H * E, c)
    common.declare_conv(add, "f_conv1d.weight", H * E, c)
    common.declare_conv(add, "i_conv1d.weight", d, c)
  end
  if c.elementwise_affine ~= false then add("g_norm.weight", { d }, "ones") end
  add("o_proj.weight", { d, d })
  return { H = H, E = E, dv = d // H }
end

function hgrn2.forward(ctx, x)
  local c, L = ctx.m.config, ctx.layer
  local q, f, i = lin(ctx, x, "q_proj"), lin(ctx, x, "f_proj"), lin(ctx, x, "i_proj")
  if c.use_short_conv then
    q = conv(ctx, q, "q_conv1d", nil); f = conv(ctx, f, "f_conv1d", nil); i = conv(ctx, i, "i_conv1d", nil)
  end
  q = q:silu()
  local g = f:logsigmoid()
  local lb = common.lower_bound(ctx)
  if lb then g = common.apply_lb(g, lb) end
  local k = 1 - g:exp()
  q, k, g = heads(q, L.H, L.E), heads(k, L.H, L.E), heads(g, L.H, L.E)
  local v = heads(i, L.H, L.dv)
  local scale = L.E ^ -0.5
  local o = recur(ctx,
    function(ws, cu)
      return hb.gla { q = q, k = k, v = v, g = g, scale = scale, mode = ctx.mode, state = ws, cu_seqlens = cu }
    end,
    function(st)
      return hb.gla_step { state = st, q = q:select(2, 1), k = k:select(2, 1), v = v:select(2, 1), g = g:select(2, 1),
        scale = scale }:unsqueeze(2)
    end)
  o = common.flat(o)
  o = hb.rmsnorm(o, c.elementwise_affine ~= false and W(ctx, "g_norm.weight") or nil, 1e-5)
  return lin(ctx, o, "o_proj")
end

-- cache.state [B, H, E, d/H]; conv tails of q and f (H·E channels each) and i (d)
function hgrn2.state_bytes(L, c)
  return L.H * L.E * L.dv * 4, common.conv_bytes(c, 2 * L.H * L.E + c.hidden_size)
end

-- paper formula: 7·d²/H
function hgrn2.flops(L, c) return 7 * c.hidden_size * c.hidden_size / L.H end

registry.register("hgrn2", hgrn2)
return hgrn2
