/* threads.c — a small persistent thread pool behind hb_parallel_for (kernels/parallel.h).
 *
 * Design: nthreads-1 workers sleep on a condition variable; a region publishes (fn, ctx, n) and a
 * generation number, then every participant (the caller included) claims indices from an atomic
 * counter until none are left. The caller waits until all workers have checked out. Nested regions
 * run serially.
 *
 * Coordination with OpenBLAS: hyblua keeps OpenBLAS single-threaded for the whole process and does all
 * parallelism here (core/linalg.c splits large matrix products into row blocks run on this pool).
 * OpenBLAS's own pthreads spin in sched_yield between calls, which on a 2-core machine steals the
 * cores from element-wise work and kernels; one pool that sleeps on a condition variable never
 * oversubscribes. Thread count comes from hb_threads_set,
 * else HYBLUA_NUM_THREADS, else the number of online CPUs. Results never depend on the thread count:
 * work items must write disjoint outputs.
 */
#include "parallel.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

extern void openblas_set_num_threads(int);

static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    int nthreads;      /* total participants including the caller */
    int started;       /* workers actually created */
    uint64_t gen;      /* region generation */
    hb_parallel_fn fn;
    void *ctx;
    int64_t n;
    atomic_long next;
    int active;        /* workers still inside the current region */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static _Thread_local int in_region = 0;

static void run_items(hb_parallel_fn fn, void *ctx, int64_t n) {
    for (;;) {
        int64_t i = atomic_fetch_add(&pool.next, 1);
        if (i >= n) break;
        fn(ctx, i);
    }
}

static void *worker(void *arg) {
    (void)arg;
    uint64_t seen = 0;
    in_region = 1;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (pool.gen == seen) pthread_cond_wait(&pool.wake, &pool.mu);
        seen = pool.gen;
        hb_parallel_fn fn = pool.fn;
        void *ctx = pool.ctx;
        int64_t n = pool.n;
        pthread_mutex_unlock(&pool.mu);
        run_items(fn, ctx, n);
        pthread_mutex_lock(&pool.mu);
        if (--pool.active == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

static int default_threads(void) {
    const char *s = getenv("HYBLUA_NUM_THREADS");
    if (s && atoi(s) > 0) return atoi(s);
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

int hb_threads_get(void) {
    if (pool.nthreads == 0) {
        pool.nthreads = default_threads();
        openblas_set_num_threads(1);
    }
    return pool.nthreads;
}

void hb_threads_set(int n) {
    if (n < 1) n = 1;
    pthread_mutex_lock(&pool.mu);
    pool.nthreads = n; /* extra workers are started lazily; surplus ones simply stay idle */
    pthread_mutex_unlock(&pool.mu);
    openblas_set_num_threads(1);
}

static int ensure_workers(int want) {
    while (pool.started < want) {
        pthread_t th;
        if (pthread_create(&th, NULL, worker, NULL) != 0) break;
        pthread_detach(th);
        pool.started++;
    }
    return pool.started;
}

void hb_parallel_for(int64_t n, hb_parallel_fn fn, void *ctx) {
    if (n <= 0) return;
    int nt = hb_threads_get();
    if (in_region || nt <= 1 || n == 1) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    int nworkers = nt - 1;
    if (nworkers > n - 1) nworkers = (int)(n - 1);
    pthread_mutex_lock(&pool.mu);
    int have = ensure_workers(nt - 1);
    if (have == 0) {
        pthread_mutex_unlock(&pool.mu);
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    atomic_store(&pool.next, 0);
    pool.active = have; /* every started worker checks in and out of each region */
    pool.gen++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
    in_region = 1;
    run_items(fn, ctx, n);
    in_region = 0;
    pthread_mutex_lock(&pool.mu);
    while (pool.active > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    (void)nworkers;
}
