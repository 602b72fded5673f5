/* tensor.c — storage, creation, raw copies (copy_, fill_, add_), errors and the RNG.
 *
 * A tensor is a view (sizes, strides, offset, all in elements) over a refcounted storage. This file is
 * the bottom of core/: it includes no other core header. A tensor's autograd node is opaque here;
 * hb_tensor_free drops it through the release hook autograd.c stored beside it. The differentiable
 * views are in views.c.
 */
#include "tensor.h"
#include "../kernels/alloc.h"
#include "../kernels/parallel.h"
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- errors ---------------------------------------------------------------------------------- */
static _Thread_local char errbuf[1024];
const char *hb_errmsg(void) { return errbuf; }
void hb_seterr(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
}

static atomic_llong live_bytes, small_bytes;
int64_t hb_alloc_bytes(void) { return atomic_load(&live_bytes); }
int64_t hb_small_alloc_bytes(void) { return atomic_load(&small_bytes); }

/* ---- dtypes ------------------------------------------------------------------------------------ */
size_t hb_dtype_size(hb_dtype_t dt) {
    switch (dt) {
    case HB_F32: return 4;
    case HB_F64: return 8;
    case HB_I64: return 8;
    case HB_I32: return 4;
    }
    return 0;
}
const char *hb_dtype_name(hb_dtype_t dt) {
    static const char *n[] = {"float32", "float64", "int64", "int32"};
    return (unsigned)dt < 4 ? n[dt] : "?";
}
int hb_dtype_is_float(hb_dtype_t dt) { return dt == HB_F32 || dt == HB_F64; }

/* ---- storage ------------------------------------------------------------------------------------- */
/* The block cache. A training step frees large blocks that the next step allocates again at the same sizes
 * (activations, their gradients, the logits). Returned to glibc, every block ≥ 32 MiB (glibc's largest mmap
 * threshold) is unmapped and the next step's copy comes back as fresh pages: the kernel zeroes each one on
 * its first touch, and with many threads every unmap also interrupts the other cores to flush their TLBs.
 * So freed blocks of ≥ 1 MiB are kept, keyed by their exact size, and handed out again, the most recently
 * freed of a size first. The cache holds at most `limit` bytes: by default the larger of 1 GiB and the
 * peak of live tensor bytes so far (a training loop's steady state then reuses everything: a d 512 / T 2048
 * step of 1.5 GB peak had 10–20 thousand page faults per step with a fixed 1 GiB and 16 entries, ~0 now),
 * or HYBLUA_BLOCK_CACHE_MB (0: no cache) / hb_block_cache_set_limit. When a block does not fit, the blocks
 * freed longest ago go first, so sizes no longer used age out. Memory the cache holds was live tensor
 * memory before; an allocation that fails releases the cache and tries once more.
 * Blocks below 1 MiB have a tier of their own: one free list per exact size (sizes are multiples of 64
 * bytes), newest first, at most SMALL_LIMIT bytes in all (a block that would not fit empties the tier
 * first). A decode step makes about a thousand small tensors (norms, gates, one-token projections), a
 * serial part that more threads do not shorten; through glibc a third of each one's fixed cost was malloc,
 * free and consolidation (perf). With lua/ltensor.c running a young collection after every 512 KiB of small
 * blocks, a small op reuses a block still in cache: 0.4–0.7 µs per op on one core (tests/bench/op_overhead.lua;
 * 1.8–3.1 through glibc, 0.7–1.7 with a full collection every 16 MiB only). Under AddressSanitizer a cached
 * block is poisoned, so a use after free is still reported. */
#define BLOCK_CACHE 512
#define BLOCK_MIN ((size_t)1 << 20)
#define SMALL_LISTS (BLOCK_MIN / 64)
#define SMALL_LIMIT ((size_t)64 << 20)
#if defined(__SANITIZE_ADDRESS__)
/* poisoned, the small tier's blocks link each other through memory LeakSanitizer does not follow: they are
   freed at exit (an atexit handler registered after LeakSanitizer's, so it runs before its check) */
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#define SANITIZED 1
#else
#define SANITIZED 0
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif
static struct {
    pthread_mutex_t mu;
    void *ptr[BLOCK_CACHE];
    size_t size[BLOCK_CACHE];
    uint64_t tick[BLOCK_CACHE]; /* when it was put: larger = more recent */
    uint64_t now;
    size_t total;
    int64_t limit;              /* bytes; -1: the default; -2: HYBLUA_BLOCK_CACHE_MB not read yet */
    int64_t hits, misses;
    void *small[SMALL_LISTS];   /* small[n / 64]: freed blocks of n bytes, linked through their first word */
    size_t small_total;
} blocks = {.mu = PTHREAD_MUTEX_INITIALIZER, .limit = -2};
static atomic_llong peak_bytes; /* high-water mark of live_bytes */

