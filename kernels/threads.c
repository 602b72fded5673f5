/* threads.c — a small persistent thread pool behind hb_parallel_for (kernels/parallel.h).
 *
 * Design: nthreads-1 workers, each with its own cache line holding a generation word. A region
 * publishes (fn, ctx, n), sets the number of workers still to finish (`pending`) and bumps the
 * generation of only as many workers as it has items beyond the caller's (k = min(nthreads-1, n-1)):
 * a region of 3 items on a 16-thread pool wakes 2 workers, not 15. Every participant, the caller
 * included, then claims indices from one atomic counter until none are left, and the caller waits for
 * `pending` to reach 0.
 *
 * Waiting is spin-then-sleep, on both sides: a worker that finished a region spins on its generation
 * word for up to `spin` microseconds (HYBLUA_SPIN_US, default 100) before sleeping on it with a futex,
 * so the back-to-back regions of a training step (an element-wise op, then a gemm, ...) reach spinning
 * workers without a system call; the caller spins the same way on `pending`. The spin is switched off
 * when the pool has more threads than the process may run on (sched_getaffinity): a spinning thread
 * would then take the core of a thread with work. A worker going to sleep publishes a `sleeping` flag
 * before re-checking its word (sequentially consistent on both sides), and the futex re-checks the word
 * in the kernel, so a wake-up is never lost.
 *
 * Nested regions run serially on the thread that reaches them. Two application threads never share
 * the pool at once: a region started while another one runs (from another thread) runs serially.
 *
 * Coordination with OpenBLAS: hyblua keeps OpenBLAS single-threaded for the whole process and does all
 * parallelism here (core/linalg.c splits large matrix products into blocks run on this pool). Thread
 * count comes from hb_threads_set, else HYBLUA_NUM_THREADS, else the number of online CPUs. Results
 * never depend on the thread count: work items must write disjoint outputs (or partial results that a
 * fixed-order reduction combines), and the split of the work must not depend on it.
 *
 * Accounting and simulation (hb_pool_stats): every top-level region's wall time is summed (two clock
 * reads per region). With HYBLUA_POOL_SIM=1 in the environment (or hb_pool_simulate(1)), regions run
 * serially on the caller whatever the thread count, every item is timed, and the pool adds to `sim_s`
 * the time the region would take on hb_threads_get() threads: items are handed out in index order to
 * whichever thread is free first (what the atomic counter does), each taking its measured time, plus a
 * fixed fork/join cost per region (HYBLUA_POOL_SIM_OVERHEAD_US, default 3). Kernels still see
 * hb_threads_get() threads and split their work as they would. On a machine with few cores this
 * predicts a many-core step time — serial time + Σ simulated region times — without memory-bandwidth
 * contention (tests/bench: the scaling section). Times are then the thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID), so that a loaded machine's waiting is left out.
 */
#include "parallel.h"
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);

#define MAX_WORKERS 255

typedef struct {
    _Alignas(64) _Atomic uint32_t go; /* generation this worker was last asked to run (futex word) */
    _Atomic int sleeping;             /* 1 while the worker is (about to be) asleep on `go` */
    uint32_t seen;                    /* the worker's own: last generation it ran */
} slot_t;

static struct {
    pthread_mutex_t mu;               /* thread creation, thread-count changes */
    pthread_mutex_t region;           /* held by the one thread running a region */
    int nthreads;                     /* total participants including the caller; 0 = not yet read */
    int started;                      /* workers actually created */
    int spin_us;                      /* spin before sleeping, microseconds (<0: from the environment) */
    int ncpu;                         /* CPUs this process may run on */
    int sim;                          /* simulation mode */
    double work_per_thread;           /* hb_parallel_for_work's threshold (HYBLUA_WORK_PER_THREAD) */
    double sim_overhead_s;
    hb_parallel_fn fn;
    void *ctx;
    int64_t n;
    _Alignas(64) _Atomic int64_t next;
    _Alignas(64) _Atomic uint32_t pending; /* workers of the current region not yet done (futex word) */
    _Atomic int caller_sleeping;
    _Alignas(64) slot_t slot[MAX_WORKERS];
    /* statistics (top-level regions; written by the region's caller only) */
    int64_t regions;
    double region_s, sim_s, items_s;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .region = PTHREAD_MUTEX_INITIALIZER, .spin_us = -1, .sim = -1};

static _Thread_local int in_region = 0;

