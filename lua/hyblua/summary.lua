-- hyblua/summary.lua — what the REPL shows for a model, a decode cache and a model's config (their
-- __tostring, installed by models.lua; print(m), tostring(c) and a bare `m` at the prompt use them).
--   model:  type, depth and the layer stack as a schedule string (hb.schedule.describe: A attention,
--           C custom, else the type's letter), parameters by group, the decode memory (recurrent and
--           convolution state per sequence, KV bytes per token of context), dtype and mode
--   cache:  rows, position, bytes, then one line per layer with its tensors' shapes and bytes
--   config: the public fields (what config.json stores), one `key = value` a line, sorted
local hb = require "hyblua.binding"
local schedule = require "hyblua.schedule"

local S = {}

-- 1234567 → "1,234,567"
local function commas(n)
  local s = string.format("%d", math.floor(n + 0.5))
  local sign, digits = s:match("^(-?)(%d+)$")
  digits = digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
  return sign .. digits
end
S.commas = commas

local function bytes(b)
  if b >= 2 ^ 30 then return string.format("%.1f GiB", b / 2 ^ 30) end
  if b >= 2 ^ 20 then return string.format("%.1f MiB", b / 2 ^ 20) end
  if b >= 2 ^ 10 then return string.format("%.1f KiB", b / 2 ^ 10) end
  return string.format("%d B", b)
end
S.bytes = bytes

local function shape(t) return "[" .. table.concat(t:shape(), ", ") .. "]" end
local function is_tensor(v) return type(v) == "userdata" and pcall(function() return v:dim() end) end

-- the group of a parameter name: embeddings, attention / mixers (the layer's mixer), mlp, norms,
-- lm_head, other (model-level parameters such as HGRN's lower bounds)
local function groups(m)
  local order = { "embeddings", "attention", "mixers", "mlp", "norms", "lm_head", "other" }
  local n = {}
  for _, g in ipairs(order) do n[g] = 0 end
  local prefixes = {}
  for _, L in ipairs(m.layers) do prefixes[#prefixes + 1] = { L.prefix, L.kind == "attention" and "attention" or "mixers" } end
  for name, p in m:named_parameters() do
    local g
    if name == m._names.embeddings then g = "embeddings"
    elseif name == "lm_head.weight" then g = "lm_head"
    else
      for _, pre in ipairs(prefixes) do
        if name:sub(1, #pre[1]) == pre[1] then g = pre[2]; break end
      end
      if not g then
        if name:find("%.mlp%.") then g = "mlp"
        elseif name:find("norm") then g = "norms"
        else g = "other" end
      end
    end
    n[g] = n[g] + p:numel()
  end
  local parts = {}
  for _, g in ipairs(order) do if n[g] > 0 then parts[#parts + 1] = g .. " " .. commas(n[g]) end end
  return table.concat(parts, ", ")
end

-- decode memory: state + conv bytes per sequence, KV bytes per token (nil parts when a mixer does not say)
local function decode_memory(m)
  local cfg = m.config
  local state, kv, unknown, window = 0, 0, {}, nil
  for _, L in ipairs(m.layers) do
    local d = L.def
    if d.state_bytes then
      local st, cv = d.state_bytes(L, cfg)
      state = state + (st or 0) + (cv or 0)
    else
      unknown[#unknown + 1] = tostring(L.index)
    end
    if d.kv_bytes then
      kv = kv + d.kv_bytes(L, cfg, 1)
      if L.window and L.window > 0 then window = math.max(window or 0, L.window) end
    end
  end
  local s = string.format("state %s per sequence, KV %s per token", bytes(state), bytes(kv))
  if window then s = s .. string.format(" (windowed layers stop growing at %d tokens)", window) end
  if #unknown > 0 then s = s .. " (layers " .. table.concat(unknown, ", ") .. " declare no state_bytes)" end
  return s
end

function S.model(m)
  local cfg = m.config
  local ok, stack = pcall(schedule.describe, cfg)
  if not ok then stack = "?" end
  local lines = {
    string.format("hyblua.Model(%s, %d layers: %s)", tostring(cfg.model_type), #m.layers, stack),
    string.format("  parameters %s: %s", commas(m:num_parameters()), groups(m)),
    "  decode     " .. decode_memory(m),
    string.format("  hidden_size %d, vocab_size %d, dtype float32, mode %s", cfg.hidden_size, cfg.vocab_size, m.mode),
  }
  return table.concat(lines, "\n")
end

-- one layer cache: "name [shape] ..., N B"
local function layer_line(lc)
  local keys = {}
  for k, v in pairs(lc) do if is_tensor(v) then keys[#keys + 1] = tostring(k) end end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. " " .. shape(lc[k]) end
  if lc.pos then parts[#parts + 1] = "pos " .. tostring(lc.pos) end
  return #parts > 0 and table.concat(parts, ", ") or "empty"
end

function S.cache(c)
  local lines = { string.format("hyblua.Cache(B = %d, pos = %d, %s)", c.B, c.pos, bytes(c:nbytes())) }
  for li, lc in ipairs(c.layers) do
    local layer = c._layers[li]
    local head = string.format("  layer %d (%s): ", layer.index, layer.kind)
    local rows = c.split and c.split[li]
    if rows then
      local parts = {}
      for b, rc in ipairs(rows) do parts[b] = "row " .. b .. ": " .. layer_line(rc) end
      lines[#lines + 1] = head .. "per row; " .. table.concat(parts, "; ") .. ", " .. bytes(c:layer_bytes(li))
    else
      lines[#lines + 1] = head .. layer_line(lc) .. ", " .. bytes(c:layer_bytes(li))
    end
  end
  return table.concat(lines, "\n")
end

local function value(v)
  if v == hb.io.null then return "null" end
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then
    local ok, s = pcall(hb.io.encode_json, v)
    return ok and s or tostring(v)
  end
  return tostring(v)
end

-- cfg: a normalised config; public: the fields config.json stores (to_json)
function S.config(public)
  local keys = {}
  for k in pairs(public) do keys[#keys + 1] = k end
  table.sort(keys)
  local w = 0
  for _, k in ipairs(keys) do w = math.max(w, #k) end
  local lines = { "hyblua config {" }
  for _, k in ipairs(keys) do lines[#lines + 1] = string.format("  %-" .. w .. "s = %s", k, value(public[k])) end
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n")
end

return S
