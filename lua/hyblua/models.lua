-- hyblua/models.lua — model assembly: fla's decoder stack built from a config table. Everything that
-- belongs to one token mixer (its config fields, parameters, forward, decode state, FLOPs) is in its
-- file lua/hyblua/mixers/<name>.lua and reached through the mixer registry; this file builds the
-- stack around the mixers: embeddings, the layer loop, the blocks (norms, MLP, residuals), the final
-- norm and LM head, decode caches, loading and saving, generation.
--
-- A model is a table of parameters keyed by fla's names (model.layers.3.attn.q_proj.weight, ...) plus
-- one description per layer (m.layers[i + 1]: kind, mixer, def, opts, index, prefix and the sizes the
-- mixer's declare returned). The mixer of layer i is the softmax attention of a hybrid spec (`attn`),
-- a mixer placed by `custom_mixers`, or else the mixer of the config's model_type.
-- Semantics: docs/mixers.md. Index convention: Lua dims are 1-based (hb binding), fla layer indices
-- are 0-based as in config.json.
local hb = require "hyblua.binding"
local errors = require "hyblua.errors"
local user_error = errors.user_error
local C = require "hyblua.config_fla"
local config = require "hyblua.config"
local registry = require "hyblua.mixers"
local common = require "hyblua.mixers.common"
local schedule = require "hyblua.schedule"

local models = {}
local Model = {}
Model.__index = Model

-- ---- parameters ---------------------------------------------------------------------------------
-- The largest model new/from_tensors/load_pretrained build, in parameters (4 bytes each in float32):
-- a config asking for more is refused with a message before anything is allocated (a typo such as
-- hidden_size 40960000 must not take the machine down). Raise it for a bigger machine.
models.max_params = 2 ^ 34
-- The most bytes a model's float32 weights may take (nil: this machine's physical memory); hb.train
-- checks weights + gradients + AdamW's two moments (16 bytes a parameter) against the same limit.
models.max_bytes = nil
function models.memory_limit()
  local lim = models.max_bytes or hb.physical_memory()
  return lim, models.max_bytes and "hb.models.max_bytes" or "this machine's memory"
end
function models.format_bytes(b)
  if b >= 2 ^ 30 then return string.format("%.1f GiB", b / 2 ^ 30) end
  if b >= 2 ^ 20 then return string.format("%.1f MiB", b / 2 ^ 20) end
  return string.format("%.1f KiB", b / 2 ^ 10)
end

local function too_big(n)
  return string.format("config: the model would have at least %.4g parameters (%.1f GiB in float32), more " ..
    "than hb.models.max_params = %.4g; check hidden_size, num_hidden_layers, vocab_size and the expansion " ..
    "ratios, or raise hb.models.max_params", n, n * 4 / 2 ^ 30, models.max_params)
end

