-- test_eval.lua — hb.eval: MQAR generation and scoring (Zoology), NIAH construction and scoring (RULER),
-- multiple choice acc / acc_norm (lm-eval), rolling-window LM loss and bits per byte, efficiency accounting.
-- Fake models (tables with a forward/generate that return what the test constructs) make the scores exact.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local E = hb.eval

local function close(a, b, tol) return math.abs(a - b) <= (tol or 1e-9) * math.max(1, math.abs(b)) end
local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end
local function same_rows(a, b) -- two int64 [N, T] tensors, element by element
  local x, y = a:tolist(), b:tolist()
  if #x ~= #y then return false end
  for i = 1, #x do if not same_list(x[i], y[i]) then return false end end
  return true
end
local function tiny(cfg)
  local c = { model_type = "gated_deltanet", hidden_size = 32, num_hidden_layers = 2, num_heads = 2, head_dim = 16, vocab_size = 64 }
  for k, v in pairs(cfg or {}) do c[k] = v end
  return hb.models.new(c, { seed = 1 })
end
local bytes = E.byte_tokenizer()

-- ===================================================================================================
-- MQAR
-- ===================================================================================================
do
  local ex = E.mqar.docstring_example
  local row, lab = E.mqar.layout { seq_len = ex.seq_len, keys = ex.keys, values = ex.values, slots = ex.slots }
  T.ok(same_list({ table.unpack(row, 1, 15) }, ex.inputs) and row[16] == 0,
    "mqar: layout reproduces the Zoology docstring inputs (2 8 4 7 0 0 4 0 0 0 0 0 2 0 0 [0])", table.concat(row, " "))
  T.ok(same_list({ table.unpack(lab, 1, 15) }, ex.labels) and lab[16] == -100,
    "mqar: layout reproduces the docstring labels (7 at the query 4, 8 at the query 2)", table.concat(lab, " "))

  -- the docstring's V=12 structure with a fixed seed: exact tokens (our RNG; regression values)
  local x, y = E.mqar.generate { vocab_size = 12, seq_len = 16, num_kv_pairs = 2, num_examples = 4, seed = 0, allow_small_vocab = true }
  T.ok(same_list(x:select(1, 1):tolist(), { 5, 6, 3, 11, 5, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0 })
    and same_list(y:select(1, 1):tolist(), { -100, -100, -100, -100, 6, -100, 11, -100, -100, -100, -100, -100, -100, -100, -100, -100 })
    and same_list(x:select(1, 2):tolist(), { 4, 11, 2, 8, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 0, 0 }),
    "mqar: V=12, T=16, 2 pairs, seed 0 gives the recorded tokens", table.concat(x:select(1, 1):tolist(), " "))
  T.raises(function() E.mqar.generate { vocab_size = 12, seq_len = 16, num_kv_pairs = 2, num_examples = 1 } end,
    "mqar: vocab_size must be greater than input_seq_len (got vocab_size 12, input_seq_len 16)",
    "mqar: Zoology's vocab_size > input_seq_len assert (which its own docstring example fails)")
  T.raises(function() E.mqar.generate { vocab_size = 100, seq_len = 15, num_kv_pairs = 2, num_examples = 1 } end,
    "mqar: input_seq_len must be even (got 15)", "mqar: odd seq_len is refused")
  T.raises(function() E.mqar.generate { vocab_size = 100, seq_len = 16, num_kv_pairs = 5, num_examples = 1 } end,
    "must be <= input_seq_len (got 20 > 16)", "mqar: 4·num_kv_pairs > seq_len is refused")

  -- layout invariants over many examples
  local V, L, kv, n = 64, 32, 4, 400
  local xs, ys = E.mqar.generate { vocab_size = V, seq_len = L, num_kv_pairs = kv, num_examples = n, seed = 7 }
  T.ok(xs:dtype() == "int64" and ys:dtype() == "int64" and xs:size(1) == n and xs:size(2) == L, "mqar: int64 [N, T] tensors")
  local ctx = 2 * kv
  local bad, slot_hist = nil, {}
  for i, r in ipairs(xs:tolist()) do
    local lb = ys:select(1, i):tolist()
    local keyv, seen_k, seen_v, queried = {}, {}, {}, {}
    for j = 1, kv do
      local k, v = r[2 * j - 1], r[2 * j]
      if k < 1 or k >= V // 2 or seen_k[k] then bad = bad or ("key " .. k .. " in row " .. i) end
      if v < V // 2 or v >= V or seen_v[v] then bad = bad or ("value " .. v .. " in row " .. i) end
      seen_k[k], seen_v[v], keyv[k] = true, true, v
    end
    local nsup = 0
    for t = ctx + 1, L do
      if lb[t] ~= -100 then
        nsup = nsup + 1
        local off = t - 1 - ctx
        if off % 2 ~= 0 then bad = bad or ("odd query offset in row " .. i) end
        slot_hist[off // 2] = (slot_hist[off // 2] or 0) + 1
        if keyv[r[t]] ~= lb[t] then bad = bad or ("label is not the key's value in row " .. i) end
        if queried[r[t]] then bad = bad or ("key queried twice in row " .. i) end
        queried[r[t]] = true
      elseif r[t] ~= 0 then
        bad = bad or ("non-zero filler in row " .. i)
      end
    end
    for t = 1, ctx do if lb[t] ~= -100 then bad = bad or "label inside the kv block" end end
    if nsup ~= kv then bad = bad or ("row " .. i .. " has " .. nsup .. " supervised positions") end
  end
  T.ok(bad == nil, "mqar: keys in [1,V/2) and values in [V/2,V) distinct; every key queried once at context+2·slot; label = its value; fillers 0", bad)
  local space = (L - ctx) // 2
  T.ok((slot_hist[0] or 0) > 3 * (slot_hist[space - 1] or 0) and (slot_hist[0] or 0) >= (slot_hist[1] or 0),
    "mqar: power-law query placement favours early slots", string.format("slot0 %s, slot1 %s, last %s", slot_hist[0], slot_hist[1], slot_hist[space - 1]))

  local xs2, ys2 = E.mqar.generate { vocab_size = V, seq_len = L, num_kv_pairs = kv, num_examples = n, seed = 7 }
  local xs3 = E.mqar.generate { vocab_size = V, seq_len = L, num_kv_pairs = kv, num_examples = n, seed = 8 }
  T.ok(same_rows(xs2, xs) and same_rows(ys2, ys) and not same_rows(xs3, xs),
    "mqar: same seed, same data; another seed, other data")

  local xr, yr = E.mqar.generate { vocab_size = V, seq_len = L, num_kv_pairs = kv, num_examples = n, seed = 7, random_non_queries = true }
  local ok_r, changed = same_rows(yr, ys), 0
  local xl, xrl = xs:tolist(), xr:tolist()
  for i = 1, n do
    for t = 1, L do
      if xl[i][t] ~= 0 then ok_r = ok_r and xrl[i][t] == xl[i][t]
      else
        ok_r = ok_r and xrl[i][t] >= 0 and xrl[i][t] < V
        if xrl[i][t] ~= 0 then changed = changed + 1 end
      end
    end
  end
  T.ok(ok_r and changed > 0, "mqar: random_non_queries fills only the zeros with tokens of [0, V), structure unchanged")

  -- accuracy: per-example mean (not per-token), exact with a fake model
  local inputs = hb.tensor({ { 1, 2, 3, 4, 5, 6 }, { 1, 2, 3, 4, 5, 6 } }, "int64")
  local labels = hb.tensor({ { -100, -100, 9, -100, -100, -100 }, { -100, 7, -100, 8, -100, 9 } }, "int64")
  local want = { [1] = { [3] = 9 }, [2] = { [2] = 7, [4] = 1, [6] = 2 } } -- ex1 right; ex2 1 of 3
  local fake = {
    forward = function(_, ids)
      local B, L2 = ids:size(1), ids:size(2)
      local lg = hb.zeros(B, L2, 12)
      for b = 1, B do for t = 1, L2 do
        local c = want[b][t] or 0
        lg:set(5, b, t, c + 1)
      end end
      return lg
    end,
  }
  local acc, per = E.mqar.accuracy(fake, inputs, labels)
  T.ok(close(acc, (1 + 1 / 3) / 2) and close(per[1], 1) and close(per[2], 1 / 3),
    "mqar.accuracy: per-example mean ((1 + 1/3)/2, not the token mean 2/4)", acc)

  -- a real model: projecting only the supervised positions agrees with the full forward
  local m = tiny()
  local mx, my = E.mqar.generate { vocab_size = 64, seq_len = 32, num_kv_pairs = 4, num_examples = 16, seed = 3 }
  local a1, p1 = E.mqar.accuracy(m, mx, my, { batch_size = 5 })
  local a2, p2 = E.mqar.accuracy(m, mx, my, { full_logits = true })
  local same = true
  for i = 1, 16 do same = same and close(p1[i], p2[i]) end
  T.ok(same and close(a1, a2) and a1 >= 0 and a1 <= 1, "mqar.accuracy: gathered hidden states + projection = full logits", a1 .. " vs " .. a2)

  -- multi-length mixture (Zoology prepare_data): per-segment seeds, train/test seed ranges disjoint
  local mix = E.mqar.mixture { vocab_size = 128, seed = 5,
    train = { { seq_len = 32, num_kv_pairs = 4, num_examples = 20 }, { seq_len = 64, num_kv_pairs = 8, num_examples = 10 } },
    test = { { seq_len = 32, num_kv_pairs = 4, num_examples = 6 }, { seq_len = 64, num_kv_pairs = 16, num_examples = 4 } } }
  local okm = #mix.train == 2 and #mix.test == 2 and mix.train[2].inputs:size(2) == 64 and mix.test[2].slices.num_kv_pairs == 16
  for _, s in ipairs(mix.train) do okm = okm and s.slices.seed < (1 << 31) end
  for _, s in ipairs(mix.test) do okm = okm and s.slices.seed >= (1 << 31) end
  local nb, rows = 0, 0
  for bx, _, sl in E.mqar.batches(mix.train, 8) do nb, rows = nb + 1, rows + bx:size(1); okm = okm and bx:size(2) == sl.seq_len end
  T.ok(okm and nb == 3 + 2 and rows == 30, "mqar.mixture: segments by length, seeds per segment, batches never mix lengths")
  local oracle = { -- predicts every label: the value that follows the query key in the kv block
    forward = function(_, ids)
      local B, L2 = ids:size(1), ids:size(2)
      local lg = hb.zeros(B, L2, 128)
      for b, r in ipairs(ids:tolist()) do
        local val = {}
        for t = 1, L2 - 1, 2 do if r[t] ~= 0 and not val[r[t]] and r[t + 1] >= 64 then val[r[t]] = r[t + 1] end end
        for t = 1, L2 do lg:set(1, b, t, (val[r[t]] or 0) + 1) end
      end
      return lg
    end,
  }
  local ev = E.mqar.evaluate(oracle, mix.test)
  T.ok(close(ev.accuracy, 1) and ev.n == 10 and close(ev.by_num_kv_pairs[16], 1) and close(ev.by_seq_len[32], 1),
    "mqar.evaluate: an oracle scores 1 overall and in every slice", ev.accuracy)
end

-- ===================================================================================================
-- NIAH
-- ===================================================================================================
do
  local N = E.niah
  -- a haystack of equal-length sentences so that "±1 sentence" is a fixed number of tokens
  local sents = {}
  for i = 1, 400 do sents[i] = string.format("Line %04d is here.", i) end
  local hay = table.concat(sents, " ")
  local slen = #sents[1] + 1
  local worst = 0
  for _, d in ipairs { 0, 0.1, 0.25, 0.5, 0.75, 1 } do
    local c = N.build { task = "niah_single_2", length = 2048, depth = d, haystack = hay, tokenizer = bytes, seed = 11 }
    local nd = c.needles[1]
    local hay_before = nd.token_pos - c.context.token_start           -- haystack tokens before the needle
    local hay_total = (c.context.token_end - c.context.token_start) - #nd.text - 1
    worst = math.max(worst, math.abs(hay_before - d * hay_total))
    if d == 0.5 then
      T.ok(#c.prompt_ids + 128 <= 2048 and #c.prompt_ids + 128 > 2048 - 2 * slen,
        "niah: the prompt + 128 generated tokens fills the requested length", #c.prompt_ids)
      T.ok(c.prompt:sub(nd.char_pos, nd.char_pos + #nd.text - 1) == nd.text and c.prompt:find(c.answers[1], 1, true)
        and nd.text == "One of the special magic numbers for " .. c.query .. " is: " .. c.answers[1] .. ".",
        "niah: RULER's needle sentence carries the answer at the reported position")
      T.like(c.prompt, "A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\n",
        "niah: singular template head")
      T.ok(c.prompt:sub(-#("What is the special magic number for " .. c.query .. " mentioned in the provided text? The special magic number for "
        .. c.query .. " mentioned in the provided text is")) == "What is the special magic number for " .. c.query
        .. " mentioned in the provided text? The special magic number for " .. c.query .. " mentioned in the provided text is",
        "niah: question + answer prefix end the prompt")
      T.ok(c.prompt:sub(nd.char_pos - 2, nd.char_pos - 1) == ". " and c.prompt:sub(nd.char_pos + #nd.text, nd.char_pos + #nd.text + 5) == " Line ",
        "niah: the needle sits on a sentence boundary")
    end
  end
  T.ok(worst <= slen, "niah: needle token position within one sentence of depth × haystack, depths 0..1", worst)

  -- noise haystack (S-NIAH-1): line granularity
  local c1 = N.build { task = "s-niah-1", length = 1500, depth = 0.5, tokenizer = bytes, seed = 2, tokens_to_generate = 32 }
  local lines = {}
  for l in (c1.prompt:sub(c1.context.char_start, c1.context.char_start + c1.context.char_len - 1) .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  local at
  for i, l in ipairs(lines) do if l == c1.needles[1].text then at = i end end
  T.ok(c1.task == "niah_single_1" and at and math.abs((at - 1) - 0.5 * (#lines - 1)) <= 1 and lines[1] == N.NOISE,
    "niah: S-NIAH-1 inserts the needle between noise lines at the requested depth", tostring(at) .. "/" .. #lines)

  local c3 = N.build { task = "niah_single_3", length = 1200, depth = 0.3, tokenizer = bytes, seed = 4, tokens_to_generate = 64 }
  T.ok(c3.answers[1]:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") ~= nil,
    "niah: S-NIAH-3 values are UUID4 strings", c3.answers[1])

  local mk = N.build { task = "niah_multikey_1", length = 1500, tokenizer = bytes, seed = 5, tokens_to_generate = 32 }
  local keys, nq = {}, 0
  for _, nd in ipairs(mk.needles) do keys[nd.key] = true; if nd.queried then nq = nq + 1 end end
  local nkeys = 0
  for _ in pairs(keys) do nkeys = nkeys + 1 end
  T.ok(#mk.needles == 4 and nkeys == 4 and nq == 1 and #mk.answers == 1, "niah: multikey_1 has 4 needles with distinct keys, 1 queried")
  local mv = N.build { task = "niah_multivalue", length = 1500, tokenizer = bytes, seed = 5, tokens_to_generate = 32 }
  T.ok(#mv.needles == 4 and #mv.answers == 4 and mv.needles[1].key == mv.needles[4].key and mv.prompt:find("Some special magic numbers are hidden", 1, true),
    "niah: multivalue has 4 values for one key (plural template)")
  local mq = N.build { task = "niah_multiquery", length = 1500, tokenizer = bytes, seed = 5, tokens_to_generate = 32 }
  T.ok(#mq.answers == 4 and mq.query == mq.queries[1] .. ", " .. mq.queries[2] .. ", " .. mq.queries[3] .. ", and " .. mq.queries[4],
    "niah: multiquery asks for 4 keys as 'a, b, c, and d'", mq.query)
  local mk2 = N.build { task = "niah_multikey_2", length = 1200, tokenizer = bytes, seed = 6, tokens_to_generate = 32, depth = 0.5 }
  local nlines, all_needles = 0, true
  for l in (mk2.prompt:sub(mk2.context.char_start, mk2.context.char_start + mk2.context.char_len - 1) .. "\n"):gmatch("(.-)\n") do
    nlines = nlines + 1
    all_needles = all_needles and l:match("^One of the special magic numbers for [%w%-]+ is: %d+%.$") ~= nil
  end
  T.ok(all_needles and nlines > 3, "niah: multikey_2's haystack lines are all needles")

  -- a tokenizer-agnostic callback (function text -> ids) and a haystack callback (function(i) -> text)
  local calls = 0
  local cb = N.build { task = "niah_single_2", length = 800, depth = 0.5, seed = 1, tokens_to_generate = 16,
    tokenizer = function(s) return { s:byte(1, -1) } end,
    haystack = function(i) calls = calls + 1; if i <= 200 then return sents[i] end end }
  T.ok(#cb.prompt_ids + 16 <= 800 and calls > 0 and cb.prompt:find(cb.answers[1], 1, true), "niah: callback tokenizer and haystack source")
  T.raises(function() N.build { task = "niah_single_2", length = 100, tokenizer = bytes } end,
    "niah.build: length 100 is too small for task niah_single_2", "niah: a length shorter than the template is refused")
  T.raises(function() N.build { task = "niah_single_9", length = 100 } end, "niah: unknown task 'niah_single_9'", "niah: unknown task names the known ones")

  -- scoring
  T.ok(close(N.string_match_all({ "It is 123 and 9", "x" }, { { "123", "456" }, { "X" } }), 75),
    "niah: string_match_all = mean fraction of golds found (case-insensitive) × 100")
  local function generator(text)
    return { generate = function(_, _, n) local t = { text:byte(1, -1) }; return { { table.unpack(t, 1, math.min(n, #t)) } } end }
  end
  local s1 = N.run(generator(" " .. c3.answers[1] .. "."), bytes, { c3 })
  local s2, det = N.run(generator(" " .. mv.answers[2] .. " and " .. mv.answers[4]), bytes, { mv, c3 })
  T.ok(close(s1, 100) and close(s2, (0.5 + 0) / 2 * 100) and close(det.cases[1].frac, 0.5),
    "niah.run: greedy outputs scored by string_match_all (100; (2/4 + 0)/2 × 100)", s2)
  local m = tiny { vocab_size = 256 }
  local small = N.build { task = "niah_single_1", length = 600, depth = 0.5, tokenizer = bytes, seed = 1, tokens_to_generate = 8 }
  local sr, sd = N.run(m, bytes, { small })
  local direct = m:generate(hb.tensor({ small.prompt_ids }, "int64"), 8, { temperature = 0 })[1]
  T.ok(sr >= 0 and sr <= 100 and sd.cases[1].pred == N.postprocess(bytes:decode(direct)),
    "niah.run: a real model decodes greedily with its cache (same as m:generate)")

  -- answer_accuracy: an "oracle" whose logits at position p put the top score on its input's token p+1 scores 1;
  -- one that is wrong at the token `miss` positions before the end scores (A−1)/A — so the scored positions are
  -- exactly the answer's tokens (an off-by-one would score the last prompt token or drop an answer token)
  local function oracle(miss)
    return { forward = function(_, x)
      local ids = x:tolist()[1]
      local L, V = #ids, 256
      local t = hb.zeros(1, L, V)
      for p = 1, L - 1 do
        local nxt = ids[p + 1]
        if miss and p == L - miss then nxt = (nxt + 1) % V end
        t:narrow(2, p, 1):narrow(3, nxt + 1, 1):fill_(1)
      end
      return t
    end }
  end
  local both = { small, mk }
  local a1, d1 = N.answer_accuracy(oracle(), bytes, both)
  local A1 = #bytes:encode(" " .. small.answers[1]) -- " " + 7 digits
  T.ok(close(a1, 1) and close(d1.exact, 1) and d1.n == 2 and d1.cases[1].tokens == A1 and A1 == 8,
    "niah.answer_accuracy: a model that predicts every answer token scores 1 (answer = ' ' + value)", a1)
  local a2, d2 = N.answer_accuracy(oracle(1), bytes, { small })
  local a3 = N.answer_accuracy(oracle(A1), bytes, { small })
  local a4 = N.answer_accuracy(oracle(A1 + 1), bytes, { small })
  T.ok(close(a2, (A1 - 1) / A1) and close(a3, (A1 - 1) / A1) and close(a4, 1) and close(d2.exact, 0),
    "niah.answer_accuracy: scores exactly the answer's tokens (a miss on the last or first of them counts, one before does not)",
    string.format("%g %g %g", a2, a3, a4))
  local ar = N.answer_accuracy(m, bytes, { small })
  T.ok(ar >= 0 and ar <= 1, "niah.answer_accuracy: a real model's score is a fraction", ar)
  T.raises(function() N.answer_accuracy(m, bytes, { {} }) end, "case 1 is not a case", "niah.answer_accuracy: a bad case is named")
end

-- ===================================================================================================
-- Multiple choice
-- ===================================================================================================
do
  local MC = E.mc
  local uniform = { forward = function(_, ids) return hb.zeros(ids:size(1), ids:size(2), 256) end }
  -- every byte costs ln 256, so acc picks the shortest choice and acc_norm (÷ characters, the " "
  -- delimiter not counted) the longest: loglik/len = −(len+1)/len · ln 256
  local items = {
    { context = "Question: pick one\nAnswer:", choices = { "ab", "abcdef" }, gold = 1 },
    { context = "Q:", choices = { "abcd", "xy", "abcdefgh" }, gold = 2 },
  }
  local r = MC(uniform, bytes, items)
  local l256 = math.log(256)
  T.ok(r.n == 2 and r.acc == 0 and r.acc_norm == 1 and r.items[1].pred == 0 and r.items[2].pred == 1,
    "mc: acc and acc_norm differ on a crafted case (acc 0, acc_norm 1)", string.format("acc %s acc_norm %s", r.acc, r.acc_norm))
  T.ok(close(r.items[1].lls[1], -3 * l256, 1e-5) and close(r.items[1].lls[2], -7 * l256, 1e-5),
    "mc: log-likelihood = Σ log p over the continuation ' ' + choice", r.items[1].lls[1])
  -- a model that knows the answer: logits favour byte 'z'
  local zlover = { forward = function(_, ids)
    local lg = hb.zeros(ids:size(1), ids:size(2), 256)
    for b = 1, ids:size(1) do for t = 1, ids:size(2) do lg:set(5, b, t, string.byte("z") + 1) end end
    return lg
  end }
  local r2 = MC(zlover, bytes, { { context = "Q:", choices = { "aaaa", "zzzz" }, gold = 1 } })
  local lz, lo = 5 - math.log(math.exp(5) + 255), -math.log(math.exp(5) + 255)
  T.ok(r2.acc == 1 and r2.acc_norm == 1 and close(r2.items[1].lls[2], lo + 4 * lz, 1e-5),
    "mc: known per-token log-probs add up", r2.items[1].lls[2])

  local c, k = MC.encode_pair(bytes, "Answer: ", " yes")
  T.ok(same_list(c, { ("Answer:"):byte(1, -1) }) and same_list(k, { ("  yes"):byte(1, -1) }),
    "mc: lm-eval's _encode_pair moves the context's trailing space into the continuation")
  local c0, k0 = MC.encode_pair(bytes, "", " hi", 0)
  T.ok(same_list(c0, { 0 }) and same_list(k0, { 32, 104, 105 }), "mc: an empty context becomes the prefix token")

  local piqa = MC.normalize { goal = "Dry a towel", sol1 = "Hang it", sol2 = "Fold it", label = 0 }
  T.ok(piqa.requests[2][1] == "Question: Dry a towel\nAnswer:" and piqa.requests[2][2] == " Fold it" and piqa.gold == 0, "mc: PIQA fields")
  local arc = MC.normalize { question = "Which?", choices = { text = { "a", "b", "c" }, label = { "A", "B", "C" } }, answerKey = "C" }
  T.ok(arc.gold == 2 and arc.requests[1][1] == "Question: Which?\nAnswer:", "mc: ARC fields (answerKey → index)")
  local hs = MC.normalize { activity_label = "Baking", ctx_a = "A man mixes flour.", ctx_b = "he THEN [title] bakes", endings = { " it  well", "x" }, label = "0" }
  T.ok(hs.requests[1][1] == "Baking: A man mixes flour. He then. bakes" and hs.choices[1] == "it well" and hs.gold == 0,
    "mc: HellaSwag preprocess (capitalize, [title], brackets, double spaces)", hs.requests[1][1])
  local wg = MC.normalize { sentence = "The cup fell because _ was slippery.", option1 = "the cup", option2 = "the table", answer = "2" }
  T.ok(wg.requests[1][1] == "The cup fell because the cup" and wg.requests[2][2] == " was slippery." and wg.gold == 1,
    "mc: WinoGrande partial scoring (context per option, shared continuation)")
  T.raises(function() MC(uniform, bytes, { { context = "Q", choices = { "a" }, gold = 3 } }) end,
    "mc: gold 3 out of range for 1 choices", "mc: a bad gold index is refused")

  local sample = MC.load("tests/data/mc_sample.jsonl")
  local valid = #sample >= 40
  for _, it in ipairs(sample) do valid = valid and pcall(MC.normalize, it) end
  T.ok(valid, "mc: the bundled sample set (tests/data/mc_sample.jsonl) has 40 valid items", #sample)
  local m = tiny { vocab_size = 256 }
  local rs = MC(m, bytes, "tests/data/mc_sample.jsonl", { limit = 10 })
  T.ok(rs.n == 10 and rs.acc >= 0 and rs.acc <= 1 and rs.acc_norm >= 0 and rs.acc_norm <= 1, "mc: a real model scores the sample file")
  -- the real-model path (hidden states gathered at the continuation) equals the full-forward scores
  local rf = MC({ forward = function(_, ids) return m:forward(ids) end }, bytes, "tests/data/mc_sample.jsonl", { limit = 3 })
  local agree = true
  for i = 1, 3 do for j, v in ipairs(rs.items[i].lls) do agree = agree and close(v, rf.items[i].lls[j], 1e-4) end end
  T.ok(agree, "mc: gathered-position scoring = full forward")
end

-- ===================================================================================================
-- LM: rolling windows, loss, bits per byte
-- ===================================================================================================
do
  -- lm-eval's get_rolling_token_windows(token_list, prefix_token, max_seq_len, context_len=1) followed by
  -- make_disjoint_window, transcribed: returns the model inputs and the scored targets of every window
  local function reference(tokens, prefix, max_len)
    local out = {}
    local n = #tokens
    local first = math.min(max_len, n)
    local ctx = { prefix }
    for i = 1, first - 1 do ctx[#ctx + 1] = tokens[i] end
    out[#out + 1] = { input = ctx, target = { table.unpack(tokens, 1, first) } }
    local predicted = first
    while predicted < n do
      local wpl = math.min(n - predicted, max_len)
      local we = predicted + wpl
      local a, b = {}, {}
      for i = we - max_len - 1 + 1, we - 1 do a[#a + 1] = tokens[i] end -- token_list[we-max_len-1 : we-1]
      for i = we - wpl + 1, we do b[#b + 1] = tokens[i] end
      -- make_disjoint_window: a[: len(a) - (len(b) - 1)], then the model feeds (a + b)[:-1]
      local inp = {}
      for i = 1, #a - (#b - 1) do inp[#inp + 1] = a[i] end
      for i = 1, #b - 1 do inp[#inp + 1] = b[i] end
      out[#out + 1] = { input = inp, target = b }
      predicted = predicted + wpl
    end
    return out
  end
  local all_ok, why = true, nil
  for _, n in ipairs { 1, 2, 5, 16, 17, 31, 32, 33, 50, 97 } do
    for _, Tw in ipairs { 1, 4, 16 } do
      local tokens = {}
      for i = 1, n do tokens[i] = i end
      local seq = { 0 }
      for i = 1, n do seq[i + 1] = i end
      local ref = reference(tokens, 0, Tw)
      local wins = E.rolling_windows(n, Tw)
      if #ref ~= #wins then all_ok, why = false, string.format("n=%d T=%d: %d vs %d windows", n, Tw, #ref, #wins) end
      for i = 1, math.min(#ref, #wins) do
        local w = wins[i]
        local inp = { table.unpack(seq, w.s, w.s + w.L - 1) }
        local tgt = { table.unpack(seq, w.s + w.L - w.k + 1, w.s + w.L) }
        if not (same_list(inp, ref[i].input) and same_list(tgt, ref[i].target)) then
          all_ok, why = false, string.format("n=%d T=%d window %d differs", n, Tw, i)
        end
      end
    end
  end
  T.ok(all_ok, "lm: rolling windows = lm-eval get_rolling_token_windows + make_disjoint_window", why)
  local cover = {}
  for _, w in ipairs(E.rolling_windows(100, 16, 5)) do
    for j = w.s + w.L - w.k + 1, w.s + w.L do cover[j] = (cover[j] or 0) + 1 end
  end
  local once = true
  for j = 2, 101 do once = once and cover[j] == 1 end
  T.ok(once and cover[1] == nil, "lm: with a stride every token is still scored exactly once")

  -- uniform logits over V: loss = ln V, bpb = log2 V / bytes_per_token
  local V = 64
  local seen = {}
  local uniform = { config = { vocab_size = V }, forward = function(_, ids)
    for b = 1, ids:size(1) do seen[#seen + 1] = ids:select(1, b):tolist() end
    return hb.zeros(ids:size(1), ids:size(2), V)
  end }
  local ids = hb.randint(0, V, 100)
  local r = E.lm(uniform, ids, { T = 16, bytes_per_token = 1.5 })
  T.ok(r.tokens == 99 and close(r.loss, math.log(V), 1e-6) and close(r.bpb, math.log(V, 2) / 1.5, 1e-6) and close(r.ppl, V, 1e-5),
    "lm: uniform model gives loss ln V, ppl V, bpb = log2(V)/bytes_per_token", r.bpb)
  local ref = reference({ table.unpack(ids:tolist(), 2) }, ids:get(1), 16)
  local fed_ok = #seen == #ref
  for i = 1, math.min(#seen, #ref) do fed_ok = fed_ok and same_list(seen[i], ref[i].input) end
  T.ok(fed_ok, "lm: the model is fed exactly lm-eval's windows", #seen .. " windows")
  local rp = E.lm(uniform, ids, { T = 16, prefix_token = 0, tokenizer = bytes })
  T.ok(rp.tokens == 100 and rp.bytes == 100 and close(rp.bpb, math.log(V, 2), 1e-6), "lm: a prefix token scores the first token too; bytes by decoding")
  local shard = { len = function() return 100 end, window = function(_, i, n) return ids:narrow(1, i, n) end, bytes_per_token = 2 }
  local rs = E.lm(uniform, shard, { T = 16, max_tokens = 50 })
  T.ok(rs.tokens == 50 and close(rs.bpb, math.log(V, 2) / 2, 1e-6), "lm: a duck-typed shard (:len, :window) with max_tokens")

  -- a real model: one window over the whole sequence = m:loss
  local m = tiny()
  local x = hb.randint(0, 64, 40)
  local r1 = E.lm(m, x, { T = 64 })
  local want = hb.no_grad(function() return m:loss(x:view(1, 40)):item() end)
  local r2 = E.lm(m, x:tolist(), { T = 8, batch_size = 2 })
  T.ok(close(r1.loss, want, 1e-5) and r2.tokens == 39 and r2.loss > 0, "lm: a single window equals m:loss; tables and small batches work", r1.loss .. " vs " .. want)
end

-- ===================================================================================================
-- Efficiency
-- ===================================================================================================
do
  local d, H, dk, V, Lyr = 32, 2, 16, 64, 2
  local dv = dk * 2           -- expand_v = 2
  local mlp = 256             -- fla: 256 · ceil(int(2·4d/3) / 256)
  local W = 4                 -- conv_size
  local per_layer = 2 * H * dk * d + H * dv * d + 2 * H * d + 2 * H + (2 * H * dk + H * dv) * W
    + H * dv * d + dv + d * H * dv + 2 * d + 3 * d * mlp
  local params = Lyr * per_layer + V * d + d + V * d
  local m = tiny()
  local e = E.efficiency(m, { N = 100 })
  T.is(e.params, params, "efficiency: params of the tiny GDN = hand count")
  T.is(e.state_bytes, Lyr * H * dk * dv * 4, "efficiency: state bytes = layers · H · dk · dv · 4")
  T.is(e.conv_state_bytes, Lyr * (2 * H * dk + H * dv) * (W - 1) * 4, "efficiency: short-conv state = (conv_size−1) · channels · 4")
  T.is(e.kv_bytes_at_N, 0, "efficiency: no KV cache without attention layers")
  T.ok(close(e.mixer_flops_per_token, Lyr * 8 * d * d / H) and close(e.flops_per_token, Lyr * 8 * d * d / H + 2 * params),
    "efficiency: GDN mixer FLOPs 8·d²/H per layer (paper); total adds 2·params", e.flops_per_token)

  local hy = tiny { attn = { layers = { 1 }, num_heads = 2 } }
  local N = 20
  local eh = E.efficiency(hy, { N = N })
  local D = d // 2
  T.ok(eh.kv_bytes_at_N == 2 * N * 2 * D * 4 and close(eh.mixer_flops_per_token, 8 * d * d / H + 2 * N * d),
    "efficiency: hybrid adds 2·N·Hkv·D·4 KV bytes and 2·N·d attention FLOPs", eh.kv_bytes_at_N)
  local cache = hy:new_cache(1)
  hy:prefill(hb.randint(0, 64, 1, N), cache)
  T.is(cache:nbytes(), eh.state_bytes + eh.conv_state_bytes + eh.kv_bytes_at_N, "efficiency: accounting = the decode cache's bytes after N tokens")

  local kinds = {
    { model_type = "hgrn" }, { model_type = "gla" }, { model_type = "retnet" }, { model_type = "delta_net" },
    { model_type = "hgrn2", expand_ratio = 8 }, { model_type = "transformer" },
  }
  local okk, why = true, nil
  local f_ok = true
  for _, k in ipairs(kinds) do
    local cfg = { hidden_size = 32, num_hidden_layers = 1, num_heads = 2, vocab_size = 64 }
    if k.model_type == "hgrn" then cfg.num_heads = nil end -- HGRN has no heads (configs are strict)
    for kk, v in pairs(k) do cfg[kk] = v end
    local mk = hb.models.new(cfg, { seed = 1 })
    local ek = E.efficiency(mk, { N = 7 })
    local c = mk:new_cache(1)
    mk:prefill(hb.randint(0, 64, 1, 7), c)
    if c:nbytes() ~= ek.cache_bytes_at_N then okk, why = false, k.model_type .. ": " .. c:nbytes() .. " vs " .. ek.cache_bytes_at_N end
    local L = mk.layers[1]
    local coef = ({ gla = 7, retnet = 5, delta_net = 8, hgrn2 = 7 })[L.kind]
    local want = L.kind == "hgrn" and 5 * 32 or L.kind == "attention" and 2 * 7 * 32 or coef * 32 * 32 / L.H
    f_ok = f_ok and close(ek.mixer_flops_per_token, want)
  end
  T.ok(okk, "efficiency: state + conv + KV bytes match the cache for hgrn, gla, retnet, delta_net, hgrn2, transformer", why)
  T.ok(f_ok, "efficiency: paper mixer formulas (HGRN 5d; RetNet 5d²/H; GLA, HGRN-2 7d²/H; DeltaNet 8d²/H; attention 2Nd)")

  local tp = E.measure_throughput(m, { B = 2, T = 16, steps = 1, decode_steps = 4 })
  T.ok(tp.train_tokens_per_s > 0 and tp.decode_tokens_per_s > 0 and tp.prefill_tokens_per_s > 0,
    "measure_throughput: training, prefill and decode tokens/s", string.format("%.0f / %.0f / %.0f", tp.train_tokens_per_s, tp.prefill_tokens_per_s, tp.decode_tokens_per_s))
end

T.done()
