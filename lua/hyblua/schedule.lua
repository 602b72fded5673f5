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
return function(hb)
  local S = {}
  hb.schedule = S
  local Sched = {}
  Sched.__index = Sched

  local function make(pick, spec, name)
    spec = spec or {}
    return setmetatable({ pick = pick, spec = spec, name = name }, Sched)
  end

  -- depths are checked before any loop over them: a typo'd 2^40 must not hang the REPL
  local MAX_DEPTH = 1 << 20
  local function check_depth(L, who)
    if math.type(L) ~= "integer" or L < 0 or L > MAX_DEPTH then
      error(string.format("%s: the number of layers must be an integer in [0, %d], got %s", who, MAX_DEPTH, tostring(L)), 3)
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
      error("schedule '" .. self.name .. "': the attention spec needs num_heads", 3)
    end
    return out
  end

  function S.ratio(r, spec)
    if math.type(r) ~= "integer" or r < 1 then error("schedule.ratio: r must be a positive integer", 2) end
    return make(function(i) return i % (r + 1) == r end, spec, r .. ":1")
  end

  function S.every(n, spec)
    if math.type(n) ~= "integer" or n < 1 then error("schedule.every: n must be a positive integer", 2) end
    return make(function(i) return i % n == n - 1 end, spec, "every " .. n)
  end

  function S.layers(list, spec)
    spec = spec or list
    local set = {}
    for _, i in ipairs(list) do
      if math.type(i) ~= "integer" then error("schedule.layers: indices must be integers", 2) end
      set[i] = true
    end
    local s = {}
    for k, v in pairs(spec) do if type(k) == "string" then s[k] = v end end
    return make(function(i, L)
      return set[i] == true
    end, s, "layers")
  end

  function S.fn(f, spec)
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

  -- the layer stack as a string, one letter a layer: L linear (the model's mixer), A softmax
  -- attention, C a custom (Lua-defined) mixer — e.g. "LLLALLLA"
  function S.describe(cfg)
    local L = cfg.num_hidden_layers
    check_depth(L, "schedule.describe")
    local at = {}
    if cfg.model_type == "transformer" then return string.rep("A", L) end
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
    for i = 0, L - 1 do out[#out + 1] = at[i] and "A" or (custom[i] and "C" or "L") end
    return table.concat(out)
  end
end
