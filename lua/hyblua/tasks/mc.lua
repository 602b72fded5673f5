-- hyblua/tasks/mc.lua — multiple-choice scoring as lm-eval-harness does it (docs/evals.md#multiple-choice):
--   for each choice c: loglik = Σ log p(continuation tokens | context), continuation = " " + c;
--   acc      = [argmax_i loglik_i == gold]
--   acc_norm = [argmax_i loglik_i / len(choice_i) in characters == gold]   (lm-eval's acc_norm)
--   acc_bytes= the same with UTF-8 byte length (equals acc_norm for ASCII)
-- Context/continuation tokenisation follows lm-eval's _encode_pair: trailing whitespace of the context moves
-- to the front of the continuation, the pair is encoded whole and the continuation tokens are whatever
-- follows the context's own encoding; an empty context becomes [prefix token]. Inputs longer than
-- max_length keep their last max_length tokens.
--
-- Items: {context, choices, gold} (gold = 0-based index, lm-eval's convention; `query`, `label`, `answer`
-- are accepted as synonyms) or lm-eval/HF task records, recognised by their fields:
--   PIQA {goal, sol1, sol2, label}          -> "Question: {goal}\nAnswer:", [sol1, sol2]
--   ARC / OpenBookQA {question | question_stem, choices = {text, label}, answerKey}
--                                           -> "Question: {question}\nAnswer:" (OBQA: question_stem as is)
--   HellaSwag {activity_label, ctx_a, ctx_b, endings, label}  -> lm-eval's preprocess
--   WinoGrande {sentence, option1, option2, answer} -> partial scoring: one context per option, the shared
--                                              continuation is the text after "_"
-- So real task files (JSONL exports of those datasets) load as they are when a user has them.
local hb = require "hyblua.binding"
local U = require "hyblua.tasks.util"
local user_error = require("hyblua.errors").user_error
local M = {}

local function trim(s) return (s:match("^%s*(.-)%s*$")) end
local function utf8len(s) return utf8.len(s) or #s end

-- HellaSwag's preprocess (lm-eval tasks/hellaswag/utils.py)
function M.hellaswag_preprocess(text)
  text = trim(text)
  text = text:gsub(" %[title%]", ". ")
  text = text:gsub("%[.-%]", "")
  text = text:gsub("  ", " ")
  return text
end
-- Python's str.capitalize(): first character upper, the rest lower
local function capitalize(s) return s:sub(1, 1):upper() .. s:sub(2):lower() end

local function index_of(list, v)
  for i, x in ipairs(list) do if x == v then return i - 1 end end
end

-- normalize(item) -> {requests = {{context, continuation}, ...}, choices = {...}, gold = 0-based}
-- `choices` are the strings whose lengths acc_norm divides by (lm-eval's doc_to_choice).
function M.normalize(item)
  local ctx, choices, gold
  local partial
  if item.goal and item.sol1 then -- PIQA
    ctx, choices, gold = "Question: " .. item.goal .. "\nAnswer:", { item.sol1, item.sol2 }, tonumber(item.label)
  elseif item.ctx_a and item.endings then -- HellaSwag
    local c = item.ctx_a .. " " .. capitalize(item.ctx_b or "")
    ctx = M.hellaswag_preprocess((item.activity_label or "") .. ": " .. c)
    choices = {}
    for i, e in ipairs(item.endings) do choices[i] = M.hellaswag_preprocess(e) end
    gold = tonumber(item.label)
  elseif item.sentence and item.option1 then -- WinoGrande (partial scoring)
    local i = item.sentence:find("_", 1, true)
    if not i then user_error("mc: WinoGrande sentence without '_'", 3) end
    local target = trim(item.sentence:sub(i + 1))
    choices = { item.sentence:sub(1, i - 1) .. item.option1, item.sentence:sub(1, i - 1) .. item.option2 }
    partial = target
    gold = ({ ["1"] = 0, ["2"] = 1 })[tostring(item.answer)]
  elseif (item.question or item.question_stem) and type(item.choices) == "table" and item.choices.text then -- ARC, OBQA
    if item.question_stem then ctx = item.question_stem
    else ctx = "Question: " .. item.question .. "\nAnswer:" end
    choices = item.choices.text
    gold = index_of(item.choices.label, item.answerKey)
  else
    ctx = item.context or item.query or item.ctx
    choices = item.choices or item.endings
    gold = item.gold
    if gold == nil then gold = item.label end
    if gold == nil then gold = item.answer end
    if type(gold) == "string" then gold = tonumber(gold) or index_of(choices, gold) end
  end
  if type(choices) ~= "table" or #choices < 1 then user_error("mc: item has no choices", 3) end
  if math.type(gold) ~= "integer" and not (type(gold) == "number" and gold == math.floor(gold)) then
    user_error("mc: item has no usable gold index (0-based)", 3)
  end
  gold = math.tointeger(gold)
  if gold < 0 or gold >= #choices then user_error(string.format("mc: gold %d out of range for %d choices", gold, #choices), 3) end
  local reqs = {}
  for i, c in ipairs(choices) do
    if partial then reqs[i] = { c, " " .. partial } else reqs[i] = { ctx or "", " " .. c } end
  end
  return { requests = reqs, choices = choices, gold = gold }
end

-- read a JSONL file (one JSON object a line; blank lines skipped)
function M.load(path)
  local f, err = io.open(path, "r")
  if not f then user_error("mc: cannot open " .. tostring(path) .. ": " .. tostring(err), 3) end
  local items, n = {}, 0
  for line in f:lines() do
    n = n + 1
    if line:find("%S") then
      local ok, obj = pcall(hb.io.decode_json, line)
      if not ok then f:close(); user_error(string.format("mc: %s:%d: %s", path, n, tostring(obj)), 3) end
      items[#items + 1] = obj
    end
  end
  f:close()
  return items
end

-- lm-eval's _encode_pair -> context ids, continuation ids
function M.encode_pair(tok, context, continuation, prefix_token)
  local n_sp = #context - #context:gsub("%s+$", "")
  if n_sp > 0 then
    continuation = context:sub(-n_sp) .. continuation
    context = context:sub(1, -n_sp - 1)
  end
  if context == "" then
    if prefix_token == nil then user_error("mc: empty context needs a prefix token (opts.prefix_token or a tokenizer eos/bos)", 3) end
    return { prefix_token }, U.encode(tok, continuation)
  end
  local whole = U.encode(tok, context .. continuation)
  local cenc = U.encode(tok, context)
  local cont = {}
  for i = #cenc + 1, #whole do cont[#cont + 1] = whole[i] end
  return cenc, cont
end

-- log-likelihoods of a batch of (context ids, continuation ids) pairs -> lls, is_greedy (tables)
function M.loglikelihoods(model, pairs, max_length)
  local rows, Tm = {}, 0
  for i, p in ipairs(pairs) do
    local full = {}
    for _, t in ipairs(p[1]) do full[#full + 1] = t end
    for _, t in ipairs(p[2]) do full[#full + 1] = t end
    local drop = 0
    if max_length and #full - 1 > max_length then drop = #full - 1 - max_length end
    local inp = {}
    for j = 1 + drop, #full - 1 do inp[#inp + 1] = full[j] end
    if #p[2] == 0 or #p[2] > #inp then user_error("mc: continuation is empty or longer than the model input", 3) end
    rows[i] = { inp = inp, cont = p[2] }
    Tm = math.max(Tm, #inp)
  end
  local B = #rows
  local x = {}
  local idx, tgt, owner = {}, {}, {}
  for b, r in ipairs(rows) do
    local row = {}
    for t = 1, Tm do row[t] = r.inp[t] or 0 end -- right padding never affects earlier positions
    x[b] = row
    local nc = #r.cont
    for j = 1, nc do
      local pos = #r.inp - nc + j -- position whose next-token prediction is cont[j]
      idx[#idx + 1] = (b - 1) * Tm + (pos - 1)
      tgt[#tgt + 1] = { r.cont[j] }
      owner[#owner + 1] = b
    end
  end
  local lls, greedy = {}, {}
  for b = 1, B do lls[b], greedy[b] = 0, true end
  hb.no_grad(function()
    local logits = U.logits_at(model, hb.tensor(x, "int64"), hb.tensor(idx, "int64"))
    local lp = logits:log_softmax(2)
    local picked = lp:gather(2, hb.tensor(tgt, "int64")):tolist()
    local am = logits:argmax(2):tolist()
    for i = 1, #idx do
      local b = owner[i]
      lls[b] = lls[b] + picked[i][1]
      if am[i] ~= tgt[i][1] then greedy[b] = false end
    end
  end)
  return lls, greedy
end

local function argmax(v)
  local best = 1
  for i = 2, #v do if v[i] > v[best] then best = i end end -- first maximum, like np.argmax
  return best - 1
end

-- hb.eval.mc(model, tokenizer, path_or_items [, opts]) -> {acc, acc_norm, acc_bytes, n, items}
--   opts.limit        score only the first `limit` items
--   opts.max_length   truncate model inputs to their last max_length tokens
--   opts.prefix_token id used for an empty context (default: the tokenizer's eos/bos id)
-- items[i] = {lls, pred, pred_norm, gold, is_greedy}
function M.run(model, tok, src, opts)
  U.check_opts(opts, { "limit", "max_length", "prefix_token" }, "hb.eval.mc")
  opts = opts or {}
  local raw = type(src) == "string" and M.load(src) or src
  if type(raw) ~= "table" then user_error("mc: expected a JSONL path or a list of items", 2) end
  local prefix = opts.prefix_token or U.attr(tok, "eos_id", "eos_token_id", "bos_id", "bos_token_id")
  local n = #raw
  if opts.limit then n = math.min(n, opts.limit) end
  local acc, accn, accb = 0, 0, 0
  local out = {}
  for i = 1, n do
    local it = M.normalize(raw[i])
    local pairs_ = {}
    for j, r in ipairs(it.requests) do
      local c, k = M.encode_pair(tok, r[1], r[2], prefix)
      pairs_[j] = { c, k }
    end
    local lls, greedy = M.loglikelihoods(model, pairs_, opts.max_length)
    local normc, normb = {}, {}
    for j, c in ipairs(it.choices) do
      normc[j] = lls[j] / utf8len(c)
      normb[j] = lls[j] / #c
    end
    local p, pn, pb = argmax(lls), argmax(normc), argmax(normb)
    if p == it.gold then acc = acc + 1 end
    if pn == it.gold then accn = accn + 1 end
    if pb == it.gold then accb = accb + 1 end
    out[i] = { lls = lls, pred = p, pred_norm = pn, gold = it.gold, is_greedy = greedy }
  end
  return { acc = acc / n, acc_norm = accn / n, acc_bytes = accb / n, n = n, items = out }
end

return M
