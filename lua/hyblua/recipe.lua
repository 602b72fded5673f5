-- hyblua/recipe.lua — the shared driver behind recipes/*.lua: one function that turns a table of
-- defaults plus the command line into a full language-modelling run.
--
--   hb.recipe.lm(defaults, arg) → results
--
-- It parses `--config file.yaml`, `--set key=value`, `--size small|medium|large` and `--tiny` (see
-- hb.config.parse_args), builds the model (model_type + `ratio` r → hb.schedule.ratio(r) attention
-- placement; ratio 0 = pure), opens the token shards (data.dir, or the bundled sample prepared on first
-- use), trains with hb.train (checkpoints, resume, metrics log), then reports validation loss and
-- bits-per-byte, a quick recall probe, parameter/state accounting, and saves an fla-loadable model,
-- the effective config (config.yaml) and results.json in the run directory.
local hb = require "hyblua.binding"
do
  local R = {}

  local function exists(p) local f = io.open(p, "rb"); if f then f:close(); return true end return false end

  -- size presets: multiply into model/train settings (hidden size, depth, steps, batch)
  R.sizes = {
    tiny = { hidden_size = 32, num_hidden_layers = 4, steps = 8, batch_size = 2, seq_len = 64, val_tokens = 2048, probe = 4 },
    small = {},
    medium = { hidden_size = 256, num_hidden_layers = 8, steps = 2000, batch_size = 16, seq_len = 512 },
    large = { hidden_size = 512, num_hidden_layers = 12, steps = 5000, batch_size = 16, seq_len = 1024 },
  }

  -- the common defaults every LM recipe starts from
  function R.defaults(over)
    local d = {
      name = "run",
      size = "small",
      tiny = false,
      seed = 0,
      threads = 0,
      out = "",
      ratio = 3,
      attn_heads = 4,
      model = {
        model_type = "gated_deltanet", hidden_size = 128, num_hidden_layers = 8, num_heads = 2, head_dim = 48,
        expand_v = 2.0, expand_ratio = 32, expand_k = 0.5, hidden_ratio = hb.io.null, vocab_size = 256,
        num_kv_heads = hb.io.null, use_short_conv = hb.io.null,
      },
      data = { dir = "data/sotu", sample = "tests/data/sample", cache = "runs/cache/sample" },
      train = {
        steps = 400, batch_size = 16, seq_len = 256, grad_accum = 1, lr = 3e-3, min_lr = 3e-4, warmup = 50,
        schedule = "cosine", weight_decay = 0.1, clip = 1.0, eval_every = 200, save_every = 200, keep = 2,
        mode = "chunk", resume = true, overwrite = false, data_parallel = false, bucket_mb = 25.0, check_every = 100,
        matmul_precision = "fp32", -- "bf16": mixed-precision projections/MLP/LM head (hb.set_matmul_precision)
      },
      eval = { val_tokens = 32768, probe = 64 },
    }
    local function merge(dst, src)
      for k, v in pairs(src or {}) do
        if type(v) == "table" and type(dst[k]) == "table" and v ~= hb.io.null then merge(dst[k], v) else dst[k] = v end
      end
    end
    merge(d, over)
    return d
  end

  -- model config table from the recipe config
  function R.model_config(cfg)
    local mc = {}
    local null = hb.io.null
    for k, v in pairs(cfg.model) do if v ~= null then mc[k] = v end end
    local mt = mc.model_type
    -- keep only the keys this model type knows (the recipe defaults list a superset)
    local known = require("hyblua.config_fla").types[mt]
    if not known then error("recipe: unknown model_type '" .. tostring(mt) .. "'", 0) end
    local common = { model_type = 1, hidden_size = 1, num_hidden_layers = 1, vocab_size = 1, hidden_ratio = 1,
                     intermediate_size = 1, norm_eps = 1, tie_word_embeddings = 1, initializer_range = 1 }
    for k in pairs(mc) do if not common[k] and known[k] == nil then mc[k] = nil end end
    if mt == "hgrn2" then mc.num_heads = nil end
    if mt ~= "transformer" and cfg.ratio and cfg.ratio > 0 then
      mc.attn = hb.schedule.ratio(cfg.ratio, { num_heads = cfg.attn_heads })
    end
    return mc
  end

  -- token shards: data.dir if prepared (make data), else the bundled sample prepared once into data.cache
  function R.open_data(cfg)
    local dir = cfg.data.dir
    if not exists(dir .. "/train.bin") then
      local sample = cfg.data.sample
      dir = cfg.data.cache
      if not exists(dir .. "/train.bin") then
        if not exists(sample) and not exists(sample .. "/README.md") then
          error(string.format("data: %s/train.bin not found and no bundled sample at %s; run `make data`", cfg.data.dir, sample), 0)
        end
        io.stderr:write(string.format("data: %s not prepared (run `make data` for the full corpus); using the bundled sample %s\n",
          cfg.data.dir, sample))
        hb.data.prepare { input = sample, out = dir, tokenizer = hb.tokenizer.byte(), val_fraction = 0.1, seed = 1 }
      end
    end
    local meta = hb.io.read_json(dir .. "/meta.json")
    hb.data.check_vocab(meta, cfg.model.vocab_size)
    return hb.data.open(dir .. "/train.bin"), hb.data.open(dir .. "/val.bin"), meta, dir
  end

  -- copy/induction recall probe: a random segment of n tokens, then the same segment again; accuracy of
  -- next-token predictions over the second copy (a model that can recall its context scores high)
  function R.recall_probe(model, V, n, count, seed)
    local rows = {}
    local x = seed or 12345
    local function rnd() x = (x * 1103515245 + 12345) % 2147483648; return x end
    for b = 1, count do
      local seg = {}
      for i = 1, n do seg[i] = 32 + rnd() % math.min(V - 32, 95) end -- printable bytes for byte vocabularies
      local row = {}
      for i = 1, n do row[i] = seg[i] end
      for i = 1, n do row[n + i] = seg[i] end
      rows[b] = row
    end
    local ids = hb.tensor(rows, "int64")
    local logits = hb.no_grad(function() return model:forward(ids) end)
    local pred = logits:narrow(2, n, n):argmax(3)
    local hit, tot = 0, 0
    for b = 1, count do
      for i = 1, n - 1 do
        tot = tot + 1
        if pred:get(b, i + 1) == rows[b][n + i + 1] then hit = hit + 1 end
      end
    end
    return hit / tot
  end

  -- apply a size preset to a defaults table (before the command line, so --set/--config still win)
  local function apply_preset(d, preset)
    local function apply(tbl, key, v) if v ~= nil then tbl[key] = v end end
    apply(d.model, "hidden_size", preset.hidden_size)
    apply(d.model, "num_hidden_layers", preset.num_hidden_layers)
    apply(d.train, "steps", preset.steps)
    apply(d.train, "batch_size", preset.batch_size)
    apply(d.train, "seq_len", preset.seq_len)
    apply(d.eval, "val_tokens", preset.val_tokens)
    apply(d.eval, "probe", preset.probe)
  end

  function R.lm(defaults, args)
    args = args or {}
    -- --tiny / --size pick a preset of the defaults; explicit --set/--config values override it
    local size, tiny = defaults.size, false
    for i = 1, #args do
      local a = args[i]
      if a == "--tiny" or a == "--tiny=true" then tiny = true end
      size = a:match("^%-%-size=(.+)$") or (a == "--size" and args[i + 1]) or size
    end
    local preset = tiny and R.sizes.tiny or R.sizes[size]
    if not preset then error("recipe: unknown size '" .. tostring(size) .. "' (tiny, small, medium, large)", 0) end
    apply_preset(defaults, preset)
    if tiny then defaults.model.head_dim = math.min(defaults.model.head_dim, 16); defaults.model.expand_ratio = 16; defaults.attn_heads = 2 end
    local cfg = hb.config.parse_args(args, defaults)
    -- data parallel (docs/distributed.md): train.batch_size is the global batch, split across ranks
    local dp
    if cfg.train.data_parallel then
      dp = hb.dist.init()
      hb.dist.check_same(dp, "the configurations (command line, --config files)", cfg)
      hb.dist.rows(cfg.train.batch_size, dp)
      if not (cfg.threads and cfg.threads > 0) then hb.set_num_threads(hb.dist.default_threads(dp)) end
    elseif hb.dist.launched_size() > 1 then
      error(string.format("recipe: started as one of %d ranks but train.data_parallel is false, so every rank would " ..
        "train the same model into the same directory; add --set train.data_parallel=true", hb.dist.launched_size()), 0)
    end
    local root = not dp or dp.rank == 0
    if cfg.threads and cfg.threads > 0 then hb.set_num_threads(cfg.threads) end
    local out = (cfg.out ~= "" and cfg.out) or ("runs/" .. cfg.name .. (cfg.tiny and "-tiny" or (cfg.size ~= "small" and "-" .. cfg.size or "")))
    -- config.yaml is written once hb.train has checked the run folder (on_start), so that a refused resume
    -- or an overwrite never clobbers the earlier run's copy
    local function save_config() hb.config.save(out .. "/config.yaml", cfg, "effective configuration of " .. cfg.name) end

    local t0 = hb.now()
    local train_shard, val_shard, meta
    if not dp then
      train_shard, val_shard, meta = R.open_data(cfg)
    elseif root then -- rank 0 prepares the sample cache if needed while the others wait
      train_shard, val_shard, meta = R.open_data(cfg)
      hb.mpi.barrier()
    else
      hb.mpi.barrier()
      train_shard, val_shard, meta = R.open_data(cfg)
    end
    hb.manual_seed(cfg.seed)
    local model = hb.models.new(R.model_config(cfg), { seed = cfg.seed })
    model:set_mode(cfg.train.mode)
    local B, T = cfg.train.batch_size, cfg.train.seq_len
    if root then
      io.stderr:write(string.format("%s: %s %s, %.2fM parameters, layers %s, %d steps of %dx%d tokens%s → %s\n",
        cfg.name, model.config.model_type, cfg.ratio > 0 and (cfg.ratio .. ":1") or "pure", model:num_parameters() / 1e6,
        hb.schedule.describe(model.config), cfg.train.steps, B, T,
        dp and string.format(" over %d ranks × %d threads", dp.size, hb.get_num_threads()) or "", out))
    end
    local bpt = (meta.val_bytes and meta.val_tokens and meta.val_tokens > 0) and meta.val_bytes / meta.val_tokens or 1
    local val_tokens = math.min(cfg.eval.val_tokens, val_shard:len() - 1)
    local function val_loss(m)
      return hb.eval.lm(m, val_shard, { T = T, max_tokens = val_tokens, bytes_per_token = bpt }).loss
    end
    local tr = hb.train {
      model = model, name = cfg.name,
      batch = function(k) return train_shard:batch(B, T, cfg.seed, k) end,
      steps = cfg.train.steps, grad_accum = cfg.train.grad_accum, lr = cfg.train.lr, min_lr = cfg.train.min_lr,
      warmup = math.min(cfg.train.warmup, cfg.train.steps), schedule = cfg.train.schedule,
      weight_decay = cfg.train.weight_decay, clip = cfg.train.clip, val = val_loss,
      eval_every = cfg.train.eval_every, save_every = cfg.train.save_every, keep = cfg.train.keep,
      out = out, log = out .. "/metrics.jsonl", resume = cfg.train.resume, overwrite = cfg.train.overwrite,
      on_start = save_config, seed = cfg.seed,
      data_parallel = dp ~= nil, bucket_mb = cfg.train.bucket_mb, check_every = cfg.train.check_every,
      matmul_precision = cfg.train.matmul_precision,
    }
    if tr.interrupted then return { interrupted = true, checkpoint = tr.checkpoint } end
    -- evaluation, the final model and results are rank 0's; the other ranks are done
    if not root then return { rank = dp.rank, steps = cfg.train.steps, losses = tr.losses }, cfg end
    local ev = hb.eval.lm(model, val_shard, { T = T, max_tokens = val_tokens, bytes_per_token = bpt })
    local probe = R.recall_probe(model, cfg.model.vocab_size, cfg.eval.probe, 8, cfg.seed + 1)
    local eff = hb.eval.efficiency(model, { N = T })
    model:save_pretrained(out .. "/model")
    local res = {
      name = cfg.name, model_type = model.config.model_type, ratio = cfg.ratio, layers = hb.schedule.describe(model.config),
      params = model:num_parameters(), steps = cfg.train.steps, tokens = (tr.tokens or 0),
      first_val_loss = tr.val[1] and tr.val[1].loss, val_loss = ev.loss, val_ppl = ev.ppl, val_bpb = ev.bpb,
      recall_probe = probe, state_bytes = eff.state_bytes + (eff.conv_state_bytes or 0), kv_bytes_at_T = eff.kv_bytes_at_N,
      wall_seconds = hb.now() - t0, model_dir = out .. "/model",
    }
    hb.io.write_json(out .. "/results.json", res)
    print(string.format("%s: validation loss %.4f, %.3f bits/byte, recall probe %.1f%% (%d steps, %.0f s) — model in %s",
      cfg.name, ev.loss, ev.bpb, 100 * probe, cfg.train.steps, res.wall_seconds, res.model_dir))
    return res, cfg
  end

  return R
end
