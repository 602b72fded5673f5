-- tests/test_bad_input.lua — inputs that were accepted silently and are now errors naming what is wrong
-- (issue 17, item 14): "yes"/"no" for boolean config fields and infinite numbers, a cache of another
-- model, custom_mixers.layers of the wrong type, a NaN or denormal sampling temperature.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local base = { model_type = "gla", hidden_size = 16, num_hidden_layers = 2, num_heads = 2, vocab_size = 32 }
local function with(t)
  local c = {}
  for k, v in pairs(base) do c[k] = v end
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- ---- boolean fields take true or false ----------------------------------------------------------------
T.raises(function() hb.models.new(with { tie_word_embeddings = "yes" }) end,
  "config: 'tie_word_embeddings' must be true or false (got 'yes')", "a common boolean field given \"yes\"")
T.raises(function() hb.models.new(with { use_short_conv = "no" }) end,
  "config: 'use_short_conv' must be true or false (got 'no')", "a model type's boolean field given \"no\" (it was true)")
T.raises(function() hb.models.new(with { fuse_norm = 1 }) end, "config: 'fuse_norm' must be true or false (got 1)",
  "a boolean field given 1")
T.raises(function() hb.models.new(with { use_cache = hb.io.null }) end, "config: 'use_cache' must be true or false (got null)",
  "a boolean field given null (fla reads false, Lua true)")
T.raises(function() hb.models.new(with { attn = { layers = { 1 }, num_heads = 2, qkv_bias = "no" } }) end,
  "config: attn[1].qkv_bias must be true or false (got 'no')", "an attention spec's boolean given \"no\" (biases were added)")
T.raises(function()
  hb.models.new { model_type = "transformer", hidden_size = 16, num_hidden_layers = 1, num_heads = 2, vocab_size = 32, qk_norm = "yes" }
end, "config: 'qk_norm' must be true or false (got 'yes')", "a transformer's qk_norm given \"yes\"")
do
  local dir = os.tmpname()
  os.remove(dir)
  hb.models.new(base, { seed = 1 }):save_pretrained(dir)
  local cfg = hb.io.read_json(dir .. "/config.json")
  cfg.tie_word_embeddings = "yes"
  hb.io.write_json(dir .. "/config.json", cfg)
  T.raises(function() hb.load_pretrained(dir) end, "'tie_word_embeddings' must be true or false (got 'yes')",
    "load_pretrained: a config.json with \"yes\" for a boolean")
  for _, f in ipairs { "config.json", "model.safetensors", "generation_config.json" } do os.remove(dir .. "/" .. f) end
  os.remove(dir)
end
hb.models.register_mixer("test_bool_opt", {
  options = { flag = false, gain = 1.0 },
  declare = function() end,
  forward = function(_, x) return x end,
  state_bytes = function() return 0, 0 end,
})
T.raises(function() hb.models.new(with { custom_mixers = { { mixer = "test_bool_opt", layers = { 1 }, flag = "yes" } } }) end,
  "config: custom_mixers[1].flag must be true or false (got 'yes')", "a custom mixer's boolean option given \"yes\"")

-- ---- number fields are finite -------------------------------------------------------------------------
T.raises(function() hb.models.new(with { initializer_range = math.huge }) end,
  "config: 'initializer_range' must be a finite number (got inf)", "an infinite initializer_range (weights were all inf or NaN)")
T.raises(function() hb.models.new(with { max_position_embeddings = -math.huge }) end,
  "config: 'max_position_embeddings' must be a finite number (got -inf)", "an infinite max_position_embeddings")
T.raises(function() hb.models.new(with { attn = { layers = { 1 }, num_heads = 2, rope_theta = math.huge } }) end,
  "config: attn[1].rope_theta must be a finite number (got inf)", "an infinite rope_theta in an attention spec")
T.raises(function() hb.models.new(with { custom_mixers = { { mixer = "test_bool_opt", layers = { 1 }, gain = 0 / 0 } } }) end,
  "config: custom_mixers[1].gain must be a finite number", "a NaN number option of a custom mixer")
T.raises(function() hb.models.new(with { hidden_size = "16" }) end, "config: 'hidden_size' must be an integer (got '16')",
  "sizes keep their own message")
local ok_null = pcall(hb.models.new, with { bos_token_id = hb.io.null, initializer_range = 0.01 })
T.ok(ok_null, "a null token id (as Hugging Face configs have) and a finite initializer_range load")

-- ---- custom_mixers.layers of the wrong type --------------------------------------------------------------
for _, case in ipairs {
  { 5, "(got 5)" }, { "3:1", "(got '3:1')" }, { true, "(got true)" }, { { a = 1 }, "(got a table with key 'a')" },
  { { 0, x = 1 }, "(got a table with key 'x')" }, { function() end, "(got a function)" },
} do
  T.raises(function() hb.models.new(with { custom_mixers = { { mixer = "test_bool_opt", layers = case[1] } } }) end,
    "config: custom_mixers[1].layers must be a list of 0-based layer indices or a schedule " .. case[2],
    "custom_mixers.layers of the wrong type is refused " .. case[2])
