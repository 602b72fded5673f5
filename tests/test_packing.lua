-- test_packing.lua — packed sequences (fla's cu_seqlens) through whole models: for every mixer in the
-- registry, on every fixture config of its model type (hybrids with attention layers included) and in
-- chunk and recurrent mode, the logits (max-relative) and every parameter gradient (relative in norm)
-- of a packed batch of documents {1, 63, 64, 65, 200} equal those of each document run alone (float32,
-- ≤ 1e-5), and the packed
-- loss is the token-weighted mean of the documents' own losses. A mixer that cannot take packed batches
-- yet (its def lacks packed = true, or its kernels lack cu_seqlens) FAILS here with the message the
-- model raises: it is never skipped. Sliding-window attention restarts at every document. Then the
-- model-level contract: the packed batch forms, their checks and messages, no decode cache with
-- cu_seqlens, a mixer without packing refused by name, hb.models.pack.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local registry = require "hyblua.mixers.registry"

local LENS = { 1, 63, 64, 65, 200 }
local TOL = 1e-5

local function listdir(dir)
  local p = io.popen('ls -1 "' .. dir .. '" 2>/dev/null')
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

-- model type → the fixture configs of that type (small fla configs, hybrids included)
local configs = {}
for _, set in ipairs { "fla", "stress", "fla_next" } do
  for _, name in ipairs(listdir(T.fixtures .. "/" .. set)) do
    local cfg = hb.io.read_json(T.fixtures .. "/" .. set .. "/" .. name .. "/config.json")
    local mt = cfg.model_type
    configs[mt] = configs[mt] or {}
    table.insert(configs[mt], { name = set .. "/" .. name, cfg = cfg })
  end
end

-- max|a − b| / max|b| (b the reference)
local function rel(a, b)
  local den = b:abs():max():item()
  return (a - b):abs():max():item() / (den > 0 and den or 1)
end
-- ‖a − b‖ / ‖b‖ over a whole tensor: a gradient summed over all tokens is compared in norm, since an
-- entry that is a small sum of large terms (HGRN's lower bounds) carries float32 cancellation, not a
-- packing error
local function rel2(a, b)
  local den = math.sqrt(hb.sumsq(b))
  return math.sqrt(hb.sumsq(a - b)) / (den > 0 and den or 1)
end

local function documents(V)
  hb.manual_seed(7)
  local docs = {}
  for i, L in ipairs(LENS) do docs[i] = hb.randint(0, V, { 1, L }, "int64") end
  return docs
end

-- logits of a packed forward and of each document alone, the gradients of Σ logits ⊙ R for both, and
-- the losses; returns the worst relative errors (or raises what the model raised)
local function compare(m, docs)
  local packed = hb.models.pack(docs)
  local total = packed.ids:size(2)
  local V = m.config.vocab_size
  hb.manual_seed(11)
  local R = hb.randn(1, total, V)
  if m.params[m._order[1]]:dtype() == "float64" then R = R:double() end
  local names = {}
  for name in m:named_parameters() do names[#names + 1] = name end
  local function grads()
    local g = {}
    for _, name in ipairs(names) do
      local p = m.params[name]
      g[name] = p.grad and p.grad:clone() or hb.zeros(p:shape()):to(p:dtype())
      p:zero_grad()
    end
    return g
  end
  for _, name in ipairs(names) do m.params[name]:zero_grad() end
  local lp = m:forward(packed)
  ;(lp * R):sum():backward()
  local gp = grads()
  local e_logits, t0 = 0, 0
  for i, d in ipairs(docs) do
    local l = m:forward(d)
    local Ri = R:narrow(2, t0 + 1, LENS[i])
    ;(l * Ri):sum():backward()
    e_logits = math.max(e_logits, rel(lp:narrow(2, t0 + 1, LENS[i]), l))
    t0 = t0 + LENS[i]
  end
  local gs = grads()
  local e_param, where, dsq, nsq = 0, "", 0, 0
  for _, name in ipairs(names) do
    local e = rel2(gp[name], gs[name])
    if e > e_param then e_param, where = e, name end
    dsq, nsq = dsq + hb.sumsq(gp[name] - gs[name]), nsq + hb.sumsq(gs[name])
  end
  local e_grad = math.sqrt(dsq) / (nsq > 0 and math.sqrt(nsq) or 1)
  -- the packed loss is the mean over the documents' targets (each document alone predicts len − 1)
  local lsum, n = 0, 0
  for i, d in ipairs(docs) do
    if LENS[i] >= 2 then
      lsum = lsum + m:loss(d):item() * (LENS[i] - 1)
      n = n + LENS[i] - 1
    end
  end
  local lpk = m:loss(packed):item()
  return e_logits, e_grad, e_param, where, math.abs(lpk - lsum / n) / math.abs(lsum / n)
end

-- float32 (the contract: logits, loss and the whole gradient ≤ 1e-5; each parameter's gradient ≤ 1e-4,
-- since a small parameter whose gradient is a sum over all tokens of cancelling terms — a gate bias —
-- carries float32 rounding of the different summation order, not a packing error) and float64 (the same
-- model in doubles: every parameter equal up to rounding, ≤ 1e-12, which is what proves the packing exact)
local function check_config(tag, cfg)
  for _, mode in ipairs { "chunk", "recurrent" } do
    for _, dt in ipairs { "float32", "float64" } do
      local ok, a, b, bp, where, c = pcall(function()
        local m = hb.models.new(cfg, { seed = 3 }):set_mode(mode)
        if dt == "float64" then
          for n, p in m:named_parameters() do m.params[n] = p:double():detach():requires_grad(true) end
        end
        return compare(m, documents(cfg.vocab_size))
      end)
      local tol = dt == "float32" and TOL or 1e-12
      local ptol = dt == "float32" and 10 * TOL or 1e-12
      local t = string.format("%s [%s, %s]: packed {1,63,64,65,200} == each document alone", tag, mode, dt)
      if not ok then
        T.ok(false, t, "the packed forward failed: " .. tostring(a))
      else
        T.ok(a <= tol and b <= tol and bp <= ptol and c <= tol, t .. " (logits, gradients, loss)",
          string.format("logits %.2e, gradients %.2e (worst parameter %.2e: %s), loss %.2e", a, b, bp, where, c))
      end
    end
  end
end

-- ---- every mixer of the registry, on its model type's fixture configs -------------------------------------
for _, name in ipairs(registry.names()) do
  local def = registry.get(name)
  local mt = def.model_type
  if not mt then
    T.ok(false, "mixer '" .. name .. "': packing is checked through a model type, and it has none")
  elseif not configs[mt] then
    T.ok(false, string.format("mixer '%s': no fixture config of model type '%s' under %s to check packing on",
      name, mt, T.fixtures))
  else
    for _, c in ipairs(configs[mt]) do check_config(c.name, c.cfg) end
  end
end

-- sliding-window attention restarts at every document (window shorter than some documents)
do
  local c = configs.transformer[1]
  local cfg = {}
  for k, v in pairs(c.cfg) do cfg[k] = v end
  cfg.window_size = 16
  check_config(c.name .. " with window_size 16", cfg)
  local h = {}
  for k, v in pairs(configs.gla[1].cfg) do h[k] = v end
  h.attn = { layers = { 1 }, num_heads = 2, window_size = 20 }
  check_config(configs.gla[1].name .. " with a windowed attention layer", h)
end

-- ---- the model-level contract ---------------------------------------------------------------------------
do
  local cfg = configs.gla[1].cfg
  local m = hb.models.new(cfg, { seed = 1 })
  local docs = documents(cfg.vocab_size)
  local p = hb.models.pack(docs)
  T.is(table.concat(p.ids:shape(), ","), "1,393", "hb.models.pack: ids [1, total]")
  T.is(table.concat(p.cu_seqlens:tolist(), ","), "0,1,64,128,193,393", "hb.models.pack: cu_seqlens (fla's form)")
  local a = m:forward(p)
  local b = m:forward(p.ids, { cu_seqlens = { 0, 1, 64, 128, 193, 393 } })
  local c = m:forward(p.ids, { cu_seqlens = hb.tensor({ 0, 1, 64, 128, 193, 393 }, "int32") })
  T.ok(rel(a, b) == 0 and rel(a, c) == 0, "cu_seqlens as opts or inside the batch, as a list, int64 or int32 tensor")
  T.ok(rel(m:hidden(p), m:hidden(p.ids, nil, { cu_seqlens = p.cu_seqlens })) == 0, "m:hidden takes a packed batch")
  local lp = m:loss(p):item()
  T.ok(math.abs(m:loss(p.ids, p.ids, { cu_seqlens = p.cu_seqlens }):item() - lp) == 0, "m:loss(ids, labels, {cu_seqlens})")
  T.ok(math.abs(m:loss(p.ids):item() - lp) > 1e-3, "without cu_seqlens the same row is one sequence (another loss)")
  T.ok(p.ids:get(1, 1) == docs[1]:get(1, 1), "pack leaves the ids untouched")
  T.raises(function() m:forward(p.ids, { cu_seqlens = { 0, 64, 390 } }) end,
    "forward: cu_seqlens must end at 393, the number of packed tokens (got 390)", "cu_seqlens must end at the length")
  T.raises(function() m:forward(p.ids, { cu_seqlens = { 1, 393 } }) end, "forward: cu_seqlens must start at 0, got 1",
    "cu_seqlens starts at 0")
  T.raises(function() m:loss(p.ids, nil, { cu_seqlens = { 0, 100, 50, 393 } }) end,
    "loss: cu_seqlens must be non-decreasing (entry 3 is 50, after 100)", "cu_seqlens is non-decreasing")
  T.raises(function() m:forward(hb.zeros(2, 4):long(), { cu_seqlens = { 0, 4 } }) end,
    "forward: a packed batch is one row of documents back to back: ids [1, total] with cu_seqlens (got ids [2, 4])",
    "a packed batch is one row")
  T.raises(function() m:forward(p.ids, { cu_seqlens = "x" }) end,
    "forward: cu_seqlens must be a list of integers or an int64 tensor", "cu_seqlens of the wrong type")
  T.raises(function() m:loss({ ids = hb.tensor({ { 1, 2, 3 } }, "int64"), cu_seqlens = { 0, 1, 2, 3 } }) end,
    "loss: the packed batch has no targets (every document has fewer than 2 tokens)", "a batch of 1-token documents")
  T.raises(function() m:loss(p.ids, hb.zeros(1, 5):long(), { cu_seqlens = p.cu_seqlens }) end,
    "loss: labels must be [1, 393] like the packed ids, got [1, 5]", "labels of a packed batch")
  T.raises(function() m:hidden(p.ids, m:new_cache(1), { cu_seqlens = p.cu_seqlens }) end,
    "a decode cache holds one sequence per row", "no decode cache with cu_seqlens")
  -- decoding is untouched: generate after packed training forwards gives what it gave before
  local g1 = m:generate(docs[3], 4)
  m:forward(p)
  T.is(table.concat(m:generate(docs[3], 4)[1], ","), table.concat(g1[1], ","), "decode is unaffected by packed forwards")
  -- a mixer that does not declare packing is refused by name (its documents would see each other)
  hb.models.register_mixer("test_unpacked_mix", {
    declare = function(add, d) add("w.weight", { d, d }) end,
    forward = function(ctx, x) return hb.linear(x, ctx.W[ctx.prefix .. "w.weight"]) end,
  })
  local cm = {}
  for k, v in pairs(cfg) do cm[k] = v end
  cm.custom_mixers = { { mixer = "test_unpacked_mix", layers = { 1 } } }
  local mm = hb.models.new(cm, { seed = 1 })
  T.ok(mm:forward(docs[2]) ~= nil, "a custom mixer without packing runs unpacked")
  T.raises(function() mm:forward(p) end,
    "layer 1 (custom): mixer 'test_unpacked_mix' does not handle packed sequences (its def lacks packed = true)",
    "... and a packed batch through it fails naming the layer and the mixer")
end

-- ---- packed training batches (hb.data.packed_batch) and hb.train on them ------------------------------------
do
  local dir = os.tmpname(); os.remove(dir); hb.data.mkdir(dir)
  local docs = {}
  for i = 1, 40 do docs[i] = { name = "d" .. i, text = string.rep("word" .. i .. " ", 3 + (i * 7) % 30) } end
  local meta = hb.data.prepare { input = docs, out = dir, bpe_vocab = 280, val_fraction = 0.1, seed = 1 }
  local eos = meta.tokenizer.eos_id
  T.ok(math.type(eos) == "integer", "a BPE tokenizer has an eos id (the document separator)")
  local d = hb.data.load(dir)
  local B, S = 3, 40
  local pb = hb.data.packed_batch(d.train, B, S, 5, 2, { eos = eos })
  local rows = d.train:batch(B, S, 5, 2)
  local flat = {}
  for _, r in ipairs(rows:tolist()) do for _, t in ipairs(r) do flat[#flat + 1] = t end end
  T.is(table.concat(pb.ids:tolist()[1], ","), table.concat(flat, ","), "packed_batch holds the rows of shard:batch, back to back")
  local cu, ok_cut = pb.cu_seqlens:tolist(), true
  local ids = pb.ids:tolist()[1]
  local is_end = {}
  for j = 2, #cu do is_end[cu[j]] = true; ok_cut = ok_cut and cu[j] > cu[j - 1] end
  for p = 1, #ids do
    local row_end = p % (S + 1) == 0
    if (ids[p] == eos or row_end) ~= (is_end[p] == true) then ok_cut = false end
  end
  T.ok(ok_cut and cu[#cu] == B * (S + 1), "documents end exactly after every eos and at every row end (no empty one)")
  local pb2 = hb.data.packed_batch(d.train, B, S, 5, 2, { eos = eos })
  T.ok(pb2.cu_seqlens:tolist()[3] == cu[3] and rel(pb2.ids:double(), pb.ids:double()) == 0, "packed_batch is deterministic in (seed, k)")
  local pc = hb.data.packed_batch(d.train, B, S, 5, 2, { eos = eos, context_len = 7 })
  local cc, longest = pc.cu_seqlens:tolist(), 0
  for j = 2, #cc do longest = math.max(longest, cc[j] - cc[j - 1]) end
  T.ok(longest <= 7 and #cc > #cu, "context_len cuts longer documents")
  T.raises(function() hb.data.packed_batch(d.train, B, S, 5, 2, {}) end, "hb.data.packed_batch: eos must be", "eos is required")
  T.raises(function() hb.data.packed_batch(d.train, B, S, 5, 2, { eos = eos, context = 3 }) end,
    "unknown option 'context'", "unknown option")
  T.raises(function() hb.data.packed_batch(d.train, B, S, 5, 2, { eos = eos, context_len = 0 }) end,
    "context_len must be an integer >= 1", "context_len range")
  -- hb.train on packed batches: the loss of step 1 is the model's packed loss of micro-batch 0, and it trains
  local cfg = {}
  for k, v in pairs(configs.gla[1].cfg) do cfg[k] = v end
  cfg.vocab_size = meta.vocab_size
  local m = hb.models.new(cfg, { seed = 2 })
  local first = m:loss(hb.data.packed_batch(d.train, B, S, 5, 0, { eos = eos })):item()
  local tr = hb.train { model = m, batch = function(k) return hb.data.packed_batch(d.train, B, S, 5, k, { eos = eos }) end,
    steps = 6, lr = 3e-3, warmup = 0, progress = false }
  T.ok(math.abs(tr.losses[1] - first) < 1e-6 and tr.losses[6] < tr.losses[1],
    "hb.train takes packed batches (step 1's loss is the packed loss; it falls)",
    string.format("%.5f vs %.5f, last %.5f", tr.losses[1], first, tr.losses[6]))
  os.execute("rm -rf '" .. dir .. "'")
end

T.done()
