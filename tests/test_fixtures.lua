-- test_fixtures.lua — fla parity: for every folder of tests/fixtures/{fla,stress,fla_next}, in both chunk
-- and recurrent modes: logits, loss, every gradient and the 3 AdamW losses within the tolerances of
-- tests/fixtures/README.md (fla_next's forward-only folders have no gradients or AdamW losses: their refs
-- carry only logits and loss); step-by-step decoding and prefill + decode reproduce the full-forward
-- logits; cache bytes; save_pretrained → load is bit-exact and writes the fixture's key names and shapes.
-- A fla_next folder whose model type hyblua does not have yet is a TODO line, not a pass.
local hb = require "hyblua"
local T = dofile("tests/tap.lua")

local function maxabs(t) return t:abs():max():item() end
local function listdir(dir)
  local p = io.popen('ls -1 "' .. dir .. '" 2>/dev/null')
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local dirs = {}
for _, set in ipairs { "fla", "stress", "fla_next" } do
  local names = listdir(T.fixtures .. "/" .. set)
  T.ok(#names > 0, "fixtures present at " .. T.fixtures .. "/" .. set)
  for _, name in ipairs(names) do dirs[#dirs + 1] = set .. "/" .. name end
end

local known = {}
for _, mt in ipairs(require("hyblua.mixers.registry").model_types()) do known[mt] = true end
local tmp = os.tmpname(); os.remove(tmp); hb.data.mkdir(tmp)

for _, rel in ipairs(dirs) do
  local dir = T.fixtures .. "/" .. rel
  local mt = hb.io.read_json(dir .. "/config.json").model_type
  if not known[mt] then
    T.todo(rel .. ": fla parity", "model type '" .. tostring(mt) .. "' is not implemented yet")
    goto continue
  end
  local refs = hb.io.load_safetensors(dir .. "/refs.safetensors")
  local ids = refs.input_ids
  for _, mode in ipairs { "chunk", "recurrent" } do
    local m = hb.load_pretrained(dir):set_mode(mode)
    local tag = rel .. " [" .. mode .. "]"
    local logits = hb.no_grad(function() return m:forward(ids) end)
    local le = maxabs(logits - refs.logits) / maxabs(refs.logits)
    T.ok(le <= 1e-4, tag .. " logits", string.format("rel err %.3e", le))
    local loss = m:loss(ids)
    local lerr = math.abs(loss:item() - refs.loss:item()) / math.abs(refs.loss:item())
    T.ok(lerr <= 1e-5, tag .. " loss", string.format("rel err %.3e", lerr))
    if not refs.adamw_losses then goto forward_only end   -- fla_next: logits and loss only
    loss:backward()
    local worst, wname, count = 0, "", 0
    for name, p in m:named_parameters() do
      local r = refs["grad." .. name]
      if not r then worst, wname = math.huge, name .. " (no reference)"; break end
      local e = p.grad and maxabs(p.grad - r) / math.max(maxabs(r), 1e-30) or math.huge
      if e > worst then worst, wname = e, name end
      count = count + 1
    end
    T.ok(worst <= 1e-3 and count > 0, string.format("%s %d gradients", tag, count), string.format("worst %.3e at %s", worst, wname))
    -- 3 AdamW steps on the same batch (weight decay 0.1 on every parameter)
    if mode == "chunk" then
      local opt = hb.optim.AdamW(m:parameters(), { lr = 1e-3, betas = { 0.9, 0.95 }, eps = 1e-8, weight_decay = 0.1 })
      local ref = refs.adamw_losses:tolist()
      local okk, diag = true, ""
      opt:zero_grad()
      for s = 1, 3 do
        local l = m:loss(ids)
        local e = math.abs(l:item() - ref[s]) / math.abs(ref[s])
        diag = diag .. string.format("step %d: %.7f vs %.7f (%.2e) ", s, l:item(), ref[s], e)
        okk = okk and e <= 1e-4
        if s < 3 then l:backward(); opt:step(); opt:zero_grad() end
      end
      T.ok(okk, tag .. " adamw losses", diag)
    end
    ::forward_only::
  end
  -- decoding from a cache reproduces every position (recurrent step kernels and the KV cache)
  local m = hb.load_pretrained(dir)
  local B, Tn = ids:size(1), ids:size(2)
  local cache = m:new_cache(B)
  local worst = 0
  local full = hb.no_grad(function() return m:forward(ids) end)
  local scale = maxabs(full)
  local nb = {}
  for t = 1, Tn do
    local lt = m:step(ids:narrow(2, t, 1), cache)
    local e = maxabs(lt - full:select(2, t)) / scale
    if e > worst then worst = e end
    nb[t] = cache:nbytes()
  end
  T.ok(worst <= 1e-4, rel .. " step-by-step decode matches the full forward", string.format("worst rel err %.3e", worst))
  -- prefill half the prompt, then decode the rest
  local c2 = m:new_cache(B)
  local half = Tn // 2
  local lp = m:prefill(ids:narrow(2, 1, half), c2)
  local e2 = maxabs(lp - full:select(2, half)) / scale
  for t = half + 1, Tn do
    local lt = m:step(ids:narrow(2, t, 1), c2)
    e2 = math.max(e2, maxabs(lt - full:select(2, t)) / scale)
  end
  T.ok(e2 <= 1e-4, rel .. " prefill + decode matches the full forward", string.format("worst rel err %.3e", e2))
  local attn = m.config.attn -- a list/table of attention layers, or nil / the JSON null when there is none
  local has_attn = m.config.model_type == "transformer" or (attn ~= nil and attn ~= hb.io.null)
  if has_attn then
    -- it grows by the KV of attention layers only, a sliding window's up to its window (a ring): at every
    -- length its bytes are what hb.eval.efficiency reports
    local okc, why = nb[Tn] > nb[1], string.format("%d → %d bytes", nb[1], nb[Tn])
    for t = 1, Tn do
      local want = B * hb.eval.efficiency(m, { N = t }).cache_bytes_at_N
      if nb[t] ~= want then okc, why = false, string.format("after %d tokens %d bytes, efficiency says %d", t, nb[t], want) end
    end
    T.ok(okc, rel .. " cache grows by the KV of attention layers only (= hb.eval.efficiency at every length)", why)
  else
    T.ok(nb[Tn] == nb[1] and nb[1] > 0, rel .. " cache bytes constant in context length", string.format("%d → %d", nb[1], nb[Tn]))
  end
  -- save_pretrained → load_pretrained is bit-exact, with fla's key names and shapes
  local out = tmp .. "/" .. rel:gsub("/", "_")
  m:save_pretrained(out)
  local want = hb.io.load_safetensors(dir .. "/model.safetensors")
  local got = hb.io.load_safetensors(out .. "/model.safetensors")
  local same, why = true, ""
  for name, t in pairs(want) do
    local g = got[name]
    if not g then same, why = false, "missing " .. name; break end
    if table.concat(g:shape(), ",") ~= table.concat(t:shape(), ",") or (g - t:float()):abs():max():item() ~= 0 then
      same, why = false, "differs: " .. name; break
    end
  end
  for name in pairs(got) do if not want[name] then same, why = false, "extra " .. name end end
  local m2 = hb.load_pretrained(out)
  local l2 = hb.no_grad(function() return m2:forward(ids) end)
  T.ok(same and maxabs(l2 - full) == 0, rel .. " save_pretrained writes the fixture's tensors (names, shapes, values) and reloads bit-exactly", why)
  ::continue::
end
os.execute("rm -rf '" .. tmp .. "'")
T.done()
