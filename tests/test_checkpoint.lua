-- test_checkpoint.lua — save_pretrained/load_pretrained round trips, bf16 copies, sharded checkpoints,
-- and clear errors (never crashes) for malformed checkpoints and unsupported configs.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
local tmp = os.tmpname(); os.remove(tmp); os.execute("mkdir -p " .. tmp)
local src = T.fixtures .. "/stress/gla_gqa_conv_tied"
local function maxabs(t) return t:abs():max():item() end

local m = hb.load_pretrained(src)
m:save_pretrained(tmp .. "/rt")
local m2 = hb.load_pretrained(tmp .. "/rt")
local exact = true
for name, p in m:named_parameters() do
  exact = exact and (p - m2.params[name]):abs():max():item() == 0
end
T.ok(exact, "save_pretrained → load_pretrained is bit-exact")
local cfg = hb.io.read_json(tmp .. "/rt/config.json")
T.ok(cfg.model_type == "gla" and cfg.architectures[1] == "GLAForCausalLM" and cfg.tie_word_embeddings == true, "config.json keeps model_type, architectures, tie_word_embeddings")
local st = hb.io.load_safetensors(tmp .. "/rt/model.safetensors")
T.ok(st["lm_head.weight"] == nil and st["model.embeddings.weight"] ~= nil, "tied embeddings: only model.embeddings.weight is stored")

-- bf16 copy of a fixture loads and matches within bf16 rounding
local fx = T.fixtures .. "/fla/gated_deltanet"
local mf = hb.load_pretrained(fx)
mf:save_pretrained(tmp .. "/bf16", { dtype = "bf16" })
local _, _, dtypes = hb.io.load_safetensors(tmp .. "/bf16/model.safetensors")
T.is(dtypes["model.embeddings.weight"], "BF16", "bf16 checkpoint stores BF16 tensors")
local mb = hb.load_pretrained(tmp .. "/bf16")
local worst = 0
for name, p in mf:named_parameters() do
  local q = mb.params[name]
  local rel = maxabs(p - q) / math.max(maxabs(p), 1e-30)
  worst = math.max(worst, rel)
end
T.ok(worst <= 2 ^ -8, "bf16 weights equal the fp32 ones within bf16 rounding", string.format("max rel %.2e", worst))
local refs = hb.io.load_safetensors(fx .. "/refs.safetensors")
local lb = hb.no_grad(function() return mb:forward(refs.input_ids) end)
local e = maxabs(lb - refs.logits) / maxabs(refs.logits)
T.ok(e < 0.05, "bf16 model's logits track the fp32 reference", string.format("rel %.2e", e))