/* the cache's byte limit now (called with blocks.mu held) */
static size_t block_limit(void) {
    if (blocks.limit == -2) {
        const char *e = getenv("HYBLUA_BLOCK_CACHE_MB");
        char *end = NULL;
        long long mb = e && *e ? strtoll(e, &end, 10) : -1;
        if (mb > (1LL << 40)) mb = 1LL << 40; /* no shift overflow: 2^40 MiB is more than any machine */
        blocks.limit = e && *e && end && *end == '\0' && mb >= 0 ? mb << 20 : -1;
    }
    if (blocks.limit >= 0) return (size_t)blocks.limit;
    long long peak = atomic_load(&peak_bytes);
    return peak > (1LL << 30) ? (size_t)peak : (size_t)1 << 30;
}

/* the small tier's limit: SMALL_LIMIT, or less when the whole cache's limit is lower (0: no cache) */
static size_t small_limit(void) {
    size_t l = block_limit();
    return l < SMALL_LIMIT ? l : SMALL_LIMIT;
}

/* pop the newest freed block of n (< BLOCK_MIN, a multiple of 64) bytes; called with blocks.mu held */
static void *small_pop(size_t n) {
    void *p = blocks.small[n / 64];
    if (!p) return NULL;
    UNPOISON(p, sizeof(void *));
    blocks.small[n / 64] = *(void **)p;
    UNPOISON(p, n);
    blocks.small_total -= n;
    return p;
}

static void *block_get(size_t n) {
    void *p = NULL;
    if (n < BLOCK_MIN) {
        pthread_mutex_lock(&blocks.mu);
        p = small_pop(n);
        if (p) blocks.hits++;
        else blocks.misses++;
        pthread_mutex_unlock(&blocks.mu);
        return p;
    }
    pthread_mutex_lock(&blocks.mu);
    int best = -1;
    for (int i = 0; i < BLOCK_CACHE; i++)
        if (blocks.ptr[i] && blocks.size[i] == n && (best < 0 || blocks.tick[i] > blocks.tick[best])) best = i;
    if (best >= 0) {
        p = blocks.ptr[best];
        blocks.ptr[best] = NULL;
        blocks.total -= n;
        blocks.hits++;
    } else blocks.misses++;
    pthread_mutex_unlock(&blocks.mu);
    return p;
}

/* take every block of the small tier out of it, as one chain to free outside the lock (blocks.mu held) */
static void *small_detach(void) {
    void *chain = NULL;
    for (size_t c = 1; c < SMALL_LISTS; c++)
        for (void *p; (p = small_pop(c * 64));) {
            *(void **)p = chain;
            chain = p;
        }
    return chain;
}

static void free_chain(void *chain) {
    while (chain) {
        void *next = *(void **)chain;
        free(chain);
        chain = next;
    }
}

static void release_at_exit(void) { hb_block_cache_release(); }

static void block_put(void *p, size_t n) {
    if (n < BLOCK_MIN) {
        static atomic_int at_exit;
        if (SANITIZED && !atomic_exchange(&at_exit, 1)) atexit(release_at_exit);
        void *flushed = NULL;
        pthread_mutex_lock(&blocks.mu);
        size_t limit = small_limit();
        /* full: the tier is emptied before the block goes in, so that sizes no longer allocated (a KV cache
           that grows by a row every step leaves one dead size per step and layer) cannot fill it for good;
           the sizes in use come back within one collection */
        if (n <= limit && blocks.small_total + n > limit) flushed = small_detach();
        if (blocks.small_total + n <= limit) {
            *(void **)p = blocks.small[n / 64];
            blocks.small[n / 64] = p;
            blocks.small_total += n;
            POISON(p, n);
            p = NULL;
        }
        pthread_mutex_unlock(&blocks.mu);
        free_chain(flushed);
    } else {
        void *evict[BLOCK_CACHE];
        int ne = 0;
        pthread_mutex_lock(&blocks.mu);
        size_t limit = block_limit();
        if (n <= limit) {
            int free_slot = -1;
            for (;;) { /* drop the oldest blocks until n fits and a slot is free */
                int oldest = -1;
                free_slot = -1;
                for (int i = 0; i < BLOCK_CACHE; i++) {
                    if (!blocks.ptr[i]) { if (free_slot < 0) free_slot = i; }
                    else if (oldest < 0 || blocks.tick[i] < blocks.tick[oldest]) oldest = i;
                }
                if (blocks.total + n <= limit && free_slot >= 0) break;
                evict[ne++] = blocks.ptr[oldest];
                blocks.total -= blocks.size[oldest];
                blocks.ptr[oldest] = NULL;
            }
            blocks.ptr[free_slot] = p;
            blocks.size[free_slot] = n;
            blocks.tick[free_slot] = ++blocks.now;
            blocks.total += n;
            p = NULL;
        }
        pthread_mutex_unlock(&blocks.mu);
        for (int i = 0; i < ne; i++) free(evict[i]);
    }
    free(p);
}

