-- hyblua/config.lua — run configurations: defaults written in Lua, YAML files, command-line overrides,
-- and the effective configuration dumped back to YAML (saved with every run).
--
--   local cfg, rest = hb.config.parse_args(arg, defaults [, opts])
--     defaults    a nested table; it defines every valid key path and its type (plain, or made by
--                 hb.config.declare, which adds a meaning and a valid range to each key)
--     --config f  a YAML file merged over the defaults (repeatable, applied in order)
--     --set a.b=v an override (repeatable, applied in order after all --config files); v is read as a
--                 YAML scalar or flow value: 3, 1e-3, true, ~, [0, 3], {a: 1}, 'quoted'
--     --key=v, --key v   shorthand for --set key=v ("-" in a key may stand for "_")
--     --flag      a boolean key set to true (--no-flag sets it false); booleans never take the next
--                 argument, so write --flag=false
--     --          everything after it is positional
--     -h, --help  print the keys (with their defaults, meanings and ranges) and exit(0): nothing runs
--                 (in an interactive session — the REPL, hyblua -i — an error stops the script instead)
--   rest is the list of positional arguments; without opts.positional any positional argument is an
--   error. Precedence: defaults < --config files < --set/--key. opts: positional (true or a name for the
--   help), usage, description, epilog (help text around the generated key table).
--
-- Type rules, from the default's type: an integer key takes integers (1e3 is fine, 1.5 is not), a
-- float key any number, a boolean key true/false, a string key any scalar (kept as typed), a list key a
-- list (a single scalar becomes a one-element list; elements are checked against the default's first),
-- a mapping key a mapping merged key by key; a default of hb.io.null or {} accepts anything. Strings,
-- lists and mappings may be set to null (~). Errors name the source and the key:
--   "config.yaml:3:3: unknown config key 'train.lrr' (did you mean 'train.lr'?)"
--   "--set train.steps=abc: config key 'train.steps' expects an integer, got 'abc'"
--
--   hb.config.declare(tree) → defaults: a tree whose leaves may be hb.config.key(default, meaning
--     [, {min=, max=, choices=, check=}]); returns the plain defaults, remembering meanings and ranges
--   hb.config.copy(defaults) → a deep copy that keeps the declaration
--   hb.config.help(defaults [, opts]) → the --help text
--   hb.config.check_keys(t, known, who [, noun]) — every key of t must be a name of known (a list of
--     names, or a table keyed by them). An options table of an API call (noun nil):
--     "who: unknown key 'stesp' (did you mean 'steps'?)", prefixed by the caller's position; a model
--     config, attention or schedule spec (noun "config key"): "who: unknown config key 'window' (did
--     you mean 'window_size'?)", the text of the YAML path's error
--   hb.config.suggest(name, known) → the name of known nearest to name (the did-you-mean of all these
--     errors), or nil
--   hb.config.unknown_key(name, known [, noun]) → "unknown config key 'k' (did you mean 'x'?)", or the
--     message listing the known names when none is near
--   hb.config.merge(defaults, overlay [, source]) → a new config (overlay checked like a file)
--   hb.config.dump(cfg [, comment]) → YAML text (keys sorted; floats keep a '.', so they stay floats)
--   hb.config.save(path, cfg [, comment]) — atomic write of dump(cfg)
--   hb.config.load(path), hb.config.decode(text) — YAML to Lua (lua/lconfig.c)
--   hb.config.diff(recorded, now [, prefix]) → {"key = recorded (this run: now)", ...}: the keys whose values
--     differ between the settings a result was made with and this run's (nested mappings as dotted names,
--     lists compared whole, values written as JSON, a key missing on one side "unset"), sorted by key. What
--     every "made with other settings" error lists (paper_grid's records, hb.grid's stored results,
--     prepare_data's directories).
-- All errors are user errors (hb.user_error): the executable prints them without a traceback.
--
-- The module extends the binding's hb.config table (lconfig.c) and returns it.
local hb = require "hyblua.binding"
local user_error = require("hyblua.errors").user_error
do
  local config = hb.config
  local null = hb.io.null

  -- ---- values ----------------------------------------------------------------------------------------
  local function is_list(t)
    if type(t) ~= "table" then return false end
    local n = #t
    if n == 0 then return false end
    local count = 0
    for _ in pairs(t) do count = count + 1 end
    return count == n
  end
  local function is_empty(t) return type(t) == "table" and next(t) == nil end
  local function is_map(t) return type(t) == "table" and not is_empty(t) and not is_list(t) end

  local function deepcopy(v, depth)
    depth = depth or 0
    if type(v) ~= "table" then return v end
    if depth > 64 then error("config: nesting deeper than 64 (a cycle?)", 0) end
    local r = {}
    for k, x in pairs(v) do r[k] = deepcopy(x, depth + 1) end
    return r
  end

  -- how a value reads in an error message
  local function show(v)
    if v == null then return "null" end
    if type(v) == "string" then return "'" .. v .. "'" end
    if type(v) == "table" then return is_list(v) and "a list" or is_empty(v) and "{}" or "a mapping" end
    return tostring(v)
  end

  -- ---- key paths and suggestions -------------------------------------------------------------------------
  local function join(prefix, k) return prefix == "" and tostring(k) or prefix .. "." .. tostring(k) end

  local function all_paths(defaults, prefix, out)
    out = out or {}
    for k, v in pairs(defaults) do
      local p = join(prefix, k)
      out[#out + 1] = p
      if is_map(v) then all_paths(v, p, out) end
    end
    return out
  end

  -- edit distance counting a swap of two neighbours as one edit ("stesp" → "steps")
  local function distance(a, b)
    local d = {}
    for i = 0, #a do d[i] = { [0] = i } end
    for j = 0, #b do d[0][j] = j end
    for i = 1, #a do
      for j = 1, #b do
        local cost = a:byte(i) == b:byte(j) and 0 or 1
        d[i][j] = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
        if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
          d[i][j] = math.min(d[i][j], d[i - 2][j - 2] + 1)
        end
      end
    end
    return d[#a][#b]
  end

  local function sorted_keys(t)
    local ks = {}
    for k in pairs(t) do ks[#ks + 1] = k end
    table.sort(ks, function(a, b)
      if type(a) == type(b) then return a < b end
      return type(a) == "number"
    end)
    return ks
  end

  -- the known path nearest to `path`, or nil when none is near: whole paths and also last components are
  -- compared (a key put in the wrong section, or a top-level shorthand for a nested key); failing that, a
  -- key typed without its suffix finds the key it begins ("window" → "window_size"). This is the one
  -- did-you-mean of the library: config keys, options tables, hb.config.suggest.
  -- (The distance is quadratic in time and memory: names longer than MAX_NAME get no suggestion, and a
  -- candidate whose length alone puts it out of reach is not compared.)
  local MAX_NAME = 200
  local function nearest(path, paths)
    if #path > MAX_NAME then return nil end
    local best, bestd
    local last = path:match("([^.]*)$")
    local limit = math.max(1, #last // 3)
    for _, p in ipairs(paths) do
      local lp = p:match("([^.]*)$")
      local d = math.huge
      if #p <= MAX_NAME and math.abs(#path - #p) <= limit then d = distance(path, p) end
      if #lp <= MAX_NAME and math.abs(#last - #lp) <= limit then d = math.min(d, distance(last, lp)) end
      if d <= limit and (not bestd or d < bestd or (d == bestd and p < best)) then best, bestd = p, d end
    end
    if best then return best end
    local pre
    for _, p in ipairs(paths) do
      local lp = p:match("([^.]*)$")
      if #last >= 3 and lp:sub(1, #last + 1) == last .. "_" and (not pre or #p < #pre or (#p == #pre and p < pre)) then
        pre = p
      end
    end
    return pre
  end

  -- "unknown <noun> 'x' (did you mean 'y'?)", else the known names (label: "known keys", ...)
  local function unknown_message(noun, name, candidates, known, label)
    local msg = "unknown " .. noun .. " '" .. name .. "'"
    local s = nearest(name, candidates)
    if s then return msg .. " (did you mean '" .. s .. "'?)" end
    return msg .. " (" .. label .. ": " .. table.concat(known, ", ") .. ")"
  end

  local function unknown_key(path, root_defaults, parent_defaults, parent_path)
    local ks = {}
    for _, k in ipairs(sorted_keys(parent_defaults)) do ks[#ks + 1] = tostring(k) end
    local label = parent_path == "" and "known keys" or "keys of '" .. parent_path .. "'"
    return unknown_message("config key", path, all_paths(root_defaults, ""), ks, label)
  end

  -- the valid names of `known`, sorted, and their set: `known` is a list of names ({"steps", "lr"}) or a
  -- table keyed by them ({steps = true}, a defaults table; its values are not looked into)
  local function names_of(known)
    local names, set = {}, {}
    for k, v in pairs(known) do
      local name = math.type(k) == "integer" and type(v) == "string" and v or tostring(k)
      if not set[name] then set[name] = true; names[#names + 1] = name end
    end
    table.sort(names)
    return names, set
  end

  function config.suggest(name, known)
    if (type(name) ~= "string" and type(name) ~= "number") or type(known) ~= "table" then
      user_error("hb.config.suggest(name, known): a string and a list (or set) of names", 2)
    end
    return nearest(tostring(name), (names_of(known)))
  end

  function config.unknown_key(name, known, noun)
    if type(known) ~= "table" then user_error("hb.config.unknown_key(name, known [, noun]): known must be a table", 2) end
    local names = names_of(known)
    return unknown_message(noun or "config key", tostring(name), names, names, "known keys")
  end

  -- An options table (noun nil) is checked where a script calls an API, so its errors carry the position
  -- of the first caller outside the library ("run.lua:12: hb.train: unknown key ..."); a configuration
  -- (noun "config key") reads like the YAML path's errors, without a position.
  function config.check_keys(t, known, who, noun)
    if type(t) ~= "table" then return end
    if type(known) ~= "table" then user_error("hb.config.check_keys(t, known, who [, noun]): known must be a table", 2) end
    local names, set = names_of(known)
    local prefix = who and (who .. ": ") or ""
    local level = noun == nil and 2 or 0
    for _, k in ipairs(sorted_keys(t)) do
      if type(k) ~= "string" and noun == nil then
        user_error(string.format("%sunexpected positional value at [%s] (options are named: %s)", prefix, tostring(k),
          table.concat(names, ", ")), level)
      end
      if not set[tostring(k)] then
        user_error(prefix .. unknown_message(noun or "key", tostring(k), names, names, "known keys"), level)
      end
    end
  end

  -- ---- checking and merging -------------------------------------------------------------------------------
  -- A source says where a value came from: src.name ("config.yaml" or "--set a=b"), src.pos (key path →
  -- "file:line:col", from hb.config.load), src.raw (the text typed on the command line, if any).
  local function fail(src, path, msg)
    local where = src.pos and src.pos[path] or src.name
    user_error(where .. ": " .. msg)
  end

  -- ---- declarations: meanings and valid ranges ----------------------------------------------------------
  -- declared[defaults] = { [key path] = {help =, min =, max =, choices =, check =} } for defaults made by
  -- hb.config.declare (weak keys: a declaration lives as long as its defaults table)
  local declared = setmetatable({}, { __mode = "k" })
  local KeyDecl = {}
  KeyDecl.__index = KeyDecl

  function config.key(default, help, checks)
    if help ~= nil and type(help) ~= "string" then user_error("hb.config.key(default, meaning [, checks]): meaning must be a string", 2) end
    if checks ~= nil and type(checks) ~= "table" then user_error("hb.config.key: checks must be a table {min=, max=, choices=, check=}", 2) end
    checks = checks or {}
    config.check_keys(checks, { "min", "max", "choices", "check" }, "hb.config.key")
    return setmetatable({ default = default, help = help, min = checks.min, max = checks.max,
                          choices = checks.choices, check = checks.check }, KeyDecl)
  end
  function config.is_key(x) return getmetatable(x) == KeyDecl end

  function config.declare(tree)
    if type(tree) ~= "table" then user_error("hb.config.declare: expected a table of defaults", 2) end
    local docs = {}
    local function walk(t, prefix, depth)
      if depth > 64 then user_error("hb.config.declare: nesting deeper than 64 (a cycle?)") end
      local out = {}
      for k, v in pairs(t) do
        local p = join(prefix, k)
        if config.is_key(v) then
          docs[p] = v
          out[k] = deepcopy(v.default)
        elseif type(v) == "table" and v ~= null and not is_list(v) and not is_empty(v) then
          out[k] = walk(v, p, depth + 1)
        else
          out[k] = deepcopy(v)
        end
      end
      return out
    end
    local d = walk(tree, "", 0)
    declared[d] = docs
    return d
  end

  function config.copy(defaults)
    local c = deepcopy(defaults)
    declared[c] = declared[defaults]
    return c
  end

  -- the declaration of key `path` under `root`, if any
  function config.doc(root, path) return (declared[root] or {})[path] end

  -- the range rules of a declared key as text: ">= 1", "one of: a, b"
  local function range_text(doc)
    local parts = {}
    if doc.choices then parts[#parts + 1] = "one of: " .. table.concat(doc.choices, ", ") end
    if doc.min and doc.max then parts[#parts + 1] = doc.min .. " to " .. doc.max
    elseif doc.min then parts[#parts + 1] = ">= " .. doc.min
    elseif doc.max then parts[#parts + 1] = "<= " .. doc.max end
    return table.concat(parts, "; ")
  end

  -- check a value against its declaration (nulls always pass: they mean "not set")
  local function validate(root, path, v, src)
    local doc = declared[root] and declared[root][path]
    if not doc or v == null or v == nil then return end
    local items = is_list(v) and v or { v }
    for _, x in ipairs(items) do
      local bad
      if type(x) == "number" and ((doc.min and x < doc.min) or (doc.max and x > doc.max) or x ~= x) then bad = true end
      if doc.choices then
        local found = false
        for _, c in ipairs(doc.choices) do if c == x then found = true end end
        if not found then bad = true end
      end
      if bad then
        fail(src, path, string.format("config key '%s' must be %s, got %s", path, range_text(doc),
          (src.raw and #items == 1 and not is_list(v)) and ("'" .. src.raw .. "'") or show(x)))
      end
    end
    if doc.check then
      local msg = doc.check(v)
      if msg then fail(src, path, string.format("config key '%s' %s, got %s", path, msg,
        src.raw and ("'" .. src.raw .. "'") or show(v))) end
    end
  end

  local coerce, coerce_type

  -- merge the mapping `over` into the copy `into` (a table) under the defaults `def` at `path`
  local function merge_map(into, def, over, path, src, root)
    for _, k in ipairs(sorted_keys(over)) do
      local p = join(path, k)
      local d = nil
      if type(k) == "string" then d = def[k] end
      if d == nil then fail(src, p, unknown_key(p, root, def, path)) end
      into[k] = coerce(d, over[k], into[k], p, src, root)
    end
    return into
  end

  -- coerce_type, then the declared range of the key
  function coerce(def, v, cur, path, src, root)
    local out = coerce_type(def, v, cur, path, src, root)
    validate(root, path, out, src)
    return out
  end

  -- the value to store for key `path` whose default is `def`, given `v` (current value `cur`)
  function coerce_type(def, v, cur, path, src, root)
    local raw = src.raw
    local got = raw and ("'" .. raw .. "'") or show(v)
    if def == null or is_empty(def) then return deepcopy(v) end
    local dt = math.type(def) or type(def)
    if dt == "boolean" then
      if type(v) ~= "boolean" then fail(src, path, "config key '" .. path .. "' expects a boolean (true or false), got " .. got) end
      return v
    elseif dt == "integer" then
      if math.type(v) == "integer" then return v end
      if math.type(v) == "float" and math.tointeger(v) then return math.tointeger(v) end
      fail(src, path, "config key '" .. path .. "' expects an integer, got " .. got)
    elseif dt == "float" then
      if type(v) ~= "number" then fail(src, path, "config key '" .. path .. "' expects a number, got " .. got) end
      return v + 0.0
    elseif dt == "string" then
      if raw == "" then return "" end -- --key= : the empty string
      if v == null or type(v) == "string" then return v end
      if raw then return raw end -- typed on the command line: the text as typed
      if type(v) == "number" then return tostring(v) end
      fail(src, path, "config key '" .. path .. "' expects a string, got " .. got)
    elseif is_list(def) then
      if v == null then return v end
      if type(v) ~= "table" then v = { v } end
      if not is_list(v) and not is_empty(v) then
        fail(src, path, "config key '" .. path .. "' expects a list, got " .. got)
      end
      local proto = def[1]
      if type(proto) == "table" then return deepcopy(v) end -- lists of tables are taken as given
      local out = {}
      for i, x in ipairs(v) do out[i] = coerce_type(proto, x, nil, path .. "." .. i, { name = src.name, pos = src.pos }, root) end
      return out
    elseif is_map(def) then
      if v == null then return v end
      if not is_map(v) and not is_empty(v) then
        fail(src, path, "config key '" .. path .. "' expects a mapping, got " .. got)
      end
      return merge_map(type(cur) == "table" and cur or deepcopy(def), def, v, path,
        { name = src.name, pos = src.pos }, root)
    end
    return deepcopy(v) -- defaults of other types (functions...) are not checked
  end

  function config.merge(defaults, overlay, source, positions)
    if type(defaults) ~= "table" then user_error("hb.config.merge: defaults must be a table", 2) end
    local cfg = deepcopy(defaults)
    if overlay == nil or overlay == null or is_empty(overlay) then return cfg end
    if not is_map(overlay) then user_error((source or "config") .. ": top level must be a mapping") end
    return merge_map(cfg, defaults, overlay, "", { name = source or "config", pos = positions }, defaults)
  end

  -- set the dotted key `path` to the text `raw` (from the command line; src.name names the option)
  local function set_path(cfg, defaults, path, raw, srcname)
    local src = { name = srcname }
    local parts = {}
    for part in (path .. "."):gmatch("([^.]*)%.") do
      if part == "" then user_error(srcname .. ": empty component in key '" .. path .. "'") end
      parts[#parts + 1] = part
    end
    local def, node, prefix = defaults, cfg, ""
    for i = 1, #parts - 1 do
      local k = parts[i]
      local d = def[k]
      local p = join(prefix, k)
      if d == nil then fail(src, path, unknown_key(path, defaults, def, prefix)) end
      if is_empty(d) or d == null then
        -- a free-form section: anything goes below it; create the tables on the way
        local t = node
        for j = i, #parts - 1 do
          if type(t[parts[j]]) ~= "table" then t[parts[j]] = {} end
          t = t[parts[j]]
        end
        local ok, v = pcall(config.decode, raw, "--set " .. path)
        t[parts[#parts]] = ok and v or raw
        return
      end
      if not is_map(d) then
        local what = is_list(d) and "a list" or math.type(d) == "integer" and "an integer" or
          "a " .. (math.type(d) or type(d))
        fail(src, path, "config key '" .. p .. "' is " .. what .. ", it has no key '" .. parts[i + 1] .. "'")
      end
      if type(node[k]) ~= "table" then node[k] = deepcopy(d) end
      def, node, prefix = d, node[k], p
    end
    local last = parts[#parts]
    local d = def[last]
    if d == nil then fail(src, path, unknown_key(path, defaults, def, prefix)) end
    local ok, v = pcall(config.decode, raw, "--set " .. path)
    if not ok then
      -- text that is not YAML is a string (a string key takes it as typed; others report the mismatch)
      if type(d) ~= "string" and d ~= null and not is_empty(d) then user_error(v) end
      v = raw
    end
    src.raw = raw
    node[last] = coerce(d, v, node[last], path, src, defaults)
  end

  -- the defaults' key for a command-line spelling: exact, then with '-' as '_'
  local function resolve(defaults, key)
    local function exists(k)
      local t = defaults
      for part in k:gmatch("[^.]+") do
        if type(t) ~= "table" then return false end
        t = t[part]
        if t == nil then return false end
      end
      return true, t
    end
    if exists(key) then return key, select(2, exists(key)) end
    local alt = key:gsub("-", "_")
    if exists(alt) then return alt, select(2, exists(alt)) end
    return key, nil
  end

  -- is `a` a help request?
  local function is_help(a) return a == "-h" or a == "--help" end

  function config.parse_args(args, defaults, opts)
    if type(defaults) ~= "table" then user_error("hb.config.parse_args: defaults must be a table", 2) end
    if opts ~= nil and type(opts) ~= "table" then user_error("hb.config.parse_args: opts must be a table", 2) end
    opts = opts or {}
    config.check_keys(opts, { "positional", "usage", "description", "epilog" }, "hb.config.parse_args")
    args = args or {}
    local n = #args
    -- help first: it never runs anything, whatever else is on the command line
    for j = 1, n do
      if args[j] == "--" then break end
      if is_help(args[j]) then
        io.stdout:write(config.help(defaults, opts, args[0]))
        io.stdout:flush()
        -- a script run ends here, with status 0; an interactive session (REPL, hyblua -i) must not
        -- end, so there the help is followed by an error that stops the script instead
        if debug.getregistry()["hyblua.interactive"] then user_error("--help: see above; nothing was run") end
        os.exit(0, true)
      end
    end
    local files, sets, rest = {}, {}, {}
    local i = 1
    local function need_value(opt)
      i = i + 1
      if args[i] == nil then user_error("option " .. opt .. " needs a value") end
      return args[i]
    end
    while i <= n do
      local a = args[i]
      if a == "--" then
        for j = i + 1, n do rest[#rest + 1] = args[j] end
        break
      elseif a == "--config" then
        files[#files + 1] = need_value(a)
      elseif a:match("^%-%-config=") then
        files[#files + 1] = a:sub(10)
      elseif a == "--set" or a:match("^%-%-set=") then
        local kv = a == "--set" and need_value(a) or a:sub(7)
        local k, v = kv:match("^([^=]+)=(.*)$")
        if not k then user_error("--set " .. kv .. ": expected key=value") end
        sets[#sets + 1] = { k, v, "--set " .. kv }
      elseif a:match("^%-%-.") then
        local body = a:sub(3)
        local k, v = body:match("^([^=]+)=(.*)$")
        if k then
          sets[#sets + 1] = { k, v, a }
        else
          local key, def = resolve(defaults, body)
          local nkey, ndef = nil, nil
          if def == nil and body:match("^no[-_].") then nkey, ndef = resolve(defaults, body:sub(4)) end
          if type(def) == "boolean" then
            sets[#sets + 1] = { key, "true", a }
          elseif type(ndef) == "boolean" then
            sets[#sets + 1] = { nkey, "false", a }
          elseif def == nil then
            user_error(a .. ": " .. unknown_key(body, defaults, defaults, ""))
          else
            local v = need_value(a)
            sets[#sets + 1] = { key, v, a .. " " .. v }
          end
        end
      elseif a:match("^%-.") and not a:match("^%-%d") then
        user_error(a .. ": unknown option (options are --config FILE, --set KEY=VALUE, --KEY VALUE, -h/--help)")
      else
        if not opts.positional then
          local key, def = resolve(defaults, a)
          local hint = def ~= nil and (" (did you mean --" .. key .. (type(def) == "boolean" and "" or " VALUE") .. "?)")
            or " (this script takes no positional arguments; options start with --, see --help)"
          user_error("unexpected argument '" .. a .. "'" .. hint)
        end
        rest[#rest + 1] = a
      end
      i = i + 1
    end
    local cfg = deepcopy(defaults)
    for _, f in ipairs(files) do
      local ok, over, pos = pcall(config.load, f)
      if not ok then user_error(over) end
      if not is_map(over) and not is_empty(over) then user_error(f .. ": top level must be a mapping") end
      cfg = merge_map(cfg, defaults, over, "", { name = f, pos = pos }, defaults)
    end
    for _, s in ipairs(sets) do
      local key = resolve(defaults, s[1])
      set_path(cfg, defaults, key, s[2], s[3])
    end
    return cfg, rest
  end

  -- ---- YAML output -----------------------------------------------------------------------------------------
  local reserved = {}
  for _, w in ipairs { "null", "true", "false", "yes", "no", "on", "off", "y", "n", "~" } do reserved[w] = true end

  local function quote(s)
    if not utf8.len(s) then error("hb.config.dump: string is not valid UTF-8: " .. string.format("%q", s), 0) end
    return '"' .. s:gsub('[%c"\\]', function(c)
      local esc = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
      return esc[c] or string.format("\\x%02X", c:byte())
    end) .. '"'
  end

  local function str(s)
    if s:match("^[%a_][%w_%-%./]*$") and not reserved[s:lower()] then return s end
    return quote(s)
  end

  local function scalar(v)
    if v == null then return "null" end
    local t = math.type(v) or type(v)
    if t == "boolean" then return tostring(v) end
    if t == "integer" then return string.format("%d", v) end
    if t == "float" then
      if v ~= v then return ".nan" end
      if v == math.huge then return ".inf" end
      if v == -math.huge then return "-.inf" end
      local s
      for p = 15, 17 do
        s = string.format("%." .. p .. "g", v)
        if tonumber(s) == v then break end
      end
      -- keep it a float for every YAML reader: 1 → 1.0, 1e-05 → 1.0e-05
      if not s:find("[.n]") then
        local m, e = s:match("^([^e]*)(e.*)$")
        s = m and (m .. ".0" .. e) or (s .. ".0")
      end
      return s
    end
    if t == "string" then return str(v) end
    error("hb.config.dump: cannot write a " .. type(v), 0)
  end

  local function key(k)
    if type(k) == "number" then return quote(tostring(k)) end
    return str(k)
  end

  local function inline(v, depth)
    if depth > 64 then error("hb.config.dump: nesting deeper than 64 (a cycle?)", 0) end
    if type(v) ~= "table" then return scalar(v) end
    if is_empty(v) then return "{}" end
    local parts = {}
    if is_list(v) then
      for _, x in ipairs(v) do parts[#parts + 1] = inline(x, depth + 1) end
      return "[" .. table.concat(parts, ", ") .. "]"
    end
    for _, k in ipairs(sorted_keys(v)) do parts[#parts + 1] = key(k) .. ": " .. inline(v[k], depth + 1) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end

  local function has_tables(l)
    for _, x in ipairs(l) do if type(x) == "table" and not is_empty(x) then return true end end
    return false
  end

  local emit_list
  local function emit_map(out, t, ind, depth)
    if depth > 64 then error("hb.config.dump: nesting deeper than 64 (a cycle?)", 0) end
    local pad = string.rep(" ", ind)
    for _, k in ipairs(sorted_keys(t)) do
      local v = t[k]
      if is_map(v) then
        out[#out + 1] = pad .. key(k) .. ":"
        emit_map(out, v, ind + 2, depth + 1)
      elseif is_list(v) and has_tables(v) then
        out[#out + 1] = pad .. key(k) .. ":"
        emit_list(out, v, ind + 2, depth + 1)
      else
        out[#out + 1] = pad .. key(k) .. ": " .. inline(v, depth + 1)
      end
    end
  end
  function emit_list(out, l, ind, depth)
    local pad = string.rep(" ", ind)
    for _, v in ipairs(l) do
      if is_map(v) then
        local first = #out + 1
        emit_map(out, v, ind + 2, depth + 1)
        out[first] = pad .. "- " .. out[first]:sub(ind + 3)
      elseif is_list(v) and has_tables(v) then
        out[#out + 1] = pad .. "-"
        emit_list(out, v, ind + 2, depth + 1)
      else
        out[#out + 1] = pad .. "- " .. inline(v, depth + 1)
      end
    end
  end

  -- ---- comparing settings ----------------------------------------------------------------------------
  local function json_value(v) return (hb.io.encode_json({ v = v }):match("^{\"v\":(.*)}$")) end
  function config.diff(rec, now, prefix, diffs)
    prefix, diffs = prefix or "", diffs or {}
    local keys, seen = {}, {}
    for k in pairs(rec) do if not seen[k] then seen[k] = true; keys[#keys + 1] = k end end
    for k in pairs(now) do if not seen[k] then seen[k] = true; keys[#keys + 1] = k end end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local a, b, name = rec[k], now[k], prefix .. tostring(k)
      if is_map(a) and is_map(b) then
        config.diff(a, b, name .. ".", diffs)
      elseif not ((type(a) == "number" and type(b) == "number" and a == b) or
                  (a ~= nil and b ~= nil and json_value(a) == json_value(b))) then
        diffs[#diffs + 1] = string.format("%s = %s (this run: %s)", name, a == nil and "unset" or json_value(a),
          b == nil and "unset" or json_value(b))
      end
    end
    return diffs
  end

  function config.dump(cfg, comment)
    local out = {}
    if comment then
      for line in (comment .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = "# " .. line end
    end
    if is_map(cfg) then emit_map(out, cfg, 0, 0)
    elseif is_list(cfg) then emit_list(out, cfg, 0, 0)
    elseif is_empty(cfg) then out[#out + 1] = "{}"
    else out[#out + 1] = scalar(cfg) end
    return table.concat(out, "\n") .. "\n"
  end

  function config.save(path, cfg, comment)
    config.write_text(path, config.dump(cfg, comment))
  end

  -- ---- --help --------------------------------------------------------------------------------------------
  -- the leaf key paths of a defaults table, sorted (a mapping default is a section; {} and null are leaves)
  local function leaf_paths(t, prefix, out)
    for _, k in ipairs(sorted_keys(t)) do
      local v, p = t[k], join(prefix, k)
      if is_map(v) then leaf_paths(v, p, out) else out[#out + 1] = { p, v } end
    end
    return out
  end

  -- words of `text` wrapped to lines of at most `width` characters
  local function wrap(text, width)
    local lines, cur = {}, ""
    for w in text:gmatch("%S+") do
      if cur ~= "" and utf8.len(cur) + 1 + utf8.len(w) > width then lines[#lines + 1] = cur; cur = w
      else cur = cur == "" and w or cur .. " " .. w end
    end
    if cur ~= "" then lines[#lines + 1] = cur end
    return lines
  end

  local function pad(s, w) return s .. string.rep(" ", math.max(0, w - (utf8.len(s) or #s))) end

  function config.help(defaults, opts, script)
    opts = opts or {}
    local docs = declared[defaults] or {}
    local out = {}
    local pos = opts.positional and (" " .. (type(opts.positional) == "string" and opts.positional or "ARG...")) or ""
    out[#out + 1] = opts.usage or ("usage: hyblua " .. (script or "script.lua") .. " [options]" .. pos)
    if opts.description then
      out[#out + 1] = ""
      for _, l in ipairs(wrap(opts.description, 100)) do out[#out + 1] = l end
    end
    out[#out + 1] = ""
    out[#out + 1] = "Options:"
    for _, o in ipairs {
      { "--config FILE", "merge a YAML file over the defaults (repeatable, applied in order)" },
      { "--set KEY=VALUE", "set one key; VALUE is YAML: 3, 1e-3, true, ~ (null), [0, 3], {a: 1} (repeatable)" },
      { "--KEY=VALUE, --KEY VALUE", "shorthand for --set KEY=VALUE ('-' may stand for '_' in KEY)" },
      { "--FLAG, --no-FLAG", "set a boolean key to true, to false" },
      { "-h, --help", "show this help and exit (nothing runs, nothing is written)" },
    } do out[#out + 1] = "  " .. pad(o[1], 27) .. o[2] end
    out[#out + 1] = "Precedence: defaults < --config files < --set and --KEY options."
    out[#out + 1] = ""
    out[#out + 1] = "Keys (default, meaning):"
    local rows, wk, wd = {}, 0, 0
    for _, kv in ipairs(leaf_paths(defaults, "", {})) do
      local p, v = kv[1], kv[2]
      local shown = v == "" and '""' or inline(v, 0)
      if #shown > 24 then shown = shown:sub(1, 21) .. "..." end
      local doc = docs[p]
      local meaning = doc and doc.help or ""
      local range = doc and range_text(doc) or ""
      if range ~= "" then meaning = meaning .. (meaning ~= "" and " " or "") .. "(" .. range .. ")" end
      rows[#rows + 1] = { p, shown, meaning }
      wk, wd = math.max(wk, #p), math.max(wd, #shown)
    end
    wk, wd = math.min(wk, 30), math.min(wd, 24)
    local indent = 2 + wk + 2 + wd + 2
    for _, r in ipairs(rows) do
      local head = "  " .. pad(r[1], wk) .. "  " .. pad(r[2], wd) .. "  "
      local lines = wrap(r[3], math.max(40, 110 - indent))
      if #head > indent and #lines > 0 then out[#out + 1] = head:gsub("%s+$", ""); head = string.rep(" ", indent) end
      out[#out + 1] = (head .. (lines[1] or "")):gsub("%s+$", "")
      for j = 2, #lines do out[#out + 1] = string.rep(" ", indent) .. lines[j] end
    end
    if opts.epilog then
      out[#out + 1] = ""
      for para in (opts.epilog .. "\n"):gmatch("([^\n]*)\n") do
        if para == "" then out[#out + 1] = ""
        else
          -- a paragraph keeps its indentation; its continuation lines are indented two more
          local ind = para:match("^%s*")
          for j, l in ipairs(wrap(para, 100 - #ind - 2)) do out[#out + 1] = ind .. (j > 1 and "  " or "") .. l end
        end
      end
    end
    return table.concat(out, "\n") .. "\n"
  end

  return config
end
