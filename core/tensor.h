/* tensor.h — hyblua's tensor: refcounted storage + strided view, creation, raw copies, errors, RNG.
 *
 * The bottom of core/ (docs/architecture.md, "Who includes whom"): tensor.c includes no other core header.
 * Differentiable views are in views.h, element-wise/reduction/nn ops in ops.h, matrix products in
 * linalg.h, the token mixers in mixer_op.h and mixers.h, the autograd engine in autograd.h.
 *
 * Ownership: every function that returns hb_tensor_t * returns a NEW reference the caller owns and must
 * release with hb_tensor_free (NULL is safe). Functions never steal references to their arguments.
 * Views (narrow, transpose, permute, view, expand, select) share storage with their source.
 *
 * Errors are values: a function that fails returns NULL (or -1) and leaves a message in a thread-local
 * buffer read with hb_errmsg(). Nothing here prints, exits or aborts. No function includes lua.h.
 *
 * Autograd: when grad mode is on (the default) and an input requires grad, an op records a node
 * (core/autograd.h) on its output; hb_backward() walks the nodes and accumulates into leaf .grad.
 * A tensor only points at its node (grad_fn, opaque here) and knows how to drop that reference.
 *
 * Versions (PyTorch's version counters): every storage counts the in-place writes into it — hb_copy_,
 * hb_fill_, hb_add_, hb_set, and every other function that updates an existing tensor (optimiser steps,
 * decode-state updates) calls hb_tensor_bump_version. A view shares its source's storage and so its
 * counter. An autograd node records the versions of what its backward reads, and the backward fails if
 * one changed ("mul: a tensor needed for backward was modified in place ...").
 *
 * dtypes: HB_F32 is the compute type, HB_F64 is for gradient checks, HB_I64/HB_I32 hold token ids.
 * Math ops require float tensors of one dtype; binary ops broadcast like NumPy/PyTorch.
 */
#ifndef HB_TENSOR_H
#define HB_TENSOR_H
#include <stddef.h>
#include <stdint.h>

#define HB_MAXDIM 8

typedef enum { HB_F32 = 0, HB_F64 = 1, HB_I64 = 2, HB_I32 = 3 } hb_dtype_t;

typedef struct hb_storage {
    void *data;
    size_t nbytes;
    int64_t refcount;
    int external;           /* 1: data not owned (e.g. an mmapped file region) */
    void (*release)(void *ctx); /* called when an external storage dies (may be NULL) */
    void *release_ctx;
    uint64_t version;       /* bumped by every in-place write (see "versions" below) */
    uint16_t *bf16;         /* float32 storage only: a bfloat16 copy for decode's matrix-vector products in
                               bf16 matmul precision (core/linalg.c), made on first use, or NULL */
    uint64_t bf16_version;  /* the version the copy was made at: a later write makes it stale */
} hb_storage_t;

struct hb_node; /* an autograd node (core/autograd.h); opaque to tensor.c */

typedef struct hb_tensor {
    int64_t refcount;
    hb_storage_t *storage;
    hb_dtype_t dtype;
    int ndim;
    int64_t size[HB_MAXDIM];
    int64_t stride[HB_MAXDIM]; /* in elements */
    int64_t offset;            /* in elements */
    int requires_grad;
    struct hb_tensor *grad;    /* accumulated gradient of a leaf (owned), or NULL */
    struct hb_node *grad_fn;   /* node that produced this tensor (owned ref), or NULL for leaves */
    void (*grad_fn_release)(struct hb_node *); /* drops grad_fn's reference (set with grad_fn by autograd.c) */
    /* backward-pass scratch (owned by the engine while it runs) */
    struct hb_tensor *bgrad;
    uint64_t mark;
    int retain_grad;           /* keep .grad on a non-leaf */
    int graph_released;        /* its history was freed by a backward without retain_graph */
} hb_tensor_t;

/* ---- errors ---------------------------------------------------------------------------------- */
const char *hb_errmsg(void);                 /* last error message of this thread ("" if none) */
void hb_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Byte counter of live tensor storage (for the Lua GC pressure); updated atomically. */
int64_t hb_alloc_bytes(void);
/* Bytes allocated so far in storages below 1 MiB (monotonic): the Lua binding runs a young collection of
 * garbage tensors after every 512 KiB of them, so that small blocks are reused while still in the CPU's caches. */
int64_t hb_small_alloc_bytes(void);
/* Tensor memory: live storage bytes, their high-water mark, and the block cache (core/tensor.c: freed
 * blocks of ≥ 1 MiB kept for reuse at the same size, up to cache_limit bytes). */
typedef struct {
    int64_t live, peak, cached, cache_limit, cache_hits, cache_misses;
    int64_t cached_small; /* the part of cached in blocks below 1 MiB */
} hb_memory_stats_t;
void hb_memory_stats(hb_memory_stats_t *out);
/* Free every block the cache holds; returns the bytes freed. */
int64_t hb_block_cache_release(void);
/* The cache's limit in bytes (0: no cache; < 0: the default, the larger of 1 GiB and the peak of live
 * tensor bytes, or HYBLUA_BLOCK_CACHE_MB); a lower limit frees the cache now. */
void hb_block_cache_set_limit(int64_t bytes);

