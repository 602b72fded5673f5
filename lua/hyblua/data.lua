-- hyblua/data.lua — preparing training data: text documents → normalised → split by document into
-- train/validation → tokenized → token shards (train.bin, val.bin) + meta.json + tokenizer.json.
-- The shards themselves (hb.data.open, :batch, :window) are in lua/ldata.c over io/data.c.
--
--   hb.data.prepare{input=, out=, tokenizer="byte", val_fraction=0.05, seed=1234, bpe_vocab=nil, split=nil}
--     input      a file, a directory (its *.txt files and those of its subdirectories, sorted by path;
--                so a README beside the texts is skipped), or a list whose entries are file names or
--                {name=, text=} tables; each file is one document unless `split` (a plain separator
--                string) cuts it into several
--     tokenizer  a hyblua.Tokenizer, "byte", or the path of a tokenizer.json; with bpe_vocab = N a
--                byte-level BPE of N ids is trained on the training documents instead
--     → meta (also written to out/meta.json)
--   Normalisation (hb.data.normalize): CRLF and CR → LF, trailing spaces and tabs removed from every
--   line, runs of 3+ newlines (2+ blank lines) → one blank line, no leading blank lines, exactly one
--   final newline; empty documents are dropped.
--   The split: documents are ordered by a 64-bit FNV-1a hash of (seed, document name) and the first
--   round(n * val_fraction) of them (at least 1 when val_fraction > 0 and n >= 2; never all) are the
--   validation set. It depends only on the seed and the names, so adding documents moves no others.
--   Each document is followed by the tokenizer's eos id when it has one, otherwise by a blank line
--   ("\n"), so documents never run into each other. bytes in meta count the UTF-8 bytes the tokens
--   stand for (separators included, eos excluded): bits per byte = loss_nats * tokens / bytes / ln 2.
--
--   hb.data.load(dir [, {vocab_size=}]) → {train=shard, val=shard, meta=meta, dir=dir, tokenizer=fn}
--   hb.data.check_vocab(meta | dir, vocab_size) — raises when the data's ids do not fit the model
--   hb.data.sample() → hb.data.load of the committed CC0 sample, prepared into data/sample on first use
--   hb.data.packed_batch(shard, B, T, seed, k, {eos=, context_len=}) → {ids = int64 [1, B·(T+1)],
--     cu_seqlens = int64 [N+1]}: micro-batch k as a packed batch (fla's cu_seqlens, m:loss takes it).
--     The rows are shard:batch(B, T, seed, k)'s (so deterministic and resumable like it, and the same
--     tokens as the unpacked batch); each row is cut after every eos id (the document separator
--     hb.data.prepare writes, meta.tokenizer.eos_id) and at its end, and pieces longer than context_len
--     (flame's context_len; default: no limit) are cut again. No token attends to, carries state from or
--     predicts a token of another document.
-- The module extends the binding's hb.data table (ldata.c: open, mkdir, list_dir, ...) and returns it.
local hb = require "hyblua.binding"
local user_error = require("hyblua.errors").user_error
local data = hb.data

-- ---- text ----------------------------------------------------------------------------------------------
function data.normalize(text)
  text = text:gsub("\r\n?", "\n")
  text = text:gsub("[ \t]+\n", "\n"):gsub("[ \t]+$", "")
  text = text:gsub("\n\n\n+", "\n\n"):gsub("^\n+", ""):gsub("\n+$", "")
  if text == "" then return text end
  return text .. "\n"
end

local function basename(path) return (path:gsub("/+$", ""):match("([^/]*)$")) end

local function read_file(path, who)
  local f, err = io.open(path, "rb")
  if not f then error(who .. ": cannot read '" .. path .. "': " .. tostring(err):gsub("^[^:]*: ", ""), 0) end
  local text, rerr = f:read("a")
  f:close()
  if not text then error(who .. ": cannot read '" .. path .. "': " .. tostring(rerr), 0) end
  return text
end

-- the documents of opts.input: a list of {name=, text=}
local function collect(input, split, who)
  local entries = {}
  if type(input) == "string" then
    if data.is_dir(input) then
      local function walk(dir, depth)
        if depth > 16 then return end
        for _, name in ipairs(data.list_dir(dir)) do
          local p = dir .. "/" .. name
          if name:sub(1, 1) ~= "." then
            if data.is_dir(p) then walk(p, depth + 1)
            elseif name:match("%.txt$") then entries[#entries + 1] = p end
          end
        end
      end
      walk((input:gsub("/+$", "")), 0)
      if #entries == 0 then error(who .. ": directory '" .. input .. "' has no *.txt files", 0) end
    else
      entries[1] = input
    end
  elseif type(input) == "table" then
    entries = input
  else
    error(who .. ": input must be a file, a directory or a list, got " .. type(input), 0)
  end
  local docs, seen = {}, {}
  local function add(name, text)
    local base, k = name, 1
    while seen[name] do k = k + 1; name = base .. "#" .. k end
    seen[name] = true
    docs[#docs + 1] = { name = name, text = text }
  end
  for i, e in ipairs(entries) do
    local name, text
    if type(e) == "string" then
      name, text = basename(e), read_file(e, who)
    elseif type(e) == "table" and type(e.text) == "string" then
      name, text = tostring(e.name or ("doc" .. i)), e.text
    else
      error(who .. ": input[" .. i .. "] must be a file name or {name=, text=}", 0)
    end
    if split then
      local pos, j = 1, 0
      while true do
        local a, b = text:find(split, pos, true)
        j = j + 1
        add(name .. ":" .. j, text:sub(pos, (a or #text + 1) - 1))
        if not a then break end
        pos = b + 1
      end
    else
      add(name, text)
    end
  end
  return docs
end

-- 64-bit FNV-1a (wrapping integer arithmetic)
local function fnv1a(s)
  local h = 0xcbf29ce484222325
  for i = 1, #s do h = (h ~ s:byte(i)) * 0x100000001b3 end
  return h
end
data.fnv1a = fnv1a

-- split docs (in input order) into train and val lists, deterministic in (seed, names)
function data.split(docs, val_fraction, seed)
  local n = #docs
  local order = {}
  for i, d in ipairs(docs) do order[i] = { i = i, h = fnv1a(tostring(seed) .. "\0" .. d.name) } end
  table.sort(order, function(a, b)
    if a.h ~= b.h then return math.ult(a.h, b.h) end
    return docs[a.i].name < docs[b.i].name
  end)
  local nval = math.floor(n * val_fraction + 0.5)
  if val_fraction > 0 and n >= 2 and nval < 1 then nval = 1 end
  if nval >= n then nval = n - 1 end
  if nval < 0 then nval = 0 end
  local is_val = {}
  for k = 1, nval do is_val[order[k].i] = true end
  local train, val = {}, {}
  for i, d in ipairs(docs) do
    if is_val[i] then val[#val + 1] = d else train[#train + 1] = d end
  end
  return train, val
end

-- ---- prepare -------------------------------------------------------------------------------------------------
local function write_split(path, docs, tok, vocab)
  local eos = tok:eos_id()
  local sep = eos and hb.tensor({ eos }, "int64") or tok:encode("\n")
  local sep_bytes = eos and 0 or 1
  local parts, tokens, bytes = {}, 0, 0
  for _, d in ipairs(docs) do
    local ids = tok:encode(d.text)
    parts[#parts + 1] = ids
    parts[#parts + 1] = sep
    tokens = tokens + ids:size(1) + sep:size(1)
    bytes = bytes + #d.text + sep_bytes
  end
  data.write_shard(path, parts, vocab)
  return { tokens = tokens, bytes = bytes, documents = #docs }
end

function data.prepare(opts)
  local who = "hb.data.prepare"
  if type(opts) ~= "table" then error(who .. ": expected a table of options", 2) end
  if opts.input == nil then error(who .. ": 'input' is required (files, a directory or a list)", 2) end
  if type(opts.out) ~= "string" then error(who .. ": 'out' (the output directory) is required", 2) end
  local frac = opts.val_fraction or 0.05
  if type(frac) ~= "number" or frac < 0 or frac >= 1 then
    error(who .. ": val_fraction must be in [0, 1), got " .. tostring(frac), 2)
  end
  local seed = opts.seed or 1234
  if math.type(seed) ~= "integer" then error(who .. ": seed must be an integer", 2) end

  local docs = {}
  for _, d in ipairs(collect(opts.input, opts.split, who)) do
    d.text = data.normalize(d.text)
    if d.text ~= "" then docs[#docs + 1] = d end
  end
  if #docs == 0 then error(who .. ": no non-empty documents in the input", 0) end
  local train, val = data.split(docs, frac, seed)

  local out = opts.out:gsub("/+$", "")
  data.mkdir(out)
  local tok, tok_name = opts.tokenizer or "byte", nil
  if opts.bpe_vocab then
    -- train on the training documents only, so validation text stays unseen
    local corpus = out .. "/.bpe_corpus.txt"
    local f = assert(io.open(corpus, "wb"))
    for _, d in ipairs(train) do f:write(d.text, "\n") end
    f:close()
    local ok, t = pcall(hb.tokenizer.train_bpe, { corpus }, opts.bpe_vocab)
    os.remove(corpus)
    if not ok then error(t, 0) end
    tok, tok_name = t, "bpe" .. opts.bpe_vocab
  elseif tok == "byte" then
    tok, tok_name = hb.tokenizer.byte(), "byte"
  elseif type(tok) == "string" then
    tok_name = tok
    tok = hb.tokenizer.load(tok)
  else
    tok_name = tok:kind()
  end
  local vocab = tok:vocab_size()
  tok:save(out .. "/tokenizer.json")

  local meta = {
    format = "hbtk",
    version = 1,
    hyblua = hb.version,
    vocab_size = vocab,
    tokenizer = { name = tok_name, kind = tok:kind(), vocab_size = vocab, file = "tokenizer.json",
      eos_id = tok:eos_id() or hb.io.null },
    separator = tok:eos_id() and "eos" or "newline",
    seed = seed,
    val_fraction = frac,
    normalization = "LF line endings; trailing spaces/tabs stripped; 3+ newlines -> 2; one final newline",
    train = write_split(out .. "/train.bin", train, tok, vocab),
    val = write_split(out .. "/val.bin", val, tok, vocab),
  }
  meta.train.file, meta.val.file = "train.bin", "val.bin"
  -- flat copies for readers that want one level (bits per byte = nats * val_tokens / val_bytes / ln 2)
  meta.train_tokens, meta.train_bytes = meta.train.tokens, meta.train.bytes
  meta.val_tokens, meta.val_bytes = meta.val.tokens, meta.val.bytes
  meta.val.names = {}
  for i, d in ipairs(val) do meta.val.names[i] = d.name end
  if #val == 0 then meta.val.names = hb.io.empty_array end
  hb.io.write_json(out .. "/meta.json", meta)
  return meta
end

-- ---- loading ------------------------------------------------------------------------------------------------
local function read_meta(dir)
  local path = dir:gsub("/+$", "") .. "/meta.json"
  if not hb.io.file_kind(path) then   -- a stat, never an open: a named pipe must not block
    error("hb.data: " .. path .. " not found; run `make data` to download and prepare the data " ..
      "(or hb.data.sample() for the small committed sample)", 0)
  end
  local meta = hb.io.read_json(path)
  -- meta.json comes from disk: check what load and check_vocab use before trusting it, and keep the
  -- files it names inside the data directory (no absolute paths, no "..")
  local function bad(what) error("hb.data: " .. path .. ": " .. what, 0) end
  local function show(v) return type(v) == "string" and "'" .. v:sub(1, 60) .. "'" or tostring(v) end
  if type(meta) ~= "table" then bad("expected a JSON object (the meta.json hb.data.prepare writes)") end
  if math.type(meta.vocab_size) ~= "integer" or meta.vocab_size < 1 then
    bad("'vocab_size' must be a positive integer, got " .. show(meta.vocab_size))
  end
  local function check_file(f, key)
    if f ~= nil and (type(f) ~= "string" or f == "" or f:sub(1, 1) == "/" or ("/" .. f .. "/"):find("/../", 1, true)) then
      bad(string.format("'%s' must be a file name inside the data directory, got %s", key, show(f)))
    end
  end
  for _, k in ipairs { "train", "val" } do
    if type(meta[k]) ~= "table" then bad(string.format("'%s' must be an object ({tokens, bytes, file, ...})", k)) end
    check_file(meta[k].file, k .. ".file")
  end
  if meta.tokenizer ~= nil and type(meta.tokenizer) ~= "table" then bad("'tokenizer' must be an object") end
  if meta.tokenizer then check_file(meta.tokenizer.file, "tokenizer.file") end
  return meta, path
end

function data.check_vocab(meta, vocab_size)
  local where = "the data"
  if type(meta) == "string" then
    local m, path = read_meta(meta)
    meta, where = m, path
  end
  if type(meta) ~= "table" or math.type(meta.vocab_size) ~= "integer" then
    error("hb.data.check_vocab: meta has no integer vocab_size", 2)
  end
  if math.type(vocab_size) ~= "integer" then error("hb.data.check_vocab: vocab_size must be an integer", 2) end
  if meta.vocab_size > vocab_size then
    local tn = type(meta.tokenizer) == "table" and meta.tokenizer.name or "?"
    error(string.format("vocabulary mismatch: %s was tokenized with %d ids (tokenizer '%s') but the model's " ..
      "vocab_size is %d; token ids up to %d would index past the embedding. Use vocab_size >= %d or " ..
      "re-prepare the data with the model's tokenizer", where, meta.vocab_size, tn, vocab_size,
      meta.vocab_size - 1, meta.vocab_size), 0)
  end
  return true
end

function data.load(dir, opts)
  opts = opts or {}
  dir = dir:gsub("/+$", "")
  local meta, mpath = read_meta(dir)
  if opts.vocab_size then
    local ok, e = pcall(data.check_vocab, meta, opts.vocab_size)
    if not ok then error(e:gsub("^vocabulary mismatch: the data", "vocabulary mismatch: " .. mpath), 0) end
  end
  local d = { dir = dir, meta = meta, train = data.open(dir .. "/" .. (meta.train.file or "train.bin")),
    val = data.open(dir .. "/" .. (meta.val.file or "val.bin")) }
  for _, k in ipairs { "train", "val" } do
    local v = d[k]:vocab_size()
    if v and v ~= meta.vocab_size then
      error(string.format("hb.data.load: %s says vocab_size %d but %s holds vocab_size %d (stale files?)", mpath,
        meta.vocab_size, d[k]:path(), v), 0)
    end
  end
  -- the tokenizer the shards were made with
  function d.tokenizer()
    if meta.tokenizer and meta.tokenizer.kind == "byte" then return hb.tokenizer.byte() end
    return hb.tokenizer.load(dir .. "/" .. (meta.tokenizer and meta.tokenizer.file or "tokenizer.json"))
  end
  return d
end

-- ---- packed batches ---------------------------------------------------------------------------------------
function data.packed_batch(shard, B, T, seed, k, opts)
  local who = "hb.data.packed_batch"
  opts = opts or {}
  if type(opts) ~= "table" then user_error(who .. ": opts must be a table {eos=, context_len=}", 2) end
  for key in pairs(opts) do
    if key ~= "eos" and key ~= "context_len" then
      user_error(string.format("%s: unknown option '%s' (it takes eos, context_len)", who, tostring(key)), 2)
    end
  end
  local eos, clen = opts.eos, opts.context_len
  if math.type(eos) ~= "integer" or eos < 0 then
    user_error(who .. ": eos must be the tokenizer's end-of-document id (a non-negative integer; the data's " ..
      "meta.tokenizer.eos_id), got " .. tostring(eos), 2)
  end
  if clen ~= nil and (math.type(clen) ~= "integer" or clen < 1) then
    user_error(who .. ": context_len must be an integer >= 1, got " .. tostring(clen), 2)
  end
  local rows = shard:batch(B, T, seed, k):tolist()
  local flat, cu = {}, { 0 }
  local function cut() if #flat > cu[#cu] then cu[#cu + 1] = #flat end end
  for _, row in ipairs(rows) do
    for _, t in ipairs(row) do
      flat[#flat + 1] = t
      if t == eos or (clen and #flat - cu[#cu] >= clen) then cut() end
    end
    cut()
  end
  return { ids = hb.tensor({ flat }, "int64"), cu_seqlens = hb.tensor(cu, "int64") }
end

-- the repository root (from where this file lives), for the committed sample
local function repo_root()
  local p = package.searchpath("hyblua.data", package.path)
  return p and p:match("^(.*)/lua/hyblua/data%.lua$") or "."
end

function data.sample(opts)
  local root = repo_root()
  local out = root .. "/data/sample"
  local f = io.open(out .. "/meta.json", "rb")
  if f then f:close() else
    data.prepare { input = root .. "/tests/data/sample", out = out, tokenizer = "byte", val_fraction = 0.15,
      seed = 1234 }
  end
  return data.load(out, opts)
end

return data
