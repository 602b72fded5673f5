-- test_strict.lua — the strict, self-explaining interface (issue 14): unknown keys rejected with a
-- did-you-mean in every table-of-options API this suite covers, ranges checked, recipes answering
-- --help (without running or writing anything) and rejecting stray arguments, presets under --set,
-- the recipe driver's attention spec, user errors printed without tracebacks, and exit status 130
-- after Ctrl-C.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local repo = io.popen("pwd"):read("l")
local tmp = os.tmpname(); os.remove(tmp); os.execute("mkdir -p " .. tmp)
local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
-- run a shell command; returns exit status, stdout, stderr
local function run(cmd)
  local o, e = tmp .. "/out.txt", tmp .. "/err.txt"
  local ok, how, code = os.execute(cmd .. " > " .. o .. " 2> " .. e)
  local function slurp(p) local f = io.open(p); local s = f and f:read("a") or ""; if f then f:close() end return s end
  return (how == "exit" and code) or (128 + (code or 0)), slurp(o), slurp(e)
end
local function raises(fn, text, desc) return T.raises(fn, text, desc) end
local function listing(dir)
  local p = io.popen("ls -A " .. sh(dir) .. " 2>/dev/null")
  local s = p:read("a")
  p:close()
  return s
end

-- ---- unknown keys, per API ----------------------------------------------------------------------------------
local m = hb.models.new({ model_type = "gla", hidden_size = 32, num_hidden_layers = 2, num_heads = 2, vocab_size = 64,
  attn = hb.schedule.ratio(1, { num_heads = 2 }) }, { seed = 1 })
local ids = hb.randint(0, 64, 2, 17)
local function batch() return ids end

raises(function() hb.train { model = m, batch = batch, stesp = 3 } end, "hb.train: unknown key 'stesp' (did you mean 'steps'?)",
  "hb.train: an unknown option, with a suggestion")
raises(function() hb.train { model = m, batch = batch, steps = 1, zzzz = 1 } end, "hb.train: unknown key 'zzzz' (known keys: ",
  "hb.train: an unknown option without a close match lists the options")
raises(function() hb.train { model = m, batch = batch, steps = -5 } end, "hb.train: 'steps' must be an integer >= 1, got -5",
  "hb.train: steps must be positive")
raises(function() hb.train { model = m, batch = batch, steps = 2, lr = 0 } end, "hb.train: 'lr' must be a number > 0, got 0",
  "hb.train: lr must be positive")
raises(function() hb.train { model = m, batch = batch, steps = 2, schedule = "linear" } end, "'schedule' must be \"cosine\"",
  "hb.train: the schedule is one of three")
raises(function() hb.train { model = m, batch = batch, steps = 2, eval_every = 0 } end, "'eval_every' must be an integer >= 1",
  "hb.train: eval_every 0 is refused (it would divide by zero)")
raises(function() hb.train { model = m, batch = batch, steps = 2, betas = { 0.9 } } end, "'betas' must be a list of two numbers",
  "hb.train: betas")
raises(function() hb.train { model = m, batch = "ids", steps = 2 } end, "'batch' must be a function", "hb.train: batch must be callable")
raises(function() hb.train { model = m, steps = 2 } end, "'batch' (function(k) → ids) or 'loss_fn' is required", "hb.train: batch required")
do
  local ok, err = pcall(function() hb.train { model = m, batch = batch, stesp = 3 } end)
  T.ok(not ok and err:find("^tests/test_strict%.lua:%d+: hb%.train") ~= nil and hb.is_user_error(err),
    "an option error is a user error located at the caller's line, not inside the library", err)
end

raises(function() hb.eval.lm(m, ids:select(1, 1), { max_token = 8 }) end, "hb.eval.lm: unknown key 'max_token' (did you mean 'max_tokens'?)",
  "hb.eval.lm options")
raises(function() hb.eval.efficiency(m, { n = 8 }) end, "hb.eval.efficiency: unknown key 'n' (did you mean 'N'?)", "hb.eval.efficiency options")
raises(function() hb.eval.measure_throughput(m, { steps = 1, B = 1, T = 4, decode = 1 }) end,
  "hb.eval.measure_throughput: unknown key 'decode'", "hb.eval.measure_throughput options")
