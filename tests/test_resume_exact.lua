-- test_resume_exact.lua — bit-exact resume for every model type: for each one, an uninterrupted run
-- (process 1), a run stopped by Ctrl-C at a step that is not a multiple of save_every (process 2), and
-- a resume from that checkpoint copied into a fresh folder (process 3) must give the same loss, bit for
-- bit, at every step after the interruption, and end with the same weights and optimizer state. The model
-- types come from the mixer registry, so a new one is tested without touching this file; each linear mixer runs as a 3:1 hybrid
-- with one attention layer, plus a sliding-window hybrid and a Lua-defined (register_mixer) one.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")
dofile("tests/scripts/test_ema_mixer.lua")(hb)
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)
local STEPS, STOP = 10, 6    -- save_every is 4 in tests/scripts/train_resume.lua: step 6 is no multiple

-- small shapes for the known types; a new type gets generic ones (2 heads of 16) and, if those do not
-- build, the test fails naming it, so that a shape is added here rather than the type skipped
local shapes = {
  hgrn = { expand_ratio = 1 }, hgrn2 = { expand_ratio = 16 }, gated_deltanet = { num_heads = 2, head_dim = 16 },
  mamba2 = { head_dim = 16, state_size = 16 }, rwkv7 = { head_dim = 16 },
}
local function small(mt, defaults)
  local c = { model_type = mt, hidden_size = 64, num_hidden_layers = 4, vocab_size = 256 }
  for k, v in pairs(shapes[mt] or {}) do c[k] = v end
  if not shapes[mt] then
    if defaults.num_heads ~= nil then c.num_heads = 2 end
    if defaults.head_dim ~= nil then c.head_dim = 16 end
  end
  if mt ~= "transformer" then c.attn = { layers = { 3 }, num_heads = 2 } end
  return c
end

local types = require("hyblua.config_fla").types
local names = require("hyblua.mixers.registry").model_types()
local cases = {}
for _, mt in ipairs(names) do cases[#cases + 1] = { name = mt, cfg = small(mt, types[mt]) } end
local swa = small("gla", types.gla)
swa.attn.window_size = 32                                   -- T is 128: the window really slides
cases[#cases + 1] = { name = "gla + sliding-window attention", cfg = swa }
local custom = small("gla", types.gla)
custom.custom_mixers = { { mixer = "test_ema", layers = { 1 } } }
cases[#cases + 1] = { name = "gla + a Lua-defined mixer", cfg = custom }
T.ok(#names >= 7, "the registry lists the model types (" .. table.concat(names, ", ") .. ")")

local function run(cfg_path, out, stop)
  local p = io.popen(string.format("./hyblua tests/scripts/train_resume.lua %s %s %d %s 2>%s/err.txt", cfg_path, out,
    STEPS, stop or "", tmp))
  local losses, text = {}, p:read("a")
  p:close()
  for s, l in text:gmatch("loss (%d+) (%S+)") do losses[tonumber(s)] = l end
  local f = io.open(tmp .. "/err.txt"); local err = f:read("a"); f:close()
  return losses, text .. err
end

for i, c in ipairs(cases) do
  local dir = string.format("%s/%d", tmp, i)
  hb.data.mkdir(dir)
  local ok, err = pcall(hb.models.new, c.cfg)
  if not ok then
    T.ok(false, c.name .. ": a small model builds (add a shape for it to this test)", err)
  else
    hb.io.write_json(dir .. "/config.json", c.cfg)
    local a = run(dir .. "/config.json", dir .. "/a")
    local b, bout = run(dir .. "/config.json", dir .. "/b", STOP)
    local ck = string.format("ckpt-%08d", STOP)
    hb.data.mkdir(dir .. "/c")
    os.execute(string.format("cp -r %s/b/%s %s/c/", dir, ck, dir))
    local r, rout = run(dir .. "/config.json", dir .. "/c")
    local first
    for s = STOP + 1, STEPS do if not first and (a[s] == nil or a[s] ~= r[s]) then first = s end end
    -- and the final weights and optimizer moments, bit for bit (a 1-ulp difference shows in the losses
    -- only some steps later)
    local last = string.format("ckpt-%08d", STEPS)
    for _, file in ipairs({ "model.safetensors", "optimizer.safetensors" }) do
      local ok1, ta = pcall(hb.io.load_safetensors, dir .. "/a/" .. last .. "/" .. file)
      local ok2, tc = pcall(hb.io.load_safetensors, dir .. "/c/" .. last .. "/" .. file)
      if not (ok1 and ok2) then first = first or (file .. " missing") else
        for name, t in pairs(ta) do
          if not first and (not tc[name] or (t - tc[name]):abs():max():item() ~= 0) then first = file .. ": " .. name end
        end
      end
    end
    T.ok(b[STOP] == a[STOP] and bout:find("interrupted at step " .. STOP, 1, true)
      and rout:find("resuming from " .. dir .. "/c/" .. ck, 1, true) and a[STEPS] and not first,
      string.format("%s: resumed from step %d in a fresh folder, steps %d-%d and the final weights are bit-identical", c.name, STOP,
        STOP + 1, STEPS),
      first and (math.type(first) and string.format("step %d: %s vs %s", first, tostring(a[first]), tostring(r[first]))
        or ("differs: " .. first)) or (bout .. rout):sub(-600))
  end
end
os.execute("rm -rf " .. tmp)
T.done()
