-- hyblua/tasks/niah.lua — RULER needle-in-a-haystack tasks (docs/evals.md#niah), as RULER's
-- scripts/data/synthetic/niah.py and lm-eval's tasks/ruler/prepare_niah.py build them:
--   needle   "One of the special magic {numbers|uuids} for {key} is: {value}."
--   haystack repeat (the "grass is green" noise line), essay (text, sentence-split; needles go between
--            sentences at a depth), or needle (every line is itself a needle with a random key/value)
--   template "Some special magic {v} are hidden within the following text. Make sure to memorize it. I will
--            quiz you about the {v} afterwards.\n{context}\nWhat are all the special magic {v} for {query}
--            mentioned in the provided text?" + " " + the answer prefix "The special magic {v} for {query}
--            mentioned in the provided text are"; singular forms when one value is asked for
--   length   the haystack size is the largest whose prompt tokens + tokens_to_generate (128) fit `length`,
--            measured with the model's tokenizer (binary search)
--   scoring  greedy decoding; string_match_all = mean over cases of the fraction of gold strings found as
--            case-insensitive substrings, × 100
-- Differences from RULER, by necessity: our own RNG (not Python's), a regex sentence splitter instead of
-- nltk punkt, a small bundled adjective/noun list instead of wonderwords', and no bundled Paul Graham
-- essays (pass your own text as `haystack`; the default essay filler is a short text of our own, repeated
-- as needed, where RULER stops at the end of its essays).
local hb = require "hyblua.binding"
local U = require "hyblua.tasks.util"
local user_error = require("hyblua.errors").user_error
local N = {}

N.NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
N.NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
N.TEMPLATE = "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
  .. "I will quiz you about the {type_needle_v} afterwards.\n{context}\n"
  .. "What are all the special magic {type_needle_v} for {query} mentioned in the provided text?"

-- RULER's 40 depths: np.round(np.linspace(0, 100, 40)) (no halves occur, so floor(x + 0.5) agrees)
N.DEPTHS = {}
for i = 0, 39 do N.DEPTHS[i + 1] = math.floor(100 * i / 39 + 0.5) end

-- RULER's task table (lm-eval tasks/ruler/niah_utils.py)
N.TASKS = {
  niah_single_1 = { haystack = "repeat", k = "words", v = "numbers" },
  niah_single_2 = { haystack = "essay", k = "words", v = "numbers" },
  niah_single_3 = { haystack = "essay", k = "words", v = "uuids" },
  niah_multikey_1 = { haystack = "essay", k = "words", v = "numbers", nk = 4 },
  niah_multikey_2 = { haystack = "needle", k = "words", v = "numbers" },
  niah_multikey_3 = { haystack = "needle", k = "uuids", v = "uuids" },
  niah_multivalue = { haystack = "essay", k = "words", v = "numbers", nv = 4 },
  niah_multiquery = { haystack = "essay", k = "words", v = "numbers", nq = 4 },
}
local ALIASES = {
  ["s-niah-1"] = "niah_single_1", ["s-niah-2"] = "niah_single_2", ["s-niah-3"] = "niah_single_3",
  passkey = "niah_single_1", multikey = "niah_multikey_1", multivalue = "niah_multivalue",
  multiquery = "niah_multiquery",
}
local function resolve(task)
  if type(task) ~= "string" then user_error("niah: task name expected (e.g. 'niah_single_2' or 's-niah-2')", 3) end
  local t = task:lower():gsub("-", "_")
  local name = ALIASES[task:lower()] or (N.TASKS[t] and t) or (N.TASKS["niah_" .. t] and "niah_" .. t)
  if not name then
    local names = {}
    for k in pairs(N.TASKS) do names[#names + 1] = k end
    table.sort(names)
    user_error("niah: unknown task '" .. task .. "' (known: " .. table.concat(names, ", ") .. ")", 3)
  end
  return name, N.TASKS[name]
end

-- word keys "adjective-noun" (RULER draws from wonderwords' lists; these are a small stand-in)
N.ADJECTIVES = { "amber", "ancient", "bitter", "bold", "brave", "brief", "bright", "calm", "clever", "cold",
  "crisp", "curious", "damp", "dark", "eager", "early", "fancy", "fierce", "gentle", "golden", "grand", "green",
  "hollow", "humble", "icy", "jolly", "keen", "lively", "lonely", "loud", "lucky", "mellow", "misty", "modern",
  "narrow", "noble", "odd", "pale", "plain", "proud", "quiet", "rapid", "rough", "rusty", "silent", "silver",
  "smooth", "steady", "sturdy", "swift", "tidy", "vivid", "warm", "wild", "witty", "young" }
N.NOUNS = { "anchor", "apple", "badge", "banner", "barrel", "basket", "beacon", "bicycle", "blanket", "bridge",
  "bucket", "cabin", "candle", "canyon", "castle", "cellar", "comet", "compass", "cottage", "crystal", "desert",
  "engine", "falcon", "feather", "forest", "fountain", "garden", "glacier", "hammer", "harbor", "island",
  "jacket", "kettle", "ladder", "lantern", "meadow", "mirror", "needle", "orchard", "otter", "paddle", "pebble",
  "pillow", "quarry", "rocket", "saddle", "shovel", "spider", "teapot", "thunder", "tunnel", "valley", "violin",
  "walnut", "window", "zephyr" }

-- a short essay-like filler of our own (repeated as needed) for essay tasks without a haystack
N.FILLER_ESSAY = [[
Most of the work in any craft happens long before anyone notices it. A carpenter spends more time measuring
and planning than cutting, and a good cook spends the morning preparing what will be eaten in ten minutes.
The visible part is small. The invisible part is where the skill lives. People who are new to a field often
copy the visible part and wonder why their results look different.
Consider how a small town library works. Books arrive, are sorted, catalogued and placed on shelves. Readers
borrow them and bring them back, sometimes late and sometimes with notes in the margins. None of this is
dramatic. Yet the library only works because someone keeps the catalogue honest and the shelves in order.
When that care stops, the books are still there, but nobody can find them.
Learning follows a similar pattern. The first weeks feel slow because there is little to show. Then, at some
point, the pieces begin to connect. A student who kept practising scales suddenly plays a whole song. A
runner who kept going out in the rain finds that the long hill is no longer hard. The progress was real all
along; it simply was not visible yet.
Cities grow in much the same way. A road is built to connect two villages, then a market appears where the
road crosses a river. Houses follow the market, and workshops follow the houses. Years later the town has a
shape that no single person designed. Each decision was small and local, and the whole emerged from many of
them taken together.
Good tools matter, but they matter less than habits. A writer with a cheap notebook who writes every day will
usually outpace one with an expensive desk who waits for inspiration. The habit builds a store of material and
a sense of judgement. The tool only makes the work a little more pleasant.
There is also value in finishing things. An unfinished project teaches a few lessons, while a finished one
teaches all of them, including the dull ones about editing, packing and delivery. Those last steps are where
many plans quietly fail. People who finish often are not always the most talented; they are the ones who
learned to carry a project through its least exciting stage.
Weather shapes the rhythm of a place. In the north, winter evenings arrive early and people gather indoors to
talk, read and repair things. In summer the same streets stay busy until late at night. Visitors notice the
seasons as scenery, but residents live by them and plan their years around the light.
Finally, it helps to remember that most problems are smaller than they first appear. A task that seems huge
on Monday looks manageable on Wednesday once it has been broken into parts. The trick is to begin with one
part and trust that the rest will become clearer along the way.
]]

-- ---- random values (RULER's generate_random) ----------------------------------------------------------
local function gen_random(rng, kind)
  if kind == "numbers" then return tostring(rng:randint(1000000, 9999999)) end
  if kind == "words" then return rng:choice(N.ADJECTIVES) .. "-" .. rng:choice(N.NOUNS) end
  if kind == "uuids" then -- uuid.UUID(int=getrandbits(128), version=4): version nibble 4, variant 10xx
    local h = string.format("%016x%016x", rng:next64(), rng:next64())
    local var = string.format("%x", 8 + (tonumber(h:sub(17, 17), 16) % 4))
    h = h:sub(1, 12) .. "4" .. h:sub(14, 16) .. var .. h:sub(18)
    return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-" .. h:sub(13, 16) .. "-" .. h:sub(17, 20) .. "-" .. h:sub(21, 32)
  end
  user_error("niah: unknown needle type '" .. tostring(kind) .. "'", 3)
end

local function plain_replace(s, a, b)
  local out, i = {}, 1
  while true do
    local j, k = s:find(a, i, true)
    if not j then break end
    out[#out + 1] = s:sub(i, j - 1)
    out[#out + 1] = b
    i = k + 1
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end
local function fill(template, vars)
  return (template:gsub("{([%w_]+)}", function(k) return vars[k] end))
end

-- Sentence splitter standing in for nltk's sent_tokenize: a sentence ends at . ! or ? (plus closing
-- quotes/brackets) followed by whitespace. No abbreviation handling.
function N.split_sentences(text)
  local out, start = {}, 1
  while true do
    local a, b = text:find("[%.!?][\"'%)%]]*%s+", start)
    if not a then break end
    local punct_end = text:find("%s", a) - 1
    local s = text:sub(start, punct_end):match("^%s*(.-)%s*$")
    if s ~= "" then out[#out + 1] = s end
    start = b + 1
  end
  local rest = text:sub(start):match("^%s*(.-)%s*$")
  if rest ~= "" then out[#out + 1] = rest end
  return out
end

-- essay word source: a string, a list of strings, or a function(i) -> i-th chunk of text (nil at end).
-- Returns words(n) -> the first n words, cycling when the source runs out.
local function word_source(h)
  local words, exhausted, i = {}, false, 0
  local function add(text) for w in text:gmatch("%S+") do words[#words + 1] = w end end
  if type(h) == "string" then add(h); exhausted = true
  elseif type(h) == "table" then for _, s in ipairs(h) do add(s) end; exhausted = true
  elseif type(h) ~= "function" then user_error("niah: haystack must be text, a list of texts or a function(i) -> text", 3) end
  return function(n)
    while #words < n and not exhausted do
      i = i + 1
      local chunk = h(i)
      if chunk == nil then exhausted = true else add(chunk) end
    end
    if #words == 0 then user_error("niah: the haystack is empty", 4) end
    local out = {}
    for j = 1, n do out[j] = words[(j - 1) % #words + 1] end
    return out
  end
end

-- hb.eval.niah.build{task=, length=, depth=, haystack=, tokenizer=, seed=, tokens_to_generate=128,
--   haystack_type=} -> case {prompt_ids, answers, prompt, query, needles, ...}
--   task      niah_single_1|2|3, niah_multikey_1|2|3, niah_multivalue, niah_multiquery (or s-niah-1/2/3)
--   length    RULER's max_seq_length: prompt tokens + tokens_to_generate <= length
--   depth     fraction in [0, 1] for the (first) queried needle; the other needles take distinct RULER
--             depths at random; a list gives every needle's depth (in case.needles order); nil samples
--             all as RULER does (essay: from the 40 DEPTHS; line haystacks: a uniform line)
--   haystack  essay text (string, list of strings, or function(i) -> text chunk); default: our filler
--   tokenizer object with :encode (and :decode for run), or a function text -> ids; default bytes
-- Needles go between sentences (essay: before sentence floor(n_sentences·depth), joined with " ") or
-- between lines (repeat/needle haystacks: before line floor(n_lines·depth), joined with "\n").
local build_keys = { "task", "length", "depth", "haystack", "tokenizer", "seed", "tokens_to_generate", "haystack_type" }
local cases_keys = { "lengths", "depths", "samples" }
for _, k in ipairs(build_keys) do cases_keys[#cases_keys + 1] = k end

function N.build(o)
  if type(o) ~= "table" then user_error("hb.eval.niah.build{...} expects a table of options", 2) end
  U.check_opts(o, build_keys, "hb.eval.niah.build")
  local name, spec = resolve(o.task)
  local tok = o.tokenizer or U.byte_tokenizer()
  local length = o.length
  if math.type(length) ~= "integer" or length < 1 then user_error("niah.build: length (tokens) is required", 2) end
  local gen = o.tokens_to_generate or 128
  local seed = o.seed or 42
  local rng = U.rng(seed)
  local kind = o.haystack_type or spec.haystack
  local tk, tv = spec.k, spec.v
  local nq, nv = spec.nq or 1, spec.nv or 1
  local nk = math.max(spec.nk or 1, nq)

  -- keys, values, needles (shuffled as RULER does, with a generator of the same seed)
  local keys, values, needles = {}, {}, {}
  for i = 1, nk do
    keys[i] = gen_random(rng, tk)
    values[i] = {}
    for j = 1, nv do
      values[i][j] = gen_random(rng, tv)
      needles[#needles + 1] = { text = fill(N.NEEDLE, { type_needle_v = tv, key = keys[i], value = values[i][j] }), key = i }
    end
  end
  U.rng(seed):shuffle(needles)

  -- queries and answers
  local qidx = rng:sample(1, nk, nq)
  local queries, answers, queried = {}, {}, {}
  for i, k in ipairs(qidx) do
    queries[i] = keys[k]
    queried[k] = true
    for _, v in ipairs(values[k]) do answers[#answers + 1] = v end
  end
  local query = #queries > 1 and (table.concat(queries, ", ", 1, #queries - 1) .. ", and " .. queries[#queries]) or queries[1]

  -- depths (fractions)
  if type(o.depth) == "table" then
    if #o.depth ~= #needles then user_error(string.format("niah.build: %d depths given for %d needles", #o.depth, #needles), 2) end
    for i, nd in ipairs(needles) do nd.depth = o.depth[i] end
  else
    local pinned
    if o.depth ~= nil then
      if type(o.depth) ~= "number" or o.depth < 0 or o.depth > 1 then user_error("niah.build: depth must be in [0, 1]", 2) end
      for i, nd in ipairs(needles) do if queried[nd.key] then pinned = i; break end end
      needles[pinned].depth = o.depth
    end
    local pool = {}
    for _, d in ipairs(N.DEPTHS) do
      if not (o.depth and d == math.floor(o.depth * 100 + 0.5)) then pool[#pool + 1] = d end
    end
    local pick = rng:sample(1, #pool, #needles)
    for i, nd in ipairs(needles) do
      if i ~= pinned then
        if kind == "essay" then nd.depth = pool[pick[i]] / 100 else nd.depth = rng:random() end
      end
    end
  end

  -- template (singular when one value is asked for) and the answer prefix
  local template, vname = N.TEMPLATE, tv
  local prefix
  if nq * nv == 1 then
    template = plain_replace(template, "Some", "A")
    template = plain_replace(template, "are all", "is")
    template = plain_replace(template, "are", "is")
    template = plain_replace(template, "answers", "answer")
    vname = tv:sub(1, -2)
    prefix = "The special magic " .. vname .. " for " .. query .. " mentioned in the provided text is"
  else
    prefix = "The special magic " .. tv .. " for " .. query .. " mentioned in the provided text are"
  end
  local head = fill(template:match("^(.-){context}"), { type_needle_v = vname, query = query })
  local tail = fill(template:match("{context}(.*)$"), { type_needle_v = vname, query = query }) .. " " .. prefix

  -- haystack units: words (essay) or lines (repeat, needle)
  local words, line_rng, lines
  if kind == "essay" then
    words = word_source(o.haystack or N.FILLER_ESSAY)
  elseif kind == "repeat" or kind == "needle" then
    line_rng, lines = U.rng(seed ~ 0x2545F491), {}
  else
    user_error("niah.build: unknown haystack type '" .. tostring(kind) .. "'", 2)
  end
  local function line(i)
    if kind == "repeat" then return N.NOISE end
    while #lines < i do
      lines[#lines + 1] = fill(N.NEEDLE, { type_needle_v = tv, key = gen_random(line_rng, tk), value = gen_random(line_rng, tv) })
    end
    return lines[i]
  end

  -- the context for nh haystack units; returns the text and the needles' byte offsets in it
  local function context(nh)
    local units, sep
    if kind == "essay" then
      units = N.split_sentences(table.concat(words(nh), " "))
      sep = " "
    else
      units = {}
      for i = 1, nh do units[i] = line(i) end
      sep = "\n"
    end
    local order = {}
    for i, nd in ipairs(needles) do order[i] = { pos = math.floor(#units * nd.depth), i = i } end
    table.sort(order, function(a, b) if a.pos ~= b.pos then return a.pos < b.pos end return a.i < b.i end)
    local parts, offsets, len, last = {}, {}, 0, 0
    local function push(s)
      if #parts > 0 then len = len + #sep end
      parts[#parts + 1] = s
      len = len + #s
    end
    for _, it in ipairs(order) do
      if kind == "essay" then
        push(table.concat(units, " ", last + 1, it.pos)) -- RULER keeps empty chunks (" " joins them)
      else
        for j = last + 1, it.pos do push(units[j]) end
      end
      push(needles[it.i].text)
      offsets[it.i] = len - #needles[it.i].text -- 0-based byte offset of the needle in the context
      last = it.pos
    end
    if kind == "essay" then push(table.concat(units, " ", last + 1, #units))
    else for j = last + 1, #units do push(units[j]) end end
    return table.concat(parts, sep), offsets, #units
  end

  local function prompt_of(nh)
    local ctx, offs, nunits = context(nh)
    return head .. ctx .. tail, offs, nunits, #ctx
  end
  local function fits(nh)
    local p = prompt_of(nh)
    local n = #U.encode(tok, p)
    return n + gen <= length, n
  end

  -- largest haystack that fits: grow, then bisect
  local ok1, n1 = fits(1)
  if not ok1 then
    user_error(string.format("niah.build: length %d is too small for task %s (the prompt alone needs %d tokens + %d to generate)",
      length, name, n1, gen), 2)
  end
  local lo, hi = 1, 2
  while fits(hi) do
    lo, hi = hi, hi * 2
    if hi > (1 << 26) then user_error("niah.build: the tokenizer does not grow with the haystack", 2) end
  end
  while hi - lo > 1 do
    local mid = (lo + hi) // 2
    if fits(mid) then lo = mid else hi = mid end
  end

  local prompt, offs, nunits, ctx_len = prompt_of(lo)
  local prompt_ids = U.encode(tok, prompt)
  local function ntok(s) return #U.encode(tok, s) end
  local ctx_start = ntok(head)
  local ctx_end = ntok(prompt:sub(1, #head + ctx_len))
  local out_needles = {}
  for i, nd in ipairs(needles) do
    local char_pos = #head + offs[i] + 1
    out_needles[i] = { text = nd.text, key = keys[nd.key], values = values[nd.key], queried = queried[nd.key] or false,
                       depth = nd.depth, char_pos = char_pos, token_pos = ntok(prompt:sub(1, char_pos - 1)) }
  end
  return {
    task = name, length = length, tokens_to_generate = gen, seed = seed, haystack_type = kind,
    prompt = prompt, prompt_ids = prompt_ids, answers = answers, query = query, queries = queries,
    needles = out_needles, num_haystack = lo, num_units = nunits,
    context = { char_start = #head + 1, char_len = ctx_len, token_start = ctx_start, token_end = ctx_end },
    depth = o.depth,
  }
end

-- a grid of cases: niah.cases{task=, lengths={...}, depths={...} (default RULER's 40, as fractions),
--   samples=1, seed=, ...build options} -> list of cases (seed + running index per case)
function N.cases(o)
  if type(o) ~= "table" then user_error("hb.eval.niah.cases{...} expects a table of options", 2) end
  U.check_opts(o, cases_keys, "hb.eval.niah.cases")
  local out = {}
  local depths = o.depths
  if not depths then depths = {}; for i, d in ipairs(N.DEPTHS) do depths[i] = d / 100 end end
  local seed = o.seed or 42
  for _, L in ipairs(o.lengths or { o.length }) do
    for _, d in ipairs(depths) do
      for _ = 1, o.samples or 1 do
        local b = {}
        for k, v in pairs(o) do b[k] = v end
        b.length, b.depth, b.seed = L, d, seed + #out
        b.lengths, b.depths, b.samples = nil, nil, nil
        out[#out + 1] = N.build(b)
      end
    end
  end
  return out
end

-- lm-eval's postprocess_pred: strip, turn control characters into newlines, strip again
function N.postprocess(s)
  s = s:match("^%s*(.-)%s*$")
  s = s:gsub("[%z\1-\31]", "\n")
  return (s:match("^%s*(.-)%s*$"))
end

-- string_match_all(preds, refs) = mean over i of (#{r in refs[i] : r found in preds[i]} / #refs[i]) × 100
function N.string_match_all(preds, refs)
  local s = 0
  for i, p in ipairs(preds) do
    local pl, hit = p:lower(), 0
    for _, r in ipairs(refs[i]) do if pl:find(r:lower(), 1, true) then hit = hit + 1 end end
    s = s + hit / #refs[i]
  end
  return s / #preds * 100
end
-- string_match_part: max over golds per case (RULER's QA metric)
function N.string_match_part(preds, refs)
  local s = 0
  for i, p in ipairs(preds) do
    local pl, best = p:lower(), 0
    for _, r in ipairs(refs[i]) do if pl:find(r:lower(), 1, true) then best = 1 end end
    s = s + best
  end
  return s / #preds * 100
end

-- greedy continuation of one prompt (ids table) with the decode cache; stops early at eos
function N.greedy(model, ids, n, eos)
  local prompt = hb.tensor({ ids }, "int64")
  if not (model.new_cache and model.prefill and model.step) then
    local out = model:generate(prompt, n, { temperature = 0 })[1]
    if eos then
      for i, t in ipairs(out) do if t == eos then return { table.unpack(out, 1, i - 1) } end end
    end
    return out
  end
  local cache = model:new_cache(1)
  local logits = model:prefill(prompt, cache)
  local out = {}
  for i = 1, n do
    local t = logits:argmax(2):get(1)
    if t == eos then break end
    out[i] = t
    if i < n then logits = model:step({ t }, cache) end
  end
  return out
end

-- hb.eval.niah.run(model, tokenizer, cases [, {tokens_to_generate=, eos=}]) -> score (0..100), details
-- details = {mean (0..1), n, cases = {{task, length, depth, pred, answers, frac}, ...}}
function N.run(model, tok, cases, opts)
  U.check_opts(opts, { "tokens_to_generate", "eos" }, "hb.eval.niah.run")
  opts = opts or {}
  if cases.prompt_ids then cases = { cases } end
  local eos = opts.eos or U.attr(tok, "eos_id", "eos_token_id", "eos")
  local preds, refs, rows = {}, {}, {}
  for i, c in ipairs(cases) do
    local n = opts.tokens_to_generate or c.tokens_to_generate or 128
    local out = hb.no_grad(N.greedy, model, c.prompt_ids, n, eos)
    local pred = N.postprocess(U.decode(tok, out))
    preds[i], refs[i] = pred, c.answers
    rows[i] = { task = c.task, length = c.length, depth = c.depth, pred = pred, answers = c.answers,
                frac = N.string_match_all({ pred }, { c.answers }) / 100 }
  end
  local score = #preds > 0 and N.string_match_all(preds, refs) or 0 / 0
  return score, { mean = score / 100, n = #preds, cases = rows }
end

-- hb.eval.niah.answer_accuracy(model, tokenizer, cases) -> mean, details: a graded companion of RULER's score
-- (not RULER's; for models too small to generate the answer whole). Each case's prompt is followed by its gold
-- answer, " " .. answers joined by ", ", and one forward pass scores the answer's tokens under teacher forcing:
-- a token counts when it is the model's top prediction after the prompt and the gold tokens before it.
-- mean = the per-case fraction of answer tokens predicted, averaged over cases; details = {mean, exact (the
-- fraction of cases with every answer token predicted), n, tokens, cases = {{task, length, depth, hits, tokens}}}.
function N.answer_accuracy(model, tok, cases)
  if cases.prompt_ids then cases = { cases } end
  local sum, exact, ntok, rows = 0, 0, 0, {}
  for i, c in ipairs(cases) do
    if type(c) ~= "table" or type(c.prompt_ids) ~= "table" or type(c.answers) ~= "table" or #c.answers == 0 then
      user_error(string.format("hb.eval.niah.answer_accuracy: case %d is not a case of hb.eval.niah.build/cases", i), 2)
    end
    local gold = U.encode(tok, " " .. table.concat(c.answers, ", "))
    local P, A = #c.prompt_ids, #gold
    local ids = {}
    for j = 1, P do ids[j] = c.prompt_ids[j] end
    for j = 1, A do ids[P + j] = gold[j] end
    -- logits at positions P .. P+A−1 (1-based) predict the answer's tokens 1 .. A
    local pred = hb.no_grad(function()
      return model:forward(hb.tensor({ ids }, "int64")):narrow(2, P, A):argmax(3):view(A):tolist()
    end)
    local hits = 0
    for j = 1, A do if pred[j] == gold[j] then hits = hits + 1 end end
    sum, ntok = sum + hits / A, ntok + A
    if hits == A then exact = exact + 1 end
    rows[i] = { task = c.task, length = c.length, depth = c.depth, hits = hits, tokens = A }
  end
  local n = #rows
  local mean = n > 0 and sum / n or 0 / 0
  return mean, { mean = mean, exact = n > 0 and exact / n or 0 / 0, n = n, tokens = ntok, cases = rows }
end

return N
