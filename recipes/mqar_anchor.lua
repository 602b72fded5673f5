-- recipes/mqar_anchor.lua — the MQAR anchor: validates the recall task and the training loop against
-- Zoology's published result (Arora et al. 2023, Fig. 2: a 2-layer softmax-attention model at d_model 64
-- solves MQAR at short sequences). Trains that Transformer on a mixture of 4, 8 and 16 key-value pairs at
-- seq_len 64 (vocabulary 512 > seq_len, as Zoology requires), once per learning rate of anchor.lrs (Zoology sweeps
-- the learning rate per model and keeps the best), evaluates held-out examples per pair count, and with
-- --check exits 1 unless the best run's accuracy on every pair count is ≥ anchor.threshold.
--
--   hyblua recipes/mqar_anchor.lua --check          # the full anchor (`make check-anchors`; slow: tens of
--                                                   # minutes on 2 cores)
--   hyblua recipes/mqar_anchor.lua --tiny --check   # seconds: the pipeline runs and learns beyond chance
--                                                   # (threshold 3× chance; tests/test_anchor.lua)
-- Results: <out>/anchor.json (every run: lr, accuracy overall and per pair count, seconds).
local hb = require "hyblua"
local K = hb.config.key

local defaults = hb.config.declare {
  out = K("runs/mqar_anchor", "output directory (anchor.json, checkpoints, logs)"),
  tiny = K(false, "seconds: seq_len 32, vocabulary 64, 2–4 pairs, 150 steps, threshold 3× chance (explicit values win)"),
  check = K(false, "exit 1 unless the best run reaches anchor.threshold on every test pair count"),
  seed = K(0, "seed of initialisation, batch order and data", { min = 0 }),
  threads = K(0, "worker threads (0: HYBLUA_NUM_THREADS or all CPUs)", { min = 0, max = 256 }),
  model = {
    hidden_size = K(64, "width (Zoology's anchor: 64)", { min = 2 }),
    num_hidden_layers = K(2, "depth (Zoology's anchor: 2)", { min = 1 }),
    num_heads = K(1, "attention heads", { min = 1 }),
  },
  anchor = {
    seq_len = K(64, "sequence length", { min = 4 }),
    vocab_size = K(512, "vocabulary (> seq_len, as Zoology; keys from its lower half, values from its upper half)", { min = 8 }),
    train_kv = K({ 4, 8, 16 }, "key-value pairs per training example (a mixture, equal parts)", { min = 1 }),
    test_kv = K({ 4, 8, 16 }, "key-value pairs per test example (one accuracy each)", { min = 1 }),
    train_examples = K(100000, "training examples", { min = 1 }),
    test_examples = K(1000, "test examples per pair count", { min = 1 }),
    steps = K(8000, "training steps per learning rate", { min = 1 }),
    batch_size = K(64, "examples per step", { min = 1 }),
    lrs = K({ 1e-3, 3e-3 }, "peak learning rates swept (cosine to lr/10, warm-up anchor.warmup); the best is kept", { min = 0 }),
    warmup = K(100, "warm-up steps", { min = 0 }),
    weight_decay = K(0.1, "AdamW weight decay", { min = 0 }),
    threshold = K(0.97, "--check: the accuracy the best run must reach on every test pair count (0: 3× chance)",
      { min = 0, max = 1 }),
  },
}
local function tiny_preset(d)
  local a = d.anchor
  a.seq_len, a.vocab_size, a.train_kv, a.test_kv = 32, 64, { 2, 4 }, { 2, 4 }
  a.train_examples, a.test_examples, a.steps, a.batch_size, a.lrs, a.warmup = 4000, 128, 150, 32, { 3e-3 }, 20
  a.threshold = 0.0
  d.out = "runs/mqar_anchor_tiny"
end
local popts = { description = "The MQAR anchor: Zoology's 2-layer d 64 Transformer trained on MQAR with a learning-rate " ..
  "sweep; --check asserts it solves the task (make check-anchors)." }
local first = hb.config.parse_args(arg, defaults, popts)
local eff = hb.config.copy(defaults)
if first.tiny then tiny_preset(eff) end
local cfg = hb.config.parse_args(arg, eff, popts)
if cfg.threads > 0 then hb.set_num_threads(cfg.threads) end
local A = cfg.anchor
if A.vocab_size <= A.seq_len and not cfg.tiny then
  hb.user_error(string.format("anchor.vocab_size (%d) must exceed anchor.seq_len (%d), as in Zoology", A.vocab_size, A.seq_len))
