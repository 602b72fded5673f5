#!/usr/bin/env bash
# tests/bench/dp_scaling.sh [REPS] [STEPS] [extra recipe args...] — data-parallel scaling on this machine
# (docs/distributed.md): recipes/gdn_3to1.lua at its default size, global batch 16 × 256 tokens, in the
# configurations RxT of $CONFIGS (default "1x1 1x2 2x1"): R ranks × T threads per rank, where 1xT is the
# plain ./hyblua with T threads and R > 1 is `mpirun -np R --bind-to none ./hyblua-mpi` with
# train.data_parallel=true. Each is run REPS times, in alternation (the machine is shared: report
# medians), and a summary line per configuration gives the medians. Per run: tokens/s over
# steps 6..STEPS (the first steps warm caches and the allocator) and the median all-reduce seconds per
# step (comm, after a barrier) and the median wait at that barrier for the slowest rank, from
# metrics.jsonl. Needs ./hyblua and ./hyblua-mpi (make && make MPI=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${1:-3}; STEPS=${2:-30}; shift 2 || true
OUT=${OUT:-/tmp/hb-dp-scaling}
rm -rf "$OUT"; mkdir -p "$OUT"
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
ROOT=""; [ "$(id -u)" = 0 ] && ROOT="--allow-run-as-root"
ARGS=(recipes/gdn_3to1.lua --set train.steps="$STEPS" --set train.eval_every=100000 --set train.save_every=100000
      --set eval.val_tokens=2048 --set eval.probe=4 "$@")
summary() { # dir → "tok/s allreduce_ms wait_ms"
  D="$1" ./hyblua -e '
    local t, a, w = {}, {}, {}
    for l in io.lines(os.getenv("D") .. "/metrics.jsonl") do
      local r = hb.io.decode_json(l)
      if r.loss then t[r.step] = r; if r.step > 5 and r.allreduce_s then a[#a + 1] = r.allreduce_s; w[#w + 1] = r.wait_s end end
    end
    local n = #t
    local rate = (t[n].tokens - t[5].tokens) / (t[n].time - t[5].time)
    table.sort(a); table.sort(w)
    local function med(x) return #x > 0 and 1e3 * x[(#x + 1) // 2] or 0 end
    print(string.format("%.0f %.2f %.2f", rate, med(a), med(w)))'
}
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); ${STEPS} steps; config: ${ARGS[*]}"
CONFIGS=${CONFIGS:-1x1 1x2 2x1}
printf "%-5s %-4s %10s %14s %10s\n" cfg rep tok_per_s allreduce_ms wait_ms
for rep in $(seq 1 "$REPS"); do
  for cfg in $CONFIGS; do
    d="$OUT/$cfg-$rep"; R=${cfg%x*}; T=${cfg#*x}
    if [ "$R" = 1 ]; then
      ./hyblua "${ARGS[@]}" --set threads="$T" --set out="$d" 2> "$d.log" >/dev/null
    else
      mpirun $ROOT --bind-to none -np "$R" ./hyblua-mpi "${ARGS[@]}" --set threads="$T" \
        --set train.data_parallel=true --set out="$d" 2> "$d.log" >/dev/null
    fi
    printf "%-5s %-4s %10s %14s %10s\n" "$cfg" "$rep" $(summary "$d") | tee -a "$OUT/all.txt"
  done
done
for cfg in $CONFIGS; do # medians over the repetitions
  n=$(grep -c "^$cfg " "$OUT/all.txt"); m=$(( (n + 1) / 2 ))
  r=$(grep "^$cfg " "$OUT/all.txt" | awk '{print $3}' | sort -n | sed -n "${m}p")
  a=$(grep "^$cfg " "$OUT/all.txt" | awk '{print $4}' | sort -n | sed -n "${m}p")
  w=$(grep "^$cfg " "$OUT/all.txt" | awk '{print $5}' | sort -n | sed -n "${m}p")
  printf "median %-5s %8s tok/s %8s ms all-reduce %8s ms wait per step (%d runs)\n" "$cfg" "$r" "$a" "$w" "$n"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
