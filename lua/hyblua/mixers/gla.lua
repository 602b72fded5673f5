-- hyblua/mixers/gla.lua — gated linear attention (model_type "gla", fla's GatedLinearAttention):
-- S_t = diag(e^{g_t}) S_{t−1} + k_t v_tᵀ with a per-key-channel decay from a rank-16 projection.
-- Maths and fla's layer: docs/mixers.md#gla. Kernels: hb.gla / hb.gla_step (kernels/gla.c).
local hb = require "hyblua.binding"
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL = C.NULL
local lin, conv, recur, heads, W = common.lin, common.conv, common.recur, common.heads, common.W

local gla = {
  model_type = "gla",
  architecture = "GLAForCausalLM",
  packed = true,
  -- use_gk and use_gv are stored but unused by fla's layer
  config = {
    expand_k = 0.5, expand_v = 1.0, num_heads = 4, num_kv_heads = NULL, feature_map = NULL,
    attn_mode = "chunk", use_short_conv = false, conv_size = 4, use_output_gate = true, clamp_min = NULL,
    elementwise_affine = true, use_gk = true, use_gv = false, attn = NULL,
  },
  unsupported = { feature_map = NULL, elementwise_affine = true },
}

-- heads, kv heads and widths (common.check_kv_dims); clamp_min is a number or null
function gla.validate(cfg)
  common.check_kv_dims(cfg)
  if not C.is_null(cfg.clamp_min) and type(cfg.clamp_min) ~= "number" then
    C.cerr("clamp_min must be a number or null (got %s)", C.show(cfg.clamp_min))
  end
end

function gla.declare(add, d, i, c)
  local H, G = c.num_heads, c.num_heads // c._kv
  local kdg, vdg = c._kd // G, c._vd // G
  add("q_proj.weight", { c._kd, d })
  add("k_proj.weight", { kdg, d })
  add("v_proj.weight", { vdg, d })
  if c.use_output_gate then add("g_proj.weight", { c._vd, d }) end
  if c.use_short_conv then
    common.declare_conv(add, "q_conv1d.weight", c._kd, c)
    common.declare_conv(add, "k_conv1d.weight", kdg, c)
    common.declare_conv(add, "v_conv1d.weight", vdg, c)
  end
  add("gk_proj.0.weight", { 16, d })
  add("gk_proj.1.weight", { kdg, 16 })
  add("gk_proj.1.bias", { kdg }, "zeros")
  local nn = common.output_norm_name(c)
  add(nn .. ".weight", { c._vd // H }, "ones")
  add("o_proj.weight", { d, c._vd })
  return { H = H, G = G, dk = c._kd // H, dv = c._vd // H, norm = nn }
end

function gla.forward(ctx, x)
  local c, L = ctx.m.config, ctx.layer
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
  local o = recur(ctx,
    function(ws, cu)
      return hb.gla { q = q, k = k, v = v, g = gk, scale = scale, mode = ctx.mode, state = ws, cu_seqlens = cu }
    end,
    function(st)
      return hb.gla_step { state = st, q = q:select(2, 1), k = k:select(2, 1), v = v:select(2, 1), g = gk:select(2, 1),
        scale = scale }:unsqueeze(2)
    end)
  return common.gated_output(ctx, o, x, L)
end

-- cache.state [B, H, dk, dv] (after the GQA repeat); conv tails of q (key_dim), k and v (per kv group)
function gla.state_bytes(L, c)
  return L.H * L.dk * L.dv * 4, common.conv_bytes(c, c._kd + c._kd // L.G + c._vd // L.G)
end

-- paper formula: 7·d²/H
function gla.flops(L, c) return 7 * c.hidden_size * c.hidden_size / L.H end

registry.register("gla", gla)
return gla
