-- hyblua/train.lua — the training loop: hb.train{...}, learning-rate schedules, checkpoints, resume.
--
-- Determinism: micro-batch k is a pure function of (seed, k) (the data source's contract), the model
-- and optimiser state are saved exactly (float32), and the LR is a function of the step, so a run that
-- is killed and resumed from its last checkpoint produces the same losses, bit for bit, as a run that
-- was never interrupted.
--
-- Checkpoints (out/ckpt-00000200/): config.json + model.safetensors (fla format, loadable by
-- hb.load_pretrained and by fla), optimizer.safetensors (AdamW m and v), trainer_state.json (step,
-- optimiser step count, RNG state, seed). Each is written into a temporary directory, fsynced, then
-- renamed into place, so a crash never leaves a half-written checkpoint under the final name. Resume
-- takes the newest checkpoint that loads; a corrupt one is reported and skipped.
--
-- Data parallel (data_parallel = true, ./hyblua-mpi under mpirun; docs/distributed.md): every rank
-- draws the same global micro-batch k and trains on its row slice (hb.dist.rows); after the backward
-- pass the gradients are averaged with bucketed MPI_Allreduce (hb.mpi.allreduce_grads) and every rank
-- takes the same optimiser step. Rank 0 alone reads and writes checkpoints, writes the JSONL log and
-- prints progress; at start it broadcasts its weights, optimiser state, step and RNG state, so the run
-- directory need not be visible to the other ranks. The weights are compared across ranks every
-- check_every steps and before each checkpoint (an exact checksum; drift raises, naming step and ranks).
return function(hb)
  local train = {}

  -- ---- learning-rate schedules -------------------------------------------------------------------
  -- step counts from 1. warmup: linear from lr/warmup to lr. Then:
  --   cosine:   min_lr + (lr − min_lr)·½(1 + cos(π·p)), p = progress after warm-up in [0, 1]
  --   wsd:      constant lr, then a linear decay to min_lr over the last `decay_frac` of the steps
  --   constant: lr
  function train.lr_at(step, o)
    local lr, min_lr, warm, total = o.lr, o.min_lr or 0, o.warmup or 0, o.steps
    if warm > 0 and step <= warm then return lr * step / warm end
    local sched = o.schedule or "cosine"
    if sched == "constant" then return lr end
    local span = math.max(1, total - warm)
    local p = math.min(1, math.max(0, (step - warm) / span))
    if sched == "cosine" then
      return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))
    elseif sched == "wsd" then
      local frac = o.decay_frac or 0.2
      local start = total - math.floor(total * frac + 0.5)
      if step <= start then return lr end
      local q = (step - start) / math.max(1, total - start)
      return lr + (min_lr - lr) * q
    end
    error("train: unknown schedule '" .. tostring(sched) .. "' (cosine, wsd, constant)", 0)
  end

  -- ---- small file helpers --------------------------------------------------------------------------
  -- paths go to the shell quoted and after "--" (a path may start with "-"); NUL cannot be passed
  local function sh_quote(s)
    if type(s) ~= "string" then error("train: a checkpoint path must be a string, got a " .. type(s), 0) end
    if s:find("\0", 1, true) then error("train: checkpoint path contains a NUL byte", 0) end
    return "'" .. s:gsub("'", "'\\''") .. "'"
  end
  local function mkdir_p(d) os.execute("mkdir -p -- " .. sh_quote(d)) end
  local function rm_rf(d) os.execute("rm -rf -- " .. sh_quote(d)) end
  local function listdir(d)
    local out = {}
    local p = io.popen("ls -1 -- " .. sh_quote(d) .. " 2>/dev/null")
    if p then for l in p:lines() do out[#out + 1] = l end p:close() end
    return out
  end
  local function exists(p) local f = io.open(p, "rb"); if f then f:close(); return true end return false end

  local function ckpt_name(step) return string.format("ckpt-%08d", step) end

  -- checkpoints in dir, newest first: { {step=, path=} ... }
  function train.checkpoints(dir)
    local out = {}
    for _, n in ipairs(listdir(dir)) do
      local s = n:match("^ckpt%-(%d+)$")
      if s then out[#out + 1] = { step = tonumber(s), path = dir .. "/" .. n } end
    end
    table.sort(out, function(a, b) return a.step > b.step end)
    return out
  end

  local function param_names(model)
    local names = {}
    for name in model:named_parameters() do names[#names + 1] = name end
    return names
  end

  -- write a checkpoint atomically; returns its path
  -- remove a checkpoint directory: renamed out of the ckpt-N namespace first (atomic), so that a
  -- process killed during the deletion never leaves a half-deleted ckpt-N for resume to find
  local function remove_dir(path)
    local trash = path .. ".del"
    rm_rf(trash)
    if os.rename(path, trash) then rm_rf(trash) else rm_rf(path) end
  end

  -- write a checkpoint atomically; returns its path. A failed write (disk full, ...) removes what it
  -- wrote and raises "checkpoint of step N (dir/ckpt-N) could not be written: <reason>"; the
  -- checkpoints already there are untouched.
  function train.save_checkpoint(dir, step, model, opt, extra)
    mkdir_p(dir)
    local final = dir .. "/" .. ckpt_name(step)
    local tmp = final .. ".tmp"
    rm_rf(tmp)
    mkdir_p(tmp)
    local ok, err = pcall(function()
      model:save_pretrained(tmp)
      if opt then
        local names = param_names(model)
        hb.io.save_safetensors(tmp .. "/optimizer.safetensors", opt:state_tensors(names), { step = tostring(opt.t) })
      end
      local state = { step = step, opt_t = opt and opt.t or 0, rng = hb.get_rng_state(), version = hb.version }
      for k, v in pairs(extra or {}) do state[k] = v end
      hb.io.write_json(tmp .. "/trainer_state.json", state)
      hb.fsync(tmp)
    end)
    if not ok then
      rm_rf(tmp)
      error(string.format("checkpoint of step %d (%s) could not be written: %s", step, final,
        (tostring(err):gsub("^[^:]*%.lua:%d+: ", ""))), 0)
    end
    if exists(final) then remove_dir(final) end   -- saving a step again: the old copy goes first
    local ok2, err2 = os.rename(tmp, final)
    if not ok2 then error("checkpoint: cannot rename " .. tmp .. " → " .. final .. ": " .. tostring(err2), 0) end
    hb.fsync(dir)
    return final
  end

  -- load a checkpoint into an existing model (in place, keeping parameter identity) and optimiser
  function train.load_checkpoint(path, model, opt)
    local state = hb.io.read_json(path .. "/trainer_state.json")
    if type(state) ~= "table" or math.type(state.step) ~= "integer" then
      error(path .. "/trainer_state.json: missing or invalid 'step'", 0)
    end
    local tensors = hb.io.load_safetensors(path .. "/model.safetensors")
    local names = param_names(model)
    -- validate everything before touching the model
    for _, name in ipairs(names) do
      local t, p = tensors[name], model.params[name]
      if not t then error(path .. ": tensor '" .. name .. "' is missing", 0) end
      if table.concat(t:shape(), "x") ~= table.concat(p:shape(), "x") then
        error(path .. ": tensor '" .. name .. "' has the wrong shape", 0)
      end
    end
    local ost
    if opt then
      ost = hb.io.load_safetensors(path .. "/optimizer.safetensors")
      for _, name in ipairs(names) do
        if state.opt_t > 0 and (not ost["m." .. name] or not ost["v." .. name]) then
          error(path .. "/optimizer.safetensors: state of '" .. name .. "' is missing", 0)
        end
      end
    end
    hb.no_grad(function()
      for _, name in ipairs(names) do model.params[name]:copy_(tensors[name]) end
    end)
    if opt then opt:load_state_tensors(names, ost, state.opt_t) end
    if state.rng then hb.set_rng_state(state.rng) end
    return state
  end

  -- A resumed run appends to its JSONL log. Records the run will write again are removed first, so that
  -- no step appears twice: those after the checkpoint `start` (logged before a crash or Ctrl-C that came
  -- after the checkpoint) and, when the run is already finished (start == steps), the final validation,
  -- which is run and logged again. A missing log is left missing; the rewrite is atomic.
  function train.trim_log(path, start, steps)
    local f = io.open(path, "r")
    if not f then return end
    local keep, dropped = {}, false
    for line in f:lines() do
      local ok, rec = pcall(hb.io.decode_json, line)
      local step = ok and type(rec) == "table" and rec.step
      if math.type(step) == "integer" and (step < start or (step == start and not (rec.val_loss ~= nil and start == steps))) then
        keep[#keep + 1] = line
      else
        dropped = true -- a later step, a repeated final validation, or a torn last line
      end
    end
    f:close()
    if dropped then hb.config.write_text(path, #keep > 0 and table.concat(keep, "\n") .. "\n" or "") end
  end

  -- ---- progress display -----------------------------------------------------------------------------
  local function fmt_time(s)
    s = math.max(0, math.floor(s + 0.5))
    if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, (s % 3600) // 60, s % 60) end
    return string.format("%02d:%02d", s // 60, s % 60)
  end
  local function fmt_rate(r)
    if r >= 1000 then return string.format("%.1fk", r / 1000) end
    return string.format("%.0f", r)
  end

  local function is_finite(x) return x == x and x ~= math.huge and x ~= -math.huge end
  local function num_name(x) return x ~= x and "NaN" or (x > 0 and "+Inf" or "-Inf") end

  -- ---- the loop -------------------------------------------------------------------------------------
  -- hb.train{ model=, batch=function(k) → ids [B, T+1] (micro-batch k, 0-based, deterministic)
  --           | loss_fn=function(k) → scalar loss tensor, tokens (any objective, e.g. MQAR),
  --           steps=, grad_accum=1, lr=, min_lr=, warmup=, schedule=, decay_frac=, betas=, eps=,
  --           weight_decay=, clip=, val=function(model) → loss, eval_every=, log=path.jsonl,
  --           out=dir, save_every=, keep=, resume=true, progress=true|false, log_every=, name=,
  --           data_parallel=false, bucket_mb=25, check_every=100, matmul_precision="fp32"|"bf16" }
  -- An unknown option, a wrong type or an out-of-range value is a user error (check_options).
  -- matmul_precision: hb.set_matmul_precision for this run's steps and validations (restored on return);
  -- nil leaves the process-wide setting as it is.
  -- With data_parallel, batch(k) returns the GLOBAL micro-batch (every rank keeps its rows) and
  -- loss_fn(k, ctx) is called with ctx = {rank=, size=, ...} and must return this rank's share.
  -- returns { step=, losses={...}, val={...}, interrupted=bool, checkpoint=path }
  -- ---- options -------------------------------------------------------------------------------------
  -- every option hb.train reads; an unknown key is an error with hb.config's did-you-mean suggestion
  local train_options = { "model", "batch", "loss_fn", "steps", "grad_accum", "lr", "min_lr", "warmup", "schedule",
    "decay_frac", "betas", "eps", "weight_decay", "clip", "val", "eval_every", "log", "out", "save_every", "keep",
    "resume", "progress", "log_every", "name", "seed", "on_step", "data_parallel", "bucket_mb", "check_every",
    "matmul_precision", "step_delay" }

  -- check the options table: names, types and ranges (user errors naming the option and the value)
  local function check_options(o)
    if type(o) ~= "table" then hb.user_error("hb.train{...} expects a table of options, got " .. type(o), 3) end
    hb.config.check_keys(o, train_options, "hb.train")
    local function bad(k, what)
      local v = o[k]
      hb.user_error(string.format("hb.train: '%s' must be %s, got %s", k, what,
        type(v) == "string" and ("'" .. v .. "'") or tostring(v)), 3)
    end
    local function callable(v)
      local mt = getmetatable(v)
      return type(v) == "function" or (type(mt) == "table" and mt.__call ~= nil)
    end
    local function int(k, min, required)
      local v = o[k]
      if v == nil then if required then hb.user_error("hb.train: '" .. k .. "' is required", 3) end return end
      if math.type(v) ~= "integer" or v < min then bad(k, "an integer >= " .. min) end
    end
    local function num(k, lo, open_lo, hi)
      local v = o[k]
      if v == nil then return end
      if type(v) ~= "number" or v ~= v or v < lo or (open_lo and v == lo) or (hi and v > hi) or v == math.huge then
        bad(k, "a number " .. (open_lo and "> " or ">= ") .. lo .. (hi and (" and <= " .. hi) or ""))
      end
    end
    local function typed(k, t, what)
      local v = o[k]
      if v ~= nil and type(v) ~= t then bad(k, what) end
    end
    if o.model == nil then hb.user_error("hb.train: 'model' is required", 3) end
    if o.batch == nil and o.loss_fn == nil then hb.user_error("hb.train: 'batch' (function(k) → ids) or 'loss_fn' is required", 3) end
    for _, k in ipairs { "batch", "loss_fn", "val", "on_step" } do
      if o[k] ~= nil and not callable(o[k]) then bad(k, "a function") end
    end
    int("steps", 1, true)
    for _, k in ipairs { "grad_accum", "eval_every", "save_every", "keep", "log_every", "check_every" } do int(k, 1) end
    int("warmup", 0)
    if o.seed ~= nil and math.type(o.seed) ~= "integer" then bad("seed", "an integer") end
    num("lr", 0, true)
    num("min_lr", 0)
    num("decay_frac", 0, true, 1)
    num("eps", 0, true)
    num("weight_decay", 0)
    num("bucket_mb", 0, true)
    num("step_delay", 0)
    if o.clip ~= nil and o.clip ~= false then num("clip", 0) end
    if o.schedule ~= nil and o.schedule ~= "cosine" and o.schedule ~= "wsd" and o.schedule ~= "constant" then
      bad("schedule", "\"cosine\", \"wsd\" or \"constant\"")
    end
    if o.betas ~= nil then
      local b = o.betas
      if type(b) ~= "table" or #b ~= 2 or type(b[1]) ~= "number" or type(b[2]) ~= "number"
        or b[1] < 0 or b[1] >= 1 or b[2] < 0 or b[2] >= 1 then
        hb.user_error("hb.train: 'betas' must be a list of two numbers in [0, 1), e.g. {0.9, 0.95}", 3)
      end
    end
    typed("log", "string", "a file path")
    typed("out", "string", "a directory path")
    typed("name", "string", "a string")
    for _, k in ipairs { "resume", "progress", "data_parallel" } do typed(k, "boolean", "true or false") end
    local mm = o.matmul_precision
    if mm ~= nil and mm ~= "fp32" and mm ~= "bf16" then
      hb.user_error("hb.train: matmul_precision must be \"fp32\" or \"bf16\" (got " .. tostring(mm) .. ")", 3)
    end
  end

  function hb.train(o)
    check_options(o)
    local model = o.model
    local batch = o.batch
    local steps = o.steps
    local accum = o.grad_accum or 1
    local mm = o.matmul_precision
    local lr_opts = { lr = o.lr or 1e-3, min_lr = o.min_lr or (o.lr or 1e-3) * 0.1, warmup = o.warmup or 0,
                      schedule = o.schedule or "cosine", steps = steps, decay_frac = o.decay_frac }
    local names = param_names(model)
    local decay, no_decay = {}, {}
    for _, n in ipairs(names) do
      if model:no_weight_decay(n) then no_decay[#no_decay + 1] = model.params[n] else decay[#decay + 1] = model.params[n] end
    end
    local groups = { { params = decay, weight_decay = o.weight_decay or 0.1 } }
    if #no_decay > 0 then groups[2] = { params = no_decay, weight_decay = 0 } end
    local opt = hb.optim.AdamW(groups, { lr = lr_opts.lr, betas = o.betas or { 0.9, 0.95 }, eps = o.eps or 1e-8 })
    -- AdamW:params() must follow `names` order for state (de)serialisation
    local ordered = {}
    for _, p in ipairs(decay) do ordered[#ordered + 1] = p end
    for _, p in ipairs(no_decay) do ordered[#ordered + 1] = p end
    local name_of = {}
    for _, n in ipairs(names) do name_of[model.params[n]] = n end
    local opt_names = {}
    for i, p in ipairs(ordered) do opt_names[i] = name_of[p] end
    local orig_state_tensors, orig_load = opt.state_tensors, opt.load_state_tensors
    function opt:state_tensors() return orig_state_tensors(self, opt_names) end
    function opt:load_state_tensors(_, t, n) return orig_load(self, opt_names, t, n) end

    local dp = o.data_parallel and hb.dist.init() or nil
    local root = not dp or dp.rank == 0
    local bucket_bytes = math.floor((o.bucket_mb or 25) * 1048576)
    local check_every = o.check_every or 100
    local out = o.out
    local start = 0
    local res = { losses = {}, val = {}, interrupted = false, rank = dp and dp.rank, ranks = dp and dp.size }
    if out and o.resume ~= false and root then
      for _, c in ipairs(train.checkpoints(out)) do
        local ok, st = pcall(train.load_checkpoint, c.path, model, opt)
        if ok then
          start = st.step
          res.resumed_from = c.path
          io.stderr:write(string.format("resuming from %s (step %d)\n", c.path, start))
          break
        else
          io.stderr:write(string.format("warning: checkpoint %s is unusable (%s); trying an older one\n", c.path, tostring(st)))
        end
      end
    end
    -- data parallel: every rank starts from rank 0's state (fresh or resumed)
    if dp then
      local st = hb.io.decode_json(hb.mpi.bcast_string(root and hb.io.encode_json(
        { start = start, opt_t = opt.t, rng = hb.get_rng_state() }) or nil, 0))
      if not root then start, opt.t = st.start, st.opt_t; hb.set_rng_state(st.rng) end
      if start == 0 then
        hb.dist.check_same(dp, "the initial weights (seed or model configuration)", hb.mpi.checksum(ordered))
      end
      for _, p in ipairs(ordered) do hb.mpi.bcast(p, 0) end
      if st.opt_t > 0 then
        for _, p in ipairs(ordered) do
          local s = opt.state[p]
          if not s then
            s = { m = hb.zeros(p:shape(), p:dtype()), v = hb.zeros(p:shape(), p:dtype()) }
            opt.state[p] = s
          end
          hb.mpi.bcast(s.m, 0)
          hb.mpi.bcast(s.v, 0)
        end
      end
    end
    local logf
    if o.log and root then
      local d = o.log:match("^(.*)/[^/]*$")
      if d then mkdir_p(d) end
      if start > 0 then train.trim_log(o.log, start, steps) end
      logf = assert(io.open(o.log, start > 0 and "a" or "w"))
    end
    local function log(rec)
      if logf then logf:write(hb.io.encode_json(rec), "\n"); logf:flush() end
    end
    local tty = root and o.progress ~= false and hb.isatty(2)
    local log_every = o.log_every or math.max(1, steps // 20)
    local t0 = os.clock and hb.now and hb.now() or os.time()
    local clock = hb.now or os.time
    local tstart = clock()
    local tokens_done = 0
    local last_ckpt = (out and root and train.checkpoints(out)[1] or {}).path
    local prev_defer = hb.defer_interrupts(true)
    local function finish()
      hb.defer_interrupts(prev_defer)
      if logf then logf:close() end
      if tty then io.stderr:write("\n") end
    end
    local function verify(step)
      if dp then hb.dist.check_same(dp, string.format("the weights after step %d", step), hb.mpi.checksum(ordered)) end
    end
    local function save(step)
      if not out then return nil end
      verify(step)
      if not root then return nil end
      local ok, path = pcall(train.save_checkpoint, out, step, model, opt, { seed = o.seed, name = o.name })
      if not ok then   -- e.g. the disk is full: stop rather than train on without a way to save
        error(string.format("training stopped: %s; the last good checkpoint is %s", tostring(path),
          last_ckpt or "(none: no checkpoint was written)"), 0)
      end
      last_ckpt = path
      local keep = o.keep or 3
      local all = train.checkpoints(out)
      for i = keep + 1, #all do remove_dir(all[i].path) end
      return last_ckpt
    end
    local function validate(step)
      if not o.val or not root then return end
      local v = hb.no_grad(function() return o.val(model) end)
      res.val[#res.val + 1] = { step = step, loss = v }
      log({ step = step, val_loss = v })
      if not tty then io.stderr:write(string.format("step %d: validation loss %.4f\n", step, v)) end
      return v
    end

    local prev_mm = hb.matmul_precision()
    if mm then hb.set_matmul_precision(mm) end
    local ok, err = pcall(function()
      for step = start + 1, steps do
        local lr = train.lr_at(step, lr_opts)
        local total, ntok = 0, 0
        opt:zero_grad()
        for a = 0, accum - 1 do
          local k = (step - 1) * accum + a
          local loss, mtok
          if o.loss_fn then
            loss, mtok = o.loss_fn(k, dp)
          else
            local ids = batch(k)
            if type(ids) == "table" then ids = hb.tensor(ids, "int64") end
            if dp then ids = ids:narrow(1, hb.dist.rows(ids:size(1), dp)) end
            loss, mtok = model:loss(ids), ids:size(1) * (ids:size(2) - 1)
          end
          local lv = loss:item()
          if not is_finite(lv) then
            error(string.format("training stopped: loss is %s at step %d (micro-batch %d); the last good checkpoint is %s",
              num_name(lv), step, k, last_ckpt or "(none: no checkpoint was written)"), 0)
          end
          total = total + lv / accum
          if accum > 1 then loss = loss / accum end
          loss:backward()
          ntok = ntok + (mtok or 0)
        end
        local stop, comm_s, wait_s = false, nil, nil
        if dp then
          -- average the gradients; the reported loss is the global mean (equal rows per rank). The
          -- barrier first separates waiting for the slowest rank (wait_s) from the transfer (comm_s).
          local tc = hb.now()
          hb.mpi.barrier()
          wait_s = hb.now() - tc
          comm_s = hb.mpi.allreduce_grads(ordered, bucket_bytes, "avg")
          local tv = hb.now()
          local v = hb.mpi.allreduce_values({ total, ntok, hb.interrupted() and 1 or 0 }, "sum")
          comm_s = comm_s + (hb.now() - tv)
          total, ntok, stop = v[1] / dp.size, math.tointeger(v[2]) or v[2], v[3] > 0
          res.allreduce_s = (res.allreduce_s or 0) + comm_s
          res.wait_s = (res.wait_s or 0) + wait_s
          res.sync_s = (res.sync_s or 0) + (hb.now() - tc)
        end
        local gnorm = hb.optim.clip_grad_norm(ordered, o.clip == nil and 1.0 or o.clip)
        if not is_finite(gnorm) then
          error(string.format("training stopped: gradient norm is %s at step %d; the last good checkpoint is %s",
            num_name(gnorm), step, last_ckpt or "(none)"), 0)
        end
        opt:step(lr)
        tokens_done = tokens_done + ntok
        res.losses[step] = total
        res.step = step
        local el = clock() - tstart
        local rate = tokens_done / math.max(el, 1e-9)
        local eta = (steps - step) * el / math.max(step - start, 1)
        log({ step = step, loss = total, lr = lr, grad_norm = gnorm, tokens = step * ntok, tok_per_s = rate, time = el,
              ranks = dp and dp.size, allreduce_s = comm_s, wait_s = wait_s })
        if o.on_step then o.on_step(step, { loss = total, lr = lr, grad_norm = gnorm }) end
        if o.step_delay and o.step_delay > 0 then hb.sleep(o.step_delay) end
        if tty then
          local w = 20
          local filled = math.floor(w * step / steps)
          io.stderr:write(string.format("\r%s [%s%s] %d/%d | loss %.4f | lr %.2e | %s tok/s | ETA %s  ",
            o.name or "train", string.rep("#", filled), string.rep(".", w - filled), step, steps, total, lr, fmt_rate(rate), fmt_time(eta)))
        elseif root and (step % log_every == 0 or step == steps) then
          io.stderr:write(string.format("step %d/%d loss %.4f lr %.2e %s tok/s ETA %s\n", step, steps, total, lr, fmt_rate(rate), fmt_time(eta)))
        end
        if o.eval_every and step % o.eval_every == 0 and step < steps then validate(step) end
        if o.save_every and step % o.save_every == 0 and step < steps then save(step)
        elseif dp and step % check_every == 0 then verify(step) end
        if stop or (not dp and hb.interrupted()) then
          res.interrupted = true
          res.checkpoint = save(step)
          if root then io.stderr:write(string.format("\ninterrupted at step %d%s\n", step,
            res.checkpoint and ("; saved " .. res.checkpoint .. " — run the same command to resume") or "")) end
          return
        end
      end
      if res.step == steps or start == steps then
        validate(steps)
        res.checkpoint = save(steps)
        if not out then verify(steps) end
      end
    end)
    hb.set_matmul_precision(prev_mm)
    finish()
    if not ok then error(err, 0) end
    res.elapsed = clock() - tstart
    res.tokens = tokens_done
    return res
  end

  -- a deterministic pseudo-corpus for tests and demos: row b of micro-batch k is a repeated random
  -- phrase (so models can learn it), a pure function of (k, b)
  function train.synthetic_batch(k, B, T, V)
    for _, a in ipairs({ { "k", k, 0 }, { "B", B, 1 }, { "T", T, 1 }, { "V", V, 1 } }) do
      if math.type(a[2]) ~= "integer" or a[2] < a[3] then
        error(string.format("synthetic_batch: %s must be an integer >= %d, got %s", a[1], a[3], tostring(a[2])), 2)
      end
    end
    if B > (1 << 24) // T then error(string.format("synthetic_batch: B·T = %d·%d is over 2^24 tokens", B, T), 2) end
    local rows = {}
    for b = 1, B do
      local x = (k * 7919 + b * 104729) % 2147483647
      local function rnd() x = (x * 48271) % 2147483647; return x end
      local plen = 3 + rnd() % 6
      local phrase = {}
      for i = 1, plen do phrase[i] = rnd() % V end
      local row = {}
      for t = 1, T do row[t] = phrase[(t - 1) % plen + 1] end
      rows[b] = row
    end
    return rows
  end

  hb.train_utils = train
end