end
if #A.lrs == 0 then hb.user_error("anchor.lrs: at least one learning rate") end
-- chance: a value guessed uniformly from the vocabulary's upper half
local chance = 1 / (A.vocab_size - A.vocab_size // 2)
local threshold = A.threshold > 0 and A.threshold or 3 * chance

local function specs(kvs, n)
  local t = {}
  for _, kv in ipairs(kvs) do t[#t + 1] = { seq_len = A.seq_len, num_kv_pairs = kv, num_examples = n } end
  return t
end
local data = hb.eval.mqar.mixture { vocab_size = A.vocab_size, seed = cfg.seed + 17,
  train = specs(A.train_kv, A.train_examples // #A.train_kv), test = specs(A.test_kv, A.test_examples) }
local xs, ys = {}, {}
for i, s in ipairs(data.train) do xs[i], ys[i] = s.inputs, s.labels end
local pool_x, pool_y = hb.cat(xs, 1), hb.cat(ys, 1)
local pool_n = pool_x:size(1)
local function batch(k) -- batch k: a fixed function of k and the seed
  local idx, x = {}, (k * 2654435761 + cfg.seed) % 4294967296
  for i = 1, A.batch_size do x = (x * 1103515245 + 12345) % 2147483648; idx[i] = x % pool_n end
  local it = hb.tensor(idx, "int64")
  return pool_x:index_select(1, it), pool_y:index_select(1, it)
end
-- cross-entropy at the supervised positions only (labels ≠ −100), logits computed only there
local function loss(model, x, y)
  local B, T = x:size(1), x:size(2)
  local rows, tgt = {}, {}
  for i, v in ipairs(y:view(B * T):tolist()) do if v ~= -100 then rows[#rows + 1] = i - 1; tgt[#tgt + 1] = v end end
  local h = model:hidden(x):view(B * T, -1):index_select(1, hb.tensor(rows, "int64"))
  local w = model.params["lm_head.weight"] or model.params["model.embeddings.weight"]
  return hb.cross_entropy(hb.linear(h, w), hb.tensor(tgt, "int64"), -100)
end

hb.data.mkdir(cfg.out)
hb.config.save(cfg.out .. "/config.yaml", cfg, "mqar anchor")
local runs, best = {}, nil
for _, lr in ipairs(A.lrs) do
  local t0 = hb.now()
  local m = hb.models.new({ model_type = "transformer", hidden_size = cfg.model.hidden_size, num_hidden_layers = cfg.model.num_hidden_layers,
    num_heads = cfg.model.num_heads, vocab_size = A.vocab_size }, { seed = cfg.seed })
  local tag = string.format("lr%g", lr)
  local tr = hb.train {
    model = m, name = "anchor " .. tag,
    loss_fn = function(k) local x, y = batch(k); return loss(m, x, y), x:numel() end,
    steps = A.steps, lr = lr, min_lr = lr / 10, warmup = math.min(A.warmup, A.steps), schedule = "cosine",
    weight_decay = A.weight_decay, clip = 1.0, out = cfg.out .. "/ckpt-" .. tag, save_every = math.max(100, A.steps // 4), keep = 1,
    log = cfg.out .. "/" .. tag .. ".jsonl", seed = cfg.seed,
  }
  if tr.interrupted then os.exit(130) end
  local r = hb.eval.mqar.evaluate(m, data.test, { batch_size = 64 })
  local run = { lr = lr, accuracy = r.accuracy, by_kv = {}, seconds = hb.now() - t0, steps = A.steps,
                train_loss_last = tr.losses[A.steps] }
  local worst = math.huge
  for kv, acc in pairs(r.by_num_kv_pairs or {}) do run.by_kv["kv" .. kv] = acc; worst = math.min(worst, acc) end
  run.worst = worst
  runs[#runs + 1] = run
  local parts = {}
  for _, kv in ipairs(A.test_kv) do parts[#parts + 1] = string.format("%d kv %.3f", kv, run.by_kv["kv" .. kv] or 0 / 0) end
  print(string.format("anchor lr %g: accuracy %.3f (%s), %.0f s", lr, r.accuracy, table.concat(parts, ", "), run.seconds))
  if not best or run.worst > best.worst then best = run end
end
hb.io.write_json(cfg.out .. "/anchor.json", { runs = runs, best_lr = best.lr, threshold = threshold, chance = chance,
  passed = best.worst >= threshold })
print(string.format("anchor: best lr %g, worst pair count %.3f (threshold %.3f, chance %.4f) → %s", best.lr, best.worst,
  threshold, chance, best.worst >= threshold and "PASS" or "FAIL"))
if cfg.check and best.worst < threshold then os.exit(1) end
