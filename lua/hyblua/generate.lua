-- hyblua/generate.lua — text generation with a decode cache: m:generate and m:generate_text
-- (installed on hb.models.Model by models.lua). Options follow Hugging Face's generate; the reference
-- is docs/lua-api.md#generation.
--
-- One step, per row: scores = the last position's logits; repetition_penalty (HF's: a seen token's
-- score is divided by the penalty when positive, multiplied when negative; seen = the row's prompt and
-- what it generated so far); then greedy argmax, or sampling from softmax(scores / temperature) kept
-- to the top_k scores and then to the smallest set of most likely tokens whose mass reaches top_p (HF's
-- TopKLogitsWarper and TopPLogitsWarper, in that order). A row stops after an eos_token_id (included
-- in its output), when on_token returns false, or after max_new_tokens.
--
-- Batches of prompts of different lengths (a table of rows, or a left-padded tensor with an
-- attention_mask) are exact: every row is prefilled alone (a one-row cache, so its positions start at
-- 0 and no pad token reaches any mixer), then the rows are decoded together. A layer whose one-row
-- caches hold only tensors of the same shapes (the recurrent states and convolution tails of the
-- built-in linear mixers) is stepped as one batch, its caches concatenated along the batch; every other
-- layer — attention, whose KV length and position differ per row, RetNet (its rotary position) and every
-- custom mixer, whose cache we cannot interpret — is stepped row by row, each row with its own cache
-- (Model:hidden does this for the layers in cache.split). Embeddings, MLPs, norms and the LM head run
-- batched. Prompts of one length are prefilled as one batch.
--
-- Sampling draws from a generator of this call (splitmix64), seeded by opts.seed, or else by one
-- number drawn from hb's global generator (so hb.manual_seed makes it reproducible too); row b uses its
-- own stream, so rows with the same prompt sample differently. It never reseeds the global generator.
local hb = require "hyblua.binding"
local config = require "hyblua.config"
local registry = require "hyblua.mixers"
local user_error = require("hyblua.errors").user_error

local G = {}
-- the smallest sampling temperature: logits up to 3.4e32 stay finite in float32 once divided by it
G.MIN_TEMPERATURE = 1e-6

-- the options of m:generate (and m:generate_text)
local KNOWN = { "max_new_tokens", "do_sample", "greedy", "temperature", "top_k", "top_p", "repetition_penalty",
                "eos_token_id", "seed", "attention_mask", "on_token", "tokenizer" }
G.options = KNOWN

local function fail(fmt, ...) user_error(string.format(fmt, ...), 2) end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

