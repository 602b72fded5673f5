-- recipes/paper_grid.lua — the paper's study in miniature.
--
-- 10 linear mixers (the paper's 6, kda, gated_deltaproduct, mamba2, rwkv7) × {pure, 24:1, 12:1, 6:1, 3:1}
-- + a Transformer = 51 cells, all at the same depth, width and (by adjusting the MLP width; not possible for
-- Mamba-2, whose blocks have no MLP) the same parameter budget, each trained once per seed (grid.seeds,
-- default 3), and each of those twice with the same number of tokens: (a) on the text corpus (language modelling → validation bits-per-byte) and (b) on
-- Zoology's MQAR (recall → accuracy on held-out lengths). Results go to <out>/grid.csv, grid.md and
-- three plots as SVG (and PNG when rsvg-convert is installed): recall vs attention share, LM vs
-- attention share, recall vs state+KV bytes.
--
--   hyblua recipes/paper_grid.lua --help          # every key, its default and meaning; runs nothing
--   hyblua recipes/paper_grid.lua                 # the default size (a few hours on 2 cores)
--   hyblua recipes/paper_grid.lua --tiny          # seconds per cell; used by the test suite
--   hyblua recipes/paper_grid.lua --set grid.mixers=[gla,hgrn2] --set lm.steps=500
--   hyblua recipes/paper_grid.lua --out docs/grid --set grid.plot_only=true   # tables and plots again
--   hyblua recipes/paper_grid.lua --jobs 8 --set grid.job_threads=2   # 8 cell-seeds at once (child processes)
--   hyblua recipes/paper_grid.lua --set grid.tasks=[mqar] --set mqar.lrs=[1e-3,3e-3]   # MQAR alone, best of two rates
-- Re-running skips finished cell-seeds (<out>/cells/<cell>__s<seed>.json) and resumes a half-trained one from
-- its checkpoint (with mqar.lrs, skipping the learning rates it has finished); a cell-seed being trained holds
-- <out>/cells/<cell>__s<seed>.lock, so two jobs or two invocations never train it twice; everything is
-- deterministic given the seed, whatever the jobs and threads.
-- grid.md: mean ± 95% t-interval per cell, per-seed values, the placement table, and the paper's four
-- findings judged by hb.stats.findings (docs/recipes.md states each test).
--
-- Attention placement is hb.schedule.ratio's, as in every recipe: ratio r puts attention at the 0-based
-- layers i with i % (r+1) == r. At 12 layers, 3:1 gives 3 attention layers (3, 7, 11) and 6:1 one
-- (layer 6); 12:1 and 24:1 need 13 and 25 layers, so at 12 they give none (a warning says so) and
-- their cells are the pure models. Cells whose layer stacks coincide are trained once (`same_as`).
local hb = require "hyblua"
local K = hb.config.key
local null = hb.io.null

local mixer_names = { "hgrn", "retnet", "gla", "hgrn2", "delta_net", "gated_deltanet", "kda", "gated_deltaproduct",
                      "mamba2", "rwkv7" }
local defaults = hb.config.declare {
  name = K("paper_grid", "the study's name (recorded in config.yaml)"),
  out = K("results", "output directory (results/tiny with --tiny)"),
  tiny = K(false, "seconds per cell: width 32, 6 layers, 3 steps per task, ratios [0, 3], mixers [hgrn, gla, " ..
    "gated_deltanet, kda], 2 seeds (explicit values win)"),
  seed = K(0, "first seed of initialisation, batches and MQAR data (grid.seeds counts up from it)", { min = 0 }),
  threads = K(0, "worker threads (0: HYBLUA_NUM_THREADS or all CPUs)", { min = 0, max = 256 }),
  grid = {
    mixers = K(mixer_names, "the linear mixers", { choices = mixer_names }),
    ratios = K({ 0, 24, 12, 6, 3 }, "attention ratios r:1 (0 = pure; hb.schedule.ratio placement)", { min = 0 }),
    transformer = K(true, "add the pure-Transformer cell"),
    tasks = K({ "lm", "mqar" }, "what every cell is trained on", { choices = { "lm", "mqar" } }),
    budget = K(0, "parameter budget every cell is sized to (0: the Transformer's parameter count)", { min = 0 }),
    seeds = K(3, "seeds per cell: every cell is trained with seeds seed, seed+1, ... (mean ± 95% t-interval reported)",
      { min = 1, max = 1000 }),
    seed_list = K({}, "explicit seeds (a list of integers ≥ 0); when given, replaces seed/grid.seeds"),
    jobs = K(1, "cells trained at once, each as a child process of ./hyblua (--jobs N)", { min = 1, max = 256 }),
    job_threads = K(1, "worker threads of each child when grid.jobs > 1", { min = 1, max = 256 }),
    only = K("", "internal (--jobs children): train the one cell-seed <cell>__s<seed> and write no report"),
    only_lr = K(0.0, "internal (--jobs children): with grid.only and mqar.lrs, train MQAR at this one learning rate " ..
      "(ckpt/<cell>__s<seed>-mqar-lr<lr>.json) and nothing else", { min = 0 }),
    plot_only = K(false, "train nothing: rewrite grid.csv, grid.md and the plots from <out>/cells/*.json"),
    matmul_precision = K("fp32", "matrix products of every cell's training (hb.train's matmul_precision; evaluation stays " ..
      "fp32); a grid's cells must share it: a record of the other precision in --out is an error",
      { choices = { "fp32", "bf16" } }),
  },
  model = {
    hidden_size = K(64, "model width of every cell", { min = 2 }),
    num_hidden_layers = K(12, "depth of every cell", { min = 1 }),
    vocab_size = K(256, "the LM task's vocabulary (must match the data)", { min = 1 }),
  },
  heads = K(2, "heads of every mixer and of the attention layers", { min = 1 }),
  data = {
    dir = K("data/sotu", "token shards of the LM task, from `make data`"),
    sample = K("tests/data/sample", "the bundled sample used when data.dir is not prepared"),
    cache = K("runs/cache/sample", "where the sample is prepared (once)"),
  },
  lm = {
    steps = K(250, "LM training steps per cell", { min = 1 }),
    batch_size = K(8, "LM rows per step", { min = 1 }),
    seq_len = K(128, "LM tokens per row (also the validation window)", { min = 1 }),
    lr = K(3e-3, "LM peak learning rate (cosine to lr/10, 30 warm-up steps)", { min = 0 }),
    val_tokens = K(16384, "validation tokens scored", { min = 1 }),
  },
  mqar = {
    steps = K(800, "MQAR training steps per cell", { min = 1 }),
    batch_size = K(16, "MQAR examples per step", { min = 1 }),
    seq_len = K(48, "MQAR sequence length", { min = 4 }),
    vocab_size = K(64, "MQAR vocabulary (keys and values from its two halves)", { min = 8 }),
    lr = K(3e-3, "MQAR peak learning rate (cosine to lr/10 after mqar.warmup steps) when mqar.lrs is empty", { min = 0 }),
    lrs = K({}, "MQAR learning-rate sweep: every cell-seed is trained once per rate from the same initialisation and " ..
      "keeps the one with the best test accuracy (the first on a tie); every rate's result is in the cell's mqar_sweep. " ..
      "Empty: mqar.lr alone, no sweep", { check = function(v)
        local seen = {}
        for _, lr in ipairs(v) do
          if type(lr) ~= "number" or not (lr > 0) then return "must hold learning rates > 0" end
          local k = string.format("%g", lr) -- names the rate's checkpoints and results
          if seen[k] then return "must not list a learning rate twice" end
          seen[k] = true
        end
      end }),
    lr_select = K("each_seed", "with mqar.lrs: each_seed sweeps the rates for every seed; first_seed sweeps them for " ..
      "the grid's first seed only, and every other seed of the cell trains once, at the rate the first seed kept",
      { choices = { "each_seed", "first_seed" } }),
    warmup = K(30, "MQAR linear warm-up steps (at most mqar.steps)", { min = 0 }),
    train_kv = K({ 2, 4, 6 }, "key-value pairs per training example (a mixture)", { min = 1 }),
    test_kv = K({ 4, 6 }, "key-value pairs per test example (one accuracy column each)", { min = 1 }),
    train_examples = K(12000, "training examples (split evenly over train_kv)", { min = 1 }),
    test_examples = K(256, "test examples per test_kv", { min = 1 }),
  },
}

-- the tiny preset, applied before --config and --set (an explicit value wins over it)
local function tiny_preset(d)
  d.model.hidden_size, d.model.num_hidden_layers = 32, 6
  d.lm.steps, d.lm.batch_size, d.lm.seq_len, d.lm.val_tokens = 3, 2, 64, 1024
  d.mqar.steps, d.mqar.batch_size, d.mqar.seq_len = 3, 4, 32
  d.mqar.train_kv, d.mqar.test_kv, d.mqar.train_examples, d.mqar.test_examples = { 2, 4 }, { 4 }, 64, 16
  d.grid.ratios = { 0, 3 }
  d.grid.mixers = { "hgrn", "gla", "gated_deltanet", "kda" }
  d.grid.seeds = 2
  d.out = "results/tiny"
end
local popts = { description = "The paper's grid in miniature: every linear mixer pure and at each attention ratio, " ..
  "plus a Transformer, at one parameter budget, trained on language modelling and on MQAR recall. " ..
  "Writes <out>/grid.csv, grid.md, plots, and cells/*.json (re-running skips finished cells)." }
-- --jobs N is the shorthand of --set grid.jobs=N
local args = {}
for i = 0, #arg do
  local a = arg[i]
  if i > 0 and a == "--jobs" then a = "--grid.jobs" elseif i > 0 and a:sub(1, 7) == "--jobs=" then a = "--grid.jobs=" .. a:sub(8) end
  args[i] = a
end
for i = -1, -10, -1 do args[i] = arg[i] end
local first = hb.config.parse_args(args, defaults, popts)
local eff = hb.config.copy(defaults)
if first.tiny then tiny_preset(eff) end
local cfg = hb.config.parse_args(args, eff, popts)
if cfg.threads > 0 then hb.set_num_threads(cfg.threads) end
local out = cfg.out

-- the seeds: grid.seed_list, or grid.seeds of them counting up from seed
local seeds = {}
if #cfg.grid.seed_list > 0 then
  local seen = {}
  for i, s in ipairs(cfg.grid.seed_list) do
    if math.type(s) ~= "integer" or s < 0 then
      hb.user_error(string.format("config key 'grid.seed_list': element %d must be an integer ≥ 0, got %s", i, tostring(s)))
    end
    if seen[s] then hb.user_error(string.format("config key 'grid.seed_list': seed %d is listed twice", s)) end
    seen[s] = true
    seeds[#seeds + 1] = s
  end
else
  for i = 0, cfg.grid.seeds - 1 do seeds[#seeds + 1] = cfg.seed + i end
end
local d, L, H = cfg.model.hidden_size, cfg.model.num_hidden_layers, cfg.heads
local task_on = {} -- the configured tasks as a set: task_on.lm, task_on.mqar
for _, t in ipairs(cfg.grid.tasks) do task_on[t] = true end

-- ---- the cells ------------------------------------------------------------------------------------
local function mixer_cfg(mixer)
  local c = { model_type = mixer, hidden_size = d, num_hidden_layers = L }
  if mixer == "hgrn" then c.expand_ratio = 1
  elseif mixer == "retnet" then c.num_heads = H
  elseif mixer == "gla" then c.num_heads = H
  elseif mixer == "hgrn2" then c.expand_ratio = d // H
  elseif mixer == "delta_net" then c.num_heads = H
  elseif mixer == "gated_deltanet" then c.num_heads = H; c.head_dim = (3 * d // 4) // H
  elseif mixer == "kda" then c.num_heads = H; c.head_dim = (3 * d // 4) // H
  elseif mixer == "gated_deltaproduct" then c.num_heads = H; c.head_dim = (d // 2) // H; c.num_householder = 2
  elseif mixer == "mamba2" then c.head_dim = d // H; c.state_size = 16
  elseif mixer == "rwkv7" then c.head_dim = d // H
  elseif mixer == "transformer" then c.num_heads = H end
  return c
end

-- attention layers of ratio r at depth L: hb.schedule.ratio's rule, the one every recipe uses (attention at
-- the 0-based layers i with i % (r+1) == r); {} for pure (r = 0) or when r+1 > L
local function attn_layers(r)
  if r <= 0 then return {} end
  local spec = hb.schedule.ratio(r, { num_heads = H }):resolve(L)
  return spec and spec.layers or {}
end

-- a ratio that gives no attention layer at this depth makes the same model as pure (trained once)
for _, r in ipairs(cfg.grid.ratios) do
  if r > 0 and #attn_layers(r) == 0 and not cfg.grid.plot_only then
    io.stderr:write(string.format("warning: ratio %d:1 gives no attention layer at %d layers (the first would be layer %d); " ..
      "its cells are the pure models\n", r, L, r))
  end
end

local cells = {}
for _, mixer in ipairs(cfg.grid.mixers) do
  for _, r in ipairs(cfg.grid.ratios) do
    cells[#cells + 1] = { mixer = mixer, ratio = r, name = mixer .. (r == 0 and "_pure" or ("_" .. r .. "to1")) }
  end
end
if cfg.grid.transformer then cells[#cells + 1] = { mixer = "transformer", ratio = -1, name = "transformer" } end

-- model config for a cell at vocabulary V, with the MLP width chosen to hit the parameter budget
local function cell_config(cell, V, budget)
  local c = mixer_cfg(cell.mixer)
  c.vocab_size = V
  if cell.mixer ~= "transformer" then
    local layers = attn_layers(cell.ratio)
    if #layers > 0 then c.attn = { layers = layers, num_heads = H } end
  end
  if budget then
    -- params are linear in the MLP width I: measure the slope (3·d·I per layer for a SwiGLU MLP, 2·d·I for
    -- RWKV-7's), solve for I and round to a multiple of 8. Mamba-2 blocks have no MLP (only an attention
    -- layer's would change): such a cell keeps its width and is not budget-matched (its params are recorded).
    c.intermediate_size = 64
    local p0 = hb.models.new(c, { seed = 0 }):num_parameters()
    c.intermediate_size = 128
    local slope = (hb.models.new(c, { seed = 0 }):num_parameters() - p0) / 64
    if slope >= 2 * d * L then
      c.intermediate_size = math.max(8, math.floor((64 + (budget - p0) / slope) / 8 + 0.5) * 8)
    else
      c.intermediate_size = 64
      return c, false
    end
  end
  return c, budget ~= nil
end

-- the budget: the parameter count of the Transformer at fla's default MLP width (or grid.budget)
local function budget_for(V)
  if cfg.grid.budget > 0 then return cfg.grid.budget end
  local c = mixer_cfg("transformer")
  c.vocab_size = V
  return hb.models.new(c, { seed = 0 }):num_parameters()
end

-- ---- running the grid -------------------------------------------------------------------------------------
local function exists(p) local f = io.open(p, "rb"); if f then f:close(); return true end return false end

-- What a cell's result depends on, recorded with it (protocol, lm_protocol, mqar_protocol) and compared when a
-- record of --out is read again: re-running a grid with other settings in the same --out would otherwise skip
-- the finished cells and report them as trained with the new settings. The run's mechanics (out, threads, jobs,
-- which cells and seeds, plot_only) and the data paths are not part of it.
local function common_protocol()
  return { model = cfg.model, heads = cfg.heads, grid = { budget = cfg.grid.budget, matmul_precision = cfg.grid.matmul_precision } }
end
local function mqar_rate_protocol() -- what one MQAR rate's run depends on (not the list of rates)
  local m = {}
  for k, v in pairs(cfg.mqar) do if k ~= "lrs" and k ~= "lr_select" and k ~= "lr" then m[k] = v end end
  return m
end
-- a cell record (or an MQAR rate's part record) of --out, checked against this run's settings
local function read_record(p, part)
  local r = hb.io.read_json(p)
  local diffs = {}
  if r.protocol then hb.config.diff(r.protocol, common_protocol(), "", diffs)
  else -- written before protocols were recorded: its precision only
    hb.config.diff({ grid = { matmul_precision = r.matmul_precision or "fp32" } },
      { grid = { matmul_precision = cfg.grid.matmul_precision } }, "", diffs)
  end
  if part then
    if r.mqar_protocol then hb.config.diff(r.mqar_protocol, mqar_rate_protocol(), "mqar.", diffs) end
  else
    if task_on.lm and r.lm_protocol then hb.config.diff(r.lm_protocol, cfg.lm, "lm.", diffs) end
    if task_on.mqar and r.mqar_protocol then hb.config.diff(r.mqar_protocol, cfg.mqar, "mqar.", diffs) end
  end
  if #diffs > 0 then
    hb.user_error(string.format("paper_grid: %s was trained with other settings than this run's: %s%s. Use another " ..
      "--out for these settings, or the record's settings to continue or report that grid", p,
      table.concat(diffs, ", ", 1, math.min(#diffs, 6)), #diffs > 6 and string.format(" and %d more", #diffs - 6) or ""))
  end
  return r
end

-- a cell-seed's files: cells/<cell>__s<seed>.json (its result), cells/<cell>__s<seed>.lock (held while training)
local function cell_file(cell, seed) return cell.name .. "__s" .. seed end
local function cell_path(cell, seed) return out .. "/cells/" .. cell_file(cell, seed) .. ".json" end
-- a grid written before seeds existed has cells/<cell>.json, trained with the configured seed exactly as the
-- cell-seed <cell>__s<seed> is now: it stands for that seed (read, and copied to the new name when training)
local function legacy_record(cell, seed)
  local p = out .. "/cells/" .. cell.name .. ".json"
  if seed ~= cfg.seed or not exists(p) then return nil end
  local r = read_record(p)
  if r.seed ~= nil and r.seed ~= seed then return nil end
  r.seed = seed
  return r
end

-- cells whose layer stacks coincide at this depth are trained once: primary_of[name] = the first such cell
local function stack_key(cell)
  return cell.mixer .. "|" .. table.concat(cell.mixer == "transformer" and {} or attn_layers(cell.ratio), ",")
end
local primary_of = {}
do
  local first = {}
  for _, cell in ipairs(cells) do
    local k = stack_key(cell)
    if first[k] then primary_of[cell.name] = first[k] else first[k] = cell end
  end
end

-- the data, opened on first use (a --jobs parent trains nothing and never opens it)
local data_cache, mqar_cache = nil, {}
local function lm_data()
  if not data_cache then
    local train_shard, val_shard, meta = hb.recipe.open_data(cfg)
    local bpt = (meta.val_bytes and meta.val_tokens and meta.val_tokens > 0) and meta.val_bytes / meta.val_tokens or 1
    data_cache = { train = train_shard, val = val_shard, bpt = bpt }
  end
  return data_cache
end

-- MQAR for one seed: its training pool and test sets (the data, like the initialisation, depends on the seed)
local mq = cfg.mqar
local function mqar_data(seed)
  if mqar_cache[seed] then return mqar_cache[seed] end
  local train, test = {}, {}
  for _, kv in ipairs(mq.train_kv) do train[#train + 1] = { seq_len = mq.seq_len, num_kv_pairs = kv, num_examples = mq.train_examples // #mq.train_kv } end
  for _, kv in ipairs(mq.test_kv) do test[#test + 1] = { seq_len = mq.seq_len, num_kv_pairs = kv, num_examples = mq.test_examples } end
  local mix = hb.eval.mqar.mixture { vocab_size = mq.vocab_size, seed = seed + 17, train = train, test = test }
  local xs, ys = {}, {}
  for i, s in ipairs(mix.train) do xs[i], ys[i] = s.inputs, s.labels end
  local pool_x, pool_y = hb.cat(xs, 1), hb.cat(ys, 1)
  local pool_n = pool_x:size(1)
  -- MQAR training examples as one pool; batch k is a fixed function of k and the seed
  local function batch(k)
    local idx = {}
    local x = (k * 2654435761 + seed) % 4294967296
    for i = 1, mq.batch_size do
      x = (x * 1103515245 + 12345) % 2147483648
      idx[i] = x % pool_n
    end
    local it = hb.tensor(idx, "int64")
    return pool_x:index_select(1, it), pool_y:index_select(1, it)
  end
  mqar_cache[seed] = { test = mix.test, batch = batch }
  return mqar_cache[seed]
end

-- a model wrapper whose loss is MQAR's: cross-entropy only at supervised positions (labels ≠ −100),
-- with logits computed only there (hidden states gathered first, then the vocabulary projection)
local function mqar_loss(model, x, y)
  local B, T = x:size(1), x:size(2)
  local ylist = y:view(B * T):tolist()
  local rows, tgt = {}, {}
  for i, v in ipairs(ylist) do if v ~= -100 then rows[#rows + 1] = i - 1; tgt[#tgt + 1] = v end end
  local h = model:hidden(x):view(B * T, -1):index_select(1, hb.tensor(rows, "int64"))
  local w = model.params["lm_head.weight"] or model.params["model.embeddings.weight"]
  return hb.cross_entropy(hb.linear(h, w), hb.tensor(tgt, "int64"), -100)
end

-- the cell's structure, read off its model m (config c): parameters, attention layers and share, the layer
-- string, and the recurrent state and KV-cache bytes at N tokens
local function record_structure(res, cell, m, c, matched, N)
  local eff = hb.eval.efficiency(m, { N = N })
  res.params = m:num_parameters()
  res.budget_matched = matched
  res.intermediate_size = c.intermediate_size
  res.attn_layers = cell.mixer == "transformer" and L or #(c.attn and c.attn.layers or {})
  res.attn_share = res.attn_layers / L
  res.layers = hb.schedule.describe(m.config)
  res.state_bytes = eff.state_bytes + (eff.conv_state_bytes or 0)
  res.kv_bytes_at_T = eff.kv_bytes_at_N
end

-- ---- MQAR at one learning rate ---------------------------------------------------------------------------------
-- Without mqar.lrs a cell-seed trains once at mqar.lr (checkpoint and log names of a grid from before mqar.lrs).
-- With it, every rate is its own run from the same initialisation and batches, whose result is kept in
-- ckpt/<cell>__s<seed>-mqar-lr<lr>.json: a resumed cell-seed trains only the rates still missing, and --jobs runs
-- the rates of one cell-seed as separate jobs.
local function rate_part(cell, seed, lr) return out .. "/ckpt/" .. cell_file(cell, seed) .. string.format("-mqar-lr%g", lr) end

-- the rates cell-seed trains: {mqar.lr}; mqar.lrs; or with mqar.lr_select = first_seed, for every seed but the
-- grid's first, the one rate the first seed kept (→ rates, that seed). → nil, message when that is not known yet.
local function mqar_rates(cell, seed)
  if #mq.lrs == 0 then return { mq.lr } end
  if mq.lr_select ~= "first_seed" or seed == seeds[1] then return mq.lrs end
  local p = cell_path(cell, seeds[1])
  local r = exists(p) and read_record(p) or nil
  if not r then
    return nil, string.format("mqar.lr_select=first_seed: %s trains at the rate %s kept, and %s has no result yet " ..
      "(train seed %d first: the grid's order does)", cell_file(cell, seed), cell_file(cell, seeds[1]), p, seeds[1])
  end
  if type(r.mqar_lr) ~= "number" then
    return nil, string.format("mqar.lr_select=first_seed: %s records no mqar_lr (a grid without MQAR?)", p)
  end
  return { r.mqar_lr }, seeds[1]
end

-- one MQAR run of cell-seed at rate lr → run record, trained model (nil when the rate's result was already
-- saved); → nil, holder when another process is training this rate
local function mqar_rate(cell, seed, lr)
  local sweep = #mq.lrs > 0
  local tag = cell_file(cell, seed)
  local sub = sweep and string.format("-lr%g", lr) or ""
  local part = rate_part(cell, seed, lr)
  if sweep and exists(part .. ".json") then return read_record(part .. ".json", true) end
  local lock, holder
  if sweep then
    hb.data.mkdir(out .. "/ckpt")
    lock, holder = hb.proc.lock(part .. ".lock")
    if not lock then return nil, holder end
    if exists(part .. ".json") then lock:release(); return read_record(part .. ".json", true) end
  end
  local Q = mqar_data(seed)
  local c = cell_config(cell, mq.vocab_size, budget_for(mq.vocab_size))
  local tl = hb.now()
  local m = hb.models.new(c, { seed = seed + 1 })
  local tr = hb.train {
    model = m,
    loss_fn = function(k) local x, y = Q.batch(k); return mqar_loss(m, x, y), x:numel() end,
    name = tag .. " mqar" .. (sweep and string.format(" lr %g", lr) or ""),
    steps = mq.steps, lr = lr, min_lr = lr / 10, warmup = math.min(mq.warmup, mq.steps), schedule = "cosine",
    weight_decay = 0.1, clip = 1.0, out = out .. "/ckpt/" .. tag .. "-mqar" .. sub, save_every = math.max(50, mq.steps // 3), keep = 1,
    log = out .. "/logs/" .. tag .. "-mqar" .. sub .. ".jsonl", seed = seed, matmul_precision = cfg.grid.matmul_precision,
  }
  if tr.interrupted then os.exit(130) end -- the checkpoint is saved; the same command resumes
  local r = hb.eval.mqar.evaluate(m, Q.test, { batch_size = 32 })
  local run = { lr = lr, accuracy = r.accuracy, by_kv = {}, train_loss_last = tr.losses[mq.steps], seconds = hb.now() - tl,
                matmul_precision = cfg.grid.matmul_precision, protocol = common_protocol(), mqar_protocol = mqar_rate_protocol() }
  for kv, acc in pairs(r.by_num_kv_pairs or {}) do run.by_kv["kv" .. kv] = acc end
  if sweep then hb.io.write_json(part .. ".json", run); lock:release() end
  return run, m
end

-- ---- training one cell at one seed ---------------------------------------------------------------------------
-- → record, "cached" | "trained"; or nil, "busy", holder when another process holds the cell's lock
local function run_cell(cell, seed)
  local path = cell_path(cell, seed)
  if exists(path) then return read_record(path), "cached" end
  local old = legacy_record(cell, seed)
  if old then hb.io.write_json(path, old); return old, "cached" end
  local lock, holder = hb.proc.lock(out .. "/cells/" .. cell_file(cell, seed) .. ".lock")
  if not lock then return nil, "busy", holder end
  if exists(path) then lock:release(); return read_record(path), "cached" end -- finished while we looked
  local tag = cell_file(cell, seed)
  local t0 = hb.now()
  local res = { name = cell.name, mixer = cell.mixer, ratio = cell.ratio, seed = seed, matmul_precision = cfg.grid.matmul_precision,
                protocol = common_protocol(), lm_protocol = task_on.lm and cfg.lm or nil, mqar_protocol = task_on.mqar and cfg.mqar or nil }
  if task_on.lm then
    local D = lm_data()
    local V = cfg.model.vocab_size
    local c, matched = cell_config(cell, V, budget_for(V))
    local m = hb.models.new(c, { seed = seed })
    local lm = cfg.lm
    local vopts = { T = lm.seq_len, max_tokens = math.min(lm.val_tokens, D.val:len() - 1), bytes_per_token = D.bpt }
    res.lm_val_loss_init = hb.eval.lm(m, D.val, vopts).loss
    local tr = hb.train {
      model = m, name = tag .. " lm",
      batch = function(k) return D.train:batch(lm.batch_size, lm.seq_len, seed, k) end,
      steps = lm.steps, lr = lm.lr, min_lr = lm.lr / 10, warmup = math.min(30, lm.steps), schedule = "cosine",
      weight_decay = 0.1, clip = 1.0, out = out .. "/ckpt/" .. tag .. "-lm", save_every = math.max(50, lm.steps // 3), keep = 1,
      log = out .. "/logs/" .. tag .. "-lm.jsonl", seed = seed, matmul_precision = cfg.grid.matmul_precision,
    }
    if tr.interrupted then os.exit(130) end -- the checkpoint is saved; the same command resumes
    local ev = hb.eval.lm(m, D.val, vopts)
    record_structure(res, cell, m, c, matched, lm.seq_len)
    res.lm_val_loss, res.lm_val_bpb = ev.loss, ev.bpb
    res.lm_train_loss_first, res.lm_train_loss_last = tr.losses[1], tr.losses[lm.steps]
    res.lm_seconds = hb.now() - t0
  end
  if task_on.mqar then
    local t1 = hb.now()
    local rates, from = mqar_rates(cell, seed)
    if not rates then lock:release(); hb.user_error(from) end
    local runs, best, m_last = {}, nil, nil
    for _, lr in ipairs(rates) do
      local run, m = mqar_rate(cell, seed, lr)
      if not run then lock:release(); return nil, "busy", m end
      runs[#runs + 1] = run
      m_last = m or m_last
      if not best or run.accuracy > best.accuracy then best = run end
    end
    if from then res.mqar_lr_from_seed = from end
    res.mqar_acc = best.accuracy
    res.mqar_by_kv = best.by_kv
    res.mqar_train_loss_last = best.train_loss_last
    res.mqar_lr = best.lr
    if #mq.lrs > 0 then res.mqar_sweep = runs end
    res.mqar_seconds = hb.now() - t1
    if not task_on.lm then
      -- an MQAR-only grid: the cell's structure from the MQAR model (params at the MQAR vocabulary)
      local c, matched = cell_config(cell, mq.vocab_size, budget_for(mq.vocab_size))
      record_structure(res, cell, m_last or hb.models.new(c, { seed = seed + 1 }), c, matched, mq.seq_len)
    end
  end
  res.seconds = hb.now() - t0
  res.threads = hb.get_num_threads and hb.get_num_threads() or nil
  hb.io.write_json(path, res)
  lock:release()
  return res, "trained"
end

-- a cell that shares its primary's stack: a copy of the primary's record, marked same_as
local function write_copy(cell, seed)
  local path = cell_path(cell, seed)
  if exists(path) then return end
  local pp = cell_path(primary_of[cell.name], seed)
  if not exists(pp) then return end
  local r = read_record(pp)
  r.name, r.ratio, r.same_as = cell.name, cell.ratio, primary_of[cell.name].name
  hb.io.write_json(path, r)
end

local function progress(i, n, cell, seed, r, how)
  io.stderr:write(string.format("[%2d/%d] %-30s %s lm bpb %s  mqar %s  (%s)\n", i, n, cell_file(cell, seed),
    how == "trained" and string.format("%5.0fs", r.seconds or 0) or "(" .. how .. ")",
    r.lm_val_bpb and string.format("%.3f", r.lm_val_bpb) or "-", r.mqar_acc and string.format("%.3f", r.mqar_acc) or "-",
    r.layers or ""))
end

-- ---- the grid: serially in this process, or as grid.jobs child processes ----------------------------------
local function train_grid()
  local todo = {} -- primaries only: {cell, seed}
  for _, seed in ipairs(seeds) do
    for _, cell in ipairs(cells) do
      if not primary_of[cell.name] then todo[#todo + 1] = { cell = cell, seed = seed } end
    end
  end
  local failed = {}
  if cfg.grid.jobs <= 1 then
    for i, t in ipairs(todo) do
      local r, how, holder = run_cell(t.cell, t.seed)
      if r then progress(i, #todo, t.cell, t.seed, r, how)
      else
        io.stderr:write(string.format("[%2d/%d] %-30s skipped: being trained by another process (%s)\n", i, #todo,
          cell_file(t.cell, t.seed), holder))
      end
    end
  else
    -- each child runs this recipe with the same arguments plus grid.only=<cell>__s<seed>; it writes the
    -- cell's JSON (under the cell's lock) and its output to logs/<cell>__s<seed>.out. With mqar.lrs, every
    -- rate of a cell-seed is a job of its own first (grid.only_lr; logs/<cell>__s<seed>-lr<lr>.out), and the
    -- cell-seed's job (the LM task and the record) waits for them; with mqar.lr_select = first_seed, the rate
    -- job of a later seed waits for the first seed's record, which names its rate.
    local exe = hb.proc.self_exe()
    local sweep = task_on.mqar and #mq.lrs > 0
    local units, ncell = {}, 0
    for _, t in ipairs(todo) do
      if not exists(cell_path(t.cell, t.seed)) then
        ncell = ncell + 1
        local main = { t = t, deps = {}, tag = cell_file(t.cell, t.seed) }
        if sweep then
          local later = mq.lr_select == "first_seed" and t.seed ~= seeds[1]
          for _, lr in ipairs(later and { false } or mq.lrs) do
            local u = { t = t, lr = lr or nil, rate = true }
            if not (u.lr and exists(rate_part(t.cell, t.seed, u.lr) .. ".json")) then
              units[#units + 1] = u
              main.deps[#main.deps + 1] = u
            end
          end
        end
        units[#units + 1] = main
      end
    end
    io.stderr:write(string.format("grid: %d of %d cell-seeds to train (%d jobs in all), %d jobs × %d thread(s)\n", ncell,
      #todo, #units, cfg.grid.jobs, cfg.grid.job_threads))
    hb.data.mkdir(out .. "/logs")
    -- a unit is ready when what it waits for is done; → true, or false, or "failed" when that failed
    local function ready(u)
      if u.rate and not u.lr then
        local rates = mqar_rates(u.t.cell, u.t.seed)
        if rates then u.lr = rates[1]; return true end
        for _, v in ipairs(units) do -- the first seed's cell-seed job
          if not v.rate and v.t.cell == u.t.cell and v.t.seed == seeds[1] and (v.state == "failed" or v.state == "skipped") then
            return v.state
          end
        end
        return false
      end
      for _, dep in ipairs(u.deps or {}) do
        if dep.state == "failed" or dep.state == "skipped" then return dep.state end
        if dep.state ~= "done" then return false end
      end
      return true
    end
    local running, nrun, done, left = {}, 0, 0, #units
    while left > 0 do
      for _, u in ipairs(units) do
        if nrun >= cfg.grid.jobs then break end
        if not u.state then
          local ok = ready(u)
          if ok == "failed" or ok == "skipped" then
            u.state, left = ok, left - 1
            local what = cell_file(u.t.cell, u.t.seed) .. (u.rate and " (an MQAR rate)" or "")
            if ok == "failed" then failed[#failed + 1] = what .. ": a job it needs failed"
            else io.stderr:write(what .. ": skipped, a job it needs is being run by another process\n") end
          elseif ok and u.rate and exists(rate_part(u.t.cell, u.t.seed, u.lr) .. ".json") then
            u.state, left = "done", left - 1
          elseif ok then
            local argv = { exe, arg[0] }
            for i = 1, #args do argv[#argv + 1] = args[i] end
            local sets = { "grid.only=" .. cell_file(u.t.cell, u.t.seed), "grid.jobs=1", "threads=" .. cfg.grid.job_threads }
            if u.rate then sets[#sets + 1] = string.format("grid.only_lr=%.17g", u.lr) end
            for _, kv in ipairs(sets) do argv[#argv + 1] = "--set"; argv[#argv + 1] = kv end
            u.name = cell_file(u.t.cell, u.t.seed) .. (u.rate and string.format(" lr %g", u.lr) or "")
            u.log = out .. "/logs/" .. cell_file(u.t.cell, u.t.seed) .. (u.rate and string.format("-lr%g", u.lr) or "") .. ".out"
            local pid = hb.proc.spawn(argv, { stdout = u.log, stderr = u.log })
            u.state = "running"
            running[pid] = u
            nrun = nrun + 1
          end
        end
      end
      if nrun == 0 and left > 0 then
        local stuck = {}
        for _, u in ipairs(units) do if not u.state then stuck[#stuck + 1] = u.tag or cell_file(u.t.cell, u.t.seed) end end
        failed[#failed + 1] = "waiting on results that no job will produce: " .. table.concat(stuck, ", ")
        break
      end
      local finished = false
      for pid, u in pairs(running) do
        local code = hb.proc.wait(pid, true)
        if code then
          running[pid], nrun, finished, left = nil, nrun - 1, true, left - 1
          done = done + 1
          local ok = code == 0 and (u.rate and exists(rate_part(u.t.cell, u.t.seed, u.lr) .. ".json")
            or (not u.rate and exists(cell_path(u.t.cell, u.t.seed))))
          if ok then
            u.state = "done"
            if u.rate then
              local r = read_record(rate_part(u.t.cell, u.t.seed, u.lr) .. ".json", true)
              io.stderr:write(string.format("[%2d/%d] %-30s %5.0fs  mqar %.3f\n", done, #units, u.name, r.seconds or 0, r.accuracy or 0))
            else
              progress(done, #units, u.t.cell, u.t.seed, read_record(cell_path(u.t.cell, u.t.seed)), "trained")
            end
          elseif code == 75 then
            u.state = "skipped" -- another process trains it; its dependants are left to a later run
            io.stderr:write(string.format("[%2d/%d] %-30s skipped: being trained by another process (%s)\n", done, #units, u.name, u.log))
          else
            u.state = "failed"
            failed[#failed + 1] = string.format("%s (exit %d; log %s)", u.name, code, u.log)
            io.stderr:write(string.format("[%2d/%d] %-30s FAILED, exit %d (log %s)\n", done, #units, u.name, code, u.log))
            if code == 130 then -- interrupted: stop the others (they save checkpoints on SIGINT) and stop
              for p in pairs(running) do hb.proc.kill(p, 2) end
              for p in pairs(running) do hb.proc.wait(p) end
              hb.user_error("grid: interrupted; the same command resumes")
            end
          end
        end
      end
      if not finished then hb.sleep(0.05) end
    end
  end
  for _, seed in ipairs(seeds) do
    for _, cell in ipairs(cells) do if primary_of[cell.name] then write_copy(cell, seed) end end
  end
  if #failed > 0 then
    hb.user_error("grid: " .. #failed .. " cell-seed(s) failed: " .. table.concat(failed, "; "))
  end
end

-- every finished cell-seed's record (one per cell and seed), in grid order
local function read_cells()
  local results = {}
  for _, cell in ipairs(cells) do
    for _, seed in ipairs(seeds) do
      local path = cell_path(cell, seed)
      local old = not exists(path) and legacy_record(cell, seed)
      if exists(path) then results[#results + 1] = read_record(path)
      elseif old then results[#results + 1] = old
      else io.stderr:write("no result for " .. cell_file(cell, seed) .. " (" .. path .. ")\n") end
    end
  end
  if #results == 0 then hb.user_error("no cell results in " .. out .. "/cells/") end
  return results
end

local tstart = hb.now()
if cfg.grid.only ~= "" then
  -- a --jobs child: one cell-seed, no report
  for _, cell in ipairs(cells) do
    for _, seed in ipairs(seeds) do
      if cell_file(cell, seed) == cfg.grid.only then
        if primary_of[cell.name] then hb.user_error("grid.only: " .. cfg.grid.only .. " shares its stack with " .. primary_of[cell.name].name) end
        hb.data.mkdir(out .. "/cells") -- a grid.only run of its own (not a --jobs child) may be the first in out
        if cfg.grid.only_lr > 0 then
          -- one MQAR rate of the cell-seed (a --jobs child of a grid with mqar.lrs)
          if #mq.lrs == 0 then hb.user_error("grid.only_lr needs mqar.lrs (a learning-rate sweep)") end
          local r, holder = mqar_rate(cell, seed, cfg.grid.only_lr)
          if not r then io.stderr:write(cfg.grid.only .. " lr " .. cfg.grid.only_lr .. ": being trained by another process (" .. holder .. ")\n"); os.exit(75) end
          io.stderr:write(string.format("%s lr %g: mqar %.3f\n", cfg.grid.only, cfg.grid.only_lr, r.accuracy))
          os.exit(0)
        end
        local r, how, holder = run_cell(cell, seed)
        if not r then io.stderr:write(cfg.grid.only .. ": being trained by another process (" .. holder .. ")\n"); os.exit(75) end
        progress(1, 1, cell, seed, r, how)
        os.exit(0)
      end
    end
  end
  hb.user_error("grid.only: no cell-seed '" .. cfg.grid.only .. "' in this grid (names are <cell>__s<seed>, e.g. " ..
    cell_file(cells[1], seeds[1]) .. ")")
end
if not cfg.grid.plot_only then
  hb.data.mkdir(out .. "/cells")   -- no shell: out may hold any character
  -- records already in --out must have been trained with these settings: checked before config.yaml is rewritten
  for _, cell in ipairs(cells) do
    for _, seed in ipairs(seeds) do
      if exists(cell_path(cell, seed)) then read_record(cell_path(cell, seed)) end
      for _, lr in ipairs(mq.lrs) do
        if exists(rate_part(cell, seed, lr) .. ".json") then read_record(rate_part(cell, seed, lr) .. ".json", true) end
      end
    end
  end
  hb.config.save(out .. "/config.yaml", cfg, "paper grid")
  train_grid()
end
local results = read_cells()

-- ---- outputs -------------------------------------------------------------------------------------------
-- per-kv MQAR accuracies: one column per test key-value count found in the records (mqar_kv4, ...)
local S = hb.stats
local kv_cols = {}
do
  local seen = {}
  for _, r in ipairs(results) do
    for k in pairs(r.mqar_by_kv or {}) do
      local n = tonumber(k:match("^kv(%d+)$"))
      if n and not seen[n] then seen[n] = true; kv_cols[#kv_cols + 1] = n end
    end
  end
  table.sort(kv_cols)
end
local function num(v) if type(v) == "number" and v == v then return v end return nil end
local function metric_of(r, m)
  local n = m:match("^mqar_kv(%d+)$")
  if n then return num(r.mqar_by_kv and r.mqar_by_kv["kv" .. n]) end
  return num(r[m])
end
local metrics = { "lm_val_loss_init", "lm_val_loss", "lm_val_bpb", "mqar_acc" }
for _, n in ipairs(kv_cols) do metrics[#metrics + 1] = "mqar_kv" .. n end
metrics[#metrics + 1] = "mqar_train_loss_last"

-- one aggregate per cell (grid order): its first record's fixed fields, and each metric over its seeds
local agg, agg_by = {}, {}
for _, r in ipairs(results) do
  local a = agg_by[r.name]
  if not a then a = { r = r, seeds = {}, per = {}, vals = {}, secs = {} }; agg_by[r.name] = a; agg[#agg + 1] = a end
  a.seeds[#a.seeds + 1] = r.seed == nil and "-" or tostring(r.seed)
  for _, m in ipairs(metrics) do
    local v = metric_of(r, m)
    a.per[m] = a.per[m] or {}
    a.per[m][#a.seeds] = v
    if v then a.vals[m] = a.vals[m] or {}; table.insert(a.vals[m], v) end
  end
  if not r.same_as and num(r.seconds) then a.secs[#a.secs + 1] = r.seconds end
end
local function ci_of(a, m) local v = a.vals[m]; return v and S.ci(v, 0.95) or nil end
local function per_seed(a, m, fmt)
  local t = {}
  for i = 1, #a.seeds do local v = a.per[m] and a.per[m][i]; t[i] = v and string.format(fmt, v) or "-" end
  return t
end

local cols = { "name", "mixer", "ratio", "attn_layers", "attn_share", "params", "intermediate_size", "budget_matched",
               "state_bytes", "kv_bytes_at_T", "n_seeds", "seeds" }
for _, m in ipairs(metrics) do cols[#cols + 1] = m; cols[#cols + 1] = m .. "_ci95"; cols[#cols + 1] = m .. "_per_seed" end
for _, c in ipairs { "seconds_mean", "layers", "same_as" } do cols[#cols + 1] = c end
local function cv(v)
  if v == nil or v == null then return "" end
  if math.type(v) == "float" then return string.format("%.6g", v) end
  return tostring(v)
end
local csv = { table.concat(cols, ",") }
for _, a in ipairs(agg) do
  local r, row = a.r, {}
  for _, c in ipairs { "name", "mixer", "ratio", "attn_layers", "attn_share", "params", "intermediate_size", "budget_matched",
                       "state_bytes", "kv_bytes_at_T" } do row[#row + 1] = cv(r[c]) end
  row[#row + 1] = tostring(#a.seeds)
  row[#row + 1] = table.concat(a.seeds, ";")
  for _, m in ipairs(metrics) do
    local ci = ci_of(a, m)
    row[#row + 1] = ci and cv(ci.mean) or ""
    row[#row + 1] = ci and ci.half and cv(ci.half) or ""
    row[#row + 1] = table.concat(per_seed(a, m, "%.6g"), ";")
  end
  row[#row + 1] = #a.secs > 0 and cv(S.mean(a.secs)) or ""
  row[#row + 1] = cv(r.layers)
  row[#row + 1] = cv(r.same_as)
  csv[#csv + 1] = table.concat(row, ",")
end
hb.config.write_text(out .. "/grid.csv", table.concat(csv, "\n") .. "\n")
-- the long form: one row per cell and seed
do
  local lcols = { "name", "seed", "mixer", "ratio", "attn_share", "params" }
  for _, m in ipairs(metrics) do lcols[#lcols + 1] = m end
  for _, c in ipairs { "mqar_lr", "seconds", "threads", "same_as" } do lcols[#lcols + 1] = c end
  local lines = { table.concat(lcols, ",") }
  for _, r in ipairs(results) do
    local row = {}
    for i, c in ipairs(lcols) do
      if c:match("^mqar_kv%d+$") then row[i] = cv(metric_of(r, c)) else row[i] = cv(r[c]) end
    end
    lines[#lines + 1] = table.concat(row, ",")
  end
  hb.config.write_text(out .. "/grid_seeds.csv", table.concat(lines, "\n") .. "\n")
end

local function ratio_label(r) return r == -1 and "Transformer" or (r == 0 and "pure" or (r .. ":1")) end
local function f(v, fmt) return v and v ~= null and string.format(fmt, v) or "-" end
local function pm(ci, fmt)
  if not ci then return "-" end
  if not ci.half then return string.format(fmt, ci.mean) end
  return string.format(fmt .. " ± " .. fmt, ci.mean, ci.half)
end
local nmin, nmax = math.huge, 0
for _, a in ipairs(agg) do nmin, nmax = math.min(nmin, #a.seeds), math.max(nmax, #a.seeds) end
local head = { "mixer", "ratio", "attn layers", "params", "state+KV bytes @T", "seeds", "LM val loss", "LM val bpb", "MQAR acc" }
for _, n in ipairs(kv_cols) do head[#head + 1] = "MQAR " .. n .. " kv" end
head[#head + 1] = "layers"
local md = { "# " .. cfg.name, "",
  string.format("Every cell trained with %s seed(s) (%s); values are the mean ± the half-width of the 95%% Student-t " ..
    "interval of the mean over seeds (t_{.975, n−1}·sd/√n); a single seed shows the value alone. Per-seed values: " ..
    "the table after this one, grid.csv (*_per_seed) and grid_seeds.csv.", nmin == nmax and tostring(nmin) or (nmin .. "–" .. nmax),
    table.concat((function() local t = {} for i, s in ipairs(seeds) do t[i] = tostring(s) end return t end)(), ", ")), "",
  "| " .. table.concat(head, " | ") .. " |", "|" .. string.rep("---|", #head) }
for _, a in ipairs(agg) do
  local r = a.r
  local row = { r.mixer, ratio_label(r.ratio), tostring(r.attn_layers or "-"),
    f(r.params and r.params / 1e6, "%.3fM") .. (r.budget_matched == false and "*" or ""),
    r.state_bytes and tostring(r.state_bytes + (r.kv_bytes_at_T or 0)) or "-", tostring(#a.seeds),
    pm(ci_of(a, "lm_val_loss"), "%.4f"), pm(ci_of(a, "lm_val_bpb"), "%.4f"), pm(ci_of(a, "mqar_acc"), "%.3f") }
  for _, n in ipairs(kv_cols) do row[#row + 1] = pm(ci_of(a, "mqar_kv" .. n), "%.3f") end
  row[#row + 1] = (r.layers or "-") .. (r.same_as and (" (= " .. r.same_as .. ")") or "")
  md[#md + 1] = "| " .. table.concat(row, " | ") .. " |"
end
md[#md + 1] = ""
md[#md + 1] = "LM val loss: nats per token on the validation tokens; bpb: bits per byte; MQAR acc: accuracy over all test " ..
  "examples, then per key-value count. A row marked (= name) has the same layer stack as that cell and shares its training. " ..
  "params marked * are not matched to the budget (Mamba-2 blocks have no MLP whose width could be adjusted)."
md[#md + 1] = ""
md[#md + 1] = "## Per seed"
md[#md + 1] = ""
md[#md + 1] = "| cell | seeds | LM val bpb per seed | MQAR acc per seed |"
md[#md + 1] = "|---|---|---|---|"
for _, a in ipairs(agg) do
  if not a.r.same_as then
    md[#md + 1] = string.format("| %s | %s | %s | %s |", a.r.name, table.concat(a.seeds, ", "),
      table.concat(per_seed(a, "lm_val_bpb", "%.4f"), ", "), table.concat(per_seed(a, "mqar_acc", "%.3f"), ", "))
  end
end

-- placement: which attention layers each ratio gives at this depth, and which cells coincide
md[#md + 1] = ""
md[#md + 1] = string.format("## Placement at %d layers", L)
md[#md + 1] = ""
md[#md + 1] = "hb.schedule.ratio(r): attention at the 0-based layers i with i % (r+1) == r (the last layer of each block of " ..
  "r+1); a ratio with r+1 > depth gives no attention layer, and its cells are the pure models (trained once, same_as). " ..
  "At 24 layers (`--set model.num_hidden_layers=24`) 24:1 still gives none (it needs 25), 12:1 gives layer 12."
md[#md + 1] = ""
md[#md + 1] = "| ratio | attention layers (0-based) | attention share | coincides with |"
md[#md + 1] = "|---|---|---|---|"
local pure_ratio_cells = {}
for _, r in ipairs(cfg.grid.ratios) do
  local al = attn_layers(r)
  local same = {}
  if r > 0 and #al == 0 then same[1] = "pure" end
  for _, r2 in ipairs(cfg.grid.ratios) do
    if r2 ~= r and r2 > 0 and r > 0 and table.concat(attn_layers(r2), ",") == table.concat(al, ",") then same[#same + 1] = r2 .. ":1" end
  end
  md[#md + 1] = string.format("| %s | %s | %.3f | %s |", ratio_label(r), #al > 0 and table.concat(al, ", ") or "none",
    #al / L, #same > 0 and table.concat(same, ", ") or "-")
  local _ = pure_ratio_cells
end

-- the paper's findings, each by a stated test (hb.stats.findings; docs/reproduction.md explains them)
local F = S.findings(results, { B = 2000, seed = 0 })
md[#md + 1] = ""
md[#md + 1] = "## Findings"
md[#md + 1] = ""
for _, l in ipairs(S.findings_markdown(F)) do md[#md + 1] = l end
md[#md + 1] = ""
local limits = {}
if F.seeds_min < 3 then
  limits[#limits + 1] = string.format("only %d seed(s) per cell: the intervals are wide (t_{.975,%d} = %.2f) or absent, so " ..
    "most verdicts can only be 'undecided'", F.seeds_min, math.max(1, F.seeds_min - 1), S.t_quantile(0.975, math.max(1, F.seeds_min - 1)))
end
local budget_parts = {}
if task_on.lm then budget_parts[#budget_parts + 1] = string.format("%d LM steps × %d × %d tokens", cfg.lm.steps, cfg.lm.batch_size, cfg.lm.seq_len) end
if task_on.mqar then budget_parts[#budget_parts + 1] = string.format("%d MQAR steps", cfg.mqar.steps) end
limits[#limits + 1] = string.format("the scale: width %d, %d layers, ~%s parameters, %s per cell — " ..
  "far below the paper's 340M–1.3B models; a finding that holds or fails here says nothing about that scale",
  d, L, agg[1] and agg[1].r.params and string.format("%.2fM", agg[1].r.params / 1e6) or "?", table.concat(budget_parts, " and "))
if not task_on.mqar then
  limits[#limits + 1] = "no recall task (grid.tasks has no mqar): findings 3 and 4 and finding 1 on recall are not tested; the LM " ..
    "task uses one learning rate for every cell, so an LM cell held back by a poor learning rate is not told apart from a weaker mixer"
elseif #cfg.mqar.lrs > 1 then
  local l = {}
  for i, lr in ipairs(cfg.mqar.lrs) do l[i] = string.format("%g", lr) end
  limits[#limits + 1] = (cfg.mqar.lr_select == "first_seed"
    and ("MQAR keeps the best of the learning rates {" .. table.concat(l, ", ") .. "} on each cell's first seed (chosen on the " ..
      "test accuracy, as Zoology reports), and the cell's other seeds train at that rate only (mqar.lr_select = first_seed; " ..
      "grid_seeds.csv's mqar_lr): the first seed's value is a best of " .. #l .. ", the others' are not")
    or ("MQAR keeps each cell-seed's best of the learning rates {" .. table.concat(l, ", ") .. "} (chosen on the " ..
      "test accuracy, as Zoology reports; grid_seeds.csv's mqar_lr)")) ..
    "; the LM task uses one learning rate for every cell, so an LM cell held back by a poor learning rate is not told apart from a weaker mixer"
else
  limits[#limits + 1] = "seeds vary the initialisation, the batch order and the MQAR data, not the hyper-parameters: no learning-rate " ..
    "sweep per cell (mqar.lrs), so a mixer held back by a poor learning rate is not told apart from a weaker mixer"
end
local f3_two = false
for _, r in ipairs(F.f3 or {}) do if r.diff then f3_two = true end end
if f3_two then
  limits[#limits + 1] = "finding 3 is tested on two distinct layer stacks per mixer (pure and one hybrid at this depth) as the " ..
    "difference in recall: it says whether recall rises with attention, not whether it saturates"
end
if #(F.f3 or {}) == 0 and task_on.mqar then
  limits[#limits + 1] = "finding 3 (recall rises with the attention share) is not tested: it needs ≥ 3 distinct layer stacks " ..
    "per mixer (pure and two ratios that give different attention layers at this depth)"
end
local tr = F.transformer_recall
if tr and tr.mean < 0.95 then
  limits[#limits + 1] = string.format("the Transformer reaches only %.3f MQAR accuracy: attention itself is the bottleneck of this " ..
    "protocol, so finding 4 (hybrids recover the Transformer's recall) compares against an under-trained reference", tr.mean)
end
md[#md + 1] = "What this grid cannot decide: " .. table.concat(limits, "; ") .. "."
md[#md + 1] = ""
if cfg.grid.plot_only then
  md[#md + 1] = "Rewritten from cells/*.json (grid.plot_only); the run's configuration is config.yaml."
else
  md[#md + 1] = string.format("Grid wall time (this invocation): %.0f s, %d job(s). Config: %s/config.yaml.", hb.now() - tstart,
    cfg.grid.jobs, out)
end
hb.config.write_text(out .. "/grid.md", table.concat(md, "\n") .. "\n")

-- ---- plots -----------------------------------------------------------------------------------------------
-- One point per mixer and layer stack: cells that share a stack (same_as) are one point labelled with all
-- their ratios; several records of one cell (seeds) are one point with an error bar (the 95% t-interval of the mean).
local palette = { hgrn = "#1f77b4", retnet = "#ff7f0e", gla = "#2ca02c", hgrn2 = "#d62728", delta_net = "#9467bd",
                  gated_deltanet = "#8c564b", kda = "#e377c2", gated_deltaproduct = "#7f7f7f", mamba2 = "#bcbd22",
                  rwkv7 = "#17becf", transformer = "#000000" }
local order = { "hgrn", "retnet", "gla", "hgrn2", "delta_net", "gated_deltanet", "kda", "gated_deltaproduct", "mamba2", "rwkv7",
                "transformer" }

local function grouped(field)
  local groups, list = {}, {}
  for _, r in ipairs(results) do
    local v = r[field]
    if v ~= nil and v ~= null and r.attn_share then
      local key = r.mixer .. "|" .. (r.layers or ratio_label(r.ratio))
      local g = groups[key]
      if not g then
        g = { mixer = r.mixer, share = r.attn_share, bytes = (r.state_bytes or 0) + (r.kv_bytes_at_T or 0),
              labels = {}, ys = {}, ratios = {} }
        groups[key] = g
        list[#list + 1] = g
      end
      if not g.ratios[r.ratio] then
        g.ratios[r.ratio] = true
        g.labels[#g.labels + 1] = r.ratio
      end
      if not r.same_as then g.ys[#g.ys + 1] = v end
    end
  end
  for _, g in ipairs(list) do
    table.sort(g.labels, function(a, b) return a > b end)
    local names = {}
    for i, x in ipairs(g.labels) do names[i] = ratio_label(x) end
    g.label = table.concat(names, "=")
    if #g.ys == 0 then g.y = nil elseif #g.ys == 1 then g.y = g.ys[1] else g.y = g.ys end
  end
  return list
end

local function series_of(field, xfield, labelled)
  local by = {}
  for _, g in ipairs(grouped(field)) do
    if g.y then
      by[g.mixer] = by[g.mixer] or {}
      table.insert(by[g.mixer], { g[xfield], g.y, label = labelled and g.label or nil })
    end
  end
  local series = {}
  for _, mixer in ipairs(order) do
    local pts = by[mixer]
    if pts then
      table.sort(pts, function(a, b) return a[1] < b[1] end)
      series[#series + 1] = { name = mixer == "transformer" and "Transformer" or mixer, color = palette[mixer], points = pts,
                              width = labelled and 1.2 or 2 }
    end
  end
  return series
end

-- the attention-share axis: the hybrids' range, then (after a break) the Transformer at 1.0
local function share_segments()
  local hi, tr = 0, false
  for _, r in ipairs(results) do
    if r.mixer == "transformer" then tr = true elseif r.attn_share then hi = math.max(hi, r.attn_share) end
  end
  local pad = math.max(0.02, hi * 0.08)
  if tr and hi < 0.6 then return { { -pad, hi + pad, 0.82 }, { 1 - 0.04, 1 + 0.04, 0.18 } } end
  return { { -pad, 1 + pad, 1 } }
end

local plots = {
  { "recall_vs_attention", { title = "MQAR accuracy vs attention share", xlabel = "attention layers / all layers (axis broken before the Transformer)",
    ylabel = "MQAR accuracy", series = series_of("mqar_acc", "share", false), xsegments = share_segments(), ymin = 0, ymax = 1,
    xformat = "percent", errorbars = "ci95" } },
  { "lm_vs_ratio", { title = "Validation bits per byte vs attention share", xlabel = "attention layers / all layers (axis broken before the Transformer)",
    ylabel = "bits per byte (lower is better)", series = series_of("lm_val_bpb", "share", false), xsegments = share_segments(),
    xformat = "percent", errorbars = "ci95" } },
  { "recall_vs_state", { title = "Recall vs decode memory (recurrent state + KV cache at T)", xlabel = "bytes per sequence (log scale)",
    ylabel = "MQAR accuracy", series = series_of("mqar_acc", "bytes", true), logx = true, ymin = 0, ymax = 1, xformat = "bytes", errorbars = "ci95" } },
}
local png = hb.plot.have_rsvg()
local written = {}
for _, pl in ipairs(plots) do
  local has_points = false
  for _, s in ipairs(pl[2].series) do if #s.points > 0 then has_points = true end end
  if has_points then
    if pl[2].logx then -- a state of 0 bytes cannot sit on a log axis
      for _, s in ipairs(pl[2].series) do for _, p in ipairs(s.points) do p[1] = math.max(1, p[1]) end end
    end
    local svg = hb.plot.svg { panels = { pl[2] }, width = 760, height = 440 }
    hb.plot.save(out .. "/" .. pl[1] .. ".svg", svg)
    written[#written + 1] = pl[1] .. ".svg"
    if png then hb.plot.save(out .. "/" .. pl[1] .. ".png", svg); written[#written + 1] = pl[1] .. ".png" end
  end
end
print(string.format("grid: %d cells × %d seed(s) → %s/grid.csv, grid_seeds.csv, grid.md, %s (%.0f s)", #agg, #seeds, out, table.concat(written, ", "), hb.now() - tstart))