raises(function() hb.eval.mqar.generate { vocab_size = 64, seq_len = 16, num_kv_pair = 2, num_examples = 2 } end,
  "hb.eval.mqar.generate: unknown key 'num_kv_pair' (did you mean 'num_kv_pairs'?)", "mqar.generate options")
raises(function() hb.eval.mqar.mixture { vocab_size = 64, tests = {} } end, "hb.eval.mqar.mixture: unknown key 'tests' (did you mean 'test'?)",
  "mqar.mixture options")
raises(function() hb.eval.mqar.mixture { vocab_size = 64, train = { { seq_len = 16, num_kv_pairs = 2, num_example = 2 } } } end,
  "hb.eval.mqar.mixture: train[1]: unknown key 'num_example' (did you mean 'num_examples'?)", "mqar.mixture per-spec options")
local seg = hb.eval.mqar.mixture { vocab_size = 64, seed = 1, test = { { seq_len = 16, num_kv_pairs = 2, num_examples = 2 } } }.test
raises(function() hb.eval.mqar.evaluate(m, seg, { batchsize = 2 }) end, "hb.eval.mqar.evaluate: unknown key 'batchsize' (did you mean 'batch_size'?)",
  "mqar.evaluate options")
raises(function() hb.eval.mqar.accuracy(m, seg[1].inputs, seg[1].labels, { full = true }) end, "hb.eval.mqar.accuracy: unknown key 'full'",
  "mqar.accuracy options")
raises(function() hb.eval.niah.build { task = "niah_single_1", length = 256, dept = 0.5 } end,
  "hb.eval.niah.build: unknown key 'dept' (did you mean 'depth'?)", "niah.build options")
raises(function() hb.eval.niah.cases { task = "niah_single_1", lenghts = { 256 } } end,
  "hb.eval.niah.cases: unknown key 'lenghts' (did you mean 'lengths'?)", "niah.cases options")
local case = hb.eval.niah.build { task = "niah_single_1", length = 600, depth = 0.5, tokens_to_generate = 2 }
raises(function() hb.eval.niah.run(m, hb.tokenizer.byte(), { case }, { tokens = 2 }) end, "hb.eval.niah.run: unknown key 'tokens'",
  "niah.run options")
raises(function() hb.eval.mc(m, hb.tokenizer.byte(), "tests/data/mc_sample.jsonl", { limt = 1 }) end,
  "hb.eval.mc: unknown key 'limt' (did you mean 'limit'?)", "hb.eval.mc options")
raises(function() hb.plot.svg { series = {}, xlable = "x" } end, "unknown key 'xlable' (did you mean 'xlabel'?)", "hb.plot panel options")
raises(function() hb.plot.svg { series = { { name = "a", pionts = {} } } } end, "unknown key 'pionts' (did you mean 'points'?)",
  "hb.plot series options")
raises(function() hb.config.parse_args({}, {}, { positionl = true }) end, "hb.config.parse_args: unknown key 'positionl' (did you mean 'positional'?)",
  "parse_args options")
raises(function() hb.recipe.defaults { train = { stesp = 3 } } end, "hb.recipe.defaults: unknown key 'train.stesp' (did you mean 'train.steps'?)",
  "hb.recipe.defaults: keys of the driver's sections")
raises(function() hb.recipe.defaults { attn_heads = 2 } end, "'attn_heads' is now 'attn.num_heads'", "hb.recipe.defaults: the renamed key")
raises(function() hb.recipe.lm(hb.recipe.defaults {}, {}, { descripton = "x" }) end,
  "hb.recipe.lm: unknown key 'descripton' (did you mean 'description'?)", "hb.recipe.lm options")

