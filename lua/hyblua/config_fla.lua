-- hyblua/config_fla.lua — the part of fla's config classes every model type shares: the common fields
-- and their defaults, the strict key check, the checks of common fields, the MLP width and the hybrid
-- `attn` specs. What belongs to one model type (its defaults, checks and derived sizes) lives in its
-- mixer file, lua/hyblua/mixers/<name>.lua (def.config, def.unsupported, def.validate).
-- Semantics: docs/mixers.md#configs. A field fla stores but does not use is still kept, so that
-- save_pretrained writes what fla's config class would.
local hb = require "hyblua.binding"
local config = require "hyblua.config"
local user_error = require("hyblua.errors").user_error
local registry = require "hyblua.mixers.registry"

local M = {}

-- JSON null (hb.io.null): a field whose default is null holds it, and save_pretrained writes it back
local NULL = hb.io.null
M.NULL = NULL

-- the fields of every fla config class, with fla's defaults
M.common = {
  hidden_size = 2048, num_hidden_layers = 24, hidden_ratio = 4, intermediate_size = NULL,
  hidden_act = "swish", norm_eps = 1e-6, fuse_norm = true, tie_word_embeddings = false,
  initializer_range = 0.02, vocab_size = 32000, max_position_embeddings = 2048,
  use_cache = true, pad_token_id = NULL, bos_token_id = 1, eos_token_id = 2,
  fuse_cross_entropy = true, fuse_linear_cross_entropy = false, use_l2warp = false, fuse_swiglu = true,
  attnres_block_size = NULL,
}

-- common fields fla defines whose other values hyblua does not implement (the value here is the only one
-- accepted); a mixer adds its own in def.unsupported
M.unsupported = { attnres_block_size = NULL, hidden_act = "swish", use_l2warp = false }

-- keys every config may carry besides its fields: what the model is, and where custom mixers go
-- (a type without hybrids, def.hybrid == false, accepts only a null `attn`)
local STRUCTURAL = { model_type = true, architectures = true, custom_mixers = true, attn = true }

-- keys Hugging Face's PretrainedConfig (or a trainer) writes that change nothing hyblua computes: kept
-- and saved as given. So is every `fuse_*` key (kernel-fusion switches).
M.harmless = {}
for _, k in ipairs { "transformers_version", "torch_dtype", "dtype", "_name_or_path", "_commit_hash",
  "_attn_implementation", "auto_map", "use_bfloat16", "return_dict", "output_hidden_states",
  "output_attentions", "torchscript", "id2label", "label2id", "tokenizer_class", "problem_type",
  "finetuning_task", "chunk_size_feed_forward", "task_specific_params" } do
  M.harmless[k] = true
end

local function is_null(v) return v == nil or v == NULL end
M.is_null = is_null

