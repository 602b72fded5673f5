-- test_mixers.lua — the mixer registry and the strict configs: every built-in mixer registers itself
-- through hb.models.register_mixer and is listed in lua/hyblua/mixers/init.lua; each answers for its
-- decode state (checked against the real caches of every fixture) and FLOPs; a registered mixer or model
-- type can bring options, its own block, names, final norm, model-level parameters and accounting;
-- unknown keys of model configs, attention specs, schedule specs and custom_mixers entries raise the
-- YAML path's did-you-mean; fla fields hyblua does not implement raise naming the field; harmless
-- fields round-trip; `require "hyblua"` fails loudly when a module is missing.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local BUILTIN = { "attention", "hgrn", "retnet", "gla", "hgrn2", "delta_net", "gated_deltanet", "kda" }
local tmp = os.tmpname()
os.remove(tmp)
hb.data.mkdir(tmp)

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- run a Lua script with ./hyblua; returns its output (stdout + stderr) and exit status
local function run_script(name, text)
  local path = tmp .. "/" .. name .. ".lua"
  write(path, text)
  local p = io.popen("./hyblua " .. path .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return out, rc
end

-- ---- the registry ----------------------------------------------------------------------------------------
do
  -- a fresh process whose registry logs every registration before the built-ins load
  local out, rc = run_script("log_register", [[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local registry = require "hyblua.mixers.registry"
local register, seen = registry.register, {}
registry.register = function(name, def) seen[#seen + 1] = name; return register(name, def) end
local hb = require "hyblua"
print("registered: " .. table.concat(seen, ","))
print("listed: " .. table.concat(registry.names(), ","))
print("same: " .. tostring(hb.models.register_mixer == registry.register))
]])
  T.ok(rc == 0 and out:find("registered: " .. table.concat(BUILTIN, ","), 1, true) ~= nil,
    "each built-in mixer registers itself through the registry's register, in the order of mixers/init.lua", out)
  T.like(out, "same: true", "hb.models.register_mixer is that register function")
  -- every mixer file has its line in mixers/init.lua, and nothing else is listed
  local init = assert(io.open("lua/hyblua/mixers/init.lua")):read("a")
  local listed = {}
  for line in init:gmatch("[^\n]+") do
    local name = line:match('^require "hyblua%.mixers%.([%w_]+)"$')
    if name then listed[#listed + 1] = name end
  end
  local files = {}
  for _, f in ipairs(hb.data.list_dir("lua/hyblua/mixers")) do
    local n = f:match("^([%w_]+)%.lua$")
    if n and n ~= "init" and n ~= "common" and n ~= "registry" then files[#files + 1] = n end
  end
  table.sort(files)
  local sorted = { table.unpack(BUILTIN) }
  table.sort(sorted)
  T.is(table.concat(files, ","), table.concat(sorted, ","), "one file per built-in mixer in lua/hyblua/mixers/")
  T.is(table.concat(listed, ","), table.concat(BUILTIN, ","), "mixers/init.lua lists each of them once")
  local ok = true
  for _, n in ipairs(BUILTIN) do ok = ok and type(hb.models.mixers[n]) == "table" and hb.models.mixers[n].forward ~= nil end
  T.ok(ok, "hb.models.mixers holds the built-ins (name → def)")
  T.raises(function() hb.models.mixers.x = {} end, "hb.models.mixers is read-only", "hb.models.mixers cannot be written")

  local f = function() end
  T.raises(function() hb.models.register_mixer("gla", { forward = f }) end,
    "register_mixer('gla'): 'gla' is a built-in mixer; register yours under another name", "built-ins cannot be replaced")
  T.raises(function() hb.models.register_mixer("m1", { forward = f, state_byte = f }) end,
    "register_mixer('m1'): unknown field def.state_byte (did you mean 'state_bytes'?)", "a misspelt def field")
  T.raises(function() hb.models.register_mixer("m1", { forward = f, flops = 3 }) end,
    "register_mixer('m1'): def.flops must be a function (got number)", "a def field of the wrong type")
  T.raises(function() hb.models.register_mixer("m1", { forward = f, model_type = "gla" }) end,
    "model_type 'gla' already belongs to mixer 'gla'", "a model_type belongs to one mixer")
  T.raises(function() hb.models.register_mixer("m1", { forward = f, block = { forward = f } }) end,
    "def.block must be a table {declare = fn, forward = fn}", "a block needs both functions")
  T.raises(function() hb.models.register_mixer("m1", {}) end, "register_mixer(name, {declare=fn, forward=fn, ...})",
    "a def without forward")
end

-- ---- decode state and FLOPs of the built-ins, against the real caches of every fixture ---------------
do
  local function listdir(dir)
    local ok, l = pcall(hb.data.list_dir, dir)
    return ok and l or {}
  end
  local checked, bad = 0, nil
  for _, set in ipairs { "fla", "stress" } do
    for _, name in ipairs(listdir(T.fixtures .. "/" .. set)) do
      local m = hb.load_pretrained(T.fixtures .. "/" .. set .. "/" .. name)
      local N = 12
      local cache = m:new_cache(2)
      m:prefill(hb.randint(0, m.config.vocab_size, 2, N), cache)
      local eff = hb.eval.efficiency(m, { N = N })
      for li, L in ipairs(m.layers) do
        local lc, real = cache.layers[li], 0
        for _, t in pairs(lc) do if type(t) == "userdata" then real = real + t:nbytes() end end
        local e = eff.layers[li]
        local want = L.kind == "attention" and 2 * 2 * N * L.Hkv * L.D * 4 or 2 * (e.state_bytes + e.conv_state_bytes)
        local got = L.kind == "attention" and L.def.cache_bytes(lc, L) or real
        if got ~= want then bad = string.format("%s/%s layer %d (%s): cache %d bytes, mixer says %d", set, name, li - 1, L.kind, got, want) end
        if L.kind == "attention" and L.window == 0 and e.kv_bytes * 2 ~= got then bad = set .. "/" .. name .. ": kv_bytes" end
        checked = checked + 1
      end
    end
  end
  T.ok(checked > 40 and not bad, "state_bytes (recurrent + conv) and kv_bytes of every layer of every fixture = its decode cache", bad or checked)
  -- every fixture config.json loads when hyblua has its model type (fla_next included: those it lacks
  -- are an unknown model_type, not a key error)
  local ok_all, why = true, nil
  for _, set in ipairs { "fla", "stress", "fla_next" } do
    for _, name in ipairs(listdir(T.fixtures .. "/" .. set)) do
      local cfg = hb.io.read_json(T.fixtures .. "/" .. set .. "/" .. name .. "/config.json")
      local ok, err = pcall(hb.models.normalize_config, cfg)
      local has = false
      for _, n in ipairs(BUILTIN) do has = has or hb.models.mixers[n].model_type == cfg.model_type end
      if has ~= ok or (not ok and not tostring(err):find("unknown model_type", 1, true)) then
        ok_all, why = false, set .. "/" .. name .. ": " .. tostring(err)
      end
    end
  end
  T.ok(ok_all, "every fixture config.json is accepted as written by fla (fla_next: only an unknown model_type)", why)
end

-- ---- strict configs ------------------------------------------------------------------------------------
local base = { model_type = "gla", hidden_size = 16, num_hidden_layers = 2, vocab_size = 16, num_heads = 2 }
local function with(t)
  local c = {}
  for k, v in pairs(base) do c[k] = v end
  for k, v in pairs(t) do c[k] = v end
  return c
end
T.raises(function() hb.models.new(with { num_head = 2 }) end, "config: unknown config key 'num_head' (did you mean 'num_heads'?)",
  "model config: a misspelt key")
T.raises(function() hb.models.new(with { model_type = "hgrn", num_heads = 2 }) end,
  "config: 'num_heads' is not a field of hgrn configs (it is one of delta_net, gated_deltanet, gla, hgrn2, kda, retnet, transformer)",
  "model config: another type's field")
T.raises(function() hb.models.new(with { foo = 1 }) end, "config: unknown config key 'foo' (known keys: architectures, attn,",
  "model config: a key with no near match lists the known keys")
T.raises(function() hb.models.new(with { attn = { layers = { 1 }, num_heads = 2, window = 32 } }) end,
  "config: attn[1]: unknown config key 'window' (did you mean 'window_size'?)", "attention spec: a key without its suffix")
T.raises(function() hb.models.new(with { attn = { { layers = { 0 }, num_heads = 2 }, { layers = { 1 }, num_head = 2 } } }) end,
  "config: attn[2]: unknown config key 'num_head' (did you mean 'num_heads'?)", "attention spec: the second of a list")
T.raises(function() hb.models.new { model_type = "transformer", hidden_size = 16, num_hidden_layers = 2, vocab_size = 16,
  num_heads = 2, attn = { layers = { 1 }, num_heads = 2 } } end,
  "config: model_type 'transformer' has no hybrid attention layers ('attn' must be null)", "transformer has no hybrids")
T.raises(function() hb.schedule.ratio(3, { num_heads = 2, window = 32 }) end,
  "schedule.ratio: unknown config key 'window' (did you mean 'window_size'?)", "schedule spec: ratio")
T.raises(function() hb.schedule.every(2, { num_heads = 2, rope_thta = 1 }) end,
  "schedule.every: unknown config key 'rope_thta' (did you mean 'rope_theta'?)", "schedule spec: every")
T.raises(function() hb.schedule.layers { 1, num_heads = 2, qkv_bais = true } end,
  "schedule.layers: unknown config key 'qkv_bais' (did you mean 'qkv_bias'?)", "schedule spec: layers")
T.raises(function() hb.schedule.fn(function() return true end, { num_kv_head = 1 }) end,
  "schedule.fn: unknown config key 'num_kv_head' (did you mean 'num_kv_heads'?)", "schedule spec: fn")
T.raises(function() hb.schedule.ratio(3, { num_heads = 2, layers = { 1 } }) end,
  "schedule.ratio: the attention spec must not set layers", "schedule spec: layers come from the schedule")
T.is(hb.schedule.describe(hb.models.new(with { num_hidden_layers = 4, attn = hb.schedule.ratio(1, { num_heads = 2, window_size = 2 }) }).config),
  "LALA", "a correct schedule spec still builds")
-- gated_deltanet defaults to 21 layers: a schedule is resolved against that depth
T.is(hb.schedule.describe(hb.models.normalize_config { model_type = "gated_deltanet",
  attn = hb.schedule.ratio(20, { num_heads = 16 }):resolve(21) }), string.rep("L", 20) .. "A", "describe: GDN at its default depth")

-- fla fields hyblua does not implement
for _, c in ipairs {
  { with { use_l2warp = true }, "config: use_l2warp = true is not implemented by hyblua (use false)" },
  { with { hidden_act = "powlu" }, "config: hidden_act = 'powlu' is not implemented by hyblua (use 'swish')" },
  { with { elementwise_affine = false }, "config: elementwise_affine = false is not implemented by hyblua (use true)" },
  { with { feature_map = "relu" }, "config: feature_map = 'relu' is not implemented by hyblua (use null)" },
  { with { model_type = "retnet", elementwise_affine = false }, "config: elementwise_affine = false is not implemented by hyblua" },
  { with { attnres_block_size = 2 }, "config: attnres_block_size = 2 is not implemented by hyblua (use null)" },
} do
  T.raises(function() hb.models.new(c[1]) end, c[2], "unimplemented field: " .. c[2]:match("config: (%S+)"))
end

-- harmless fields are kept and round-trip through save_pretrained
do
  local m = hb.models.new(with { use_cache = false, fuse_swiglu = false, fuse_something_new = true,
    _name_or_path = "my/model", transformers_version = "4.99.0", use_gv = true }, { seed = 1 })
  m:save_pretrained(tmp .. "/harmless")
  local j = hb.io.read_json(tmp .. "/harmless/config.json")
  T.ok(j.use_cache == false and j.fuse_swiglu == false and j.fuse_something_new == true and j._name_or_path == "my/model"
    and j.transformers_version == "4.99.0" and j.use_gv == true, "harmless and unused fla fields are saved as given")
  local m2 = hb.load_pretrained(tmp .. "/harmless")
  T.ok(m2.config.fuse_something_new == true and m2.config._name_or_path == "my/model", "and loaded back")
end

-- ---- a custom mixer with options, accounting and option checks -------------------------------------
do
  local scaled = {
    options = { heads = 2, gain = 1.0 },
    check_options = function(o, _, where)
      if math.type(o.heads) ~= "integer" or o.heads < 1 then error("config: " .. where .. ".heads must be a positive integer", 0) end
    end,
    declare = function(add, d) add("w.weight", { d, d }) end,
    forward = function(ctx, x, opts, W)
      -- a running mean of x·W over time, times gain; the state is the running sum [B, d]
      local y = hb.linear(x, W("w.weight"))
      local B, Tn, d = y:size(1), y:size(2), y:size(3)
      local pos0 = ctx.cache and ctx.cache.n or 0
      local s = ctx.cache and ctx.cache.sum or hb.zeros(B, d)
      local outs = {}
      for t = 1, Tn do
        s = s + y:select(2, t)
        outs[t] = (s / (pos0 + t) * opts.gain):unsqueeze(2)
      end
      if ctx.cache then ctx.cache.sum, ctx.cache.n = s, pos0 + Tn end
      return hb.cat(outs, 2)
    end,
    state_bytes = function(_, cfg) return cfg.hidden_size * 4, 0 end,
    flops = function(L, cfg) return 2 * L.opts.heads * cfg.hidden_size end,
  }
  hb.models.register_mixer("test_scaled", scaled)
  local cfg = with { custom_mixers = { { mixer = "test_scaled", layers = { 1 }, heads = 3 } } }
  local m = hb.models.new(cfg, { seed = 2 })
  T.is(m.config.custom_mixers[1].gain, 1.0, "custom_mixers: the mixer's option defaults are filled in")
  T.is(hb.schedule.describe(m.config), "LC", "custom_mixers: placed")
  local e = hb.eval.efficiency(m, { N = 5 })
  T.ok(e.layers[2].state_bytes == 16 * 4 and e.layers[2].mixer_flops == 2 * 3 * 16 and e.layers[2].mixer == "test_scaled"
    and e.state_bytes == e.layers[1].state_bytes + 16 * 4, "a custom mixer's state_bytes and flops show up in hb.eval.efficiency")
  local c = m:new_cache(1)
  m:prefill(hb.randint(0, 16, 1, 5), c)
  T.is(c:nbytes(), e.cache_bytes_at_N, "efficiency = the cache's bytes with a custom mixer")
  T.raises(function() hb.models.new(with { custom_mixers = { { mixer = "test_scaled", layers = { 1 }, head = 3 } } }) end,
    "config: custom_mixers[1]: unknown config key 'head' (did you mean 'heads'?)", "custom_mixers entry: a misspelt option")
  T.raises(function() hb.models.new(with { custom_mixers = { { mixer = "test_scaled", layers = { 1 }, heads = 0 } } }) end,
    "config: custom_mixers[1].heads must be a positive integer", "custom_mixers entry: the mixer's check_options")
  -- the old form: no options, extra keys pass to the mixer; near misses of mixer/layers are typos
  hb.models.register_mixer("test_plain", { declare = scaled.declare, forward = function(_, x) return x * 0.5 end })
  T.raises(function() hb.models.new(with { custom_mixers = { { mixer = "test_plain", layer = { 1 } } } }) end,
    "config: custom_mixers[1]: unknown config key 'layer' (did you mean 'layers'?)", "custom_mixers entry: a misspelt layers")
  T.raises(function() hb.models.new(with { custom_mixers = { { mixer = "test_plain" } } }) end,
    "config: custom_mixers[1].layers is required", "custom_mixers entry: layers is required")
  T.raises(function() hb.models.new(with { custom_mixers = { { mixer = "test_plain", layers = { 2 } } } }) end,
    "config: custom_mixers[1].layers: 2 is not a layer index in [0, 2)", "custom_mixers entry: layer out of range")
  T.raises(function() hb.models.new(with { custom_mixers = { { mixer = "gla", layers = { 1 } } } }) end,
    "config: custom_mixers[1].mixer = 'gla' is the mixer of model_type 'gla'", "custom_mixers entry: a model type's mixer")
  local mt = hb.models.new({ model_type = "transformer", hidden_size = 16, num_hidden_layers = 2, vocab_size = 16, num_heads = 2,
    custom_mixers = { { mixer = "test_plain", layers = { 1 } } } }, { seed = 1 })
  T.ok(hb.schedule.describe(mt.config) == "AC" and mt.params["model.layers.1.attn.q_proj.weight"] == nil,
    "custom_mixers: a placement in a transformer replaces that layer's attention")
  T.raises(function() hb.models.new(with { attn = { layers = { 1 }, num_heads = 2 }, custom_mixers = { { mixer = "test_plain", layers = { 1 } } } }) end,
    "config: layer 1 is both an attention layer and a custom mixer ('test_plain')", "custom_mixers: not on an attention layer")
  local mp = hb.models.new(with { custom_mixers = { { mixer = "test_plain", layers = { 0 }, anything = 3 } } }, { seed = 1 })
  T.is(mp.config.custom_mixers[1].anything, 3, "custom_mixers entry: a mixer without options takes any other key")
  T.raises(function() hb.eval.efficiency(mp) end, "efficiency: the mixer 'test_plain' of layer 0 declares no state_bytes",
    "efficiency names a mixer that declares no accounting")
end

-- ---- a model type of one's own: names, block, final norm, model-level parameters, init function -------
do
  local toy = {
    model_type = "test_toy", architecture = "TestToyForCausalLM", hybrid = false, letter = "T",
    names = { model = "backbone", mixer = "mixer", final_norm = "norm_f" },
    config = { decay_init = 0.5, fancy = false },
    unsupported = { fancy = false },
    validate = function(cfg)
      if type(cfg.decay_init) ~= "number" then error("config: decay_init must be a number", 0) end
    end,
    declare_model = function(add, cfg) add("backbone.scale", { cfg.hidden_size }, "ones") end,
    prepare = function(m) return m.params["backbone.scale"] end,
    -- norm → mixer → residual (no MLP)
    block = {
      declare = function(add, _, cfg, mixer) add("norm.weight", { cfg.hidden_size }, "ones"); mixer() end,
      forward = function(ctx, h, mix)
        return h + mix(hb.rmsnorm(h, ctx.W[ctx.prefix .. "norm.weight"], ctx.m.config.norm_eps))
      end,
    },
    final_norm = {
      declare = function(add, d) add("weight", { d }, "ones"); add("bias", { d }, "zeros") end,
      forward = function(ctx, h) return hb.rmsnorm(h, ctx.W[ctx.prefix .. "weight"]) + ctx.W[ctx.prefix .. "bias"] end,
    },
    declare = function(add, d, _, c)
      add("in_proj.weight", { d, d })
      add("decay", { d }, function(shape) return hb.full(c.decay_init, shape[1]) end, true)
      return { width = d }
    end,
    -- y_t = λ y_{t−1} + (1 − λ) in_proj(x_t) · scale, λ = decay per channel
    forward = function(ctx, x, _, W)
      local u = hb.linear(x, W("in_proj.weight")) * ctx.prepared
      local lam = W("decay")
      local s = ctx.cache and ctx.cache.state or hb.zeros(x:size(1), ctx.layer.width)
      local outs = {}
      for t = 1, x:size(2) do
        s = s * lam + u:select(2, t) * (1 - lam)
        outs[t] = s:unsqueeze(2)
      end
      if ctx.cache then ctx.cache.state = s end
      return hb.cat(outs, 2)
    end,
    state_bytes = function(L) return L.width * 4, 0 end,
    flops = function(L) return 3 * L.width end,
  }
  hb.models.register_mixer("test_toy_ema", toy)
  local cfg = { model_type = "test_toy", hidden_size = 8, num_hidden_layers = 3, vocab_size = 16 }
  local m = hb.models.new(cfg, { seed = 3 })
  local names = {}
  for n in m:named_parameters() do names[#names + 1] = n end
  T.is(table.concat(names, " ", 1, 6), "backbone.embeddings.weight backbone.scale backbone.layers.0.norm.weight " ..
    "backbone.layers.0.mixer.in_proj.weight backbone.layers.0.mixer.decay backbone.layers.1.norm.weight",
    "model type: its names, model-level parameters and block (no MLP) in declaration order")
  T.is(names[#names - 2] .. " " .. names[#names - 1] .. " " .. names[#names], "backbone.norm_f.weight backbone.norm_f.bias lm_head.weight",
    "model type: its final norm")
  T.ok(m.params["backbone.layers.2.mixer.decay"]:get(3) == 0.5 and m:no_weight_decay("backbone.layers.2.mixer.decay"),
    "an init function and no_decay")
  T.is(hb.schedule.describe(m.config), "TTT", "describe uses the model type's letter")
  T.is(m.config.architectures[1], "TestToyForCausalLM", "architectures from the def")
  T.raises(function() hb.models.new { model_type = "test_toy", fancy = true } end,
    "config: fancy = true is not implemented by hyblua (use false)", "the type's unsupported fields")
  T.raises(function() hb.models.new { model_type = "test_toy", attn = { layers = { 0 }, num_heads = 2 } } end,
    "model_type 'test_toy' has no hybrid attention layers", "hybrid = false")
  local ids = hb.randint(0, 16, 2, 6)
  local loss = m:loss(ids)
  loss:backward()
  T.ok(m.params["backbone.scale"].grad:abs():sum():item() > 0 and m.params["backbone.norm_f.bias"].grad:abs():sum():item() > 0,
    "gradients reach the model-level parameter (through prepare) and the final norm's bias")
  local full = hb.no_grad(function() return m:forward(ids) end)
  local c = m:new_cache(2)
  local worst = 0
  for t = 1, 6 do worst = math.max(worst, (m:step(ids:narrow(2, t, 1), c) - full:select(2, t)):abs():max():item()) end
  T.ok(worst < 1e-5, "decoding a model type of one's own matches its forward", worst)
  T.is(c:nbytes(), hb.eval.efficiency(m, { N = 6 }).cache_bytes_at_N * 2, "its accounting = its cache (B = 2)")
  m:save_pretrained(tmp .. "/toy")
  local m2 = hb.load_pretrained(tmp .. "/toy")
  T.ok((hb.no_grad(function() return m2:forward(ids) end) - full):abs():max():item() == 0, "save_pretrained / load_pretrained round trip")
  local bad = {}
  for k, v in pairs(toy) do bad[k] = v end
  bad.model_type = "test_toy2"
  bad.block = { declare = function() end, forward = toy.block.forward }
  hb.models.register_mixer("test_toy_bad", bad)
  T.raises(function() hb.models.new { model_type = "test_toy2" } end,
    "config: the block of model_type 'test_toy2' declared the mixer of layer 0 0 times (once expected)", "a block must declare its mixer")
end

-- ---- a missing module is an error ----------------------------------------------------------------------
for _, hidden in ipairs { "hyblua.schedule", "hyblua.mixers.gla" } do
  local out, rc = run_script("hide", [[
local hidden = ]] .. string.format("%q", hidden) .. [[

local search = package.searchers[2]
package.searchers[2] = function(name)
  if name == hidden then return "\n\tno file (hidden by the test)" end
  return search(name)
end
local ok, err = pcall(require, "hyblua")
print(ok and "loaded" or ("error: " .. tostring(err)))
]])
  T.ok(rc == 0 and out:find("module '" .. hidden .. "' not found", 1, true) ~= nil,
    "require \"hyblua\" fails when " .. hidden .. " is missing", out)
end
do
  local out = run_script("hide_lazy", [[
local search = package.searchers[2]
package.searchers[2] = function(name)
  if name == "hyblua.eval" then return "\n\tno file (hidden by the test)" end
  return search(name)
end
local hb = require "hyblua"
local ok, err = pcall(function() return hb.eval end)
print(ok and "loaded" or ("error: " .. tostring(err)))
]])
  T.like(out, "module 'hyblua.eval' not found", "a lazily loaded module that is missing fails on first use")
end

os.execute("rm -rf '" .. tmp .. "'")
T.done()
