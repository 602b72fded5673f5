-- tests/test_window_cache.lua — a sliding-window attention layer decodes from a ring of its window
-- (issue 17, item 15): the KV cache stays at window_size positions however long the decode, its bytes
-- are what hb.eval.efficiency reports, and the logits are those of the full forward.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

-- the issue's model: GLA 6:1 (layer 6 of 7 is attention) with window_size 32; prompt 8, then 2000 steps
local W, P, N = 32, 8, 2000
local m = hb.models.new({ model_type = "gla", hidden_size = 32, num_hidden_layers = 7, num_heads = 2, vocab_size = 64,
  attn = { layers = { 6 }, num_heads = 2, window_size = W } }, { seed = 3 })
local ids = hb.randint(0, 64, 1, P + N)
local cache = m:new_cache(1)
local logits = { m:prefill(ids:narrow(2, 1, P), cache) }
local peak, at = 0, {}
for t = 1, N - 1 do
  logits[t + 1] = m:step(ids:narrow(2, P + t, 1), cache)
  peak = math.max(peak, cache:nbytes())
  if t == W or t == N - 1 then at[t] = cache:nbytes() end
end
local lc = cache.layers[7]
T.is(lc.k:size(2), W, "the attention layer's K cache holds window_size = 32 positions after 2000 steps (2048 before)")
T.is(lc.v:size(2), W, "... and its V cache")
local eff = hb.eval.efficiency(m, { N = P + N - 1 })
T.is(cache:nbytes(), eff.cache_bytes_at_N, "cache:nbytes() = hb.eval.efficiency's cache_bytes_at_N after 2007 positions")
T.is(peak, eff.cache_bytes_at_N, "... and it never held more while decoding (bounded by the window)")
T.is(at[W], at[N - 1], "the cache's bytes stop growing once the window is full")
T.is(eff.layers[7].kv_bytes, 2 * W * 2 * 16 * 4, "efficiency: the window's KV bytes, 2 · 32 · Hkv · D · 4")

-- the logits of every decoded position are those of one forward over the whole sequence
local full = m:forward(ids:narrow(2, 1, P + N - 1))
local worst = 0
for t = 1, N do
  local d = (full:select(2, P - 1 + t):select(1, 1) - logits[t]:select(1, 1)):abs():max():item()
  worst = math.max(worst, d)
end
T.ok(worst < 1e-4, "2000 decoded positions = the full forward (max |diff| of the logits)", worst)

-- a prompt longer than the window: the prefill keeps only its last window_size positions, in ring order
do
  local c2 = m:new_cache(1)
  local Pl = 45
  local lg = { m:prefill(ids:narrow(2, 1, Pl), c2) }
  for t = 1, 40 do lg[t + 1] = m:step(ids:narrow(2, Pl + t, 1), c2) end
  local f2 = m:forward(ids:narrow(2, 1, Pl + 40))
  local w2 = 0
  for t = 1, 41 do
    w2 = math.max(w2, (f2:select(2, Pl - 1 + t):select(1, 1) - lg[t]:select(1, 1)):abs():max():item())
  end
  T.is(c2.layers[7].k:size(2), W, "a 45-token prompt: the cache keeps 32 positions")
  T.ok(w2 < 1e-4, "... and decoding after it matches the full forward", w2)
end

-- without a window the cache grows and holds every position (no ring)
do
  local mf = hb.models.new({ model_type = "gla", hidden_size = 32, num_hidden_layers = 2, num_heads = 2, vocab_size = 64,
    attn = { layers = { 1 }, num_heads = 2 } }, { seed = 3 })
  local c3 = mf:new_cache(1)
  mf:prefill(ids:narrow(2, 1, 8), c3)
  for t = 1, 100 do mf:step(ids:narrow(2, 8 + t, 1), c3) end
  T.ok(c3.layers[2].k:size(2) >= 108, "no window: the cache holds all 108 positions", c3.layers[2].k:size(2))
  T.is(c3:nbytes(), hb.eval.efficiency(mf, { N = 108 }).cache_bytes_at_N, "... and its bytes are efficiency's")
end

-- hb.attention_step: a cache shorter than the context serves a window of at most its length
T.raises(function()
  return hb.attention_step { q = hb.ones(1, 2, 8), k_cache = hb.ones(1, 4, 2, 8), v_cache = hb.ones(1, 4, 2, 8), pos = 4 }
end, "attention_step: position 4 is beyond the cache's 4 slots; a cache shorter than the context is a ring of the last positions, which serves only a window of at most 4 (window 0)",
  "attention_step past the cache without a window is an error")
T.raises(function()
  return hb.attention_step { q = hb.ones(1, 2, 8), k_cache = hb.ones(1, 4, 2, 8), v_cache = hb.ones(1, 4, 2, 8), pos = 9, window = 5 }
end, "which serves only a window of at most 4 (window 5)", "... and so is a window longer than the ring")
local ok = pcall(function()
  return hb.attention_step { q = hb.ones(1, 2, 8), k_cache = hb.ones(1, 4, 2, 8), v_cache = hb.ones(1, 4, 2, 8), pos = 9, window = 4 }
end)
T.ok(ok, "a ring of 4 slots serves window 4 at position 9")

T.done()
