-- tests/bench/inference.lua [SIZES] [THREADS] — the inference section of the benchmark (issue 15 item 4), no
-- Python: `tests/bench/run.sh --inference [SIZES]` (or `make bench BENCH_ARGS=--inference`) runs it after
-- building ./hyblua and build/bench/stream_bench.
--
-- SIZES: comma list of 340m | 1.3b (default 340m); THREADS: the pool's thread count (default
-- HYBLUA_NUM_THREADS or 2). For each size, GatedDeltaNet 3:1 and Transformer at fla's shapes (below) get
-- random weights (hb.models.new, seed 1), saved as bf16 safetensors (save_pretrained {dtype = "bf16"}) in a
-- temporary directory by a child process; a fresh process then loads them (hb.load_pretrained: the file
-- is mmapped, its bf16 values widened to float32 in memory) and measures, at the same thread count:
--   prefill   B 1, a 256-token prompt (random ids) through m:prefill → tokens/s
--   decode    B 1: 256-token prefill, then 16 single-token m:step calls, median step → tokens/s;
--             B 8: 64-token prefill of 8 rows, then 16 steps of 8 tokens, median step → tokens/s (8 / step)
--   bandwidth build/bench/stream_bench THREADS (copy/scale/add/triad over 512 MiB arrays; the best of the
--             four, STREAM's byte counting) → GB/s
--   bound     the bandwidth over the weight bytes one decode step must read: every parameter except the
--             input embedding (one row per token), at its in-memory width (4 bytes: float32). Batch 8
--             shares one read of the weights, so its bound is 8× batch 1's. Target (issue 15): decode at
--             batch 1 ≥ 70% of the bound. Recurrent state and KV-cache traffic are not in the bound.
--   bf16 decode  the same decode (B 1 after a 64-token prefill, and B 8) with hb.set_matmul_precision("bf16"):
--             the ≤ 8-row products read a bfloat16 copy of each weight (core/linalg.h), so the bound counts
--             2 bytes per weight.
-- Writes tests/bench/results/inference.md (tests/bench/harness.py copies it into docs/performance.md) and
-- prints it; one JSON line per model goes to stderr as it is measured.
local hb = require "hyblua"

local mode = arg[1]

-- fla's 340M / 1.3B shapes: d 1024 / 2048, 24 layers, vocab 32000, MLP hidden_ratio 4 (SwiGLU width
-- 2/3·4d rounded up to 256), untied LM head; attention heads of 64; Gated DeltaNet heads with
-- num_heads·head_dim = 0.75·d and expand_v 2 (fla's layer sizing: q, k 0.75·d² each, v, g, o 1.5·d² each; at
-- d 2048 that is fla's default 6 heads of 256), attention in every 4th layer (3:1)
local function configs(size)
  local d, L, gh, gd, th
  if size == "340m" then d, L, gh, gd, th = 1024, 24, 6, 128, 16
  elseif size == "1.3b" then d, L, gh, gd, th = 2048, 24, 6, 256, 32
  elseif size == "tiny" then d, L, gh, gd, th = 256, 4, 3, 64, 4 -- a smoke test of the bench itself
  else error("inference: unknown size '" .. tostring(size) .. "' (340m | 1.3b | tiny)") end
  local attn_layers = {}
  for i = 3, L - 1, 4 do attn_layers[#attn_layers + 1] = i end -- every 4th layer: 3:1
  return {
    { name = "gated_deltanet 3:1 " .. size, cfg = { model_type = "gated_deltanet", hidden_size = d,
      num_hidden_layers = L, vocab_size = 32000, num_heads = gh, head_dim = gd, expand_v = 2,
      attn = { layers = attn_layers, num_heads = th, num_kv_heads = th } } },
    { name = "transformer " .. size, cfg = { model_type = "transformer", hidden_size = d, num_hidden_layers = L,
      vocab_size = 32000, num_heads = th } },
  }
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or 0.5 * (s[n // 2] + s[n // 2 + 1])
end

if mode == "init" then -- inference.lua init CONFIG.json DIR
  local m = hb.models.new(hb.io.read_json(arg[2]), { seed = 1 })
  m:save_pretrained(arg[3], { dtype = "bf16" })
  return
elseif mode == "bench" then -- inference.lua bench DIR → one JSON line
  local dir = arg[2]
  hb.set_num_threads(tonumber(os.getenv("HYBLUA_NUM_THREADS") or "") or 2)
  local t0 = hb.now()
  local m = hb.load_pretrained(dir)
  local out = { load_s = hb.now() - t0, params = m:num_parameters() }
  local wbytes = 0
  for name, p in pairs(m:state_dict()) do
    if not name:match("embeddings%.weight$") then wbytes = wbytes + 4 * p:numel() end
  end
  out.weight_bytes_per_step = wbytes
  local V = m.config.vocab_size
  hb.manual_seed(2)
  local function decode(B, P, steps)
    local ids = hb.randint(0, V, { B, P + steps }, "int64")
    local cache = m:new_cache(B)
    local a = hb.now()
    hb.no_grad(function() m:prefill(ids:narrow(2, 1, P):contiguous(), cache) end)
    local prefill_s = hb.now() - a
    local st = {}
    local p0, w0 = hb.pool_stats(), hb.now()
    hb.no_grad(function()
      for i = 1, steps do
        local col = ids:narrow(2, P + i, 1):contiguous()
        local s0 = hb.now()
        local _ = m:step(col, cache)
        st[i] = hb.now() - s0
      end
    end)
    local p1, w1 = hb.pool_stats(), hb.now()
    -- what a step is made of: pool regions per step, and the share of the steps' wall time spent inside
    -- them (the rest ran on the calling thread alone: the Lua layer loop, small ops below the pool's
    -- work threshold, allocation)
    local diag = { regions_per_step = (p1.regions - p0.regions) / steps, in_regions = (p1.region_s - p0.region_s) / (w1 - w0) }
    return B * P / prefill_s, B / median(st), diag
  end
  decode(1, 16, 2) -- warm-up: pool, allocator, first touch of the mapped weights
  out.prefill_tok_s, out.decode_b1_tok_s, out.decode_b1_pool = decode(1, 256, 16)
  local _
  _, out.decode_b8_tok_s = decode(8, 64, 16)
  -- bf16 weights for decode: matmul precision bf16, whose ≤ 8-row products stream a bf16 copy of each
  -- weight (made on first use, by the warm-up) and multiply it with the float32 activations
  hb.set_matmul_precision("bf16")
  decode(1, 16, 2)
  _, out.decode16_b1_tok_s = decode(1, 64, 16)
  _, out.decode16_b8_tok_s = decode(8, 64, 16)
  hb.set_matmul_precision("fp32")
  print(hb.io.encode_json(out))
  return
end

-- driver
local sizes = {}
for s in (arg[1] or "340m"):gmatch("[^,]+") do sizes[#sizes + 1] = s end
local threads = tonumber(arg[2] or os.getenv("HYBLUA_NUM_THREADS") or "") or 2
local work = os.tmpname()
os.remove(work)
assert(os.execute("mkdir -p " .. work))
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>" .. work .. "/err.txt"))
  local outp = p:read("a")
  local ok = p:close()
  local last
  for line in outp:gmatch("[^\n]+") do if line:sub(1, 1) == "{" then last = line end end
  if not ok then
    local f = io.open(work .. "/err.txt")
    local err = f and f:read("a") or ""
    if f then f:close() end
    os.execute("rm -rf " .. work)
    error("inference: command failed: " .. cmd .. "\n" .. outp .. err)
  end
  return last and hb.io.decode_json(last)
end
local env = string.format("OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 HYBLUA_NUM_THREADS=%d ", threads)
local bw = run(env .. "build/bench/stream_bench " .. threads)
io.stderr:write(hb.io.encode_json(bw), "\n")
local rows = {}
for _, size in ipairs(sizes) do
  for i, mdl in ipairs(configs(size)) do
    local dir = string.format("%s/%s-%d", work, size, i)
    local f = assert(io.open(dir .. ".json", "w"))
    f:write(hb.io.encode_json(mdl.cfg))
    f:close()
    run(env .. "./hyblua tests/bench/inference.lua init " .. dir .. ".json " .. dir)
    local r = run(env .. "./hyblua tests/bench/inference.lua bench " .. dir)
    r.name = mdl.name
    local fh = assert(io.open(dir .. "/model.safetensors", "rb"))
    r.file_bytes = fh:seek("end")
    fh:close()
    os.execute("rm -rf " .. dir)
    io.stderr:write(hb.io.encode_json(r), "\n")
    rows[#rows + 1] = r
  end
end
os.execute("rm -rf " .. work)

local out = {}
local function emit(s) out[#out + 1] = s; print(s) end
local f = io.open("/proc/cpuinfo")
local cpu = f and f:read("a"):match("model name%s*:%s*([^\n]+)") or "?"
if f then f:close() end
emit(string.format("### Inference (%s, %d thread(s), %s UTC)", cpu, threads, os.date("!%Y-%m-%d %H:%M")))
emit("")
emit(string.format("Measured bandwidth (build/bench/stream_bench %d, 512 MiB arrays): copy %.1f, scale %.1f, add %.1f, "
  .. "triad %.1f GB/s; the bound uses the best, %.1f GB/s.", threads, bw.copy_gbs, bw.scale_gbs, bw.add_gbs,
  bw.triad_gbs, bw.best_gbs))
emit("")
emit("| model | params | bf16 file MB | load s | prefill tok/s (B 1, 256) | decode tok/s B 1 | decode tok/s B 8 "
  .. "| weight MB read / step (fp32) | bound tok/s B 1 | B 1 / bound | target ≥ 70% | B 8 / (8 × bound) |")
emit("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
for _, r in ipairs(rows) do
  local bound = bw.best_gbs * 1e9 / r.weight_bytes_per_step
  local q = r.decode_b1_tok_s / bound
  emit(string.format("| %s | %.1fM | %.0f | %.2f | %.1f | %.2f | %.2f | %.0f | %.2f | %.0f%% | %s | %.0f%% |",
    r.name, r.params / 1e6, r.file_bytes / 1e6, r.load_s, r.prefill_tok_s, r.decode_b1_tok_s, r.decode_b8_tok_s,
    r.weight_bytes_per_step / 1e6, bound, 100 * q, q >= 0.7 and "met" or "missed", 100 * r.decode_b8_tok_s / (8 * bound)))
end
emit("")
emit("bf16 weights for decode (hb.set_matmul_precision(\"bf16\"): products of ≤ 8 rows stream a bfloat16 copy of "
  .. "each weight, kept with its storage, and multiply it with the float32 activations): 2 bytes per weight read.")
emit("")
emit("| model | weight MB read / step (bf16) | bound tok/s B 1 | decode tok/s B 1 | B 1 / bound | target ≥ 70% "
  .. "| decode tok/s B 8 | B 8 / (8 × bound) | B 1 vs fp32 weights |")
emit("|---|---:|---:|---:|---:|---|---:|---:|---:|")
for _, r in ipairs(rows) do
  local bound = bw.best_gbs * 1e9 / (r.weight_bytes_per_step / 2)
  local q = r.decode16_b1_tok_s / bound
  emit(string.format("| %s | %.0f | %.2f | %.2f | %.0f%% | %s | %.2f | %.0f%% | %.2f× |", r.name,
    r.weight_bytes_per_step / 2e6, bound, r.decode16_b1_tok_s, 100 * q, q >= 0.7 and "met" or "missed",
    r.decode16_b8_tok_s, 100 * r.decode16_b8_tok_s / (8 * bound), r.decode16_b1_tok_s / r.decode_b1_tok_s))
end
emit("")
local o = io.open("tests/bench/results/inference.md", "w")
if o then o:write(table.concat(out, "\n"), "\n"); o:close() end
