-- test_generate.lua — m:generate / m:generate_text (lua/hyblua/generate.lua):
--   * each option's effect against a hand-written reference loop over m:prefill / m:step: greedy,
--     top_k = 1 and top_p tiny and temperature → 0 equal greedy, repetition_penalty as HF defines it
--     (on crafted scores and on a model), eos_token_id stops each row (a list too), seed reproducible
--     and the global generator untouched, strict options with did-you-mean;
--   * batches of prompts of different lengths (a table of rows, or a left-padded tensor with an
--     attention_mask): every row equals its unbatched output, for GLA, a Gated DeltaNet hybrid with
--     attention and short convolutions, a windowed transformer, RetNet and a hybrid with a custom mixer;
--   * the streaming callback (order, ids, early stop) and the text variant;
--   * the old call forms m:generate(ids, n [, opts]).
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local G = require "hyblua.generate"

local V = 32
local function model(cfg, seed)
  cfg.vocab_size = cfg.vocab_size or V
  return hb.models.new(cfg, { seed = seed or 1 })
end

-- the reference: one row, a B = 1 cache, a chooser over the Lua list of logits
local function reference(m, row, n, choose)
  local c = m:new_cache(1)
  local logits = m:prefill({ row }, c)
  local out = {}
  for step = 1, n do
    local id = choose(logits:select(1, 1):tolist(), out)
    out[step] = id
    if step < n then logits = m:step({ id }, c) end
  end
  return out
end
local function argmax(s)
  local bi = 1
  for i = 2, #s do if s[i] > s[bi] then bi = i end end
  return bi - 1
end
local function greedy_ref(m, row, n) return reference(m, row, n, function(s) return argmax(s) end) end
local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end
local function str(t) return "{" .. table.concat(t, ", ") .. "}" end

local gla = model { model_type = "gla", hidden_size = 16, num_hidden_layers = 2, num_heads = 2 }
local P1, P2, P3 = { 1, 5, 9, 2 }, { 7, 3 }, { 4, 4, 8, 12, 30, 1, 6 }

-- ---- greedy and the options that reduce to it -------------------------------------------------------
local want = greedy_ref(gla, P1, 8)
T.ok(same(gla:generate({ P1 }, { max_new_tokens = 8 })[1], want), "greedy (the default) == argmax decoding with the cache")
T.ok(same(gla:generate({ P1 }, { max_new_tokens = 8, top_k = 1, seed = 3 })[1], want), "top_k = 1 == greedy")
T.ok(same(gla:generate({ P1 }, { max_new_tokens = 8, top_p = 1e-9, seed = 3 })[1], want), "top_p tiny == greedy")
T.ok(same(gla:generate({ P1 }, { max_new_tokens = 8, do_sample = true, temperature = 1e-4, seed = 3 })[1], want),
  "temperature -> 0 (sampling at 1e-4) == greedy")
T.ok(same(gla:generate({ P1 }, { max_new_tokens = 8, temperature = 0 })[1], want), "temperature = 0 is greedy")
local sampled = gla:generate({ P1 }, { max_new_tokens = 8, temperature = 5, seed = 3 })[1]
T.ok(not same(sampled, want), "temperature 5 samples something else than greedy", str(sampled))