int64_t hb_block_cache_release(void) {
    void *drop[BLOCK_CACHE];
    int nd = 0;
    pthread_mutex_lock(&blocks.mu);
    int64_t freed = (int64_t)(blocks.total + blocks.small_total);
    for (int i = 0; i < BLOCK_CACHE; i++)
        if (blocks.ptr[i]) {
            drop[nd++] = blocks.ptr[i];
            blocks.ptr[i] = NULL;
        }
    blocks.total = 0;
    void *small = small_detach();
    pthread_mutex_unlock(&blocks.mu);
    for (int i = 0; i < nd; i++) free(drop[i]);
    free_chain(small);
    return freed;
}

void hb_block_cache_set_limit(int64_t bytes) {
    pthread_mutex_lock(&blocks.mu);
    blocks.limit = bytes < 0 ? -2 : bytes; /* -2: the default, HYBLUA_BLOCK_CACHE_MB read again */
    int over = bytes >= 0 && blocks.total + blocks.small_total > (size_t)bytes;
    pthread_mutex_unlock(&blocks.mu);
    if (over) hb_block_cache_release(); /* shrink to the new limit now */
}

void hb_memory_stats(hb_memory_stats_t *out) {
    out->live = atomic_load(&live_bytes);
    out->peak = atomic_load(&peak_bytes);
    pthread_mutex_lock(&blocks.mu);
    out->cached = (int64_t)(blocks.total + blocks.small_total);
    out->cached_small = (int64_t)blocks.small_total;
    out->cache_limit = (int64_t)block_limit();
    out->cache_hits = blocks.hits;
    out->cache_misses = blocks.misses;
    pthread_mutex_unlock(&blocks.mu);
}

static size_t alloc_size(size_t nbytes) {
    /* 64-byte alignment for SIMD; at least 64 bytes so empty tensors have a valid pointer */
    size_t n = (nbytes + 63) & ~(size_t)63;
    return n ? n : 64;
}

/* Headers. A decode step or a Lua loop over small tensors makes and frees about a thousand tensor and
 * storage headers per step, and the Lua collector frees them in bursts; through glibc those larger than its
 * fast bins (a tensor header is ~220 bytes) went through its unsorted-bin sorting on every allocation (10%
 * of a d 256 decode step in _int_malloc, perf). So up to HDR_CACHE freed headers of each kind are kept
 * for reuse, newest first. Not under AddressSanitizer, which must see every header's free. */
#define HDR_CACHE 4096
typedef struct { pthread_mutex_t mu; void *head; int n; } hdr_list_t;
static hdr_list_t tensor_hdrs = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};
static hdr_list_t storage_hdrs = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

static void hdr_put(hdr_list_t *l, void *p) {
    if (!p) return;
    if (!SANITIZED) {
        pthread_mutex_lock(&l->mu);
        int kept = l->n < HDR_CACHE;
        if (kept) {
            *(void **)p = l->head;
            l->head = p;
            l->n++;
        }
        pthread_mutex_unlock(&l->mu);
        if (kept) return;
    }
    free(p);
}

static void *hdr_get(hdr_list_t *l, size_t n) {
    if (SANITIZED) return hb_calloc(1, n);
    pthread_mutex_lock(&l->mu);
    void *p = l->head;
    if (p) {
        l->head = *(void **)p;
        l->n--;
    }
    pthread_mutex_unlock(&l->mu);
    if (!p) return hb_calloc(1, n);
    if (hb_alloc_tick()) { /* the hook's failure, as hb_calloc would give it */
        hdr_put(l, p);
        return NULL;
    }
    return memset(p, 0, n);
}

