-- recipes/paper_grid.lua — the paper's study in miniature.
--
-- 6 linear mixers × {pure, 24:1, 12:1, 6:1, 3:1} + a Transformer = 31 cells, all at the same depth,
-- width and (by adjusting the MLP width) the same parameter budget, each trained twice with the same
-- number of tokens: (a) on the text corpus (language modelling → validation bits-per-byte) and (b) on
-- Zoology's MQAR (recall → accuracy on held-out lengths). Results go to <out>/grid.csv, grid.md and
-- three plots as SVG (and PNG when rsvg-convert is installed): recall vs attention share, LM vs
-- attention share, recall vs state+KV bytes.
--
--   hyblua recipes/paper_grid.lua --help          # every key, its default and meaning; runs nothing
--   hyblua recipes/paper_grid.lua                 # the default size (a few hours on 2 cores)
--   hyblua recipes/paper_grid.lua --tiny          # seconds per cell; used by the test suite
--   hyblua recipes/paper_grid.lua --set grid.mixers=[gla,hgrn2] --set lm.steps=500
--   hyblua recipes/paper_grid.lua --out docs/grid --set grid.plot_only=true   # tables and plots again
-- Re-running skips finished cells (<out>/cells/*.json) and resumes a half-trained one from its
-- checkpoint; everything is deterministic given the seed.
--
-- Attention placement is hb.schedule.ratio's, as in every recipe: ratio r puts attention at the 0-based
-- layers i with i % (r+1) == r. At 12 layers, 3:1 gives 3 attention layers (3, 7, 11) and 6:1 one
-- (layer 6); 12:1 and 24:1 need 13 and 25 layers, so at 12 they give none (a warning says so) and
-- their cells are the pure models. Cells whose layer stacks coincide are trained once (`same_as`).
local hb = require "hyblua"
local K = hb.config.key
local null = hb.io.null

local mixer_names = { "hgrn", "retnet", "gla", "hgrn2", "delta_net", "gated_deltanet" }
local defaults = hb.config.declare {
  name = K("paper_grid", "the study's name (recorded in config.yaml)"),
  out = K("results", "output directory (results/tiny with --tiny)"),
  tiny = K(false, "seconds per cell: width 32, 6 layers, 3 steps per task, ratios [0, 3] (explicit values win)"),
  seed = K(0, "seed of initialisation, batches and MQAR data", { min = 0 }),
  threads = K(0, "worker threads (0: HYBLUA_NUM_THREADS or all CPUs)", { min = 0, max = 256 }),
  grid = {
    mixers = K(mixer_names, "the linear mixers", { choices = mixer_names }),
    ratios = K({ 0, 24, 12, 6, 3 }, "attention ratios r:1 (0 = pure; hb.schedule.ratio placement)", { min = 0 }),
    transformer = K(true, "add the pure-Transformer cell"),
    tasks = K({ "lm", "mqar" }, "what every cell is trained on", { choices = { "lm", "mqar" } }),
    budget = K(0, "parameter budget every cell is sized to (0: the Transformer's parameter count)", { min = 0 }),
    plot_only = K(false, "train nothing: rewrite grid.csv, grid.md and the plots from <out>/cells/*.json"),
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
    lr = K(3e-3, "MQAR peak learning rate", { min = 0 }),
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
  d.out = "results/tiny"
end
local popts = { description = "The paper's grid in miniature: every linear mixer pure and at each attention ratio, " ..
  "plus a Transformer, at one parameter budget, trained on language modelling and on MQAR recall. " ..
  "Writes <out>/grid.csv, grid.md, plots, and cells/*.json (re-running skips finished cells)." }
local first = hb.config.parse_args(arg, defaults, popts)
local eff = hb.config.copy(defaults)
if first.tiny then tiny_preset(eff) end
local cfg = hb.config.parse_args(arg, eff, popts)
if cfg.threads > 0 then hb.set_num_threads(cfg.threads) end
local out = cfg.out
local d, L, H = cfg.model.hidden_size, cfg.model.num_hidden_layers, cfg.heads

-- ---- the cells ------------------------------------------------------------------------------------
local function mixer_cfg(mixer)
  local c = { model_type = mixer, hidden_size = d, num_hidden_layers = L }
  if mixer == "hgrn" then c.expand_ratio = 1
  elseif mixer == "retnet" then c.num_heads = H
  elseif mixer == "gla" then c.num_heads = H
  elseif mixer == "hgrn2" then c.expand_ratio = d // H
  elseif mixer == "delta_net" then c.num_heads = H
  elseif mixer == "gated_deltanet" then c.num_heads = H; c.head_dim = (3 * d // 4) // H
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
    -- params are linear in intermediate_size I (3·d·I per layer): solve for I, round to a multiple of 8
    c.intermediate_size = 64
    local p0 = hb.models.new(c, { seed = 0 }):num_parameters()
    local I = math.max(8, math.floor((64 + (budget - p0) / (3 * d * L)) / 8 + 0.5) * 8)
    c.intermediate_size = I
  end
  return c
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

local function train_grid()
  -- ---- data ---------------------------------------------------------------------------------------------
  local train_shard, val_shard, meta = hb.recipe.open_data(cfg)
  local bpt = (meta.val_bytes and meta.val_tokens and meta.val_tokens > 0) and meta.val_bytes / meta.val_tokens or 1
  local mq = cfg.mqar
  local mqar_train = hb.eval.mqar.mixture {
    vocab_size = mq.vocab_size, seed = cfg.seed + 17,
    train = (function()
      local t = {}
      for _, kv in ipairs(mq.train_kv) do t[#t + 1] = { seq_len = mq.seq_len, num_kv_pairs = kv, num_examples = mq.train_examples // #mq.train_kv } end
      return t
    end)(),
    test = (function()
      local t = {}
      for _, kv in ipairs(mq.test_kv) do t[#t + 1] = { seq_len = mq.seq_len, num_kv_pairs = kv, num_examples = mq.test_examples } end
      return t
    end)(),
  }
  -- MQAR training examples as one pool; batch k is a fixed function of k
  local pool_x = hb.cat((function() local l = {} for i, s in ipairs(mqar_train.train) do l[i] = s.inputs end return l end)(), 1)
  local pool_y = hb.cat((function() local l = {} for i, s in ipairs(mqar_train.train) do l[i] = s.labels end return l end)(), 1)
  local pool_n = pool_x:size(1)
  local function mqar_batch(k)
    local idx = {}
    local x = (k * 2654435761 + cfg.seed) % 4294967296
    for i = 1, mq.batch_size do
      x = (x * 1103515245 + 12345) % 2147483648
      idx[i] = x % pool_n
    end
    local it = hb.tensor(idx, "int64")
    return pool_x:index_select(1, it), pool_y:index_select(1, it)
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

  -- ---- running one cell ------------------------------------------------------------------------------------

  local arch_done = {} -- "mixer|layers" → result, so a ratio that gives the same stack is not retrained

  local function run_cell(cell)
    local path = out .. "/cells/" .. cell.name .. ".json"
    if exists(path) then
      local r = hb.io.read_json(path)
      arch_done[cell.mixer .. "|" .. table.concat(cell.mixer == "transformer" and {} or attn_layers(cell.ratio), ",")] = r
      return r, true
    end
    local key = cell.mixer .. "|" .. table.concat(cell.mixer == "transformer" and {} or attn_layers(cell.ratio), ",")
    if arch_done[key] then
      local r = {}
      for k, v in pairs(arch_done[key]) do r[k] = v end
      r.name, r.ratio, r.same_as = cell.name, cell.ratio, arch_done[key].name
      hb.io.write_json(path, r)
      return r, true
    end
    local t0 = hb.now()
    local res = { name = cell.name, mixer = cell.mixer, ratio = cell.ratio }
    local has = {}
    for _, t in ipairs(cfg.grid.tasks) do has[t] = true end
    if has.lm then
      local V = cfg.model.vocab_size
      local c = cell_config(cell, V, budget_for(V))
      local m = hb.models.new(c, { seed = cfg.seed })
      local lm = cfg.lm
      local v0 = hb.eval.lm(m, val_shard, { T = lm.seq_len, max_tokens = math.min(lm.val_tokens, val_shard:len() - 1), bytes_per_token = bpt })
      res.lm_val_loss_init = v0.loss
      local tr = hb.train {
        model = m, name = cell.name .. " lm",
        batch = function(k) return train_shard:batch(lm.batch_size, lm.seq_len, cfg.seed, k) end,
        steps = lm.steps, lr = lm.lr, min_lr = lm.lr / 10, warmup = math.min(30, lm.steps), schedule = "cosine",
        weight_decay = 0.1, clip = 1.0, out = out .. "/ckpt/" .. cell.name .. "-lm", save_every = math.max(50, lm.steps // 3), keep = 1,
        log = out .. "/logs/" .. cell.name .. "-lm.jsonl", seed = cfg.seed,
      }
      if tr.interrupted then os.exit(130) end -- the checkpoint is saved; the same command resumes
      local ev = hb.eval.lm(m, val_shard, { T = lm.seq_len, max_tokens = math.min(lm.val_tokens, val_shard:len() - 1), bytes_per_token = bpt })
      local eff = hb.eval.efficiency(m, { N = lm.seq_len })
      res.params = m:num_parameters()
      res.intermediate_size = c.intermediate_size
      res.attn_layers = #(c.attn and c.attn.layers or {})
      if cell.mixer == "transformer" then res.attn_layers = L end
      res.attn_share = res.attn_layers / L
      res.layers = hb.schedule.describe(m.config)
      res.lm_val_loss, res.lm_val_bpb = ev.loss, ev.bpb
      res.lm_train_loss_first, res.lm_train_loss_last = tr.losses[1], tr.losses[lm.steps]
      res.state_bytes = eff.state_bytes + (eff.conv_state_bytes or 0)
      res.kv_bytes_at_T = eff.kv_bytes_at_N
      res.lm_seconds = hb.now() - t0
    end
    if has.mqar then
      local t1 = hb.now()
      local V = mq.vocab_size
      local c = cell_config(cell, V, budget_for(V))
      local m = hb.models.new(c, { seed = cfg.seed + 1 })
      local tr = hb.train {
        model = m,
        loss_fn = function(k) local x, y = mqar_batch(k); return mqar_loss(m, x, y), x:numel() end,
        name = cell.name .. " mqar",
        steps = mq.steps, lr = mq.lr, min_lr = mq.lr / 10, warmup = math.min(30, mq.steps), schedule = "cosine",
        weight_decay = 0.1, clip = 1.0, out = out .. "/ckpt/" .. cell.name .. "-mqar", save_every = math.max(50, mq.steps // 3), keep = 1,
        log = out .. "/logs/" .. cell.name .. "-mqar.jsonl", seed = cfg.seed,
      }
      if tr.interrupted then os.exit(130) end -- the checkpoint is saved; the same command resumes
      local r = hb.eval.mqar.evaluate(m, mqar_train.test, { batch_size = 32 })
      res.mqar_acc = r.accuracy
      res.mqar_by_kv = {}
      for kv, acc in pairs(r.by_num_kv_pairs or {}) do res.mqar_by_kv["kv" .. kv] = acc end
      res.mqar_train_loss_last = tr.losses[mq.steps]
      res.mqar_seconds = hb.now() - t1
    end
    res.seconds = hb.now() - t0
    hb.io.write_json(path, res)
    arch_done[key] = res
    return res, false
  end

  -- ---- the grid --------------------------------------------------------------------------------------------
  local results = {}
  for i, cell in ipairs(cells) do
    local r, cached = run_cell(cell)
    results[i] = r
    io.stderr:write(string.format("[%2d/%d] %-22s %s lm bpb %s  mqar %s  (%s)\n", i, #cells, cell.name,
      cached and "(cached)" or string.format("%5.0fs", r.seconds or 0),
      r.lm_val_bpb and string.format("%.3f", r.lm_val_bpb) or "-", r.mqar_acc and string.format("%.3f", r.mqar_acc) or "-",
      r.layers or ""))
  end
  return results
end

-- the finished cells' records, without training (grid.plot_only)
local function read_cells()
  local results = {}
  for _, cell in ipairs(cells) do
    local path = out .. "/cells/" .. cell.name .. ".json"
    if exists(path) then results[#results + 1] = hb.io.read_json(path)
    else io.stderr:write("no result for " .. cell.name .. " (" .. path .. ")\n") end
  end
  if #results == 0 then hb.user_error("grid.plot_only: no cell results in " .. out .. "/cells/") end
  return results
end

local tstart = hb.now()
local results
if cfg.grid.plot_only then
  results = read_cells()
else
  hb.data.mkdir(out .. "/cells")   -- no shell: out may hold any character
  hb.config.save(out .. "/config.yaml", cfg, "paper grid")
  results = train_grid()
end

-- ---- outputs -------------------------------------------------------------------------------------------
-- per-kv MQAR accuracies: one column per test key-value count found in the records (mqar_kv4, ...)
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
local function kv_acc(r, n) return r.mqar_by_kv and r.mqar_by_kv["kv" .. n] end
local has_seed = false
for _, r in ipairs(results) do if r.seed ~= nil then has_seed = true end end

local cols = { "name", "mixer", "ratio", "attn_layers", "attn_share", "params", "intermediate_size", "state_bytes",
               "kv_bytes_at_T", "lm_val_loss_init", "lm_val_loss", "lm_val_bpb", "mqar_acc" }
for _, n in ipairs(kv_cols) do cols[#cols + 1] = "mqar_kv" .. n end
for _, c in ipairs { "mqar_train_loss_last", "lm_seconds", "mqar_seconds", "layers", "same_as" } do cols[#cols + 1] = c end
if has_seed then table.insert(cols, 2, "seed") end
local function csv_value(r, c)
  local v = r[c]
  local n = c:match("^mqar_kv(%d+)$")
  if n then v = kv_acc(r, tonumber(n)) end
  if v == nil or v == null then return "" end
  if math.type(v) == "float" then return string.format("%.6g", v) end
  return tostring(v)
end
local csv = { table.concat(cols, ",") }
for _, r in ipairs(results) do
  local row = {}
  for i, c in ipairs(cols) do row[i] = csv_value(r, c) end
  csv[#csv + 1] = table.concat(row, ",")
end
hb.config.write_text(out .. "/grid.csv", table.concat(csv, "\n") .. "\n")

local function ratio_label(r) return r == -1 and "Transformer" or (r == 0 and "pure" or (r .. ":1")) end
local function f(v, fmt) return v and v ~= null and string.format(fmt, v) or "-" end
local head = { "mixer", "ratio" }
if has_seed then head[#head + 1] = "seed" end
for _, h in ipairs { "attn layers", "params", "state+KV bytes @T", "LM val loss", "LM val bpb", "MQAR acc" } do head[#head + 1] = h end
for _, n in ipairs(kv_cols) do head[#head + 1] = "MQAR " .. n .. " kv" end
head[#head + 1] = "layers"
local md = { "| " .. table.concat(head, " | ") .. " |", "|" .. string.rep("---|", #head) }
for _, r in ipairs(results) do
  local row = { r.mixer, ratio_label(r.ratio) }
  if has_seed then row[#row + 1] = tostring(r.seed or "-") end
  row[#row + 1] = tostring(r.attn_layers or "-")
  row[#row + 1] = f(r.params and r.params / 1e6, "%.3fM")
  row[#row + 1] = r.state_bytes and tostring(r.state_bytes + (r.kv_bytes_at_T or 0)) or "-"
  row[#row + 1] = f(r.lm_val_loss, "%.4f")
  row[#row + 1] = f(r.lm_val_bpb, "%.4f")
  row[#row + 1] = f(r.mqar_acc, "%.3f")
  for _, n in ipairs(kv_cols) do row[#row + 1] = f(kv_acc(r, n), "%.3f") end
  row[#row + 1] = (r.layers or "-") .. (r.same_as and (" (= " .. r.same_as .. ")") or "")
  md[#md + 1] = "| " .. table.concat(row, " | ") .. " |"
end
md[#md + 1] = ""
md[#md + 1] = "LM val loss: nats per token on the validation tokens; bpb: bits per byte; MQAR acc: accuracy over all test " ..
  "examples, then per key-value count. A row marked (= name) has the same layer stack as that cell and shares its training."
if cfg.grid.plot_only then
  md[#md + 1] = "Rewritten from cells/*.json (grid.plot_only); the run's configuration is config.yaml."
else
  md[#md + 1] = string.format("Grid wall time (this invocation): %.0f s. Config: %s/config.yaml.", hb.now() - tstart, out)
end
hb.config.write_text(out .. "/grid.md", table.concat(md, "\n") .. "\n")

-- ---- plots -----------------------------------------------------------------------------------------------
-- One point per mixer and layer stack: cells that share a stack (same_as) are one point labelled with all
-- their ratios; several records of one cell (seeds) are one point with an error bar (± 1 std).
local palette = { hgrn = "#1f77b4", retnet = "#ff7f0e", gla = "#2ca02c", hgrn2 = "#d62728", delta_net = "#9467bd",
                  gated_deltanet = "#8c564b", transformer = "#000000" }
local order = { "hgrn", "retnet", "gla", "hgrn2", "delta_net", "gated_deltanet", "transformer" }

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
    xformat = "percent" } },
  { "lm_vs_ratio", { title = "Validation bits per byte vs attention share", xlabel = "attention layers / all layers (axis broken before the Transformer)",
    ylabel = "bits per byte (lower is better)", series = series_of("lm_val_bpb", "share", false), xsegments = share_segments(),
    xformat = "percent" } },
  { "recall_vs_state", { title = "Recall vs decode memory (recurrent state + KV cache at T)", xlabel = "bytes per sequence (log scale)",
    ylabel = "MQAR accuracy", series = series_of("mqar_acc", "bytes", true), logx = true, ymin = 0, ymax = 1, xformat = "bytes" } },
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
print(string.format("grid: %d cells → %s/grid.csv, grid.md, %s (%.0f s)", #results, out, table.concat(written, ", "), hb.now() - tstart))
