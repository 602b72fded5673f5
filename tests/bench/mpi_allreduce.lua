-- tests/bench/mpi_allreduce.lua [REPS] — MPI_Allreduce (sum, float32, in place) over message sizes from
-- 4 KiB to 64 MiB, as hb.mpi.allreduce does it for the gradient buckets. Run under mpirun:
--   mpirun -np 2 ./hyblua-mpi tests/bench/mpi_allreduce.lua 20
-- Rank 0 prints, per size, the median and minimum time over REPS calls (after 3 warm-up calls) and the
-- median's algorithm bandwidth (bytes / t) and bus bandwidth (2(N−1)/N · bytes / t, the per-link rate of a
-- ring allreduce: what docs/distributed.md's cost model divides by). Numbers for docs/distributed.md.
local hb = require "hyblua"
local reps = tonumber(arg[1] or "20")
local ctx = hb.mpi.init()
hb.set_num_threads(1)
local N = ctx.size
local sizes = { 4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20 }
if ctx.rank == 0 then
  print(string.format("# %d ranks on %s; %d repetitions per size", N, ctx.host, reps))
  print(string.format("%10s %12s %12s %14s %14s", "bytes", "median_ms", "min_ms", "algbw_GB/s", "busbw_GB/s"))
end
for _, bytes in ipairs(sizes) do
  local t = hb.randn(bytes // 4)
  local times = {}
  for i = 1, reps + 3 do
    hb.mpi.barrier()
    local s = hb.mpi.allreduce(t, "sum")
    if i > 3 then times[#times + 1] = s end
  end
  -- a rank's time includes waiting for the others; the slowest rank's is the collective's time
  local tmax = {}
  for i, s in ipairs(times) do tmax[i] = hb.mpi.allreduce_values({ s }, "max")[1] end
  table.sort(tmax)
  local med, mn = tmax[(#tmax + 1) // 2], tmax[1]
  if ctx.rank == 0 then
    print(string.format("%10d %12.3f %12.3f %14.2f %14.2f", bytes, med * 1e3, mn * 1e3, bytes / med / 1e9,
      2 * (N - 1) / N * bytes / med / 1e9))
  end
end
