-- test_hostile_files.lua — files and values that are not what they claim (issue 17, items 6, 7, 11 and
-- 14): a named pipe (FIFO) or a device in place of a checkpoint, shard, tokenizer, config or meta file is
-- refused at once, before any blocking read; reads are bounded; a sharded index cannot reach outside its
-- folder; token ids are checked against the shard's vocabulary; integer weights, NUL in JSON strings,
-- writes through expanded views and float token ids are errors. (Item 8, overlapping data_offsets, is in
-- tests/test_safetensors.c.)
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local HY = arg[-1] or "./hyblua"
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function read(p) local f = io.open(p, "rb"); if not f then return nil end local s = f:read("a"); f:close(); return s end

-- run a chunk in a child hyblua with a 30 s guard (on the branch point these blocked forever); returns
-- its exit status and what it printed
local function child(code)
  local f = io.open(tmp .. "/child.lua", "w")
  f:write('local hb = require "hyblua"\nlocal D = ' .. string.format("%q", tmp) .. '\n' .. code)
  f:close()
  local p = io.popen(string.format("timeout -s KILL 30 %s %s/child.lua 2>&1; echo \"rc=$?\"", HY, tmp))
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

-- ---- item 7: named pipes and devices ------------------------------------------------------------------
-- a small valid checkpoint and data folder to swap files of
local m = hb.models.new({ model_type = "gla", hidden_size = 16, num_hidden_layers = 1, num_heads = 2, vocab_size = 32 })
m:save_pretrained(tmp .. "/model")
hb.data.prepare { input = "tests/data/sample", out = tmp .. "/data", tokenizer = "byte", val_fraction = 0.1, seed = 1 }
local function fifo_in(dir, name)
  local d = tmp .. "/" .. name:gsub("[/.]", "_")
  os.execute(string.format("rm -rf %s && cp -r %s %s && rm -f %s/%s && mkfifo %s/%s", q(d), q(dir), q(d), q(d), name, q(d), name))
  return d
