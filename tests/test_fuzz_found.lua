-- tests/test_fuzz_found.lua — the exact messages for bad inputs that fuzzing found or prompted checks
-- for (docs/reliability.md, "Bad-input catalogue"); the reproducers themselves are replayed by
-- tests/test_fuzz_replay.lua. Config sizes and types, the model-size guard, meta.json, JSON numbers,
-- and tokenizers with an empty token.
local T = dofile("tests/tap.lua")
local hb = require "hyblua"

local tmp = os.tmpname()
os.remove(tmp)
hb.data.mkdir(tmp)
local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- ---- config.json → model ------------------------------------------------------------------------------
local base = { model_type = "gla", hidden_size = 16, num_hidden_layers = 1, vocab_size = 8, num_heads = 2 }
local function with(t)
  local c = {}
  for k, v in pairs(base) do c[k] = v end
  for k, v in pairs(t) do c[k] = v end
  return c
end
T.raises(function() hb.models.new(1) end, "config: expected a table (a JSON object in config.json), got 1",
  "a config that is not an object (fuzz: not_an_object.json)")
T.raises(function() hb.models.new(with { num_hidden_layers = 1000000000 }) end,
  "config: the model would have at least 1.229e+13 parameters (45776.4 GiB in float32), more than " ..
  "hb.models.max_params = 1.718e+10", "a huge model is refused before any allocation")
local old = hb.models.max_params
hb.models.max_params = 1000
T.raises(function() hb.models.new(base) end, "more than hb.models.max_params = 1000", "max_params can be lowered")
hb.models.max_params = old
T.ok(hb.models.new(base):num_parameters() > 0, "the default limit builds small models")
T.raises(function() hb.models.new(with { vocab_size = 1e300 }) end, "config: 'vocab_size' must be an integer (got 1e+300)",
  "an integral float beyond int64 (fuzz: need_int_huge_float.json)")
T.raises(function() hb.models.new(with { vocab_size = 1 << 40 }) end,
  "config: 'vocab_size' = 1099511627776 is too large (at most 2147483647)", "sizes are capped at 2^31 - 1")
T.raises(function() hb.models.new(with { hidden_size = "16" }) end, "config: 'hidden_size' must be an integer (got '16')",
  "a string size")
T.raises(function() hb.models.new(with { expand_k = "x" }) end,
  "config: 'expand_k' must be a number in [0, 2147483647] (got 'x')", "a string ratio")
T.raises(function() hb.models.new(with { expand_k = 0 }) end,
  "config: key_dim (hidden_size * expand_k) = 0 must be in [2, 2147483647]", "a ratio giving no key dims")
T.raises(function() hb.models.new(with { use_short_conv = true, conv_size = 0 }) end, "config: 'conv_size' must be >= 1 (got 0)",
  "conv_size 0")
T.raises(function() hb.models.new(with { clamp_min = "x" }) end, "config: clamp_min must be a number or null (got 'x')",
  "a gla clamp_min that is not a number")
T.raises(function() hb.models.new(with { attn = 5 }) end, "config: attn must be an object or a list of objects (got 5)",
  "attn of the wrong type")
T.raises(function() hb.models.new(with { attn = { layers = { 0 }, num_heads = 2, num_kv_heads = 0 } }) end,
  "config: attn[1].num_kv_heads must be a positive integer or null (got 0)", "attn num_kv_heads 0")
T.raises(function() hb.models.new(with { custom_mixers = 3 }) end,
  "config: custom_mixers must be a list of {mixer =, layers =} (got 3)", "custom_mixers of the wrong type")
T.raises(function() hb.models.new(with { model_type = {} }) end, "config: unknown model_type an object (supported:",
  "a model_type that is not a string")
T.raises(function()
  hb.models.new { model_type = "transformer", hidden_size = 16, num_hidden_layers = 1, vocab_size = 8, num_heads = 2,
    window_size = -3 }
end, "config: window_size must be a positive integer or null (got -3)", "a negative window")
T.raises(function()
  hb.models.new { model_type = "transformer", hidden_size = 6, num_hidden_layers = 1, vocab_size = 8, num_heads = 2 }
end, "config: head dim 3 must be even (rotary embeddings)", "an odd attention head dim fails in the config, not in forward")