-- ---- helpers for the checks (used by the mixer files' validate) --------------------------------------
local function cerr(fmt, ...) user_error(string.format("config: " .. fmt, ...)) end
M.cerr = cerr

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
M.MAX_SIZE = MAX_SIZE

-- cfg[k] as an integer >= min (an integral float is converted in place)
function M.need_int(cfg, k, min)
  local v = cfg[k]
  if math.type(v) == "float" and v == math.floor(v) then v = math.tointeger(v) or v end
  if math.type(v) ~= "integer" then cerr("'%s' must be an integer (got %s)", k, show(v)) end
  if min and v < min then cerr("'%s' must be >= %d (got %d)", k, min, v) end
  if v > MAX_SIZE then cerr("'%s' = %d is too large (at most %d)", k, v, MAX_SIZE) end
  cfg[k] = v
  return v
end

-- cfg[k] as a number (not NaN) in [lo, hi]
function M.need_num(cfg, k, lo, hi)
  local v = cfg[k]
  if type(v) ~= "number" or v ~= v or v < lo or v > hi then
    cerr("'%s' must be a number in [%s, %s] (got %s)", k, lo, hi, show(v))
  end
  return v
end

-- a derived size (hidden_size * a ratio): a whole number of at least min that fits MAX_SIZE
function M.derived(what, v, min)
  if v ~= v or v < min or v > MAX_SIZE then cerr("%s = %s must be in [%d, %d]", what, tostring(v), min, MAX_SIZE) end
  return math.tointeger(math.floor(v))
end

-- ---- the strict key check ------------------------------------------------------------------------------
-- Every key of `user` must be a field of its model type (common fields, the type's fields, structural
-- keys) or harmless; else the did-you-mean error of the YAML path, or, for a field of other model
-- types, an error naming them.
local function check_keys(def, user)
  local fields, rest = {}, {}
  for k in pairs(M.common) do fields[k] = true end
  for k in pairs(def.config or {}) do fields[k] = true end
  for k in pairs(STRUCTURAL) do fields[k] = true end
  for k, v in pairs(user) do
    local harmless = type(k) == "string" and (M.harmless[k] or k:sub(1, 5) == "fuse_")
    if not harmless and not fields[k] then rest[k] = v end
  end
  local bad = next(rest)
  if bad == nil then return end
  local keys = {}
  for k in pairs(rest) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  bad = keys[1]
  if not config.suggest(bad, fields) then
    local others = {}
    for _, mt in ipairs(registry.model_types()) do
      local d = registry.for_model_type(mt)
      if d.config and d.config[bad] ~= nil then others[#others + 1] = mt end
    end
    if #others > 0 then
      cerr("'%s' is not a field of %s configs (it is one of %s)", bad, user.model_type, table.concat(others, ", "))
    end
  end
  config.check_keys({ [bad] = true }, fields, "config", "config key")
end

-- a field whose value hyblua does not implement is an error naming it (fields in sorted order)
local function check_supported(cfg, only)
  local keys = {}
  for k in pairs(only) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local want, v = only[k], cfg[k]
    local same = v == want or (want == NULL and is_null(v))
    if not same then cerr("%s = %s is not implemented by hyblua (use %s)", k, show(v), show(want)) end
  end
end

-- the mixer that implements model_type mt, or a "config: unknown model_type" error listing them
local function type_def(mt)
  local def = type(mt) == "string" and registry.for_model_type(mt) or nil
  if not def then cerr("unknown model_type %s (supported: %s)", show(mt), table.concat(registry.model_types(), ", ")) end
  return def
end

-- The defaults of a type as a table (recipe.lua reads it): M.types[mt] is the type's own fields and
-- defaults (its mixer's def.config), nil for an unknown type.
M.types = setmetatable({}, {
  __index = function(_, mt)
    local def = type(mt) == "string" and registry.for_model_type(mt) or nil
    return def and (def.config or {}) or nil
  end,
})

-- ---- hybrid attention specs ----------------------------------------------------------------------------
-- cfg.attn: null, one spec or a list of specs; each is checked by the attention mixer (check_options).
-- Fills cfg._attn_at (0-based layer → spec).
local function hybrid_specs(cfg, def)
  cfg._attn_at = {}
  if is_null(cfg.attn) then return end
  if def.hybrid == false then cerr("model_type '%s' has no hybrid attention layers ('attn' must be null)", cfg.model_type) end
  local specs = cfg.attn
  if type(specs) ~= "table" then cerr("attn must be an object or a list of objects (got %s)", show(specs)) end
  if specs[1] == nil and next(specs) ~= nil then specs = { specs } end
  local attention = registry.get("attention")
  for i, s in ipairs(specs) do
    attention.check_options(s, cfg, string.format("attn[%d]", i))
    for _, l in ipairs(s.layers) do
      if cfg._attn_at[l] then cerr("attn: layer %d appears twice", l) end
      cfg._attn_at[l] = s
    end
  end
end

-- Fill defaults and validate. Returns the normalised config (a new table) or raises "config: ...".
function M.normalize(user)
  if type(user) ~= "table" then cerr("expected a table") end
  local mt = user.model_type
  if mt == nil then cerr("'model_type' is missing") end
  local def = type_def(mt)
  check_keys(def, user)
  local cfg = {}
  for k, v in pairs(M.common) do cfg[k] = v end
  for k, v in pairs(def.config or {}) do cfg[k] = v end
  for k, v in pairs(user) do cfg[k] = v end
  cfg.model_type = mt
  if is_null(cfg.architectures) then cfg.architectures = { def.architecture } end

  local d = M.need_int(cfg, "hidden_size", 1)
  M.need_int(cfg, "num_hidden_layers", 1)
  M.need_int(cfg, "vocab_size", 1)
  M.need_num(cfg, "initializer_range", 0, math.huge)
  M.need_num(cfg, "norm_eps", 0, 1)
  if cfg.use_short_conv then M.need_int(cfg, "conv_size", 1) end
  check_supported(cfg, M.unsupported)
  check_supported(cfg, def.unsupported or {})
  if cfg.fuse_cross_entropy == true and cfg.fuse_linear_cross_entropy == true then
    cerr("fuse_cross_entropy and fuse_linear_cross_entropy cannot both be true")
  end
  -- MLP width (docs/mixers.md#the-block)
  if is_null(cfg.intermediate_size) then
    local r = is_null(cfg.hidden_ratio) and 4 or M.need_num(cfg, "hidden_ratio", 0, 1e6)
    local I = math.floor(d * r * 2 / 3)
    cfg._mlp = M.derived("the MLP width (hidden_size * hidden_ratio * 2/3, rounded up to 256)", 256 * math.ceil(I / 256), 1)
  else
    cfg._mlp = M.need_int(cfg, "intermediate_size", 1)
  end
  hybrid_specs(cfg, def)
  if def.validate then def.validate(cfg) end
  return cfg
end

-- The dict fla's config class would save: the fields and harmless keys as given, without the derived
-- sizes (keys starting with "_" that are not harmless ones such as _name_or_path).
function M.to_json(cfg)
  local out = {}
  for k, v in pairs(cfg) do
    if k:sub(1, 1) ~= "_" or M.harmless[k] then out[k] = v end
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
