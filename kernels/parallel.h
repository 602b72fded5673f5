/* parallel.h — the thread pool interface kernels use (implemented in kernels/threads.c).
 *
 * hb_parallel_for(n, fn, ctx) calls fn(ctx, i) for every i in [0, n), spread over the pool's
 * workers (the calling thread takes part; a region wakes at most n-1 workers). OpenBLAS is kept at one
 * thread for the whole process: all parallelism is the pool's. Calls nested inside a region run
 * serially on the calling worker. fn must not fail: kernels do their argument checks before the
 * region. Results must not depend on the thread count: split the work in a way that does not depend
 * on it, each item writing its own outputs.
 */
#ifndef HB_PARALLEL_H
#define HB_PARALLEL_H
#include <stdint.h>

typedef void (*hb_parallel_fn)(void *ctx, int64_t i);

/* Run fn(ctx, i) for i in [0, n). Returns when all calls have finished. */
void hb_parallel_for(int64_t n, hb_parallel_fn fn, void *ctx);

/* hb_parallel_for for a region whose total cost is about `work` flop-equivalents (a byte moved counts 2):
 * it uses at most work / HB_WORK_PER_THREAD threads (HYBLUA_WORK_PER_THREAD in the environment replaces the
 * constant, read once) and runs inline below two (a decode step's small
 * products and per-head state updates, where waking 15 workers costs more than the work). work <= 0: no
 * cap. The items and their results are those of hb_parallel_for. */
#define HB_WORK_PER_THREAD 2e6
void hb_parallel_for_work(int64_t n, double work, hb_parallel_fn fn, void *ctx);
/* the work of `updates` state updates of a K x V recurrent state and a read-out (a decode step's mixer). It is
 * memory-bound: each update reads the float32 state three times and writes it once (16 bytes per element),
 * counted at 8 per byte as core/linalg.c counts the weight stream of a matrix-vector product, plus ~8 flops.
 * (Counted at 16 per element, a 340M Gated DeltaNet's state steps — 6 heads of 128 x 256, ~0.25 ms per layer
 * on one core — stayed on one thread of 16.) */
static inline double hb_state_step_work(int64_t updates, int64_t K, int64_t V) {
    return (double)updates * (double)K * (double)V * (8 + 8 * 16);
}
/* the work of attention over a key/value cache at decode: per head, n cached keys and values of D floats read
 * once (8 bytes per (key, dim)) counted at 8 per byte, plus ~4 flops */
static inline double hb_cache_read_work(int64_t heads, int64_t n, int64_t D) {
    return (double)heads * (double)n * (double)D * (4 + 8 * 8);
}

/* Element ranges: fn(ctx, lo, hi) over [0, n) in fixed ranges of `grain` elements (the last shorter), run
 * on the pool when there are more than two of them, else one call fn(ctx, 0, n). The split depends on n and
 * grain only, never on the thread count. */
typedef void (*hb_range_fn)(void *ctx, int64_t lo, int64_t hi);
void hb_parallel_range(int64_t n, int64_t grain, hb_range_fn fn, void *ctx);
/* the grain of element-wise loops over float data (32768 elements: 128 KiB of fp32 per range) */
#define HB_ELEM_GRAIN ((int64_t)1 << 15)

/* Number of threads (>= 1, at most 256), set by hb_threads_set or HYBLUA_NUM_THREADS / nproc. */
int hb_threads_get(void);
void hb_threads_set(int n);
/* How long an idle worker (and a waiting caller) spins before sleeping, in microseconds (default 100,
 * or HYBLUA_SPIN_US; 0 = sleep at once). No spinning while the pool has more threads than CPUs. */
void hb_threads_set_spin(int us);

/* Accounting of top-level regions since the start of the process. */
typedef struct {
    int64_t regions;  /* regions run */
    double region_s;  /* wall seconds inside them */
    double sim_s;     /* simulation mode: their predicted seconds on `threads` threads */
    double items_s;   /* simulation mode: the sum of their items' times (their 1-thread time) */
    int simulated;    /* 1 in simulation mode */
    int threads;      /* hb_threads_get() */
} hb_pool_stats_t;
void hb_pool_stats(hb_pool_stats_t *out);
/* Simulation mode (also HYBLUA_POOL_SIM=1): regions run serially, each item timed, and sim_s gets the
 * time each region would take on hb_threads_get() threads (kernels/threads.c). For predicting many-core
 * scaling on a small machine; results are the same as in normal mode. */
void hb_pool_simulate(int on);

/* OpenBLAS's kernels for this CPU. A DYNAMIC_ARCH OpenBLAS (Debian's) picks its kernels from a table of CPU
 * models when it loads; a CPU newer than its table falls back to Prescott (SSE3) kernels: on an Emerald
 * Rapids Xeon (family 6, model 207) Debian 12's OpenBLAS 0.3.21 ran sgemm 1024³ at 28 GFLOP/s on one core
 * instead of the 142 of its SkylakeX kernels, and hyblua's training 2.6x slower. The choice can only be
 * changed before the library loads (the environment variable OPENBLAS_CORETYPE), so the executable asks
 * this function at the start of main and re-executes itself with the variable set.
 * hb_blas_coretype_hint: the kernels to ask for, "SkylakeX" (the CPU has AVX-512 F/BW/DQ/VL/CD) or
 * "Haswell" (AVX2 + FMA), when OpenBLAS chose a pre-AVX2 core (Prescott, Core2, Nehalem, Sandybridge, …)
 * on a CPU that has them and OPENBLAS_CORETYPE is not set; else NULL. hb_blas_corename: OpenBLAS's
 * current choice ("?" when it does not say). */
const char *hb_blas_coretype_hint(void);
const char *hb_blas_corename(void);

#endif
