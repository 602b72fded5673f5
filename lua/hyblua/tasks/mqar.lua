-- hyblua/tasks/mqar.lua — Zoology's multi-query associative recall (docs/evals.md#mqar), as
-- zoology/data/multiquery_ar.py builds it:
--   keys from [1, V/2), values from [V/2, V), distinct within an example; token 0 is the filler;
--   the sequence opens with k1 v1 k2 v2 … (tiled num_passes times: context = 2·kv·num_passes tokens);
--   each key is queried once, at position context + 2·slot (0-based) where the kv slots are drawn
--   without replacement from range(space), space = (T − context)//2, with p(i) ∝ a·i^(a−1), i = 1..space;
--   the label (the key's value) sits at the query position itself, −100 elsewhere;
--   random_non_queries replaces every filler 0 by a uniform token of [0, V).
-- Zoology draws with numpy's global RNG; we use our own seeded generator (tasks/util.lua's), so the
-- tokens differ from Zoology's for the same seed, but every structural property is the same: the
-- weighted draw without replacement repeats numpy's rounds (draw, drop repeats, zero found, renormalise).
local hb = require "hyblua.binding"
local U = require "hyblua.tasks.util"
local user_error = require("hyblua.errors").user_error
local M = {}

-- The Zoology docstring example: V=12, 2 pairs, T=16, no random fillers.
M.docstring_example = {
  vocab_size = 12, seq_len = 16, keys = { 2, 4 }, values = { 8, 7 }, slots = { 4, 1 },
  inputs = { 2, 8, 4, 7, 0, 0, 4, 0, 0, 0, 0, 0, 2, 0, 0 },           -- as printed (15 of the 16 tokens)
  labels = { -100, -100, -100, -100, -100, -100, 7, -100, -100, -100, -100, -100, 8, -100, -100 },
}

-- the options of generate (also the shared and per-spec options of mixture)
local gen_keys = { "vocab_size", "seq_len", "input_seq_len", "num_kv_pairs", "num_examples", "power_a", "num_passes",
  "allow_small_vocab", "seed", "random_non_queries" }