static hb_storage_t *storage_new(size_t nbytes) {
    hb_storage_t *s = hdr_get(&storage_hdrs, sizeof *s);
    if (!s) { hb_seterr("out of memory allocating a storage header"); return NULL; }
    size_t n = alloc_size(nbytes);
    s->data = block_get(n);
    if (!s->data) s->data = hb_aligned_alloc(64, n);
    if (!s->data && hb_block_cache_release() > 0) s->data = hb_aligned_alloc(64, n);
    if (!s->data) {
        hdr_put(&storage_hdrs, s);
        hb_seterr("out of memory allocating %zu bytes of tensor storage", nbytes);
        return NULL;
    }
    s->nbytes = nbytes;
    s->refcount = 1;
    if (n < BLOCK_MIN) atomic_fetch_add(&small_bytes, (long long)n);
    long long live = atomic_fetch_add(&live_bytes, (long long)nbytes) + (long long)nbytes;
    for (long long pk = atomic_load(&peak_bytes); live > pk && !atomic_compare_exchange_weak(&peak_bytes, &pk, live);) {}
    return s;
}

static void storage_release(hb_storage_t *s) {
    if (!s || --s->refcount > 0) return;
    hb_free(s->bf16);
    if (s->external) {
        if (s->release) s->release(s->release_ctx);
    } else {
        atomic_fetch_sub(&live_bytes, (long long)s->nbytes);
        block_put(s->data, alloc_size(s->nbytes));
    }
    hdr_put(&storage_hdrs, s);
}

/* ---- creation ---------------------------------------------------------------------------------- */
/* The largest single tensor in bytes (0 if unknown): the physical memory, or HB_MAX_TENSOR_BYTES when
 * that is set and smaller (tests and shared machines). A request beyond it fails at once with a message
 * instead of trying to allocate (or, with overcommit, touching) terabytes. */
static _Atomic double max_bytes = -1;
static _Atomic int max_from_env;
static double tensor_limit(void) {
    double v = atomic_load(&max_bytes);
    if (v < 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        v = pages > 0 && psize > 0 ? (double)pages * (double)psize : 0;
        const char *e = getenv("HB_MAX_TENSOR_BYTES");
        double envv = e && *e ? strtod(e, NULL) : 0;
        if (envv > 0 && (v == 0 || envv < v)) { v = envv; atomic_store(&max_from_env, 1); }
        atomic_store(&max_bytes, v);
    }
    return v;
}

/* 0 if n elements of dt can be one tensor, else -1 with "<op>tensor of N elements (X GB) is larger than
 * ...". Also bounds views (expand) so that no loop runs over more elements than memory could hold. */
int hb_check_numel(int64_t n, hb_dtype_t dt, const char *op) {
    double bytes = (double)n * (double)hb_dtype_size(dt), lim = tensor_limit();
    if (n <= ((int64_t)1 << 40) && (lim <= 0 || bytes <= lim)) return 0;
    hb_seterr("%stensor of %lld elements (%.3g GB) is larger than %s (%.3g GB)", op, (long long)n, bytes / 1e9,
              atomic_load(&max_from_env) ? "HB_MAX_TENSOR_BYTES" : "this machine's memory", lim / 1e9);
    return -1;
}

static hb_tensor_t *tensor_header(hb_dtype_t dt, int ndim, const int64_t *size) {
    if (ndim < 0 || ndim > HB_MAXDIM) {
        hb_seterr("tensors have at most %d dimensions (got %d)", HB_MAXDIM, ndim);
        return NULL;
    }
    int64_t prod = 1;      /* of the non-zero sizes: the strides must fit in 64 bits even when numel is 0 */
    for (int i = 0; i < ndim; i++) {
        if (size[i] < 0) { hb_seterr("negative size %lld at dim %d", (long long)size[i], i); return NULL; }
        if (size[i] > 0 && prod > ((int64_t)1 << 62) / size[i]) {
            hb_seterr("shape has too many elements (the product of its sizes exceeds 2^62)");
            return NULL;
        }
        if (size[i] > 0) prod *= size[i];
    }
    hb_tensor_t *t = hdr_get(&tensor_hdrs, sizeof *t);
    if (!t) { hb_seterr("out of memory allocating a tensor"); return NULL; }
    t->refcount = 1;
    t->dtype = dt;
    t->ndim = ndim;
    int64_t st = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->size[i] = size[i];
        t->stride[i] = st;
        st *= size[i] ? size[i] : 1;
    }
    return t;
}

