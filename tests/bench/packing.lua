-- tests/bench/packing.lua [HIDDEN] [TOTAL] [REPEATS] — the cost of packed sequences (issue 16), no Python:
-- `tests/bench/run.sh --packing` (or `make bench BENCH_ARGS=--packing`) runs it after building ./hyblua.
--
-- For every model type of the mixer registry (as a 3:1 hybrid with attention where it has hybrids, the
-- Transformer pure), one training step — forward, loss, backward — over the same TOTAL tokens (default 4096):
--   unpacked  B rows of T = 512 tokens (B = TOTAL / 512), the batches hb.train makes without packing;
--   packed    one row of TOTAL tokens holding documents of lengths drawn from 16..512 (a fixed list, the
--             same for every type), with cu_seqlens: every state, convolution and attention window
--             restarts at each document, the loss predicts nothing across a boundary.
-- Each figure is the best of REPEATS (default 3) timed steps after one warm-up step, in tokens/s; the ratio
-- packed / unpacked is the cost of packing at that document-length mix (short documents leave partial
-- chunks: each document's last chunk is shorter than the kernel's chunk length). HIDDEN (default 256) is
-- the model width; 2 layers (1 linear + 1 attention for the hybrids), vocabulary 4096. Thread count:
-- HYBLUA_NUM_THREADS (run.sh sets it). Prints a markdown table and writes it to tests/bench/results/packing.md
-- (docs/performance.md's "Packed sequences" section, which tests/bench/harness.py copies in).
local hb = require "hyblua"

local d = tonumber(arg[1] or "256")
local total = tonumber(arg[2] or "4096")
local repeats = tonumber(arg[3] or "3")
local T = 512
if total % T ~= 0 then error("packing bench: TOTAL must be a multiple of 512", 0) end
local B = total // T
local V = 4096

-- document lengths: a fixed, deterministic mix in [16, 512] summing to total (the last one trimmed)
local function lengths()
  local out, sum, x = {}, 0, 12345
  while sum < total do
    x = (x * 1103515245 + 12345) % 2147483648
    local L = 16 + x % 497
    if sum + L > total then L = total - sum end
    out[#out + 1] = L
    sum = sum + L
  end
  return out
end
local LENS = lengths()

-- per-type sizes at width d (heads of 64 channels where the type has heads)
local H = math.max(1, d // 64)
local shapes = {
  hgrn = { expand_ratio = 1 },
  hgrn2 = { expand_ratio = 64 },
  retnet = { num_heads = H },
  gla = { num_heads = H },
  delta_net = { num_heads = H },
  gated_deltanet = { num_heads = H, head_dim = 64 },
  kda = { num_heads = H, head_dim = 64 },
  gated_deltaproduct = { num_heads = H, head_dim = 64, num_householder = 2 },
  mamba2 = { head_dim = 64, state_size = 64 },
  rwkv7 = { head_dim = 64 },
  transformer = { num_heads = H },
}

local registry = require "hyblua.mixers.registry"
local types = registry.model_types()
table.sort(types)

local function now() return hb.now() end

local function best(f)
  f() -- warm-up
  local b = math.huge
  for _ = 1, repeats do
    local t0 = now()
    f()
    b = math.min(b, now() - t0)
  end
  return b
end

hb.manual_seed(1)
local unpacked_ids = hb.randint(0, V, { B, T }, "int64")
local docs = {}
for i, L in ipairs(LENS) do docs[i] = hb.randint(0, V, { 1, L }, "int64") end
local packed = hb.models.pack(docs)

local lines, ratios = {}, {}
local function out(l)
  print(l)
  io.stdout:flush()
  lines[#lines + 1] = l
end
out(string.format("Packing cost: one training step (forward, loss, backward) over %d tokens, width %d, 2 layers, " ..
  "vocabulary %d, %s threads; unpacked %d × %d vs packed 1 × %d holding %d documents of 16–512 tokens (mean %.0f).",
  total, d, V, os.getenv("HYBLUA_NUM_THREADS") or "default", B, T, total, #LENS, total / #LENS))
out("")
out("| model | unpacked tok/s | packed tok/s | packed / unpacked |")
out("|---|---|---|---|")
for _, mt in ipairs(types) do
  local def = registry.for_model_type(mt)
  local cfg = { model_type = mt, hidden_size = d, num_hidden_layers = 2, vocab_size = V }
  for k, v in pairs(shapes[mt] or {}) do cfg[k] = v end
  local label = mt
  if mt ~= "transformer" and def.hybrid ~= false then
    cfg.attn = { layers = { 1 }, num_heads = H, num_kv_heads = H }
    label = mt .. " 1:1"
  end
  local ok, m = pcall(hb.models.new, cfg, { seed = 1 })
  if not ok then
    out(string.format("| %s | (config failed: %s) | | |", label, tostring(m)))
  else
    local params = m:parameters()
    local function step(batch)
      for _, p in ipairs(params) do p:zero_grad() end
      m:loss(batch):backward()
    end
    local tu = best(function() step(unpacked_ids) end)
    local tp = best(function() step(packed) end)
    out(string.format("| %s | %.0f | %.0f | %.2f |", label, total / tu, total / tp, tu / tp))
    ratios[#ratios + 1] = tu / tp
  end
end
out("")
local lg, lo, hi = 0, math.huge, 0
for _, r in ipairs(ratios) do lg, lo, hi = lg + math.log(r), math.min(lo, r), math.max(hi, r) end
if #ratios > 0 then
  out(string.format("Measured %s: packed / unpacked geometric mean %.2f over %d model types (%.2f–%.2f). A " ..
    "packed row pays for each document's partial last chunk and runs one row (parallel over heads only); " ..
    "its attention is block-diagonal, so each query sees only its document.", os.date("!%Y-%m-%d"), math.exp(lg / #ratios),
    #ratios, lo, hi))
end
local f = assert(io.open("tests/bench/results/packing.md", "w"))
f:write(table.concat(lines, "\n"), "\n")
f:close()
