-- hyblua/eval.lua — evaluation: LM loss / perplexity / bits-per-byte, MQAR, NIAH (RULER), multiple
-- choice (lm-eval), and efficiency accounting. The module is hb.eval; definitions: docs/evals.md.
--
--   hb.eval.lm(model, ids_or_shard, opts)        rolling-window loss, ppl, bpb (lm-eval loglikelihood_rolling)
--   hb.eval.mqar.*                                Zoology's multi-query associative recall  (tasks/mqar.lua)
--   hb.eval.niah.*                                RULER needle-in-a-haystack tasks           (tasks/niah.lua)
--   hb.eval.mc(model, tokenizer, path_or_items)   lm-eval multiple choice: acc, acc_norm     (tasks/mc.lua)
--   hb.eval.efficiency(model, {N=})               params, state/KV bytes, paper FLOP formula
--   hb.eval.measure_throughput(model, {B,T,steps}) measured training and decode tokens/s
--
-- Models are duck-typed: everything needs only `model:forward(ids [B,T]) -> logits [B,T,V]`; NIAH also
-- uses `new_cache/prefill/step` (or `generate`). When a model has `hidden(ids)` and `params` (hb.models),
-- scoring projects only the positions it needs onto the vocabulary instead of computing [B,T,V].
-- Tokenizers are duck-typed too: an object with `:encode(text) -> ids` and `:decode(ids) -> text`
-- (ids as a Lua table or a 1-D tensor), or a plain function text -> ids where decoding is not needed.
-- Token ids are 0-based values; positions and dims are 1-based (the binding's convention).
local hb = require "hyblua.binding"
local U = require "hyblua.tasks.util"
local user_error = require("hyblua.errors").user_error

local E = {}
E._util = U
E.byte_tokenizer = U.byte_tokenizer
local is_tensor = U.is_tensor

-- ---- LM: rolling-window loss / perplexity / bits per byte ----------------------------------------
-- Windows over a stream seq[1..n+1] whose first token is the prefix (never predicted) and whose n
-- others are each predicted exactly once. With stride = T these are lm-eval's
-- get_rolling_token_windows(context_len=1) + make_disjoint_window: the first window feeds seq[1..T]
-- and scores all of it; each later window ends at the last not-yet-scored token e, feeds the T tokens
-- before it (so a full window's first prediction sees only the previous window's edge token; the last,
-- partial window keeps T tokens of context) and scores only the new tokens. stride < T gives
-- overlapping (HF-style sliding) windows that score `stride` new tokens each with up to T context.
-- Returns a list of {s = first input index in seq, L = input length, k = scored tokens (the last k)}.
function E.rolling_windows(n, T, stride)
  stride = stride or T
  if T < 1 or stride < 1 or stride > T then user_error("rolling_windows: need 1 <= stride <= T", 2) end
  local wins = {}
  if n <= 0 then return wins end
  local first = math.min(T, n)
  wins[1] = { s = 1, L = first, k = first }
  local P = first
  while P < n do
    local k = math.min(n - P, stride)
    local e = P + k
    local L = math.min(T, e)
    wins[#wins + 1] = { s = e - L + 1, L = L, k = k }
    P = e
  end
  return wins
end

-- A reader over the stream: get(a, len) -> 1-D int64 tensor of seq[a .. a+len-1] (1-based), where seq
-- is the data with an optional prefix token in front.
local function stream_reader(data, prefix)
  local len, raw
  if is_tensor(data) then
    if data:dim() == 2 and data:size(1) == 1 then data = data:select(1, 1) end
    if data:dim() ~= 1 then user_error("lm: ids must be a 1-D tensor (or [1, N])", 3) end
    len = data:size(1)
    raw = function(a, n) return data:narrow(1, a, n) end
  elseif type(data) == "table" and type(data[1]) == "number" then
    len = #data
    raw = function(a, n)
      local t = {}
      for i = 1, n do t[i] = data[a + i - 1] end
      return hb.tensor(t, "int64")
    end
  elseif data ~= nil and (type(data) == "table" or type(data) == "userdata") and data.len and data.window then
    len = data:len()
    raw = function(a, n)
      local w = data:window(a, n)
      if not is_tensor(w) then w = hb.tensor(w, "int64") end
      return w
    end
  else
    user_error("lm: expected a 1-D int64 tensor of ids, a table of ids, or a shard with :len() and :window(i, n)", 3)
  end
  if not prefix then return len, raw end
  local function get(a, n)
    if a > 1 then return raw(a - 1, n) end
    local t = { prefix }
    if n > 1 then
      local rest = U.ids_of(raw(1, n - 1))
      for i = 1, #rest do t[i + 1] = rest[i] end
    end
    return hb.tensor(t, "int64")
  end
  return len + 1, get
end

-- hb.eval.lm(model, ids | shard, opts) -> {loss, ppl, bpb, tokens, bytes, nll}
--   opts.T            window (max_length); default model.config.max_position_embeddings or 2048
--   opts.stride       new tokens per later window; default T (lm-eval's disjoint windows)
--   opts.max_tokens   score at most this many tokens (the first ones of the stream)
--   opts.prefix_token prepend this id (lm-eval uses EOT/BOS) so that the first data token is scored too;
--                     without it the first token is context only
--   opts.bytes | opts.bytes_per_token | opts.tokenizer (decode scored tokens) -> byte count for bpb;
--                     a shard's own bytes_per_token is used when none is given; else bpb is nil
--   opts.batch_size   windows per forward (default: ~32M logits per batch)
-- loss = nats per scored token, ppl = exp(loss), bpb = total nats / (ln 2 · total bytes).
function E.lm(model, data, opts)
  U.check_opts(opts, { "T", "stride", "max_tokens", "prefix_token", "bytes", "bytes_per_token", "tokenizer", "batch_size" },
    "hb.eval.lm")
  opts = opts or {}
  local cfg = rawget(model, "config") or {}
  local T = opts.T or cfg.max_position_embeddings or 2048
  local stride = opts.stride or T
  local len, get = stream_reader(data, opts.prefix_token)
  local n = len - 1
  if opts.max_tokens then n = math.min(n, opts.max_tokens) end
  if n < 1 then user_error("lm: need at least 2 tokens (or 1 with a prefix_token)", 2) end
  local wins = E.rolling_windows(n, T, stride)
  local V = cfg.vocab_size or 32000
  local total, count, bytes_dec = 0.0, 0, 0
  local tok = opts.tokenizer
  local i = 1
  hb.no_grad(function()
    while i <= #wins do
      local L = wins[i].L
      -- default batch: about 4096 tokens (a training batch's size, so evaluating mid-run does not raise the
      -- process's peak memory) and at most 2^25 logits
      local bs = opts.batch_size or math.max(1, math.min((1 << 25) // (L * V), 4096 // L))
      local j = i
      while j + 1 <= #wins and j + 1 - i < bs and wins[j + 1].L == L do j = j + 1 end
      local B = j - i + 1
      local x = hb.zeros(B, L, "int64")
      local y = hb.full(-100, B, L, "int64")
      local k_sum = 0
      for b = 1, B do
        local w = wins[i + b - 1]
        local toks = get(w.s, L + 1)
        x:select(1, b):copy_(toks:narrow(1, 1, L))
        local tgt = toks:narrow(1, L - w.k + 2, w.k)
        y:select(1, b):narrow(1, L - w.k + 1, w.k):copy_(tgt)
        k_sum = k_sum + w.k
        if tok and not opts.bytes and not opts.bytes_per_token then
          bytes_dec = bytes_dec + #U.decode(tok, U.ids_of(tgt))
        end
      end
      local logits = model:forward(x)
      local Vl = logits:size(3)
      local mean = hb.cross_entropy(logits:contiguous():view(B * L, Vl), y:view(B * L), -100):item()
      total = total + mean * k_sum
      count = count + k_sum
      i = j + 1
    end
  end)
  local loss = total / count
  local bytes = opts.bytes
  if not bytes and opts.bytes_per_token then bytes = opts.bytes_per_token * count end
  if not bytes and tok then bytes = bytes_dec end
  local is_shard = not is_tensor(data) and not (type(data) == "table" and type(data[1]) == "number")
  if not bytes and is_shard then
    local bpt = U.attr(data, "bytes_per_token")
    if bpt then bytes = bpt * count end
  end
  return {
    loss = loss, ppl = math.exp(loss), nll = total, tokens = count, bytes = bytes,
    bpb = bytes and bytes > 0 and total / (math.log(2) * bytes) or nil,
    T = T, stride = stride, windows = #wins,
  }
end

-- ---- efficiency accounting ------------------------------------------------------------------------
-- Every layer's mixer answers for itself (its def, lua/hyblua/mixers/<name>.lua; docs/mixers.md has
-- the table): def.state_bytes(layer, cfg) → the recurrent state and short-convolution tails a decode
-- cache keeps per sequence (float32); def.kv_bytes(layer, cfg, N) → what grows with the context (the
-- KV cache of attention: 2·min(N, window)·Hkv·D·4); def.flops(layer, cfg, N) → mixer FLOPs per token,
-- the paper's formula (only the token mixing, not the projections or the MLP).
-- flops_per_token adds the dense part as 2·params (one multiply-add per parameter per token: projections,
-- MLP, LM head; the embedding lookup and norms are counted too, a small overestimate).
local function ask(L, field)
  local f = L.def and L.def[field]
  if not f then
    error(string.format("efficiency: the mixer '%s' of layer %d declares no %s (hb.models.register_mixer)",
      tostring(L.mixer or L.kind), L.index or -1, field), 3)
  end
  return f
end

-- hb.eval.efficiency(model, {N = 2048}) -> {params, state_bytes, conv_state_bytes, kv_bytes_at_N, N,
--   mixer_flops_per_token (paper formula), flops_per_token (mixer + 2·params), layers = {...}}
function E.efficiency(model, opts)
  U.check_opts(opts, { "N" }, "hb.eval.efficiency")
  opts = opts or {}
  local cfg = model.config
  local N = opts.N or cfg.max_position_embeddings or 2048
  local out = { params = model:num_parameters(), N = N, state_bytes = 0, conv_state_bytes = 0,
                kv_bytes_at_N = 0, mixer_flops_per_token = 0, layers = {} }
  for li, L in ipairs(model.layers) do
    local st, cv = ask(L, "state_bytes")(L, cfg)
    cv = cv or 0
    local kv = L.def.kv_bytes and L.def.kv_bytes(L, cfg, N) or 0
    local fl = ask(L, "flops")(L, cfg, N)
    out.layers[li] = { kind = L.kind, mixer = L.mixer, state_bytes = st, conv_state_bytes = cv, kv_bytes = kv,
                       mixer_flops = fl }
    out.state_bytes = out.state_bytes + st
    out.conv_state_bytes = out.conv_state_bytes + cv
    out.kv_bytes_at_N = out.kv_bytes_at_N + kv
    out.mixer_flops_per_token = out.mixer_flops_per_token + fl
  end
  out.dense_flops_per_token = 2 * out.params
  out.flops_per_token = out.mixer_flops_per_token + out.dense_flops_per_token
  out.cache_bytes_at_N = out.state_bytes + out.conv_state_bytes + out.kv_bytes_at_N
  return out
end

-- hb.eval.measure_throughput(model, {B = 4, T = 256, steps = 3, seed = 0}) ->
--   {train_tokens_per_s, prefill_tokens_per_s, decode_tokens_per_s, B, T, steps}
-- Training = forward + loss + backward on random ids (no optimiser step), after one warm-up step;
-- decode = `steps` single-token steps of a B-row cache prefilled with T tokens. Wall clock.
function E.measure_throughput(model, opts)
  U.check_opts(opts, { "B", "T", "steps", "decode_steps", "seed" }, "hb.eval.measure_throughput")
  opts = opts or {}
  local B, T, steps = opts.B or 4, opts.T or 256, opts.steps or 3
  local V = model.config.vocab_size
  local rng = U.rng(opts.seed or 0)
  local rows = {}
  for b = 1, B do
    rows[b] = {}
    for t = 1, T do rows[b][t] = rng:randint(0, V - 1) end
  end
  local ids = hb.tensor(rows, "int64")
  local params = model:parameters()
  local function train_step()
    local loss = model:loss(ids)
    loss:backward()
    for _, p in ipairs(params) do p:zero_grad() end
  end
  train_step()
  local t0 = U.now()
  for _ = 1, steps do train_step() end
  local t_train = U.now() - t0

  local cache = model:new_cache(B)
  t0 = U.now()
  local logits = model:prefill(ids, cache)
  local t_prefill = U.now() - t0
  local dsteps = opts.decode_steps or math.max(steps, 8)
  t0 = U.now()
  for _ = 1, dsteps do
    local nxt = logits:argmax(2)
    logits = model:step(nxt, cache)
  end
  local t_decode = U.now() - t0
  local function rate(n, t) return t > 0 and n / t or math.huge end
  return {
    train_tokens_per_s = rate(B * T * steps, t_train),
    prefill_tokens_per_s = rate(B * T, t_prefill),
    decode_tokens_per_s = rate(B * dsteps, t_decode),
    B = B, T = T, steps = steps, decode_steps = dsteps,
  }
end

-- ---- tasks --------------------------------------------------------------------------------------------
E.mqar = require "hyblua.tasks.mqar"
E.niah = require "hyblua.tasks.niah"
local mc = require "hyblua.tasks.mc"
E.multiple_choice = mc
E.mc = setmetatable({}, { __index = mc, __call = function(_, ...) return mc.run(...) end })
return E