hb_tensor_t *hb_tensor_empty(hb_dtype_t dt, int ndim, const int64_t *size) {
    hb_tensor_t *t = tensor_header(dt, ndim, size);
    if (!t) return NULL;
    int64_t n = hb_numel(t);
    if (hb_check_numel(n, dt, "")) { hdr_put(&tensor_hdrs, t); return NULL; }
    t->storage = storage_new((size_t)n * hb_dtype_size(dt));
    if (!t->storage) { hdr_put(&tensor_hdrs, t); return NULL; }
    return t;
}

static void zero_range(void *ctx, int64_t lo, int64_t hi) { memset((char *)ctx + lo, 0, (size_t)(hi - lo)); }

hb_tensor_t *hb_tensor_zeros(hb_dtype_t dt, int ndim, const int64_t *size) {
    hb_tensor_t *t = hb_tensor_empty(dt, ndim, size);
    /* in 512 KiB ranges on the pool: a large fresh buffer's page faults are shared out too */
    if (t) hb_parallel_range((int64_t)t->storage->nbytes, (int64_t)1 << 19, zero_range, t->storage->data);
    return t;
}

hb_tensor_t *hb_tensor_full(hb_dtype_t dt, int ndim, const int64_t *size, double v) {
    hb_tensor_t *t = hb_tensor_empty(dt, ndim, size);
    if (t) hb_fill_(t, v);
    return t;
}

static void store(void *base, hb_dtype_t dt, int64_t o, double v);

hb_tensor_t *hb_tensor_arange(hb_dtype_t dt, double start, double end, double step) {
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step)) {
        hb_seterr("arange: step must be non-zero and bounds finite");
        return NULL;
    }
    double nf = ceil((end - start) / step);
    if (!(nf < 9.2e18)) { /* (int64_t)nf would be undefined; no such tensor could be allocated anyway */
        hb_seterr("arange: %g elements (from %g to %g by %g) is too many", nf, start, end, step);
        return NULL;
    }
    int64_t n = nf > 0 ? (int64_t)nf : 0;
    hb_tensor_t *t = hb_tensor_empty(dt, 1, &n);
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) store(t->storage->data, dt, i, start + (double)i * step);
    return t;
}

hb_tensor_t *hb_tensor_from_external(hb_dtype_t dt, int ndim, const int64_t *size, void *data,
                                     void (*release)(void *), void *ctx) {
    hb_tensor_t *t = tensor_header(dt, ndim, size);
    if (!t) return NULL;
    t->storage = hdr_get(&storage_hdrs, sizeof *t->storage);
    if (!t->storage) { hdr_put(&tensor_hdrs, t); hb_seterr("out of memory"); return NULL; }
    t->storage->data = data;
    t->storage->nbytes = (size_t)hb_numel(t) * hb_dtype_size(dt);
    t->storage->refcount = 1;
    t->storage->external = 1;
    t->storage->release = release;
    t->storage->release_ctx = ctx;
    return t;
}

hb_tensor_t *hb_tensor_from_data(hb_dtype_t dt, int ndim, const int64_t *size, const void *data) {
    hb_tensor_t *t = hb_tensor_empty(dt, ndim, size);
    if (t && hb_numel(t)) memcpy(t->storage->data, data, (size_t)hb_numel(t) * hb_dtype_size(dt));
    return t;
}

hb_tensor_t *hb_tensor_ref(hb_tensor_t *t) {
    if (t) t->refcount++;
    return t;
}

void hb_tensor_free(hb_tensor_t *t) {
    if (!t || --t->refcount > 0) return;
    storage_release(t->storage);
    hb_tensor_free(t->grad);
    hb_tensor_free(t->bgrad);
    if (t->grad_fn) t->grad_fn_release(t->grad_fn);
    hdr_put(&tensor_hdrs, t);
}

/* ---- inspection -------------------------------------------------------------------------------- */
int64_t hb_numel(const hb_tensor_t *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->size[i];
    return n;
}

int hb_is_contiguous(const hb_tensor_t *t) {
    int64_t st = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->size[i] != 1 && t->stride[i] != st) return 0;
        st *= t->size[i];
    }
    return 1;
}

void *hb_data(const hb_tensor_t *t) {
    return (char *)t->storage->data + (size_t)t->offset * hb_dtype_size(t->dtype);
}

static int64_t elem_offset(const hb_tensor_t *t, const int64_t *idx) {
    int64_t o = t->offset;
    for (int i = 0; i < t->ndim; i++) o += idx[i] * t->stride[i];
    return o;
}

static double load(const void *base, hb_dtype_t dt, int64_t o) {
    switch (dt) {
    case HB_F32: return ((const float *)base)[o];
    case HB_F64: return ((const double *)base)[o];
    case HB_I64: return (double)((const int64_t *)base)[o];
    case HB_I32: return ((const int32_t *)base)[o];
    }
    return 0;
}