-- sharded checkpoint through model.safetensors.index.json
os.execute("mkdir -p " .. tmp .. "/shard")
local all = hb.io.load_safetensors(fx .. "/model.safetensors")
local a, b, wm, i = {}, {}, {}, 0
local names = {}
for n in pairs(all) do names[#names + 1] = n end
table.sort(names)
for _, n in ipairs(names) do
  i = i + 1
  if i % 2 == 0 then a[n] = all[n]; wm[n] = "model-00001-of-00002.safetensors" else b[n] = all[n]; wm[n] = "model-00002-of-00002.safetensors" end
end
hb.io.save_safetensors(tmp .. "/shard/model-00001-of-00002.safetensors", a, { format = "pt" })
hb.io.save_safetensors(tmp .. "/shard/model-00002-of-00002.safetensors", b, { format = "pt" })
hb.io.write_json(tmp .. "/shard/model.safetensors.index.json", { metadata = { total_size = 0 }, weight_map = wm })
os.execute("cp " .. fx .. "/config.json " .. tmp .. "/shard/")
local ms = hb.load_pretrained(tmp .. "/shard")
local ls = hb.no_grad(function() return ms:forward(refs.input_ids) end)
T.ok(maxabs(ls - refs.logits) / maxabs(refs.logits) <= 1e-4, "sharded checkpoint loads and matches the reference logits")

-- malformed checkpoints: clear errors, no crash
local function copy_dir(to)
  os.execute("rm -rf " .. to .. "; mkdir -p " .. to .. "; cp " .. fx .. "/config.json " .. fx .. "/model.safetensors " .. to .. "/")
end
local function rd(p) local f = io.open(p, "rb"); local s = f:read("a"); f:close(); return s end
local function wr(p, s) local f = io.open(p, "wb"); f:write(s); f:close() end
local d = tmp .. "/bad"
copy_dir(d)
local blob = rd(d .. "/model.safetensors")
wr(d .. "/model.safetensors", blob:sub(1, #blob - 100))
T.raises(function() hb.load_pretrained(d) end, "exceed the data section", "truncated safetensors")
copy_dir(d)
wr(d .. "/model.safetensors", blob:sub(1, 8) .. "{not json" .. blob:sub(18))
T.raises(function() hb.load_pretrained(d) end, "header is not valid JSON", "bad header JSON")
copy_dir(d)
local hlen = string.unpack("<I8", blob)
local header = blob:sub(9, 8 + hlen)
local hj = hb.io.decode_json(header)
for name, e in pairs(hj) do
  if name ~= "__metadata__" then e.data_offsets = { e.data_offsets[1] + 1000000000, e.data_offsets[2] + 1000000000 }; break end
end
local bad = hb.io.encode_json(hj)
wr(d .. "/model.safetensors", string.pack("<I8", #bad) .. bad .. blob:sub(9 + hlen))
T.raises(function() hb.load_pretrained(d) end, "data offsets", "offsets out of range")
copy_dir(d)
local c = hb.io.read_json(d .. "/config.json"); c.hidden_size = c.hidden_size * 2; c.head_dim = c.head_dim
hb.io.write_json(d .. "/config.json", c)
T.raises(function() hb.load_pretrained(d) end, "but the config implies", "shape mismatch with the config")
copy_dir(d)
c = hb.io.read_json(d .. "/config.json"); c.num_hidden_layers = 1
hb.io.write_json(d .. "/config.json", c)
T.raises(function() hb.load_pretrained(d) end, "unexpected tensor 'model.layers.1.", "extra tensors are named")
copy_dir(d)
c = hb.io.read_json(d .. "/config.json"); c.num_hidden_layers = 3
hb.io.write_json(d .. "/config.json", c)
T.raises(function() hb.load_pretrained(d) end, "tensor 'model.layers.2.attn_norm.weight' is missing", "missing tensors are named")
copy_dir(d)
c = hb.io.read_json(d .. "/config.json"); c.model_type = "mamba"
hb.io.write_json(d .. "/config.json", c)
T.raises(function() hb.load_pretrained(d) end, "unknown model_type 'mamba'", "unknown model_type")
copy_dir(d)
c = hb.io.read_json(d .. "/config.json"); c.attnres_block_size = 2
hb.io.write_json(d .. "/config.json", c)
T.raises(function() hb.load_pretrained(d) end, "attnres_block_size = 2 is not implemented", "attnres_block_size rejected")
T.raises(function() hb.models.new { model_type = "gla", hidden_size = 32, num_hidden_layers = 1, num_heads = 2, vocab_size = 16, feature_map = "relu" } end,
  "feature_map = 'relu' is not implemented", "feature_map rejected")
T.raises(function() hb.models.new { model_type = "gla", hidden_size = 32, num_hidden_layers = 2, num_heads = 2, vocab_size = 16, attn = { layers = { 5 }, num_heads = 2 } } end,
  "attn[1].layers: 5 is not a layer index in [0, 2)", "bad hybrid layer index")
wr(d .. "/config.json", "{\"model_type\": ")
T.raises(function() hb.load_pretrained(d) end, "invalid JSON", "malformed config.json")
T.raises(function() hb.load_pretrained(tmp .. "/nope") end, "config.json not found", "missing directory")
T.raises(function() hb.models.new { model_type = "gla", hidden_size = 30, num_hidden_layers = 1, num_heads = 4, vocab_size = 16 } end,
  "not divisible by num_heads 4", "indivisible heads")
os.execute("rm -rf " .. tmp)
T.done()
