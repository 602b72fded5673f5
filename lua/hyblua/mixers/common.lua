-- hyblua/mixers/common.lua — what the mixer files share. Every mixer is written once over a small
-- context so that the same code runs the full-sequence forward (chunk or recurrent kernels), the prefill
-- of a decode cache and the one-token decode step:
--   conv(ctx, x, name, act)  short convolution; with a cache it prefills/steps the conv state
--   recur(ctx, fwd, step)    the recurrence; with a cache it returns/steps the recurrent state
-- ctx (built by Model:hidden): m (the model), i (0-based layer), layer (this layer's description: its
-- def, opts and the sizes its declare returned), prefix ("model.layers.<i>.attn."), W (name → parameter,
-- all of the model's), cache (this layer's decode cache, or nil), mode ("chunk" | "recurrent"),
-- prepared (what the model type's def.prepare returned for this forward).
-- Maths: docs/mixers.md. Index convention: Lua dims are 1-based (hb binding).
local hb = require "hyblua.binding"
local C = require "hyblua.config_fla"
local user_error = require("hyblua.errors").user_error

local M = {}

-- ---- parameters -------------------------------------------------------------------------------------
-- the layer's parameter `name` (under its prefix)
function M.W(ctx, name)
  local t = ctx.W[ctx.prefix .. name]
  if not t then error(string.format("missing parameter %s%s", ctx.prefix, name), 0) end
  return t
end

-- a short convolution's weight [D, 1, conv_size] (docs/mixers.md#short-convolution), normal init
function M.declare_conv(add, name, D, cfg)
  add(name, { D, 1, cfg.conv_size })
end

-- bytes per sequence of the short-convolution tails a decode cache keeps: (conv_size − 1) rows of
-- `channels` (the sum over the layer's convolutions), float32; 0 without short convolutions
function M.conv_bytes(cfg, channels)
  if not cfg.use_short_conv then return 0 end
  return (cfg.conv_size - 1) * channels * 4
end

-- RetNet's and GLA's sizes: heads H (num_heads), kv heads (num_kv_heads, null = H; GQA), key_dim =
-- d·expand_k and value_dim = d·expand_v, both divisible by H → cfg._kv, cfg._kd, cfg._vd
function M.check_kv_dims(cfg)
  local d = cfg.hidden_size
  local H = C.need_int(cfg, "num_heads", 1)
  cfg._kv = C.is_null(cfg.num_kv_heads) and H or C.need_int(cfg, "num_kv_heads", 1)
  local kd = C.derived("key_dim (hidden_size * expand_k)", d * C.need_num(cfg, "expand_k", 0, C.MAX_SIZE), H)
  local vd = C.derived("value_dim (hidden_size * expand_v)", d * C.need_num(cfg, "expand_v", 0, C.MAX_SIZE), H)
  if kd % H ~= 0 then C.cerr("key_dim %d is not divisible by num_heads %d", kd, H) end
  if vd % H ~= 0 then C.cerr("value_dim %d is not divisible by num_heads %d", vd, H) end
  if H % cfg._kv ~= 0 then C.cerr("num_heads %d is not a multiple of num_kv_heads %d", H, cfg._kv) end
  cfg._kd, cfg._vd = kd, vd
end

-- ---- tensor helpers -----------------------------------------------------------------------------------
function M.lin(ctx, x, name, bias)
  return hb.linear(x, M.W(ctx, name .. ".weight"), bias and M.W(ctx, name .. ".bias") or nil)
end
-- gated RMSNorm (docs/mixers.md#gated-rmsnorm): rms(x; w, eps) · silu(g)
function M.normgate(x, g, w, eps) return hb.rmsnorm(x, w, eps) * g:silu() end
-- L2 normalisation over the last dim, eps 1e-6 added to the sum (docs/mixers.md#l2-normalisation)
function M.l2n(x) return x * (x:square():sum(-1, true) + 1e-6):rsqrt() end
-- [B, T, H·D] → [B, T, H, D] (head-major split) and back
function M.heads(x, H, D) local s = x:shape(); return x:view(s[1], s[2], H, D) end
function M.flat(x) local s = x:shape(); return x:view(s[1], s[2], s[3] * s[4]) end

-- ---- decoding --------------------------------------------------------------------------------------------
-- causal short conv with cache handling (act: "silu" or nil); the cache keeps the last conv_size − 1
-- inputs under the parameter's name
function M.conv(ctx, x, name, act)
  local w = M.W(ctx, name .. ".weight")
  local cache = ctx.cache
  if not cache then return (hb.conv1d { x = x, w = w, act = act }) end
  local key = name
  if cache[key] then
    local T = x:size(2)
    if T ~= 1 then user_error("decode cache: only one token per step after the prefill") end
    local y = hb.conv1d_step { cache = cache[key], x = x:select(2, 1), w = w, act = act }
    return y:unsqueeze(2)
  end
  local y, c = hb.conv1d { x = x, w = w, act = act, cache = true }
  cache[key] = c
  return y
end

-- recurrence with cache: fwd(want_state) → o, state ; step(state) → o (one token). The cache keeps the
-- state as cache.state.
function M.recur(ctx, fwd, step)
  local cache = ctx.cache
  if not cache then return (fwd(false)) end
  if cache.state then return step(cache.state) end
  local o, st = fwd(true)
  cache.state = st
  return o
end

-- ---- output stages shared by several mixers -------------------------------------------------------------
-- the name of RetNet's and GLA's output norm: fla's fused gated norm on the default path
-- (docs/mixers.md#retnet)
function M.output_norm_name(cfg)
  if cfg.hidden_act == "swish" and cfg.fuse_norm ~= false and cfg.use_output_gate then return "g_norm_swish_gate" end
  return "g_norm"
end

-- RetNet and GLA: per-head (gated) RMSNorm, then o_proj; o [B, T, H, dv]
function M.gated_output(ctx, o, x, L)
  local c = ctx.m.config
  local w = M.W(ctx, L.norm .. ".weight")
  if c.use_output_gate then
    local g = M.heads(M.lin(ctx, x, "g_proj"), L.H, L.dv)
    o = M.normgate(o, g, w, c.norm_eps)
  else
    o = hb.rmsnorm(o, w, c.norm_eps)
  end
  return M.lin(ctx, M.flat(o), "o_proj")
end

-- DeltaNet and Gated DeltaNet: the delta-rule recurrence (g = log decay or nil) ...
function M.delta_core(ctx, q, k, v, beta, g, L)
  local scale = L.dk ^ -0.5
  return M.recur(ctx,
    function(ws) return hb.delta_rule { q = q, k = k, v = v, beta = beta, g = g, scale = scale, mode = ctx.mode, state = ws } end,
    function(st)
      return hb.delta_rule_step { state = st, q = q:select(2, 1), k = k:select(2, 1), v = v:select(2, 1),
        beta = beta:select(2, 1), g = g and g:select(2, 1) or nil, scale = scale }:unsqueeze(2)
    end)
end

-- ... and their output: per-head RMSNorm, gated when use_gate, then o_proj
function M.delta_output(ctx, o, x, L)
  local c = ctx.m.config
  local w = M.W(ctx, "o_norm.weight")
  if c.use_gate then
    o = M.normgate(o, M.heads(M.lin(ctx, x, "g_proj"), L.HV, L.dv), w, c.norm_eps)
  else
    o = hb.rmsnorm(o, w, c.norm_eps)
  end
  return M.lin(ctx, M.flat(o), "o_proj")
end

-- ---- HGRN's and HGRN-2's lower bounds (docs/mixers.md#lower-bounds) ------------------------------------
-- def.declare_model: model.lower_bounds [L, d], zeros, when use_lower_bound
function M.declare_lower_bounds(add, cfg)
  if cfg.use_lower_bound then add("model.lower_bounds", { cfg.num_hidden_layers, cfg.hidden_size }, "zeros") end
end

-- def.prepare: the lower bounds of all layers, once per forward: a table i → tensor [d] (i >= 1)
function M.lower_bounds(m)
  local lbw = m.params["model.lower_bounds"]
  if not lbw then return nil end
  local s = lbw:softmax(1)
  local c = s:cumsum(1)
  local first = s:select(1, 1)
  local out = {}
  for i = 1, m.config.num_hidden_layers - 1 do out[i] = c:select(1, i + 1) - first end
  return out
end

-- the lower bound of this layer (nil for layer 0 and without lower bounds)
function M.lower_bound(ctx)
  local lbs = ctx.prepared
  if not lbs or ctx.i == 0 then return nil end
  return lbs[ctx.i]
end

-- log(lb + (1 − lb)·exp(f)): a log forget gate raised to at least lb
function M.apply_lb(f_log, lb)
  return ((f_log:exp() * (1 - lb)) + lb):log()
end

return M
