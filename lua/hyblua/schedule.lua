-- hyblua/schedule.lua — where the full-attention layers of a hybrid go.
--
-- A schedule is resolved against the model depth L (num_hidden_layers) into fla's `attn` spec
-- ({layers = {...}, num_heads = ..., ...}) when the model is built; layer indices are 0-based, as in
-- config.json.
--   hb.schedule.ratio(r, spec)   r linear layers, then one attention layer, repeated: attention at
--                                layers r, 2r+1, 3r+2, ... (i.e. i % (r+1) == r). When L is not a
--                                multiple of r+1 the last L % (r+1) layers are linear (the stack is
--                                not padded or shifted); e.g. ratio(3) over 10 layers → {3, 7}.
--   hb.schedule.every(n, spec)   attention on every n-th layer: same as ratio(n-1).
--   hb.schedule.layers(list, spec) / hb.schedule.layers{3, 7, num_heads = 4}  explicit indices.
--   hb.schedule.fn(f, spec)      any Lua function f(i, L) → true for attention at 0-based layer i.
--   hb.schedule.none()           pure linear (no attention).
-- A plain Lua function carries no attention spec, so wrap it: hb.schedule.fn(f, {num_heads = 4}).
-- A spec's keys are checked when the schedule is made (the attention mixer's spec fields: num_heads,
-- num_kv_heads, qkv_bias, window_size, rope_theta); an unknown one raises with a did-you-mean.
local config = require "hyblua.config"
local user_error = require("hyblua.errors").user_error
local registry = require "hyblua.mixers"

local S = {}
local Sched = {}
Sched.__index = Sched

-- the string keys of spec must be fields of an attention spec (`layers` comes from the schedule)
local function check_spec(spec, who)
  if spec == nil then return {} end
  if type(spec) ~= "table" then user_error(who .. ": the attention spec must be a table (got " .. type(spec) .. ")", 3) end
  local named = {}
  for k, v in pairs(spec) do if type(k) == "string" then named[k] = v end end
  local known = {}
  for k in pairs(registry.get("attention").options) do known[k] = true end
  local ok, err = pcall(config.check_keys, named, known, who, "config key")
  if not ok then user_error(err, 3) end
  if named.layers ~= nil then user_error(who .. ": the attention spec must not set layers (the schedule places them)", 3) end
  return spec
end

local function make(pick, spec, name)
  return setmetatable({ pick = pick, spec = spec, name = name }, Sched)
end

-- depths are checked before any loop over them: a typo'd 2^40 must not hang the REPL
local MAX_DEPTH = 1 << 20
local function check_depth(L, who)
  if math.type(L) ~= "integer" or L < 0 or L > MAX_DEPTH then
    user_error(string.format("%s: the number of layers must be an integer in [0, %d], got %s", who, MAX_DEPTH, tostring(L)), 3)
  end
end

-- the fla attn spec for depth L (nil when no layer is attention)
function Sched:resolve(L)
  check_depth(L, "schedule '" .. tostring(self.name) .. "'")
  local layers = {}
  for i = 0, L - 1 do if self.pick(i, L) then layers[#layers + 1] = i end end
  if #layers == 0 then return nil end
  local out = { layers = layers }
  for k, v in pairs(self.spec) do if type(k) == "string" then out[k] = v end end
  if not out.num_heads then
    user_error("schedule '" .. self.name .. "': the attention spec needs num_heads", 3)
  end
  return out
end

function S.ratio(r, spec)
  if math.type(r) ~= "integer" or r < 1 then user_error("schedule.ratio: r must be a positive integer", 2) end
  spec = check_spec(spec, "schedule.ratio")
  return make(function(i) return i % (r + 1) == r end, spec, r .. ":1")
end

function S.every(n, spec)
  if math.type(n) ~= "integer" or n < 1 then user_error("schedule.every: n must be a positive integer", 2) end
  spec = check_spec(spec, "schedule.every")
  return make(function(i) return i % n == n - 1 end, spec, "every " .. n)
end

function S.layers(list, spec)
  spec = spec or list
  local set = {}
  for _, i in ipairs(list) do
    if math.type(i) ~= "integer" then user_error("schedule.layers: indices must be integers", 2) end
    set[i] = true
  end
  local s = {}
  for k, v in pairs(spec) do if type(k) == "string" then s[k] = v end end
  check_spec(s, "schedule.layers")
  return make(function(i, L)
    return set[i] == true
  end, s, "layers")
end

function S.fn(f, spec)
  spec = check_spec(spec, "schedule.fn")
  return make(function(i, L) return f(i, L) and true or false end, spec, "function")
end

function S.none() return make(function() return false end, {}, "pure") end

function S.is_schedule(x) return getmetatable(x) == Sched end

-- resolve whatever a user put in cfg.attn (schedule, function, spec, list of specs) for depth L
function S.resolve(attn, L, spec)
  if type(attn) == "function" then attn = S.fn(attn, spec) end
  if S.is_schedule(attn) then return attn:resolve(L) end
  return attn
end

-- the layer stack as a string, one letter a layer: A softmax attention, C a custom (Lua-defined) mixer,
-- else the letter of the model type's mixer (def.letter; L for the linear mixers, A for transformer)
-- — e.g. "LLLALLLA"
function S.describe(cfg)
  local L = cfg.num_hidden_layers
  check_depth(L, "schedule.describe")
  local def = registry.for_model_type(cfg.model_type)
  local native = def and def.letter or "L"
  local at = {}
  local attn = cfg.attn
  if type(attn) == "table" then
    local list = attn.layers and { attn } or attn
    for _, s in ipairs(list) do for _, i in ipairs(s.layers or {}) do at[i] = true end end
  end
  local custom = {}
  for _, c in ipairs(cfg.custom_mixers or {}) do
    if type(c.layers) == "table" then for _, i in ipairs(c.layers) do custom[i] = true end end
  end
  local out = {}
  for i = 0, L - 1 do out[#out + 1] = at[i] and "A" or (custom[i] and "C" or native) end
  return table.concat(out)
end

return S
