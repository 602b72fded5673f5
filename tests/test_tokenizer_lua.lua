-- test_tokenizer_lua.lua — hb.tokenizer: the byte tokenizer, BPE training, save/load, GPT-2 files,
-- tensor and table forms of encode/decode, error messages, release.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

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

-- ---- byte tokenizer -----------------------------------------------------------------------------------
do
  local tok = hb.tokenizer.byte()
  T.is(tostring(tok), "hyblua.Tokenizer(byte, vocab 256)", "__tostring")
  T.is(tok:vocab_size(), 256, "byte: vocab 256")
  T.is(tok:kind(), "byte", "byte: kind")
  T.ok(tok:bos_id() == nil and tok:eos_id() == nil, "byte: no bos/eos")
  local ids = tok:encode("héllo")
  T.is(ids:dtype(), "int64", "encode → int64 tensor")
  T.ok(ids:dim() == 1 and ids:size(1) == 6, "encode → shape [n] (n bytes)")
  T.is(ids:get(2), 0xC3, "ids are byte values (0-based values)")
  T.is(tok:decode(ids), "héllo", "decode(encode(x)) == x")
  local all = {}
  for b = 0, 255 do all[#all + 1] = string.char(b) end
  all = table.concat(all)
  T.is(tok:decode(tok:encode(all)), all, "every byte round-trips (NUL, invalid UTF-8)")
  local tbl = tok:encode_table("abc")
  T.ok(#tbl == 3 and tbl[1] == 97 and math.type(tbl[1]) == "integer", "encode_table → list of integers")
  T.is(tok:decode({ 104, 105 }), "hi", "decode a table")
  T.is(tok:decode(hb.tensor({ { 104, 105 }, { 33, 33 } }, "int32")), "hi!!", "decode a 2-d int32 tensor in order")
  T.is(tok:decode(tok:encode("hello"):narrow(1, 2, 3)), "ell", "decode a view")
  local empty = tok:encode("")
  T.ok(empty:dim() == 1 and empty:size(1) == 0, "encode('') → shape [0]")
  T.is(tok:decode({}), "", "decode({}) → ''")
  T.is(tok:id_to_token(65), "A", "id_to_token")
  T.is(tok:id_to_token(256), nil, "id_to_token out of range → nil")
  T.is(tok:id_to_token(-1), nil, "id_to_token(-1) → nil")
  T.raises(function() tok:decode({ 300 }) end, "decode: id 300 at position 0 is out of range (vocabulary size 256)",
    "decode: id out of range")
  T.raises(function() tok:decode({ 1, 2.5 }) end, "decode: element 2 is a non-integer number, expected an integer id",
    "decode: non-integer element")
  T.raises(function() tok:decode({ 1, "x" }) end, "decode: element 2 is string, expected an integer id",
    "decode: string element")
  T.raises(function() tok:decode(hb.zeros(2)) end, "decode: ids must be an int64 or int32 tensor, got float32",
    "decode: float tensor")
  T.raises(function() tok:decode("abc") end, "expected an integer tensor or a list of ids, got string", "decode: a string")
  T.raises(function() tok:encode(nil) end, "string expected, got nil", "encode: nil")
  T.raises(function() tok.encode(nil, "x") end, "hyblua.Tokenizer expected, got nil", "a method on a non-tokenizer")
  tok:close()
  T.is(tostring(tok), "hyblua.Tokenizer (released)", "closed tokenizer prints as released")
  T.raises(function() tok:encode("x") end, "tokenizer has been released (closed)", "using a closed tokenizer")
  tok:close()
  T.ok(true, "close is idempotent")
  do
    local t2 <close> = hb.tokenizer.byte()
    T.is(t2:vocab_size(), 256, "<close> variable")
  end
end

-- ---- BPE training, save, load -------------------------------------------------------------------------
do
  local words = { "the", "union", "congress", "nation", "people", "state", "government", "year", "public",
    "country", "war", "peace", "law", "treaty", "commerce" }
  local parts, seed = {}, 12345
  for _ = 1, 4000 do
    seed = (seed * 1103515245 + 12345) % 2147483648
    parts[#parts + 1] = words[seed % #words + 1]
    if seed % 7 == 0 then parts[#parts + 1] = "." end
  end
  local corpus = write("corpus.txt", table.concat(parts, " ") .. "\n")
  local bpe = hb.tokenizer.train_bpe({ corpus }, 300)
  T.is(bpe:vocab_size(), 300, "train_bpe: vocab_size")
  T.is(bpe:kind(), "bpe-bytelevel", "train_bpe: byte-level BPE")
  T.is(bpe:eos_id(), 299, "train_bpe: eos is the last id")
  T.is(bpe:id_to_token(299), "<|endoftext|>", "train_bpe: <|endoftext|>")
  T.is(bpe:token_to_id("<|endoftext|>"), 299, "token_to_id")
  T.is(bpe:token_to_id("no such token"), nil, "token_to_id of an unknown token → nil")
  local text = "the people of the union and the congress: peace, commerce; ünïcode \0 \255 done\n"
  local ids = bpe:encode(text)
  T.is(bpe:decode(ids), text, "BPE round trip (any bytes)")
  local plain = "the government of the nation"
  T.ok(bpe:encode(plain):size(1) < #plain, "BPE compresses its training text")
  T.is(bpe:decode(bpe:encode_table(plain)), plain, "decode(encode_table(x))")
  local again = hb.tokenizer.train_bpe(corpus, 300)
  T.is(table.concat(again:encode_table(text), ","), table.concat(bpe:encode_table(text), ","),
    "train_bpe is deterministic (a single file name works too)")
  local saved = tmp .. ".tokenizer.json"
  files[#files + 1] = saved
  bpe:save(saved)
  local loaded = hb.tokenizer.load(saved)
  T.is(loaded:vocab_size(), 300, "load: vocab size")
  T.is(table.concat(loaded:encode_table(text), ","), table.concat(bpe:encode_table(text), ","),
    "save → load encodes identically")
  T.is(loaded:decode(loaded:encode(text)), text, "loaded tokenizer round trip")
  T.raises(function() hb.tokenizer.train_bpe({ corpus }, 256) end, "hb.tokenizer.train_bpe: vocab_size must be in 257..",
    "train_bpe: vocab too small")
  T.raises(function() hb.tokenizer.train_bpe({ tmp .. ".missing" }, 300) end, tmp .. ".missing", "train_bpe: missing file named")
  T.raises(function() hb.tokenizer.train_bpe({ corpus, 3 }, 300) end, "files[2] is a number, expected a file name",
    "train_bpe: bad file list")
  T.raises(function() hb.tokenizer.train_bpe({ corpus }, 100000) end, "hb.tokenizer.train_bpe: the corpus allows only",
    "train_bpe: too few pairs for the vocab")
  T.raises(function() bpe:save("/nonexistent/dir/tok.json") end, "save: /nonexistent/dir/tok.json", "save: bad path")
end

-- ---- load errors, GPT-2 files -------------------------------------------------------------------------
do
  T.raises(function() hb.tokenizer.load(tmp .. ".nope.json") end, "hb.tokenizer.load: " .. tmp .. ".nope.json",
    "load: missing file named")
  local bad = write("bad.json", "{\"model\": {\"type\": \"WordPiece\"}}")
  T.raises(function() hb.tokenizer.load(bad) end, "hb.tokenizer.load: " .. bad, "load: unsupported model named")

  -- a tiny GPT-2 style vocabulary: the 256 byte symbols of GPT-2's byte→unicode map, two merges
  local function b2u(b)
    if (b >= 33 and b <= 126) or (b >= 161 and b <= 172) or (b >= 174 and b <= 255) then return utf8.char(b) end
    local n = 0
    for x = 0, b - 1 do
      if not ((x >= 33 and x <= 126) or (x >= 161 and x <= 172) or (x >= 174 and x <= 255)) then n = n + 1 end
    end
    return utf8.char(256 + n)
  end
  local enc = {}
  for b = 0, 255 do enc[b2u(b)] = b end
  enc["Ġt"] = 256
  enc["Ġth"] = 257
  enc["<|endoftext|>"] = 258
  local ej = write("encoder.json", hb.io.encode_json(enc))
  local vb = write("vocab.bpe", "#version: 0.2\nĠ t\nĠt h\n")
  local g = hb.tokenizer.gpt2(ej, vb)
  T.is(g:vocab_size(), 259, "gpt2: vocab size")
  T.ok(g:bos_id() == 258 and g:eos_id() == 258, "gpt2: <|endoftext|> is bos and eos")
  T.is(table.concat(g:encode_table(" the"), ","), "257,101", "gpt2: merges applied")
  T.is(g:id_to_token(257), "Ġth", "gpt2: id_to_token shows the vocabulary form")
  T.is(table.concat(g:encode_table("a<|endoftext|>"), ","), "97,258", "special tokens parsed by default")
  g:set_parse_special(false)
  T.ok(#g:encode_table("a<|endoftext|>") > 2, "set_parse_special(false) encodes them as text")
  T.is(g:decode(g:encode(" the thin")), " the thin", "gpt2 round trip")
  T.raises(function() hb.tokenizer.gpt2(ej, tmp .. ".none.bpe") end, "hb.tokenizer.gpt2: " .. tmp .. ".none.bpe",
    "gpt2: missing merges file named")
end

-- ---- the real GPT-2 files (tests/data/fetch_gpt2.sh), when present ----------------------------------------
do
  local dir = os.getenv("HB_GPT2_DIR") or "tests/data/gpt2"
  local f = io.open(dir .. "/encoder.json", "rb")
  if not f then
    T.skip("gpt2: real vocabulary", "no " .. dir .. "/encoder.json (sh tests/data/fetch_gpt2.sh)")
  else
    f:close()
    local g = hb.tokenizer.gpt2(dir .. "/encoder.json", dir .. "/vocab.bpe")
    T.is(g:vocab_size(), 50257, "gpt2: 50257 ids")
    T.is(table.concat(g:encode_table("Hello world"), ","), "15496,995", "gpt2: 'Hello world' → 15496, 995")
    T.is(g:eos_id(), 50256, "gpt2: <|endoftext|> = 50256")
    local ids = g:encode(" The State of the Union is strong.\n")
    T.is(g:decode(ids), " The State of the Union is strong.\n", "gpt2: round trip through a tensor")
  end
end

for _, f in ipairs(files) do os.remove(f) end
T.done()