local mixture_keys = { "train", "test" }
for _, k in ipairs(gen_keys) do mixture_keys[#mixture_keys + 1] = k end

local function check(cond, msg, ...)
  if not cond then user_error(string.format("mqar: " .. msg, ...), 3) end
end

-- Zoology's asserts (multiquery_ar.py), plus the population checks numpy makes implicitly.
-- (Zoology's own docstring example, V=12 with T=16, fails its `vocab_size > input_seq_len` assert;
-- allow_small_vocab skips just that one so the example's structure can be generated.)
local function check_args(V, T, kv, passes, allow_small_vocab)
  check(math.type(T) == "integer" and T > 0, "seq_len must be a positive integer (got %s)", tostring(T))
  check(math.type(kv) == "integer" and kv > 0, "num_kv_pairs must be a positive integer (got %s)", tostring(kv))
  check(T % 2 == 0, "input_seq_len must be even (got %d)", T)
  check(allow_small_vocab or V > T, "vocab_size must be greater than input_seq_len (got vocab_size %d, input_seq_len %d)", V, T)
  check(kv * 2 * passes + kv * 2 <= T,
    "num_kv_pairs * 2 * num_passes + num_kv_pairs * 2 must be <= input_seq_len (got %d > %d)", kv * 2 * passes + kv * 2, T)
  check(kv <= V // 2 - 1, "num_kv_pairs %d exceeds the %d available keys (vocab_size // 2 - 1)", kv, V // 2 - 1)
  check(kv <= V - V // 2, "num_kv_pairs %d exceeds the %d available values", kv, V - V // 2)
end

-- One example's tokens and labels (Lua tables, length T) from its keys, values and query slots
-- (0-based slots into range(space)). Fillers are 0.
function M.layout(o)
  local T, passes = o.seq_len, o.num_passes or 1
  local keys, values, slots = o.keys, o.values, o.slots
  local kv = #keys
  local context = 2 * kv * passes
  local row, lab = {}, {}
  for t = 1, T do row[t], lab[t] = 0, -100 end
  for p = 0, passes - 1 do
    for i = 1, kv do
      row[p * 2 * kv + 2 * i - 1] = keys[i]
      row[p * 2 * kv + 2 * i] = values[i]
    end
  end
  for i = 1, kv do
    local pos = context + 2 * slots[i] + 1 -- 1-based
    check(pos <= T, "slot %d puts a query past the end of the sequence", slots[i])
    row[pos] = keys[i]
    lab[pos] = values[i]
  end
  return row, lab
end

-- power-law weights p(i) ∝ a·i^(a−1), i = 1..space, normalised; and their cdf
local function power_law(space, a)
  local p, s = {}, 0
  for i = 1, space do
    p[i] = a * i ^ (a - 1)
    s = s + p[i]
  end
  for i = 1, space do p[i] = p[i] / s end
  return p
end
local function cdf_of(p)
  local c, s = {}, 0
  for i = 1, #p do s = s + p[i]; c[i] = s end
  for i = 1, #p do c[i] = c[i] / s end
  return c
end
-- numpy cdf.searchsorted(x, side='right'): first 0-based i with cdf[i] > x
local function search_right(c, x)
  local lo, hi = 1, #c
  while lo < hi do
    local mid = (lo + hi) // 2
    if c[mid] > x then hi = mid else lo = mid + 1 end
  end
  return lo - 1
end

-- k distinct 0-based slots drawn with probabilities p, as numpy's choice(p=, replace=False)
local function weighted_sample(rng, p, base_cdf, k)
  local found, seen, n = {}, {}, 0
  local c = base_cdf
  while n < k do
    if n > 0 then
      local q = {}
      for i = 1, #p do q[i] = seen[i - 1] and 0 or p[i] end
      c = cdf_of(q)
    end
    local draws = {}
    for i = 1, k - n do draws[i] = search_right(c, rng:random()) end
    for i = 1, #draws do
      local s = draws[i]
      if not seen[s] then
        seen[s] = true
        n = n + 1
        found[n] = s
      end
    end
  end
  return found
end

-- hb.eval.mqar.generate{vocab_size, seq_len, num_kv_pairs, num_examples, seed, power_a = 0.01,
--   random_non_queries = false, num_passes = 1, allow_small_vocab = false}
--   -> inputs int64 [N, T], labels int64 [N, T], info
-- (`input_seq_len` is accepted for seq_len.) info = {seq_len, num_kv_pairs, num_passes, vocab_size, seed}
function M.generate(o)
  if type(o) ~= "table" then user_error("hb.eval.mqar.generate{...} expects a table of options", 2) end
  U.check_opts(o, gen_keys, "hb.eval.mqar.generate")
  local V = o.vocab_size
  local T = o.seq_len or o.input_seq_len
  local kv = o.num_kv_pairs or 8
  local N = o.num_examples
  local a = o.power_a or 0.01
  local passes = o.num_passes or 1
  check(type(V) == "number", "vocab_size is required")
  check(math.type(N) == "integer" and N > 0, "num_examples must be a positive integer (got %s)", tostring(N))
  check_args(V, T, kv, passes, o.allow_small_vocab)
  local seed = o.seed or 0
  local rng = U.rng(seed)
  local fill_rng = U.rng(seed ~ 0x5DEECE66D) -- separate stream: fillers never change the structure
  local context = 2 * kv * passes
  local space = (T - context) // 2
  local p = power_law(space, a)
  local base = cdf_of(p)
  local kvs = V // 2
  local inputs = hb.zeros(N, T, "int64")
  local labels = hb.zeros(N, T, "int64")
  for n = 1, N do
    local keys = rng:sample(1, kvs - 1, kv)
    local values = rng:sample(kvs, V - 1, kv)
    local slots = weighted_sample(rng, p, base, kv)
    local row, lab = M.layout { seq_len = T, keys = keys, values = values, slots = slots, num_passes = passes }
    if o.random_non_queries then
      for t = 1, T do
        if row[t] == 0 then row[t] = fill_rng:randint(0, V - 1) end
      end
    end
    inputs:select(1, n):copy_(hb.tensor(row, "int64"))
    labels:select(1, n):copy_(hb.tensor(lab, "int64"))
  end
  return inputs, labels, { seq_len = T, input_seq_len = T, num_kv_pairs = kv, num_passes = passes,
                           vocab_size = V, seed = seed, power_a = a, num_examples = N }
end

-- hb.eval.mqar.mixture{vocab_size=, seed=, power_a=, random_non_queries=,
--   train = {{seq_len=, num_kv_pairs=, num_examples=}, ...}, test = {...}} -> {train = segs, test = segs}
-- One segment per spec ({inputs, labels, slices = info}), each with its own seed, drawn as Zoology's
-- prepare_data does from the mixture seed: train seeds in [0, 2^31), test seeds in [2^31, 2^32), so train
-- and test never share one. Per-spec fields override the shared ones. Segments are kept apart
-- (different T); iterate them with mqar.batches and score them with mqar.evaluate.
function M.mixture(specs)
  if type(specs) ~= "table" then user_error("hb.eval.mqar.mixture{...} expects a table of options", 2) end
  U.check_opts(specs, mixture_keys, "hb.eval.mqar.mixture")
  for _, split in ipairs { "train", "test" } do
    for i, s in ipairs(specs[split] or {}) do U.check_opts(s, gen_keys, "hb.eval.mqar.mixture: " .. split .. "[" .. i .. "]") end
  end
  local rng = U.rng(specs.seed or 123)
  local out = {}
  for _, split in ipairs { "train", "test" } do
    local list = specs[split] or {}
    local seeds = {}
    for i = 1, #list do
      seeds[i] = split == "train" and rng:randint(0, (1 << 31) - 1) or rng:randint(1 << 31, (1 << 32) - 1)
    end
    out[split] = {}
    for i, s in ipairs(list) do
      local o = {}
      for k, v in pairs(specs) do if k ~= "train" and k ~= "test" then o[k] = v end end
      for k, v in pairs(s) do o[k] = v end
      o.seed = s.seed or seeds[i]
      local x, y, info = M.generate(o)
      out[split][i] = { inputs = x, labels = y, slices = info }
    end
  end
  return out
end

-- iterator over Zoology-style batches: each batch comes from one segment (lengths never mix)
-- for inputs, labels, slices in hb.eval.mqar.batches(segments, 64) do ... end
function M.batches(segments, batch_size, rng_seed)
  local order = {}
  for si, seg in ipairs(segments) do
    local N = seg.inputs:size(1)
    for s = 1, N, batch_size do order[#order + 1] = { si, s, math.min(batch_size, N - s + 1) } end
  end
  if rng_seed then U.rng(rng_seed):shuffle(order) end
  local i = 0
  return function()
    i = i + 1
    local b = order[i]
    if not b then return nil end
    local seg = segments[b[1]]
    return seg.inputs:narrow(1, b[2], b[3]), seg.labels:narrow(1, b[2], b[3]), seg.slices
  end
end

-- argmax predictions at the supervised positions of one batch: returns per-example {correct, total}
local function score_batch(model, x, y, full)
  local B, T = x:size(1), x:size(2)
  local ylist = y:tolist()
  local idx, tgt, owner = {}, {}, {}
  for b = 1, B do
    local row = ylist[b]
    for t = 1, T do
      if row[t] ~= -100 then
        idx[#idx + 1] = (b - 1) * T + (t - 1)
        tgt[#tgt + 1] = row[t]
        owner[#owner + 1] = b
      end
    end
  end
  local correct, total = {}, {}
  for b = 1, B do correct[b], total[b] = 0, 0 end
  if #idx == 0 then return correct, total end
  local logits = U.logits_at(model, x, hb.tensor(idx, "int64"), full)
  local pred = logits:argmax(2):tolist()
  for i = 1, #idx do
    local b = owner[i]
    total[b] = total[b] + 1
    if pred[i] == tgt[i] then correct[b] = correct[b] + 1 end
  end
  return correct, total
end

-- hb.eval.mqar.accuracy(model, inputs, labels [, {batch_size = 64, full_logits = false}])
--   -> mean per-example accuracy, per_example (table)
-- Zoology's compute_metrics: per example, the mean of argmax == target over its supervised positions;
-- then the mean over examples. Examples without a supervised position are left out (per_example nil).
-- Logits are computed only at supervised positions when the model allows (see tasks/util.lua logits_at);
-- full_logits = true forces model:forward.
function M.accuracy(model, inputs, labels, opts)
  U.check_opts(opts, { "batch_size", "full_logits" }, "hb.eval.mqar.accuracy")
  opts = opts or {}
  if inputs:dim() ~= 2 or labels:dim() ~= 2 or inputs:size(1) ~= labels:size(1) or inputs:size(2) ~= labels:size(2) then
    user_error("mqar.accuracy: inputs and labels must both be [N, T]", 2)
  end
  local N = inputs:size(1)
  local bs = opts.batch_size or 64
  local per, sum, cnt = {}, 0, 0
  hb.no_grad(function()
    for s = 1, N, bs do
      local nb = math.min(bs, N - s + 1)
      local c, t = score_batch(model, inputs:narrow(1, s, nb), labels:narrow(1, s, nb), opts.full_logits)
      for b = 1, nb do
        if t[b] > 0 then
          local a = c[b] / t[b]
          per[s + b - 1] = a
          sum, cnt = sum + a, cnt + 1
        end
      end
    end
  end)
  return cnt > 0 and sum / cnt or 0 / 0, per
end

-- hb.eval.mqar.evaluate(model, segments [, opts]) -> {accuracy, n, slices = {{seq_len, num_kv_pairs,
--   num_passes, accuracy, n}, ...}, by_num_kv_pairs = {[kv] = acc}, by_seq_len = {[T] = acc}}
-- accuracy is the mean per-example accuracy over all examples of all segments (Zoology concatenates the
-- test segments), then sliced by num_kv_pairs and input_seq_len as its metrics are.
function M.evaluate(model, segments, opts)
  U.check_opts(opts, { "batch_size", "full_logits" }, "hb.eval.mqar.evaluate")
  local out = { slices = {}, by_num_kv_pairs = {}, by_seq_len = {} }
  local sum, n = 0, 0
  local kvs, lens = {}, {}
  for i, seg in ipairs(segments) do
    local acc, per = M.accuracy(model, seg.inputs, seg.labels, opts)
    local s, c = 0, 0
    for _, a in pairs(per) do s, c = s + a, c + 1 end
    local info = seg.slices or {}
    out.slices[i] = { seq_len = info.seq_len, num_kv_pairs = info.num_kv_pairs, num_passes = info.num_passes,
                      accuracy = acc, n = c }
    sum, n = sum + s, n + c
    for _, pair in ipairs { { kvs, info.num_kv_pairs }, { lens, info.seq_len } } do
      local t, key = pair[1], pair[2]
      if key then
        t[key] = t[key] or { 0, 0 }
        t[key][1], t[key][2] = t[key][1] + s, t[key][2] + c
      end
    end
  end
  for k, v in pairs(kvs) do out.by_num_kv_pairs[k] = v[1] / v[2] end
  for k, v in pairs(lens) do out.by_seq_len[k] = v[1] / v[2] end
  out.accuracy = n > 0 and sum / n or 0 / 0
  out.n = n
  return out
end

return M
