/* alloc.c — allocation wrappers and the failure-injection hook (see alloc.h).
 *
 * Allocation k (0-based, numbered by an atomic counter in the order the wrappers are entered) fails
 * when k equals fail_at. Counting is always on (a relaxed atomic add: a few nanoseconds against the
 * tens of nanoseconds of malloc itself), so hb_alloc_count can tell a test how many allocations an
 * operation makes, and arming the hook is one store.
 */
#include "alloc.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_llong n_allocs;             /* allocations entered so far */
static atomic_llong fail_at = -1;         /* number of the allocation to fail, -1: none */
static atomic_llong n_injected;           /* failures injected so far */

static int inject(void) {
    long long k = atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    if (atomic_load_explicit(&fail_at, memory_order_relaxed) != k) return 0;
    atomic_fetch_add_explicit(&n_injected, 1, memory_order_relaxed);
    return 1;
}

void *hb_malloc(size_t n) { return inject() ? NULL : malloc(n); }
void *hb_calloc(size_t count, size_t size) { return inject() ? NULL : calloc(count, size); }
void *hb_realloc(void *p, size_t n) { return inject() ? NULL : realloc(p, n); }
void *hb_aligned_alloc(size_t align, size_t n) { return inject() ? NULL : aligned_alloc(align, n); }
char *hb_strdup(const char *s) { return inject() ? NULL : strdup(s); }
char *hb_strndup(const char *s, size_t n) { return inject() ? NULL : strndup(s, n); }
void hb_free(void *p) { free(p); }
int hb_alloc_tick(void) { return inject(); }

void hb_malloc_policy(void) {
#ifdef __GLIBC__
    /* Training allocates and frees the same large activation buffers every step. With glibc's default mmap
     * threshold each of them is a fresh mmap whose pages the kernel must zero on first touch (10%+ of a
     * training step; Gated DeltaProduct's kernel ran 1.7-1.8x slower in a benchmark without this). */
    mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's maximum */
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

void hb_alloc_fail_after(int64_t n) {
    atomic_store(&fail_at, n < 0 ? -1 : atomic_load(&n_allocs) + n);
}

int64_t hb_alloc_count(void) { return atomic_load(&n_allocs); }
int64_t hb_alloc_injected(void) { return atomic_load(&n_injected); }

/* HB_FAIL_ALLOC=N: arm the hook before main() runs. */
__attribute__((constructor)) static void alloc_from_env(void) {
    const char *s = getenv("HB_FAIL_ALLOC");
    if (s && *s) {
        char *end;
        long long n = strtoll(s, &end, 10);
        if (*end == '\0' && n >= 0) atomic_store(&fail_at, n);
    }
}