-- ---- declared keys: ranges, choices, positional arguments -------------------------------------------------
do
  local K = hb.config.key
  local d = hb.config.declare { steps = K(10, "steps", { min = 1 }), mode = K("a", "mode", { choices = { "a", "b" } }),
    sec = { rate = K(0.5, "a rate", { min = 0, max = 1 }) }, list = K({ 1, 2 }, "ints", { min = 0 }) }
  local function err(args) local ok, e = pcall(hb.config.parse_args, args, d); return ok and "no error" or e end
  T.like(err { "--set", "steps=-5" }, "--set steps=-5: config key 'steps' must be >= 1, got '-5'", "a range: min")
  T.like(err { "--sec.rate=2" }, "--sec.rate=2: config key 'sec.rate' must be 0 to 1, got '2'", "a range: min and max")
  T.like(err { "--mode", "c" }, "config key 'mode' must be one of: a, b, got 'c'", "choices")
  T.like(err { "--list=[1, -1]" }, "config key 'list' must be >= 0, got -1", "list elements are range-checked")
  T.like(err { "extra" }, "unexpected argument 'extra' (this script takes no positional arguments", "a positional argument is an error")
  T.like(err { "steps" }, "unexpected argument 'steps' (did you mean --steps VALUE?)", "... with a hint when it names a key")
  T.like(err { "-x" }, "-x: unknown option", "an unknown short option")
  local f = tmp .. "/range.yaml"
  hb.config.write_text(f, "sec:\n  rate: 3\n")
  T.like(err { "--config", f }, f .. ":2:3: config key 'sec.rate' must be 0 to 1, got 3", "ranges apply to --config files, with file:line:col")
  local cfg, rest = hb.config.parse_args({ "x", "y" }, d, { positional = true })
  T.ok(rest[1] == "x" and rest[2] == "y" and cfg.steps == 10, "opts.positional accepts positional arguments")
  local help = hb.config.help(d, { description = "A test." }, "t.lua")
  T.like(help, "usage: hyblua t.lua [options]", "help: usage line")
  T.ok(help:find("\n  sec.rate +0.5 +a rate %(0 to 1%)") ~= nil, "help: key, default, meaning and range from the declaration", help)
  T.ok(help:find("list +%[1, 2%] +ints %(>= 0%)") ~= nil, "help: a list default", help)
end

-- ---- presets under --set, the attention spec, strict model keys ----------------------------------------------
do
  local R = hb.recipe
  local function gdn()
    return R.defaults { name = "g", ratio = 3, attn = { num_heads = 4 },
      model = { model_type = "gated_deltanet", hidden_size = 128, num_hidden_layers = 8, num_heads = 2, head_dim = 48 } }
  end
  local cfg = R.parse(gdn(), { "--tiny", "--set", "train.steps=3", "--set", "model.hidden_size=48" })
  T.ok(cfg.train.steps == 3 and cfg.model.hidden_size == 48 and cfg.model.num_hidden_layers == 4 and cfg.train.batch_size == 2,
    "an explicit --set wins over --tiny; the preset fills the rest")
  cfg = R.parse(gdn(), { "--set", "model.hidden_size=48", "--size", "medium" })
  T.ok(cfg.model.hidden_size == 48 and cfg.train.steps == 2000, "... and over --size, whatever the order")
  local yaml = tmp .. "/tiny.yaml"
  hb.config.write_text(yaml, "tiny: true\ntrain:\n  steps: 5\n")
  cfg = R.parse(gdn(), { "--config", yaml })
  T.ok(cfg.tiny and cfg.train.steps == 5 and cfg.model.hidden_size == 32, "a preset chosen in a --config file applies, under the file's values")

  local function mc_of(args, d)
    d = d or gdn()
    local c, eff = R.parse(d, args)
    return R.model_config(c, eff)
  end
  local c, label = mc_of { "--set", "attn.window_size=64", "--set", "attn.num_kv_heads=2", "--set", "attn.rope_theta=5e5", "--set", "attn.qkv_bias=true" }
  local spec = hb.schedule.resolve(c.attn, 8)
  T.ok(label == "3:1" and spec.window_size == 64 and spec.num_kv_heads == 2 and spec.rope_theta == 5e5 and spec.qkv_bias == true
    and table.concat(spec.layers, ",") == "3,7", "attn.* reaches the attention layers: window, GQA, rope_theta, qkv_bias")
  c = mc_of { "--set", "attn.window_size=~" }
  T.ok(hb.schedule.resolve(c.attn, 8).window_size == nil, "attn.window_size=~ switches the window off")
  c, label = mc_of { "--ratio", "0", "--set", "attn.layers=[0,5]" }
  T.ok(label == "layers 0,5" and table.concat(hb.schedule.resolve(c.attn, 8).layers, ",") == "0,5", "attn.layers places attention exactly")
  c, label = mc_of { "--set", "attn.every=2" }
  T.ok(label == "every 2" and table.concat(hb.schedule.resolve(c.attn, 8).layers, ",") == "1,3,5,7", "attn.every")
  raises(function() mc_of { "--set", "attn.every=2", "--set", "attn.layers=[1]" } end, "set attn.layers or attn.every, not both",
    "layers and every together are an error")
  raises(function() mc_of { "--ratio", "6", "--set", "attn.layers=[1]" } end, "ratio 6 and attn.layers both place the attention layers",
    "an explicit ratio with attn.layers is an error")
  raises(function() mc_of { "--set", "attn.window_size=0" } end, "config key 'attn.window_size' must be an integer >= 1 or null (~), got '0'",
    "window_size 0 is refused (null switches it off)")
  raises(function() mc_of { "--set", "model.expand_ratio=2" } end, "model.expand_ratio does not apply to model_type gated_deltanet",
    "a model key the type does not use is an error")
  local hgrn = mc_of { "--set", "model.model_type=hgrn" }
  T.ok(hgrn.head_dim == nil and hgrn.num_heads == nil, "... but the recipe's own values for another type are dropped")
  local tr = R.defaults { ratio = 0, attn = { num_heads = 4 }, model = { model_type = "transformer" } }
  c = mc_of({ "--set", "attn.window_size=32", "--set", "attn.num_kv_heads=2" }, tr)
  T.ok(c.window_size == 32 and c.num_kv_heads == 2 and c.num_heads == 4 and c.attn == nil, "a Transformer takes attn.* as its own fields")
  raises(function() mc_of({ "--ratio", "3" }, tr) end, "model_type transformer has attention in every layer", "a ratio for a Transformer is an error")
  raises(function() mc_of({ "--set", "model.num_heads=2" }, tr) end, "its heads are attn.num_heads", "model.num_heads for a Transformer points to attn")