-- ---- JSON numbers ------------------------------------------------------------------------------------------
write(tmp .. "/n.json", '{"big": 4294967296, "huge": 1e300, "frac": 2.5, "whole": 10000.0}')
local j = hb.io.read_json(tmp .. "/n.json")
T.ok(math.type(j.big) == "integer" and j.big == 4294967296, "integers beyond 2^31 stay integers")
T.ok(math.type(j.huge) == "float" and j.huge == 1e300, "1e300 stays a float (no out-of-range conversion)")
T.ok(math.type(j.frac) == "float" and math.type(j.whole) == "integer", "fractions are floats, whole numbers integers")

-- ---- YAML integers beyond int64 become floats of the right value (0o/0b ones used to read as 0) ----------
local y = hb.config.decode("a: 0o7777777777777777777777777\nb: -0b" .. string.rep("1", 65) .. "\nc: 0xFFFFFFFFFFFFFFFFFF\n")
T.ok(y.a == 8.0 ^ 25 - 1 and y.b == -(2.0 ^ 65 - 1) and y.c == 2.0 ^ 72 - 1, "YAML 0o/0b/0x integers beyond int64 keep their value")

-- ---- meta.json -----------------------------------------------------------------------------------------------
local dir = tmp .. "/data"
hb.data.mkdir(dir)
hb.data.write_shard(dir .. "/train.bin", hb.tensor({ 1, 2, 3 }, "int64"), 256)
hb.data.write_shard(dir .. "/val.bin", hb.tensor({ 1, 2 }, "int64"), 256)
local mpath = dir .. "/meta.json"
local function meta_case(text, msg, desc)
  write(mpath, text)
  T.raises(function() hb.data.load(dir) end, "hb.data: " .. mpath .. ": " .. msg, desc)
end
meta_case('{"vocab_size": "256"}', "'vocab_size' must be a positive integer, got '256'", "meta.json: vocab_size a string")
meta_case('{"vocab_size": 256}', "'train' must be an object ({tokens, bytes, file, ...})", "meta.json: no train entry")
meta_case('{"vocab_size": 256, "train": {"file": "/etc/passwd"}, "val": {}}',
  "'train.file' must be a file name inside the data directory, got '/etc/passwd'", "meta.json: an absolute path")
meta_case('{"vocab_size": 256, "train": {"file": "a/../../x.bin"}, "val": {}}',
  "'train.file' must be a file name inside the data directory, got 'a/../../x.bin'", "meta.json: a path with ..")
meta_case('{"vocab_size": 256, "train": {}, "val": {}, "tokenizer": 3}', "'tokenizer' must be an object",
  "meta.json: tokenizer of the wrong type")
write(mpath, '{"vocab_size": 256, "train": {}, "val": {}}')
T.ok(#hb.data.load(dir).train == 3, "meta.json: the minimal valid file loads")

-- ---- tokenizers with an empty token ------------------------------------------------------------------------
-- sentencepiece style with "" in the vocabulary (fuzz: empty_token_sp_overread read past the string)
local sp = [==[{"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
  "model": {"type": "BPE", "vocab": {"": 0, "a": 1, "\u2581": 2, "\u2581a": 3}, "merges": ["\u2581 a"]}}]==]
write(tmp .. "/sp.json", sp)
local tok = hb.tokenizer.load(tmp .. "/sp.json")
T.is(table.concat(tok:encode_table(" a a"), ","), "3,3", "a vocabulary with an empty token loads and encodes")
-- a merge whose left half is the empty token must be saved so that it loads back (fuzz: save_empty_merge_half)
local bl = [==[{"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
  "model": {"type": "BPE", "vocab": {"": 0, "a": 1, "b": 2, "ab": 3}, "merges": [["", "a"], ["a", "b"]]}}]==]
write(tmp .. "/bl.json", bl)
local t1 = hb.tokenizer.load(tmp .. "/bl.json")
t1:save(tmp .. "/bl2.json")
local t2 = hb.tokenizer.load(tmp .. "/bl2.json")
T.is(table.concat(t2:encode_table("abab"), ","), table.concat(t1:encode_table("abab"), ","),
  "a merge with an empty half survives save + load")

os.execute("rm -rf '" .. tmp .. "'")
T.done()