int64_t hb_double_to_i64(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775808.0) return INT64_MAX;
    if (v < -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}
int32_t hb_double_to_i32(double v) {
    if (v != v) return 0;
    if (v >= 2147483648.0) return INT32_MAX;
    if (v <= -2147483649.0) return INT32_MIN;
    return (int32_t)v;
}

static void store(void *base, hb_dtype_t dt, int64_t o, double v) {
    switch (dt) {
    case HB_F32: ((float *)base)[o] = (float)v; break;
    case HB_F64: ((double *)base)[o] = v; break;
    case HB_I64: ((int64_t *)base)[o] = hb_double_to_i64(v); break;
    case HB_I32: ((int32_t *)base)[o] = hb_double_to_i32(v); break;
    }
}

double hb_get(const hb_tensor_t *t, const int64_t *idx) {
    return load(t->storage->data, t->dtype, elem_offset(t, idx));
}
void hb_set(hb_tensor_t *t, const int64_t *idx, double v) {
    t->storage->version++;
    store(t->storage->data, t->dtype, elem_offset(t, idx), v);
}

double hb_item(const hb_tensor_t *t, int *ok) {
    if (hb_numel(t) != 1) { if (ok) *ok = 0; return 0; }
    if (ok) *ok = 1;
    return load(t->storage->data, t->dtype, t->offset);
}

int hb_same_shape(const hb_tensor_t *a, const hb_tensor_t *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->size[i] != b->size[i]) return 0;
    return 1;
}

char *hb_shape_str(const hb_tensor_t *t, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)t->size[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* ---- strided iteration -------------------------------------------------------------------------- */
/* Visit every element of t in row-major order, giving its storage offset. */
typedef struct {
    int64_t idx[HB_MAXDIM];
    int64_t off;
} iter_t;

/* position it at the k-th element (row-major) of t */
static void iter_seek(iter_t *it, const hb_tensor_t *t, int64_t k) {
    it->off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t s = t->size[d] > 0 ? t->size[d] : 1;
        it->idx[d] = k % s;
        it->off += it->idx[d] * t->stride[d];
        k /= s;
    }
}
static void iter_next(iter_t *it, const hb_tensor_t *t) {
    for (int d = t->ndim - 1; d >= 0; d--) {
        it->idx[d]++;
        it->off += t->stride[d];
        if (it->idx[d] < t->size[d]) return;
        it->off -= t->stride[d] * t->size[d];
        it->idx[d] = 0;
    }
}

/* ---- versions ---------------------------------------------------------------------------------- */
uint64_t hb_tensor_version(const hb_tensor_t *t) { return t->storage->version; }
void hb_tensor_bump_version(hb_tensor_t *t) { t->storage->version++; }

/* The element loops of copy_, add_ and fill_ run in ranges of HB_ELEM_GRAIN elements on the thread pool
 * (kernels/parallel.h): each range writes its own elements, so results do not depend on the thread count. */
typedef struct {
    hb_tensor_t *dst, *src;
    double alpha;
} elem_job_t;

static void copy_range(void *ctx, int64_t lo, int64_t hi) {
    elem_job_t *j = ctx;
    hb_tensor_t *dst = j->dst, *src = j->src;
    if (dst->dtype == src->dtype && hb_is_contiguous(dst) && hb_is_contiguous(src)) {
        size_t es = hb_dtype_size(dst->dtype);
        memcpy((char *)hb_data(dst) + (size_t)lo * es, (const char *)hb_data(src) + (size_t)lo * es, (size_t)(hi - lo) * es);
        return;
    }
    iter_t id, is;
    iter_seek(&id, dst, lo);
    iter_seek(&is, src, lo);
    if (dst->dtype == HB_F32 && src->dtype == HB_F32) {
        float *d = dst->storage->data;
        const float *s = src->storage->data;
        if (src->ndim > 0 && dst->ndim > 0 && src->stride[src->ndim - 1] == 1 && dst->stride[dst->ndim - 1] == 1 &&
            hb_same_shape(dst, src)) {
            /* contiguous innermost rows: memcpy each row's part in [lo, hi) */
            int64_t inner = dst->size[dst->ndim - 1];
            for (int64_t k = lo; k < hi;) {
                int64_t m = inner - id.idx[dst->ndim - 1];
                if (m > hi - k) m = hi - k;
                memcpy(d + id.off, s + is.off, (size_t)m * 4);
                k += m;
                if (k < hi) { iter_seek(&id, dst, k); iter_seek(&is, src, k); }
            }
            return;
        }
        for (int64_t k = lo; k < hi; k++) {
            d[id.off] = s[is.off];
            iter_next(&id, dst);
            iter_next(&is, src);
        }
        return;
    }
    for (int64_t k = lo; k < hi; k++) {
        store(dst->storage->data, dst->dtype, id.off, load(src->storage->data, src->dtype, is.off));
        iter_next(&id, dst);
        iter_next(&is, src);
    }
}