/* ---- dtypes ------------------------------------------------------------------------------------ */
size_t hb_dtype_size(hb_dtype_t dt);
const char *hb_dtype_name(hb_dtype_t dt);   /* "float32", "float64", "int64", "int32" */
/* Float → integer as every store into an int64/int32 tensor does it: truncation toward zero, saturated at
 * the type's limits, NaN → 0 (a plain C cast of a value out of range is undefined behaviour). */
int64_t hb_double_to_i64(double v);
int32_t hb_double_to_i32(double v);
int hb_dtype_is_float(hb_dtype_t dt);

/* ---- creation ---------------------------------------------------------------------------------- */
/* A tensor larger than the physical memory (or than HB_MAX_TENSOR_BYTES bytes when that environment
 * variable is set and smaller), or of more than 2^40 elements, is refused before anything is allocated:
 * NULL with "tensor of N elements (X GB) is larger than this machine's memory (Y GB)". */
hb_tensor_t *hb_tensor_empty(hb_dtype_t dt, int ndim, const int64_t *size);  /* uninitialised */
hb_tensor_t *hb_tensor_zeros(hb_dtype_t dt, int ndim, const int64_t *size);
hb_tensor_t *hb_tensor_full(hb_dtype_t dt, int ndim, const int64_t *size, double value);
hb_tensor_t *hb_tensor_arange(hb_dtype_t dt, double start, double end, double step);
/* Wrap external memory (not copied). release(ctx) is called when the storage dies. */
hb_tensor_t *hb_tensor_from_external(hb_dtype_t dt, int ndim, const int64_t *size, void *data,
                                     void (*release)(void *), void *ctx);
hb_tensor_t *hb_tensor_from_data(hb_dtype_t dt, int ndim, const int64_t *size, const void *data); /* copies */
hb_tensor_t *hb_tensor_ref(hb_tensor_t *t);  /* +1 reference, returns t */
void hb_tensor_free(hb_tensor_t *t);         /* -1 reference; NULL is safe */

/* ---- inspection -------------------------------------------------------------------------------- */
int64_t hb_numel(const hb_tensor_t *t);
int hb_is_contiguous(const hb_tensor_t *t);
void *hb_data(const hb_tensor_t *t);        /* pointer to element 0 of the view */
double hb_get(const hb_tensor_t *t, const int64_t *idx);        /* element as double */
void hb_set(hb_tensor_t *t, const int64_t *idx, double v);
double hb_item(const hb_tensor_t *t, int *ok);                  /* ok=0 if numel != 1 */
int hb_same_shape(const hb_tensor_t *a, const hb_tensor_t *b);
/* Write "[2, 3]" into buf. Returns buf. */
char *hb_shape_str(const hb_tensor_t *t, char *buf, size_t n);

/* ---- versions ---------------------------------------------------------------------------------- */
/* The number of in-place writes into t's storage so far (through t or any view sharing it). */
uint64_t hb_tensor_version(const hb_tensor_t *t);
/* Record an in-place write into t's storage. Every function that writes into a tensor it did not just
 * create calls it (raw pointer loops included); hb_copy_, hb_fill_, hb_add_ and hb_set do it themselves. */
void hb_tensor_bump_version(hb_tensor_t *t);

/* ---- raw copies (no autograd) ------------------------------------------------------------------- */
/* A new tensor sharing t's storage and view, with no grad history (also the alias an autograd node saves
 * instead of its own output). */
hb_tensor_t *hb_detach(hb_tensor_t *t);
/* Copy src into dst (same numel; element order row-major), converting dtypes. hb_copy_, hb_fill_, hb_add_
 * and hb_set bump the version of the tensor they write. */
int hb_copy_(hb_tensor_t *dst, hb_tensor_t *src);
int hb_fill_(hb_tensor_t *t, double v);
/* a += alpha * b for two float tensors of one shape and dtype. The primitive under gradient accumulation
 * (core/autograd.c) and the optimisers; records no history. */
int hb_add_(hb_tensor_t *a, hb_tensor_t *b, double alpha);
/* 0 if a tensor of n elements of dt may exist, else -1 with "<what>tensor of N elements (X GB) is larger
 * than this machine's memory (Y GB)" (the limit hb_tensor_empty applies; views such as expand use it). */
int hb_check_numel(int64_t n, hb_dtype_t dt, const char *what);

/* ---- random -------------------------------------------------------------------------------------- */
typedef struct { uint64_t s[4]; int has_spare; double spare; } hb_rng_t;
void hb_rng_seed(hb_rng_t *r, uint64_t seed);
uint64_t hb_rng_next(hb_rng_t *r);
double hb_rng_uniform(hb_rng_t *r);          /* [0, 1) */
double hb_rng_normal(hb_rng_t *r);
hb_rng_t *hb_rng_global(void);
hb_tensor_t *hb_rand(hb_rng_t *r, hb_dtype_t dt, int ndim, const int64_t *size, double lo, double hi);
hb_tensor_t *hb_randn(hb_rng_t *r, hb_dtype_t dt, int ndim, const int64_t *size, double mean, double std);
hb_tensor_t *hb_randint(hb_rng_t *r, hb_dtype_t dt, int ndim, const int64_t *size, int64_t lo, int64_t hi);

#endif
