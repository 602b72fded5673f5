-- test_summary.lua — what the REPL prints for a model, a decode cache and m.config
-- (lua/hyblua/summary.lua through __tostring; the pty test in tests/test_repl.c drives a stub module).
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local m = hb.models.new({
  model_type = "gated_deltanet", hidden_size = 32, num_hidden_layers = 4, num_heads = 2, head_dim = 16,
  vocab_size = 64, attn = hb.schedule.ratio(3, { num_heads = 2 }),
}, { seed = 1 })
local s = tostring(m)
T.like(s, "hyblua.Model(gated_deltanet, 4 layers: LLLA)", "model: type, depth and the layer stack")
T.like(s, "parameters 133,388: embeddings 2,048, attention 4,096, mixers 26,604, mlp 98,304, norms 288, lm_head 2,048",
  "model: parameters by group")
local total = 0
for n in s:match("parameters [%d,]+: ([^\n]*)"):gmatch("([%d,]+)") do total = total + tonumber((n:gsub(",", ""))) end
T.is(total, m:num_parameters(), "the groups add up to num_parameters")
local eff = hb.eval.efficiency(m, { N = 1 })
T.like(s, string.format("state %.1f KiB per sequence, KV %d B per token", (eff.state_bytes + eff.conv_state_bytes) / 1024,
  eff.kv_bytes_at_N), "model: decode memory as hb.eval.efficiency counts it")
T.like(s, "dtype float32, mode chunk", "model: dtype and mode")
m:set_mode("recurrent")
T.like(tostring(m), "mode recurrent", "the mode shown is the current one")
T.like(tostring(hb.models.new({ model_type = "transformer", hidden_size = 16, num_hidden_layers = 2, num_heads = 2,
  window_size = 8, vocab_size = 32 })), "(windowed layers stop growing at 8 tokens)", "a window is mentioned")

local c = m:new_cache(2)
m:prefill(hb.randint(0, 64, 2, 9), c)
local cs = tostring(c)
T.like(cs, "hyblua.Cache(B = 2, pos = 9, 37.5 KiB)", "cache: rows, position, bytes")
T.like(cs, "layer 0 (gated_deltanet): k_conv1d [2, 3, 32], q_conv1d [2, 3, 32], state [2, 2, 16, 32], v_conv1d [2, 3, 64], 11.0 KiB",
  "cache: a linear layer's state shapes and bytes")
T.like(cs, "layer 3 (attention): k [2, 64, 2, 16], v [2, 64, 2, 16], pos 9, 4.5 KiB", "cache: the KV cache")

local cfg = tostring(m.config)
T.like(cfg, "hyblua config {", "m.config prints as a table")
T.like(cfg, '  model_type                = "gated_deltanet"', "one key = value a line")
T.ok(not cfg:find("_mlp", 1, true), "derived fields are left out")
T.is(m.config.hidden_size, 32, "m.config is still a plain table for reading")
local round = hb.io.decode_json(hb.io.encode_json(m:to_config()))
T.is(round.model_type, "gated_deltanet", "to_config still serialises")
T.done()