-- the initialisations a parameter may ask for (docs/mixers.md#initialisation), or a function(shape)
local INITS = { normal = true, ones = true, zeros = true, A_log = true, dt_bias = true }

-- declare(m, name, shape, init, no_decay): checks the shape (non-negative integers) and keeps the
-- running parameter count under max_params
local function declare(m, name, shape, init, no_decay)
  if type(shape) ~= "table" then
    user_error(string.format("config: parameter '%s' needs a shape (a list of sizes), got %s", name, C.show(shape)), 0)
  end
  if type(init) ~= "function" and not INITS[init] then
    user_error(string.format("config: parameter '%s': init must be 'normal', 'ones', 'zeros', 'A_log', 'dt_bias' " ..
      "or a function(shape) → tensor (got %s)", name, C.show(init)), 0)
  end
  local n = 1.0
  for k, v in ipairs(shape) do
    if math.type(v) ~= "integer" or v < 0 then
      user_error(string.format("config: parameter '%s' would have size %s in dimension %d (sizes must be " ..
        "non-negative integers; check the config's sizes and ratios)", name, tostring(v), k), 0)
    end
    n = n * v
  end
  if m._spec[name] then user_error(string.format("config: parameter '%s' is declared twice", name), 0) end
  m._nparams = (m._nparams or 0) + n
  if m._nparams > models.max_params then user_error(too_big(m._nparams), 0) end
  local lim, what = models.memory_limit()
  if lim and m._nparams * 4 > lim then
    user_error(string.format("config: the model's weights would take at least %s (%.4g parameters × 4 bytes), more " ..
      "than %s (%s); check the config's sizes, or set hb.models.max_bytes (bytes) to override",
      models.format_bytes(m._nparams * 4), m._nparams, what, models.format_bytes(lim)), 0)
  end
  m._order[#m._order + 1] = name
  m._spec[name] = { shape = shape, init = init, no_decay = no_decay }
end

-- the `add(name, shape [, init [, no_decay]])` a def's declare functions receive: names under `prefix`
local function adder(m, prefix)
  return function(name, shape, init, no_decay)
    if type(name) ~= "string" then user_error("config: add(name, shape, init): name must be a string, got " .. C.show(name), 0) end
    declare(m, prefix .. name, shape, init or "normal", no_decay)
  end
end

local function shape_str(s) return "[" .. table.concat(s, ", ") .. "]" end

local function init_param(spec, std)
  local kind, t = spec.init, nil
  if type(kind) == "function" then
    t = kind(spec.shape)
    local ok, got = pcall(function() return t:shape() end)
    if not ok or shape_str(got) ~= shape_str(spec.shape) then
      user_error(string.format("init function: expected a tensor of shape %s, got %s", shape_str(spec.shape),
        ok and shape_str(got) or C.show(t)), 0)
    end
    t = t:float():detach()
  elseif kind == "normal" then
    t = hb.randn(spec.shape) * std
  elseif kind == "ones" then
    t = hb.ones(spec.shape)
  elseif kind == "zeros" then
    t = hb.zeros(spec.shape)
  elseif kind == "A_log" then -- log U(0, 16)
    t = (hb.rand(spec.shape) * 16):clamp(1e-12):log()
  elseif kind == "dt_bias" then -- inverse softplus of dt ~ logU(1e-3, 1e-1), floored at 1e-4
    local u = hb.rand(spec.shape)
    local dt = (u * (math.log(0.1) - math.log(0.001)) + math.log(0.001)):exp():clamp(1e-4)
    -- dt + log(-expm1(-dt))
    t = dt + (dt:neg():expm1():neg()):log()
  end
  return t
end

-- ---- the block ------------------------------------------------------------------------------------
-- fla's GatedMLP (docs/mixers.md#the-block): down_proj(silu(gate_proj(x)) ⊙ up_proj(x)), under the
-- block's prefix; width cfg._mlp
function models.gated_mlp(ctx, x)
  local a = hb.linear(x, common.W(ctx, "mlp.gate_proj.weight"))
  local b = hb.linear(x, common.W(ctx, "mlp.up_proj.weight"))
  return hb.linear(a:silu() * b, common.W(ctx, "mlp.down_proj.weight"))
end

-- The block of every fla model type here (docs/mixers.md#the-block): pre-norm residuals around the
-- mixer and the GatedMLP. A model type's def.block replaces it (same two functions):
--   declare(add, i, cfg, mixer)  add(name, ...) declares model.layers.<i>.<name>; mixer() declares the
--                                mixer's parameters at that point (exactly once)
--   forward(ctx, h, mix) → h     ctx as a mixer's, with ctx.prefix = "model.layers.<i>."; mix(x) runs
--                                the layer's mixer
models.standard_block = {
  declare = function(add, _, cfg, mixer)
    local d = cfg.hidden_size
    add("attn_norm.weight", { d }, "ones")
    mixer()
    add("mlp_norm.weight", { d }, "ones")
    add("mlp.gate_proj.weight", { cfg._mlp, d })
    add("mlp.up_proj.weight", { cfg._mlp, d })
    add("mlp.down_proj.weight", { d, cfg._mlp })
  end,
  forward = function(ctx, h, mix)
    local eps = ctx.m.config.norm_eps
    h = h + mix(hb.rmsnorm(h, common.W(ctx, "attn_norm.weight"), eps))
    return h + models.gated_mlp(ctx, hb.rmsnorm(h, common.W(ctx, "mlp_norm.weight"), eps))
  end,
}

-- the final RMSNorm (model.norm.weight); a model type's def.final_norm replaces it:
--   declare(add, d, cfg) with names under "<model>.<final_norm>.", forward(ctx, h) → h
models.standard_final_norm = {
  declare = function(add, d) add("weight", { d }, "ones") end,
  forward = function(ctx, h) return hb.rmsnorm(h, common.W(ctx, "weight"), ctx.m.config.norm_eps) end,
}

-- parameter names of a model type: <model>.embeddings.weight, <model>.layers.<i>.<mixer>.*, <model>.<final_norm>.*
local NAMES = { model = "model", mixer = "attn", final_norm = "norm" }
local function names_of(def)
  local n = {}
  for k, v in pairs(NAMES) do n[k] = (def.names or {})[k] or v end
  n.embeddings = n.model .. ".embeddings.weight"
  return n
end

-- ---- custom mixer placements ----------------------------------------------------------------------
-- cfg.custom_mixers = {{mixer = name, layers = schedule | {i, ...}, ...options}, ...}: each entry checked
-- (strictly when the mixer declares `options`) and resolved to a plain layer list (what config.json
-- stores). Returns i → entry, and the resolved list.
local function custom_layers(cfg, list)
  local at, resolved = {}, {}
  if list == nil or list == hb.io.null then list = {} end
  if type(list) ~= "table" then user_error("config: custom_mixers must be a list of {mixer =, layers =} (got " .. C.show(list) .. ")", 0) end
  local L = cfg.num_hidden_layers
  for k, entry in ipairs(list) do
    local where = string.format("config: custom_mixers[%d]", k)
    if type(entry) ~= "table" then user_error(string.format("%s must be an object (got %s)", where, C.show(entry)), 0) end
    local base = { mixer = true, layers = true }
    local def = registry.get(entry.mixer)
    if def and def.options then
      local known = {}
      for key in pairs(def.options) do known[key] = true end
      for key in pairs(base) do known[key] = true end
      config.check_keys(entry, known, where, "config key")
    else
      -- options are the mixer's own business; a key that is a near miss of mixer or layers is a typo
      for key in pairs(entry) do
        local near = type(key) == "string" and not base[key] and config.suggest(key, base)
        if near and entry[near] == nil then user_error(where .. ": " .. config.unknown_key(key, base), 0) end
      end
    end
    if type(entry.mixer) ~= "string" or not def then
      user_error(string.format("%s.mixer = %s is not registered (hb.models.register_mixer)", where, C.show(entry.mixer)), 0)
    end
    if def.model_type then
      user_error(string.format("%s.mixer = '%s' is the mixer of model_type '%s' (set attention layers with `attn`, " ..
        "the other layers' mixer with model_type)", where, entry.mixer, def.model_type), 0)
    end
    local spec = {}
    for key, v in pairs(def.options or {}) do spec[key] = v end
    for key, v in pairs(entry) do spec[key] = v end
    local layers = spec.layers
    if schedule.is_schedule(layers) then
      local r = layers.pick
      layers = {}
      for i = 0, L - 1 do if r(i, L) then layers[#layers + 1] = i end end
    end
    if type(layers) ~= "table" then
      user_error(string.format("%s.layers is required (a list of 0-based layer indices or a schedule)", where), 0)
    end
    for _, i in ipairs(layers) do
      if math.type(i) ~= "integer" or i < 0 or i >= L then
        user_error(string.format("%s.layers: %s is not a layer index in [0, %d)", where, tostring(i), L), 0)
      end
      if at[i] then user_error(string.format("config: layer %d appears twice in custom_mixers", i), 0) end
      at[i] = spec
    end
    spec.layers = layers
    if def.check_options then def.check_options(spec, cfg, string.format("custom_mixers[%d]", k)) end
    resolved[k] = spec
  end
  return at, resolved
end

-- ---- building --------------------------------------------------------------------------------------
-- the mixer of layer i: {kind, mixer, def, opts}
local function layer_mixer(cfg, tdef, tname, i, cust)
  local spec = cfg._attn_at[i]
  if cust and spec then
    user_error(string.format("config: layer %d is both an attention layer and a custom mixer ('%s')", i, cust.mixer), 0)
  end
  if cust then return { kind = "custom", mixer = cust.mixer, name = cust.mixer, def = registry.get(cust.mixer), opts = cust } end
  if spec then return { kind = "attention", mixer = "attention", def = registry.get("attention"), opts = spec } end
  return { kind = tname, mixer = tname, def = tdef, opts = tdef.native_options and tdef.native_options(cfg) or cfg }
end

local function build(cfg_in)
  if type(cfg_in) ~= "table" then
    user_error("config: expected a table (a JSON object in config.json), got " .. C.show(cfg_in), 0)
  end
  local user = {}
  for k, v in pairs(cfg_in) do user[k] = v end
  local tdef, tname = registry.for_model_type(user.model_type)
  if user.attn ~= nil then
    local L = user.num_hidden_layers
    if L == nil then L = tdef and tdef.config and tdef.config.num_hidden_layers or C.common.num_hidden_layers end
    user.attn = schedule.resolve(user.attn, L)
  end
  local custom = user.custom_mixers
  user.custom_mixers = nil
  local cfg = C.normalize(user)
  local custom_at, resolved = custom_layers(cfg, custom)
  if custom ~= nil then cfg.custom_mixers = resolved end
  local names = names_of(tdef)
  local m = setmetatable({ config = cfg, _order = {}, _spec = {}, params = {}, mode = "chunk", layers = {},
                           _def = tdef, _names = names }, Model)
  local d, L, V = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
  -- a lower bound first (embeddings + every layer's MLP), so a huge num_hidden_layers fails at once
  local least = 1.0 * V * d + (tdef.block and 0 or 3.0 * L * d * cfg._mlp)
  if least > models.max_params then user_error(too_big(least), 0) end
  declare(m, names.embeddings, { V, d }, "normal")
  if tdef.declare_model then tdef.declare_model(adder(m, ""), cfg) end
  local block = tdef.block or models.standard_block
  for i = 0, L - 1 do
    local layer = layer_mixer(cfg, tdef, tname, i, custom_at[i])
    local lprefix = names.model .. ".layers." .. i .. "."
    layer.index, layer.prefix, layer.block_prefix = i, lprefix .. names.mixer .. ".", lprefix
    local declared = 0
    block.declare(adder(m, lprefix), i, cfg, function()
      declared = declared + 1
      local facts = layer.def.declare and layer.def.declare(adder(m, layer.prefix), d, i, layer.opts, cfg)
      if type(facts) == "table" then
        for k, v in pairs(facts) do if layer[k] == nil then layer[k] = v end end
      end
    end)
    if declared ~= 1 then
      user_error(string.format("config: the block of model_type '%s' declared the mixer of layer %d %d times (once expected)",
        cfg.model_type, i, declared), 0)
    end
    m.layers[i + 1] = layer
  end
  local final = tdef.final_norm or models.standard_final_norm
  final.declare(adder(m, names.model .. "." .. names.final_norm .. "."), d, cfg)
  if not cfg.tie_word_embeddings then declare(m, "lm_head.weight", { V, d }, "normal") end
  return m
end

-- hb.models.new(config [, {seed = n}]) — a freshly initialised model (fla's _init_weights,
-- docs/mixers.md#initialisation)
function models.new(cfg, opts)
  local m = build(cfg)
  if opts and opts.seed then hb.manual_seed(opts.seed) end
  local std = m.config.initializer_range
  for _, name in ipairs(m._order) do
    m.params[name] = init_param(m._spec[name], std):requires_grad(true)
  end
  return m
end

-- Build from config + a name → tensor table, checking names and shapes.
function models.from_tensors(cfg, tensors, where)
  local m = build(cfg)
  where = where or "checkpoint"
  local used = {}
  for _, name in ipairs(m._order) do
    local t = tensors[name]
    if not t then
      user_error(string.format("%s: tensor '%s' is missing (config %s implies it)", where, name, m.config.model_type), 0)
    end
    local want = m._spec[name].shape
    local got = t:shape()
    local same = #got == #want
    for k = 1, #want do same = same and got[k] == want[k] end
    if not same then
      user_error(string.format("%s: tensor '%s' has shape %s but the config implies %s", where, name, shape_str(got), shape_str(want)), 0)
    end
    if t:dtype() ~= "float32" and t:dtype() ~= "float64" then   -- integer data is no weight: never convert it
      user_error(string.format("%s: tensor '%s' holds integer data (%s); a parameter needs F32, BF16, F16 or F64", where, name, t:dtype()), 0)
    end
    if t:dtype() ~= "float32" then t = t:float() end
    m.params[name] = t:requires_grad(true)
    used[name] = true
  end
  if m.config.tie_word_embeddings then used["lm_head.weight"] = true end
  local extra = {}
  for name in pairs(tensors) do if not used[name] then extra[#extra + 1] = name end end
  if #extra > 0 then
    table.sort(extra)
    user_error(string.format("%s: unexpected tensor '%s' (not part of a %s model with this config)", where, extra[1], m.config.model_type), 0)
  end
  return m
end

local function exists(path) return hb.io.file_kind(path) ~= nil end   -- never opens (a FIFO would block)

-- hb.load_pretrained(dir): config.json + model.safetensors (or a sharded index)
function models.load_pretrained(dir)
  local cpath = dir .. "/config.json"
  if not exists(cpath) then user_error("load_pretrained: " .. cpath .. " not found", 2) end
  local cfg = hb.io.read_json(cpath)
  local ok, tensors = pcall(hb.io.load_safetensors, dir)
  if not ok then user_error("load_pretrained: " .. tostring(tensors), 2) end
  local ok2, m = pcall(models.from_tensors, cfg, tensors, dir)
  if not ok2 then errors.rethrow(m, "load_pretrained: ") end
  return m
end

function Model:named_parameters()
  local i = 0
  return function()
    i = i + 1
    local name = self._order[i]
    if name then return name, self.params[name] end
  end
end

function Model:parameters()
  local out = {}
  for _, name in ipairs(self._order) do out[#out + 1] = self.params[name] end
  return out
end

function Model:num_parameters()
  local n = 0
  for _, name in ipairs(self._order) do n = n + self.params[name]:numel() end
  return n
end

-- names that fla's training recipes exclude from weight decay (docs/mixers.md#initialisation): A_log,
-- dt_bias (declared with no_decay), biases
function Model:no_weight_decay(name)
  local s = self._spec[name]
  return (s and s.no_decay) or name:sub(-4) == "bias"
end

function Model:set_mode(mode)
  if mode ~= "chunk" and mode ~= "recurrent" then
    user_error("set_mode: mode must be 'chunk' or 'recurrent' (got " .. tostring(mode) .. ")", 2)
  end
  self.mode = mode
  return self
end

local function lm_weight(self)
  return self.params["lm_head.weight"] or self.params[self._names.embeddings]
end

local function to_ids(ids)
  if type(ids) == "table" then
    if type(ids[1]) ~= "table" then user_error("forward: ids must be a [B, T] tensor or a table of tables", 3) end
    return hb.tensor(ids, "int64")
  end
  if ids:dim() ~= 2 then user_error("forward: ids must have shape [B, T], got [" .. table.concat(ids:shape(), ", ") .. "]", 3) end
  return ids
end

-- hidden states through every block; cache (optional) is a model cache for decoding
function Model:hidden(ids, cache)
  local def, names = self._def, self._names
  local h = hb.embedding(self.params[names.embeddings], ids)
  local prepared = def.prepare and def.prepare(self) or nil
  local block = def.block or models.standard_block
  for li, layer in ipairs(self.layers) do
    local i = li - 1
    local lcache = cache and cache.layers[li] or nil
    local ctx = { m = self, i = i, W = self.params, cache = lcache, mode = self.mode, prepared = prepared,
                  layer = layer, prefix = layer.prefix }
    local function W(name) return common.W(ctx, name) end
    local function mix(x)
      local ok, y = pcall(layer.def.forward, ctx, x, layer.opts, W)
      if not ok then errors.rethrow(y, string.format("layer %d (%s): ", i, layer.kind)) end
      return y
    end
    local bctx = { m = self, i = i, W = self.params, cache = lcache, mode = self.mode, prepared = prepared,
                   layer = layer, prefix = layer.block_prefix }
    h = block.forward(bctx, h, mix)
  end
  local final = def.final_norm or models.standard_final_norm
  return final.forward({ m = self, W = self.params, prefix = names.model .. "." .. names.final_norm .. "." }, h)
end

-- logits [B, T, V]
function Model:forward(ids)
  ids = to_ids(ids)
  return hb.linear(self:hidden(ids), lm_weight(self))
end

-- mean next-token cross-entropy (docs/mixers.md#the-model); labels default to ids (shifted inside)
function Model:loss(ids, labels)
  ids = to_ids(ids)
  labels = labels and to_ids(labels) or ids
  local B, T = ids:size(1), ids:size(2)
  if T < 2 then user_error("loss: need at least 2 tokens per row", 2) end
  local h = self:hidden(ids):narrow(2, 1, T - 1)
  local logits = hb.linear(h, lm_weight(self)):view(B * (T - 1), -1)
  local tgt = labels:narrow(2, 2, T - 1):contiguous():view(B * (T - 1))
  return hb.cross_entropy(logits, tgt, -100)
end

-- ---- decoding -------------------------------------------------------------------------------------
local Cache = {}
Cache.__index = Cache
-- the bytes the cache holds: per layer what its mixer's def.cache_bytes(layer cache, layer) says
-- (attention counts only the KV positions filled), else every tensor in the layer's table in full
function Cache:nbytes()
  local n = 0
  for li, lc in ipairs(self.layers) do
    local layer = self._layers[li]
    if layer.def.cache_bytes then
      n = n + layer.def.cache_bytes(lc, layer)
    else
      for _, t in pairs(lc) do
        if type(t) == "userdata" then n = n + t:nbytes() end
      end
    end
  end
  return n
end

function Model:new_cache(B)
  local c = setmetatable({ B = B or 1, layers = {}, pos = 0, _layers = self.layers }, Cache)
  for li = 1, #self.layers do c.layers[li] = {} end
  return c
end

-- one column of ids [B] or [B,1] (tensor or table) → logits [B, V] for the next position
function Model:step(ids, cache)
  if type(ids) == "table" then
    local col = {}
    for b = 1, #ids do col[b] = { type(ids[b]) == "table" and ids[b][1] or ids[b] } end
    ids = hb.tensor(col, "int64")
  elseif ids:dim() == 1 then
    ids = ids:view(ids:size(1), 1)
  end
  if ids:size(1) ~= cache.B then
    user_error(string.format("step: ids have %d rows but the cache was made for batch %d (m:new_cache(B))", ids:size(1), cache.B), 2)
  end
  return hb.no_grad(function()
    local h = self:hidden(ids, cache)
    cache.pos = cache.pos + ids:size(2)
    local logits = hb.linear(h, lm_weight(self))
    return logits:select(2, logits:size(2))
  end)
end

-- prefill a cache with a [B, T] prompt; returns logits of the last position [B, V]
function Model:prefill(ids, cache)
  ids = to_ids(ids)
  if ids:size(1) ~= cache.B then
    user_error(string.format("prefill: ids have %d rows but the cache was made for batch %d (m:new_cache(B))", ids:size(1), cache.B), 2)
  end
  return hb.no_grad(function()
    local h = self:hidden(ids, cache)
    cache.pos = cache.pos + ids:size(2)
    local last = h:narrow(2, ids:size(2), 1)
    return hb.linear(last, lm_weight(self)):select(2, 1)
  end)
end

-- greedy (temperature 0) or sampled generation; returns a table of B lists of new token ids
function Model:generate(prompt, n, opts)
  opts = opts or {}
  prompt = to_ids(prompt)
  local B = prompt:size(1)
  local temp = opts.temperature or 0
  local rng_seed = opts.seed
  if rng_seed then hb.manual_seed(rng_seed) end
  local cache = self:new_cache(B)
  local logits = self:prefill(prompt, cache)
  local out = {}
  for b = 1, B do out[b] = {} end
  for step = 1, n do
    local nxt
    if temp <= 0 then
      nxt = logits:argmax(2)
    else
      local p = (logits / temp):softmax(2)
      local u = hb.rand(B, 1, "float32")
      local cs = p:cumsum(2)
      local col = {}
      for b = 1, B do
        local row = cs:select(1, b):tolist()
        local r, pick = u:get(b, 1), #row
        for j = 1, #row do if row[j] >= r then pick = j; break end end
        col[b] = pick - 1
      end
      nxt = hb.tensor(col, "int64")
    end
    local ids = {}
    for b = 1, B do
      local t = nxt:get(b)
      out[b][step] = t
      ids[b] = { t }
    end
    if step < n then logits = self:step(ids, cache) end
  end
  return out
end

-- ---- saving ----------------------------------------------------------------------------------------
function Model:state_dict()
  local t = {}
  for _, name in ipairs(self._order) do t[name] = self.params[name] end
  return t
end

-- save_pretrained(dir [, {dtype = "bf16"}]): config.json + model.safetensors as fla writes them
-- the config as config.json stores it (public fields only; what resume compares)
function Model:to_config() return C.to_json(self.config) end

function Model:save_pretrained(dir, opts)
  hb.data.mkdir(dir)
  local cfg = self:to_config()
  cfg.dtype = (opts and opts.dtype == "bf16") and "bfloat16" or "float32"
  cfg.torch_dtype = cfg.dtype
  cfg.transformers_version = cfg.transformers_version or "4.53.0"
  hb.io.save_safetensors(dir .. "/model.safetensors", self:state_dict(), { format = "pt" }, opts)
  hb.io.write_json(dir .. "/config.json", cfg)
  hb.io.write_json(dir .. "/generation_config.json", {
    _from_model_config = true, bos_token_id = self.config.bos_token_id, eos_token_id = self.config.eos_token_id,
    transformers_version = cfg.transformers_version })
end

models.Model = Model
models.register_mixer = registry.register
-- the registered mixers, name → def (read-only; built-ins included)
models.mixers = registry.view
models.normalize_config = C.normalize
return models
