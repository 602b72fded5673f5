-- tests/bench/bf16_accuracy.lua — what the bf16 matmul mode costs in accuracy on the shared fixtures
-- (driven by tests/bench/harness.py's bf16 section; runnable by hand).
--
--   hyblua tests/bench/bf16_accuracy.lua FIXTURES_DIR
--
-- For every folder of FIXTURES_DIR/{fla,stress} (see tests/test_fixtures.lua), in chunk mode, with
-- hb.set_matmul_precision "fp32" and then "bf16": the logits' error against the fixture's reference
-- (max |Δ| / max |ref|, the measure of tests/test_fixtures.lua, and the relative Frobenius error), the
-- loss's relative error, and the worst gradient error (max |Δ| / max |ref| over the parameters). One JSON
-- line per (fixture, precision) on stdout.
local hb = require "hyblua"
local root = arg[1] or "tests/fixtures"

local function maxabs(t) return t:abs():max():item() end
local function frob(t) return math.sqrt((t:double() * t:double()):sum():item()) end
local function listdir(dir)
  local p = io.popen('ls -1 "' .. dir .. '" 2>/dev/null')
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

for _, set in ipairs { "fla", "stress" } do
  for _, name in ipairs(listdir(root .. "/" .. set)) do
    local dir = root .. "/" .. set .. "/" .. name
    local refs = hb.io.load_safetensors(dir .. "/refs.safetensors")
    local ids = refs.input_ids
    for _, prec in ipairs { "fp32", "bf16" } do
      hb.set_matmul_precision(prec)
      local m = hb.load_pretrained(dir):set_mode("chunk")
      local logits = hb.no_grad(function() return m:forward(ids) end)
      local d = logits - refs.logits
      local loss = m:loss(ids)
      loss:backward()
      local gworst, gname = 0, ""
      for pname, p in m:named_parameters() do
        local r = refs["grad." .. pname]
        if r and p.grad then
          local e = maxabs(p.grad - r) / math.max(maxabs(r), 1e-30)
          if e > gworst then gworst, gname = e, pname end
        end
      end
      print(hb.io.encode_json({
        fixture = set .. "/" .. name, precision = prec,
        logits_max_rel = maxabs(d) / maxabs(refs.logits), logits_frob_rel = frob(d) / frob(refs.logits),
        loss = loss:item(), loss_ref = refs.loss:item(),
        loss_rel = math.abs(loss:item() - refs.loss:item()) / math.abs(refs.loss:item()),
        grad_worst_rel = gworst, grad_worst_param = gname,
      }))
      io.stdout:flush()
    end
  end
end
hb.set_matmul_precision("fp32")
