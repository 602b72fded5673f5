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
local generate = require "hyblua.generate"
local summary = require "hyblua.summary"

local models = {}
local Model = {}
Model.__index = Model
-- printing a model (the REPL): type, layer stack, parameters by group, decode memory, dtype, mode
Model.__name = "hyblua.Model"
Model.__tostring = function(m) return summary.model(m) end
-- m.config prints as its public fields, one a line (it stays a plain table for everything else)
local ConfigMeta = { __name = "hyblua.Config", __tostring = function(cfg) return summary.config(C.to_json(cfg)) end }

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
--   declare(add, i, cfg, mixer, standard)  add(name, ...) declares model.layers.<i>.<name>; mixer()
--                                declares the mixer's parameters at that point (exactly once)
--   forward(ctx, h, mix, standard) → h  ctx as a mixer's, with ctx.prefix = "model.layers.<i>." and
--                                ctx.cache the block's own decode cache (its state beside the mixer's,
--                                e.g. RWKV-7's channel-mix token shift; nil for full sequences); mix(x)
--                                runs the layer's mixer
--   state_bytes(cfg) (optional)  bytes per sequence of that state (float32), for hb.eval.efficiency
-- `standard` is this block, for a type's block that hands some layers to it (Mamba-2's hybrid
-- attention layers)
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
    local what = string.format("custom_mixers[%d]", k)
    local where = "config: " .. what
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
    C.check_types(entry, def.options or {}, what, "boolean")   -- true or false, not "yes"
    local spec = {}
    for key, v in pairs(def.options or {}) do spec[key] = v end
    for key, v in pairs(entry) do spec[key] = v end
    local layers = spec.layers
    if schedule.is_schedule(layers) then
      local r = layers.pick
      layers = {}
      for i = 0, L - 1 do if r(i, L) then layers[#layers + 1] = i end end
    end
    if layers == nil or layers == hb.io.null then
      user_error(string.format("%s.layers is required (a list of 0-based layer indices or a schedule)", where), 0)
    end
    local bad = type(layers) ~= "table" and (type(layers) == "function" and "a function" or C.show(layers))
    for key in pairs(type(layers) == "table" and layers or {}) do   -- a list: keys 1..n only
      if not bad and (math.type(key) ~= "integer" or key < 1 or key > #layers) then bad = "a table with key " .. C.show(key) end
    end
    if bad then
      user_error(string.format("%s.layers must be a list of 0-based layer indices or a schedule (got %s)", where, bad), 0)
    end
    for _, i in ipairs(layers) do
      if math.type(i) ~= "integer" or i < 0 or i >= L then
        user_error(string.format("%s.layers: %s is not a layer index in [0, %d)", where, tostring(i), L), 0)
      end
      if at[i] then user_error(string.format("config: layer %d appears twice in custom_mixers", i), 0) end
      at[i] = spec
    end
    spec.layers = layers
    if def.check_options then def.check_options(spec, cfg, what) end
    C.check_types(spec, def.options or {}, what, "number")   -- finite
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
  if getmetatable(cfg) == nil then setmetatable(cfg, ConfigMeta) end
  local names = names_of(tdef)
  local m = setmetatable({ config = cfg, _order = {}, _spec = {}, params = {}, mode = "chunk", layers = {},
                           _def = tdef, _names = names }, Model)
  local d, L, V = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
  -- a lower bound first (embeddings + every layer's MLP), so a huge num_hidden_layers fails at once
  local least = 1.0 * V * d + (tdef.block and 0 or 3.0 * L * d * cfg._mlp)
  if least > models.max_params then user_error(too_big(least), 0) end
  local inits = tdef.model_inits and tdef.model_inits(cfg) or {}
  declare(m, names.embeddings, { V, d }, inits.embeddings or "normal")
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
    end, models.standard_block)
    if declared ~= 1 then
      user_error(string.format("config: the block of model_type '%s' declared the mixer of layer %d %d times (once expected)",
        cfg.model_type, i, declared), 0)
    end
    m.layers[i + 1] = layer
  end
  local final = tdef.final_norm or models.standard_final_norm
  final.declare(adder(m, names.model .. "." .. names.final_norm .. "."), d, cfg)
  if not cfg.tie_word_embeddings then declare(m, "lm_head.weight", { V, d }, inits.lm_head or "normal") end
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

-- ---- packed batches -----------------------------------------------------------------------------------
-- A packed batch is fla's varlen form: ids [1, total] holding N documents back to back and cu_seqlens, the
-- N+1 document starts 0 = cu[1] <= ... <= cu[N+1] = total (an int64 tensor or a Lua list). Every mixer
-- runs each document as if alone; the loss predicts no token across a boundary. It is given either as
-- the table {ids = ..., cu_seqlens = ...} in place of ids (what hb.data's packed batches are) or as
-- opts.cu_seqlens beside ids.

-- the checked int64 tensor of a packed batch's cu_seqlens (who names the function in messages)
local function check_seqlens(cu, ids, who)
  local B, T = ids:size(1), ids:size(2)
  if B ~= 1 then
    user_error(string.format("%s: a packed batch is one row of documents back to back: ids [1, total] with cu_seqlens " ..
      "(got ids [%d, %d])", who, B, T), 3)
  end
  if type(cu) == "table" and getmetatable(cu) == nil then cu = hb.tensor(cu, "int64") end
  if type(cu) ~= "userdata" or (cu:dtype() ~= "int64" and cu:dtype() ~= "int32") or cu:dim() ~= 1 then
    user_error(who .. ": cu_seqlens must be a list of integers or an int64 tensor [N+1] (the document starts, then " ..
      "the total length)", 3)
  end
  local v = cu:tolist()
  if #v < 2 then user_error(string.format("%s: cu_seqlens needs N+1 >= 2 entries, got %d", who, #v), 3) end
  if v[1] ~= 0 then user_error(string.format("%s: cu_seqlens must start at 0, got %s", who, tostring(v[1])), 3) end
  for j = 2, #v do
    if v[j] < v[j - 1] then
      user_error(string.format("%s: cu_seqlens must be non-decreasing (entry %d is %d, after %d)", who, j, v[j], v[j - 1]), 3)
    end
  end
  if v[#v] ~= T then
    user_error(string.format("%s: cu_seqlens must end at %d, the number of packed tokens (got %d)", who, T, v[#v]), 3)
  end
  return cu:dtype() == "int64" and cu or cu:long()
end

-- ids (and the checked cu_seqlens, or nil) of a forward's first argument and opts
local function batch_of(ids, opts, who)
  local cu = opts and opts.cu_seqlens
  if type(ids) == "table" and ids.ids ~= nil then
    cu = cu or ids.cu_seqlens
    ids = ids.ids
  end
  ids = to_ids(ids)
  if cu == nil then return ids, nil end
  return ids, check_seqlens(cu, ids, who)
end

-- hb.models.pack(docs) → {ids = int64 [1, total], cu_seqlens = int64 [N+1]}: documents (int64 tensors of
-- any shape, read in order, or Lua lists of ids) packed back to back
function models.pack(docs)
  if type(docs) ~= "table" then user_error("pack: expected a list of documents (tensors or lists of ids)", 2) end
  local flat, cu = {}, { 0 }
  for n, d in ipairs(docs) do
    local ids = d
    if type(d) == "userdata" then
      local ok, l = pcall(function() return d:contiguous():view(d:numel()):tolist() end)
      if not ok then user_error(string.format("pack: document %d: %s", n, tostring(l)), 2) end
      ids = l
    elseif type(d) ~= "table" then
      user_error(string.format("pack: document %d must be a tensor or a list of ids, got %s", n, type(d)), 2)
    end
    for _, t in ipairs(ids) do flat[#flat + 1] = t end
    cu[#cu + 1] = #flat
  end
  if #cu < 2 then user_error("pack: no documents", 2) end
  return { ids = hb.tensor({ flat }, "int64"), cu_seqlens = hb.tensor(cu, "int64") }
end

-- every layer of a packed forward must keep its documents apart: its def declares packed = true (and so
-- does the model type's def, whose block, final norm and prepare run too)
local function check_packed(self)
  local function refuse(what)
    user_error(what .. " does not handle packed sequences (its def lacks packed = true): a packed batch would let " ..
      "its documents see each other; run them as separate rows instead", 0)
  end
  if not self._def.packed then refuse(string.format("model_type '%s'", self.config.model_type)) end
  for li, layer in ipairs(self.layers) do
    if not layer.def.packed then
      refuse(string.format("layer %d (%s): mixer '%s'", li - 1, layer.kind, layer.mixer))
    end
  end
end

-- the layer's mixer on x; rows (a decode cache's split[li], made by generate for prompts of different
-- lengths): one cache per row, so the mixer runs row by row, each row with its own cache
local function run_mixer(layer, ctx, x, W, rows)
  if not rows then return layer.def.forward(ctx, x, layer.opts, W) end
  if #rows ~= x:size(1) then error(string.format("decode cache: %d rows, ids have %d", #rows, x:size(1)), 0) end
  local ys = {}
  for b, rc in ipairs(rows) do
    local c = {}
    for k, v in pairs(ctx) do c[k] = v end
    c.cache = rc
    ys[b] = layer.def.forward(c, x:narrow(1, b, 1), layer.opts, function(name) return common.W(c, name) end)
  end
  return hb.cat(ys, 1)
end

-- hidden states through every block; cache (optional) is a model cache for decoding; cu (checked) the
-- packed documents' starts or nil
local function hidden(self, ids, cache, cu)
  if cu and cache then
    user_error("hidden: a decode cache holds one sequence per row; packed batches (cu_seqlens) are for full " ..
      "forwards (prefill each document as its own row)", 0)
  end
  if cu then check_packed(self) end
  local def, names = self._def, self._names
  local h = hb.embedding(self.params[names.embeddings], ids)
  local prepared = def.prepare and def.prepare(self) or nil
  local block = def.block or models.standard_block
  for li, layer in ipairs(self.layers) do
    local i = li - 1
    local lcache = cache and cache.layers[li] or nil
    local ctx = { m = self, i = i, W = self.params, cache = lcache, mode = self.mode, prepared = prepared,
                  layer = layer, prefix = layer.prefix, cu_seqlens = cu }
    local function W(name) return common.W(ctx, name) end
    local rows = cache and cache.split and cache.split[li]
    local function mix(x)
      local ok, y = pcall(run_mixer, layer, ctx, x, W, rows)
      if not ok then errors.rethrow(y, string.format("layer %d (%s): ", i, layer.kind)) end
      return y
    end
    local bctx = { m = self, i = i, W = self.params, cache = cache and cache.blocks[li] or nil, mode = self.mode,
                   prepared = prepared, layer = layer, prefix = layer.block_prefix, cu_seqlens = cu }
    h = block.forward(bctx, h, mix, models.standard_block)
  end
  local final = def.final_norm or models.standard_final_norm
  return final.forward({ m = self, W = self.params, prefix = names.model .. "." .. names.final_norm .. ".",
                         cu_seqlens = cu }, h)
end

-- hidden states [B, T, d] through every block. ids: [B, T] (or a packed batch, see above); cache
-- (optional) a model cache for decoding; opts.cu_seqlens: packed documents (no cache then)
function Model:hidden(ids, cache, opts)
  local cu
  ids, cu = batch_of(ids, opts, "hidden")
  return hidden(self, ids, cache, cu)
end

-- logits [B, T, V]; ids [B, T], or a packed batch (ids [1, total] and cu_seqlens: opts.cu_seqlens or
-- {ids =, cu_seqlens =} in place of ids), each document's logits as if it ran alone
function Model:forward(ids, opts)
  local cu
  ids, cu = batch_of(ids, opts, "forward")
  return hb.linear(hidden(self, ids, nil, cu), lm_weight(self))
end

-- fla's l2_warp (docs/mixers.md#the-model): a term whose value is exactly 0 and whose gradient is
-- factor·m at the arg-max of every position's logits, m the max logit, factor = 1e-4 / (B·T) (every
-- position of logits [B, T, V], the last one included)
local L2WARP = 1e-4
local function l2warp(logits)
  local m = logits:max(-1)
  local md = m:detach()
  local factor = L2WARP / (logits:size(1) * logits:size(2))
  return ((m:square() - md:square()) * (0.5 * factor)):sum()
end

-- mean cross-entropy of hidden states h [B, T, d] predicting tgt [B·(T−1)] (−100 ignored); with
-- config.use_l2warp the l2_warp term over all T positions' logits is added
local function next_token_loss(self, h, tgt)
  local B, T = h:size(1), h:size(2)
  local all = self.config.use_l2warp == true and hb.linear(h, lm_weight(self)) or nil
  local logits = all and all:narrow(2, 1, T - 1) or hb.linear(h:narrow(2, 1, T - 1), lm_weight(self))
  local loss = hb.cross_entropy(logits:contiguous():view(B * (T - 1), -1), tgt, -100)
  return all and loss + l2warp(all) or loss
end

-- the loss of a packed batch: token t predicts labels[t+1] only inside its document (the last token of
-- every document predicts nothing), so it is the mean over all documents' targets of each one's loss alone
local function packed_loss(self, ids, labels, cu)
  local T = ids:size(2)
  if labels:size(1) ~= 1 or labels:size(2) ~= T then
    user_error(string.format("loss: labels must be [1, %d] like the packed ids, got [%s]", T,
      table.concat(labels:shape(), ", ")), 3)
  end
  local ends, masked = cu:tolist(), {}
  for j = 2, #ends do
    local last = ends[j] - 1 -- 0-based position of document j-1's last token: it predicts nothing
    if ends[j] > ends[j - 1] and last < T - 1 then masked[#masked + 1] = last end
  end
  if T - 1 - #masked < 1 then user_error("loss: the packed batch has no targets (every document has fewer than 2 tokens)", 3) end
  local tgt = labels:narrow(2, 2, T - 1):contiguous():view(T - 1):clone()
  for _, p in ipairs(masked) do tgt:set(-100, p + 1) end
  return next_token_loss(self, hidden(self, ids, nil, cu), tgt)
end

-- mean next-token cross-entropy (docs/mixers.md#the-model); labels default to ids (shifted inside). A
-- packed batch (ids [1, total] with cu_seqlens in opts or in place of ids) predicts no target across a
-- document boundary. With config.use_l2warp the gradient also gets fla's l2_warp term (the value is
-- unchanged).
function Model:loss(ids, labels, opts)
  local cu
  ids, cu = batch_of(ids, opts, "loss")
  labels = labels and to_ids(labels) or ids
  if cu then return packed_loss(self, ids, labels, cu) end
  local B, T = ids:size(1), ids:size(2)
  if T < 2 then user_error("loss: need at least 2 tokens per row", 2) end
  local tgt = labels:narrow(2, 2, T - 1):contiguous():view(B * (T - 1))
  return next_token_loss(self, hidden(self, ids), tgt)
end

-- ---- decoding -------------------------------------------------------------------------------------
local Cache = {}
Cache.__index = Cache
-- the bytes the cache holds: per layer what its mixer's def.cache_bytes(layer cache, layer) says
-- (attention counts only the KV positions filled), else every tensor in the layer's table in full
-- (a layer decoded row by row, cache.split[li], counts each row's cache); plus every tensor of the
-- blocks' own caches (c.blocks, e.g. RWKV-7's channel-mix token shift)
local function tensor_bytes(tbl)
  local n = 0
  for _, t in pairs(tbl) do
    if type(t) == "userdata" then n = n + t:nbytes() end
  end
  return n
end

local function layer_cache_bytes(layer, lc)
  return layer.def.cache_bytes and layer.def.cache_bytes(lc, layer) or tensor_bytes(lc)
end

function Cache:layer_bytes(li)
  local layer, rows = self._layers[li], self.split and self.split[li]
  local n = tensor_bytes(self.blocks[li])
  if not rows then return n + layer_cache_bytes(layer, self.layers[li]) end
  for _, rc in ipairs(rows) do n = n + layer_cache_bytes(layer, rc) end
  return n
end

function Cache:nbytes()
  local n = 0
  for li = 1, #self.layers do n = n + self:layer_bytes(li) end
  return n
end

-- printing a cache (the REPL): rows, position, bytes and each layer's tensors (lua/hyblua/summary.lua)
Cache.__name = "hyblua.Cache"
Cache.__tostring = function(c) return summary.cache(c) end

-- A cache remembers the model it was made for (_model): its layer caches hold that model's tensors.
-- c.layers[li]: the mixer's decode state of layer li (ctx.cache of the mixer); c.blocks[li]: the block's
-- own decode state (ctx.cache of the block, e.g. RWKV-7's channel-mix token shift)
function Model:new_cache(B)
  local c = setmetatable({ B = B or 1, layers = {}, blocks = {}, pos = 0, _layers = self.layers, _model = self }, Cache)
  for li = 1, #self.layers do c.layers[li], c.blocks[li] = {}, {} end
  return c
end

-- "gla, 2 layers LA, hidden_size 16": what a cache mismatch names
local function describe(m)
  local c = m.config
  return string.format("%s, %d layers %s, hidden_size %d", tostring(c.model_type), c.num_hidden_layers,
    schedule.describe(c), c.hidden_size)
end
-- deep equality of two config values (JSON data)
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
-- the cache must be one made by m:new_cache for this model, or for another of the same config (a copy
-- loaded from the same checkpoint continues it); else an error naming both models
local function check_cache(self, cache, fn)
  if getmetatable(cache) ~= Cache then
    user_error(string.format("%s: the cache must be one made by m:new_cache(B) (got %s)", fn, C.show(cache)), 3)
  end
  local owner = cache._model
  if owner == self then return end
  local a, b = owner:to_config(), self:to_config()
  local keys = {}
  for k in pairs(a) do keys[#keys + 1] = k end
  for k in pairs(b) do if a[k] == nil then keys[#keys + 1] = k end end
  table.sort(keys, function(x, y)   -- model_type first: the difference that says most
    if (x == "model_type") ~= (y == "model_type") then return x == "model_type" end
    return tostring(x) < tostring(y)
  end)
  for _, k in ipairs(keys) do
    if not same(a[k], b[k]) then
      user_error(string.format("%s: the cache was made for another model (%s) than this one (%s; the configs differ in %s); " ..
        "make a cache for this model with m:new_cache(B)", fn, describe(owner), describe(self), k), 3)
    end
  end
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
  check_cache(self, cache, "step")
  if ids:size(1) ~= cache.B then
    user_error(string.format("step: ids have %d rows but the cache was made for batch %d (m:new_cache(B))", ids:size(1), cache.B), 2)
  end
  return hb.no_grad(function()
    local h = hidden(self, ids, cache)
    cache.pos = cache.pos + ids:size(2)
    local logits = hb.linear(h, lm_weight(self))
    return logits:select(2, logits:size(2))
  end)
end

-- prefill a cache with a [B, T] prompt; returns logits of the last position [B, V]
function Model:prefill(ids, cache)
  ids = to_ids(ids)
  check_cache(self, cache, "prefill")
  if ids:size(1) ~= cache.B then
    user_error(string.format("prefill: ids have %d rows but the cache was made for batch %d (m:new_cache(B))", ids:size(1), cache.B), 2)
  end
  return hb.no_grad(function()
    local h = hidden(self, ids, cache)
    cache.pos = cache.pos + ids:size(2)
    local last = h:narrow(2, ids:size(2), 1)
    return hb.linear(last, lm_weight(self)):select(2, 1)
  end)
end

-- generation (HF-style options, batches of prompts of different lengths, streaming, text):
-- lua/hyblua/generate.lua
Model.generate = generate.generate
Model.generate_text = generate.generate_text

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