/* wall time; in simulation mode the calling thread's CPU time (everything then runs on that thread, and a
   loaded machine's waiting is left out) */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(pool.sim > 0 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void futex_wake(_Atomic uint32_t *w) { syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* spin until *w != val or `us` microseconds passed; returns the last value read */
static uint32_t spin_while(_Atomic uint32_t *w, uint32_t val, int us) {
    uint32_t v = atomic_load_explicit(w, memory_order_acquire);
    if (v != val || us <= 0) return v;
    double until = now_s() + 1e-6 * us;
    for (int i = 1;; i++) {
        cpu_relax();
        v = atomic_load_explicit(w, memory_order_acquire);
        if (v != val) return v;
        if ((i & 63) == 0 && now_s() > until) return v;
    }
}

static void run_items(hb_parallel_fn fn, void *ctx, int64_t n) {
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
        if (i >= n) break;
        fn(ctx, i);
    }
}

static int spin_budget(void) { return pool.nthreads <= pool.ncpu ? pool.spin_us : 0; }

static void *worker(void *arg) {
    slot_t *me = arg;
    in_region = 1;
    for (;;) {
        uint32_t g = spin_while(&me->go, me->seen, spin_budget());
        while (g == me->seen) {
            atomic_store(&me->sleeping, 1);
            if (atomic_load(&me->go) == me->seen) futex_wait(&me->go, me->seen);
            atomic_store(&me->sleeping, 0);
            g = atomic_load_explicit(&me->go, memory_order_acquire);
        }
        me->seen = g;
        run_items(pool.fn, pool.ctx, pool.n);
        if (atomic_fetch_sub(&pool.pending, 1) == 1 && atomic_load(&pool.caller_sleeping)) futex_wake(&pool.pending);
    }
    return NULL;
}

static int env_int(const char *name, int dflt) {
    const char *s = getenv(name);
    return s && *s ? atoi(s) : dflt;
}

static int default_threads(void) {
    int n = env_int("HYBLUA_NUM_THREADS", 0);
    if (n > 0) return n;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

static void read_settings(void) {
    if (pool.spin_us < 0) pool.spin_us = env_int("HYBLUA_SPIN_US", 100);
    if (pool.work_per_thread <= 0) {
        const char *w = getenv("HYBLUA_WORK_PER_THREAD");
        double v = w && *w ? strtod(w, NULL) : 0;
        pool.work_per_thread = v > 0 ? v : HB_WORK_PER_THREAD;
    }
    if (pool.sim < 0) {
        pool.sim = env_int("HYBLUA_POOL_SIM", 0) > 0;
        pool.sim_overhead_s = 1e-6 * env_int("HYBLUA_POOL_SIM_OVERHEAD_US", 3);
    }
    if (pool.ncpu == 0) {
        cpu_set_t set;
        pool.ncpu = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (pool.ncpu < 1) pool.ncpu = 1;
    }
}

int hb_threads_get(void) {
    if (pool.nthreads == 0) {
        pthread_mutex_lock(&pool.mu);
        if (pool.nthreads == 0) {
            read_settings();
            int n = default_threads();
            pool.nthreads = n > MAX_WORKERS + 1 ? MAX_WORKERS + 1 : n;
            openblas_set_num_threads(1);
        }
        pthread_mutex_unlock(&pool.mu);
    }
    return pool.nthreads;
}

void hb_threads_set(int n) {
    if (n < 1) n = 1;
    if (n > MAX_WORKERS + 1) n = MAX_WORKERS + 1;
    pthread_mutex_lock(&pool.mu);
    read_settings();
    pool.nthreads = n; /* extra workers are started lazily; surplus ones are simply never woken */
    pthread_mutex_unlock(&pool.mu);
    openblas_set_num_threads(1);
}

void hb_threads_set_spin(int us) {
    pthread_mutex_lock(&pool.mu);
    read_settings();
    pool.spin_us = us < 0 ? 0 : us;
    pthread_mutex_unlock(&pool.mu);
}

void hb_pool_simulate(int on) {
    pthread_mutex_lock(&pool.mu);
    read_settings();
    pool.sim = on != 0;
    pthread_mutex_unlock(&pool.mu);
}

void hb_pool_stats(hb_pool_stats_t *out) {
    hb_threads_get();
    out->regions = pool.regions;
    out->region_s = pool.region_s;
    out->sim_s = pool.sim_s;
    out->items_s = pool.items_s;
    out->simulated = pool.sim;
    out->threads = pool.nthreads;
}

static int ensure_workers(int want) {
    while (pool.started < want) {
        pthread_t th;
        slot_t *s = &pool.slot[pool.started];
        s->seen = atomic_load(&s->go);
        if (pthread_create(&th, NULL, worker, s) != 0) break;
        pthread_detach(th);
        pool.started++;
    }
    return pool.started;
}

/* simulation: run serially, timing every item; the makespan of list scheduling in index order on nt
 * threads (each free thread takes the next item) */
static double simulate(int64_t n, hb_parallel_fn fn, void *ctx, int nt, double *items) {
    enum { SMAX = MAX_WORKERS + 1 };
    double fin[SMAX];
    int p = nt < SMAX ? nt : SMAX;
    if (p > n) p = (int)n;
    for (int j = 0; j < p; j++) fin[j] = 0;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double t0 = now_s();
        fn(ctx, i);
        double d = now_s() - t0;
        sum += d;
        int best = 0; /* the thread free first (p is small: a linear scan) */
        for (int j = 1; j < p; j++)
            if (fin[j] < fin[best]) best = j;
        fin[best] += d;
    }
    double mk = 0;
    for (int j = 0; j < p; j++)
        if (fin[j] > mk) mk = fin[j];
    *items = sum;
    return mk;
}

typedef struct {
    hb_range_fn fn;
    void *ctx;
    int64_t n, grain;
} range_job_t;
static void range_item(void *c, int64_t i) {
    range_job_t *r = c;
    int64_t lo = i * r->grain, hi = lo + r->grain < r->n ? lo + r->grain : r->n;
    r->fn(r->ctx, lo, hi);
}
void hb_parallel_range(int64_t n, int64_t grain, hb_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (n <= 2 * grain) {
        fn(ctx, 0, n);
        return;
    }
    range_job_t r = {fn, ctx, n, grain};
    hb_parallel_for((n + grain - 1) / grain, range_item, &r);
}

void hb_parallel_for(int64_t n, hb_parallel_fn fn, void *ctx) { hb_parallel_for_work(n, 0, fn, ctx); }

void hb_parallel_for_work(int64_t n, double work, hb_parallel_fn fn, void *ctx) {
    if (n <= 0) return;
    int nt = hb_threads_get();
    if (work > 0) { /* a small region: fewer threads, or none, than waking them all would cost */
        double cap = work / pool.work_per_thread;
        if (cap < 2) {
            for (int64_t i = 0; i < n; i++) fn(ctx, i);
            return;
        }
        if (cap < nt) nt = (int)cap;
    }
    if (in_region) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    if (pthread_mutex_trylock(&pool.region) != 0) { /* another thread's region is running */
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    in_region = 1;
    double t0 = now_s();
    if (pool.sim) {
        double items;
        double mk = simulate(n, fn, ctx, nt, &items);
        pool.sim_s += mk + (nt > 1 && n > 1 ? pool.sim_overhead_s : 0);
        pool.items_s += items;
    } else if (nt <= 1 || n == 1) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
    } else {
        int k = nt - 1 < n - 1 ? nt - 1 : (int)(n - 1);
        if (pool.started < k) {
            pthread_mutex_lock(&pool.mu);
            ensure_workers(k);
            pthread_mutex_unlock(&pool.mu);
        }
        if (k > pool.started) k = pool.started;
        pool.fn = fn;
        pool.ctx = ctx;
        pool.n = n;
        atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
        atomic_store(&pool.pending, (uint32_t)k);
        for (int j = 0; j < k; j++) {
            slot_t *s = &pool.slot[j];
            atomic_fetch_add(&s->go, 1); /* seq_cst: ordered before the `sleeping` read below */
            if (atomic_load(&s->sleeping)) futex_wake(&s->go);
        }
        run_items(fn, ctx, n);
        for (uint32_t p; (p = atomic_load(&pool.pending)) != 0;) {
            /* spin while it keeps changing, within the budget; then sleep on the current value */
            uint32_t q = spin_while(&pool.pending, p, spin_budget());
            if (q != p) continue;
            atomic_store(&pool.caller_sleeping, 1);
            if (atomic_load(&pool.pending) == p) futex_wait(&pool.pending, p);
            atomic_store(&pool.caller_sleeping, 0);
        }
    }
    pool.regions++;
    pool.region_s += now_s() - t0;
    in_region = 0;
    pthread_mutex_unlock(&pool.region);
}

/* ---- OpenBLAS's kernels (parallel.h) ------------------------------------------------------------------ */
const char *hb_blas_corename(void) {
    const char *c = openblas_get_corename();
    return c ? c : "?";
}

const char *hb_blas_coretype_hint(void) {
    if (getenv("OPENBLAS_CORETYPE")) return NULL; /* chosen by the user (or by an earlier re-exec) */
#if defined(__x86_64__) && defined(__GNUC__)
    /* OpenBLAS's x86-64 cores without AVX2 kernels: a CPU with AVX2 given one of these was not recognised */
    static const char *old[] = {"katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2",
                                "penryn", "dunnington", "nehalem", "opteron", "opteron(sse3)", "barcelona",
                                "nano", "sandybridge", "bobcat", "bulldozer", "piledriver", "unknown"};
    const char *c = openblas_get_corename();
    if (!c) return NULL;
    int is_old = 0;
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++)
        if (!strcasecmp(c, old[i])) is_old = 1;
    if (!is_old) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512cd"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}
