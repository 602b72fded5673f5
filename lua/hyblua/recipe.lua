-- hyblua/recipe.lua — the shared driver behind recipes/*.lua: one function that turns a declaration of
-- defaults plus the command line into a full language-modelling run.
--
--   hb.recipe.lm(defaults, arg [, opts]) → results, cfg
--
-- The keys, their defaults, meanings and valid ranges are declared once (R.declaration below, through
-- hb.config.key); `--help` prints them and exits, a typo or an out-of-range value stops the run before
-- anything is written. The command line is read by hb.config.parse_args: `--config file.yaml`,
-- `--set key=value`, `--key value`, and the presets `--tiny` / `--size medium|large`. Precedence:
-- recipe defaults < preset < --config files < --set/--key, so an explicit value always wins over a
-- preset. Then it builds the model (model.* + the attention spec attn.*, placed by `ratio`,
-- `attn.layers` or `attn.every` through hb.schedule), opens the token shards (data.dir, or the bundled
-- sample prepared on first use), trains with hb.train (checkpoints, resume, metrics log), then reports
-- validation loss and bits-per-byte, a quick recall probe, parameter/state accounting, and saves an
-- fla-loadable model, the effective config (config.yaml) and results.json in the run directory.
local hb = require "hyblua.binding"
local config = require "hyblua.config"
local user_error = require("hyblua.errors").user_error
local config_fla = require "hyblua.config_fla"
local registry = require "hyblua.mixers"
do
  local R = {}
  local null = hb.io.null
  local K = config.key

  local function exists(p) local f = io.open(p, "rb"); if f then f:close(); return true end return false end

  -- size presets: they replace recipe defaults (hidden size, depth, steps, batch, ...) before --config
  -- and --set are applied; tiny also narrows the heads (model_adjust)
  R.sizes = {
    tiny = { hidden_size = 32, num_hidden_layers = 4, steps = 8, batch_size = 2, seq_len = 64, val_tokens = 2048, probe = 4 },
    small = {},
    medium = { hidden_size = 256, num_hidden_layers = 8, steps = 2000, batch_size = 16, seq_len = 512 },
    large = { hidden_size = 512, num_hidden_layers = 12, steps = 5000, batch_size = 16, seq_len = 1024 },
  }
  local size_names = { "tiny", "small", "medium", "large" }

  -- ---- value checks for keys whose default is null (such keys take any YAML value) -----------------------
  local function int_or_null(min)
    return function(v)
      if math.type(v) ~= "integer" or v < min then return "must be an integer >= " .. min .. " or null (~)" end
    end
  end
  local function positive_or_null(v)
    if type(v) ~= "number" or not (v > 0) or v == math.huge then return "must be a positive number or null (~)" end
  end
  local function bool_or_null(v)
    if type(v) ~= "boolean" then return "must be true, false or null (~)" end
  end
  local function positive(v) if not (v > 0) or v == math.huge then return "must be a positive number" end end
  local function layer_list(v)
    if type(v) ~= "table" or #v == 0 then return "must be a non-empty list of 0-based layer indices, e.g. [3, 7], or null (~)" end
    for _, i in ipairs(v) do
      if math.type(i) ~= "integer" or i < 0 then return "must be a list of 0-based layer indices (integers >= 0)" end
    end
  end

  -- the model types of the registered mixers (fla's and any a script registered), sorted
  local function model_types() return registry.model_types() end

  -- the declaration of every key of an LM recipe: default, meaning, valid range
  function R.declaration()
    return {
      name = K("run", "the run name; the run directory is runs/<name> (runs/<name>-tiny, runs/<name>-<size>)"),
      size = K("small", "size preset (see Presets below); small is the recipe's own defaults", { choices = size_names }),
      tiny = K(false, "the smallest preset, a smoke test of the whole pipeline (seconds); overrides size"),
      seed = K(0, "seed of the initialisation and of the batches", { min = 0 }),
      threads = K(0, "worker threads (0: HYBLUA_NUM_THREADS or all CPUs)", { min = 0, max = 256 }),
      out = K("", "the run directory (empty: runs/<name>...)"),
      ratio = K(3, "attention placement r:1 — r linear layers, then one attention layer, repeated " ..
        "(hb.schedule.ratio: attention at the 0-based layers i with i % (r+1) == r; depth not a multiple of " ..
        "r+1 leaves the last layers linear); 0 = no attention; attn.layers or attn.every replace it", { min = 0 }),
      attn = {
        layers = K(null, "explicit 0-based attention layers, e.g. [3, 7] (replaces ratio)", { check = layer_list }),
        every = K(null, "attention on every n-th layer: layers n-1, 2n-1, ... (replaces ratio)", { check = int_or_null(1) }),
        num_heads = K(4, "attention heads (a Transformer's heads too)", { min = 1 }),
        num_kv_heads = K(null, "key/value heads for grouped-query attention; must divide num_heads (null: num_heads)",
          { check = int_or_null(1) }),
        window_size = K(null, "sliding-window attention over the last window_size tokens (null, ~: full attention)",
          { check = int_or_null(1) }),
        rope_theta = K(10000.0, "base of the rotary position embedding", { check = positive }),
        qkv_bias = K(false, "biases in the q, k and v projections"),
      },
      model = {
        model_type = K("gated_deltanet", "the mixer of the linear layers (fla model_type); transformer: attention in every layer",
          { choices = model_types() }),
        hidden_size = K(128, "model width", { min = 1 }),
        num_hidden_layers = K(8, "depth", { min = 1 }),
        vocab_size = K(256, "vocabulary size; must match the data (256: bytes)", { min = 1 }),
        num_heads = K(null, "heads of the linear layers (null: fla's default for the model type)", { check = int_or_null(1) }),
        head_dim = K(null, "gated_deltanet: key width per head", { check = int_or_null(1) }),
        expand_k = K(null, "retnet, gla, delta_net: key width / hidden_size", { check = positive_or_null }),
        expand_v = K(null, "retnet, gla, delta_net: value width / hidden_size; gated_deltanet: value / key width per head",
          { check = positive_or_null }),
        expand_ratio = K(null, "hgrn: state width / hidden_size (1 with the lower bound); hgrn2: key width per head",
          { check = positive_or_null }),
        num_kv_heads = K(null, "retnet, gla: key/value heads of the linear layers (null: num_heads)", { check = int_or_null(1) }),
        use_short_conv = K(null, "short causal convolutions in the linear layers (null: fla's default for the type)",
          { check = bool_or_null }),
        hidden_ratio = K(null, "MLP width / hidden_size (null: 4); unused when intermediate_size is set", { check = positive_or_null }),
        intermediate_size = K(null, "MLP width (null: from hidden_ratio)", { check = int_or_null(1) }),
      },
      data = {
        dir = K("data/sotu", "token shards (train.bin, val.bin, meta.json), from `make data`"),
        sample = K("tests/data/sample", "the bundled sample used when data.dir is not prepared"),
        cache = K("runs/cache/sample", "where the sample is prepared (once)"),
      },
      train = {
        steps = K(400, "optimiser steps; raising it for a finished or resumed run trains on to the new count, " ..
          "with the learning-rate schedule recomputed over the new total", { min = 1 }),
        batch_size = K(16, "rows per micro-batch (with data_parallel: the global batch)", { min = 1 }),
        seq_len = K(256, "tokens per row", { min = 1 }),
        grad_accum = K(1, "micro-batches per optimiser step", { min = 1 }),
        lr = K(3e-3, "peak learning rate", { check = positive }),
        min_lr = K(3e-4, "final learning rate of the schedule", { min = 0 }),
        warmup = K(50, "linear warm-up steps (at most steps)", { min = 0 }),
        schedule = K("cosine", "learning-rate schedule after the warm-up", { choices = { "cosine", "wsd", "constant" } }),
        weight_decay = K(0.1, "AdamW weight decay (not on norms, biases, A_log, dt_bias)", { min = 0 }),
        clip = K(1.0, "global gradient-norm clip (0: none)", { min = 0 }),
        eval_every = K(200, "validation period in steps (also after the last step)", { min = 1 }),
        save_every = K(200, "checkpoint period in steps (also after the last step and on Ctrl-C)", { min = 1 }),
        keep = K(2, "checkpoints kept", { min = 1 }),
        mode = K("chunk", "kernels: chunked, or the per-step reference (same results, slower)", { choices = { "chunk", "recurrent" } }),
        resume = K(true, "resume from the newest checkpoint in the run directory"),
        overwrite = K(false, "start afresh even if the run directory holds a run: it is moved aside to " ..
          "<out>.old-<time> first (with resume = false and no overwrite, such a directory is an error)"),
        data_parallel = K(false, "train over MPI ranks (./hyblua-mpi under mpirun; docs/distributed.md)"),
        bucket_mb = K(25.0, "data parallel: all-reduce bucket size in MiB", { check = positive }),
        check_every = K(100, "data parallel: compare the weights across ranks every so many steps", { min = 1 }),
        matmul_precision = K("fp32", "bf16: mixed-precision projections, MLP and LM head", { choices = { "fp32", "bf16" } }),
      },
      eval = {
        val_tokens = K(32768, "validation tokens scored at the end", { min = 1 }),
        probe = K(64, "segment length of the copy/recall probe", { min = 2 }),
      },
    }
  end

  -- keys renamed in 0.2.0, answered with the new name
  local renamed = { attn_heads = "attn.num_heads" }

  -- merge the recipe's table `over` into the declaration `decl` (both trees): a plain value replaces the
  -- default and keeps the meaning, a hb.config.key replaces the declaration. Below the driver's own
  -- sections (model, attn, train, eval, data) only declared keys are accepted; new top-level keys are the
  -- recipe's own (declare them with hb.config.key for --help to explain them).
  local function override(decl, over, path)
    for k, v in pairs(over) do
      local p = path == "" and tostring(k) or path .. "." .. tostring(k)
      if renamed[p] then user_error("hb.recipe.defaults: '" .. p .. "' is now '" .. renamed[p] .. "'", 3) end
      local d = decl[k]
      if d == nil then
        if path ~= "" then
          local known = {}
          for name in pairs(decl) do known[#known + 1] = path .. "." .. name end
          local s = config.suggest(p, known)
          table.sort(known)
          user_error("hb.recipe.defaults: unknown key '" .. p .. "'" ..
            (s and (" (did you mean '" .. s .. "'?)") or (" (keys of '" .. path .. "': " .. table.concat(known, ", ") .. ")")), 3)
        end
        decl[k] = v
      elseif config.is_key(d) then
        if config.is_key(v) then decl[k] = v
        else decl[k] = K(v, d.help, { min = d.min, max = d.max, choices = d.choices, check = d.check }) end
      elseif type(d) == "table" and type(v) == "table" and not config.is_key(v) then
        override(d, v, p)
      else
        decl[k] = v
      end
    end
  end

  -- the defaults every LM recipe starts from, with `over` (the recipe's values) merged in
  function R.defaults(over)
    if over ~= nil and type(over) ~= "table" then user_error("hb.recipe.defaults(over): over must be a table", 2) end
    local decl = R.declaration()
    override(decl, over or {}, "")
    return config.declare(decl)
  end

  -- ---- presets --------------------------------------------------------------------------------------------
  -- apply a size preset to a defaults table (before the command line, so --config and --set win)
  local function apply_preset(d, name)
    local preset = R.sizes[name]
    local function apply(tbl, key, v) if v ~= nil and tbl then tbl[key] = v end end
    apply(d.model, "hidden_size", preset.hidden_size)
    apply(d.model, "num_hidden_layers", preset.num_hidden_layers)
    apply(d.train, "steps", preset.steps)
    apply(d.train, "batch_size", preset.batch_size)
    apply(d.train, "seq_len", preset.seq_len)
    apply(d.eval, "val_tokens", preset.val_tokens)
    apply(d.eval, "probe", preset.probe)
    if name == "tiny" and d.model then
      -- narrow heads for width 32: at most 16 key channels per head, 2 attention heads
      if math.type(d.model.head_dim) == "integer" then d.model.head_dim = math.min(d.model.head_dim, 16) end
      if d.model.model_type == "hgrn2" and type(d.model.expand_ratio) == "number" then
        d.model.expand_ratio = math.min(d.model.expand_ratio, 16)
      end
      if d.attn then d.attn.num_heads = 2 end
    end
  end

  local function preset_text()
    local lines = { "Presets (--tiny, --size NAME) replace these defaults before --config files and --set are applied, " ..
      "so a value given explicitly always wins over a preset:" }
    for _, name in ipairs(size_names) do
      local p, parts = R.sizes[name], {}
      for _, k in ipairs { "hidden_size", "num_hidden_layers", "steps", "batch_size", "seq_len", "val_tokens", "probe" } do
        if p[k] then parts[#parts + 1] = k .. " " .. p[k] end
      end
      if name == "tiny" then parts[#parts + 1] = "head_dim <= 16, hgrn2 expand_ratio <= 16, attn.num_heads 2" end
      lines[#lines + 1] = "  " .. name .. ": " .. (#parts > 0 and table.concat(parts, ", ") or "the recipe's defaults")
    end
    return table.concat(lines, "\n")
  end

  -- hb.recipe.parse(defaults, args [, opts]) → cfg, effective_defaults: the command line read over the
  -- defaults with the chosen preset applied (two passes: the first finds --tiny/--size from any source,
  -- the second reads every value over the preset). opts.adjust(defaults, first_cfg) may change the
  -- defaults from the first pass (hybrid.lua fills in the chosen mixer's shape).
  function R.parse(defaults, args, opts)
    if type(defaults) ~= "table" then user_error("hb.recipe.parse: defaults must be a table (hb.recipe.defaults{...})", 2) end
    opts = opts or {}
    config.check_keys(opts, { "description", "adjust" }, "hb.recipe.lm")
    local popts = { description = opts.description, epilog = preset_text() }
    local first = config.parse_args(args, defaults, popts)
    local d = config.copy(defaults)
    local size = first.tiny and "tiny" or first.size
    if not R.sizes[size] then
      user_error("recipe: unknown size '" .. tostring(size) .. "' (" .. table.concat(size_names, ", ") .. ")")
    end
    apply_preset(d, size)
    if opts.adjust then opts.adjust(d, first) end
    return config.parse_args(args, d, popts), d
  end

  -- ---- the model ------------------------------------------------------------------------------------------
  local common = { model_type = true, hidden_size = true, num_hidden_layers = true, vocab_size = true, hidden_ratio = true,
                   intermediate_size = true, norm_eps = true, tie_word_embeddings = true, initializer_range = true }
  local spec_keys = { "num_heads", "num_kv_heads", "window_size", "rope_theta", "qkv_bias" }

  -- which model types use model key k (for the error message)
  local function types_using(k)
    local out = {}
    for _, t in ipairs(model_types()) do if config_fla.types[t][k] ~= nil then out[#out + 1] = t end end
    return #out > 0 and table.concat(out, ", ") or "none"
  end

  -- the attention placement of a recipe config: schedule (nil for none or a Transformer), its label
  -- ("3:1", "every 2", "layers 3,7", "pure", "all layers") and kind
  function R.placement(cfg, defaults)
    local A = cfg.attn or {}
    local layers, every, r = A.layers, A.every, cfg.ratio or 0
    if layers == nil then layers = null end
    if every == nil then every = null end
    if layers ~= null and every ~= null then user_error("recipe: set attn.layers or attn.every, not both") end
    local explicit_ratio = defaults and r ~= (defaults.ratio or 0) and r ~= 0
    if (layers ~= null or every ~= null) and explicit_ratio then
      user_error(string.format("recipe: ratio %d and attn.%s both place the attention layers; set one of them " ..
        "(ratio 0 with attn.%s)", r, layers ~= null and "layers" or "every", layers ~= null and "layers" or "every"))
    end
    if cfg.model.model_type == "transformer" then
      -- a ratio left at the recipe's default is moot here; one the user gave is an error
      if layers ~= null or every ~= null or explicit_ratio or (not defaults and r > 0) then
        user_error("recipe: model_type transformer has attention in every layer; ratio, attn.layers and attn.every do not apply")
      end
      return nil, "all layers", "transformer"
    end
    local spec = {}
    for _, k in ipairs(spec_keys) do if A[k] ~= nil and A[k] ~= null then spec[k] = A[k] end end
    if layers ~= null then
      return hb.schedule.layers(layers, spec), "layers " .. table.concat(layers, ","), "layers"
    elseif every ~= null then
      return hb.schedule.every(every, spec), "every " .. every, "every"
    elseif r > 0 then
      return hb.schedule.ratio(r, spec), r .. ":1", "ratio"
    end
    return nil, "pure", "pure"
  end

  -- model config table from the recipe config. `defaults` (the recipe's, after the preset) tells keys the
  -- user set from keys the recipe set: a user-set key the model type does not use is an error; a recipe
  -- default for another model type (after --set model.model_type=...) is dropped.
  function R.model_config(cfg, defaults)
    local mt = cfg.model.model_type
    local known = config_fla.types[mt]
    if not known then user_error("recipe: unknown model_type '" .. tostring(mt) .. "' (" .. table.concat(model_types(), ", ") .. ")") end
    local dm = defaults and defaults.model or {}
    local mc = {}
    for k, v in pairs(cfg.model) do
      if v ~= null then
        local applies = common[k] or known[k] ~= nil
        if mt == "transformer" and (k == "num_heads" or k == "num_kv_heads") then applies = false end
        if applies then
          mc[k] = v
        elseif not defaults or dm[k] ~= v then
          if mt == "transformer" and (k == "num_heads" or k == "num_kv_heads") then
            user_error(string.format("recipe: model.%s does not apply to model_type transformer: its heads are attn.%s", k, k))
          end
          user_error(string.format("recipe: model.%s does not apply to model_type %s (it is a key of: %s)", k, mt, types_using(k)))
        end
      end
    end
    local sched, label, kind = R.placement(cfg, defaults)
    if mt == "transformer" then
      for _, k in ipairs(spec_keys) do
        local v = cfg.attn and cfg.attn[k]
        if v ~= nil and v ~= null then mc[k] = v end
      end
    elseif sched then
      mc.attn = sched
    end
    return mc, label, kind
  end

  -- token shards: data.dir if prepared (make data), else the bundled sample prepared once into data.cache
  function R.open_data(cfg)
    local dir = cfg.data.dir
    if not exists(dir .. "/train.bin") then
      local sample = cfg.data.sample
      dir = cfg.data.cache
      if not exists(dir .. "/train.bin") then
        if not exists(sample) and not exists(sample .. "/README.md") then
          user_error(string.format("data: %s/train.bin not found and no bundled sample at %s; run `make data`", cfg.data.dir, sample))
        end
        io.stderr:write(string.format("data: %s not prepared (run `make data` for the full corpus); using the bundled sample %s\n",
          cfg.data.dir, sample))
        hb.data.prepare { input = sample, out = dir, tokenizer = hb.tokenizer.byte(), val_fraction = 0.1, seed = 1 }
      end
    end
    local meta = hb.io.read_json(dir .. "/meta.json")
    local ok, err = pcall(hb.data.check_vocab, meta, cfg.model.vocab_size)
    if not ok then user_error(err) end
    return hb.data.open(dir .. "/train.bin"), hb.data.open(dir .. "/val.bin"), meta, dir
  end

  -- copy/induction recall probe: a random segment of n tokens, then the same segment again; accuracy of
  -- next-token predictions over the second copy (a model that can recall its context scores high)
  function R.recall_probe(model, V, n, count, seed)
    if math.type(n) ~= "integer" or n < 2 then user_error("recall_probe: the segment length n must be an integer >= 2", 2) end
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

  -- a placement that gives no attention layer at this depth is legal (the stack is pure) but rarely meant
  local function warn_no_attention(kind, label, cfg, model)
    if (kind ~= "ratio" and kind ~= "every") or hb.schedule.describe(model.config):find("A", 1, true) then return end
    local L = cfg.model.num_hidden_layers
    local need = kind == "ratio" and cfg.ratio + 1 or cfg.attn.every
    io.stderr:write(string.format("warning: %s gives no attention layer at %d layers (%s): the first attention layer " ..
      "is layer %d, so it needs at least %d layers; the model is pure %s (set attn.layers to place attention yourself)\n",
      label, L, hb.schedule.describe(model.config), need - 1, need, cfg.model.model_type))
  end

  function R.lm(defaults, args, opts)
    args = args or {}
    local cfg, effective = R.parse(defaults, args, opts)
    local mc, label, kind = R.model_config(cfg, effective)
    -- data parallel (docs/distributed.md): train.batch_size is the global batch, split across ranks
    local dp
    if cfg.train.data_parallel then
      dp = hb.dist.init()
      hb.dist.check_same(dp, "the configurations (command line, --config files)", cfg)
      hb.dist.rows(cfg.train.batch_size, dp)
      if not (cfg.threads and cfg.threads > 0) then hb.set_num_threads(hb.dist.default_threads(dp)) end
    elseif hb.dist.launched_size() > 1 then
      user_error(string.format("recipe: started as one of %d ranks but train.data_parallel is false, so every rank would " ..
        "train the same model into the same directory; add --set train.data_parallel=true", hb.dist.launched_size()))
    end
    local root = not dp or dp.rank == 0
    if cfg.threads and cfg.threads > 0 then hb.set_num_threads(cfg.threads) end
    local out = (cfg.out ~= "" and cfg.out) or ("runs/" .. cfg.name .. (cfg.tiny and "-tiny" or (cfg.size ~= "small" and "-" .. cfg.size or "")))
    -- the model is built (and so checked) before anything is written
    hb.manual_seed(cfg.seed)
    local model = hb.models.new(mc, { seed = cfg.seed })
    model:set_mode(cfg.train.mode)
    if root then warn_no_attention(kind, label, cfg, model) end
    -- config.yaml is written once hb.train has checked the run folder (on_start), so that a refused resume
    -- or an overwrite never clobbers the earlier run's copy
    local function save_config() config.save(out .. "/config.yaml", cfg, "effective configuration of " .. cfg.name) end

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
    local B, T = cfg.train.batch_size, cfg.train.seq_len
    if root then
      io.stderr:write(string.format("%s: %s %s, %.2fM parameters, layers %s, %d steps of %dx%d tokens%s → %s\n",
        cfg.name, model.config.model_type, label, model:num_parameters() / 1e6,
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
    -- after Ctrl-C: the checkpoint is saved; the executable exits with status 130
    if tr.interrupted then return { interrupted = true, checkpoint = tr.checkpoint }, cfg end
    -- evaluation, the final model and results are rank 0's; the other ranks are done
    if not root then return { rank = dp.rank, steps = cfg.train.steps, losses = tr.losses }, cfg end
    local ev = hb.eval.lm(model, val_shard, { T = T, max_tokens = val_tokens, bytes_per_token = bpt })
    local probe = R.recall_probe(model, cfg.model.vocab_size, cfg.eval.probe, 8, cfg.seed + 1)
    local eff = hb.eval.efficiency(model, { N = T })
    model:save_pretrained(out .. "/model")
    local res = {
      name = cfg.name, model_type = model.config.model_type, attention = label,
      ratio = (kind == "ratio" or kind == "pure") and cfg.ratio or nil, layers = hb.schedule.describe(model.config),
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
