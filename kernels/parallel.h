/* parallel.h — the thread pool interface kernels use (implemented in kernels/threads.c).
 *
 * hb_parallel_for(n, fn, ctx) calls fn(ctx, i) for every i in [0, n), spread over the pool's
 * workers (the calling thread takes part). While a parallel region runs, OpenBLAS is limited to one
 * thread so the two cores are never oversubscribed; outside regions OpenBLAS uses all threads.
 * Calls nested inside a region run serially on the calling worker. fn must not fail: kernels do
 * their argument checks before the region.
 */
#ifndef HB_PARALLEL_H
#define HB_PARALLEL_H
#include <stdint.h>

typedef void (*hb_parallel_fn)(void *ctx, int64_t i);

/* Run fn(ctx, i) for i in [0, n). Returns when all calls have finished. */
void hb_parallel_for(int64_t n, hb_parallel_fn fn, void *ctx);

/* Number of worker threads (>= 1), set by hb_threads_set or HYBLUA_NUM_THREADS / nproc. */
int hb_threads_get(void);
void hb_threads_set(int n);

#endif
