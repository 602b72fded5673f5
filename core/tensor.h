/* tensor.h — hyblua's tensor: refcounted storage + strided view, and the ops on it.
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
} hb_storage_t;

struct hb_node;

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

/* ---- views (share storage; differentiable) ------------------------------------------------------ */
hb_tensor_t *hb_narrow(hb_tensor_t *t, int dim, int64_t start, int64_t len);
hb_tensor_t *hb_select(hb_tensor_t *t, int dim, int64_t index);  /* removes dim */
hb_tensor_t *hb_transpose(hb_tensor_t *t, int d0, int d1);
hb_tensor_t *hb_permute(hb_tensor_t *t, const int *perm);
hb_tensor_t *hb_view(hb_tensor_t *t, int ndim, const int64_t *size); /* one size may be -1; copies if not viewable */
hb_tensor_t *hb_expand(hb_tensor_t *t, int ndim, const int64_t *size); /* -1 keeps a size */
hb_tensor_t *hb_unsqueeze(hb_tensor_t *t, int dim);
hb_tensor_t *hb_squeeze(hb_tensor_t *t, int dim);
hb_tensor_t *hb_contiguous(hb_tensor_t *t);  /* new ref to t itself if already contiguous */
hb_tensor_t *hb_clone(hb_tensor_t *t);       /* always copies */
hb_tensor_t *hb_detach(hb_tensor_t *t);      /* shares storage, no grad history */
hb_tensor_t *hb_to_dtype(hb_tensor_t *t, hb_dtype_t dt);
/* Copy src into dst (same numel and shape after broadcasting); no autograd. */
int hb_copy_(hb_tensor_t *dst, hb_tensor_t *src);
int hb_fill_(hb_tensor_t *t, double v);

/* ---- elementwise -------------------------------------------------------------------------------- */
typedef enum {
    HB_OP_ADD, HB_OP_SUB, HB_OP_MUL, HB_OP_DIV, HB_OP_POW, HB_OP_MAXIMUM, HB_OP_MINIMUM
} hb_binop_t;
typedef enum {
    HB_U_NEG, HB_U_EXP, HB_U_LOG, HB_U_SQRT, HB_U_RSQRT, HB_U_ABS, HB_U_SIGMOID, HB_U_LOGSIGMOID,
    HB_U_SILU, HB_U_SOFTPLUS, HB_U_TANH, HB_U_RELU, HB_U_ELU, HB_U_SQUARE, HB_U_SIN, HB_U_COS,
    HB_U_LOG1P, HB_U_EXPM1, HB_U__COUNT
} hb_unop_t;

hb_tensor_t *hb_binary(hb_binop_t op, hb_tensor_t *a, hb_tensor_t *b);
hb_tensor_t *hb_binary_scalar(hb_binop_t op, hb_tensor_t *a, double s, int scalar_first);
hb_tensor_t *hb_unary(hb_unop_t op, hb_tensor_t *a);
const char *hb_unop_name(hb_unop_t op);
hb_tensor_t *hb_add(hb_tensor_t *a, hb_tensor_t *b);
hb_tensor_t *hb_sub(hb_tensor_t *a, hb_tensor_t *b);
hb_tensor_t *hb_mul(hb_tensor_t *a, hb_tensor_t *b);
hb_tensor_t *hb_div(hb_tensor_t *a, hb_tensor_t *b);
hb_tensor_t *hb_clamp(hb_tensor_t *a, double lo, double hi); /* use ±INFINITY for one-sided */
hb_tensor_t *hb_where(hb_tensor_t *cond, hb_tensor_t *a, hb_tensor_t *b); /* cond != 0 ? a : b */
hb_tensor_t *hb_masked_fill(hb_tensor_t *a, hb_tensor_t *mask, double value);
/* In place, no autograd (optimisers): a += alpha * b (same shape). */
int hb_add_(hb_tensor_t *a, hb_tensor_t *b, double alpha);

/* ---- reductions --------------------------------------------------------------------------------- */
typedef enum { HB_R_SUM, HB_R_MEAN, HB_R_MAX, HB_R_MIN, HB_R_ARGMAX, HB_R_ARGMIN } hb_redop_t;
/* dim = -1.. counts from the end; all = reduce every dim to a scalar (shape []). */
hb_tensor_t *hb_reduce(hb_redop_t op, hb_tensor_t *a, int dim, int keepdim);
hb_tensor_t *hb_reduce_all(hb_redop_t op, hb_tensor_t *a);
hb_tensor_t *hb_sum_to(hb_tensor_t *g, int ndim, const int64_t *size); /* reduce a broadcast grad */
hb_tensor_t *hb_cumsum(hb_tensor_t *a, int dim, int reverse);

/* ---- linear algebra ----------------------------------------------------------------------------- */
/* a [..., M, K] @ b [..., K, N] (batch dims broadcast; a 2-D b is shared by every batch). */
hb_tensor_t *hb_matmul(hb_tensor_t *a, hb_tensor_t *b);
/* x [..., in] · W [out, in]ᵀ (+ bias [out]): the linear layer, no copy of W. bias may be NULL. */
hb_tensor_t *hb_linear(hb_tensor_t *x, hb_tensor_t *w, hb_tensor_t *bias);
/* Precision of float32 matrix products (hb_matmul, hb_linear, and their backward products):
 * HB_MM_FP32 (default) calls sgemm; HB_MM_BF16 rounds both operands to bfloat16 and sums in float32
 * (kernels/gemm_bf16.h: AVX512_BF16 when the CPU has it, else an emulation). Process-wide; float64
 * products always use dgemm, and the mixer kernels and attention keep float32. set returns 0, or -1
 * (error set, setting unchanged) for a value outside the enum. */
typedef enum { HB_MM_FP32 = 0, HB_MM_BF16 = 1 } hb_mm_precision_t;
int hb_set_matmul_precision(hb_mm_precision_t p);
hb_mm_precision_t hb_matmul_precision(void);

/* ---- nn functions -------------------------------------------------------------------------------- */
hb_tensor_t *hb_softmax(hb_tensor_t *a, int dim);
hb_tensor_t *hb_log_softmax(hb_tensor_t *a, int dim);
/* logits [N, C], target int [N]; mean over targets != ignore_index (0 counted → 0). */
hb_tensor_t *hb_cross_entropy(hb_tensor_t *logits, hb_tensor_t *target, int64_t ignore_index);
hb_tensor_t *hb_embedding(hb_tensor_t *weight, hb_tensor_t *ids);     /* ids any shape, int */
hb_tensor_t *hb_rmsnorm(hb_tensor_t *x, hb_tensor_t *w, double eps);  /* over the last dim; w may be NULL */
hb_tensor_t *hb_cat(int n, hb_tensor_t **ts, int dim);
hb_tensor_t *hb_gather(hb_tensor_t *a, int dim, hb_tensor_t *index);
hb_tensor_t *hb_index_select(hb_tensor_t *a, int dim, hb_tensor_t *index);
hb_tensor_t *hb_tril(hb_tensor_t *a, int64_t k);  /* keep j <= i + k on the last two dims */
hb_tensor_t *hb_triu(hb_tensor_t *a, int64_t k);  /* keep j >= i + k */
/* Repeat each of the H heads of x (..., H, D) at dim `dim` g times consecutively (GQA). */
hb_tensor_t *hb_repeat_interleave(hb_tensor_t *x, int dim, int64_t g);

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
