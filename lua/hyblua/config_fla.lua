-- hyblua/config_fla.lua — fla's config classes as data: defaults per model_type, validation, derived
-- sizes. Everything here follows shared/spec/fla-models.md (§2, §4–§10, §15); a field the spec calls
-- "unused" is still kept so save_pretrained writes what fla's config class would.
local M = {}

-- NULL marks a field whose default is JSON null (written back as null by save_pretrained)
local NULL = {}
M.NULL = NULL

local common = {
  hidden_size = 2048, num_hidden_layers = 24, hidden_ratio = 4, intermediate_size = NULL,
  hidden_act = "swish", norm_eps = 1e-6, fuse_norm = true, tie_word_embeddings = false,
  initializer_range = 0.02, vocab_size = 32000, max_position_embeddings = 2048,
  use_cache = true, pad_token_id = NULL, bos_token_id = 1, eos_token_id = 2,
  fuse_cross_entropy = true, fuse_linear_cross_entropy = false, use_l2warp = false, fuse_swiglu = true,
  attnres_block_size = NULL,
}

-- per-type defaults (merged over `common`)
local types = {
  transformer = {
    arch = "TransformerForCausalLM",
    num_heads = 32, num_kv_heads = NULL, qkv_bias = false, qk_norm = false, window_size = NULL,
    rope_theta = 10000.0, elementwise_affine = true,
  },
  hgrn = {
    arch = "HGRNForCausalLM",
    attn_mode = "fused_recurrent", expand_ratio = 1, use_short_conv = false, conv_size = 4,
    use_lower_bound = true, elementwise_affine = true, attn = NULL,
  },
  retnet = {
    arch = "RetNetForCausalLM",
    attn_mode = "chunk", expand_k = 1.0, expand_v = 2.0, num_heads = 8, num_kv_heads = NULL,
    feature_map = NULL, use_output_gate = true, hidden_ratio = 2, elementwise_affine = true,
    use_short_conv = false, conv_size = 4, attn = NULL,
  },
  gla = {
    arch = "GLAForCausalLM",
    expand_k = 0.5, expand_v = 1.0, num_heads = 4, num_kv_heads = NULL, feature_map = NULL,
    attn_mode = "chunk", use_short_conv = false, conv_size = 4, use_output_gate = true, clamp_min = NULL,
    elementwise_affine = true, use_gk = true, use_gv = false, attn = NULL,
  },
  hgrn2 = {
    arch = "HGRN2ForCausalLM",
    attn_mode = "chunk", expand_ratio = 128, num_heads = NULL, use_short_conv = false, conv_size = 4,
    use_lower_bound = true, elementwise_affine = true, attn = NULL,
  },
  delta_net = {
    arch = "DeltaNetForCausalLM",
    attn_mode = "chunk", expand_k = 1.0, expand_v = 1.0, num_heads = 16, use_gate = false,
    use_short_conv = true, conv_size = 4, use_beta = true, allow_neg_eigval = false, qk_norm = "l2",
    qk_activation = "silu", use_output_norm = true, attn = NULL,
  },
  gated_deltanet = {
    arch = "GatedDeltaNetForCausalLM",
    attn_mode = "chunk", head_dim = 256, num_heads = 6, num_v_heads = NULL, expand_v = 2.0,
    use_gate = true, use_short_conv = true, conv_size = 4, allow_neg_eigval = false, num_hidden_layers = 21,
    attn = NULL,
  },
}
M.types = types

local function is_null(v) return v == nil or v == NULL end

-- Use the library's JSON null (hb.io.null) as the marker everywhere, so a model's config holds the
-- same null whether it was built from defaults or read from config.json. Called once by models.lua.
function M.init(jnull)
  if NULL == jnull then return end
  local function swap(t) for k, v in pairs(t) do if v == NULL then t[k] = jnull end end end
  swap(common)
  for _, t in pairs(types) do swap(t) end
  NULL = jnull
  M.NULL = jnull
end
M.is_null = is_null

local function cerr(fmt, ...) error(string.format("config: " .. fmt, ...), 0) end