-- ---- options -------------------------------------------------------------------------------------------
local function check_options(opts, n, who)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then fail("%s: options must be a table (got %s)", who, type(opts)) end
  config.check_keys(opts, KNOWN, who)
  local o = {}
  -- max_new_tokens: the positional n (old form) or the option; both must agree
  local m = opts.max_new_tokens
  if n ~= nil and m ~= nil and n ~= m then
    fail("%s: max_new_tokens is given twice (%s and max_new_tokens = %s)", who, show(n), show(m))
  end
  m = m == nil and n or m
  if m == nil then fail("%s: max_new_tokens is required (m:generate(ids, {max_new_tokens = 20}))", who) end
  if math.type(m) ~= "integer" or m < 0 then
    fail("%s: max_new_tokens must be a non-negative integer (got %s)", who, show(m))
  end
  o.max_new_tokens = m
  for _, k in ipairs { "do_sample", "greedy" } do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then fail("%s: %s must be true or false (got %s)", who, k, show(opts[k])) end
  end
  if opts.do_sample ~= nil and opts.greedy ~= nil and opts.do_sample == opts.greedy then
    fail("%s: do_sample = %s contradicts greedy = %s", who, tostring(opts.do_sample), tostring(opts.greedy))
  end
  -- 0 is greedy; a sampling temperature divides the float32 logits, so a tiny one (a denormal) would turn
  -- them into infinities and the probabilities into NaN
  local t = opts.temperature
  if t ~= nil and (type(t) ~= "number" or not (t == 0 or (t >= G.MIN_TEMPERATURE and t < math.huge))) then
    fail("%s: temperature must be 0 (greedy) or a finite number >= %g (got %s)", who, G.MIN_TEMPERATURE,
      t ~= t and "nan" or type(t) == "number" and string.format("%.6g", t) or
      type(t) == "string" and "'" .. t .. "'" or show(t))
  end
  local k = opts.top_k
  if k ~= nil and (math.type(k) ~= "integer" or k < 0) then
    fail("%s: top_k must be a non-negative integer (0 = off; got %s)", who, show(k))
  end
  local p = opts.top_p
  if p ~= nil and (type(p) ~= "number" or not (p > 0 and p <= 1)) then
    fail("%s: top_p must be a number in (0, 1] (1 = off; got %s)", who, show(p))
  end
  local rp = opts.repetition_penalty
  if rp ~= nil and (type(rp) ~= "number" or not (rp > 0) or rp == math.huge) then
    fail("%s: repetition_penalty must be a finite number > 0 (1 = off; got %s)", who, show(rp))
  end
  o.penalty = rp or 1
  -- sampling: asked for, or implied by a sampling option (temperature > 0, top_k, top_p)
  local explicit = opts.do_sample
  if explicit == nil and opts.greedy ~= nil then explicit = not opts.greedy end
  local implied = (t ~= nil and t > 0) or k ~= nil or p ~= nil
  if explicit == false and implied then
    fail("%s: greedy decoding ignores temperature, top_k and top_p; drop them or set do_sample = true", who)
  end
  o.sample = explicit == true or (explicit == nil and implied)
  if t == 0 then o.sample = false end -- the limit temperature → 0 is greedy
  o.temperature = t or 1
  o.top_k = k or 0
  o.top_p = p or 1
  local eos = opts.eos_token_id
  o.eos = {}
  if eos ~= nil then
    local list = type(eos) == "table" and eos or { eos }
    for i, id in ipairs(list) do
      if math.type(id) ~= "integer" or id < 0 then
        fail("%s: eos_token_id must be a token id or a list of ids (element %d is %s)", who, i, show(id))
      end
      o.eos[id] = true
    end
    if type(eos) == "table" and next(eos) ~= nil and #list == 0 then
      fail("%s: eos_token_id must be a token id or a list of ids", who)
    end
  end
  local seed = opts.seed
  if seed ~= nil and math.type(seed) ~= "integer" then fail("%s: seed must be an integer (got %s)", who, show(seed)) end
  o.seed = seed
  if opts.on_token ~= nil and type(opts.on_token) ~= "function" then
    fail("%s: on_token must be a function(row, id, step) (got %s)", who, type(opts.on_token))
  end
  o.on_token = opts.on_token
  local tok = opts.tokenizer
  if tok ~= nil and not ((type(tok) == "table" or type(tok) == "userdata") and tok.encode and tok.decode) then
    fail("%s: tokenizer must have :encode(text) and :decode(ids) (an hb.tokenizer; got %s)", who, type(tok))
  end
  o.tokenizer = tok
  o.attention_mask = opts.attention_mask
  return o
end

-- ---- prompts ------------------------------------------------------------------------------------------
local function is_tensor(x) return type(x) == "userdata" and pcall(function() return x:dim() end) end

local function tensor_rows(t, who)
  if t:dim() == 1 then t = t:view(1, t:size(1)) end
  if t:dim() ~= 2 then fail("%s: prompt ids must have shape [B, T], got [%s]", who, table.concat(t:shape(), ", ")) end
  local d = t:dtype()
  if d ~= "int64" and d ~= "int32" then fail("%s: prompt ids must be an integer tensor, got %s", who, d) end
  return t:tolist()
end