end

-- ---- the recipes: --help, stray arguments, user errors --------------------------------------------------------
local hyb = repo .. "/hyblua"
local recipes = {}
for f in io.popen("ls recipes/*.lua"):lines() do recipes[#recipes + 1] = f end
T.ok(#recipes >= 7, "found the recipes", #recipes)
for _, r in ipairs(recipes) do
  local dir = tmp .. "/help-" .. r:match("([^/]+)%.lua$")
  os.execute("mkdir -p " .. sh(dir))
  for _, flag in ipairs { "--help", "-h" } do
    local rc, out, err = run("cd " .. sh(dir) .. " && " .. sh(hyb) .. " " .. sh(repo .. "/" .. r) .. " --set nonsense=1 " .. flag)
    local rows, bare = 0, {}
    for line in out:gmatch("[^\n]+") do
      local key, rest = line:match("^  ([%w_.]+)  +(%S.*)$")
      if key and not key:match("^%-") then
        rows = rows + 1
        -- a key row: default, then the meaning (a row with only the default has no meaning)
        if not rest:match("%S+%s%s+%S") then bare[#bare + 1] = key end
      end
    end
    T.ok(rc == 0 and out:find("usage: hyblua", 1, true) and out:find("Keys (default, meaning):", 1, true) and rows >= 5,
      r .. " " .. flag .. ": usage and the declared keys, status 0", "status " .. rc .. "\n" .. out .. err)
    T.ok(#bare == 0, r .. " " .. flag .. ": every key has a meaning", table.concat(bare, ", "))
    T.is(listing(dir), "", r .. " " .. flag .. ": nothing written")
  end
end
do
  local dir = tmp .. "/stray"
  os.execute("mkdir -p " .. sh(dir))
  local rc, _, err = run("cd " .. sh(dir) .. " && " .. sh(hyb) .. " " .. sh(repo .. "/recipes/gdn_3to1.lua") .. " tiny")
  T.ok(rc == 1 and err == "hyblua: unexpected argument 'tiny' (did you mean --tiny?)\n", "a stray argument: one line, status 1", err)
  T.is(listing(dir), "", "... and nothing written")
  rc, _, err = run("cd " .. sh(dir) .. " && " .. sh(hyb) .. " " .. sh(repo .. "/recipes/paper_grid.lua") .. " --set lm.steps=-5")
  T.ok(rc == 1 and err == "hyblua: --set lm.steps=-5: config key 'lm.steps' must be >= 1, got '-5'\n", "paper_grid: a range error", err)
  rc, _, err = run("cd " .. sh(dir) .. " && " .. sh(hyb) .. " " .. sh(repo .. "/recipes/gdn_3to1.lua") .. " --set train.steps=-5")
  T.ok(rc == 1 and err == "hyblua: --set train.steps=-5: config key 'train.steps' must be >= 1, got '-5'\n",
    "--set train.steps=-5 is an error, not a run that trains nothing", err)
  T.is(listing(dir), "", "... and nothing written")
end

-- user errors: the message alone, no traceback, no position inside the library
local user_cases = {
  { "recipes/gdn_3to1.lua --config nope.yaml", "hyblua: nope.yaml: No such file or directory\n" },
  { "recipes/gdn_3to1.lua --set train.lrr=1", "hyblua: --set train.lrr=1: unknown config key 'train.lrr' (did you mean 'train.lr'?)\n" },
  { "recipes/hybrid.lua --mixer mamba", "hyblua: --mixer mamba: config key 'mixer' must be one of: delta_net, gated_deltanet, gla, hgrn, hgrn2, retnet, transformer, got 'mamba'\n" },
  { "recipes/gdn_3to1.lua --set model.expand_ratio=4", "hyblua: recipe: model.expand_ratio does not apply to model_type gated_deltanet (it is a key of: hgrn, hgrn2)\n" },
  { "plot nope.jsonl", "hyblua: nope.jsonl: No such file or directory\n" },
  { "plot --smoth 0.5 x.jsonl", "hyblua: plot: unknown option --smoth (did you mean --smooth?)\n" },
}
for _, c in ipairs(user_cases) do
  local rc, _, err = run("cd " .. sh(tmp) .. " && " .. sh(hyb) .. " " .. c[1]:gsub("^recipes/", repo .. "/recipes/"))
  T.ok(rc == 1 and err == c[2], "user error, one line: hyblua " .. c[1], "status " .. rc .. ": " .. err)
end
do
  local rc, _, err = run("cd " .. sh(tmp) .. " && " .. sh(hyb) .. " --traceback " .. sh(repo .. "/recipes/gdn_3to1.lua") .. " --config nope.yaml")
  T.ok(rc == 1 and err:find("nope.yaml: No such file or directory", 1, true) and err:find("stack traceback", 1, true),
    "--traceback shows the traceback of a user error", err)
  local script = tmp .. "/bug.lua"
  hb.config.write_text(script, "local hb = require 'hyblua'\nlocal t\nprint(t.field)\n")
  rc, _, err = run(sh(hyb) .. " " .. sh(script))
  T.ok(rc == 1 and err:find("attempt to index a nil value", 1, true) and err:find("stack traceback", 1, true),
    "a real bug keeps its traceback", err)
end

-- ---- exit status 130 after Ctrl-C ---------------------------------------------------------------------------
do
  local out = tmp .. "/intr"
  local pidf = tmp .. "/intr.pid"
  os.execute(string.format("cd %s && (%s recipes/gdn_3to1.lua --tiny --set train.steps=100000 --set train.save_every=100000 " ..
    "--out %s --set data.cache=%s > %s/intr.out 2> %s/intr.err; echo $? > %s/intr.rc) & echo $! > %s",
    sh(repo), sh(hyb), sh(out), sh(tmp .. "/cache"), tmp, tmp, tmp, pidf))
  -- $! is the subshell's pid; the hyblua process is its child
  local function read(p) local f = io.open(p); local s = f and f:read("a"); if f then f:close() end return s end
  local waited = 0
  while waited < 1200 do
    local n = 0
    local f = io.open(out .. "/metrics.jsonl")
    if f then for _ in f:lines() do n = n + 1 end f:close() end
    if n >= 2 then break end
    os.execute("sleep 0.1"); waited = waited + 1
  end
  local sub = (read(pidf) or ""):match("%d+")
  local child = sub and io.popen("pgrep -P " .. sub):read("l")
  T.ok(child ~= nil, "the recipe is training", read(tmp .. "/intr.err"))
  if child then os.execute("kill -INT " .. child) end
  waited = 0
  while waited < 600 and not read(tmp .. "/intr.rc") do os.execute("sleep 0.1"); waited = waited + 1 end
  os.execute("sleep 0.1")
  local rc = (read(tmp .. "/intr.rc") or ""):match("%d+")
  local err = read(tmp .. "/intr.err") or ""
  T.ok(rc == "130" and err:find("interrupted at step", 1, true), "a recipe interrupted by Ctrl-C saves and exits with status 130",
    "status " .. tostring(rc) .. "\n" .. err:sub(-400))
end

os.execute("rm -rf " .. sh(tmp))
T.done()
