-- hyblua/tasks/util.lua — what hb.eval and its tasks (tasks/mqar.lua, niah.lua, mc.lua) share: a seeded
-- RNG independent of hb's generator, token-id and tokenizer helpers (duck-typed), the byte tokenizer,
-- a clock, logits at chosen positions, and the check of an entry point's options table (check_opts). hb.eval
-- exposes this table as hb.eval._util.
local hb = require "hyblua.binding"
local config = require "hyblua.config"
local user_error = require("hyblua.errors").user_error

local U = {}

-- ---- small deterministic RNG (splitmix64), independent of hb's global generator -----------------
-- Data generation must be reproducible from its own seed and must not disturb model initialisation.
local Rng = {}
Rng.__index = Rng
function U.rng(seed)
  return setmetatable({ s = math.tointeger(seed or 0) or math.floor(seed) }, Rng)
end
function Rng:next64()
  local z = self.s + 0x9E3779B97F4A7C15
  self.s = z
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end
-- uniform float in [0, 1)
function Rng:random() return (self:next64() >> 11) * (1.0 / 9007199254740992.0) end
-- uniform integer in [lo, hi] (inclusive; the range must be below 2^53)
function Rng:randint(lo, hi) return lo + math.floor(self:random() * (hi - lo + 1)) end
-- k distinct values of lo..hi in random order (partial Fisher–Yates; numpy's choice(replace=False))
function Rng:sample(lo, hi, k)
  local n = hi - lo + 1
  if k > n then user_error(string.format("sample: cannot take %d distinct values from %d", k, n), 2) end
  local swap, out = {}, {}
  for i = 0, k - 1 do
    local j = self:randint(i, n - 1)
    local vi, vj = swap[i] or i, swap[j] or j
    swap[j] = vi
    out[i + 1] = lo + vj
  end
  return out
end
function Rng:shuffle(t)
  for i = #t, 2, -1 do
    local j = self:randint(1, i)
    t[i], t[j] = t[j], t[i]
  end
  return t
end
function Rng:choice(t) return t[self:randint(1, #t)] end

-- ---- ids, tokenizers --------------------------------------------------------------------------------
local function is_tensor(x)
  local mt = type(x) == "userdata" and getmetatable(x)
  return type(mt) == "table" and mt.__name == "hyblua.Tensor"
end
U.is_tensor = is_tensor

-- a Lua table of integer ids from a table or a 1-D tensor
function U.ids_of(x)
  if is_tensor(x) then
    if x:dim() ~= 1 then x = x:contiguous():view(-1) end
    return x:tolist()
  end
  return x
end

function U.encode(tok, text)
  if type(tok) == "function" then return U.ids_of(tok(text)) end
  if type(tok) ~= "table" and type(tok) ~= "userdata" then user_error("tokenizer expected (object with :encode or a function)", 3) end
  return U.ids_of(tok:encode(text))
end

function U.decode(tok, ids)
  if type(tok) ~= "table" and type(tok) ~= "userdata" then user_error("decoding needs a tokenizer object with :decode", 3) end
  return tok:decode(ids)
end

-- an attribute or zero-argument method of a duck-typed object (tok.eos_id or tok:eos_id())
function U.attr(obj, ...)
  if obj == nil or type(obj) == "function" then return nil end
  for _, name in ipairs { ... } do
    local ok, v = pcall(function() return obj[name] end)
    if ok and v ~= nil then
      if type(v) == "function" then
        local ok2, r = pcall(v, obj)
        if ok2 and r ~= nil then return r end
      else
        return v
      end
    end
  end
  return nil
end

-- The byte tokenizer: ids 0..255 are byte values. Handy for tests and tokenizer-free experiments.
function U.byte_tokenizer()
  return {
    vocab_size = 256,
    encode = function(_, s) return { s:byte(1, -1) } end,
    decode = function(_, ids)
      ids = U.ids_of(ids)
      local parts = {}
      for i = 1, #ids, 4096 do
        parts[#parts + 1] = string.char(table.unpack(ids, i, math.min(#ids, i + 4095)))
      end
      return table.concat(parts)
    end,
  }
end

-- the option tables of the entry points: an unknown key is a user error with hb.config's did-you-mean
-- suggestion ("hb.eval.lm: unknown key 'max_token' (did you mean 'max_tokens'?)")
function U.check_opts(opts, known, who)
  if opts == nil then return end
  if type(opts) ~= "table" then user_error(who .. ": options must be a table, got " .. type(opts), 3) end
  config.check_keys(opts, known, who)
end

-- monotonic wall-clock seconds
function U.now() return hb.now() end

-- ---- logits at chosen positions ----------------------------------------------------------------------
-- model, ids [B,T] int64, flat 0-based positions (b-1)*T + (t-1) as an int64 tensor [M] -> logits [M, V].
-- hb.models models: hidden states are gathered first and only those rows are projected (the vocabulary
-- head dominates small models, docs/evals.md#scoring-only-the-positions-needed); other models: forward, then pick rows.
function U.logits_at(model, ids, flat_idx, full)
  local B, T = ids:size(1), ids:size(2)
  local params = rawget(model, "params")
  local names = rawget(model, "_names")
  local W = params and (params["lm_head.weight"] or params[names and names.embeddings or "model.embeddings.weight"])
  if not full and W and type(model.hidden) == "function" then
    local h = model:hidden(ids)
    local d = h:size(3)
    return hb.linear(h:contiguous():view(B * T, d):index_select(1, flat_idx), W)
  end
  local logits = model:forward(ids)
  local V = logits:size(3)
  return logits:contiguous():view(B * T, V):index_select(1, flat_idx)
end

return U
