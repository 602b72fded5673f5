-- recipes/custom_mixer.lua — a NEW token mixer written in Lua from tensor ops, placed in a hybrid
-- schedule beside built-in GLA layers and a softmax-attention layer. Autograd does its backward.
--
-- The mixer ("ema"): per head h, an exponential moving average of value vectors with a learned decay
-- λ_h = σ(a_h + 2):   y_t = (1 − λ) Σ_{s≤t} λ^{t−s} v_s,   out = o_proj(y ⊙ silu(g_proj(x))).
-- Full sequences use the parallel (T×T decay matrix) form; decoding keeps the running average as state.
--
--   hyblua recipes/custom_mixer.lua              # trains a small GLA/EMA/attention hybrid on the corpus
--   hyblua recipes/custom_mixer.lua --tiny       # a few steps (the test suite runs this)
-- Like the other recipes it resumes the run in `out` (the same command continues an interrupted run);
-- --set train.overwrite=true moves an earlier run aside and starts afresh.
local hb = require "hyblua"

hb.models.register_mixer("ema", {
  -- parameters of layer i: add(name, shape, init) → model.layers.<i>.attn.<name>
  declare = function(add, d, i, opts)
    add("v_proj.weight", { d, d })
    add("g_proj.weight", { d, d })
    add("o_proj.weight", { d, d })
    add("decay_logit", { opts.heads }, "zeros")
  end,
  -- x: [B, T, d] → [B, T, d]. ctx.cache is a per-layer table when decoding (nil otherwise).
  forward = function(ctx, x, opts, W)
    local B, T, d = x:size(1), x:size(2), x:size(3)
    local H = opts.heads
    local D = d // H
    local v = hb.linear(x, W("v_proj.weight")):view(B, T, H, D)
    local loglam = (W("decay_logit") + 2):logsigmoid()                -- log λ, [H]
    local one_minus = 1 - loglam:exp()                                 -- 1 − λ, [H]
    local y
    if ctx.cache then
      -- recurrent form: S_t = λ S_{t−1} + (1 − λ) v_t, one token at a time
      local S = ctx.cache.state or hb.zeros(B, H, D)
      local lam = loglam:exp():view(1, H, 1)
      local outs = {}
      for t = 1, T do
        S = S * lam + v:select(2, t) * one_minus:view(1, H, 1)
        outs[t] = S:unsqueeze(2)
      end
      ctx.cache.state = S
      y = hb.cat(outs, 2)
    else
      -- parallel form: y = (1 − λ) · (M ⊙ λ^{t−s}) v with M the causal mask
      local t = hb.arange(T):to(x:dtype())
      local diff = (t:view(T, 1) - t:view(1, T)):clamp(0)              -- t − s, 0 above the diagonal
      local decay = (loglam:view(H, 1, 1) * diff:view(1, T, T)):exp():tril() -- [H, T, T]
      local vh = v:transpose(2, 3)                                      -- [B, H, T, D]
      y = decay:matmul(vh) * one_minus:view(1, H, 1, 1)                 -- [B, H, T, D]
      y = y:transpose(2, 3)                                             -- [B, T, H, D]
    end
    y = y:contiguous():view(B, T, d)
    return hb.linear(y * hb.linear(x, W("g_proj.weight")):silu(), W("o_proj.weight"))
  end,
})

local K = hb.config.key
local defaults = hb.config.declare {
  tiny = K(false, "a few steps at width 32, batch 2 × 32 tokens (the test suite runs this); explicit values win"),
  steps = K(300, "training steps", { min = 1 }),
  batch_size = K(8, "rows per step", { min = 1 }),
  seq_len = K(128, "tokens per row", { min = 2 }),
  lr = K(3e-3, "peak learning rate", { min = 0 }),
  seed = K(0, "seed of the initialisation and the batches", { min = 0 }),
  out = K("runs/custom_mixer", "run directory (metrics.jsonl, checkpoints); runs/custom_mixer-tiny with --tiny"),
  train = {
    resume = K(true, "resume from the newest checkpoint in out"),
    overwrite = K(false, "start afresh even if out holds a run: it is moved aside to <out>.old-<time> first"),
  },
  data = {
    dir = K("data/sotu", "token shards, from `make data`"),
    sample = K("tests/data/sample", "the bundled sample used when data.dir is not prepared"),
    cache = K("runs/cache/sample", "where the sample is prepared (once)"),
  },
  model = { vocab_size = K(256, "vocabulary size; must match the data", { min = 1 }) },
}
local popts = { description = "A new token mixer (a per-head exponential moving average, 'ema') written in Lua, " ..
  "trained between GLA layers and a softmax-attention layer; autograd gives its backward." }
-- --tiny is a preset: it changes the defaults before --config and --set, so explicit values win
local first = hb.config.parse_args(arg, defaults, popts)
local eff = hb.config.copy(defaults)
if first.tiny then eff.steps, eff.batch_size, eff.seq_len, eff.out = 6, 2, 32, eff.out .. "-tiny" end
local cfg = hb.config.parse_args(arg, eff, popts)

-- 6 layers: GLA at 0,2,4; EMA at 1,3; softmax attention at 5
local model = hb.models.new({
  model_type = "gla", hidden_size = cfg.tiny and 32 or 128, num_hidden_layers = 6, num_heads = 2, vocab_size = 256,
  attn = hb.schedule.layers({ 5 }, { num_heads = 2 }),
  custom_mixers = { { mixer = "ema", layers = { 1, 3 }, heads = 2 } },
}, { seed = cfg.seed })
io.stderr:write("custom_mixer: layers " .. hb.schedule.describe(model.config) .. " (L = gla, C = ema, A = attention)\n")

local train_shard, val_shard = hb.recipe.open_data { data = cfg.data, model = cfg.model }
local function val(m) return hb.eval.lm(m, val_shard, { T = cfg.seq_len, max_tokens = cfg.tiny and 256 or 8192 }).loss end
local before = val(model)
local r = hb.train {
  model = model, name = "custom_mixer", steps = cfg.steps, lr = cfg.lr, warmup = math.min(20, cfg.steps),
  batch = function(k) return train_shard:batch(cfg.batch_size, cfg.seq_len, cfg.seed, k) end,
  out = cfg.out, log = cfg.out .. "/metrics.jsonl", resume = cfg.train.resume, overwrite = cfg.train.overwrite,
  progress = not cfg.tiny,
}
if r.interrupted then return r end -- the checkpoint is saved; hyblua exits with status 130
local after = val(model)
print(string.format("custom_mixer: validation loss %.4f → %.4f after %d steps", before, after, cfg.steps))
return { before = before, after = after, losses = r.losses, model = model }
