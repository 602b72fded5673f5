-- hyblua/mixers/registry.lua — the registry of token mixers: name → def. hb.models.register_mixer is
-- register() below; the built-in mixers (lua/hyblua/mixers/<name>.lua, listed in mixers/init.lua)
-- register themselves through it exactly as a user's Lua mixer does. The fields of a def are described
-- in docs/lua-api.md (hb.models.register_mixer) and docs/architecture.md ("Adding a mixer").
--
-- This module needs nothing else from the library (so a test can wrap register() before the built-ins
-- load); it checks the shape of a def, not what its functions compute.
local user_error = require("hyblua.errors").user_error

local R = {}

-- field → Lua type. Layer fields: any mixer. Model-type fields: a def that names a model_type is the
-- mixer of that model type (hb.models.new{model_type = ...}).
local FIELDS = {
  -- layer fields
  forward = "function", declare = "function", options = "table", check_options = "function", state_bytes = "function",
  kv_bytes = "function", flops = "function", cache_bytes = "function", letter = "string",
  -- model-type fields
  model_type = "string", architecture = "string", config = "table", unsupported = "table",
  validate = "function", native_options = "function", hybrid = "boolean", names = "table",
  declare_model = "function", prepare = "function", block = "table", final_norm = "table",
}
R.FIELDS = FIELDS

local defs, order, builtin = {}, {}, {}

local function fail(name, msg) user_error("register_mixer('" .. tostring(name) .. "'): " .. msg, 3) end

-- hb.models.register_mixer(name, def): add (or replace) a mixer. Built-in names cannot be replaced.
function R.register(name, def)
  if type(name) ~= "string" or name == "" or type(def) ~= "table" or type(def.forward) ~= "function" then
    user_error("register_mixer(name, {declare=fn, forward=fn, ...}): name must be a non-empty string and def a table " ..
      "with a forward function", 2)
  end
  if builtin[name] then fail(name, "'" .. name .. "' is a built-in mixer; register yours under another name") end
  for k, v in pairs(def) do
    local want = FIELDS[k]
    if not want then
      local known = {}
      for f in pairs(FIELDS) do known[f] = true end
      local near = require("hyblua.config").suggest(tostring(k), known)
      fail(name, "unknown field def." .. tostring(k) .. (near and " (did you mean '" .. near .. "'?)" or ""))
    end
    if type(v) ~= want then fail(name, string.format("def.%s must be a %s (got %s)", k, want, type(v))) end
  end
  for _, part in ipairs { "block", "final_norm" } do
    local p = def[part]
    if p and (type(p.declare) ~= "function" or type(p.forward) ~= "function") then
      fail(name, "def." .. part .. " must be a table {declare = fn, forward = fn}")
    end
  end
  local mt = def.model_type
  if mt then
    for other, d in pairs(defs) do
      if other ~= name and d.model_type == mt then
        fail(name, "model_type '" .. mt .. "' already belongs to mixer '" .. other .. "'")
      end
    end
  end
  if not defs[name] then order[#order + 1] = name end
  defs[name] = def
end

-- mark the mixers registered so far as built-in (mixers/init.lua, once the list is loaded)
function R.seal_builtins()
  for _, name in ipairs(order) do builtin[name] = true end
end

function R.is_builtin(name) return builtin[name] == true end

-- the def of a mixer, or nil
function R.get(name) return defs[name] end

-- mixer names in registration order (built-ins first, in the order of mixers/init.lua)
function R.names()
  local out = {}
  for i, n in ipairs(order) do out[i] = n end
  return out
end

-- the def whose model_type is mt, and its name (nil when no mixer declares that model type)
function R.for_model_type(mt)
  for _, name in ipairs(order) do
    if defs[name].model_type == mt then return defs[name], name end
  end
  return nil
end

-- the model types, sorted
function R.model_types()
  local out = {}
  for _, name in ipairs(order) do
    if defs[name].model_type then out[#out + 1] = defs[name].model_type end
  end
  table.sort(out)
  return out
end

-- a read-only view name → def (hb.models.mixers)
R.view = setmetatable({}, {
  __index = function(_, k) return defs[k] end,
  __newindex = function() user_error("hb.models.mixers is read-only; use hb.models.register_mixer(name, def)", 2) end,
  __pairs = function() return next, defs, nil end,
})

return R
