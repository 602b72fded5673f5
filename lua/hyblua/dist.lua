-- hyblua/dist.lua — data-parallel helpers over hb.mpi (docs/distributed.md).
--
-- hb.mpi (lua/lmpi.c) exists only in ./hyblua-mpi, built by `make MPI=1`; in the default ./hyblua it is
-- nil and hb.dist.init() raises "this hyblua was built without MPI; rebuild with make MPI=1".
--
--   hb.dist.available()           → true when this executable has MPI
--   hb.dist.init()                → ctx {rank, size, local_rank, local_size, host} (MPI_Init on first call)
--   hb.dist.launched_size()       → the rank count mpirun/srun announced in the environment (1 if none)
--   hb.dist.rows(B, ctx)          → first row (1-based), row count of this rank's slice of a B-row batch
--   hb.dist.default_threads(ctx)  → worker threads per rank so the ranks of one host share its cores
--   hb.dist.check_same(ctx, what, value) — raises naming the ranks whose value differs from rank 0's
--   hb.dist.canonical(v)          → a string that is equal for equal Lua values (sorted keys)
--
-- The slicing contract: micro-batch k of the run is a B-row global batch that is a pure function of
-- (seed, k); rank r of N trains on rows r·B/N+1 .. (r+1)·B/N. Each rank's loss is a mean over its B/N
-- rows, so the average of the N gradients is the gradient of the global mean — what one process with
-- batch B computes, up to the order of floating-point additions.
local hb = require "hyblua.binding"
local dist = {}

local NO_MPI = "this hyblua was built without MPI; rebuild with make MPI=1 and run ./hyblua-mpi under mpirun " ..
  "(docs/distributed.md)"

function dist.available() return hb.mpi ~= nil end

function dist.init()
  if not hb.mpi then error("data_parallel: " .. NO_MPI, 0) end
  return hb.mpi.init()
end

-- ranks announced by the launcher (Open MPI, MPICH/Hydra, Slurm), whether or not MPI is initialised
function dist.launched_size()
  for _, v in ipairs { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS" } do
    local n = tonumber(os.getenv(v) or "")
    if n then return math.tointeger(n) or 1 end
  end
  return 1
end

function dist.rows(B, ctx)
  if B % ctx.size ~= 0 then
    error(string.format("data_parallel: the global batch of %d rows is not divisible by %d ranks; " ..
      "choose a batch size that is a multiple of the rank count", B, ctx.size), 0)
  end
  local b = B // ctx.size
  return ctx.rank * b + 1, b
end

function dist.default_threads(ctx)
  local env = tonumber(os.getenv("HYBLUA_NUM_THREADS") or "")
  if env and env > 0 then return math.tointeger(env) end
  local cpus = hb.get_num_threads() -- the online CPUs while no count has been set
  return math.max(1, cpus // math.max(1, ctx.local_size))
end

function dist.canonical(v)
  local t = type(v)
  if v == hb.io.null then return "null" end
  if t == "userdata" or t == "function" or t == "thread" then return t end -- addresses differ between ranks
  if t ~= "table" then return t:sub(1, 1) .. tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for i, k in ipairs(keys) do out[i] = dist.canonical(k) .. "=" .. dist.canonical(v[k]) end
  return "{" .. table.concat(out, ",") .. "}"
end

local fnv1a = hb.data.fnv1a -- 64-bit FNV-1a of a string

-- value: an integer (e.g. hb.mpi.checksum) or any Lua value (compared by canonical form)
function dist.check_same(ctx, what, value)
  if ctx.size == 1 then return end
  local h = math.type(value) == "integer" and value or fnv1a(dist.canonical(value))
  local all = hb.mpi.allgather_int(h)
  local bad = {}
  for r = 2, #all do if all[r] ~= all[1] then bad[#bad + 1] = tostring(r - 1) end end
  if #bad > 0 then
    error(string.format("data_parallel: %s differ across ranks (rank%s %s differ%s from rank 0)", what,
      #bad > 1 and "s" or "", table.concat(bad, ", "), #bad > 1 and "" or "s"), 0)
  end
end

return dist
