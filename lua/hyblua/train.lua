-- hyblua/train.lua — the training loop: hb.train{...}, learning-rate schedules, checkpoints, resume.
--
-- Determinism: micro-batch k is a pure function of (seed, k) (the data source's contract), the model
-- and optimiser state are saved exactly (float32), and the LR is a function of the step, so a run that
-- is killed and resumed from its last checkpoint produces the same losses, bit for bit, as a run that
-- was never interrupted.
--
-- Checkpoints (out/ckpt-00000200/): config.json + model.safetensors (fla format, loadable by
-- hb.load_pretrained and by fla), optimizer.safetensors (AdamW m and v), trainer_state.json (step,
-- optimiser step count, RNG state, seed, trainer settings). Each is written into a temporary directory,
-- fsynced, then renamed into place, so a crash never leaves a half-written checkpoint under the final
-- name. No run is lost or silently continued wrongly:
--   * resume checks a checkpoint whole before copying anything in: its config.json must equal the
--     model's config exactly (else an error naming the differing fields), every tensor and the optimizer
--     state must fit, trainer_state.json must be valid; changed trainer settings (steps, lr, ...) are
--     reported and logged. A damaged checkpoint is reported, moved aside (ckpt-N.unusable) and the one
--     before it is tried; if none can be read, hb.train stops rather than start afresh over them.
--   * a run deletes (keep rotation) or replaces only checkpoints it wrote or resumed from;
--   * starting afresh in a folder that holds a run is an error unless overwrite = true, which moves the
--     folder aside (out.old-<time>); an unwritable out is refused before the first step.
-- Files and folders are handled through hb.data's C helpers (mkdir, list_dir, remove_checkpoint) and
-- os.rename: no shell.
--
-- Data parallel (data_parallel = true, ./hyblua-mpi under mpirun; docs/distributed.md): every rank
-- draws the same global micro-batch k and trains on its row slice (hb.dist.rows); after the backward
-- pass the gradients are averaged with bucketed MPI_Allreduce (hb.mpi.allreduce_grads) and every rank
-- takes the same optimiser step. Rank 0 alone reads and writes checkpoints, writes the JSONL log and
-- prints progress; at start it broadcasts its weights, optimiser state, step and RNG state, so the run
-- directory need not be visible to the other ranks. The weights are compared across ranks every
-- check_every steps and before each checkpoint (an exact checksum; drift raises, naming step and ranks).
-- The module returns hb.train_utils; hb.train is its `run` (lua/hyblua/init.lua).
local hb = require "hyblua.binding"
local config = require "hyblua.config"
local user_error = require("hyblua.errors").user_error
do
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

  -- ---- small file helpers (no shell: hb.data's C helpers and os.rename, every failure raised) -----------
  local function check_path(s)
    if type(s) ~= "string" then error("train: a checkpoint path must be a string, got a " .. type(s), 0) end
    if s:find("\0", 1, true) then error("train: checkpoint path contains a NUL byte", 0) end
    return s
  end
  local function mkdir_p(d) hb.data.mkdir(check_path(d)) end
  local function listdir(d)
    if not hb.data.is_dir(check_path(d)) then return {} end
    return hb.data.list_dir(d)
  end
  local function exists(p) return hb.io.file_kind(p) ~= nil end   -- a stat: never blocks on a named pipe
  local function nonempty_file(p)
    local f = p and io.open(p, "rb")
    if not f then return false end
    local ok, c = pcall(f.read, f, 1)
    f:close()
    return ok and c ~= nil
  end
  local function rename(from, to)
    local ok, err = os.rename(from, to)
    if not ok then error(string.format("train: cannot rename %s to %s: %s", from, to, tostring(err)), 0) end
  end
  -- a name beside path that does not exist yet: path .. suffix, then path .. suffix .. "-2", ...
  local function free_name(path, suffix)
    local n, cand = 1, path .. suffix
    while exists(cand) do n = n + 1; cand = path .. suffix .. "-" .. n end
    return cand
  end

  local function ckpt_name(step) return string.format("ckpt-%08d", step) end

  -- checkpoints in dir, newest first: { {step=, path=} ... }
  function train.checkpoints(dir)
    local out = {}
    for _, n in ipairs(listdir(dir)) do
      local s = n:match("^ckpt%-(%d+)$")
      if s then out[#out + 1] = { step = math.tointeger(tonumber(s)) or tonumber(s), path = dir .. "/" .. n } end
    end
    table.sort(out, function(a, b) return a.step > b.step end)
    return out
  end

  local function param_names(model)
    local names = {}
    for name in model:named_parameters() do names[#names + 1] = name end
    return names
  end

  -- remove a checkpoint directory: renamed out of the ckpt-N namespace first (atomic), so that a
  -- process killed during the deletion never leaves a half-deleted ckpt-N for resume to find
  local function remove_dir(path)
    local trash = path .. ".del"
    hb.data.remove_checkpoint(trash)
    rename(path, trash)
    hb.data.remove_checkpoint(trash)
  end

  -- write a checkpoint atomically; returns its path. A failed write (disk full, ...) removes what it
  -- wrote and raises "checkpoint of step N (dir/ckpt-N) could not be written: <reason>"; the
  -- checkpoints already there are untouched.
  function train.save_checkpoint(dir, step, model, opt, extra)
    mkdir_p(dir)
    local final = dir .. "/" .. ckpt_name(step)
    local tmp = final .. ".tmp"
    hb.data.remove_checkpoint(tmp)
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
      pcall(hb.data.remove_checkpoint, tmp)
      error(string.format("checkpoint of step %d (%s) could not be written: %s", step, final,
        (tostring(err):gsub("^[^:]*%.lua:%d+: ", ""))), 0)
    end
    if exists(final) then remove_dir(final) end   -- saving a step again: the old copy goes first
    rename(tmp, final)
    hb.fsync(dir)
    return final
  end

  -- ---- reading a checkpoint back: everything is checked before anything is changed ----------------------
  -- A problem is either a MISMATCH (the checkpoint is fine but of another model: resuming it would
  -- continue the wrong run, so hb.train stops) or UNREADABLE (a damaged or incomplete checkpoint:
  -- hb.train moves it aside and tries the one before). Both raise a table {kind=, msg=} inside this file;
  -- the public functions raise the message.
  local Problem = { __tostring = function(e) return e.msg end }
  local function problem(kind, fmt, ...) error(setmetatable({ kind = kind, msg = string.format(fmt, ...) }, Problem), 0) end
  local function reason(e) return (tostring(e):gsub("^[^:]*%.lua:%d+: ", "")) end

  local null = hb.io.null
  local function show(v)
    if v == nil or v == null then return "null" end
    if type(v) == "string" then return string.format("%q", v) end
    if type(v) == "table" then local ok, j = pcall(hb.io.encode_json, v); return ok and j or "a table" end
    return tostring(v)
  end
  -- the fields where config a (the checkpoint's) and b (the model's) differ: "hidden_size (checkpoint 32,
  -- this model 48)"; JSON null and a missing field are the same
  local IGNORED = { dtype = true, torch_dtype = true, transformers_version = true }
  local function config_diff(a, b, path, out)
    if a == null then a = nil end
    if b == null then b = nil end
    if type(a) == "table" and type(b) == "table" then
      local keys, list = {}, {}
      for k in pairs(a) do keys[k] = true end
      for k in pairs(b) do keys[k] = true end
      for k in pairs(keys) do list[#list + 1] = k end
      table.sort(list, function(x, y)
        if type(x) == type(y) then return x < y end
        return type(x) == "number"
      end)
      for _, k in ipairs(list) do
        if not (path == "" and IGNORED[k]) then
          local sub = math.type(k) and string.format("%s[%d]", path, k) or (path == "" and k or path .. "." .. k)
          config_diff(a[k], b[k], sub, out)
        end
      end
    elseif a ~= b then
      out[#out + 1] = string.format("%s (checkpoint %s, this model %s)", path, show(a), show(b))
    end
    return out
  end
  -- a model's config as its config.json would read back (through JSON, so numbers compare as stored)
  local function model_config(model) return hb.io.decode_json(hb.io.encode_json(model:to_config())) end

  -- a tensor of the same shape and a float dtype as p (dtype: the stored dtype's name)
  local function same_shape(t, p) return table.concat(t:shape(), "x") == table.concat(p:shape(), "x") end
  local function read_tensors(file)
    local ok, t, _, dtypes = pcall(hb.io.load_safetensors, file)
    if not ok then problem("unreadable", "%s", reason(t)) end
    return t, dtypes
  end

  -- check everything in checkpoint `path` against model (and opt) and return what apply() copies in;
  -- nothing is changed. `step` (optional): the step its folder name gives.
  local function read_checkpoint(path, model, opt, step)
    check_path(path)
    local okc, cfg = pcall(hb.io.read_json, path .. "/config.json")
    if not okc then problem("unreadable", "%s", reason(cfg)) end
    if type(cfg) ~= "table" then problem("unreadable", "%s/config.json: not a JSON object", path) end
    local diff = config_diff(cfg, model_config(model), "", {})
    if #diff > 0 then
      problem("mismatch", "checkpoint %s is of another model: its config differs in %s", path, table.concat(diff, ", "))
    end
    local oks, state = pcall(hb.io.read_json, path .. "/trainer_state.json")
    if not oks then problem("unreadable", "%s", reason(state)) end
    local sp = path .. "/trainer_state.json"
    if type(state) ~= "table" then problem("unreadable", "%s: not a JSON object", sp) end
    local st = state.step
    if math.type(st) ~= "integer" or st < 0 or st >= 2 ^ 31 then
      problem("unreadable", "%s: 'step' must be an integer in [0, 2^31), got %s", sp, show(st))
    end
    if step and st ~= step then
      problem("unreadable", "%s: 'step' is %d but the folder is named for step %s", sp, st, tostring(step))
    end
    local t = state.opt_t
    if math.type(t) ~= "integer" or t < 0 or t > st then
      problem("unreadable", "%s: 'opt_t' (optimizer steps) must be an integer in [0, step = %d], got %s", sp, st, show(t))
    end
    if state.rng ~= nil then
      local before = hb.get_rng_state()
      local okr = type(state.rng) == "string" and pcall(hb.set_rng_state, state.rng)
      hb.set_rng_state(before)
      if not okr then problem("unreadable", "%s: 'rng' is not a random generator state (got %s)", sp, show(state.rng):sub(1, 80)) end
    end
    local names = param_names(model)
    local mfile = path .. "/model.safetensors"
    local tensors, dtypes = read_tensors(mfile)
    local want = {}
    for _, name in ipairs(names) do
      local w, p = tensors[name], model.params[name]
      want[name] = true
      if not w then problem("unreadable", "%s: tensor '%s' is missing", mfile, name) end
      if not same_shape(w, p) then
        problem("unreadable", "%s: tensor '%s' has shape %s, the model's is %s", mfile, name, table.concat(w:shape(), "x"),
          table.concat(p:shape(), "x"))
      end
      if w:dtype() ~= "float32" and w:dtype() ~= "float64" then
        problem("unreadable", "%s: tensor '%s' holds %s data, expected floating point", mfile, name, dtypes[name] or w:dtype())
      end
    end
    for name in pairs(tensors) do
      if not want[name] and not (name == "lm_head.weight" and model.config.tie_word_embeddings) then
        problem("unreadable", "%s: tensor '%s' is not a parameter of this model", mfile, name)
      end
    end
    local ost
    if opt then
      local ofile = path .. "/optimizer.safetensors"
      ost = read_tensors(ofile)
      for _, name in ipairs(names) do
        for _, k in ipairs({ "m.", "v." }) do
          local s = ost[k .. name]
          if s == nil and t > 0 then problem("unreadable", "%s: state '%s' is missing", ofile, k .. name) end
          if s ~= nil and (not same_shape(s, model.params[name]) or s:dtype() ~= model.params[name]:dtype()) then
            problem("unreadable", "%s: state '%s' has shape %s (%s), its parameter %s (%s)", ofile, k .. name,
              table.concat(s:shape(), "x"), s:dtype(), table.concat(model.params[name]:shape(), "x"), model.params[name]:dtype())
          end
        end
      end
    end
    return { state = state, tensors = tensors, ost = ost, names = names }
  end

  -- copy a checked checkpoint in (cannot fail on bad data: read_checkpoint has seen everything)
  local function apply_checkpoint(ck, model, opt)
    if ck.state.rng then hb.set_rng_state(ck.state.rng) end
    hb.no_grad(function()
      for _, name in ipairs(ck.names) do model.params[name]:copy_(ck.tensors[name]) end
    end)
    if opt then opt:load_state_tensors(ck.names, ck.ost, ck.state.opt_t) end
    return ck.state
  end

  -- load a checkpoint into an existing model (in place, keeping parameter identity) and optimiser; all
  -- or nothing: the config (exactly), every tensor and trainer_state.json are checked before anything is
  -- copied, so a failure leaves model, optimiser and random generator as they were
  function train.load_checkpoint(path, model, opt)
    local ok, ck = pcall(read_checkpoint, path, model, opt)
    if not ok then error(tostring(ck), 0) end
    return apply_checkpoint(ck, model, opt)
  end

  -- the trainer settings a checkpoint records, so that a resume can say what changed
  local TRAINER_KEYS = { "steps", "grad_accum", "lr", "min_lr", "warmup", "schedule", "decay_frac", "betas", "eps",
    "weight_decay", "clip", "save_every", "keep", "eval_every", "log_every", "seed", "matmul_precision", "data_parallel" }
  local function trainer_changes(old, new)
    local out = {}
    if type(old) ~= "table" then return out end
    for _, k in ipairs(TRAINER_KEYS) do
      local a, b = show(old[k]), show(new[k])
      -- numbers compare by value: JSON gives clip = 1.0 back as the integer 1
      local same = a == b or (type(old[k]) == "number" and old[k] == new[k])
      if not same then out[#out + 1] = string.format("%s %s → %s", k, a, b) end
    end
    return out
  end

  -- Get the run folder ready (rank 0, before anything is trained). Returns nothing; raises when the
  -- folder cannot be used:
  --   * it is created if needed and must be writable (refused now, not at the first save);
  --   * it holds an earlier run (ckpt-* entries, or a non-empty log) and resume is false: an error,
  --     unless overwrite, which moves the folder (and a log outside it) aside to <out>.old-<time>;
  --   * overwrite with nothing there is a no-op, so a recipe may call it before writing its files.
  local function prepare_out(out, o)
    check_path(out)
    local okm, e = pcall(mkdir_p, out)
    if not okm then user_error(string.format("hb.train: cannot create the run folder %s: %s", out, reason(e)), 0) end
    local probe = out .. "/.hyblua-write-test"
    local f, ferr = io.open(probe, "wb")
    if not f then
      user_error(string.format("hb.train: the run folder %s is not writable (%s), so no checkpoint could be saved", out,
        tostring(ferr)), 0)
    end
    f:close()
    os.remove(probe)
    local held = {}
    for _, n in ipairs(listdir(out)) do if n:match("^ckpt%-%d+") then held[#held + 1] = n end end
    table.sort(held)
    local log_inside = o.log and o.log:sub(1, #out + 1) == out .. "/"
    if nonempty_file(o.log) then held[#held + 1] = o.log:match("[^/]*$") end
    if #held == 0 then return end
    local what = table.concat(held, ", ", 1, math.min(#held, 4)) .. (#held > 4 and string.format(" and %d more", #held - 4) or "")
    if o.overwrite then
      local stamp = os.date("%Y%m%d-%H%M%S")
      local aside = free_name(out, ".old-" .. stamp)
      rename(out, aside)
      mkdir_p(out)
      io.stderr:write(string.format("overwrite: the earlier run in %s (%s) was moved to %s\n", out, what, aside))
      if o.log and not log_inside and nonempty_file(o.log) then
        local laside = free_name(o.log, ".old-" .. stamp)
        rename(o.log, laside)
        io.stderr:write(string.format("overwrite: its log %s was moved to %s\n", o.log, laside))
      end
    elseif o.resume == false then
      user_error(string.format("hb.train: %s already holds a run (%s) and resume is false; set overwrite = true " ..
        "(recipes: --set train.overwrite=true) to move it aside to %s.old-<time> and start afresh, or choose " ..
        "another out", out, what, out), 0)
    end
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
  --           out=dir, save_every=, keep=, resume=true, overwrite=false, progress=true|false, log_every=,
  --           name=, on_step=function(step, {loss=, lr=, grad_norm=}), on_start=function(start_step),
  --           data_parallel=false, bucket_mb=25, check_every=100, matmul_precision="fp32"|"bf16" }
  -- overwrite: start afresh even if out holds a run, which is moved aside to out.old-<time> first.
  -- on_start: called (rank 0) once out is checked and any resume is done, before the first step.
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
    "resume", "overwrite", "progress", "log_every", "name", "seed", "on_step", "on_start", "data_parallel", "bucket_mb",
    "check_every", "matmul_precision", "step_delay" }

  -- check the options table: names, types and ranges (user errors naming the option and the value)
  local function check_options(o)
    if type(o) ~= "table" then user_error("hb.train{...} expects a table of options, got " .. type(o), 3) end
    config.check_keys(o, train_options, "hb.train")
    local function bad(k, what)
      local v = o[k]
      user_error(string.format("hb.train: '%s' must be %s, got %s", k, what,
        type(v) == "string" and ("'" .. v .. "'") or tostring(v)), 3)
    end
    local function callable(v)
      local mt = getmetatable(v)
      return type(v) == "function" or (type(mt) == "table" and mt.__call ~= nil)
    end
    local function int(k, min, required)
      local v = o[k]
      if v == nil then if required then user_error("hb.train: '" .. k .. "' is required", 3) end return end
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
    if o.model == nil then user_error("hb.train: 'model' is required", 3) end
    if o.batch == nil and o.loss_fn == nil then user_error("hb.train: 'batch' (function(k) → ids) or 'loss_fn' is required", 3) end
    for _, k in ipairs { "batch", "loss_fn", "val", "on_step", "on_start" } do
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
        user_error("hb.train: 'betas' must be a list of two numbers in [0, 1), e.g. {0.9, 0.95}", 3)
      end
    end
    typed("log", "string", "a file path")
    typed("out", "string", "a directory path")
    typed("name", "string", "a string")
    for _, k in ipairs { "resume", "overwrite", "progress", "data_parallel" } do typed(k, "boolean", "true or false") end
    local mm = o.matmul_precision
    if mm ~= nil and mm ~= "fp32" and mm ~= "bf16" then
      user_error("hb.train: matmul_precision must be \"fp32\" or \"bf16\" (got " .. tostring(mm) .. ")", 3)
    end
  end

  function train.run(o)
    check_options(o)
    local model = o.model
    local batch = o.batch
    local steps = o.steps
    local accum = o.grad_accum or 1
    local mm = o.matmul_precision
    local lr_opts = { lr = o.lr or 1e-3, min_lr = o.min_lr or (o.lr or 1e-3) * 0.1, warmup = o.warmup or 0,
                      schedule = o.schedule or "cosine", steps = steps, decay_frac = o.decay_frac }
    local names = param_names(model)
    -- weights, gradients and AdamW's m and v: 16 bytes a parameter, checked before any of it is allocated
    local nparams = model:num_parameters()
    local lim, what = hb.models.memory_limit()
    if lim and nparams * 16 > lim then
      local fb = hb.models.format_bytes
      user_error(string.format("hb.train: training this model needs at least %s (%d parameters × 16 bytes: weights, " ..
        "gradients and AdamW's two moments, before activations), more than %s (%s); use a smaller model, or " ..
        "set hb.models.max_bytes (bytes) to override", fb(nparams * 16), nparams, what, fb(lim)), 2)
    end
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
    local log_every = o.log_every or math.max(1, steps // 20)
    -- the settings trainer_state.json records (a resume reports what changed)
    local trainer = { steps = steps, grad_accum = accum, lr = lr_opts.lr, min_lr = lr_opts.min_lr, warmup = lr_opts.warmup,
      schedule = lr_opts.schedule, decay_frac = o.decay_frac, betas = o.betas or { 0.9, 0.95 }, eps = o.eps or 1e-8,
      weight_decay = o.weight_decay or 0.1, clip = o.clip == nil and 1.0 or o.clip, save_every = o.save_every,
      keep = o.keep or 3, eval_every = o.eval_every, log_every = log_every, seed = o.seed, matmul_precision = mm,
      data_parallel = o.data_parallel and true or false }
    -- the checkpoints this run may replace or rotate away: those it writes and those of the run it resumes
    local owned = {}
    local changes = {}
    if out and root then
      prepare_out(out, o)
      if o.resume ~= false and not o.overwrite then
        local skipped = {}
        for _, c in ipairs(train.checkpoints(out)) do
          local ok, ck = pcall(read_checkpoint, c.path, model, opt, c.step)
          if ok then
            if ck.state.step > steps then
              user_error(string.format("hb.train: %s is at step %d, beyond steps = %d; raise steps to train it further",
                c.path, ck.state.step, steps), 0)
            end
            local st = apply_checkpoint(ck, model, opt)
            start = st.step
            res.resumed_from = c.path
            io.stderr:write(string.format("resuming from %s (step %d)\n", c.path, start))
            changes = trainer_changes(st.trainer, trainer)
            if #changes > 0 then
              io.stderr:write("resume: trainer settings changed since the checkpoint: " .. table.concat(changes, "; ") .. "\n")
            end
            break
          elseif getmetatable(ck) == Problem and ck.kind == "unreadable" then
            skipped[#skipped + 1] = { c = c, msg = ck.msg }
            io.stderr:write(string.format("warning: checkpoint %s is unusable (%s); trying an older one\n", c.path, ck.msg))
          else
            user_error(string.format("hb.train: cannot resume from %s: %s. A run resumes only into the model it trained: " ..
              "use the same model config, choose another out, or set overwrite = true (recipes: --set " ..
              "train.overwrite=true) to move the earlier run aside and start afresh", out, reason(ck)), 0)
          end
        end
        if not res.resumed_from and #skipped > 0 then
          local list = {}
          for _, k in ipairs(skipped) do list[#list + 1] = k.msg end
          user_error(string.format("hb.train: %s holds checkpoints but none can be resumed (%s); repair or remove them, or " ..
            "set overwrite = true (recipes: --set train.overwrite=true) to move the folder aside and start afresh", out,
            table.concat(list, "; ")), 0)
        end
        -- newer checkpoints that could not be read are kept, out of the ckpt-N namespace
        for _, k in ipairs(skipped) do
          local aside = free_name(k.c.path, ".unusable")
          rename(k.c.path, aside)
          io.stderr:write(string.format("the unusable %s was moved to %s\n", k.c.path, aside))
        end
        for _, c in ipairs(train.checkpoints(out)) do if c.step <= start then owned[c.path] = true end end
        -- a write or a deletion that a killed process of this run left half done
        for _, n in ipairs(listdir(out)) do
          if n:match("^ckpt%-%d+%.tmp$") or n:match("^ckpt%-%d+%.del$") then hb.data.remove_checkpoint(out .. "/" .. n) end
        end
        -- starting afresh (nothing to resume): a log of the earlier attempt is kept, not truncated
        if not res.resumed_from and nonempty_file(o.log) then
          local aside = free_name(o.log, ".old-" .. os.date("%Y%m%d-%H%M%S"))
          rename(o.log, aside)
          io.stderr:write(string.format("no checkpoint to resume in %s: starting at step 0; the earlier log %s was moved to %s\n",
            out, o.log, aside))
        end
      end
    end
    if o.on_start and root then o.on_start(start) end
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
      local err
      logf, err = io.open(o.log, start > 0 and "a" or "w")
      if not logf then user_error("hb.train: cannot open the log " .. tostring(err), 0) end
    end
    local function log(rec)
      if logf then logf:write(hb.io.encode_json(rec), "\n"); logf:flush() end
    end
    if #changes > 0 then log({ event = "resume", step = start, from = res.resumed_from, changes = changes }) end
    local tty = root and o.progress ~= false and hb.isatty(2)
    local t0 = os.clock and hb.now and hb.now() or os.time()
    local clock = hb.now or os.time
    local tstart = clock()
    local tokens_done = 0
    local last_ckpt = res.resumed_from
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
      local final = out .. "/" .. ckpt_name(step)
      if exists(final) and not owned[final] then   -- never replace what this run did not write
        error(string.format("training stopped: %s exists but was not written by this run (another process writing " ..
          "into %s?); it is left as it is; the last good checkpoint is %s", final, out, last_ckpt or "(none)"), 0)
      end
      local ok, path = pcall(train.save_checkpoint, out, step, model, opt, { seed = o.seed, name = o.name, trainer = trainer })
      if not ok then   -- e.g. the disk is full: stop rather than train on without a way to save
        error(string.format("training stopped: %s; the last good checkpoint is %s", tostring(path),
          last_ckpt or "(none: no checkpoint was written)"), 0)
      end
      owned[path] = true
      last_ckpt = path
      -- keep the `keep` newest of this run's checkpoints up to this step: never the one just written, never
      -- one that this run did not write (or resume from), never a newer one
      local keep, n = math.max(1, o.keep or 3), 0
      for _, c in ipairs(train.checkpoints(out)) do
        if owned[c.path] and c.step <= step then
          n = n + 1
          if n > keep and c.path ~= path then remove_dir(c.path); owned[c.path] = nil end
        end
      end
      return path
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
            res.checkpoint and exists(res.checkpoint .. "/trainer_state.json")
              and ("; saved " .. res.checkpoint .. " — run the same command to resume") or "")) end
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

  return train
end
