-- test_config.lua — hb.config: YAML loading (types, errors with file:line:column), parse_args (files,
-- --set, shorthands, precedence, unknown keys with suggestions, type mismatches), dump/save round trip.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local null = hb.io.null

local tmp = os.tmpname()
local files = { tmp }
local function write(name, text)
  local path = tmp .. "." .. name
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  files[#files + 1] = path
  return path
end

local function deq(a, b)
  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false end
  if type(a) ~= "table" then return a == b or (a ~= a and b ~= b) end
  for k, v in pairs(a) do if not deq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function defaults()
  return {
    seed = 1,
    out = "runs/default",
    tiny = false,
    max_steps = 10,
    resume = null,
    model = { d_model = 64, layers = { 0, 3 }, mixer = "gated_deltanet", norm_eps = 1e-6 },
    train = { lr = 1e-3, steps = 100, batch = 8, betas = { 0.9, 0.95 }, clip = true },
    extra = {},
  }
end

-- ---- hb.config.load ----------------------------------------------------------------------------------
do
  local p = write("types.yaml", "i: 3\nf: 3.0\ne: 1e-3\nb: true\nn: ~\ns: hello\nq: '42'\nl: [1, two, 3.5]\nm: {a: 1}\n")
  local v = hb.config.load(p)
  T.is(math.type(v.i), "integer", "load: integers are Lua integers")
  T.is(math.type(v.f), "float", "load: 3.0 is a float")
  T.is(v.e, 1e-3, "load: 1e-3 is a float")
  T.is(v.b, true, "load: booleans")
  T.is(v.n, null, "load: null is hb.io.null")
  T.is(v.q, "42", "load: quoted numbers stay strings")
  T.ok(v.l[1] == 1 and v.l[2] == "two" and v.l[3] == 3.5, "load: flow sequence")
  T.is(v.m.a, 1, "load: flow mapping")
  local e = write("empty.yaml", "# nothing\n")
  T.ok(deq(hb.config.load(e), {}), "load: an empty file is an empty table")
  T.raises(function() hb.config.load(tmp .. ".missing.yaml") end, tmp .. ".missing.yaml: No such file or directory",
    "load: missing file names the path")
  local bad = write("bad.yaml", "train:\n  lr: 1\n  steps: a: b\n")
  T.raises(function() hb.config.load(bad) end, bad .. ":3:11: mapping values are not allowed in this context",
    "load: bad YAML reports file:line:column")
  local dup = write("dup.yaml", "train:\n  lr: 1\n  lr: 2\n")
  T.raises(function() hb.config.load(dup) end, dup .. ":3:3: duplicate key 'lr' (first at line 2)",
    "load: duplicate keys are rejected")
  local tab = write("tab.yaml", "a:\n\tb: 1\n")
  T.raises(function() hb.config.load(tab) end, tab .. ":2:1: found character that cannot start any token",
    "load: tabs are reported")
end

-- ---- parse_args --------------------------------------------------------------------------------------------
do
  local d = defaults()
  local cfg, rest = hb.config.parse_args({}, d)
  T.ok(deq(cfg, d), "no arguments: the defaults")
  T.ok(cfg ~= d and cfg.model ~= d.model, "the result is a copy")
  T.is(#rest, 0, "no positional arguments")

  local f1 = write("c1.yaml", "train:\n  lr: 0.01\n  steps: 200\nmodel:\n  layers: [1, 5, 7]\nout: from_file1\n")
  local f2 = write("c2.yaml", "train:\n  steps: 300\nout: from_file2\n")
  cfg, rest = hb.config.parse_args({ "--set", "train.steps=400", "--config", f1, "input.txt", "--config=" .. f2,
    "--train.batch=16", "--set", "train.batch=32", "--", "--not-an-option" }, d, { positional = true })
  T.is(cfg.train.lr, 0.01, "precedence: file value over the default")
  T.is(cfg.out, "from_file2", "precedence: a later file over an earlier one")
  T.is(cfg.train.steps, 400, "precedence: --set over files, even when given before --config")
  T.is(cfg.train.batch, 32, "precedence: a later override wins")
  T.ok(deq(cfg.model.layers, { 1, 5, 7 }), "a file replaces a list whole")
  T.is(cfg.model.d_model, 64, "keys a file does not name keep their defaults")
  T.ok(deq(rest, { "input.txt", "--not-an-option" }), "positional arguments and -- are returned")
  T.ok(deq(d, defaults()), "the defaults table is not modified")

  cfg = hb.config.parse_args({ "--seed", "7", "--tiny", "--max-steps=5", "--out=a b: c", "--model.mixer", "hgrn" }, d)
  T.is(cfg.seed, 7, "--key value")
  T.is(cfg.tiny, true, "bare --flag sets a boolean")
  T.is(cfg.max_steps, 5, "--max-steps stands for max_steps")
  T.is(cfg.out, "a b: c", "a string key takes the text as typed")
  T.is(cfg.model.mixer, "hgrn", "--section.key value")
  cfg = hb.config.parse_args({ "--tiny", "--no-tiny", "--set", "train.clip=false" }, d)
  T.ok(cfg.tiny == false and cfg.train.clip == false, "--no-flag and --set flag=false")

  cfg = hb.config.parse_args({ "--set", "train.steps=1e3", "--set", "train.lr=1", "--set", "model.layers=4",
    "--set", "out=~", "--set", "resume=[1, x]", "--set", "extra.a.b=5", "--set", "out='123'" }, d)
  T.ok(math.type(cfg.train.steps) == "integer" and cfg.train.steps == 1000, "integer key: 1e3 → 1000")
  T.ok(math.type(cfg.train.lr) == "float" and cfg.train.lr == 1.0, "float key: 1 → 1.0")
  T.ok(deq(cfg.model.layers, { 4 }), "list key: a scalar becomes a one-element list")
  T.ok(deq(cfg.resume, { 1, "x" }), "a null default accepts any value")
  T.is(cfg.extra.a.b, 5, "a {} default is a free-form section")
  T.is(cfg.out, "123", "quotes make a string")
  cfg = hb.config.parse_args({ "--set", "out=~" }, d)
  T.is(cfg.out, null, "a string key may be set to null")
  cfg = hb.config.parse_args({ "--set", "train={lr: 0.5, steps: 3}" }, d)
  T.ok(cfg.train.lr == 0.5 and cfg.train.steps == 3 and cfg.train.batch == 8, "a flow mapping merges into a section")
  cfg = hb.config.parse_args({ "--out=" }, d)
  T.is(cfg.out, "", "--key= sets a string key to the empty string")
  cfg = hb.config.merge(d, { train = { lr = 0.25 }, resume = "ckpt" }, "recipe table")
  T.ok(cfg.train.lr == 0.25 and cfg.train.steps == 100 and cfg.resume == "ckpt", "hb.config.merge checks and merges a table")
  T.raises(function() hb.config.merge(d, { trian = {} }, "recipe table") end,
    "recipe table: unknown config key 'trian' (did you mean 'train'?)", "hb.config.merge rejects unknown keys")
end

-- ---- errors ----------------------------------------------------------------------------------------------------
do
  local d = defaults()
  local function err(args)
    local ok, e = pcall(hb.config.parse_args, args, d)
    return ok and "no error" or e
  end
  T.like(err { "--set", "train.lrr=0.1" }, "--set train.lrr=0.1: unknown config key 'train.lrr' (did you mean 'train.lr'?)",
    "unknown key with a suggestion")
  T.like(err { "--stesp=4" }, "unknown config key 'stesp' (did you mean 'train.steps'?)", "suggestion across sections")
  T.like(err { "--zzz=1" }, "unknown config key 'zzz' (known keys: extra, max_steps, model, out, resume, seed, tiny, train)",
    "unknown key without a close match lists the keys")
  T.like(err { "--set", "train.qqq=1" }, "(keys of 'train': batch, betas, clip, lr, steps)", "keys of the section")
  T.like(err { "--bogus" }, "--bogus: unknown config key 'bogus'", "unknown bare flag")
  T.like(err { "--set", "train.steps=abc" }, "config key 'train.steps' expects an integer, got 'abc'", "type mismatch: integer")
  T.like(err { "--set", "train.steps=1.5" }, "config key 'train.steps' expects an integer, got '1.5'", "1.5 is not an integer")
  T.like(err { "--set", "train.lr=fast" }, "config key 'train.lr' expects a number, got 'fast'", "type mismatch: float")
  T.like(err { "--tiny=yes" }, "config key 'tiny' expects a boolean (true or false), got 'yes'", "type mismatch: boolean")
  T.like(err { "--set", "model.layers=[1, a]" }, "config key 'model.layers.2' expects an integer, got 'a'", "list elements are checked")
  T.like(err { "--set", "train={lr: x}" }, "config key 'train.lr' expects a number, got 'x'", "mapping values are checked")
  T.like(err { "--set", "seed.x=1" }, "config key 'seed' is an integer, it has no key 'x'", "no keys below a scalar")
  T.like(err { "--set", "train.lr" }, "--set train.lr: expected key=value", "--set without =")
  T.like(err { "--seed" }, "option --seed needs a value", "missing value")
  T.like(err { "--set", "model.layers=[1," }, "--set model.layers:", "malformed YAML value")
  local f = write("unknown.yaml", "seed: 3\ntrain:\n  lrr: 0.1\n")
  T.like(err { "--config", f }, f .. ":3:3: unknown config key 'train.lrr' (did you mean 'train.lr'?)",
    "unknown key in a file names file:line:column")
  f = write("mismatch.yaml", "train:\n  steps: many\n")
  T.like(err { "--config", f }, f .. ":2:3: config key 'train.steps' expects an integer, got 'many'",
    "type mismatch in a file names file:line:column")
  f = write("list.yaml", "- 1\n- 2\n")
  T.like(err { "--config", f }, f .. ": top level must be a mapping", "a file must hold a mapping")
  T.like(err { "--config", tmp .. ".nope.yaml" }, tmp .. ".nope.yaml: No such file or directory", "missing --config file")
end

-- ---- dump / save -----------------------------------------------------------------------------------------------
do
  local cfg = defaults()
  cfg.resume = null
  cfg.strings = { "true", "123", "", "a: b", "line\nbreak", "tab\there", "é ü", "#x", "-dash", "yes", "~", "null",
    " pad ", "0x10", "1e5", ".inf", "[x]", "quote\"s", "back\\slash", "bell\7" }
  cfg.floats = { 0.1, 1e-5, 1e20, 100.0, -2.5, 1 / 3, math.huge, -math.huge, 2 ^ 60 + 0.0 }
  cfg.ints = { 0, -7, 1 << 62, math.mininteger }
  cfg.groups = { { name = "a", lr = 1e-3, sub = { x = 1 } }, { name = "b", layers = { 1, 2 } } }
  cfg.nested = { { 1, 2 }, { { k = "v" } } }
  cfg["odd key"] = { ["with.dot"] = 1, ["true"] = 2 }
  local text = hb.config.dump(cfg, "effective configuration\nsecond line")
  T.like(text, "# effective configuration\n# second line\n", "dump: comment lines")
  T.like(text, "\ntrain:\n  batch: 8\n  betas: [0.9, 0.95]\n  clip: true\n  lr: 0.001\n  steps: 100\n",
    "dump: block mappings, sorted keys, flow lists")
  T.like(text, "  norm_eps: 1.0e-06\n", "dump: floats keep a '.'")
  local back = hb.config.decode(text, "dump")
  T.ok(deq(back, cfg), "round trip: decode(dump(cfg)) == cfg", text)
  local nan = hb.config.decode(hb.config.dump({ x = 0 / 0 }), "nan").x
  T.ok(nan ~= nan, "round trip: nan")

  local path = tmp .. ".saved.yaml"
  files[#files + 1] = path
  hb.config.save(path, cfg, "saved")
  T.ok(deq(hb.config.load(path), cfg), "save → load round trip")
  local p = io.popen('ls "' .. path .. '".tmp.* 2>/dev/null')
  T.is(p:read("a"), "", "save leaves no temporary file")
  p:close()
  local c2 = hb.config.parse_args({ "--config", path }, cfg)
  T.ok(deq(c2, cfg), "a saved configuration is a valid --config for the same defaults")
  T.raises(function() hb.config.save("/nonexistent/dir/x.yaml", cfg) end, "/nonexistent/dir/x.yaml",
    "save into a missing directory names the path")
  T.raises(function() hb.config.dump({ f = print }) end, "cannot write a function", "dump rejects functions")
  local cyc = {}
  cyc.self = cyc
  T.raises(function() hb.config.dump(cyc) end, "nesting deeper than 64", "dump detects cycles")
end

-- ---- hb.config.diff: the settings a result was made with against this run's ------------------------------
do
  local rec = { steps = 20, lr = 0.003, model = { hidden_size = 32, layers = { 0, 3 } }, name = "a", gone = true }
  local now = { steps = 20, lr = 0.003, model = { hidden_size = 40, layers = { 0, 3 } }, name = "b", new = 1 }
  T.is(table.concat(hb.config.diff(rec, now), "; "),
    'gone = true (this run: unset); model.hidden_size = 32 (this run: 40); name = "a" (this run: "b"); new = unset (this run: 1)',
    "diff: nested keys dotted, strings as JSON, keys missing on one side unset, sorted")
  T.is(#hb.config.diff(rec, rec), 0, "diff of equal settings is empty")
  T.is(table.concat(hb.config.diff({ kv = { 2, 4 } }, { kv = { 2, 3 } }, "mqar."), "; "), "mqar.kv = [2,4] (this run: [2,3])",
    "lists are compared whole, under the prefix")
  T.is(hb.grid.settings_diffs, hb.config.diff, "hb.grid.settings_diffs is the same function")
end

for _, f in ipairs(files) do os.remove(f) end
T.done()
