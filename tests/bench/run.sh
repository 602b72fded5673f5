#!/usr/bin/env bash
# tests/bench/run.sh [--quick] [--threads N] [harness options] — `make bench`: hyblua vs PyTorch-CPU.
# tests/bench/run.sh --packing [HIDDEN TOTAL REPEATS] — the cost of packed sequences only (tests/bench/packing.lua:
#   training tokens/s of every model type, unpacked rows vs one packed row of documents, same tokens).
# tests/bench/run.sh --scaling [THREADS] — thread scaling only (1,2,4,8,16 unless THREADS, a comma list):
#   tests/bench/scaling.lua prints a markdown table (training tokens/s per model type, prefill/decode
#   tokens/s, kernel and gemm GFLOP/s, kernel/gemm ratio; speed-up and efficiency per thread count).
#   Needs no Python: make, a C compiler and ./hyblua only. About 2 min per thread count on an idle host.
# tests/bench/run.sh --inference [SIZES] [--threads N] — inference only (340m unless SIZES: 340m,1.3b):
#   tests/bench/inference.lua (prefill / decode tokens/s of GatedDeltaNet 3:1 and Transformer at fla's shapes,
#   bf16 safetensors loaded by mmap, against the memory-bandwidth bound measured by build/bench/stream_bench;
#   about 4 min on the shared 2-core machine). A full run (no --quick / --only) runs the 340m part too.
#
# Builds ./hyblua (if needed) and build/bench/kernels_bench (tests/bench/kernels_bench.c, compiled with
# the Makefile's own CFLAGS and linked against build/libhbcore.a), checks that Debian's python3-torch
# is importable, then runs tests/bench/harness.py, which writes docs/performance.md and
# tests/bench/results/latest.json. Both sides use the same thread count (default 2); the thread
# environment is exported here, before any Python process imports torch.
# A full run takes 28–35 minutes on the shared 2-core machine (depending on its load); --quick about 5.
# --only next [--quick]: issue 13's mixers alone (KDA, Gated DeltaProduct, RWKV-7's DPLR, Mamba-2's SSD:
#   kernel GFLOP/s against an sgemm timed in the same process, D 64/128, T 512–4096; training tokens/s of
#   kda, gated_deltaproduct, rwkv7, mamba2 pure and 3:1 next to gated_deltanet; hyblua only), about 5 min.
set -euo pipefail
cd "$(dirname "$0")/../.."

THREADS=2
SCALING=""
PACKING=""
PACKING_ARGS=()
INFERENCE=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --scaling) SCALING="1,2,4,8,16"; shift; case "${1-}" in [0-9]*) SCALING="$1"; shift ;; esac ;;
    --packing) PACKING=1; shift; while [ $# -gt 0 ] && case "$1" in [0-9]*) true ;; *) false ;; esac; do
        PACKING_ARGS+=("$1"); shift; done ;;
    --inference) INFERENCE="340m"; shift; case "${1-}" in [0-9]*) INFERENCE="$1"; shift ;; esac ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --threads=*) THREADS="${1#*=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
export HYBLUA_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" OMP_WAIT_POLICY=PASSIVE
PY="${HB_BENCH_PYTHON:-/usr/bin/python3}"

if [ -n "$PACKING" ]; then
  make -s hyblua
  exec ./hyblua tests/bench/packing.lua ${PACKING_ARGS[@]+"${PACKING_ARGS[@]}"}
fi

if [ -z "$SCALING$INFERENCE" ] && ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "bench: $PY cannot import torch/numpy; install them with: apt-get install -y python3-torch python3-numpy" >&2
  exit 1
fi

make -s hyblua build/libhbcore.a

# the Makefile's compiler and flags, read from the Makefile itself (an extra makefile on stdin adds a target)
flags=$(make -s --no-print-directory -f Makefile -f - hb-bench-print-flags <<'EOF'
hb-bench-print-flags:
	@echo '$(CC)|$(CFLAGS) $(CORE_CFLAGS)|$(CORE_LIBS)'
EOF
)
CC_=${flags%%|*}; rest=${flags#*|}; CFLAGS_=${rest%%|*}; LIBS_=${rest#*|}
mkdir -p build/bench
# shellcheck disable=SC2086
$CC_ $CFLAGS_ tests/bench/kernels_bench.c -o build/bench/kernels_bench build/libhbcore.a $LIBS_
# shellcheck disable=SC2086
$CC_ $CFLAGS_ tests/bench/stream_bench.c -o build/bench/stream_bench -lpthread

if [ -n "$INFERENCE" ]; then
  exec ./hyblua tests/bench/inference.lua "$INFERENCE" "$THREADS"
fi

if [ -n "$SCALING" ]; then
  exec ./hyblua tests/bench/scaling.lua "$SCALING"
fi

# the inference section (results/inference.md, copied into the report by harness.py) in full runs only
case " ${args[*]-} " in
  *" --quick "*|*" --only "*|*" --report-only "*) ;;
  *) ./hyblua tests/bench/inference.lua 340m "$THREADS" > /dev/null || echo "bench: the inference section failed" >&2 ;;
esac
"$PY" tests/bench/harness.py --threads "$THREADS" ${args[@]+"${args[@]}"}

# the "Targets" section explains a missed training target with the share of hyblua's step spent in sgemm:
# profile a few configurations with perf (runs that measure the models, not --quick; skipped without perf),
# then rewrite the report
case " ${args[*]-} " in *" --quick "*) exit 0 ;; *" --only "*) case " ${args[*]-} " in *models*) ;; *) exit 0 ;; esac ;; esac
if command -v perf >/dev/null 2>&1; then
  rm -f tests/bench/results/profile-*-train.txt
  for c in "hgrn 256 512" "gla 512 512" "gated_deltanet 256 512" "retnet 256 2048" "transformer 256 2048" \
           "delta_net 512 2048"; do
    # shellcheck disable=SC2086
    THREADS="$THREADS" bash tests/bench/profile.sh $c train > /dev/null 2>&1 || echo "bench: profile of $c failed" >&2
  done
  "$PY" tests/bench/harness.py --report-only
else
  echo "bench: perf not installed; the Targets section will lack the sgemm-share bound (apt-get install linux-perf)" >&2
fi
