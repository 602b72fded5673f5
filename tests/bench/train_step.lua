-- tests/bench/train_step.lua — the hyblua side of the benchmark (driven by tests/bench/harness.py).
--
--   hyblua train_step.lua init   CONFIG.json DIR SEED B T   new model (hb.models.new) → DIR (save_pretrained)
--                                                           and a batch of token ids → DIR/batch.safetensors
--   hyblua train_step.lua bench  DIR STEPS WARMUP FWD DECODE_PROMPT DECODE_NEW [PRECISION]
--        loads DIR, runs WARMUP untimed training steps on a 1×256 slice of the batch (optimizer state,
--        thread pools, allocator; the first one reports the untouched model's loss on the slice), then
--        times STEPS training steps on the whole batch split into forward / backward / optimizer, reads
--        the peak RSS
--        (VmHWM) right after them and counts each timed step's minor page faults (/proc/self/stat), times FWD forward-only passes (logits, no grad) and finally decodes
--        DECODE_NEW tokens (B = 1) after a DECODE_PROMPT-token prefill (0 = skip). One JSON line on stdout.
--        PRECISION fp32 (default) | bf16: hb.set_matmul_precision for everything after loading.
--   hyblua train_step.lua matmul N REPS                    hb.randn(N,N):matmul(hb.randn(N,N)), best time
--
-- Threads: HYBLUA_NUM_THREADS / OPENBLAS_NUM_THREADS from the environment (run.sh sets both).
local hb = require "hyblua"

local now = hb.now
if not now then
  now = function()
    local p = io.popen("date +%s.%N")
    local s = p:read("*l")
    p:close()
    return tonumber(s)
  end
end

local function vmhwm_kb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

-- minor page faults of this process so far (/proc/self/stat field 10), or nil
local function minflt()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local rest = s:match("%)%s+(.*)$") -- fields from 3 on (the name in parentheses may hold spaces)
  local i = 2
  for w in (rest or ""):gmatch("%S+") do
    i = i + 1
    if i == 10 then return tonumber(w) end
  end
  return nil
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return 0.5 * (s[n // 2] + s[n // 2 + 1])
end

local function minimum(t)
  local m = math.huge
  for _, v in ipairs(t) do if v < m then m = v end end
  return m
end

local mode = arg[1]
local threads = tonumber(os.getenv("HYBLUA_NUM_THREADS") or "") or 2
hb.set_num_threads(threads)

if mode == "init" then
  local cfg = hb.io.read_json(arg[2])
  local dir, seed, B, T = arg[3], tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6])
  local m = hb.models.new(cfg, { seed = seed })
  m:save_pretrained(dir)
  hb.manual_seed(seed + 1)
  local ids = hb.randint(0, m.config.vocab_size, { B, T }, "int64")
  hb.io.save_safetensors(dir .. "/batch.safetensors", { input_ids = ids }, { B = tostring(B), T = tostring(T) })
  print(hb.io.encode_json({ params = m:num_parameters() }))

elseif mode == "bench" then
  local dir = arg[2]
  local steps, warmup, nfwd = tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5])
  local dprompt, dnew = tonumber(arg[6] or "0"), tonumber(arg[7] or "0")
  hb.set_matmul_precision(arg[8] or "fp32")
  local m = hb.load_pretrained(dir)
  local ids = hb.io.load_safetensors(dir .. "/batch.safetensors").input_ids
  local B, T = ids:size(1), ids:size(2)
  local out = { side = "hyblua", threads = threads, B = B, T = T, params = m:num_parameters(),
                matmul_precision = hb.matmul_precision() }
  local opt = hb.optim.AdamW(m:parameters(), { lr = 1e-3, betas = { 0.9, 0.95 }, eps = 1e-8, weight_decay = 0.1 })
  -- WARMUP training steps on a 1×256 slice of the batch (optimizer state, thread pools, allocator); the
  -- first one's loss is the untouched model's loss on that slice, compared with torch's
  local wids = ids:narrow(1, 1, 1):narrow(2, 1, math.min(T, 256)):contiguous()
  if steps == 0 and nfwd > 0 then hb.no_grad(function() return m:loss(wids) end) end -- forward warm-up
  local rec = { fwd = {}, bwd = {}, opt = {}, total = {}, region = {}, faults = {} }
  -- seconds inside the pool's parallel regions per part (hb.pool_stats): the rest of a part ran on one thread
  local function region_s() return hb.pool_stats().region_s end
  for s = 1, (steps > 0 and warmup or 0) + steps do
    local x = s <= warmup and wids or ids
    local r0 = region_s()
    local f0 = minflt()
    local t0 = now()
    opt:zero_grad()
    local loss = m:loss(x)
    local t1 = now()
    local r1 = region_s()
    loss:backward()
    local t2 = now()
    local r2 = region_s()
    opt:step()
    local t3 = now()
    local r3 = region_s()
    if s == 1 then out.init_loss = loss:item() end
    if s > warmup then
      rec.fwd[#rec.fwd + 1], rec.bwd[#rec.bwd + 1] = t1 - t0, t2 - t1
      rec.opt[#rec.opt + 1], rec.total[#rec.total + 1] = t3 - t2, t3 - t0
      rec.region[#rec.region + 1] = { fwd = r1 - r0, bwd = r2 - r1, opt = r3 - r2 }
      local f3 = minflt()
      if f0 and f3 then rec.faults[#rec.faults + 1] = f3 - f0 end
    end
    loss = nil
  end
  if steps > 0 then
    out.train = { fwd = rec.fwd, bwd = rec.bwd, opt = rec.opt, total = rec.total, region_s = rec.region,
                  page_faults = rec.faults, best_s = minimum(rec.total), median_s = median(rec.total) }
    out.rss_train_kb = vmhwm_kb()
  end
  opt = nil
  for _, p in ipairs(m:parameters()) do p:zero_grad() end
  collectgarbage()
  if nfwd > 0 then
    local ft = {}
    hb.no_grad(function()
      for i = 1, nfwd do
        local t0 = now()
        local logits = m:forward(ids)
        ft[i] = now() - t0
        logits = nil
      end
    end)
    out.forward = { times = ft, best_s = minimum(ft), median_s = median(ft) }
  end
  if dprompt > 0 and dnew > 0 then
    local row = ids:narrow(1, 1, 1):contiguous()
    local P = math.min(dprompt, T - dnew)
    local cache = m:new_cache(1)
    local t0 = now()
    m:prefill(row:narrow(2, 1, P):contiguous(), cache)
    local t1 = now()
    local st = {}
    for i = 1, dnew do
      local col = row:narrow(2, P + i, 1):contiguous()
      local s0 = now()
      local _ = m:step(col, cache)
      st[i] = now() - s0
    end
    out.decode = { prompt = P, new = dnew, prefill_s = t1 - t0, step_times = st,
                   median_step_s = median(st), best_step_s = minimum(st) }
  end
  print(hb.io.encode_json(out))

elseif mode == "matmul" then
  local N, reps = tonumber(arg[2]), tonumber(arg[3])
  local a, b = hb.randn(N, N), hb.randn(N, N)
  local _ = a:matmul(b)
  local ts = {}
  for i = 1, reps do
    local t0 = now()
    local c <close> = a:matmul(b) -- released each rep, as torch frees its output: reused, not fresh pages
    ts[i] = now() - t0
  end
  local best = minimum(ts)
  print(hb.io.encode_json({ side = "hyblua", N = N, threads = threads, times = ts, best_s = best,
                            gflops_best = 2 * N ^ 3 / best / 1e9, gflops_median = 2 * N ^ 3 / median(ts) / 1e9 }))
else
  io.stderr:write("usage: hyblua tests/bench/train_step.lua init|bench|matmul ...\n")
  os.exit(2)
end
