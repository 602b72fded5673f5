#!/usr/bin/env bash
# tests/bench/offline_scaling.sh pack DIR | run DIR PHASES... — the scaling measurements of issue 15 on a
# many-core Linux x86-64 host that has gcc and make but no package manager or network (a lent machine).
#
#   pack DIR   (here, on Debian 12 amd64 with network) downloads hyblua's libraries as .deb files
#              (apt-get download: Lua 5.4, OpenBLAS pthread, libyaml, cJSON, libedit and what they need),
#              unpacks them into one prefix with dpkg -x (never into /), drops static libraries, LAPACK and
#              docs, and writes DIR/deps.tar.xz (about 6 MB). Carry DIR with the repository.
#   run DIR PHASES...   (there, from the repository root) unpacks DIR/deps.tar.xz into /opt/deps
#              (DEPS_PREFIX), builds ./hyblua with pkg-config pointed at it and LD_LIBRARY_PATH set, then runs
#              the phases in order, each under the time left of LIMIT seconds (default 560), writing to $OUT
#              (default /tmp/hb-scaling):
#       setup   tools, CPU, build (build.log)
#       yard    OpenBLAS sgemm 4096³ at 1 and 16 threads and hb_matmul NT 4096×1536×512 at 1 and 16 pool
#               threads (the yardsticks), stream_bench at 1 and 16 threads
#       s1_16   tests/bench/scaling.lua 1,16 (training / prefill / decode / kernels / gemm, best of 2 steps)
#       s8_4_2  tests/bench/scaling.lua 8,4,2
#       split   tests/bench/split_scaling.sh "1x16 4x4 2x8" 2 (one process vs processes × threads)
#       infer   tests/bench/inference.lua 340m 16
#       ab      (with OLD=DIR, an older source tree) builds DIR/hyblua and times AB_STEPS (default 2) training
#               steps per model at 16 threads with the old and this build, interleaved (ab.txt): before/after
#       jobs    recipes/paper_grid.lua --tiny with every mixer and 2 seeds (42 cell-seeds, 30 steps per task)
#               serially (1 thread), with --jobs 2 and --jobs 16 (1 thread per child): wall times and a
#               check that every cell record is identical to the serial run's, seconds aside (jobs.txt)
#       final   training step tok/s at 1 and 16 threads (3 models, 2 steps, the two thread counts run back to
#               back per model) and batch-1 decode (256-token prefill, 16 steps) at 1 and 16 threads, and
#               with OLD=DIR also the old build's decode at 16 threads (final.txt)
#       prof    HYBLUA_PROFILE=1 training steps of gated_deltanet 3:1 and gla (d 512 / T 2048) at 1 and 16
#               threads: backward time per node kind and the step parts (prof_*.txt)
#   scaling.lua prints each figure to stderr as it is measured (scaling-row lines), so a phase cut short
#   still leaves its figures in $OUT.
set -u
cmd=${1:?usage: offline_scaling.sh pack DIR | run DIR PHASES...}; D=${2:?DIR}; shift 2
if [ "$cmd" = pack ]; then
  set -e
  mkdir -p "$D/debs"; T=$(mktemp -d)
  (cd "$D/debs" && apt-get download liblua5.4-dev liblua5.4-0 libopenblas-dev libopenblas0-pthread \
    libopenblas-pthread-dev libopenblas0 libyaml-dev libyaml-0-2 libcjson-dev libcjson1 libedit-dev libedit2 \
    libbsd0 libmd0 libgfortran5 libquadmath0 libncurses-dev libtinfo6 libncurses6 libncursesw6 libbsd-dev \
    libmd-dev pkg-config pkgconf pkgconf-bin libpkgconf3)
  mkdir -p "$T/deps"; for f in "$D"/debs/*.deb; do dpkg -x "$f" "$T/deps"; done
  find "$T/deps" -name '*.a' -delete
  rm -rf "$T/deps/usr/share/doc" "$T/deps/usr/share/man" "$T/deps/usr/share/lintian" "$T/deps/usr/share/info" \
    "$T"/deps/usr/lib/x86_64-linux-gnu/openblas-pthread/{liblapack.so*,libblas.so*,cmake}
  tar cJf "$D/deps.tar.xz" -C "$T" deps; rm -rf "$T" "$D/debs"; ls -la "$D"
  exit 0
fi
[ "$cmd" = run ] || { echo "offline_scaling.sh: unknown command $cmd" >&2; exit 2; }
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/hb-scaling}; T0=$(date +%s); LIMIT=${LIMIT:-560}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device.log") 2>&1
P=${DEPS_PREFIX:-/opt/deps}; L=$P/usr/lib/x86_64-linux-gnu
export PATH=$P/usr/bin:$PATH LD_LIBRARY_PATH=$L:$L/openblas-pthread LIBRARY_PATH=$L:$L/openblas-pthread \
  PKG_CONFIG_LIBDIR=$L/pkgconfig:$L/openblas-pthread/pkgconfig PKG_CONFIG_SYSROOT_DIR=$P \
  CPATH=$P/usr/include/x86_64-linux-gnu
# the d 512 / T 2048 bench configs of tests/bench/scaling.lua, by model name
cfg_of() {
  case $1 in
  gla) echo '{"model_type":"gla","hidden_size":512,"num_hidden_layers":4,"vocab_size":4096,"num_heads":8}' ;;
  transformer) echo '{"model_type":"transformer","hidden_size":512,"num_hidden_layers":4,"vocab_size":4096,"num_heads":8}' ;;
  *) echo '{"model_type":"gated_deltanet","hidden_size":512,"num_hidden_layers":4,"vocab_size":4096,"num_heads":6,"head_dim":64,"attn":{"layers":[3],"num_heads":8,"num_kv_heads":8}}' ;;
  esac
}
for ph in "$@"; do
  echo "=== phase $ph at $(( $(date +%s) - T0 )) s, $(left) s left"
  # ./hyblua re-executes itself with OPENBLAS_CORETYPE when OpenBLAS does not know the CPU (lua/main.c); the
  # C benchmarks run here directly get the same kernels from the same hint
  if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -x ./hyblua ]; then
    CT=$(./hyblua -e 'io.write(os.getenv("OPENBLAS_CORETYPE") or "")' 2>/dev/null || true)
    [ -n "$CT" ] && { export OPENBLAS_CORETYPE=$CT; echo "OPENBLAS_CORETYPE=$CT (hyblua's hint)"; }
  fi
  case $ph in
  setup)
    which gcc make taskset; gcc --version | head -1; nproc
    lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Core|Socket|NUMA|MHz|L3'; free -g | head -2; uptime
    mkdir -p "$(dirname "$P")" && tar xJf "$D/deps.tar.xz" -C "$(dirname "$P")" || exit 1
    pkg-config --cflags --libs openblas yaml-0.1 libcjson lua5.4 libedit
    ( make -j"$(nproc)" hyblua build/libhbcore.a > "$OUT/build.log" 2>&1 ) || { tail -30 "$OUT/build.log"; exit 1; }
    ./hyblua -e 'print("hyblua ok", hb.get_num_threads())' ;;
  yard)
    flags=$(printf 'hb-pf:\n\t@echo "$(CC)|$(CFLAGS) $(CORE_CFLAGS)|$(CORE_LIBS)"\n' | make -s --no-print-directory -f Makefile -f - hb-pf)
    CC_=${flags%%|*}; rest=${flags#*|}; CF=${rest%%|*}; LB=${rest#*|}; mkdir -p build/bench
    # shellcheck disable=SC2086
    $CC_ $CF tests/bench/kernels_bench.c -o build/bench/kernels_bench build/libhbcore.a $LB || exit 1
    # shellcheck disable=SC2086
    $CC_ $CF tests/bench/stream_bench.c -o build/bench/stream_bench -lpthread
    for n in 1 16; do build/bench/stream_bench $n; done
    for n in 1 16; do HYBLUA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=$n build/bench/kernels_bench sgemm 4096 3 | sed "s/^/sgemm openblas_threads=$n /"; done
    for n in 1 16; do HYBLUA_NUM_THREADS=$n OPENBLAS_NUM_THREADS=1 build/bench/kernels_bench gemm NT:4096:1536:512 3 | sed "s/^/hb_matmul pool_threads=$n /"; done ;;
  s1_16)  timeout $(( $(left) - 5 )) ./hyblua tests/bench/scaling.lua 1,16 2 > "$OUT/scaling_1_16.md" 2> "$OUT/scaling_1_16.err"; echo rc $? ;;
  s8_4_2) timeout $(( $(left) - 5 )) ./hyblua tests/bench/scaling.lua 8,4,2 2 > "$OUT/scaling_8_4_2.md" 2> "$OUT/scaling_8_4_2.err"; echo rc $? ;;
  split)  timeout $(( $(left) - 5 )) bash tests/bench/split_scaling.sh "1x16 4x4 2x8" 2 > "$OUT/split.txt" 2>&1; echo rc $? ;;
  ab)
    [ -n "${OLD:-}" ] || { echo "ab: set OLD=DIR"; continue; }
    ( cd "$OLD" && make -j"$(nproc)" hyblua > "$OUT/build_old.log" 2>&1 ) || { tail -20 "$OUT/build_old.log"; continue; }
    for m in gated_deltanet gla transformer; do
      c=$(cfg_of $m)
      echo "$c" > /tmp/ab_$m.json
      HYBLUA_NUM_THREADS=1 ./hyblua tests/bench/train_step.lua init /tmp/ab_$m.json /tmp/ab_$m 1 2 2048 > /dev/null
      for b in "$OLD/hyblua" ./hyblua "$OLD/hyblua" ./hyblua; do
        OPENBLAS_NUM_THREADS=1 HYBLUA_NUM_THREADS=16 timeout $(( $(left) - 5 )) $b tests/bench/train_step.lua bench /tmp/ab_$m "${AB_STEPS:-2}" 1 0 0 0 \
          | sed "s|^|ab $m $b 16 |" | tee -a "$OUT/ab.txt" | cut -c 1-400
      done
    done ;;
  jobs)
    G="--tiny --set grid.seeds=2 --set lm.steps=30 --set mqar.steps=30 --set grid.mixers=[hgrn,retnet,gla,hgrn2,delta_net,gated_deltanet,kda,gated_deltaproduct,mamba2,rwkv7]"
    for J in 1 2 16; do
      rm -rf /tmp/gj$J; t0=$(date +%s.%N)
      # shellcheck disable=SC2086
      if [ $J = 1 ]; then HYBLUA_NUM_THREADS=1 timeout $(( $(left) - 5 )) ./hyblua recipes/paper_grid.lua $G --out /tmp/gj$J > /tmp/gj$J.log 2>&1
      else HYBLUA_NUM_THREADS=1 timeout $(( $(left) - 5 )) ./hyblua recipes/paper_grid.lua $G --jobs $J --set grid.job_threads=1 --out /tmp/gj$J > /tmp/gj$J.log 2>&1; fi
      echo "jobs $J rc $? wall $(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || python3 -c "print($(date +%s.%N) - $t0)") s cells $(ls /tmp/gj$J/cells/*.json 2>/dev/null | wc -l)" | tee -a "$OUT/jobs.txt"
      tail -3 /tmp/gj$J.log >> "$OUT/jobs.txt"
    done
    for J in 2 16; do
      same=0; diff=0
      for f in /tmp/gj1/cells/*.json; do
        if cmp -s <(grep -v seconds "$f") <(grep -v seconds "/tmp/gj$J/cells/$(basename "$f")" 2>/dev/null); then same=$((same+1)); else diff=$((diff+1)); fi
      done
      echo "jobs $J vs serial: $same identical, $diff differ" | tee -a "$OUT/jobs.txt"
    done ;;
  final)
    [ -n "${OLD:-}" ] && { ( cd "$OLD" && make -j"$(nproc)" hyblua > "$OUT/build_old.log" 2>&1 ) || echo "old build failed"; }
    for m in gated_deltanet gla transformer; do
      c=$(cfg_of $m)
      echo "$c" > /tmp/fi_$m.json
      HYBLUA_NUM_THREADS=1 ./hyblua tests/bench/train_step.lua init /tmp/fi_$m.json /tmp/fi_$m 1 2 2048 > /dev/null
      for n in 16 1; do
        r=$(OPENBLAS_NUM_THREADS=1 HYBLUA_NUM_THREADS=$n timeout $(( $(left) - 5 )) ./hyblua tests/bench/train_step.lua bench /tmp/fi_$m 2 1 0 0 0)
        echo "final train $m threads $n best_s $(echo "$r" | grep -o '"best_s":[0-9.e-]*' | head -1)" | tee -a "$OUT/final.txt"
      done
      for b in ./hyblua ${OLD:+$OLD/hyblua}; do for n in 1 16; do
        r=$(OPENBLAS_NUM_THREADS=1 HYBLUA_NUM_THREADS=$n timeout $(( $(left) - 5 )) $b tests/bench/train_step.lua bench /tmp/fi_$m 0 0 0 256 16)
        echo "final decode $m $b threads $n $(echo "$r" | grep -o '"median_step_s":[0-9.e-]*') $(echo "$r" | grep -o '"prefill_s":[0-9.e-]*')" | tee -a "$OUT/final.txt"
      done; done
    done ;;
  prof)
    for m in gated_deltanet gla; do
      c=$(cfg_of $m)
      echo "$c" > /tmp/prof_$m.json
      HYBLUA_NUM_THREADS=1 ./hyblua tests/bench/train_step.lua init /tmp/prof_$m.json /tmp/prof_$m 1 2 2048 > /dev/null
      for n in 1 16; do
        OPENBLAS_NUM_THREADS=1 HYBLUA_NUM_THREADS=$n HYBLUA_PROFILE=1 timeout $(( $(left) - 5 )) \
          ./hyblua tests/bench/train_step.lua bench /tmp/prof_$m 2 1 0 0 0 > "$OUT/prof_${m}_$n.txt" 2>&1
        echo "prof $m $n rc $?"
      done
    done ;;
  infer)  timeout $(( $(left) - 5 )) ./hyblua tests/bench/inference.lua 340m 16 > "$OUT/inference16.md" 2>&1; echo rc $? ;;
  *) echo "unknown phase $ph" ;;
  esac
done
echo "=== done at $(( $(date +%s) - T0 )) s"
