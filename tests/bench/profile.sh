#!/usr/bin/env bash
# tests/bench/profile.sh MIXER D T [train|forward|decode] [hybrid] — where does hyblua spend its time?
#
# Builds the benchmark's model config (tests/bench/harness.py: model_config) for MIXER at width D and
# sequence length T (B = 4096/T), runs `perf record --call-graph dwarf` over the hyblua side of the
# benchmark for one phase, and prints
#   1. self time by symbol (where the cycles are), and
#   2. inclusive time of hyblua's op entry points (hb_* forward ops, bw_* backward nodes, *_f32 kernels),
# both as % of all samples of all threads. Reports are kept in tests/bench/results/profile-*.txt
# (git-ignored). Example: tests/bench/profile.sh gla 256 512 train
set -euo pipefail
cd "$(dirname "$0")/../.."
MIXER=${1:?mixer}; D=${2:?width}; T=${3:?seq len}; PHASE=${4:-train}; HYB=${5:-}
THREADS=${THREADS:-2}
export HYBLUA_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
PY="${HB_BENCH_PYTHON:-/usr/bin/python3}"
make -s hyblua
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -c "import sys, json; sys.path.insert(0, 'tests/bench'); import harness; \
json.dump(harness.model_config('$MIXER', $D, '$HYB' == 'hybrid'), open('$work/cfg.json', 'w'))"
B=$(( 4096 / T )); [ "$B" -ge 1 ] || B=1
./hyblua tests/bench/train_step.lua init "$work/cfg.json" "$work/m" 1234 "$B" "$T" >/dev/null
case "$PHASE" in
  train)   args=(2 1 0 0 0) ;;
  forward) args=(0 0 3 0 0) ;;
  decode)  args=(0 0 0 256 64) ;;
  *) echo "phase must be train, forward or decode" >&2; exit 2 ;;
esac
tag="$MIXER${HYB:+-3to1}-d$D-T$T-$PHASE"
mkdir -p tests/bench/results
out=tests/bench/results/profile-$tag.txt
perf record -q -F 499 --call-graph dwarf,16384 -o "$work/perf.data" \
  ./hyblua tests/bench/train_step.lua bench "$work/m" "${args[@]}" > "$work/result.json" 2>/dev/null
{
  echo "# hyblua profile: $tag (threads $THREADS, B $B)"
  echo "# result: $(head -c 400 "$work/result.json")"
  echo
  echo "## self time by symbol (% of samples, all threads)"
  perf report -i "$work/perf.data" --no-children --sort dso,symbol -g none --percent-limit 0.7 --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -40
  echo
  echo "## inclusive time of hyblua ops (% of samples, all threads; nested ops are counted in their callers too)"
  perf report -i "$work/perf.data" --children --sort symbol -g none --percent-limit 0.5 --stdio 2>/dev/null \
    | grep -v '^#' | grep -E '\] (hb_[a-z0-9_]+|bw_[a-z0-9_]+|l_[a-z0-9_]+|[a-z0-9_]+_f32|hb_backward|adamw[a-z_]*)( |$)' \
    | head -50
} > "$out"
cat "$out"