end
T.raises(function() hb.models.new(with { custom_mixers = { { mixer = "test_bool_opt" } } }) end,
  "config: custom_mixers[1].layers is required", "a missing layers is still 'required'")
do
  local m = hb.models.new(with { custom_mixers = { { mixer = "test_bool_opt", layers = hb.schedule.every(2) } } })
  T.is(hb.schedule.describe(m.config), "LC", "a schedule still places the mixer")
end

-- ---- a cache belongs to its model -------------------------------------------------------------------------
do
  local tr = hb.models.new({ model_type = "transformer", hidden_size = 16, num_hidden_layers = 2, num_heads = 2, vocab_size = 32 },
    { seed = 1 })
  local g = hb.models.new(base, { seed = 1 })
  local c = tr:new_cache(1)
  tr:prefill({ { 1, 2, 3 } }, c)
  T.raises(function() g:step({ 1 }, c) end,
    "step: the cache was made for another model (transformer, 2 layers AA, hidden_size 16) than this one (gla, 2 layers LL, hidden_size 16; the configs differ in model_type); make a cache for this model with m:new_cache(B)",
    "a transformer cache passed to a GLA model's step names both models")
  T.raises(function() g:prefill({ { 1, 2 } }, tr:new_cache(1)) end, "prefill: the cache was made for another model (transformer",
    "... and to its prefill")
  local g4 = hb.models.new(with { num_heads = 4 }, { seed = 1 })
  local cg = g:new_cache(1)
  g:prefill({ { 1, 2 } }, cg)
  T.raises(function() g4:step({ 1 }, cg) end, "the configs differ in num_heads", "a cache of a GLA with 2 heads in one with 4")
  T.raises(function() g:step({ 1 }, {}) end, "step: the cache must be one made by m:new_cache(B) (got an object)",
    "a table that is not a cache")
  T.raises(function() g:step({ 1 }) end, "step: the cache must be one made by m:new_cache(B) (got nil)", "no cache")
  -- a copy of the same model (same config and weights) continues the cache
  local copy = hb.models.new(base, { seed = 1 })
  local a = g:step({ 3 }, cg)
  local cg2 = g:new_cache(1)
  g:prefill({ { 1, 2 } }, cg2)
  local b = copy:step({ 3 }, cg2)
  T.ok((a - b):abs():max():item() == 0, "a model of the same config continues the cache")
end

-- ---- generate's temperature ---------------------------------------------------------------------------------
do
  local g = hb.models.new(base, { seed = 1 })
  for _, case in ipairs { { 0 / 0, "nan" }, { 1e-310, "1e-310" }, { 4.9e-324, "4.94066e-324" }, { 1e-7, "1e-07" },
    { -1, "-1" }, { math.huge, "inf" }, { "0.7", "'0.7'" } } do
    T.raises(function() g:generate({ { 1, 2 } }, 3, { temperature = case[1] }) end,
      "generate: temperature must be 0 (greedy) or a finite number >= 1e-06 (got " .. case[2] .. ")", "temperature " .. case[2] .. " is refused")
  end
  T.is(#g:generate({ { 1, 2 } }, 3, { temperature = 0.7, seed = 1 })[1], 3, "temperature 0.7 samples")
  T.is(#g:generate({ { 1, 2 } }, 3, { temperature = 1e-6, seed = 1 })[1], 3, "temperature 1e-6 samples")
  T.is(#g:generate({ { 1, 2 } }, 3)[1], 3, "no temperature is greedy")
end

-- ---- every new model type's booleans and numbers (kda), and all of these are user errors -------------------
do
  local kda = { model_type = "kda", hidden_size = 16, num_hidden_layers = 1, num_heads = 2, head_dim = 8, vocab_size = 32 }
  local function kwith(k, v) local c = {} for x, y in pairs(kda) do c[x] = y end c[k] = v return c end
  T.raises(function() hb.models.new(kwith("allow_neg_eigval", "yes")) end,
    "config: 'allow_neg_eigval' must be true or false (got 'yes')", "kda: a boolean field given \"yes\"")
  T.raises(function() hb.models.new(kwith("expand_v", math.huge)) end, "config: 'expand_v' must be a number in [0, 2147483647] (got inf)",
    "kda: an infinite expand_v (its own range message)")
  local g = hb.models.new(base, { seed = 1 })
  for _, f in ipairs {
    function() hb.models.new(with { use_short_conv = "no" }) end,
    function() hb.models.new(with { initializer_range = math.huge }) end,
    function() hb.models.new(with { custom_mixers = { { mixer = "test_bool_opt", layers = 5 } } }) end,
    function() g:step({ 1 }, {}) end,
    function() g:generate({ { 1, 2 } }, 3, { temperature = 0 / 0 }) end,
  } do
    local ok, err = pcall(f)
    T.ok(not ok and hb.is_user_error(err), "a user error (printed without a traceback): " .. tostring(err))
  end
end

T.done()
