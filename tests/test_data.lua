-- test_data.lua — hb.data: token shards (format, header checks, mmap reads), batches that depend only on
-- (seed, step) (determinism, resumability, a pinned stream), validation windows, text normalisation,
-- the document-level train/val split, prepare → meta.json, vocabulary checks, and clear errors.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local tmp = os.tmpname()
os.remove(tmp)
hb.data.mkdir(tmp)
local function rmtree(p)
  if hb.data.is_dir(p) then
    for _, n in ipairs(hb.data.list_dir(p)) do rmtree(p .. "/" .. n) end
  end
  os.remove(p)
end
local function write_raw(name, bytes)
  local f = assert(io.open(tmp .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
  return tmp .. "/" .. name
end
local function read_raw(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function list(t) return table.concat(t:tolist(), ",") end
local function rows_equal(a, b) return hb.io.encode_json(a:tolist()) == hb.io.encode_json(b:tolist()) end

-- ---- shard files ----------------------------------------------------------------------------------------
local seqpath = tmp .. "/seq.bin"
do
  local ids = hb.arange(0, 1000):long()
  T.is(hb.data.write_shard(seqpath, ids, 1000), 1000, "write_shard returns the token count")
  local raw = read_raw(seqpath)
  T.is(raw:sub(1, 4), "HBTK", "header: magic")
  T.is(#raw, 32 + 2 * 1000, "header 32 bytes + uint16 tokens")
  T.is(string.unpack("<I4", raw, 5), 1, "header: version 1")
  T.is(string.unpack("<I4", raw, 9), 2, "header: 2-byte tokens for vocab 1000")
  T.is(string.unpack("<I4", raw, 13), 1000, "header: vocab size")
  T.is(string.unpack("<I8", raw, 17), 1000, "header: count")
  local s = hb.data.open(seqpath)
  T.is(#s, 1000, "#shard")
  T.is(s:len(), 1000, "shard:len()")
  T.is(s:vocab_size(), 1000, "shard:vocab_size()")
  T.is(s:token_bytes(), 2, "shard:token_bytes()")
  T.is(tostring(s), "hyblua.Shard(" .. seqpath .. ", 1000 tokens, uint16, vocab 1000)", "__tostring")
  T.is(list(s:window(1, 5)), "0,1,2,3,4", "window(pos, n): 1-based positions, 0-based ids")
  T.is(list(s:window(996, 5)), "995,996,997,998,999", "window at the end")
  T.is(s:read(10, 0):size(1), 0, "an empty read")
  T.raises(function() s:window(997, 5) end, "window: tokens 997..1001 are outside 1..1000 of " .. seqpath, "window past the end")
  T.raises(function() s:window(0, 5) end, "outside 1..1000", "window at position 0")

  local big = tmp .. "/big.bin"
  hb.data.write_shard(big, { hb.tensor({ 1, 2 }, "int64"), hb.tensor({ 69999 }, "int32") }, 70000)
  local b = hb.data.open(big)
  T.ok(b:token_bytes() == 4 and #b == 3 and list(b:window(1, 3)) == "1,2,69999", "vocab > 65536: uint32 tokens; a list of tensors")
  b:close()
  T.is(tostring(b), "hyblua.Shard (closed)", "closed shard")
  T.raises(function() b:len() end, "shard has been closed", "using a closed shard")
  b:close()
  local unk = tmp .. "/unknown.bin"
  hb.data.write_shard(unk, hb.tensor({ { 5, 6 }, { 7, 8 } }, "int64"))
  local u = hb.data.open(unk)
  T.ok(u:vocab_size() == nil and u:token_bytes() == 2 and list(u:window(1, 4)) == "5,6,7,8",
    "no vocab_size: unknown vocabulary, width from the largest id, 2-d ids read in order")
  u:close()
  T.raises(function() hb.data.write_shard(tmp .. "/x.bin", hb.tensor({ 5, 300 }, "int64"), 256) end,
    "token 300 (position 1) is outside the vocabulary 0..255", "write_shard: id outside the vocabulary")
  T.raises(function() hb.data.write_shard(tmp .. "/x.bin", hb.tensor({ -1 }, "int64")) end,
    "token -1 (position 0) does not fit 2-byte tokens", "write_shard: negative id")
  T.raises(function() hb.data.write_shard(tmp .. "/x.bin", hb.zeros(3)) end,
    "ids is a float32 tensor, expected int64 or int32 ids", "write_shard: float tensor")
  T.raises(function() hb.data.write_shard(tmp .. "/x.bin", { hb.tensor({ 1 }, "int64"), "x" }) end,
    "ids[2] is a string, expected an integer tensor", "write_shard: bad list element")
  T.ok(not io.open(tmp .. "/x.bin", "rb"), "a failed write leaves no file")
  local leftovers = 0
  for _, n in ipairs(hb.data.list_dir(tmp)) do if n:find("%.tmp%.") then leftovers = leftovers + 1 end end
  T.is(leftovers, 0, "a failed write leaves no temporary file")
  T.raises(function() hb.data.write_shard("/nonexistent/dir/x.bin", hb.tensor({ 1 }, "int64")) end,
    "/nonexistent/dir/x.bin", "write_shard: unwritable path named")
end

-- ---- bad files -------------------------------------------------------------------------------------------
do
  T.raises(function() hb.data.open(tmp .. "/missing.bin") end,
    "hb.data.open: " .. tmp .. "/missing.bin: no such file; run `make data`", "missing shard: names the path, suggests make data")
  local p = write_raw("zip.bin", "PK\3\4" .. string.rep("\0", 60))
  T.raises(function() hb.data.open(p) end, p .. ": not a hyblua token shard (magic 'PK..', expected 'HBTK')", "bad magic")
  p = write_raw("short.bin", "HBTK")
  T.raises(function() hb.data.open(p) end, p .. ": not a hyblua token shard (4 bytes, shorter than the 32-byte header)",
    "file shorter than a header")
  local good = read_raw(seqpath)
  p = write_raw("trunc.bin", good:sub(1, #good - 3))
  T.raises(function() hb.data.open(p) end, p .. ": truncated shard: the header promises 1000 tokens of 2 bytes, the file holds 998",
    "truncated shard")
  p = write_raw("pad.bin", good .. "xx")
  T.raises(function() hb.data.open(p) end, p .. ": bad shard: 2 bytes after the 1000 tokens the header promises", "trailing bytes")
  p = write_raw("ver.bin", good:sub(1, 4) .. string.pack("<I4", 9) .. good:sub(9))
  T.raises(function() hb.data.open(p) end, p .. ": shard format version 9 is not supported (this build reads version 1)",
    "unknown version")
  p = write_raw("width.bin", good:sub(1, 8) .. string.pack("<I4", 3) .. good:sub(13))
  T.raises(function() hb.data.open(p) end, p .. ": bad shard header: token width 3 (expected 2 or 4)", "bad token width")
  T.raises(function() hb.data.open(tmp) end, tmp .. ": not a regular file", "a directory is not a shard")
end

-- ---- batches ----------------------------------------------------------------------------------------------
do
  local s = hb.data.open(seqpath)
  local b = s:batch(4, 8, 1234, 0)
  T.ok(b:dtype() == "int64" and b:size(1) == 4 and b:size(2) == 9, "batch(B, T, seed, k) → int64 [B, T+1]")
  local contiguous = true
  for r = 1, 4 do
    for t = 2, 9 do if b:get(r, t) ~= b:get(r, t - 1) + 1 then contiguous = false end end
  end
  T.ok(contiguous, "each row is T+1 consecutive tokens (inputs and shifted targets)")
  T.is(list(b:select(2, 1)), "116,313,512,752", "pinned stream: batch 0 of seed 1234 (changing it breaks resumed runs)")
  T.is(list(s:batch(4, 8, 1234, 99):select(2, 1)), "667,391,205,76", "pinned stream: batch 99")
  T.ok(rows_equal(b, s:batch(4, 8, 1234, 0)), "determinism: the same (seed, k) gives the same batch")
  T.ok(not rows_equal(b, s:batch(4, 8, 1235, 0)), "another seed gives another batch")
  T.ok(not rows_equal(b, s:batch(4, 8, 1234, 1)), "another step gives another batch")

  -- resumability: batch k is the same whether or not batches 0..k-1 were drawn, from any handle
  local run = {}
  for k = 0, 9 do run[k] = s:batch(3, 16, 7, k) end
  local fresh = hb.data.open(seqpath)
  local same = true
  for _, k in ipairs { 7, 3, 9, 0 } do
    if not rows_equal(fresh:batch(3, 16, 7, k), run[k]) then same = false end
  end
  T.ok(same, "resumability: batches drawn out of order from a fresh handle equal the original run")
  T.ok(rows_equal(s:batch(3, 16, 7, 123456789), fresh:batch(3, 16, 7, 123456789)), "random access to a far step")

  -- offsets cover 0..len-T-1 uniformly enough: every offset of a small shard appears
  local small = tmp .. "/small.bin"
  hb.data.write_shard(small, hb.arange(0, 20):long(), 256)
  local sm = hb.data.open(small)
  local seen, n = {}, 0
  for k = 0, 199 do
    for _, v in ipairs(sm:batch(8, 5, 1, k):select(2, 1):tolist()) do
      if not seen[v] then seen[v] = true; n = n + 1 end
      if v < 0 or v > 14 then n = -1000 end
    end
  end
  T.is(n, 15, "offsets take every value 0..len-T-1 and nothing else")
  T.is(list(sm:batch(1, 19, 5, 0):select(1, 1)), list(hb.arange(0, 20):long()), "T = len-1: the only batch is the whole shard")
  T.raises(function() sm:batch(1, 20, 5, 0) end, "20 tokens are too few for a sequence of T+1 = 21", "T too large")
  T.raises(function() sm:batch(0, 4, 5, 0) end, "B must be >= 1", "B < 1")
  T.raises(function() sm:batch(1, 4, 5, -1) end, "step k must be >= 0", "negative step")
  sm:close()

  -- fixed validation windows
  T.is(s:num_windows(300), 4, "num_windows = ceil((len-1)/T)")
  local got, shapes = {}, {}
  for i, w in s:windows(300) do
    shapes[#shapes + 1] = w:size(2)
    local l = w:select(1, 1):tolist()
    for j = (i == 1 and 1 or 2), #l do got[#got + 1] = l[j] end
  end
  T.is(table.concat(shapes, ","), "301,301,301,100", "windows: [1, T+1], the last one shorter")
  T.is(table.concat(got, ","), list(hb.arange(0, 1000):long()), "windows overlap by one token and cover the shard")
  s:close()
  fresh:close()
end

-- ---- text and the split -------------------------------------------------------------------------------------
do
  local N = hb.data.normalize
  T.is(N("a\r\nb\rc"), "a\nb\nc\n", "normalize: CRLF and CR → LF, final newline")
  T.is(N("a  \t\nb \n"), "a\nb\n", "normalize: trailing spaces stripped")
  T.is(N("a\n\n\n\n\nb\n\nc"), "a\n\nb\n\nc\n", "normalize: 3+ newlines → one blank line")
  T.is(N("\n\n  \nx\n\n\n"), "x\n", "normalize: no leading or trailing blank lines")
  T.is(N(" \n\t\n"), "", "normalize: blank text → empty")
  T.is(N("  indented\n"), "  indented\n", "normalize: leading spaces kept")

  local docs = {}
  for i = 1, 40 do docs[i] = { name = string.format("doc%02d", i), text = string.format("<%02d>", i) } end
  local tr, va = hb.data.split(docs, 0.1, 42)
  T.ok(#va == 4 and #tr == 36, "split: round(n * val_fraction) documents for validation")
  local tr2, va2 = hb.data.split(docs, 0.1, 42)
  local function names(l) local t = {} for i, d in ipairs(l) do t[i] = d.name end return table.concat(t, " ") end
  T.is(names(va2), names(va), "split: deterministic for a seed")
  local _, va3 = hb.data.split(docs, 0.1, 43)
  T.ok(names(va3) ~= names(va), "split: another seed, another split")
  local more = {}
  for i, d in ipairs(docs) do more[i] = d end
  for i = 41, 50 do more[#more + 1] = { name = string.format("doc%02d", i), text = "x" } end
  local tr4 = hb.data.split(more, 0.1, 42)
  local in_train = {}
  for _, d in ipairs(tr4) do in_train[d.name] = true end
  local moved = 0
  for _, d in ipairs(va) do if in_train[d.name] then moved = moved + 1 end end
  T.ok(moved <= 1, "split: adding documents moves at most a boundary document into train")
  local a, b = hb.data.split({ docs[1], docs[2] }, 0.01, 1)
  T.ok(#a == 1 and #b == 1, "split: at least one validation document when val_fraction > 0")
  a, b = hb.data.split({ docs[1] }, 0.5, 1)
  T.ok(#a == 1 and #b == 0, "split: never all documents")
  T.is(names(tr2), names(tr), "train order follows the input")
end

-- ---- prepare --------------------------------------------------------------------------------------------------
do
  local docs = {}
  for i = 1, 30 do
    docs[i] = { name = "speech" .. i, text = string.format("Speech %d.\r\nLine two   \n\n\n\nEnd of speech %d.", i, i) }
  end
  local out = tmp .. "/prep"
  local meta = hb.data.prepare { input = docs, out = out, val_fraction = 0.1, seed = 5 }
  T.ok(meta.vocab_size == 256 and meta.tokenizer.kind == "byte", "prepare: byte tokenizer by default")
  local onfile = hb.io.read_json(out .. "/meta.json")
  T.ok(onfile.vocab_size == 256 and onfile.train.tokens == meta.train.tokens, "prepare writes meta.json")
  T.ok(onfile.val_tokens == meta.val.tokens and onfile.val_bytes == meta.val.bytes, "meta has flat val_tokens/val_bytes")
  local d = hb.data.load(out, { vocab_size = 256 })
  T.ok(#d.train == meta.train.tokens and #d.val == meta.val.tokens, "token counts match the shards")
  T.is(meta.val.documents, 3, "3 of 30 documents for validation")
  local tok = d.tokenizer()
  local val_text = tok:decode(d.val:window(1, #d.val))
  local train_text = tok:decode(d.train:window(1, #d.train))
  local whole, leak = true, false
  for _, name in ipairs(meta.val.names) do
    local i = tonumber(name:match("%d+"))
    local body = string.format("Speech %d.\nLine two\n\nEnd of speech %d.\n", i, i)
    if not val_text:find(body, 1, true) then whole = false end
    if train_text:find(string.format("Speech %d.\n", i), 1, true) then leak = true end
  end
  T.ok(whole, "split by document: each validation document is whole and normalised in val.bin")
  T.ok(not leak, "split by document: no validation document appears in train.bin")
  T.is(meta.train.bytes + meta.val.bytes, 30 * #string.format("Speech %d.\nLine two\n\nEnd of speech %d.\n", 10, 10) -
    2 * 9 + 30, "bytes count the normalised text plus one newline separator per document")
  T.is(meta.train.bytes, meta.train.tokens, "byte tokenizer: bytes == tokens")
  local again = hb.data.prepare { input = docs, out = tmp .. "/prep2", val_fraction = 0.1, seed = 5 }
  T.is(table.concat(again.val.names, ","), table.concat(meta.val.names, ","), "prepare is deterministic for a seed")
  T.is(read_raw(tmp .. "/prep2/train.bin"), read_raw(out .. "/train.bin"), "identical train.bin for the same seed")

  -- BPE trained on the training documents; eos separates documents
  local bdocs = {}
  for i = 1, 60 do
    bdocs[i] = { name = "b" .. i, text = string.rep("the state of the union is strong and the people are free. ", 5) .. i }
  end
  local bm = hb.data.prepare { input = bdocs, out = tmp .. "/bpe", bpe_vocab = 300, seed = 1 }
  T.ok(bm.vocab_size == 300 and bm.tokenizer.kind == "bpe-bytelevel" and bm.separator == "eos", "prepare with bpe_vocab")
  local bd = hb.data.load(tmp .. "/bpe")
  local btok = bd.tokenizer()
  local ids = bd.val:window(1, #bd.val):tolist()
  T.is(ids[#ids], 299, "each document ends with eos")
  T.ok(bm.train.tokens < bm.train.bytes, "BPE: fewer tokens than bytes")
  T.ok(btok:decode(bd.train:window(1, 20)):find("the state", 1, true) ~= nil, "the saved tokenizer decodes the shard")
  T.ok(not io.open(tmp .. "/bpe/.bpe_corpus.txt", "rb"), "the BPE training corpus is removed")

  -- a directory input: *.txt files (recursively), a README beside them is skipped
  hb.data.mkdir(tmp .. "/dir/sub")
  write_raw("dir/a.txt", "first doc\n")
  write_raw("dir/sub/b.txt", "second doc\n")
  write_raw("dir/README.md", "not a document\n")
  local dm = hb.data.prepare { input = tmp .. "/dir", out = tmp .. "/dirout", val_fraction = 0 }
  T.ok(dm.train.documents == 2 and dm.val.documents == 0 and dm.train.bytes == 10 + 1 + 11 + 1, "directory input: *.txt files only")
  T.raises(function() hb.data.prepare { input = { tmp .. "/none.txt" }, out = tmp .. "/o" } end,
    "hb.data.prepare: cannot read '" .. tmp .. "/none.txt'", "prepare: missing input file named")
  T.raises(function() hb.data.prepare { input = { { name = "e", text = "  \n\n" } }, out = tmp .. "/o" } end,
    "no non-empty documents", "prepare: nothing to write")
  T.raises(function() hb.data.prepare { input = docs, out = tmp .. "/o", val_fraction = 1.5 } end,
    "val_fraction must be in [0, 1)", "prepare: bad val_fraction")
  local sm = hb.data.prepare { input = { { name = "x", text = "a\fb\fc" } }, out = tmp .. "/split", split = "\f", val_fraction = 0 }
  T.is(sm.train.documents, 3, "split= cuts a file into documents")
end

-- ---- vocabulary checks, missing data ---------------------------------------------------------------------------
do
  local meta = { vocab_size = 256, tokenizer = { name = "byte" } }
  T.ok(hb.data.check_vocab(meta, 256), "check_vocab: equal sizes")
  T.ok(hb.data.check_vocab(meta, 320), "check_vocab: a larger model vocabulary is fine")
  T.raises(function() hb.data.check_vocab(meta, 128) end,
    "vocabulary mismatch: the data was tokenized with 256 ids (tokenizer 'byte') but the model's vocab_size is 128",
    "check_vocab: model vocabulary too small")
  T.raises(function() hb.data.load(tmp .. "/prep", { vocab_size = 100 }) end,
    "vocabulary mismatch: " .. tmp .. "/prep/meta.json was tokenized with 256 ids", "load checks the vocabulary and names meta.json")
  T.raises(function() hb.data.check_vocab(tmp .. "/prep", 10) end, tmp .. "/prep/meta.json", "check_vocab on a directory")
  T.raises(function() hb.data.load(tmp .. "/nodata") end,
    "hb.data: " .. tmp .. "/nodata/meta.json not found; run `make data`", "missing data directory suggests make data")
  -- a shard whose header disagrees with meta.json
  hb.data.write_shard(tmp .. "/prep/val.bin", hb.tensor({ 1, 2, 3 }, "int64"), 512)
  T.raises(function() hb.data.load(tmp .. "/prep") end, "says vocab_size 256 but " .. tmp .. "/prep/val.bin holds vocab_size 512",
    "stale shard detected")
end

-- ---- the committed sample ---------------------------------------------------------------------------------------
do
  local s = hb.data.sample()
  T.ok(#s.train > 150000 and #s.val > 5000 and s.meta.vocab_size == 256, "hb.data.sample(): the CC0 sample prepared")
  T.ok(s.train:batch(2, 64, 1, 0):size(2) == 65, "sample batches")
end

-- recipes/prepare_data.lua: a prepared directory is reused only with the split it was prepared with
do
  local d = tmp .. "/recipe_prep"
  local cmd = "./hyblua recipes/prepare_data.lua --input tests/data/sample/texts --out " .. d
  local ok, out = T.run(cmd .. " --seed 5")
  T.ok(ok and T.exists(d .. "/meta.json"), "prepare_data prepares a directory", out)
  ok, out = T.run(cmd .. " --seed 5")
  T.ok(ok and out:find("already prepared", 1, true), "the same settings again: reused", out)
  ok, out = T.run(cmd .. " --seed 6 --val_fraction 0.2")
  T.ok(not ok and out:find("was prepared with other settings: seed = 5 (this run: 6), val_fraction = 0.05 (this run: 0.2)", 1, true),
    "another split: refused, naming what differs", out)
  ok, out = T.run(cmd .. " --seed 5 --input tests/data/sample/texts/")
  T.ok(ok and out:find("already prepared", 1, true), "the same input with a trailing slash is the same input", out)
  ok, out = T.run(cmd .. " --seed 5 --input tests/data/sample/texts/1800_john_adams_f.txt")
  T.ok(not ok and out:find('input = "tests/data/sample/texts" (this run: "tests/data/sample/texts/1800_john_adams_f.txt")', 1, true),
    "another input: refused", out)
  ok, out = T.run("./hyblua recipes/prepare_data.lua --input tests/data/sample/texts --out " .. tmp .. "/prep --seed 6")
  T.ok(not ok and out:find("seed = 5 (this run: 6)", 1, true), "a directory hb.data.prepare wrote (no prepare.yaml): its meta.json's split is checked", out)
  ok, out = T.run(cmd .. " --seed 6 --force")
  T.ok(ok and hb.config.load(d .. "/prepare.yaml").seed == 6, "--force prepares it again with the new split", out)
end

rmtree(tmp)
T.done()