end
local cases = {
  { "config.json of a checkpoint", fifo_in(tmp .. "/model", "config.json"), "hb.load_pretrained(%q)", "config.json: not a regular file (a named pipe)" },
  { "model.safetensors", fifo_in(tmp .. "/model", "model.safetensors"), "hb.load_pretrained(%q)", "model.safetensors: not a regular file (a named pipe)" },
  { "a token shard (train.bin)", fifo_in(tmp .. "/data", "train.bin"), "hb.data.load(%q)", "train.bin: not a regular file (a named pipe)" },
  { "meta.json", fifo_in(tmp .. "/data", "meta.json"), "hb.data.load(%q)", "meta.json: not a regular file (a named pipe)" },
  { "hb.data.open of a FIFO", fifo_in(tmp .. "/data", "val.bin") .. "/val.bin", "hb.data.open(%q)", "val.bin: not a regular file (a named pipe)" },
}
-- a sharded checkpoint whose second shard is a FIFO
do
  local d = tmp .. "/sharded"
  hb.data.mkdir(d)
  local all = hb.io.load_safetensors(tmp .. "/model/model.safetensors")
  local names, wm, a = {}, {}, {}
  for n in pairs(all) do names[#names + 1] = n end
  table.sort(names)
  for i, n in ipairs(names) do
    if i == 1 then a[n] = all[n]; wm[n] = "model-00001-of-00002.safetensors" else wm[n] = "model-00002-of-00002.safetensors" end
  end
  hb.io.save_safetensors(d .. "/model-00001-of-00002.safetensors", a, { format = "pt" })
  os.execute(string.format("mkfifo %s/model-00002-of-00002.safetensors && cp %s/model/config.json %s/", q(d), q(tmp), q(d)))
  hb.io.write_json(d .. "/model.safetensors.index.json", { metadata = {}, weight_map = wm })
  cases[#cases + 1] = { "a shard of a sharded checkpoint", d, "hb.load_pretrained(%q)", "model-00002-of-00002.safetensors: not a regular file (a named pipe)" }
end
os.execute(string.format("mkfifo %s/config.yaml %s/tokenizer.json", q(tmp), q(tmp)))
cases[#cases + 1] = { "tokenizer.json", tmp .. "/tokenizer.json", "hb.tokenizer.load(%q)", "tokenizer.json: not a regular file (a named pipe)" }
cases[#cases + 1] = { "a YAML config", tmp .. "/config.yaml", "hb.config.load(%q)", "config.yaml: not a regular file (a named pipe)" }
for _, c in ipairs(cases) do
  local rc, out = child(string.format("local ok, e = pcall(function() return %s end)\nprint(ok, e)",
    string.format(c[3], c[2])))
  T.ok(rc == 0 and out:find("false", 1, true) and out:find(c[4], 1, true),
    "a named pipe as " .. c[1] .. " is refused at once, naming it", out:sub(1, 400))
end
-- a device and an over-large file: reads are bounded
local dz = tmp .. "/devzero"
os.execute(string.format("cp -r %s %s && rm %s/config.json && ln -s /dev/zero %s/config.json", q(tmp .. "/model"), q(dz), q(dz), q(dz)))
local rc, out = child(string.format("print(pcall(hb.load_pretrained, %q))", dz))
T.ok(rc == 0 and out:find("config.json: not a regular file (a character device)", 1, true), "config.json linked to /dev/zero is refused, not read without end", out)
local big = tmp .. "/big"
os.execute(string.format("cp -r %s %s && truncate -s 1100M %s/config.json", q(tmp .. "/model"), q(big), q(big)))
rc, out = child(string.format("print(pcall(hb.load_pretrained, %q))", big))
T.ok(rc == 0 and out:find("config.json: file is 1153433600 bytes, more than the limit of 1073741824", 1, true),
  "a 1.1 GB (sparse) config.json is refused before it is read", out)

-- ---- item 6 from Lua: a sharded index may not name files outside its folder ------------------------------
do
  local d = tmp .. "/escape"
  os.execute(string.format("cp -r %s %s && mkdir -p %s/other && mv %s/model.safetensors %s/other/x.safetensors", q(tmp .. "/model"),
    q(d), q(tmp), q(d), q(tmp)))
  local wm = {}
  for n in pairs(hb.io.load_safetensors(tmp .. "/other/x.safetensors")) do wm[n] = "../other/x.safetensors" end
  hb.io.write_json(d .. "/model.safetensors.index.json", { metadata = {}, weight_map = wm })
  local ok, e = pcall(hb.load_pretrained, d)
  T.ok(not ok and tostring(e):find("names shard '../other/x.safetensors', which is not the name of a file in the checkpoint directory", 1, true),
    "load_pretrained refuses an index whose shard lies outside the checkpoint folder ('..')", e)
  for n in pairs(wm) do wm[n] = "passwd.safetensors" end
  hb.io.write_json(d .. "/model.safetensors.index.json", { metadata = {}, weight_map = wm })
  os.execute(string.format("ln -s /etc/passwd %s/passwd.safetensors", q(d)))
  ok, e = pcall(hb.load_pretrained, d)
  T.ok(not ok and tostring(e):find("is a link to a file outside the checkpoint directory", 1, true) and not tostring(e):find("root", 1, true),
    "and a shard that is a link to /etc/passwd, without echoing a byte of it", e)
end

-- ---- item 11: token ids are checked against the shard's vocabulary -------------------------------------
do
  local p = tmp .. "/ids.bin"
  hb.data.write_shard(p, hb.tensor({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, "int64"), 256)
  local f = io.open(p, "r+b"); f:seek("set", 32 + 2 * 4); f:write(string.char(0x2c, 0x01)); f:close()  -- id 300 at offset 4
  local s = hb.data.open(p)
  local want = "token 300 at offset 4 is outside the shard's vocabulary 0..255"
  T.raises(function() return s:window(1, 10) end, want, "a window holding an id beyond the vocabulary is refused")
  T.raises(function() return s:batch(2, 8, 0, 0) end, want, "so is a training batch")
  T.raises(function() return s:read(5, 1) end, want, "and a plain read")
  T.ok(pcall(s.read, s, 1, 4), "reads of valid ids still work")
end

-- ---- item 14: what used to be accepted silently ----------------------------------------------------------
do
  -- integer data for a float parameter
  local d = tmp .. "/i32"
  os.execute(string.format("cp -r %s %s", q(tmp .. "/model"), q(d)))
  local t = hb.io.load_safetensors(d .. "/model.safetensors")
  t["model.norm.weight"] = hb.ones({ 16 }):int()
  hb.io.save_safetensors(d .. "/model.safetensors", t, { format = "pt" })
  T.raises(function() return hb.load_pretrained(d) end,
    "tensor 'model.norm.weight' holds integer data (int32); a parameter needs F32, BF16, F16 or F64",
    "safetensors I32 data for a float parameter is refused")
  -- an added token with an embedded NUL
  local tj = tmp .. "/nul_tokenizer.json"
  local f = io.open(tj, "w")
  f:write('{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}, "added_tokens": [{"id": 2, "content": "<x\\u0000y>", "special": true}]}')
  f:close()
  T.raises(function() return hb.tokenizer.load(tj) end, "a string holds a NUL character (\\u0000) at line 1",
    "an added token with an embedded NUL is refused, not cut")
  T.raises(function() return hb.io.decode_json('["a\\u0000b"]') end, "a string holds a NUL character", "decode_json refuses \\u0000 too")
  -- copy_ / add_ into an expanded view
  local e = hb.zeros({ 1 }):expand({ 3 })
  T.raises(function() e:copy_(hb.tensor({ 1, 2, 3 })) end, "copy_: the destination is an expanded view",
    "copy_ into an expanded view is refused")
  T.raises(function() e:add_(hb.tensor({ 1, 2, 3 })) end, "add_: the destination is an expanded view", "add_ too")
  -- float token ids
  T.raises(function() return m:forward(hb.tensor({ { 1.7, 2.2 } })) end,
    "embedding: index must be an integer tensor (int64 or int32), got float32", "float token ids are refused, not truncated")
  T.raises(function() return hb.randn({ 4, 2 }):index_select(1, hb.tensor({ 0.9 })) end, "index must be an integer tensor",
    "and so are float indices of index_select")
end

os.execute("rm -rf " .. q(tmp))
T.done()