int hb_copy_(hb_tensor_t *dst, hb_tensor_t *src) {
    if (hb_numel(dst) != hb_numel(src)) {
        char a[64], b[64];
        hb_seterr("copy: sizes differ (dst %s, src %s)", hb_shape_str(dst, a, sizeof a), hb_shape_str(src, b, sizeof b));
        return -1;
    }
    dst->storage->version++;
    int64_t n = hb_numel(dst);
    if (dst->storage == src->storage) { /* may overlap: one serial pass (memmove when both are contiguous) */
        if (dst->dtype == src->dtype && hb_is_contiguous(dst) && hb_is_contiguous(src)) {
            memmove(hb_data(dst), hb_data(src), (size_t)n * hb_dtype_size(dst->dtype));
            return 0;
        }
        elem_job_t j = {dst, src, 0};
        copy_range(&j, 0, n);
        return 0;
    }
    elem_job_t j = {dst, src, 0};
    /* a strided copy (a transpose made contiguous) moves a few bytes per element: a smaller grain */
    hb_parallel_range(n, hb_is_contiguous(src) && hb_is_contiguous(dst) ? 4 * HB_ELEM_GRAIN : HB_ELEM_GRAIN,
                      copy_range, &j);
    return 0;
}

static void fill_range(void *ctx, int64_t lo, int64_t hi) {
    elem_job_t *j = ctx;
    hb_tensor_t *t = j->dst;
    double v = j->alpha;
    if (hb_is_contiguous(t)) {
        void *p = hb_data(t);
        switch (t->dtype) {
        case HB_F32: for (int64_t i = lo; i < hi; i++) ((float *)p)[i] = (float)v; break;
        case HB_F64: for (int64_t i = lo; i < hi; i++) ((double *)p)[i] = v; break;
        case HB_I64: { int64_t x = hb_double_to_i64(v); for (int64_t i = lo; i < hi; i++) ((int64_t *)p)[i] = x; break; }
        case HB_I32: { int32_t x = hb_double_to_i32(v); for (int64_t i = lo; i < hi; i++) ((int32_t *)p)[i] = x; break; }
        }
        return;
    }
    iter_t it;
    iter_seek(&it, t, lo);
    for (int64_t k = lo; k < hi; k++) {
        store(t->storage->data, t->dtype, it.off, v);
        iter_next(&it, t);
    }
}

int hb_fill_(hb_tensor_t *t, double v) {
    int64_t n = hb_numel(t);
    t->storage->version++;
    elem_job_t j = {t, NULL, v};
    /* a view with a zero stride writes one element many times: the same value, but serially */
    int overlap = 0;
    for (int d = 0; d < t->ndim; d++) overlap |= t->stride[d] == 0 && t->size[d] > 1;
    if (overlap) fill_range(&j, 0, n);
    else hb_parallel_range(n, 4 * HB_ELEM_GRAIN, fill_range, &j);
    return 0;
}

static void add_range(void *ctx, int64_t lo, int64_t hi) {
    elem_job_t *j = ctx;
    hb_tensor_t *a = j->dst, *b = j->src;
    if (hb_is_contiguous(a) && hb_is_contiguous(b)) {
        if (a->dtype == HB_F32) {
            float *x = hb_data(a), al = (float)j->alpha;
            const float *y = hb_data(b);
            for (int64_t i = lo; i < hi; i++) x[i] += al * y[i];
        } else {
            double *x = hb_data(a);
            const double *y = hb_data(b);
            for (int64_t i = lo; i < hi; i++) x[i] += j->alpha * y[i];
        }
        return;
    }
    /* strided: walk a and b in row-major order, in double */
    iter_t ia, ib;
    iter_seek(&ia, a, lo);
    iter_seek(&ib, b, lo);
    void *pa = a->storage->data, *pb = b->storage->data;
    for (int64_t k = lo; k < hi; k++) {
        store(pa, a->dtype, ia.off, load(pa, a->dtype, ia.off) + j->alpha * load(pb, b->dtype, ib.off));
        iter_next(&ia, a);
        iter_next(&ib, b);
    }
}

