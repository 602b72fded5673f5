-- hyblua/mixers/retnet.lua — RetNet's multi-scale retention (model_type "retnet", fla's
-- MultiScaleRetention): S_t = γ_h S_{t−1} + k_t v_tᵀ with a fixed decay per head, RoPE on q and k.
-- Maths and fla's layer: docs/mixers.md#retnet. Kernels: hb.retention / hb.retention_step
-- (kernels/retention.c).
local hb = require "hyblua.binding"
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL = C.NULL
local lin, recur, heads = common.lin, common.recur, common.heads

local retnet = {
  model_type = "retnet",
  architecture = "RetNetForCausalLM",
  packed = true,
  -- use_short_conv and conv_size are stored but never reach fla's RetNet layer
  config = {
    attn_mode = "chunk", expand_k = 1.0, expand_v = 2.0, num_heads = 8, num_kv_heads = NULL,
    feature_map = NULL, use_output_gate = true, hidden_ratio = 2, elementwise_affine = true,
    use_short_conv = false, conv_size = 4, attn = NULL,
  },
  unsupported = { feature_map = NULL, elementwise_affine = true },
}

-- heads, kv heads and widths as GLA's; RetNet's RoPE kernel needs head key dims of at most 256
function retnet.validate(cfg)
  common.check_kv_dims(cfg)
  local H = cfg.num_heads
  if cfg._kd // H > 256 then C.cerr("retnet head key dim %d exceeds 256", cfg._kd // H) end
end

function retnet.declare(add, d, i, c)
  local H, G = c.num_heads, c.num_heads // c._kv
  add("q_proj.weight", { c._kd, d })
  add("k_proj.weight", { c._kd // G, d })
  add("v_proj.weight", { c._vd // G, d })
  if c.use_output_gate then add("g_proj.weight", { c._vd, d }) end
  local nn = common.output_norm_name(c)
  add(nn .. ".weight", { c._vd // H }, "ones")
  add("o_proj.weight", { d, c._vd })
  return { H = H, G = G, dk = c._kd // H, dv = c._vd // H, norm = nn }
end

function retnet.forward(ctx, x)
  local L = ctx.layer
  local Hkv = L.H // L.G
  local q = heads(lin(ctx, x, "q_proj"), L.H, L.dk)
  local k = heads(lin(ctx, x, "k_proj"), Hkv, L.dk)
  local v = heads(lin(ctx, x, "v_proj"), Hkv, L.dv)
  local pos0 = ctx.cache and (ctx.cache.pos or 0) or 0
  q = hb.rope(q, 10000.0, pos0, ctx.cu_seqlens) -- packed: positions restart at every document
  k = hb.rope(k, 10000.0, pos0, ctx.cu_seqlens)
  if L.G > 1 then k = k:repeat_interleave(L.G, 3); v = v:repeat_interleave(L.G, 3) end
  if not L.lg then
    local t = {}
    for h = 0, L.H - 1 do t[h + 1] = math.log(1 - 2 ^ (-5 - h)) end
    L.lg = hb.tensor(t, "float64")
  end
  local scale = L.dk ^ -0.5
  local o = recur(ctx,
    function(ws, cu)
      return hb.retention { q = q, k = k, v = v, decay = L.lg, scale = scale, mode = ctx.mode, state = ws, cu_seqlens = cu }
    end,
    function(st)
      return hb.retention_step { state = st, q = q:select(2, 1), k = k:select(2, 1), v = v:select(2, 1), decay = L.lg,
        scale = scale }:unsqueeze(2)
    end)
  if ctx.cache then ctx.cache.pos = pos0 + x:size(2) end
  return common.gated_output(ctx, o, x, L)
end

-- cache.state [B, H, dk, dv] (after the GQA repeat); no convolution
function retnet.state_bytes(L) return L.H * L.dk * L.dv * 4, 0 end

-- paper formula: 5·d²/H
function retnet.flops(L, c) return 5 * c.hidden_size * c.hidden_size / L.H end

registry.register("retnet", retnet)
return retnet