-- ---- the sampling rules on crafted scores (HF's processors) -------------------------------------------
local base = { penalty = 1, sample = true, temperature = 1, top_k = 0, top_p = 1, eos = {} }
local function with(o) local c = {}; for k, v in pairs(base) do c[k] = v end; for k, v in pairs(o) do c[k] = v end; return c end
-- repetition penalty: positive scores divided, negative multiplied, only for seen ids
local s = { 3.0, -1.0, 2.0, 0.5 }
T.is(G.next_token(s, { [0] = true, [1] = true }, with { penalty = 2, sample = false }), 2,
  "repetition_penalty 2: seen id 0 (3 -> 1.5) loses to unseen id 2 (2.0)")
T.ok(s[1] == 1.5 and s[2] == -2.0 and s[3] == 2.0 and s[4] == 0.5, "penalty: 3 -> 1.5, -1 -> -2, unseen unchanged",
  str(s))
local s2 = { 3.0, -1.0, 2.0, 0.5 }
G.next_token(s2, { [0] = true, [1] = true }, with { penalty = 0.5, sample = false })
T.ok(s2[1] == 6.0 and s2[2] == -0.5, "penalty < 1 favours seen ids (3 -> 6, -1 -> -0.5)", str(s2))
-- top_k keeps the k best (u just below 1 picks the last kept id in id order)
T.is(G.next_token({ 1, 5, 3, 4 }, {}, with { top_k = 2 }, 0.999999), 3, "top_k = 2 keeps ids 1 and 3 (u ~ 1 -> id 3)")
T.is(G.next_token({ 1, 5, 3, 4 }, {}, with { top_k = 2 }, 0.0), 1, "top_k = 2 (u = 0 -> id 1)")
-- top_p: probs {0.5, 0.3, 0.2}; top_p 0.6 keeps {0.5, 0.3} (0.2 <= 0.4 dropped), 0.5 keeps {0.5}
local lp = { math.log(0.5), math.log(0.3), math.log(0.2) }
local function copy(t) return { table.unpack(t) } end
T.is(G.next_token(copy(lp), {}, with { top_p = 0.6 }, 0.999999), 1, "top_p 0.6 keeps the 0.5 and 0.3 tokens")
T.is(G.next_token(copy(lp), {}, with { top_p = 0.6 }, 0.6), 0, "top_p 0.6 renormalises: u 0.6 < 0.5/0.8 -> id 0")
T.is(G.next_token(copy(lp), {}, with { top_p = 0.5 }, 0.999999), 0, "top_p 0.5 keeps only the 0.5 token")
T.is(G.next_token(copy(lp), {}, with { top_p = 1 }, 0.999999), 2, "top_p 1 keeps every token")
-- temperature divides the scores before the softmax: at T = 2, probs of {0, 2 log 3} are {1/4, 3/4}
T.is(G.next_token({ 0, 2 * math.log(3) }, {}, with { temperature = 2 }, 0.24), 0, "temperature 2: p(id 0) = 1/4 (u 0.24)")
T.is(G.next_token({ 0, 2 * math.log(3) }, {}, with { temperature = 2 }, 0.26), 1, "temperature 2: p(id 0) = 1/4 (u 0.26)")

-- repetition_penalty on a model: the reference applies HF's rule by hand (seen = prompt + generated)
local function penalized(row)
  return function(sc, out)
    local seen = {}
    for _, id in ipairs(row) do seen[id] = true end
    for _, id in ipairs(out) do seen[id] = true end
    for id in pairs(seen) do local v = sc[id + 1]; sc[id + 1] = v < 0 and v * 1.8 or v / 1.8 end
    return argmax(sc)
  end
end
local rp_want = reference(gla, P3, 10, penalized(P3))
local rp_got = gla:generate({ P3 }, { max_new_tokens = 10, repetition_penalty = 1.8 })[1]
T.ok(same(rp_got, rp_want), "repetition_penalty 1.8 on a model == the hand-written HF rule", str(rp_got) .. " vs " .. str(rp_want))
T.ok(not same(rp_got, greedy_ref(gla, P3, 10)), "repetition_penalty changes what greedy picks here")

-- ---- eos ----------------------------------------------------------------------------------------------
local g1, g2 = greedy_ref(gla, P1, 8), greedy_ref(gla, P3, 8)
local eos = g1[3]
local function upto(list, e)
  for i, id in ipairs(list) do if id == e then return { table.unpack(list, 1, i) } end end
  return list
end
local out = gla:generate({ P1, P3 }, { max_new_tokens = 8, eos_token_id = eos })
T.ok(same(out[1], upto(g1, eos)), "eos stops row 1 at its first eos (included)", str(out[1]))
T.ok(same(out[2], upto(g2, eos)), "row 2 stops at its own eos, or runs to max_new_tokens", str(out[2]))
local e2 = g2[2]
out = gla:generate({ P1, P3 }, { max_new_tokens = 8, eos_token_id = { eos, e2 } })
local function upto2(list)
  for i, id in ipairs(list) do if id == eos or id == e2 then return { table.unpack(list, 1, i) } end end
  return list
end
T.ok(same(out[1], upto2(g1)) and same(out[2], upto2(g2)), "a list of eos ids: each row stops at the first of them")

-- ---- seed -----------------------------------------------------------------------------------------------
local so = { max_new_tokens = 12, do_sample = true, seed = 11 }
local a, b = gla:generate({ P1, P2 }, so), gla:generate({ P1, P2 }, so)
T.ok(same(a[1], b[1]) and same(a[2], b[2]), "the same seed gives the same samples")
so.seed = 12
local c = gla:generate({ P1, P2 }, so)
T.ok(not (same(a[1], c[1]) and same(a[2], c[2])), "another seed gives other samples")
local twin = gla:generate({ P1, P1 }, { max_new_tokens = 12, do_sample = true, seed = 11 })
T.ok(not same(twin[1], twin[2]), "two rows with the same prompt sample independently")
hb.manual_seed(4); local r1 = hb.rand(3):tolist()
hb.manual_seed(4); gla:generate({ P1 }, { max_new_tokens = 4, do_sample = true, seed = 1 }); local r2 = hb.rand(3):tolist()
T.ok(same(r1, r2), "a seeded generate leaves the global generator alone")
hb.manual_seed(9); local u1 = gla:generate({ P1 }, { max_new_tokens = 12, do_sample = true })[1]
hb.manual_seed(9); local u2 = gla:generate({ P1 }, { max_new_tokens = 12, do_sample = true })[1]
T.ok(same(u1, u2), "without a seed, hb.manual_seed makes sampling reproducible")

-- ---- strict options ----------------------------------------------------------------------------------
local ids = hb.tensor({ P1 }, "int64")
T.raises(function() gla:generate(ids, { top_p = 0.9, top_k = 5, max_new_tokens = 3, eos = 32 }) end,
  "generate: unknown key 'eos' (", "unknown option: the issue's example")
T.raises(function() gla:generate(ids, { max_new_token = 3 }) end,
  "generate: unknown key 'max_new_token' (did you mean 'max_new_tokens'?)", "did-you-mean")
T.raises(function() gla:generate(ids, { max_new_tokens = 3, top_pp = 0.5 }) end, "did you mean 'top_p'?", "top_pp")
T.raises(function() gla:generate(ids, {}) end, "generate: max_new_tokens is required", "max_new_tokens required")
T.raises(function() gla:generate(ids, { max_new_tokens = -1 }) end, "max_new_tokens must be a non-negative integer", "n < 0")
T.raises(function() gla:generate(ids, 4, { max_new_tokens = 5 }) end, "max_new_tokens is given twice", "n twice")
T.raises(function() gla:generate(ids, { max_new_tokens = 3, top_p = 2 }) end, "top_p must be a number in (0, 1]", "top_p range")
T.raises(function() gla:generate(ids, { max_new_tokens = 3, top_k = 1.5 }) end, "top_k must be a non-negative integer", "top_k")
T.raises(function() gla:generate(ids, { max_new_tokens = 3, temperature = -1 }) end, "temperature must be 0 (greedy) or a finite number >= 1e-06 (got -1)", "temperature")
T.raises(function() gla:generate(ids, { max_new_tokens = 3, repetition_penalty = 0 }) end, "repetition_penalty must be", "penalty")
T.raises(function() gla:generate(ids, { max_new_tokens = 3, do_sample = false, temperature = 0.7 }) end,
  "greedy decoding ignores temperature, top_k and top_p", "greedy + temperature contradict")
T.raises(function() gla:generate(ids, { max_new_tokens = 3, eos_token_id = "x" }) end, "eos_token_id must be a token id", "eos type")
T.raises(function() gla:generate(ids, { max_new_tokens = 3, seed = 1.5 }) end, "seed must be an integer", "seed type")
T.raises(function() gla:generate(ids, { max_new_tokens = 3, on_token = 1 }) end, "on_token must be a function", "on_token type")
T.raises(function() gla:generate("hello", 5) end,
  "generate: the prompt is text; pass token ids, or a tokenizer: m:generate_text(tok, text, opts) or opts.tokenizer",
  "a string prompt says it needs ids or a tokenizer")
T.raises(function() gla:generate({ {} }, 3) end, "prompt row 1 is empty", "empty row")
T.raises(function() gla:generate({ { 1, 2.5 } }, 3) end, "prompt row 1, position 2: 2.5 is not an integer token id", "float id")
T.raises(function() gla:generate(ids, 3, { attention_mask = { { 1, 0, 1, 1 } } }) end,
  "attention_mask row 1 has a 0 after a 1: pad on the left", "right padding is refused")
local okp, perr = pcall(function() gla:generate(ids, { nope = 1, max_new_tokens = 1 }) end)
T.ok(hb.is_user_error(perr) and perr:find("test_generate.lua:%d+: generate: unknown key 'nope'") ~= nil,
  "an option error is a user error at the caller's line", perr)

-- ---- batches of prompts of different lengths ---------------------------------------------------------
local custom_registered = false
local function register_custom()
  if custom_registered then return end
  custom_registered = true
  -- a running mean of x (decay-free), keeping the count as a number in its cache: a cache layout that
  -- only makes sense per row
  hb.models.register_mixer("runmean", {
    declare = function(add, d) add("proj.weight", { d, d }) end,
    forward = function(ctx, x, _, W)
      local Bn, Tn = x:size(1), x:size(2)
      local y = hb.linear(x, W("proj.weight"))
      local c = ctx.cache
      local sum = c and c.sum or hb.zeros(Bn, y:size(3))
      local n = c and c.n or 0
      local outs = {}
      for t = 1, Tn do
        sum = sum + y:select(2, t)
        n = n + 1
        outs[t] = (sum / n):unsqueeze(2)
      end
      if c then c.sum, c.n = sum, n end
      return hb.cat(outs, 2)
    end,
    state_bytes = function(_, cfg) return cfg.hidden_size * 4, 0 end,
    flops = function(_, cfg) return cfg.hidden_size end,
  })
end
register_custom()

-- every parameter random (RWKV-7's init zeroes o_proj and the channel mix's value, so its decoding
-- would not depend on the states it keeps)
local function randomized(m)
  hb.manual_seed(7)
  hb.no_grad(function()
    for _, p in m:named_parameters() do p:copy_(hb.randn(table.unpack(p:shape())) * 2.0) end
  end)
  return m
end

local kinds = {
  { "gla", gla },
  { "gated_deltanet hybrid (attention + short conv)", model { model_type = "gated_deltanet", hidden_size = 16,
      num_hidden_layers = 4, num_heads = 2, head_dim = 8, use_short_conv = true, attn = hb.schedule.ratio(1, { num_heads = 2 }) } },
  { "windowed transformer (window 3)", model { model_type = "transformer", hidden_size = 16, num_hidden_layers = 2,
      num_heads = 2, window_size = 3 } },
  { "retnet", model { model_type = "retnet", hidden_size = 16, num_hidden_layers = 2, num_heads = 2 } },
  { "kda", model { model_type = "kda", hidden_size = 16, num_hidden_layers = 2, num_heads = 2, head_dim = 8 } },
  { "gated_deltaproduct", model { model_type = "gated_deltaproduct", hidden_size = 16, num_hidden_layers = 2,
      num_heads = 2, head_dim = 8, num_householder = 2, use_forget_gate = true } },
  { "mamba2 hybrid (own block + attention)", model { model_type = "mamba2", hidden_size = 16, num_hidden_layers = 2,
      head_dim = 8, state_size = 8, attn = hb.schedule.layers { 1, num_heads = 2 } } },
  { "rwkv7 (block state: channel-mix token shift)", randomized(model { model_type = "rwkv7", hidden_size = 16,
      num_hidden_layers = 2, head_dim = 8 }) },
  { "custom mixer + attention hybrid", model { model_type = "gla", hidden_size = 16, num_hidden_layers = 3, num_heads = 2,
      attn = hb.schedule.layers { 2, num_heads = 2, window_size = 4 },
      custom_mixers = { { mixer = "runmean", layers = { 1 } } } } },
}
local rows = { P1, P2, P3 }
for _, k in ipairs(kinds) do
  local name, m = k[1], k[2]
  local got = m:generate(rows, { max_new_tokens = 9 })
  local all = true
  for r, row in ipairs(rows) do
    local alone = m:generate({ row }, { max_new_tokens = 9 })[1]
    local ref = greedy_ref(m, row, 9)
    all = all and same(got[r], alone) and same(alone, ref)
    if not same(got[r], alone) then T.diag(name .. " row " .. r .. ": " .. str(got[r]) .. " vs " .. str(alone)) end
  end
  T.ok(all, name .. ": rows of lengths 4, 2, 7 in one batch == each row alone == the reference loop")
  -- the same prompts left-padded in a tensor, with an attention_mask
  local Tm = #P3
  local padded, mask = {}, {}
  for r, row in ipairs(rows) do
    padded[r], mask[r] = {}, {}
    for j = 1, Tm - #row do padded[r][j] = 0; mask[r][j] = 0 end
    for _, id in ipairs(row) do padded[r][#padded[r] + 1] = id; mask[r][#mask[r] + 1] = 1 end
  end
  local viamask = m:generate(hb.tensor(padded, "int64"), { max_new_tokens = 9, attention_mask = hb.tensor(mask, "int64") })
  T.ok(same(viamask[1], got[1]) and same(viamask[2], got[2]) and same(viamask[3], got[3]),
    name .. ": a left-padded tensor + attention_mask == the table of rows")
end

-- a ragged batch decodes with each row's exact state: the logits of every step (not only the greedy
-- tokens, which a small model repeats) equal those of the row alone, for every kind of layer cache
-- (RWKV-7's block state included)
for _, k in ipairs(kinds) do
  local name, m = k[1], k[2]
  local function step_logits(rows)
    local got, orig = {}, m.step
    m.step = function(self, col, cache)
      local l = orig(self, col, cache)
      got[#got + 1] = l
      return l
    end
    m:generate(rows, { max_new_tokens = 4 })
    m.step = nil
    return got
  end
  local batch, worst = step_logits(rows), 0
  for r, row in ipairs(rows) do
    local alone = step_logits({ row })
    for s = 1, #alone do
      local d = (batch[s]:narrow(1, r, 1) - alone[s]):abs():max():item()
      worst = math.max(worst, d)
    end
  end
  T.ok(worst < 1e-5, name .. ": every decode step's logits of a ragged batch == the row alone", "max |diff| " .. worst)
end

-- the cache a ragged batch decodes with: attention (and the custom mixer) row by row, GLA batched
do
  local m
  for _, k in ipairs(kinds) do if k[1]:match("^custom mixer") then m = k[2] end end
  local seen_split
  local orig = m.step
  m.step = function(self, col, cache) seen_split = cache.split; return orig(self, col, cache) end
  m:generate({ P1, P2 }, { max_new_tokens = 2 })
  m.step = nil
  T.ok(seen_split and seen_split[1] == nil and seen_split[2] ~= nil and seen_split[3] ~= nil,
    "ragged decode: the GLA layer batched, the custom and attention layers row by row")
end

-- ---- streaming ------------------------------------------------------------------------------------------
local calls = {}
local res = gla:generate({ P1, P3 }, { max_new_tokens = 5, on_token = function(row, id, step)
  calls[#calls + 1] = row .. ":" .. step .. ":" .. id
end })
local expect = {}
for step = 1, 5 do for row = 1, 2 do expect[#expect + 1] = row .. ":" .. step .. ":" .. res[row][step] end end
T.is(table.concat(calls, " "), table.concat(expect, " "), "on_token: every token, step by step, rows in order")
local early = gla:generate({ P1, P3 }, { max_new_tokens = 6, on_token = function(row, _, step)
  if row == 1 and step == 2 then return false end
end })
T.ok(#early[1] == 2 and same(early[2], greedy_ref(gla, P3, 6)), "on_token returning false stops that row only")
local n_calls = 0
gla:generate({ P1 }, { max_new_tokens = 6, on_token = function() n_calls = n_calls + 1; return false end })
T.is(n_calls, 1, "a row stopped by on_token gets no further calls")

-- ---- text ---------------------------------------------------------------------------------------------
local tok = hb.tokenizer.byte()
local bm = model({ model_type = "gla", hidden_size = 16, num_hidden_layers = 1, num_heads = 2, vocab_size = 256 }, 2)
local ref_ids = bm:generate({ tok:encode_table("ab") }, 6)[1]
T.is(bm:generate_text(tok, "ab", { max_new_tokens = 6 }), tok:decode(ref_ids), "generate_text == decode(generate(encode))")
local two = bm:generate({ "ab", "xyz" }, { max_new_tokens = 4, tokenizer = tok })
T.ok(type(two) == "table" and two[1] == tok:decode({ table.unpack(ref_ids, 1, 4) }) and #two[2] > 0,
  "opts.tokenizer with a list of strings returns a list of strings")
T.is(bm:generate_text(tok, "ab", { max_new_tokens = 6, eos_token_id = ref_ids[1] }), "",
  "the text stops at eos and leaves it out")
T.raises(function() bm:generate_text("ab", "cd", { max_new_tokens = 1 }) end,
  "generate_text(tokenizer, text [, opts]): the first argument must be a tokenizer", "generate_text argument order")

-- ---- old call forms -----------------------------------------------------------------------------------
local old = gla:generate(ids, 5)
T.ok(#old == 1 and same(old[1], greedy_ref(gla, P1, 5)), "m:generate(ids, n) still decodes greedily")
T.ok(same(gla:generate(ids, 5, { temperature = 0 })[1], old[1]), "m:generate(ids, n, {temperature = 0})")
T.ok(same(gla:generate(P1, 5)[1], old[1]), "a flat list of ids is one row")
T.is(#gla:generate(ids, 0)[1], 0, "max_new_tokens = 0 gives empty rows")

T.done()
