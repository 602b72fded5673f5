-- hyblua/mixers/attention.lua — causal softmax attention with RoPE (docs/mixers.md#softmax-attention):
-- every layer of model_type "transformer", and the hybrid layers that a config's `attn` places in the
-- other types (docs/mixers.md#hybrid-attention-layers). The layer's options are an attention spec:
-- {layers, num_heads, num_kv_heads, qkv_bias, window_size, rope_theta} (+ qk_norm for transformer
-- layers, which fla does not offer in hybrids).
local hb = require "hyblua.binding"
local config = require "hyblua.config"
local user_error = require("hyblua.errors").user_error
local C = require "hyblua.config_fla"
local common = require "hyblua.mixers.common"
local registry = require "hyblua.mixers.registry"

local NULL, cerr, show, is_null = C.NULL, C.cerr, C.show, C.is_null
local lin, heads, flat, W = common.lin, common.heads, common.flat, common.W

local attention = {
  model_type = "transformer",
  architecture = "TransformerForCausalLM",
  hybrid = false,                           -- fla's TransformerConfig has no `attn`
  letter = "A",
  -- TransformerConfig's own fields (elementwise_affine is stored, unused by fla)
  config = {
    num_heads = 32, num_kv_heads = NULL, qkv_bias = false, qk_norm = false, window_size = NULL,
    rope_theta = 10000.0, elementwise_affine = true,
  },
  -- the fields of a hybrid spec and their defaults (num_heads and layers are required)
  options = {
    layers = NULL, num_heads = NULL, num_kv_heads = NULL, qkv_bias = false, window_size = NULL, rope_theta = 10000.0,
  },
}

-- the checks both a transformer config and a hybrid spec need; `what` prefixes the messages
local function check_heads(d, H, Hkv, what)
  if d % H ~= 0 then cerr("%shidden_size %d is not divisible by num_heads %d", what, d, H) end
  if H % Hkv ~= 0 then cerr("%snum_heads %d is not a multiple of num_kv_heads %d", what, H, Hkv) end
  if d // H > 256 then cerr("%shead dim %d exceeds 256", what, d // H) end
  if (d // H) % 2 ~= 0 then cerr("%shead dim %d must be even (rotary embeddings)", what, d // H) end
end

function attention.validate(cfg)
  local H = C.need_int(cfg, "num_heads", 1)
  if is_null(cfg.num_kv_heads) then cfg._kv = H else cfg._kv = C.need_int(cfg, "num_kv_heads", 1) end
  check_heads(cfg.hidden_size, H, cfg._kv, "")
  if type(cfg.rope_theta) ~= "number" or not (cfg.rope_theta > 0) then
    cerr("rope_theta must be a positive number (got %s)", show(cfg.rope_theta))
  end
  if not is_null(cfg.window_size) and (math.type(cfg.window_size) ~= "integer" or cfg.window_size < 1) then
    cerr("window_size must be a positive integer or null (got %s)", show(cfg.window_size))
  end
end

-- def.check_options: normalise a hybrid spec in place (fills the defaults); `where` names it in
-- messages ("attn[2]"). Unknown keys raise the did-you-mean error of the YAML path.
function attention.check_options(spec, cfg, where)
  local L = cfg.num_hidden_layers
  if type(spec) ~= "table" then cerr("%s must be an object", where) end
  local known = {}
  for k in pairs(attention.options) do known[k] = true end
  config.check_keys(spec, known, "config: " .. where, "config key")
  if type(spec.layers) ~= "table" then cerr("%s.layers is required (a list of layer indices)", where) end
  for _, l in ipairs(spec.layers) do
    if math.type(l) ~= "integer" or l < 0 or l >= L then
      cerr("%s.layers: %s is not a layer index in [0, %d)", where, tostring(l), L)
    end
  end
  if math.type(spec.num_heads) ~= "integer" or spec.num_heads < 1 or spec.num_heads > C.MAX_SIZE then
    cerr("%s.num_heads is required (a positive integer)", where)
  end
  if is_null(spec.num_kv_heads) then spec.num_kv_heads = spec.num_heads end
  if math.type(spec.num_kv_heads) ~= "integer" or spec.num_kv_heads < 1 then
    cerr("%s.num_kv_heads must be a positive integer or null (got %s)", where, show(spec.num_kv_heads))
  end
  if spec.qkv_bias == nil then spec.qkv_bias = false end
  if spec.window_size == nil then spec.window_size = NULL end
  if not is_null(spec.window_size) and (math.type(spec.window_size) ~= "integer" or spec.window_size < 1) then
    cerr("%s.window_size must be a positive integer or null (got %s)", where, show(spec.window_size))
  end
  if spec.rope_theta == nil then spec.rope_theta = 10000.0 end
  if type(spec.rope_theta) ~= "number" or not (spec.rope_theta > 0) then
    cerr("%s.rope_theta must be a positive number (got %s)", where, show(spec.rope_theta))
  end
  check_heads(cfg.hidden_size, spec.num_heads, spec.num_kv_heads, where .. ": ")
end

-- the spec of a transformer layer, from the config
function attention.native_options(cfg)
  return { num_heads = cfg.num_heads, num_kv_heads = cfg._kv, qkv_bias = cfg.qkv_bias,
           window_size = cfg.window_size, rope_theta = cfg.rope_theta, qk_norm = cfg.qk_norm }
end

function attention.declare(add, d, i, spec)
  local H, Hkv = spec.num_heads, spec.num_kv_heads
  local D = d // H
  add("q_proj.weight", { H * D, d })
  if spec.qkv_bias then add("q_proj.bias", { H * D }, "zeros") end
  add("k_proj.weight", { Hkv * D, d })
  if spec.qkv_bias then add("k_proj.bias", { Hkv * D }, "zeros") end
  add("v_proj.weight", { Hkv * D, d })
  if spec.qkv_bias then add("v_proj.bias", { Hkv * D }, "zeros") end
  add("o_proj.weight", { d, H * D })
  if spec.qk_norm then
    add("q_norm.weight", { D }, "ones")
    add("k_norm.weight", { D }, "ones")
  end
  return { H = H, Hkv = Hkv, D = D, qkv_bias = spec.qkv_bias, qk_norm = spec.qk_norm == true,
           window = is_null(spec.window_size) and 0 or spec.window_size, theta = spec.rope_theta }
end

function attention.forward(ctx, x)
  local L = ctx.layer
  local B, T = x:size(1), x:size(2)
  local q = heads(lin(ctx, x, "q_proj", L.qkv_bias), L.H, L.D)
  local k = heads(lin(ctx, x, "k_proj", L.qkv_bias), L.Hkv, L.D)
  local v = heads(lin(ctx, x, "v_proj", L.qkv_bias), L.Hkv, L.D)
  if L.qk_norm then
    q = hb.rmsnorm(q, W(ctx, "q_norm.weight"), 1e-5)
    k = hb.rmsnorm(k, W(ctx, "k_norm.weight"), 1e-5)
  end
  local cache = ctx.cache
  local pos0 = cache and cache.pos or 0
  q = hb.rope(q, L.theta, pos0)
  k = hb.rope(k, L.theta, pos0)
  local scale = 1 / math.sqrt(L.D)
  local o
  if cache then
    -- grow the KV cache by doubling, then append
    local need = pos0 + T
    if not cache.k or cache.k:size(2) < need then
      local cap = math.max(need, cache.k and cache.k:size(2) * 2 or 64)
      local nk, nv = hb.zeros(B, cap, L.Hkv, L.D), hb.zeros(B, cap, L.Hkv, L.D)
      if cache.k and pos0 > 0 then
        nk:narrow(2, 1, pos0):copy_(cache.k:narrow(2, 1, pos0))
        nv:narrow(2, 1, pos0):copy_(cache.v:narrow(2, 1, pos0))
      end
      cache.k, cache.v = nk, nv
    end
    cache.k:narrow(2, pos0 + 1, T):copy_(k)
    cache.v:narrow(2, pos0 + 1, T):copy_(v)
    cache.pos = pos0 + T
    if pos0 == 0 then
      o = hb.attention { q = q, k = k, v = v, scale = scale, window = L.window }
    elseif T == 1 then
      o = hb.attention_step { q = q:select(2, 1), k_cache = cache.k, v_cache = cache.v, scale = scale, window = L.window,
        pos = pos0 }:unsqueeze(2)
    else
      user_error("decode cache: only one token per step after the prefill")
    end
  else
    o = hb.attention { q = q, k = k, v = v, scale = scale, window = L.window }
  end
  return lin(ctx, flat(o), "o_proj")
end

-- no state of fixed size: the KV cache grows with the context
function attention.state_bytes() return 0, 0 end

-- K and V of the last min(N, window) positions: cache.k, cache.v [B, N, Hkv, D], float32
function attention.kv_bytes(L, _, N)
  local n = L.window > 0 and math.min(N, L.window) or N
  return 2 * n * L.Hkv * L.D * 4
end

-- the bytes the cache holds: the KV capacity grows by doubling, count only the positions filled
function attention.cache_bytes(lc)
  if not lc.k then return 0 end
  return 2 * lc.k:nbytes() // lc.k:size(2) * lc.pos
end

-- paper formula: 2·N·d (scores and weighted sum over N positions)
function attention.flops(_, cfg, N) return 2 * N * cfg.hidden_size end

registry.register("attention", attention)
return attention