-- prompt → list of rows (Lua lists of ids), removing left padding that attention_mask marks
local function prompt_rows(prompt, mask, who)
  local rows
  if is_tensor(prompt) then
    rows = tensor_rows(prompt, who)
  elseif type(prompt) == "table" then
    if type(prompt[1]) == "number" then
      rows = { prompt }
    else
      rows = prompt
    end
  elseif type(prompt) == "string" then
    fail("%s: the prompt is text; pass token ids, or a tokenizer: m:generate_text(tok, text, opts) or opts.tokenizer", who)
  else
    fail("%s: the prompt must be token ids (an int64 [B, T] tensor or a table of rows), got %s", who, type(prompt))
  end
  if #rows == 0 then fail("%s: the prompt has no rows", who) end
  if mask ~= nil then
    local m = is_tensor(mask) and tensor_rows(mask, who .. ": attention_mask") or mask
    if type(m) ~= "table" or #m ~= #rows then
      fail("%s: attention_mask must have one row per prompt row (%d)", who, #rows)
    end
    local out = {}
    for b, row in ipairs(rows) do
      local mr = m[b]
      if type(mr) ~= "table" or #mr ~= #row then fail("%s: attention_mask row %d must have %d entries", who, b, #row) end
      local first = nil
      for j = 1, #mr do
        local v = mr[j]
        if v ~= 0 and v ~= 1 then fail("%s: attention_mask holds 0 and 1 only (row %d has %s)", who, b, show(v)) end
        if v == 1 and not first then first = j end
        if v == 0 and first then
          fail("%s: attention_mask row %d has a 0 after a 1: pad on the left (padding_side = 'left')", who, b)
        end
      end
      if not first then fail("%s: attention_mask row %d masks every token (the row is empty)", who, b) end
      out[b] = { table.unpack(row, first) }
    end
    rows = out
  end
  for b, row in ipairs(rows) do
    if type(row) ~= "table" then fail("%s: prompt row %d must be a list of token ids (got %s)", who, b, type(row)) end
    if #row == 0 then fail("%s: prompt row %d is empty (a prompt needs at least one token)", who, b) end
    for j, id in ipairs(row) do
      if math.type(id) ~= "integer" then
        fail("%s: prompt row %d, position %d: %s is not an integer token id", who, b, j, show(id))
      end
    end
  end
  return rows
end

-- ---- sampling -----------------------------------------------------------------------------------------
-- splitmix64: a uniform double in [0, 1) per call
local function rng(seed)
  local s = seed
  return function()
    s = s + 0x9E3779B97F4A7C15
    local z = s
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    z = z ~ (z >> 31)
    return (z >> 11) * 2.0 ^ -53
  end
end

-- HF's RepetitionPenaltyLogitsProcessor on a Lua list of scores (index = id + 1)
local function penalize(s, seen, penalty)
  for id in pairs(seen) do
    local v = s[id + 1]
    if v then s[id + 1] = v < 0 and v * penalty or v / penalty end
  end
end

local function argmax(s)
  local best, bi = -math.huge, 1
  for i = 1, #s do if s[i] > best then best, bi = s[i], i end end
  return bi - 1
end

-- the sampling distribution of one row: kept ids (1-based) and their probabilities
local function distribution(s, o)
  local V = #s
  local idx = {}
  for i = 1, V do s[i] = s[i] / o.temperature; idx[i] = i end
  if o.top_k > 0 and o.top_k < V then
    -- keep the scores >= the k-th largest (HF: ties with the k-th are kept)
    table.sort(idx, function(a, b) return s[a] > s[b] end)
    local kth = s[idx[o.top_k]]
    local kept = {}
    for _, i in ipairs(idx) do if s[i] >= kth then kept[#kept + 1] = i else break end end
    idx = kept
  end
  local mx = -math.huge
  for _, i in ipairs(idx) do if s[i] > mx then mx = s[i] end end
  local p, z = {}, 0
  for j, i in ipairs(idx) do p[j] = math.exp(s[i] - mx); z = z + p[j] end
  for j = 1, #p do p[j] = p[j] / z end
  if o.top_p < 1 then
    -- HF: sort ascending, drop the tokens whose cumulative mass is <= 1 - top_p, keep at least one
    local order = {}
    for j = 1, #idx do order[j] = j end
    table.sort(order, function(a, b) if p[a] ~= p[b] then return p[a] < p[b] end return idx[a] > idx[b] end)
    local drop, cum = {}, 0
    for r = 1, #order - 1 do
      cum = cum + p[order[r]]
      if cum <= 1 - o.top_p then drop[order[r]] = true else break end
    end
    local ki, kp, z2 = {}, {}, 0
    for j = 1, #idx do
      if not drop[j] then ki[#ki + 1] = idx[j]; kp[#kp + 1] = p[j]; z2 = z2 + p[j] end
    end
    for j = 1, #kp do kp[j] = kp[j] / z2 end
    idx, p = ki, kp
  end
  return idx, p
end

local function draw(idx, p, u)
  local cum = 0
  for j = 1, #idx do
    cum = cum + p[j]
    if u < cum then return idx[j] - 1 end
  end
  return idx[#idx] - 1 -- rounding left u just above the total
end

-- G.next_token(scores, seen, o, u) → id: one step of the rule above for one row (scores: a Lua list,
-- changed in place; u: a uniform draw, used when sampling). Exposed for tests.
function G.next_token(s, seen, o, u)
  if o.penalty ~= 1 then penalize(s, seen, o.penalty) end
  if not o.sample then return argmax(s) end
  local idx, p = distribution(s, o)
  return draw(idx, p, u)
end

-- ---- caches ---------------------------------------------------------------------------------------------
-- can one-row layer caches be concatenated into one batched cache? Only for built-in mixers, and only
-- when every entry is a tensor [1, ...] of the same shape in every row.
local function mergeable(layer, lcs)
  if not registry.is_builtin(layer.mixer) then return false end
  local keys = {}
  for key, v in pairs(lcs[1]) do
    if not is_tensor(v) or v:size(1) ~= 1 then return false end
    keys[#keys + 1] = key
  end
  for b = 2, #lcs do
    local n = 0
    for _ in pairs(lcs[b]) do n = n + 1 end
    if n ~= #keys then return false end
    for _, key in ipairs(keys) do
      local a, v = lcs[1][key], lcs[b][key]
      if not is_tensor(v) or table.concat(a:shape(), ",") ~= table.concat(v:shape(), ",") then return false end
    end
  end
  return true
end

-- one table of B rows from B one-row tables of the same keys: every tensor concatenated along the batch
-- (mergeable says when a layer cache may be; a block's own state, e.g. RWKV-7's token shift, always is)
local function cat_rows(tables)
  local merged = {}
  for key, v in pairs(tables[1]) do
    local parts = {}
    for b = 1, #tables do parts[b] = tables[b][key] end
    merged[key] = is_tensor(v) and hb.cat(parts, 1) or v
  end
  return merged
end

-- the prefill of rows of different lengths: each row alone, then one cache of B rows
local function ragged_prefill(m, rows)
  local B = #rows
  local caches, logits = {}, {}
  local longest = 0
  for b, row in ipairs(rows) do
    caches[b] = m:new_cache(1)
    logits[b] = m:prefill({ row }, caches[b])
    longest = math.max(longest, #row)
  end
  local cache = m:new_cache(B)
  cache.pos = longest
  cache.split = {}
  for li, layer in ipairs(m.layers) do
    local lcs, bcs = {}, {}
    for b = 1, B do lcs[b], bcs[b] = caches[b].layers[li], caches[b].blocks[li] end
    if mergeable(layer, lcs) then cache.layers[li] = cat_rows(lcs) else cache.split[li] = lcs end
    cache.blocks[li] = cat_rows(bcs)
  end
  return cache, hb.cat(logits, 1)
end

-- ---- the loop -------------------------------------------------------------------------------------------
local function run(m, rows, o)
  local B = #rows
  local out, seen, running, rand = {}, {}, {}, {}
  local seed = o.seed
  if o.sample and seed == nil then seed = math.floor(hb.rand(1):get(1) * 2 ^ 53) end
  for b = 1, B do
    out[b], running[b] = {}, true
    if o.penalty ~= 1 then
      seen[b] = {}
      for _, id in ipairs(rows[b]) do seen[b][id] = true end
    end
    if o.sample then rand[b] = rng(seed * 0x2545F4914F6CDD1D + b) end
  end
  if o.max_new_tokens == 0 then return out end
  local same = true
  for b = 2, B do if #rows[b] ~= #rows[1] then same = false end end
  local cache, logits
  if same then
    cache = m:new_cache(B)
    logits = m:prefill(rows, cache)
  else
    cache, logits = ragged_prefill(m, rows)
  end
  local fast = not o.sample and o.penalty == 1
  for step = 1, o.max_new_tokens do
    local am = fast and logits:argmax(2) or nil
    local col, left = {}, 0
    for b = 1, B do
      if running[b] then
        local id
        if fast then
          id = am:get(b)
        else
          id = G.next_token(logits:select(1, b):tolist(), seen[b], o, o.sample and rand[b]() or nil)
        end
        out[b][step] = id
        if seen[b] then seen[b][id] = true end
        if o.eos[id] then running[b] = false end
        if o.on_token and o.on_token(b, id, step) == false then running[b] = false end
      end
      col[b] = out[b][#out[b]]   -- a finished row keeps feeding its last token (its outputs are unused)
      if running[b] then left = left + 1 end
    end
    if left == 0 or step == o.max_new_tokens then break end
    logits = m:step(col, cache)
  end
  return out
end

-- ---- entry points ---------------------------------------------------------------------------------------
local function encode(tok, text)
  local ids = tok.encode_table and tok:encode_table(text) or tok:encode(text)
  if is_tensor(ids) then ids = ids:tolist() end
  return ids
end

-- the tokenizer's eos id as a default stop (text variant), when it has one
local function tok_eos(tok)
  local ok, id = pcall(function() return tok.eos_id and tok:eos_id() end)
  return ok and math.type(id) == "integer" and id or nil
end

-- texts → strings: o.tokenizer set, the prompt a string or a list of strings
local function generate_text(m, tok, texts, o, opts, who)
  local single = type(texts) == "string"
  local list = single and { texts } or texts
  local rows = {}
  for b, text in ipairs(list) do
    if type(text) ~= "string" then fail("%s: prompt %d is a %s, expected a string", who, b, type(text)) end
    rows[b] = encode(tok, text)
    if #rows[b] == 0 then fail("%s: prompt %d encodes to no tokens", who, b) end
  end
  if #rows == 0 then fail("%s: no prompts", who) end
  if opts.eos_token_id == nil then
    local e = tok_eos(tok)
    if e then o.eos[e] = true end
  end
  local out = run(m, rows, o)
  local res = {}
  for b, ids in ipairs(out) do
    if #ids > 0 and o.eos[ids[#ids]] then ids = { table.unpack(ids, 1, #ids - 1) } end
    res[b] = #ids > 0 and tok:decode(ids) or ""
  end
  return single and res[1] or res
end

-- m:generate(prompt [, max_new_tokens] [, opts]) → a table of B lists of new token ids; with
-- opts.tokenizer and a text prompt (a string or a list of strings), the generated text instead
function G.generate(m, prompt, n, opts)
  local who = "generate"
  if type(n) == "table" and opts == nil then n, opts = nil, n end
  if n ~= nil and math.type(n) ~= "integer" then
    fail("%s: the second argument is max_new_tokens (an integer) or the options table (got %s)", who, show(n))
  end
  local o = check_options(opts, n, who)
  if o.tokenizer and (type(prompt) == "string" or (type(prompt) == "table" and type(prompt[1]) == "string")) then
    if o.attention_mask ~= nil then fail("%s: attention_mask is for id prompts, not text", who) end
    return generate_text(m, o.tokenizer, prompt, o, opts or {}, who)
  end
  local rows = prompt_rows(prompt, o.attention_mask, who)
  return run(m, rows, o)
end

-- m:generate_text(tokenizer, text_or_texts [, opts]) → the generated text (a string, or a list for a
-- list of prompts). Stops at the tokenizer's eos id unless opts.eos_token_id says otherwise; the eos
-- token is not part of the text.
function G.generate_text(m, tok, texts, opts)
  local who = "generate_text"
  if not ((type(tok) == "table" or type(tok) == "userdata") and tok.encode and tok.decode) then
    fail("%s(tokenizer, text [, opts]): the first argument must be a tokenizer (got %s)", who, type(tok))
  end
  if type(texts) ~= "string" and type(texts) ~= "table" then
    fail("%s: the prompt must be a string or a list of strings (got %s)", who, type(texts))
  end
  if opts ~= nil and type(opts) == "table" and opts.tokenizer ~= nil then
    fail("%s: the tokenizer is the first argument; drop opts.tokenizer", who)
  end
  local o = check_options(opts, nil, who)
  if o.attention_mask ~= nil then fail("%s: attention_mask is for id prompts, not text", who) end
  return generate_text(m, tok, texts, o, opts or {}, who)
end

return G
