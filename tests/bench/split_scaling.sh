#!/usr/bin/env bash
# tests/bench/split_scaling.sh [SPLITS] [STEPS] — one process × N threads against P processes × T threads on
# the same cores, without MPI (issue 15's "≥ 0.8× the best MPI × threads split"): for each split PxT in SPLITS
# (default "1x16 2x8 4x4"), P copies of tests/bench/train_step.lua bench run at once, each pinned with taskset
# to its own T CPUs (when taskset exists) with HYBLUA_NUM_THREADS=T, on the d 512 / T 2048 configs of
# tests/bench/scaling.lua (B 2 = 4096 tokens per step, best of STEPS, default 3, after one warm-up step).
# The split's throughput is the sum of its processes' tokens/s: an upper bound of data parallelism over MPI
# with that split (no all-reduce, no barrier), so "1 process / best split" here is a lower bound of the ratio
# against a real MPI run. One JSON line per (model, split) on stdout; a markdown table at the end.
# SEQ=T (default 2048) and MODELS="gla ..." shrink a run. Needs ./hyblua (make). Run on a quiet machine with at least P·T CPUs.
set -euo pipefail
cd "$(dirname "$0")/../.."
SPLITS=${1:-"1x16 2x8 4x4"}; STEPS=${2:-3}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
declare -A CFG=(
  [gated_deltanet_3to1]='{"model_type":"gated_deltanet","hidden_size":512,"num_hidden_layers":4,"vocab_size":4096,"num_heads":6,"head_dim":64,"attn":{"layers":[3],"num_heads":8,"num_kv_heads":8}}'
  [gla]='{"model_type":"gla","hidden_size":512,"num_hidden_layers":4,"vocab_size":4096,"num_heads":8}'
  [transformer]='{"model_type":"transformer","hidden_size":512,"num_hidden_layers":4,"vocab_size":4096,"num_heads":8}'
)
MODELS=${MODELS:-"gated_deltanet_3to1 gla transformer"}
for m in $MODELS; do
  echo "${CFG[$m]}" > "$W/$m.json"
  HYBLUA_NUM_THREADS=1 ./hyblua tests/bench/train_step.lua init "$W/$m.json" "$W/$m" 1 2 "${SEQ:-2048}" > /dev/null
done
TASKSET=$(command -v taskset || true)
declare -A RES
for m in $MODELS; do
  for s in $SPLITS; do
    P=${s%x*}; T=${s#*x}
    pids=()
    for ((i = 0; i < P; i++)); do
      pin=(); [ -n "$TASKSET" ] && pin=("$TASKSET" -c "$((i * T))-$((i * T + T - 1))")
      HYBLUA_NUM_THREADS=$T "${pin[@]}" ./hyblua tests/bench/train_step.lua bench "$W/$m" "$STEPS" 1 0 0 0 \
        > "$W/out.$i" 2> "$W/err.$i" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    tot=$(for ((i = 0; i < P; i++)); do grep '^{' "$W/out.$i" | tail -1; done | ./hyblua -e '
      local s = 0
      for l in io.lines() do local r = hb.io.decode_json(l); s = s + r.B * r.T / r.train.best_s end
      io.write(string.format("%.1f", s))')
    RES[$m/$s]=$tot
    echo "{\"model\": \"$m\", \"split\": \"$s\", \"processes\": $P, \"threads\": $T, \"tokens_per_s\": $tot}"
  done
done
{
echo "### One process vs processes × threads ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M') UTC; best of $STEPS steps; no MPI)"
echo
echo "Each split runs its processes at once, each pinned to its own CPUs; its tokens/s is the sum over them (an upper bound of MPI data parallelism, which adds the all-reduce). Target (issue 15): 1 process ≥ 0.8× the best split."
echo
echo "| model | $(for s in $SPLITS; do printf '%s tok/s | ' "$s"; done)1 process / best split |"
echo "|---|$(for s in $SPLITS; do printf -- '---:|'; done)---:|"
for m in $MODELS; do
  first=""; best=0; row=""
  for s in $SPLITS; do
    v=${RES[$m/$s]}; row="$row $v |"; [ -z "$first" ] && first=$v
    best=$(awk -v a="$best" -v b="$v" 'BEGIN { print (b > a ? b : a) }')
  done
  echo "| $m |$row $(awk -v a="$first" -v b="$best" 'BEGIN { printf "%.2f", a / b }') |"
done
} | tee tests/bench/results/split_scaling.md
