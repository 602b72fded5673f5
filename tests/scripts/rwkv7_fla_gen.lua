-- tests/scripts/rwkv7_fla_gen.lua — the models of tests/data/rwkv7_fla (see its README.md): small RWKV-7
-- models, pure and hybrid, with random weights (no term trivially 0 or 1: fla's own initialisation zeroes
-- o_proj and the channel mix's value, so at init the layers add nothing), written with save_pretrained,
-- plus ids.safetensors (B = 2, T = 70: one full chunk of 64 and a partial one).
--   ./hyblua tests/scripts/rwkv7_fla_gen.lua [out_dir]      then tests/scripts/rwkv7_fla_ref.py on each
local hb = require "hyblua"
local out = arg[1] or "tests/data/rwkv7_fla"
local base = { model_type = "rwkv7", hidden_size = 32, head_dim = 16, num_hidden_layers = 3, vocab_size = 64,
  hidden_ratio = 2, decay_low_rank_dim = 8, gate_low_rank_dim = 12, a_low_rank_dim = 8, v_low_rank_dim = 6 }
local function with(t)
  local c = {}
  for k, v in pairs(base) do c[k] = v end
  for k, v in pairs(t) do c[k] = v end
  return c
end
local cases = {
  { "pure", with {} },                                                     -- fla's defaults, use_l2warp
  { "hybrid", with { num_hidden_layers = 4, attn = { layers = { 2 }, num_heads = 4 } } },   -- LLAL
  -- ALLA: no RWKV-7 layer 0 (v_first = 0), per-layer value_dim, every switch off its default, a GQA
  -- windowed attention spec, tied embeddings, no l2_warp
  { "variant", with { num_hidden_layers = 4, head_dim = 8, value_dim = { 32, 64, 32, 32 }, norm_first = false,
    norm_bias = false, fuse_norm = false, intermediate_size = 40, tie_word_embeddings = true, use_l2warp = false,
    attn = { { layers = { 0 }, num_heads = 2 }, { layers = { 3 }, num_heads = 4, num_kv_heads = 2, window_size = 20 } } } },
}
local function randomize(m)
  hb.no_grad(function()
    for name, p in m:named_parameters() do
      local s = p:shape()
      local t
      if name:match("embeddings") then t = hb.randn(table.unpack(s))
      elseif name:match("norm%.weight$") then t = hb.randn(table.unpack(s)) * 0.2 + 1
      elseif name:match("bias$") then t = hb.randn(table.unpack(s)) * 0.3
      elseif name:match("%.x_[rwkvag]$") or name:match("ffn%.x_k$") then t = hb.rand(table.unpack(s))
      elseif name:match("k_k$") then t = hb.randn(table.unpack(s)) * 0.3 + 0.7
      elseif name:match("k_a$") then t = hb.randn(table.unpack(s)) * 0.3 + 1
      elseif name:match("r_k$") then t = hb.randn(table.unpack(s)) * 0.3
      else t = hb.randn(table.unpack(s)) / math.sqrt(s[#s]) end      -- weights: N(0, 1/fan_in)
      p:copy_(t)
    end
  end)
end
for k, c in ipairs(cases) do
  hb.manual_seed(100 + k)
  local m = hb.models.new(c[2])
  randomize(m)
  local dir = out .. "/" .. c[1]
  m:save_pretrained(dir)
  os.remove(dir .. "/generation_config.json")
  hb.io.save_safetensors(dir .. "/ids.safetensors", { input_ids = hb.randint(0, c[2].vocab_size, 2, 70, "int64") })
  print(dir, hb.schedule.describe(m.config), m:num_parameters())
end