int hb_add_(hb_tensor_t *a, hb_tensor_t *b, double alpha) {
    if (!hb_dtype_is_float(a->dtype)) {
        hb_seterr("add_: only float tensors can be updated (got %s)", hb_dtype_name(a->dtype));
        return -1;
    }
    if (!hb_same_shape(a, b) || a->dtype != b->dtype) {
        char x[64], y[64];
        hb_seterr("add_: shapes/dtypes differ (%s %s vs %s %s)", hb_shape_str(a, x, sizeof x), hb_dtype_name(a->dtype),
                  hb_shape_str(b, y, sizeof y), hb_dtype_name(b->dtype));
        return -1;
    }
    int64_t n = hb_numel(a);
    a->storage->version++;
    elem_job_t j = {a, b, alpha};
    if (a->storage == b->storage) {
        add_range(&j, 0, n); /* views of one storage may overlap: one serial pass, in order */
        return 0;
    }
    hb_parallel_range(n, HB_ELEM_GRAIN, add_range, &j);
    return 0;
}

/* ---- aliases ------------------------------------------------------------------------------------- */
static hb_tensor_t *view_of(hb_tensor_t *t) {
    hb_tensor_t *v = hdr_get(&tensor_hdrs, sizeof *v);
    if (!v) { hb_seterr("out of memory"); return NULL; }
    v->refcount = 1;
    v->storage = t->storage;
    t->storage->refcount++;
    v->dtype = t->dtype;
    v->ndim = t->ndim;
    memcpy(v->size, t->size, sizeof v->size);
    memcpy(v->stride, t->stride, sizeof v->stride);
    v->offset = t->offset;
    return v;
}

hb_tensor_t *hb_detach(hb_tensor_t *t) { return view_of(t); }

/* ---- random: xoshiro256** seeded by splitmix64 ---------------------------------------------------- */
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
void hb_rng_seed(hb_rng_t *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&seed);
    r->has_spare = 0;
    r->spare = 0;
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
uint64_t hb_rng_next(hb_rng_t *r) {
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}
double hb_rng_uniform(hb_rng_t *r) { return (double)(hb_rng_next(r) >> 11) * 0x1.0p-53; }
double hb_rng_normal(hb_rng_t *r) {
    if (r->has_spare) { r->has_spare = 0; return r->spare; }
    double u, v, s;
    do {
        u = 2 * hb_rng_uniform(r) - 1;
        v = 2 * hb_rng_uniform(r) - 1;
        s = u * u + v * v;
    } while (s >= 1 || s == 0);
    double m = sqrt(-2 * log(s) / s);
    r->spare = v * m;
    r->has_spare = 1;
    return u * m;
}
hb_rng_t *hb_rng_global(void) {
    static hb_rng_t g;
    static int init = 0;
    if (!init) { hb_rng_seed(&g, 0x5eed); init = 1; }
    return &g;
}

hb_tensor_t *hb_rand(hb_rng_t *r, hb_dtype_t dt, int ndim, const int64_t *size, double lo, double hi) {
    hb_tensor_t *t = hb_tensor_empty(dt, ndim, size);
    if (!t) return NULL;
    int64_t n = hb_numel(t);
    for (int64_t i = 0; i < n; i++) store(t->storage->data, dt, i, lo + (hi - lo) * hb_rng_uniform(r));
    return t;
}
hb_tensor_t *hb_randn(hb_rng_t *r, hb_dtype_t dt, int ndim, const int64_t *size, double mean, double std) {
    hb_tensor_t *t = hb_tensor_empty(dt, ndim, size);
    if (!t) return NULL;
    int64_t n = hb_numel(t);
    for (int64_t i = 0; i < n; i++) store(t->storage->data, dt, i, mean + std * hb_rng_normal(r));
    return t;
}
hb_tensor_t *hb_randint(hb_rng_t *r, hb_dtype_t dt, int ndim, const int64_t *size, int64_t lo, int64_t hi) {
    if (hi <= lo) { hb_seterr("randint: empty range [%lld, %lld)", (long long)lo, (long long)hi); return NULL; }
    hb_tensor_t *t = hb_tensor_empty(dt, ndim, size);
    if (!t) return NULL;
    int64_t n = hb_numel(t);
    uint64_t span = (uint64_t)(hi - lo);
    for (int64_t i = 0; i < n; i++) store(t->storage->data, dt, i, (double)(lo + (int64_t)(hb_rng_next(r) % span)));
    return t;
}
