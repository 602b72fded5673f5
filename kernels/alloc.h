/* alloc.h — the allocator of core/ and kernels/, with a failure-injection hook for tests.
 *
 * Every malloc/calloc/realloc/strdup/aligned_alloc in the C files of core/ and kernels/ goes through these
 * wrappers so that tests can make any one allocation fail and check the error path (tests/
 * test_allocfail.c). Memory they return is ordinary malloc memory: release it with free() or
 * hb_free() (the same thing; NULL is safe). Allocations made inside libraries (cJSON, libyaml,
 * OpenBLAS) and mmapped files do not pass through here.
 *
 * Cost: one relaxed atomic increment and one relaxed atomic load per allocation; the hook never
 * takes a lock. Thread-safe: with several threads allocating, exactly one allocation fails.
 */
#ifndef HB_ALLOC_H
#define HB_ALLOC_H
#include <stddef.h>
#include <stdint.h>

void *hb_malloc(size_t n);
void *hb_calloc(size_t count, size_t size);
void *hb_realloc(void *p, size_t n);        /* on failure p is untouched, as with realloc */
void *hb_aligned_alloc(size_t align, size_t n);
char *hb_strdup(const char *s);
char *hb_strndup(const char *s, size_t n);
void hb_free(void *p);                      /* free(); NULL is safe */
/* For allocators that serve some requests from their own free lists (core/tensor.c): counts one allocation
 * as the wrappers do and returns 1 when the hook makes it fail, so that those requests can fail in tests too. */
int hb_alloc_tick(void);

/* The process's malloc policy for training, set once at start by the hyblua executable and by the C
 * benchmarks (so that they time kernels as hyblua runs them): large buffers stay on the heap and are
 * recycled, instead of each being a fresh mmap whose pages are faulted in and zeroed again. No-op off glibc. */
void hb_malloc_policy(void);

/* Test hook: the n-th allocation from now (n = 0: the very next one) returns NULL, once; later ones
 * succeed again. n = -1 disables the hook. The environment variable HB_FAIL_ALLOC=N arms it at start
 * (the N-th allocation of the process fails), for tests that drive the hyblua executable. */
void hb_alloc_fail_after(int64_t n);
/* Allocations made through the wrappers since the process started (monotonic). */
int64_t hb_alloc_count(void);
/* Allocations the hook has made fail since the process started. */
int64_t hb_alloc_injected(void);

#endif