-- a value as a message shows it: strings quoted (and cut), tables named, JSON null as null
local function show(v)
  if v == NULL then return "null" end
  if type(v) == "string" then return "'" .. (#v > 40 and v:sub(1, 40) .. "..." or v) .. "'" end
  if type(v) == "table" then return v[1] ~= nil and "an array" or "an object" end
  return tostring(v)
end
M.show = show

-- sizes (widths, counts, heads) are integers below 2^31, so products of two of them cannot wrap
local MAX_SIZE = (1 << 31) - 1

local function need_int(cfg, k, min)
  local v = cfg[k]
  if math.type(v) == "float" and v == math.floor(v) then v = math.tointeger(v) or v end
  if math.type(v) ~= "integer" then cerr("'%s' must be an integer (got %s)", k, show(v)) end
  if min and v < min then cerr("'%s' must be >= %d (got %d)", k, min, v) end
  if v > MAX_SIZE then cerr("'%s' = %d is too large (at most %d)", k, v, MAX_SIZE) end
  cfg[k] = v
  return v
end

-- a number (not NaN) in [lo, hi]
local function need_num(cfg, k, lo, hi)
  local v = cfg[k]
  if type(v) ~= "number" or v ~= v or v < lo or v > hi then
    cerr("'%s' must be a number in [%s, %s] (got %s)", k, lo, hi, show(v))
  end
  return v
end

-- a derived size (hidden_size * a ratio): a whole number of at least min that fits MAX_SIZE
local function derived(what, v, min)
  if v ~= v or v < min or v > MAX_SIZE then cerr("%s = %s must be in [%d, %d]", what, tostring(v), min, MAX_SIZE) end
  return math.tointeger(math.floor(v))
end

-- Normalise one hybrid attention spec (§2) in place.
local function norm_spec(spec, L, used, idx)
  if type(spec) ~= "table" then cerr("attn[%d] must be an object", idx) end
  if type(spec.layers) ~= "table" then cerr("attn[%d].layers is required (a list of layer indices)", idx) end
  for _, l in ipairs(spec.layers) do
    if math.type(l) ~= "integer" or l < 0 or l >= L then
      cerr("attn[%d].layers: %s is not a layer index in [0, %d)", idx, tostring(l), L)
    end
    if used[l] then cerr("attn: layer %d appears twice", l) end
    used[l] = true
  end
  if math.type(spec.num_heads) ~= "integer" or spec.num_heads < 1 or spec.num_heads > MAX_SIZE then
    cerr("attn[%d].num_heads is required (a positive integer)", idx)
  end
  if is_null(spec.num_kv_heads) then spec.num_kv_heads = spec.num_heads end
  if math.type(spec.num_kv_heads) ~= "integer" or spec.num_kv_heads < 1 then
    cerr("attn[%d].num_kv_heads must be a positive integer or null (got %s)", idx, show(spec.num_kv_heads))
  end
  if spec.qkv_bias == nil then spec.qkv_bias = false end
  if spec.window_size == nil then spec.window_size = NULL end
  if not is_null(spec.window_size) and (math.type(spec.window_size) ~= "integer" or spec.window_size < 1) then
    cerr("attn[%d].window_size must be a positive integer or null (got %s)", idx, show(spec.window_size))
  end
  if spec.rope_theta == nil then spec.rope_theta = 10000.0 end
  if type(spec.rope_theta) ~= "number" or not (spec.rope_theta > 0) then
    cerr("attn[%d].rope_theta must be a positive number (got %s)", idx, show(spec.rope_theta))
  end
  return spec
end

-- Fill defaults and validate. Returns the normalised config (a new table) or raises "config: ...".
function M.normalize(user)
  if type(user) ~= "table" then cerr("expected a table") end
  local mt = user.model_type
  if mt == nil then cerr("'model_type' is missing") end
  local T = types[mt]
  if not T then
    local names = {}
    for k in pairs(types) do names[#names + 1] = k end
    table.sort(names)
    cerr("unknown model_type %s (supported: %s)", show(mt), table.concat(names, ", "))
  end
  local cfg = {}
  for k, v in pairs(common) do cfg[k] = v end
  for k, v in pairs(T) do if k ~= "arch" then cfg[k] = v end end
  for k, v in pairs(user) do cfg[k] = v end
  cfg.model_type = mt
  if is_null(cfg.architectures) then cfg.architectures = { T.arch } end

  local d = need_int(cfg, "hidden_size", 1)
  local L = need_int(cfg, "num_hidden_layers", 1)
  need_int(cfg, "vocab_size", 1)
  need_num(cfg, "initializer_range", 0, math.huge)
  need_num(cfg, "norm_eps", 0, 1)
  if cfg.use_short_conv then need_int(cfg, "conv_size", 1) end
  if not is_null(cfg.attnres_block_size) then
    cerr("attnres_block_size = %s is not implemented by hyblua (use null)", show(cfg.attnres_block_size))
  end
  if cfg.fuse_cross_entropy == true and cfg.fuse_linear_cross_entropy == true then
    cerr("fuse_cross_entropy and fuse_linear_cross_entropy cannot both be true")
  end
  if cfg.hidden_act ~= "swish" then
    cerr("hidden_act = %s is not supported (hyblua implements 'swish')", show(cfg.hidden_act))
  end
  if not is_null(cfg.feature_map) then
    cerr("feature_map = %s is not implemented by hyblua (use null)", show(cfg.feature_map))
  end
  -- MLP width (§1.5)
  if is_null(cfg.intermediate_size) then
    local r = is_null(cfg.hidden_ratio) and 4 or need_num(cfg, "hidden_ratio", 0, 1e6)
    local I = math.floor(d * r * 2 / 3)
    cfg._mlp = derived("the MLP width (hidden_size * hidden_ratio * 2/3, rounded up to 256)", 256 * math.ceil(I / 256), 1)
  else
    cfg._mlp = need_int(cfg, "intermediate_size", 1)
  end
  -- hybrid specs (§2)
  cfg._attn_at = {}
  if mt ~= "transformer" and not is_null(cfg.attn) then
    local specs = cfg.attn
    if type(specs) ~= "table" then cerr("attn must be an object or a list of objects (got %s)", show(specs)) end
    if specs.layers ~= nil or specs.num_heads ~= nil then specs = { specs } end
    local used = {}
    for i, s in ipairs(specs) do
      norm_spec(s, L, used, i)
      if d % s.num_heads ~= 0 then cerr("attn[%d]: hidden_size %d is not divisible by num_heads %d", i, d, s.num_heads) end
      if s.num_heads % s.num_kv_heads ~= 0 then cerr("attn[%d]: num_heads %d is not a multiple of num_kv_heads %d", i, s.num_heads, s.num_kv_heads) end
      if d // s.num_heads > 256 then cerr("attn[%d]: head dim %d exceeds 256", i, d // s.num_heads) end
      if (d // s.num_heads) % 2 ~= 0 then cerr("attn[%d]: head dim %d must be even (rotary embeddings)", i, d // s.num_heads) end
      for _, l in ipairs(s.layers) do cfg._attn_at[l] = s end
    end
  end
  -- per-type checks and derived sizes
  if mt == "transformer" then
    local H = need_int(cfg, "num_heads", 1)
    if is_null(cfg.num_kv_heads) then cfg._kv = H else cfg._kv = need_int(cfg, "num_kv_heads", 1) end
    if d % H ~= 0 then cerr("hidden_size %d is not divisible by num_heads %d", d, H) end
    if H % cfg._kv ~= 0 then cerr("num_heads %d is not a multiple of num_kv_heads %d", H, cfg._kv) end
    if d // H > 256 then cerr("head dim %d exceeds 256", d // H) end
    if (d // H) % 2 ~= 0 then cerr("head dim %d must be even (rotary embeddings)", d // H) end
    if type(cfg.rope_theta) ~= "number" or not (cfg.rope_theta > 0) then
      cerr("rope_theta must be a positive number (got %s)", show(cfg.rope_theta))
    end
    if not is_null(cfg.window_size) and (math.type(cfg.window_size) ~= "integer" or cfg.window_size < 1) then
      cerr("window_size must be a positive integer or null (got %s)", show(cfg.window_size))
    end
  elseif mt == "hgrn" then
    local E = derived("hidden_size * expand_ratio", d * need_num(cfg, "expand_ratio", 0, MAX_SIZE), 1)
    if cfg.use_lower_bound and E ~= d then cerr("hgrn: expand_ratio must be 1 when use_lower_bound is true (got %s)", tostring(cfg.expand_ratio)) end
    cfg._E = E
  elseif mt == "retnet" or mt == "gla" then
    local H = need_int(cfg, "num_heads", 1)
    cfg._kv = is_null(cfg.num_kv_heads) and H or need_int(cfg, "num_kv_heads", 1)
    local kd = derived("key_dim (hidden_size * expand_k)", d * need_num(cfg, "expand_k", 0, MAX_SIZE), H)
    local vd = derived("value_dim (hidden_size * expand_v)", d * need_num(cfg, "expand_v", 0, MAX_SIZE), H)
    if kd % H ~= 0 then cerr("key_dim %d is not divisible by num_heads %d", kd, H) end
    if vd % H ~= 0 then cerr("value_dim %d is not divisible by num_heads %d", vd, H) end
    if H % cfg._kv ~= 0 then cerr("num_heads %d is not a multiple of num_kv_heads %d", H, cfg._kv) end
    cfg._kd, cfg._vd = kd, vd
    if mt == "gla" and not is_null(cfg.clamp_min) and type(cfg.clamp_min) ~= "number" then
      cerr("clamp_min must be a number or null (got %s)", show(cfg.clamp_min))
    end
    if mt == "retnet" and kd // H > 256 then cerr("retnet head key dim %d exceeds 256", kd // H) end
  elseif mt == "hgrn2" then
    if is_null(cfg.expand_ratio) then
      if is_null(cfg.num_heads) then cerr("hgrn2: expand_ratio and num_heads cannot both be null") end
      cfg.expand_ratio = d // need_int(cfg, "num_heads", 1)
    end
    local E = need_int(cfg, "expand_ratio", 1)
    if d % E ~= 0 then cerr("hgrn2: hidden_size %d is not divisible by expand_ratio %d", d, E) end
    if is_null(cfg.num_heads) then cfg.num_heads = d // E end
    cfg._H = d // E
  elseif mt == "delta_net" then
    local H = need_int(cfg, "num_heads", 1)
    local kd = derived("key_dim (hidden_size * expand_k)", d * need_num(cfg, "expand_k", 0, MAX_SIZE), H)
    local vd = derived("value_dim (hidden_size * expand_v)", d * need_num(cfg, "expand_v", 0, MAX_SIZE), H)
    if kd % H ~= 0 or vd % H ~= 0 then cerr("key_dim %d / value_dim %d not divisible by num_heads %d", kd, vd, H) end
    if cfg.qk_norm ~= "l2" and cfg.qk_norm ~= "sum" then cerr("qk_norm = %s (expected 'l2' or 'sum')", show(cfg.qk_norm)) end
    local acts = { silu = true, relu = true, elu = true, identity = true }
    if not acts[cfg.qk_activation] then cerr("qk_activation = %s (expected silu, relu, elu or identity)", show(cfg.qk_activation)) end
    cfg._kd, cfg._vd = kd, vd
  elseif mt == "gated_deltanet" then
    local H = need_int(cfg, "num_heads", 1)
    local hd = need_int(cfg, "head_dim", 1)
    local HV = is_null(cfg.num_v_heads) and H or need_int(cfg, "num_v_heads", 1)
    if HV > H and HV % H ~= 0 then cerr("num_v_heads %d must be a multiple of num_heads %d", HV, H) end
    if HV < H then cerr("num_v_heads %d must be >= num_heads %d", HV, H) end
    local dv = hd * need_num(cfg, "expand_v", 0, MAX_SIZE)
    if math.abs(dv - math.floor(dv + 0.5)) > 1e-5 * math.max(1, dv) then
      cerr("head_dim * expand_v = %s is not an integer", tostring(dv))
    end
    cfg._HV, cfg._dv = HV, derived("head_dim * expand_v", math.floor(dv + 0.5), 1)
  end
  return cfg
end

-- The dict fla's config class would save (public fields only, nulls restored).
function M.to_json(cfg, jnull)
  local out = {}
  for k, v in pairs(cfg) do
    if k:sub(1, 1) ~= "_" then out[k] = v end
  end
  if type(out.attn) == "table" then
    local specs = {}
    local list = out.attn.layers and { out.attn } or out.attn
    for i, s in ipairs(list) do
      local c = {}
      for k, v in pairs(s) do c[k] = v end
      specs[i] = c
    end
    out.attn = (#specs == 1 and cfg.attn.layers) and specs[1] or specs
  end
  return out
end

return M
