/* ops.c — elementwise, reduction and shape ops with their backward passes.
 *
 * Elementwise ops work on float32/float64 tensors of one dtype and broadcast NumPy-style. Every loop
 * walks the output in row-major order with an outer strided iterator and an inner loop over the last
 * dimension (strides 0 or 1 for broadcast/contiguous operands), so contiguous cases run at memory speed
 * without special-casing every op. Values are computed in double and stored in the output dtype.
 * Backward passes are fused loops (e.g. d silu computed from x in one pass), not compositions.
 */
#include "ops.h"
#include "../kernels/alloc.h"
#include "autograd.h"
#include "views.h"
#include "../kernels/kmath.h"
#include "../kernels/parallel.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- parallel ranges ------------------------------------------------------------------------------- */
/* Large contiguous float loops are split into fixed-size ranges run on the thread pool; the split does
 * not depend on the thread count, and each range writes its own slice, so results are identical. */
typedef hb_range_fn range_fn;
static void par_range(int64_t n, range_fn fn, void *ctx) { hb_parallel_range(n, HB_ELEM_GRAIN, fn, ctx); }

/* ---- small helpers -------------------------------------------------------------------------------- */
static int check_float(const hb_tensor_t *t, const char *op, const char *arg) {
    if (!hb_dtype_is_float(t->dtype)) {
        hb_seterr("%s: %s must be a float tensor (got %s)", op, arg, hb_dtype_name(t->dtype));
        return -1;
    }
    return 0;
}
static int check_same_dtype(const hb_tensor_t *a, const hb_tensor_t *b, const char *op) {
    if (a->dtype != b->dtype) {
        hb_seterr("%s: dtypes differ (%s vs %s); convert with :float() or :double()", op, hb_dtype_name(a->dtype),
                  hb_dtype_name(b->dtype));
        return -1;
    }
    return 0;
}
static int normdim(int dim, int ndim, const char *op) {
    int d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= ndim) {
        hb_seterr("%s: dim %d out of range for a %d-d tensor", op, dim, ndim);
        return -1;
    }
    return d;
}
static inline double ld(const void *p, hb_dtype_t dt, int64_t o) {
    return dt == HB_F32 ? (double)((const float *)p)[o] : ((const double *)p)[o];
}
static inline void st(void *p, hb_dtype_t dt, int64_t o, double v) {
    if (dt == HB_F32) ((float *)p)[o] = (float)v;
    else ((double *)p)[o] = v;
}

/* Broadcast shapes a and b into out; returns ndim or -1. */
static int broadcast_shape(const hb_tensor_t *a, const hb_tensor_t *b, int64_t *out, const char *op) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t sa = ia >= 0 ? a->size[ia] : 1, sb = ib >= 0 ? b->size[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char x[64], y[64];
            hb_seterr("%s: shapes %s and %s cannot be broadcast (dim %d: %lld vs %lld)", op, hb_shape_str(a, x, sizeof x),
                      hb_shape_str(b, y, sizeof y), i, (long long)sa, (long long)sb);
            return -1;
        }
        out[i] = sa == 1 ? sb : sa;
    }
    return nd;
}

/* Strides of t broadcast to an nd-dim shape (0 on broadcast dims). */
static void bstrides(const hb_tensor_t *t, int nd, const int64_t *shape, int64_t *s) {
    for (int i = 0; i < nd; i++) {
        int j = i - (nd - t->ndim);
        s[i] = (j >= 0 && t->size[j] == shape[i]) ? t->stride[j] : 0;
        if (j >= 0 && t->size[j] == 1) s[i] = 0;
    }
}

/* Multi-operand row-major walk over `shape` giving per-operand offsets; inner dim left to the caller. */
typedef struct {
    int nd, nops;
    int64_t shape[HB_MAXDIM];
    int64_t str[4][HB_MAXDIM];
    int64_t idx[HB_MAXDIM];
    int64_t off[4], base[4];
} mwalk_t;

static void mwalk_init(mwalk_t *w, int nd, const int64_t *shape, int nops, hb_tensor_t **ops) {
    memset(w, 0, sizeof *w);
    w->nd = nd;
    w->nops = nops;
    memcpy(w->shape, shape, sizeof(int64_t) * (size_t)nd);
    for (int k = 0; k < nops; k++) {
        bstrides(ops[k], nd, shape, w->str[k]);
        w->off[k] = w->base[k] = ops[k]->offset;
    }
}
/* position the walk at row `row` (the row-major index over all dims except the last) */
static void mwalk_seek(mwalk_t *w, int64_t row) {
    for (int k = 0; k < w->nops; k++) w->off[k] = w->base[k];
    for (int d = w->nd - 2; d >= 0; d--) {
        w->idx[d] = row % w->shape[d];
        row /= w->shape[d];
        for (int k = 0; k < w->nops; k++) w->off[k] += w->idx[d] * w->str[k][d];
    }
}
/* advance over all dims except the last */
static void mwalk_next_outer(mwalk_t *w) {
    for (int d = w->nd - 2; d >= 0; d--) {
        w->idx[d]++;
        for (int k = 0; k < w->nops; k++) w->off[k] += w->str[k][d];
        if (w->idx[d] < w->shape[d]) return;
        for (int k = 0; k < w->nops; k++) w->off[k] -= w->str[k][d] * w->shape[d];
        w->idx[d] = 0;
    }
}

/* ---- binary -------------------------------------------------------------------------------------- */
static inline double binop(hb_binop_t op, double a, double b) {
    switch (op) {
    case HB_OP_ADD: return a + b;
    case HB_OP_SUB: return a - b;
    case HB_OP_MUL: return a * b;
    case HB_OP_DIV: return a / b;
    case HB_OP_POW: return pow(a, b);
    case HB_OP_MAXIMUM: return a >= b || isnan(a) ? a : b;
    case HB_OP_MINIMUM: return a <= b || isnan(a) ? a : b;
    }
    return 0;
}

static const char *binop_name(hb_binop_t op) {
    static const char *n[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};
    return n[op];
}

typedef struct {
    hb_binop_t op;
    const float *x, *y;
    float *z;
} bin_ctx_t;
static void bin_range(void *ctx, int64_t lo, int64_t hi) {
    bin_ctx_t *c = ctx;
    const float *x = c->x, *y = c->y;
    float *z = c->z;
    switch (c->op) {
    case HB_OP_ADD: for (int64_t i = lo; i < hi; i++) z[i] = x[i] + y[i]; break;
    case HB_OP_SUB: for (int64_t i = lo; i < hi; i++) z[i] = x[i] - y[i]; break;
    case HB_OP_MUL: for (int64_t i = lo; i < hi; i++) z[i] = x[i] * y[i]; break;
    default: for (int64_t i = lo; i < hi; i++) z[i] = x[i] / y[i]; break;
    }
}

/* out = a op b over a broadcast shape; no autograd. */
/* rows [lo, hi) of a broadcast / strided binary op (binary_raw) */
typedef struct {
    hb_binop_t op;
    hb_dtype_t dt;
    mwalk_t w;
    int64_t inner;
    void *pa, *pb, *po;
} bin_walk_t;
static void bin_walk_rows(void *ctx, int64_t lo, int64_t hi) {
    const bin_walk_t *c = ctx;
    mwalk_t w = c->w;
    mwalk_seek(&w, lo);
    const hb_binop_t op = c->op;
    const int64_t inner = c->inner, sa = w.str[1][w.nd - 1], sb = w.str[2][w.nd - 1];
    for (int64_t r = lo; r < hi; r++) {
        int64_t oo = w.off[0], oa = w.off[1], ob = w.off[2];
        if (c->dt == HB_F32) {
            const float *x = (const float *)c->pa + oa, *y = (const float *)c->pb + ob;
            float *z = (float *)c->po + oo;
            if (sa == 1 && sb == 1) {
                switch (op) {
                case HB_OP_MUL: for (int64_t j = 0; j < inner; j++) z[j] = x[j] * y[j]; break;
                case HB_OP_ADD: for (int64_t j = 0; j < inner; j++) z[j] = x[j] + y[j]; break;
                case HB_OP_SUB: for (int64_t j = 0; j < inner; j++) z[j] = x[j] - y[j]; break;
                case HB_OP_DIV: for (int64_t j = 0; j < inner; j++) z[j] = x[j] / y[j]; break;
                default: for (int64_t j = 0; j < inner; j++) z[j] = (float)binop(op, x[j], y[j]); break;
                }
            } else if (sb == 0) { /* broadcast scalar on the right within the row */
                float yv = y[0];
                switch (op) {
                case HB_OP_MUL: for (int64_t j = 0; j < inner; j++) z[j] = x[j * sa] * yv; break;
                case HB_OP_ADD: for (int64_t j = 0; j < inner; j++) z[j] = x[j * sa] + yv; break;
                case HB_OP_SUB: for (int64_t j = 0; j < inner; j++) z[j] = x[j * sa] - yv; break;
                case HB_OP_DIV: for (int64_t j = 0; j < inner; j++) z[j] = x[j * sa] / yv; break;
                default: for (int64_t j = 0; j < inner; j++) z[j] = (float)binop(op, x[j * sa], yv); break;
                }
            } else {
                switch (op) {
                case HB_OP_MUL: for (int64_t j = 0; j < inner; j++) z[j] = x[j * sa] * y[j * sb]; break;
                case HB_OP_ADD: for (int64_t j = 0; j < inner; j++) z[j] = x[j * sa] + y[j * sb]; break;
                case HB_OP_SUB: for (int64_t j = 0; j < inner; j++) z[j] = x[j * sa] - y[j * sb]; break;
                default: for (int64_t j = 0; j < inner; j++) z[j] = (float)binop(op, x[j * sa], y[j * sb]); break;
                }
            }
        } else {
            const double *x = (const double *)c->pa + oa, *y = (const double *)c->pb + ob;
            double *z = (double *)c->po + oo;
            for (int64_t j = 0; j < inner; j++) z[j] = binop(op, x[j * sa], y[j * sb]);
        }
        mwalk_next_outer(&w);
    }
}

static hb_tensor_t *binary_raw(hb_binop_t op, hb_tensor_t *a, hb_tensor_t *b) {
    int64_t shape[HB_MAXDIM];
    int nd = broadcast_shape(a, b, shape, binop_name(op));
    if (nd < 0) return NULL;
    hb_tensor_t *o = hb_tensor_empty(a->dtype, nd, shape);
    if (!o) return NULL;
    int64_t n = hb_numel(o);
    if (n == 0) return o;
    hb_dtype_t dt = a->dtype;
    /* fast path: float32, same shape, both contiguous */
    if (dt == HB_F32 && hb_same_shape(a, b) && hb_is_contiguous(a) && hb_is_contiguous(b) && op <= HB_OP_DIV) {
        bin_ctx_t c = {op, hb_data(a), hb_data(b), hb_data(o)};
        par_range(n, bin_range, &c);
        return o;
    }
    hb_tensor_t *ops[3] = {o, a, b};
    if (nd == 0) {
        st(hb_data(o), dt, 0, binop(op, ld(hb_data(a), dt, 0), ld(hb_data(b), dt, 0)));
        return o;
    }
    /* broadcast or strided operands: rows of the last dim, in fixed ranges of rows on the pool (each element
       is computed on its own: the bits do not depend on the split) */
    bin_walk_t bw = {.op = op, .dt = dt, .pa = a->storage->data, .pb = b->storage->data, .po = o->storage->data};
    mwalk_init(&bw.w, nd, shape, 3, ops);
    bw.inner = shape[nd - 1];
    int64_t rows = n / bw.inner, grain = HB_ELEM_GRAIN / bw.inner;
    hb_parallel_range(rows, grain > 0 ? grain : 1, bin_walk_rows, &bw);
    return o;
}

typedef struct {
    hb_binop_t op;
} binary_ctx;

static int bw_binary(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    hb_binop_t op = ((const binary_ctx *)n->ctx)->op;
    hb_tensor_t *a = n->in[0], *b = n->in[1];
    hb_tensor_t *ga = NULL, *gb = NULL;
    int need_a = a->requires_grad, need_b = b->requires_grad;
    switch (op) {
    case HB_OP_ADD:
        if (need_a) ga = hb_tensor_ref(g);
        if (need_b) gb = hb_tensor_ref(g);
        break;
    case HB_OP_SUB:
        if (need_a) ga = hb_tensor_ref(g);
        if (need_b) gb = hb_unary(HB_U_NEG, g);
        break;
    case HB_OP_MUL:
        if (need_a) ga = binary_raw(HB_OP_MUL, g, b);
        if (need_b) gb = binary_raw(HB_OP_MUL, g, a);
        break;
    case HB_OP_DIV:
        if (need_a) ga = binary_raw(HB_OP_DIV, g, b);
        if (need_b) { /* -g a / b^2 */
            hb_tensor_t *t1 = binary_raw(HB_OP_MUL, g, a), *b2 = binary_raw(HB_OP_MUL, b, b);
            hb_tensor_t *t2 = t1 && b2 ? binary_raw(HB_OP_DIV, t1, b2) : NULL;
            gb = t2 ? hb_binary_scalar(HB_OP_MUL, t2, -1.0, 0) : NULL;
            hb_tensor_free(t1); hb_tensor_free(b2); hb_tensor_free(t2);
        }
        break;
    case HB_OP_POW: { /* d/da = b a^(b-1); d/db = a^b log a */
        if (need_a) {
            hb_tensor_t *bm1 = hb_binary_scalar(HB_OP_SUB, b, 1.0, 0);
            hb_tensor_t *p = bm1 ? binary_raw(HB_OP_POW, a, bm1) : NULL;
            hb_tensor_t *q = p ? binary_raw(HB_OP_MUL, p, b) : NULL;
            ga = q ? binary_raw(HB_OP_MUL, g, q) : NULL;
            hb_tensor_free(bm1); hb_tensor_free(p); hb_tensor_free(q);
        }
        if (need_b) {
            hb_tensor_t *p = binary_raw(HB_OP_POW, a, b), *la = hb_unary(HB_U_LOG, a);
            hb_tensor_t *q = p && la ? binary_raw(HB_OP_MUL, p, la) : NULL;
            gb = q ? binary_raw(HB_OP_MUL, g, q) : NULL;
            hb_tensor_free(p); hb_tensor_free(la); hb_tensor_free(q);
        }
        break;
    }
    case HB_OP_MAXIMUM:
    case HB_OP_MINIMUM: {
        /* gradient goes to the selected operand (a on ties) */
        hb_tensor_t *sel = binary_raw(op, a, b);
        if (!sel) return -1;
        hb_tensor_t *zero = hb_tensor_zeros(g->dtype, 0, NULL);
        hb_tensor_t *eqa = NULL;
        {
            hb_tensor_t *d = binary_raw(HB_OP_SUB, sel, a);
            if (d) {
                eqa = hb_tensor_empty(d->dtype, d->ndim, d->size);
                if (eqa) {
                    hb_tensor_t *dc = hb_contiguous(d);
                    int64_t m = hb_numel(d);
                    for (int64_t i = 0; i < m; i++) st(hb_data(eqa), d->dtype, i, ld(hb_data(dc), d->dtype, i) == 0 ? 1 : 0);
                    hb_tensor_free(dc);
                }
                hb_tensor_free(d);
            }
        }
        if (eqa) {
            if (need_a) ga = binary_raw(HB_OP_MUL, g, eqa);
            if (need_b) {
                hb_tensor_t *neq = hb_binary_scalar(HB_OP_SUB, eqa, 1.0, 1);
                gb = neq ? binary_raw(HB_OP_MUL, g, neq) : NULL;
                hb_tensor_free(neq);
            }
        }
        hb_tensor_free(eqa); hb_tensor_free(zero); hb_tensor_free(sel);
        break;
    }
    }
    if ((need_a && !ga) || (need_b && !gb)) { hb_tensor_free(ga); hb_tensor_free(gb); return -1; }
    if (ga) { gin[0] = hb_sum_to(ga, a->ndim, a->size); hb_tensor_free(ga); if (!gin[0]) { hb_tensor_free(gb); return -1; } }
    if (gb) { gin[1] = hb_sum_to(gb, b->ndim, b->size); hb_tensor_free(gb); if (!gin[1]) return -1; }
    return 0;
}

hb_tensor_t *hb_binary(hb_binop_t op, hb_tensor_t *a, hb_tensor_t *b) {
    const char *name = binop_name(op);
    if (check_float(a, name, "left operand") || check_float(b, name, "right operand") || check_same_dtype(a, b, name))
        return NULL;
    hb_tensor_t *o = binary_raw(op, a, b);
    hb_tensor_t *in[2] = {a, b};
    hb_node_t *n = hb_node_attach(o, name, bw_binary, 2, in, sizeof(binary_ctx));
    if (n) {
        ((binary_ctx *)n->ctx)->op = op;
        if (op == HB_OP_ADD || op == HB_OP_SUB) n->reads_in = 0;   /* their gradients need no values */
    }
    return o;
}
hb_tensor_t *hb_add(hb_tensor_t *a, hb_tensor_t *b) { return hb_binary(HB_OP_ADD, a, b); }
hb_tensor_t *hb_sub(hb_tensor_t *a, hb_tensor_t *b) { return hb_binary(HB_OP_SUB, a, b); }
hb_tensor_t *hb_mul(hb_tensor_t *a, hb_tensor_t *b) { return hb_binary(HB_OP_MUL, a, b); }
hb_tensor_t *hb_div(hb_tensor_t *a, hb_tensor_t *b) { return hb_binary(HB_OP_DIV, a, b); }

/* ---- binary with a scalar ------------------------------------------------------------------------ */
typedef struct {
    hb_binop_t op;
    int scalar_first; /* s op x instead of x op s */
    double s;
} binary_scalar_ctx;

/* x op s and its gradient, element by element over [lo, hi) (on the pool in fixed ranges: the bits do not
 * depend on the split) */
typedef struct {
    hb_binop_t op;
    int sfirst;
    double s;
    hb_dtype_t dt;
    const void *px, *pg;
    void *po;
} scal_ctx_t;

static void scal_fwd_range(void *ctx, int64_t lo, int64_t hi) {
    const scal_ctx_t *c = ctx;
    if (c->dt == HB_F32 && (c->op == HB_OP_MUL || c->op == HB_OP_ADD)) {
        const float *x = c->px;
        float *z = c->po, fs = (float)c->s;
        if (c->op == HB_OP_MUL) for (int64_t i = lo; i < hi; i++) z[i] = x[i] * fs;
        else for (int64_t i = lo; i < hi; i++) z[i] = x[i] + fs;
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        double x = ld(c->px, c->dt, i);
        st(c->po, c->dt, i, c->sfirst ? binop(c->op, c->s, x) : binop(c->op, x, c->s));
    }
}

static void scal_bwd_range(void *ctx, int64_t lo, int64_t hi) {
    const scal_ctx_t *c = ctx;
    const double s = c->s;
    for (int64_t i = lo; i < hi; i++) {
        double gv = ld(c->pg, c->dt, i), xv = ld(c->px, c->dt, i), r = 0;
        switch (c->op) {
        case HB_OP_ADD: r = gv; break;
        case HB_OP_SUB: r = c->sfirst ? -gv : gv; break;
        case HB_OP_MUL: r = gv * s; break;
        case HB_OP_DIV: r = c->sfirst ? -gv * s / (xv * xv) : gv / s; break;
        case HB_OP_POW: r = c->sfirst ? gv * pow(s, xv) * log(s) : (s == 0 ? 0 : gv * s * pow(xv, s - 1)); break;
        case HB_OP_MAXIMUM: r = xv >= s ? gv : 0; break;
        case HB_OP_MINIMUM: r = xv <= s ? gv : 0; break;
        }
        st(c->po, c->dt, i, r);
    }
}

static int bw_binary_scalar(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const binary_scalar_ctx *c = n->ctx;
    hb_tensor_t *x = n->in[0];
    hb_tensor_t *gc = hb_contiguous(g), *xc = hb_contiguous(x);
    hb_tensor_t *o = gc && xc ? hb_tensor_empty(x->dtype, x->ndim, x->size) : NULL;
    if (!o) { hb_tensor_free(gc); hb_tensor_free(xc); return -1; }
    scal_ctx_t sc = {c->op, c->scalar_first, c->s, x->dtype, hb_data(xc), hb_data(gc), hb_data(o)};
    par_range(hb_numel(x), scal_bwd_range, &sc);
    hb_tensor_free(gc);
    hb_tensor_free(xc);
    gin[0] = o;
    return 0;
}

hb_tensor_t *hb_binary_scalar(hb_binop_t op, hb_tensor_t *a, double s, int scalar_first) {
    if (check_float(a, binop_name(op), "tensor operand")) return NULL;
    hb_tensor_t *o = hb_tensor_empty(a->dtype, a->ndim, a->size);
    if (!o) return NULL;
    hb_tensor_t *ac = hb_contiguous(a);
    if (!ac) { hb_tensor_free(o); return NULL; }
    scal_ctx_t sc = {op, scalar_first, s, a->dtype, hb_data(ac), NULL, hb_data(o)};
    par_range(hb_numel(a), scal_fwd_range, &sc);
    hb_tensor_free(ac);
    hb_node_t *n = hb_node_attach(o, binop_name(op), bw_binary_scalar, 1, &a, sizeof(binary_scalar_ctx));
    if (n) {
        *(binary_scalar_ctx *)n->ctx = (binary_scalar_ctx){.op = op, .scalar_first = scalar_first, .s = s};
        if (op == HB_OP_ADD || op == HB_OP_SUB || op == HB_OP_MUL || (op == HB_OP_DIV && !scalar_first)) n->reads_in = 0;
    }
    return o;
}

/* ---- unary --------------------------------------------------------------------------------------- */
static const char *unames[HB_U__COUNT] = {"neg", "exp", "log", "sqrt", "rsqrt", "abs", "sigmoid", "logsigmoid",
                                          "silu", "softplus", "tanh", "relu", "elu", "square", "sin", "cos",
                                          "log1p", "expm1"};
const char *hb_unop_name(hb_unop_t op) { return (unsigned)op < HB_U__COUNT ? unames[op] : "?"; }

static inline double sigm(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

static inline double unop(hb_unop_t op, double x) {
    switch (op) {
    case HB_U_NEG: return -x;
    case HB_U_EXP: return exp(x);
    case HB_U_LOG: return log(x);
    case HB_U_SQRT: return sqrt(x);
    case HB_U_RSQRT: return 1 / sqrt(x);
    case HB_U_ABS: return fabs(x);
    case HB_U_SIGMOID: return sigm(x);
    case HB_U_LOGSIGMOID: return (x < 0 ? x : 0) - log1p(exp(-fabs(x)));
    case HB_U_SILU: return x * sigm(x);
    case HB_U_SOFTPLUS: return x > 20 ? x : log1p(exp(x));
    case HB_U_TANH: return tanh(x);
    case HB_U_RELU: return x > 0 ? x : 0;
    case HB_U_ELU: return x > 0 ? x : expm1(x);
    case HB_U_SQUARE: return x * x;
    case HB_U_SIN: return sin(x);
    case HB_U_COS: return cos(x);
    case HB_U_LOG1P: return log1p(x);
    case HB_U_EXPM1: return expm1(x);
    default: return 0;
    }
}

/* derivative d op(x) / dx */
static inline double unop_d(hb_unop_t op, double x) {
    switch (op) {
    case HB_U_NEG: return -1;
    case HB_U_EXP: return exp(x);
    case HB_U_LOG: return 1 / x;
    case HB_U_SQRT: return 0.5 / sqrt(x);
    case HB_U_RSQRT: return -0.5 / (x * sqrt(x));
    case HB_U_ABS: return x > 0 ? 1 : (x < 0 ? -1 : 0);
    case HB_U_SIGMOID: { double e = exp(-fabs(x)), d = 1 + e; return e / (d * d); } /* σ(1−σ) without cancellation */
    case HB_U_LOGSIGMOID: return sigm(-x);
    case HB_U_SILU: { double s = sigm(x); return s * (1 + x * (1 - s)); }
    case HB_U_SOFTPLUS: return x > 20 ? 1 : sigm(x);
    case HB_U_TANH: { double t = tanh(x); return 1 - t * t; }
    case HB_U_RELU: return x > 0 ? 1 : 0;
    case HB_U_ELU: return x > 0 ? 1 : exp(x);
    case HB_U_SQUARE: return 2 * x;
    case HB_U_SIN: return cos(x);
    case HB_U_COS: return -sin(x);
    case HB_U_LOG1P: return 1 / (1 + x);
    case HB_U_EXPM1: return exp(x);
    default: return 0;
    }
}

typedef struct {
    hb_unop_t op;
    const float *x, *g;
    float *z;
} un_ctx_t;
/* forward: z = op(x) */
/* hb_expf clamps instead of propagating NaN: the float fast paths pass a NaN input through explicitly
 * (a select, still vectorised) so NaN checks downstream keep working */
#define NANPASS(x, v) ((x) != (x) ? (x) : (v))
static void un_range(void *ctx, int64_t lo, int64_t hi) {
    un_ctx_t *c = ctx;
    const float *x = c->x;
    float *z = c->z;
    switch (c->op) {
    case HB_U_NEG: for (int64_t i = lo; i < hi; i++) z[i] = -x[i]; break;
    case HB_U_EXP: /* hb_expf with expf's edges restored: NaN stays NaN, overflow is inf, results below FLT_MIN are 0 */
        for (int64_t i = lo; i < hi; i++)
            z[i] = x[i] > 88.7228f ? INFINITY : hb_expf_edges(x[i]);
        break;
    case HB_U_SILU: for (int64_t i = lo; i < hi; i++) z[i] = x[i] / (1.0f + hb_expf(-x[i])); break;
    case HB_U_SIGMOID: for (int64_t i = lo; i < hi; i++) z[i] = NANPASS(x[i], 1.0f / (1.0f + hb_expf(-x[i]))); break;
    case HB_U_SQUARE: for (int64_t i = lo; i < hi; i++) z[i] = x[i] * x[i]; break;
    case HB_U_LOGSIGMOID: /* min(x, 0) − log1p(e^{−|x|}) in float */
        for (int64_t i = lo; i < hi; i++) z[i] = NANPASS(x[i], (x[i] < 0 ? x[i] : 0.0f) - hb_log1pf_unit(hb_expf(-fabsf(x[i]))));
        break;
    case HB_U_SOFTPLUS: /* max(x, 0) + log1p(e^{−|x|}), = x above 20 like the double path (GDN's decay) */
        for (int64_t i = lo; i < hi; i++)
            z[i] = NANPASS(x[i], x[i] > 20.0f ? x[i] : (x[i] > 0 ? x[i] : 0.0f) + hb_log1pf_unit(hb_expf(-fabsf(x[i]))));
        break;
    default: for (int64_t i = lo; i < hi; i++) z[i] = (float)unop(c->op, x[i]); break;
    }
}
/* backward: z = g · op'(x); the hot ones get vectorisable float loops */
static void unbw_range(void *ctx, int64_t lo, int64_t hi) {
    un_ctx_t *c = ctx;
    const float *xv = c->x, *g = c->g;
    float *r = c->z;
    switch (c->op) {
    case HB_U_SILU:
        for (int64_t i = lo; i < hi; i++) {
            float sg = 1.0f / (1.0f + hb_expf(-xv[i]));
            r[i] = NANPASS(xv[i], g[i] * sg * (1.0f + xv[i] * (1.0f - sg)));
        }
        break;
    case HB_U_SIGMOID:
        for (int64_t i = lo; i < hi; i++) { /* σ(1−σ) = e/(1+e)² with e = exp(−|x|): no 1 − σ cancellation */
            float e = hb_expf(-fabsf(xv[i])), d = 1.0f + e;
            r[i] = NANPASS(xv[i], g[i] * (e / (d * d)));
        }
        break;
    case HB_U_EXP:
        for (int64_t i = lo; i < hi; i++)
            r[i] = g[i] * (xv[i] > 88.7228f ? INFINITY : hb_expf_edges(xv[i]));
        break;
    case HB_U_NEG: for (int64_t i = lo; i < hi; i++) r[i] = -g[i]; break;
    case HB_U_SQUARE: for (int64_t i = lo; i < hi; i++) r[i] = 2.0f * xv[i] * g[i]; break;
    case HB_U_LOGSIGMOID: /* d/dx = σ(−x) */
        for (int64_t i = lo; i < hi; i++) r[i] = NANPASS(xv[i], g[i] / (1.0f + hb_expf(xv[i])));
        break;
    case HB_U_SOFTPLUS: /* d/dx = σ(x), 1 above 20 */
        for (int64_t i = lo; i < hi; i++) r[i] = NANPASS(xv[i], xv[i] > 20.0f ? g[i] : g[i] / (1.0f + hb_expf(-xv[i])));
        break;
    default: for (int64_t i = lo; i < hi; i++) r[i] = (float)(g[i] * unop_d(c->op, xv[i])); break;
    }
}

typedef struct {
    hb_unop_t op;
} unary_ctx;

static int bw_unary(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    hb_unop_t op = ((const unary_ctx *)n->ctx)->op;
    hb_tensor_t *x = n->in[0];
    hb_tensor_t *gc = hb_contiguous(g), *xc = hb_contiguous(x);
    hb_tensor_t *o = gc && xc ? hb_tensor_empty(x->dtype, x->ndim, x->size) : NULL;
    if (!o) { hb_tensor_free(gc); hb_tensor_free(xc); return -1; }
    int64_t m = hb_numel(x);
    const void *pg = hb_data(gc), *px = hb_data(xc);
    void *po = hb_data(o);
    if (x->dtype == HB_F32) {
        un_ctx_t c = {op, px, pg, po};
        par_range(m, unbw_range, &c);
    } else {
        for (int64_t i = 0; i < m; i++) st(po, x->dtype, i, ld(pg, x->dtype, i) * unop_d(op, ld(px, x->dtype, i)));
    }
    hb_tensor_free(gc);
    hb_tensor_free(xc);
    gin[0] = o;
    return 0;
}

hb_tensor_t *hb_unary(hb_unop_t op, hb_tensor_t *a) {
    if ((unsigned)op >= HB_U__COUNT) { hb_seterr("unknown unary op %d", (int)op); return NULL; }
    if (check_float(a, unames[op], "input")) return NULL;
    hb_tensor_t *ac = hb_contiguous(a);
    hb_tensor_t *o = ac ? hb_tensor_empty(a->dtype, a->ndim, a->size) : NULL;
    if (!o) { hb_tensor_free(ac); return NULL; }
    int64_t m = hb_numel(a);
    if (a->dtype == HB_F32) {
        un_ctx_t c = {op, hb_data(ac), NULL, hb_data(o)};
        par_range(m, un_range, &c);
    } else {
        const double *x = hb_data(ac);
        double *z = hb_data(o);
        for (int64_t i = 0; i < m; i++) z[i] = unop(op, x[i]);
    }
    hb_tensor_free(ac);
    hb_node_t *n = hb_node_attach(o, unames[op], bw_unary, 1, &a, sizeof(unary_ctx));
    if (n) {
        ((unary_ctx *)n->ctx)->op = op;
        if (op == HB_U_NEG) n->reads_in = 0;
    }
    return o;
}

/* clamp: value outside [lo, hi] is pinned; gradient flows only inside */
typedef struct {
    double lo, hi;
} clamp_ctx;

static int bw_clamp(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const clamp_ctx *c = n->ctx;
    hb_tensor_t *x = n->in[0];
    hb_tensor_t *gc = hb_contiguous(g), *xc = hb_contiguous(x);
    hb_tensor_t *o = gc && xc ? hb_tensor_empty(x->dtype, x->ndim, x->size) : NULL;
    if (!o) { hb_tensor_free(gc); hb_tensor_free(xc); return -1; }
    int64_t m = hb_numel(x);
    for (int64_t i = 0; i < m; i++) {
        double xv = ld(hb_data(xc), x->dtype, i);
        st(hb_data(o), x->dtype, i, (xv >= c->lo && xv <= c->hi) ? ld(hb_data(gc), x->dtype, i) : 0);
    }
    hb_tensor_free(gc);
    hb_tensor_free(xc);
    gin[0] = o;
    return 0;
}

hb_tensor_t *hb_clamp(hb_tensor_t *a, double lo, double hi) {
    if (check_float(a, "clamp", "input")) return NULL;
    hb_tensor_t *ac = hb_contiguous(a);
    hb_tensor_t *o = ac ? hb_tensor_empty(a->dtype, a->ndim, a->size) : NULL;
    if (!o) { hb_tensor_free(ac); return NULL; }
    int64_t m = hb_numel(a);
    for (int64_t i = 0; i < m; i++) {
        double v = ld(hb_data(ac), a->dtype, i);
        st(hb_data(o), a->dtype, i, v < lo ? lo : (v > hi ? hi : v));
    }
    hb_tensor_free(ac);
    hb_node_t *n = hb_node_attach(o, "clamp", bw_clamp, 1, &a, sizeof(clamp_ctx));
    if (n) *(clamp_ctx *)n->ctx = (clamp_ctx){.lo = lo, .hi = hi};
    return o;
}

/* ---- where / masked_fill --------------------------------------------------------------------------- */
static hb_tensor_t *mask_to(hb_tensor_t *cond, hb_dtype_t dt) {
    /* convert any-dtype condition to 0/1 of dtype dt, same shape */
    hb_tensor_t *c = hb_tensor_empty(dt, cond->ndim, cond->size);
    if (!c) return NULL;
    hb_tensor_t *cc = hb_contiguous(cond);
    if (!cc) { hb_tensor_free(c); return NULL; }
    int64_t m = hb_numel(cond);
    for (int64_t i = 0; i < m; i++) {
        double v;
        switch (cond->dtype) {
        case HB_F32: v = ((float *)hb_data(cc))[i]; break;
        case HB_F64: v = ((double *)hb_data(cc))[i]; break;
        case HB_I64: v = (double)((int64_t *)hb_data(cc))[i]; break;
        default: v = ((int32_t *)hb_data(cc))[i]; break;
        }
        st(hb_data(c), dt, i, v != 0 ? 1 : 0);
    }
    hb_tensor_free(cc);
    return c;
}

hb_tensor_t *hb_where(hb_tensor_t *cond, hb_tensor_t *a, hb_tensor_t *b) {
    if (check_float(a, "where", "a") || check_float(b, "where", "b") || check_same_dtype(a, b, "where")) return NULL;
    /* where(c, a, b) = b + c·(a − b) would lose infinities; compose exactly instead: c·a + (1−c)·b with
       selects done on masks, so gradients route through the mul nodes */
    hb_tensor_t *m = mask_to(cond, a->dtype);
    if (!m) return NULL;
    hb_tensor_t *nm = hb_binary_scalar(HB_OP_SUB, m, 1.0, 1);
    /* the result's shape broadcasts a, b and the mask together */
    hb_tensor_t ab = {0};
    int64_t s2[HB_MAXDIM];
    ab.ndim = nm ? broadcast_shape(a, b, ab.size, "where") : -1;
    int nd2 = ab.ndim >= 0 ? broadcast_shape(&ab, m, s2, "where") : -1;
    hb_tensor_t *r = NULL;
    if (nd2 >= 0) {
        /* exact select for the value (a·m + b·(1−m) would turn inf·0 into NaN) */
        int g = hb_grad_set(0);
        hb_tensor_t *ex_a = hb_expand(a, nd2, s2), *ex_b = hb_expand(b, nd2, s2), *ex_m = hb_expand(m, nd2, s2);
        hb_grad_set(g);
        if (ex_a && ex_b && ex_m) {
            r = hb_tensor_empty(a->dtype, nd2, s2);
            hb_tensor_t *ca = r ? hb_contiguous(ex_a) : NULL, *cb = ca ? hb_contiguous(ex_b) : NULL;
            hb_tensor_t *cm = cb ? hb_contiguous(ex_m) : NULL;
            if (!cm) { hb_tensor_free(r); r = NULL; }
            if (r) {
                int64_t cnt = hb_numel(r);
                for (int64_t i = 0; i < cnt; i++)
                    st(hb_data(r), r->dtype, i,
                       ld(hb_data(cm), r->dtype, i) != 0 ? ld(hb_data(ca), r->dtype, i) : ld(hb_data(cb), r->dtype, i));
            }
            hb_tensor_free(ca); hb_tensor_free(cb); hb_tensor_free(cm);
        }
        hb_tensor_free(ex_a); hb_tensor_free(ex_b); hb_tensor_free(ex_m);
    }
    if (r && hb_grad_enabled() && (a->requires_grad || b->requires_grad)) {
        /* history: r = a·m + b·(1−m) as autograd nodes (values identical where finite) */
        hb_tensor_t *t1 = hb_mul(a, m), *t2 = hb_mul(b, nm);
        hb_tensor_t *s = t1 && t2 ? hb_add(t1, t2) : NULL;
        if (s) {
            hb_node_move(r, s);
        } else {                                   /* out of memory recording the history */
            hb_tensor_free(r);
            r = NULL;
        }
        hb_tensor_free(t1); hb_tensor_free(t2); hb_tensor_free(s);
    }
    hb_tensor_free(m);
    hb_tensor_free(nm);
    return r;
}

hb_tensor_t *hb_masked_fill(hb_tensor_t *a, hb_tensor_t *mask, double value) {
    if (check_float(a, "masked_fill", "input")) return NULL;
    hb_tensor_t *v = hb_tensor_full(a->dtype, 0, NULL, value);
    if (!v) return NULL;
    hb_tensor_t *r = hb_where(mask, v, a);
    hb_tensor_free(v);
    return r;
}

/* ---- reductions ----------------------------------------------------------------------------------- */
/* View contiguous a as [outer, n, inner] around dim d. */
static void split3(const hb_tensor_t *a, int d, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < d; i++) *outer *= a->size[i];
    for (int i = d + 1; i < a->ndim; i++) *inner *= a->size[i];
    *n = a->size[d];
}

typedef struct {
    hb_redop_t op;
    int dim; /* the reduced dim (ignored when all) */
    int all; /* reduced every dim to a scalar */
} reduce_ctx;

static int bw_reduce(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const reduce_ctx *c = n->ctx;
    hb_redop_t op = c->op;
    int d = c->dim, all = c->all;
    hb_tensor_t *x = n->in[0];
    /* g has the reduced shape; bring it to x's rank with a size-1 dim at d */
    hb_tensor_t *gk;
    if (all) {
        int64_t ones[HB_MAXDIM];
        for (int i = 0; i < x->ndim; i++) ones[i] = 1;
        gk = hb_view(g, x->ndim, ones);
    } else if (g->ndim == x->ndim) {
        gk = hb_tensor_ref(g);
    } else {
        gk = hb_unsqueeze(g, d);
    }
    if (!gk) return -1;
    hb_tensor_t *ge = hb_expand(gk, x->ndim, x->size);
    hb_tensor_free(gk);
    if (!ge) return -1;
    hb_tensor_t *r = hb_contiguous(ge);
    hb_tensor_free(ge);
    if (!r) return -1;
    if (r == ge || r->storage == x->storage) { /* never hand back an alias */
        hb_tensor_t *c = hb_clone(r);
        hb_tensor_free(r);
        r = c;
        if (!r) return -1;
    }
    int64_t cnt = all ? hb_numel(x) : x->size[d];
    if (op == HB_R_MEAN) {
        int64_t m = hb_numel(r);
        for (int64_t i = 0; i < m; i++) st(hb_data(r), r->dtype, i, ld(hb_data(r), r->dtype, i) / (double)cnt);
    } else if (op == HB_R_MAX || op == HB_R_MIN) {
        /* route to the first arg-extreme element of each slice */
        hb_tensor_t *xc = hb_contiguous(x);
        if (!xc) { hb_tensor_free(r); return -1; }
        int64_t outer, len, inner;
        if (all) { outer = 1; len = hb_numel(x); inner = 1; }
        else split3(x, d, &outer, &len, &inner);
        const void *px = hb_data(xc);
        void *pr = hb_data(r);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t in = 0; in < inner; in++) {
                int64_t base = o * len * inner + in, best = 0;
                double bv = ld(px, x->dtype, base);
                for (int64_t k = 1; k < len; k++) {
                    double v = ld(px, x->dtype, base + k * inner);
                    if (op == HB_R_MAX ? v > bv : v < bv) { bv = v; best = k; }
                }
                for (int64_t k = 0; k < len; k++)
                    if (k != best) st(pr, r->dtype, base + k * inner, 0);
            }
        hb_tensor_free(xc);
    }
    gin[0] = r;
    return 0;
}

static hb_tensor_t *reduce_impl(hb_redop_t op, hb_tensor_t *a, int d, int keepdim, int all) {
    static const char *names[] = {"sum", "mean", "max", "min", "argmax", "argmin"};
    if (check_float(a, names[op], "input")) return NULL;
    int64_t outer, len, inner;
    int64_t oshape[HB_MAXDIM];
    int ond = 0;
    if (all) {
        outer = 1; len = hb_numel(a); inner = 1;
    } else {
        split3(a, d, &outer, &len, &inner);
        for (int i = 0; i < a->ndim; i++) {
            if (i == d) { if (keepdim) oshape[ond++] = 1; }
            else oshape[ond++] = a->size[i];
        }
    }
    if (len == 0 && op != HB_R_SUM && op != HB_R_MEAN) {
        hb_seterr("%s: cannot reduce an empty dimension", names[op]);
        return NULL;
    }
    int isarg = op == HB_R_ARGMAX || op == HB_R_ARGMIN;
    hb_tensor_t *o = hb_tensor_empty(isarg ? HB_I64 : a->dtype, ond, oshape);
    hb_tensor_t *ac = o ? hb_contiguous(a) : NULL;
    if (!ac) { hb_tensor_free(o); return NULL; }
    const void *px = hb_data(ac);
    void *po = hb_data(o);
    for (int64_t ou = 0; ou < outer; ou++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t base = ou * len * inner + in;
            double acc = 0;
            int64_t best = 0;
            if (op == HB_R_SUM || op == HB_R_MEAN) {
                if (a->dtype == HB_F32 && inner == 1) {
                    const float *p = (const float *)px + base;
                    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                    int64_t k = 0;
                    for (; k + 4 <= len; k += 4) { s0 += p[k]; s1 += p[k + 1]; s2 += p[k + 2]; s3 += p[k + 3]; }
                    for (; k < len; k++) s0 += p[k];
                    acc = (s0 + s1) + (s2 + s3);
                } else
                    for (int64_t k = 0; k < len; k++) acc += ld(px, a->dtype, base + k * inner);
                if (op == HB_R_MEAN) acc /= (double)len;
            } else {
                acc = ld(px, a->dtype, base);
                for (int64_t k = 1; k < len; k++) {
                    double v = ld(px, a->dtype, base + k * inner);
                    int better = (op == HB_R_MAX || op == HB_R_ARGMAX) ? v > acc : v < acc;
                    if (better || (isnan(v) && !isnan(acc))) { acc = v; best = k; }
                }
            }
            int64_t oi = ou * inner + in;
            if (isarg) ((int64_t *)po)[oi] = best;
            else st(po, a->dtype, oi, acc);
        }
    hb_tensor_free(ac);
    if (!isarg) {
        hb_node_t *n = hb_node_attach(o, names[op], bw_reduce, 1, &a, sizeof(reduce_ctx));
        if (n) {
            *(reduce_ctx *)n->ctx = (reduce_ctx){.op = op, .dim = d, .all = all};
            if (op == HB_R_SUM || op == HB_R_MEAN) n->reads_in = 0;   /* max/min route by x's values */
        }
    }
    return o;
}

hb_tensor_t *hb_reduce(hb_redop_t op, hb_tensor_t *a, int dim, int keepdim) {
    int d = normdim(dim, a->ndim, "reduce");
    if (d < 0) return NULL;
    return reduce_impl(op, a, d, keepdim, 0);
}
hb_tensor_t *hb_reduce_all(hb_redop_t op, hb_tensor_t *a) { return reduce_impl(op, a, 0, 0, 1); }

typedef struct {
    int dim, reverse;
} cumsum_ctx;

static int bw_cumsum(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const cumsum_ctx *c = n->ctx;
    gin[0] = hb_cumsum(g, c->dim, !c->reverse);
    return gin[0] ? 0 : -1;
}

hb_tensor_t *hb_cumsum(hb_tensor_t *a, int dim, int reverse) {
    int d = normdim(dim, a->ndim, "cumsum");
    if (d < 0 || check_float(a, "cumsum", "input")) return NULL;
    hb_tensor_t *ac = hb_contiguous(a);
    hb_tensor_t *o = ac ? hb_tensor_empty(a->dtype, a->ndim, a->size) : NULL;
    if (!o) { hb_tensor_free(ac); return NULL; }
    int64_t outer, len, inner;
    split3(a, d, &outer, &len, &inner);
    for (int64_t ou = 0; ou < outer; ou++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t base = ou * len * inner + in;
            double acc = 0;
            for (int64_t k0 = 0; k0 < len; k0++) {
                int64_t k = reverse ? len - 1 - k0 : k0;
                acc += ld(hb_data(ac), a->dtype, base + k * inner);
                st(hb_data(o), a->dtype, base + k * inner, acc);
            }
        }
    hb_tensor_free(ac);
    hb_node_t *n = hb_node_attach(o, "cumsum", bw_cumsum, 1, &a, sizeof(cumsum_ctx));
    if (n) {
        *(cumsum_ctx *)n->ctx = (cumsum_ctx){.dim = d, .reverse = reverse};
        n->reads_in = 0;
    }
    return o;
}

/* ---- softmax family ---------------------------------------------------------------------------------- */
typedef struct {
    int dim;
    int log; /* log_softmax */
} softmax_ctx;

static int bw_softmax(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const softmax_ctx *c = n->ctx;
    int d = c->dim, logsm = c->log;
    hb_tensor_t *y = n->saved[0]; /* detached output, contiguous */
    hb_tensor_t *gc = hb_contiguous(g);
    hb_tensor_t *o = gc ? hb_tensor_empty(y->dtype, y->ndim, y->size) : NULL;
    if (!o) { hb_tensor_free(gc); return -1; }
    int64_t outer, len, inner;
    split3(y, d, &outer, &len, &inner);
    const void *py = hb_data(y), *pg = hb_data(gc);
    void *po = hb_data(o);
    hb_dtype_t dt = y->dtype;
    for (int64_t ou = 0; ou < outer; ou++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t base = ou * len * inner + in;
            double s = 0;
            for (int64_t k = 0; k < len; k++) {
                int64_t i = base + k * inner;
                s += logsm ? ld(pg, dt, i) : ld(pg, dt, i) * ld(py, dt, i);
            }
            for (int64_t k = 0; k < len; k++) {
                int64_t i = base + k * inner;
                double yv = ld(py, dt, i), gv = ld(pg, dt, i);
                st(po, dt, i, logsm ? gv - exp(yv) * s : yv * (gv - s));
            }
        }
    hb_tensor_free(gc);
    gin[0] = o;
    return 0;
}

static hb_tensor_t *softmax_impl(hb_tensor_t *a, int dim, int logsm) {
    const char *name = logsm ? "log_softmax" : "softmax";
    int d = normdim(dim, a->ndim, name);
    if (d < 0 || check_float(a, name, "input")) return NULL;
    hb_tensor_t *ac = hb_contiguous(a);
    hb_tensor_t *o = ac ? hb_tensor_empty(a->dtype, a->ndim, a->size) : NULL;
    if (!o) { hb_tensor_free(ac); return NULL; }
    int64_t outer, len, inner;
    split3(a, d, &outer, &len, &inner);
    const void *px = hb_data(ac);
    void *po = hb_data(o);
    hb_dtype_t dt = a->dtype;
    for (int64_t ou = 0; ou < outer; ou++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t base = ou * len * inner + in;
            double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < len; k++) { double v = ld(px, dt, base + k * inner); if (v > m) m = v; }
            for (int64_t k = 0; k < len; k++) s += exp(ld(px, dt, base + k * inner) - m);
            double ls = log(s);
            for (int64_t k = 0; k < len; k++) {
                double v = ld(px, dt, base + k * inner) - m;
                st(po, dt, base + k * inner, logsm ? v - ls : exp(v) / s);
            }
        }
    hb_tensor_free(ac);
    hb_node_t *n = hb_node_attach(o, name, bw_softmax, 1, &a, sizeof(softmax_ctx));
    if (n) {   /* the backward reads the output, not the input */
        *(softmax_ctx *)n->ctx = (softmax_ctx){.dim = d, .log = logsm};
        n->reads_in = 0;
        hb_node_save_output(n, 0, o);
    }
    return o;
}
hb_tensor_t *hb_softmax(hb_tensor_t *a, int dim) { return softmax_impl(a, dim, 0); }
hb_tensor_t *hb_log_softmax(hb_tensor_t *a, int dim) { return softmax_impl(a, dim, 1); }

static int64_t load_index(const hb_tensor_t *t, int64_t i) {
    const void *p = hb_data(t);
    switch (t->dtype) {
    case HB_I64: return ((const int64_t *)p)[i];
    case HB_I32: return ((const int32_t *)p)[i];
    case HB_F32: return hb_double_to_i64(((const float *)p)[i]);
    case HB_F64: return hb_double_to_i64(((const double *)p)[i]);
    }
    return 0;
}

/* Cross-entropy over rows of logits: the forward keeps each row's log-sum-exp (lse) so the backward is
 * one pass, grad = (exp(x − lse) − onehot)·g/count. Float rows use the vectorisable hb_expf with double
 * accumulation; rows are spread over the thread pool in fixed blocks. */
typedef struct {
    const void *x;
    const hb_tensor_t *tg;
    hb_dtype_t dt;
    int64_t C, ign;
    double *lse;   /* [N] */
    void *grad;    /* backward output, or NULL in the forward */
    double scale;
} ce_ctx_t;

/* log Σ exp(x) of one float row, vectorised by hand: 16 independent lanes for the max and for the sums
 * (an FP reduction is not reordered by the compiler without -ffast-math), lanes flushed into a double
 * every 1024 elements so a large vocabulary keeps double-like accuracy. A NaN anywhere gives NaN. */
static double lse_row_f32(const float *x, int64_t C) {
    enum { L = 16 };
    float mv[L];
    int nan = 0;
    for (int j = 0; j < L; j++) mv[j] = -INFINITY;
    int64_t k = 0;
    for (; k + L <= C; k += L)
        for (int j = 0; j < L; j++) { mv[j] = x[k + j] > mv[j] ? x[k + j] : mv[j]; nan |= x[k + j] != x[k + j]; }
    float m = -INFINITY;
    for (; k < C; k++) { m = x[k] > m ? x[k] : m; nan |= x[k] != x[k]; }
    for (int j = 0; j < L; j++) m = mv[j] > m ? mv[j] : m;
    if (nan) return NAN;
    if (m == INFINITY || m == -INFINITY) return m; /* all -inf, or an inf logit */
    double s = 0;
    for (k = 0; k < C;) {
        int64_t end = k + 1024 < C ? k + 1024 : C;
        float sv[L] = {0};
        for (; k + L <= end; k += L)
            for (int j = 0; j < L; j++) sv[j] += hb_expf(x[k + j] - m);
        for (; k < end; k++) sv[0] += hb_expf(x[k] - m);
        for (int j = 0; j < L; j++) s += sv[j];
    }
    return (double)m + log(s);
}

static void ce_rows(void *ctx, int64_t blk) {
    ce_ctx_t *c = ctx;
    int64_t N = c->tg->size[0], r0 = blk * 64, r1 = r0 + 64 < N ? r0 + 64 : N, C = c->C;
    for (int64_t r = r0; r < r1; r++) {
        int64_t t = load_index(c->tg, r);
        if (c->dt == HB_F32) {
            const float *x = (const float *)c->x + r * C;
            if (!c->grad) {
                c->lse[r] = lse_row_f32(x, C);
            } else {
                float *g = (float *)c->grad + r * C;
                if (t == c->ign) { memset(g, 0, (size_t)C * sizeof *g); continue; }
                float l = (float)c->lse[r], sc = (float)c->scale;
                for (int64_t k = 0; k < C; k++) g[k] = hb_expf(x[k] - l) * sc;
                g[t] -= sc;
            }
        } else {
            const double *x = (const double *)c->x + r * C;
            if (!c->grad) {
                double m = -INFINITY, s = 0;
                for (int64_t k = 0; k < C; k++) m = x[k] > m ? x[k] : m;
                for (int64_t k = 0; k < C; k++) s += exp(x[k] - m);
                c->lse[r] = m + log(s);
            } else {
                double *g = (double *)c->grad + r * C;
                if (t == c->ign) { memset(g, 0, (size_t)C * sizeof *g); continue; }
                for (int64_t k = 0; k < C; k++) g[k] = exp(x[k] - c->lse[r]) * c->scale;
                g[t] -= c->scale;
            }
        }
    }
}

typedef struct {
    int64_t ignore_index;
    int64_t count; /* targets counted in the mean */
} cross_entropy_ctx;

static int bw_cross_entropy(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const cross_entropy_ctx *cx = n->ctx;
    hb_tensor_t *x = n->saved[0], *tg = n->saved[1], *lse = n->saved[2];
    int64_t N = x->size[0], count = cx->count;
    hb_tensor_t *o = hb_tensor_empty(x->dtype, 2, x->size);
    if (!o) return -1;
    int okk;
    double gv = hb_item(g, &okk);
    ce_ctx_t c = {hb_data(x), tg, x->dtype, x->size[1], cx->ignore_index, hb_data(lse), hb_data(o), count ? gv / (double)count : 0};
    hb_parallel_for((N + 63) / 64, ce_rows, &c);
    gin[0] = o;
    return 0;
}

hb_tensor_t *hb_cross_entropy(hb_tensor_t *logits, hb_tensor_t *target, int64_t ignore_index) {
    char a[64], b[64];
    if (check_float(logits, "cross_entropy", "logits")) return NULL;
    if (logits->ndim != 2 || target->ndim != 1 || target->size[0] != logits->size[0]) {
        hb_seterr("cross_entropy: expected logits [N, C] and target [N], got %s and %s",
                  hb_shape_str(logits, a, sizeof a), hb_shape_str(target, b, sizeof b));
        return NULL;
    }
    hb_tensor_t *x = hb_contiguous(logits), *tg = hb_contiguous(target);
    if (!x || !tg) { hb_tensor_free(x); hb_tensor_free(tg); return NULL; }
    int64_t N = x->size[0], C = x->size[1], count = 0;
    for (int64_t r = 0; r < N; r++) {
        int64_t t = load_index(tg, r);
        if (t == ignore_index) continue;
        if (t < 0 || t >= C) {
            hb_seterr("cross_entropy: target %lld at row %lld is out of range [0, %lld)", (long long)t, (long long)r,
                      (long long)C);
            hb_tensor_free(x); hb_tensor_free(tg);
            return NULL;
        }
        count++;
    }
    hb_tensor_t *lse = hb_tensor_empty(HB_F64, 1, &N);
    if (!lse) { hb_tensor_free(x); hb_tensor_free(tg); return NULL; }
    ce_ctx_t c = {hb_data(x), tg, x->dtype, C, ignore_index, hb_data(lse), NULL, 0};
    hb_parallel_for((N + 63) / 64, ce_rows, &c);
    double total = 0;
    for (int64_t r = 0; r < N; r++) { /* fixed order: the sum does not depend on the thread count */
        int64_t t = load_index(tg, r);
        if (t == ignore_index) continue;
        total += ((double *)hb_data(lse))[r] - ld(hb_data(x), x->dtype, r * C + t);
    }
    hb_tensor_t *o = hb_tensor_full(x->dtype, 0, NULL, count ? total / (double)count : 0.0);
    hb_node_t *n = o ? hb_node_attach(o, "cross_entropy", bw_cross_entropy, 1, &logits, sizeof(cross_entropy_ctx)) : NULL;
    if (n) {
        n->reads_in = 0;   /* the backward reads the saved contiguous logits */
        hb_node_save(n, 0, x);
        hb_node_save(n, 1, tg);
        hb_node_save(n, 2, lse);
        *(cross_entropy_ctx *)n->ctx = (cross_entropy_ctx){.ignore_index = ignore_index, .count = count};
    }
    hb_tensor_free(x);
    hb_tensor_free(tg);
    hb_tensor_free(lse);
    return o;
}

/* ---- embedding, rmsnorm --------------------------------------------------------------------------- */
static int check_index_tensor(const hb_tensor_t *t, const char *op) {
    if (t->dtype != HB_I64 && t->dtype != HB_I32) {   /* float ids would be truncated silently */
        hb_seterr("%s: index must be an integer tensor (int64 or int32), got %s", op, hb_dtype_name(t->dtype));
        return -1;
    }
    return 0;
}

static int bw_embedding(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    hb_tensor_t *w = n->in[0], *ids = n->saved[0];
    int64_t V = w->size[0], D = w->size[1], m = hb_numel(ids);
    hb_tensor_t *gc = hb_contiguous(g);
    hb_tensor_t *o = gc ? hb_tensor_zeros(w->dtype, 2, w->size) : NULL;
    if (!o) { hb_tensor_free(gc); return -1; }
    (void)V;
    for (int64_t i = 0; i < m; i++) {
        int64_t id = load_index(ids, i);
        if (w->dtype == HB_F32) {
            float *dst = (float *)hb_data(o) + id * D;
            const float *src = (const float *)hb_data(gc) + i * D;
            for (int64_t j = 0; j < D; j++) dst[j] += src[j];
        } else {
            double *dst = (double *)hb_data(o) + id * D;
            const double *src = (const double *)hb_data(gc) + i * D;
            for (int64_t j = 0; j < D; j++) dst[j] += src[j];
        }
    }
    hb_tensor_free(gc);
    gin[0] = o;
    return 0;
}

hb_tensor_t *hb_embedding(hb_tensor_t *w, hb_tensor_t *ids) {
    char a[64];
    if (check_float(w, "embedding", "weight") || check_index_tensor(ids, "embedding")) return NULL;
    if (w->ndim != 2) { hb_seterr("embedding: weight must be [V, D], got %s", hb_shape_str(w, a, sizeof a)); return NULL; }
    if (ids->ndim >= HB_MAXDIM) { hb_seterr("embedding: ids have too many dims"); return NULL; }
    hb_tensor_t *ic = hb_contiguous(ids), *wc = hb_contiguous(w);
    if (!ic || !wc) { hb_tensor_free(ic); hb_tensor_free(wc); return NULL; }
    int64_t V = w->size[0], D = w->size[1], m = hb_numel(ids);
    for (int64_t i = 0; i < m; i++) {
        int64_t id = load_index(ic, i);
        if (id < 0 || id >= V) {
            hb_seterr("embedding: token id %lld at position %lld is out of range [0, %lld)", (long long)id, (long long)i,
                      (long long)V);
            hb_tensor_free(ic); hb_tensor_free(wc);
            return NULL;
        }
    }
    int64_t shape[HB_MAXDIM];
    for (int i = 0; i < ids->ndim; i++) shape[i] = ids->size[i];
    shape[ids->ndim] = D;
    hb_tensor_t *o = hb_tensor_empty(w->dtype, ids->ndim + 1, shape);
    if (!o) { hb_tensor_free(ic); hb_tensor_free(wc); return NULL; }
    size_t es = hb_dtype_size(w->dtype);
    for (int64_t i = 0; i < m; i++)
        memcpy((char *)hb_data(o) + (size_t)(i * D) * es, (char *)hb_data(wc) + (size_t)(load_index(ic, i) * D) * es, (size_t)D * es);
    hb_tensor_free(wc);
    hb_node_t *n = hb_node_attach(o, "embedding", bw_embedding, 1, &w, 0);
    if (n) {
        n->reads_in = 0;   /* only the weight's shape */
        hb_node_save(n, 0, ic);
    }
    hb_tensor_free(ic);
    return o;
}

typedef struct {
    double eps;
} rmsnorm_ctx;

/* rmsnorm runs in blocks of RMS_ROWS rows on the thread pool; the weight gradient is summed per block (in
 * double) and the blocks' sums added in block order, so results do not depend on the thread count. */
enum { RMS_ROWS = 64 };
typedef struct {
    hb_dtype_t dt;
    int64_t D, rows;
    double eps;
    const void *x, *g, *w; /* contiguous; w may be NULL */
    void *out;
    double *gw; /* [blocks][D] partial weight gradients, or NULL */
} rms_job_t;

static void rms_bw_block(void *ctx, int64_t blk) {
    rms_job_t *j = ctx;
    int64_t D = j->D, r1 = (blk + 1) * RMS_ROWS < j->rows ? (blk + 1) * RMS_ROWS : j->rows;
    double *gw = j->gw ? j->gw + blk * D : NULL;
    if (j->dt == HB_F32) {
        const float *px = j->x, *pg = j->g, *pw = j->w;
        float *pgx = j->out;
        for (int64_t r = blk * RMS_ROWS; r < r1; r++) {
            const float *xr = px + r * D, *gr = pg + r * D;
            float *out = pgx + r * D;
            double ss = 0;
            for (int64_t k = 0; k < D; k++) ss += (double)xr[k] * xr[k];
            float rs = (float)(1 / sqrt(ss / (double)D + j->eps));
            float dot = 0;
            for (int64_t k = 0; k < D; k++) {
                float xh = xr[k] * rs, gxh = gr[k] * (pw ? pw[k] : 1.0f);
                dot += gxh * xh;
                if (gw) gw[k] += (double)(gr[k] * xh);
            }
            dot /= (float)D;
            for (int64_t k = 0; k < D; k++) {
                float xh = xr[k] * rs, gxh = gr[k] * (pw ? pw[k] : 1.0f);
                out[k] = rs * (gxh - xh * dot);
            }
        }
        return;
    }
    hb_dtype_t dt = j->dt;
    for (int64_t r = blk * RMS_ROWS; r < r1; r++) {
        int64_t b = r * D;
        double ss = 0;
        for (int64_t k = 0; k < D; k++) { double v = ld(j->x, dt, b + k); ss += v * v; }
        double rs = 1 / sqrt(ss / (double)D + j->eps), dot = 0;
        for (int64_t k = 0; k < D; k++) {
            double xh = ld(j->x, dt, b + k) * rs, gv = ld(j->g, dt, b + k);
            double gxh = gv * (j->w ? ld(j->w, dt, k) : 1.0);
            dot += gxh * xh;
            if (gw) gw[k] += gv * xh;
        }
        dot /= (double)D;
        for (int64_t k = 0; k < D; k++) {
            double xh = ld(j->x, dt, b + k) * rs, gv = ld(j->g, dt, b + k);
            double gxh = gv * (j->w ? ld(j->w, dt, k) : 1.0);
            st(j->out, dt, b + k, rs * (gxh - xh * dot));
        }
    }
}

static int bw_rmsnorm(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    hb_tensor_t *x = n->saved[0], *w = n->nin > 1 ? n->in[1] : NULL;
    double eps = ((const rmsnorm_ctx *)n->ctx)->eps;
    hb_tensor_t *gc = hb_contiguous(g), *wc = w ? hb_contiguous(w) : NULL;
    int64_t D = x->size[x->ndim - 1], rows = D ? hb_numel(x) / D : 0, nb = (rows + RMS_ROWS - 1) / RMS_ROWS;
    hb_tensor_t *gx = gc && (!w || wc) ? hb_tensor_empty(x->dtype, x->ndim, x->size) : NULL;
    double *gw = w && w->requires_grad ? hb_calloc((size_t)((nb > 0 ? nb : 1) * D), sizeof(double)) : NULL;
    if (!gx || (w && w->requires_grad && !gw)) { hb_tensor_free(gc); hb_tensor_free(wc); hb_tensor_free(gx); free(gw); hb_seterr("rmsnorm backward: out of memory"); return -1; }
    hb_dtype_t dt = x->dtype;
    rms_job_t j = {dt, D, rows, eps, hb_data(x), hb_data(gc), wc ? hb_data(wc) : NULL, hb_data(gx), gw};
    hb_parallel_for(nb, rms_bw_block, &j);
    for (int64_t b = 1; b < nb && gw; b++)
        for (int64_t k = 0; k < D; k++) gw[k] += gw[b * D + k];
    gin[0] = gx;
    if (gw) {
        gin[1] = hb_tensor_empty(w->dtype, 1, &D);
        if (gin[1]) for (int64_t k = 0; k < D; k++) st(hb_data(gin[1]), dt, k, gw[k]);
    }
    int lost = gw && !gin[1];
    free(gw);
    if (lost) { hb_tensor_free(gc); hb_tensor_free(wc); hb_tensor_free(gx); gin[0] = NULL; return -1; }
    hb_tensor_free(gc);
    hb_tensor_free(wc);
    return 0;
}

static void rms_fw_block(void *ctx, int64_t blk) {
    rms_job_t *j = ctx;
    int64_t D = j->D, r1 = (blk + 1) * RMS_ROWS < j->rows ? (blk + 1) * RMS_ROWS : j->rows;
    if (j->dt == HB_F32) {
        const float *px = j->x, *pw = j->w;
        float *po = j->out;
        for (int64_t r = blk * RMS_ROWS; r < r1; r++) {
            const float *xr = px + r * D;
            float *orow = po + r * D;
            double ss = 0;
            for (int64_t k = 0; k < D; k++) ss += (double)xr[k] * xr[k];
            float rs = (float)(1 / sqrt(ss / (double)D + j->eps));
            for (int64_t k = 0; k < D; k++) orow[k] = xr[k] * rs * (pw ? pw[k] : 1.0f);
        }
        return;
    }
    const double *px = j->x, *pw = j->w;
    double *po = j->out;
    for (int64_t r = blk * RMS_ROWS; r < r1; r++) {
        double ss = 0;
        for (int64_t k = 0; k < D; k++) ss += px[r * D + k] * px[r * D + k];
        double rs = 1 / sqrt(ss / (double)D + j->eps);
        for (int64_t k = 0; k < D; k++) po[r * D + k] = px[r * D + k] * rs * (pw ? pw[k] : 1.0);
    }
}

hb_tensor_t *hb_rmsnorm(hb_tensor_t *x, hb_tensor_t *w, double eps) {
    char a[64], b[64];
    if (check_float(x, "rmsnorm", "input") || (w && check_same_dtype(x, w, "rmsnorm"))) return NULL;
    if (x->ndim < 1) { hb_seterr("rmsnorm: input must have at least one dim"); return NULL; }
    int64_t D = x->size[x->ndim - 1];
    if (w && (w->ndim != 1 || w->size[0] != D)) {
        hb_seterr("rmsnorm: weight %s does not match the last dim of input %s", hb_shape_str(w, a, sizeof a),
                  hb_shape_str(x, b, sizeof b));
        return NULL;
    }
    hb_tensor_t *xc = hb_contiguous(x), *wc = w ? hb_contiguous(w) : NULL;
    hb_tensor_t *o = xc && (!w || wc) ? hb_tensor_empty(x->dtype, x->ndim, x->size) : NULL;
    if (!o) { hb_tensor_free(xc); hb_tensor_free(wc); return NULL; }
    int64_t rows = D ? hb_numel(x) / D : 0;
    rms_job_t j = {x->dtype, D, rows, eps, hb_data(xc), NULL, wc ? hb_data(wc) : NULL, hb_data(o), NULL};
    hb_parallel_for((rows + RMS_ROWS - 1) / RMS_ROWS, rms_fw_block, &j);
    hb_tensor_free(wc);
    hb_tensor_t *in[2] = {x, w};
    hb_node_t *n = hb_node_attach(o, "rmsnorm", bw_rmsnorm, w ? 2 : 1, in, sizeof(rmsnorm_ctx));
    if (n) {
        n->reads_in = 2;   /* the weight; x is read from the saved contiguous copy */
        hb_node_save(n, 0, xc);
        ((rmsnorm_ctx *)n->ctx)->eps = eps;
    }
    hb_tensor_free(xc);
    return o;
}

/* ---- cat, gather, index_select, tril/triu, repeat ---------------------------------------------------- */
/* cat, gather and index_select remember the dim they worked along */
typedef struct {
    int dim;
} dim_ctx;

static int bw_cat(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    int d = ((const dim_ctx *)n->ctx)->dim;
    int64_t off = 0;
    for (int k = 0; k < n->nin; k++) {
        int64_t len = n->in[k]->size[d];
        if (n->in[k]->requires_grad) {
            hb_tensor_t *v = hb_narrow(g, d, off, len);
            gin[k] = v ? hb_contiguous(v) : NULL;
            hb_tensor_free(v);
            if (!gin[k]) return -1;
        }
        off += len;
    }
    return 0;
}

hb_tensor_t *hb_cat(int n, hb_tensor_t **ts, int dim) {
    if (n < 1) { hb_seterr("cat: need at least one tensor"); return NULL; }
    int d = normdim(dim, ts[0]->ndim, "cat");
    if (d < 0) return NULL;
    int64_t shape[HB_MAXDIM];
    memcpy(shape, ts[0]->size, sizeof shape);
    shape[d] = 0;
    for (int k = 0; k < n; k++) {
        if (ts[k]->ndim != ts[0]->ndim || ts[k]->dtype != ts[0]->dtype) {
            hb_seterr("cat: tensor %d has %d dims/%s, expected %d/%s", k + 1, ts[k]->ndim, hb_dtype_name(ts[k]->dtype),
                      ts[0]->ndim, hb_dtype_name(ts[0]->dtype));
            return NULL;
        }
        for (int i = 0; i < ts[0]->ndim; i++)
            if (i != d && ts[k]->size[i] != ts[0]->size[i]) {
                char a[64], b[64];
                hb_seterr("cat: tensor %d has shape %s, incompatible with %s along dim %d", k + 1,
                          hb_shape_str(ts[k], a, sizeof a), hb_shape_str(ts[0], b, sizeof b), d);
                return NULL;
            }
        shape[d] += ts[k]->size[d];
    }
    hb_tensor_t *o = hb_tensor_empty(ts[0]->dtype, ts[0]->ndim, shape);
    if (!o) return NULL;
    int64_t off = 0;
    int g = hb_grad_set(0);
    for (int k = 0; k < n; k++) {
        hb_tensor_t *v = hb_narrow(o, d, off, ts[k]->size[d]);
        if (!v || hb_copy_(v, ts[k])) { hb_tensor_free(v); hb_tensor_free(o); hb_grad_set(g); return NULL; }
        hb_tensor_free(v);
        off += ts[k]->size[d];
    }
    hb_grad_set(g);
    if (n <= HB_NODE_MAXIN) {
        hb_node_t *nd = hb_node_attach(o, "cat", bw_cat, n, ts, sizeof(dim_ctx));
        if (nd) {
            ((dim_ctx *)nd->ctx)->dim = d;
            nd->reads_in = 0;
        }
    } else if (hb_needs_grad(n, ts)) {
        hb_tensor_free(o);
        hb_seterr("cat: at most %d tensors when gradients are needed", HB_NODE_MAXIN);
        return NULL;
    }
    return o;
}

/* gather / scatter-add over dim d with an index of the same rank */
static int bw_gather(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    hb_tensor_t *a = n->in[0], *idx = n->saved[0];
    int d = ((const dim_ctx *)n->ctx)->dim;
    hb_tensor_t *o = hb_tensor_zeros(a->dtype, a->ndim, a->size);
    hb_tensor_t *gc = o ? hb_contiguous(g) : NULL;
    if (!gc) { hb_tensor_free(o); return -1; }
    int64_t m = hb_numel(idx), pos[HB_MAXDIM] = {0};
    for (int64_t k = 0; k < m; k++) {
        int64_t src[HB_MAXDIM];
        memcpy(src, pos, sizeof src);
        src[d] = load_index(idx, k);
        double v = hb_get(o, src) + ld(hb_data(gc), gc->dtype, k);
        hb_set(o, src, v);
        for (int i = idx->ndim - 1; i >= 0; i--) { if (++pos[i] < idx->size[i]) break; pos[i] = 0; }
    }
    hb_tensor_free(gc);
    gin[0] = o;
    return 0;
}

hb_tensor_t *hb_gather(hb_tensor_t *a, int dim, hb_tensor_t *index) {
    int d = normdim(dim, a->ndim, "gather");
    if (d < 0 || check_index_tensor(index, "gather")) return NULL;
    if (index->ndim != a->ndim) { hb_seterr("gather: index must have the same number of dims as input (%d vs %d)", index->ndim, a->ndim); return NULL; }
    for (int i = 0; i < a->ndim; i++)
        if (i != d && index->size[i] > a->size[i]) { hb_seterr("gather: index size %lld exceeds input size %lld at dim %d", (long long)index->size[i], (long long)a->size[i], i); return NULL; }
    hb_tensor_t *ic = hb_contiguous(index);
    hb_tensor_t *o = ic ? hb_tensor_empty(a->dtype, index->ndim, index->size) : NULL;
    if (!o) { hb_tensor_free(ic); return NULL; }
    int64_t m = hb_numel(ic), pos[HB_MAXDIM] = {0};
    for (int64_t k = 0; k < m; k++) {
        int64_t src[HB_MAXDIM];
        memcpy(src, pos, sizeof src);
        src[d] = load_index(ic, k);
        if (src[d] < 0 || src[d] >= a->size[d]) {
            hb_seterr("gather: index %lld out of range [0, %lld) at dim %d", (long long)src[d], (long long)a->size[d], d);
            hb_tensor_free(ic); hb_tensor_free(o);
            return NULL;
        }
        st(hb_data(o), o->dtype, k, hb_get(a, src));
        for (int i = ic->ndim - 1; i >= 0; i--) { if (++pos[i] < ic->size[i]) break; pos[i] = 0; }
    }
    hb_node_t *n = hb_node_attach(o, "gather", bw_gather, 1, &a, sizeof(dim_ctx));
    if (n) {
        n->reads_in = 0;   /* only the input's shape */
        hb_node_save(n, 0, ic);
        ((dim_ctx *)n->ctx)->dim = d;
    }
    hb_tensor_free(ic);
    return o;
}

static int bw_index_select(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    hb_tensor_t *a = n->in[0], *idx = n->saved[0];
    int d = ((const dim_ctx *)n->ctx)->dim;
    hb_tensor_t *o = hb_tensor_zeros(a->dtype, a->ndim, a->size);
    if (!o) return -1;
    int64_t m = hb_numel(idx);
    for (int64_t k = 0; k < m; k++) {
        hb_tensor_t *dst = hb_narrow(o, d, load_index(idx, k), 1), *src = hb_narrow(g, d, k, 1);
        int rc = dst && src ? hb_add_(dst, src, 1.0) : -1;
        hb_tensor_free(dst);
        hb_tensor_free(src);
        if (rc) { hb_tensor_free(o); return -1; }
    }
    gin[0] = o;
    return 0;
}

hb_tensor_t *hb_index_select(hb_tensor_t *a, int dim, hb_tensor_t *index) {
    int d = normdim(dim, a->ndim, "index_select");
    if (d < 0 || check_index_tensor(index, "index_select")) return NULL;
    if (index->ndim != 1) { hb_seterr("index_select: index must be 1-d (got %d dims)", index->ndim); return NULL; }
    hb_tensor_t *ic = hb_contiguous(index);
    if (!ic) return NULL;
    int64_t m = index->size[0], shape[HB_MAXDIM];
    memcpy(shape, a->size, sizeof shape);
    shape[d] = m;
    hb_tensor_t *o = hb_tensor_empty(a->dtype, a->ndim, shape);
    if (!o) { hb_tensor_free(ic); return NULL; }
    int g = hb_grad_set(0);
    for (int64_t k = 0; k < m; k++) {
        int64_t id = load_index(ic, k);
        if (id < 0 || id >= a->size[d]) {
            hb_seterr("index_select: index %lld out of range [0, %lld)", (long long)id, (long long)a->size[d]);
            hb_grad_set(g); hb_tensor_free(ic); hb_tensor_free(o);
            return NULL;
        }
        hb_tensor_t *dst = hb_narrow(o, d, k, 1), *src = hb_narrow(a, d, id, 1);
        int rc = dst && src ? hb_copy_(dst, src) : -1;
        hb_tensor_free(dst);
        hb_tensor_free(src);
        if (rc) { hb_grad_set(g); hb_tensor_free(ic); hb_tensor_free(o); return NULL; }
    }
    hb_grad_set(g);
    hb_node_t *n = hb_node_attach(o, "index_select", bw_index_select, 1, &a, sizeof(dim_ctx));
    if (n) {
        n->reads_in = 0;   /* only the input's shape */
        hb_node_save(n, 0, ic);
        ((dim_ctx *)n->ctx)->dim = d;
    }
    hb_tensor_free(ic);
    return o;
}

static hb_tensor_t *tri_mask(hb_tensor_t *a, int64_t k, int lower) {
    if (a->ndim < 2) { hb_seterr("%s: input must have at least 2 dims", lower ? "tril" : "triu"); return NULL; }
    int64_t R = a->size[a->ndim - 2], C = a->size[a->ndim - 1];
    int64_t shape[2] = {R, C};
    hb_tensor_t *m = hb_tensor_empty(a->dtype, 2, shape);
    if (!m) return NULL;
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) st(hb_data(m), a->dtype, i * C + j, lower ? (j <= i + k) : (j >= i + k));
    return m;
}

hb_tensor_t *hb_tril(hb_tensor_t *a, int64_t k) {
    if (check_float(a, "tril", "input")) return NULL;
    hb_tensor_t *m = tri_mask(a, k, 1);
    hb_tensor_t *r = m ? hb_mul(a, m) : NULL;
    hb_tensor_free(m);
    return r;
}
hb_tensor_t *hb_triu(hb_tensor_t *a, int64_t k) {
    if (check_float(a, "triu", "input")) return NULL;
    hb_tensor_t *m = tri_mask(a, k, 0);
    hb_tensor_t *r = m ? hb_mul(a, m) : NULL;
    hb_tensor_free(m);
    return r;
}

hb_tensor_t *hb_repeat_interleave(hb_tensor_t *x, int dim, int64_t g) {
    int d = normdim(dim, x->ndim, "repeat_interleave");
    if (d < 0) return NULL;
    if (g < 1) { hb_seterr("repeat_interleave: repeats must be >= 1"); return NULL; }
    if (g == 1) return hb_tensor_ref(x);
    hb_tensor_t *u = hb_unsqueeze(x, d + 1);
    if (!u) return NULL;
    int64_t es[HB_MAXDIM];
    memcpy(es, u->size, sizeof es);
    es[d + 1] = g;
    hb_tensor_t *e = hb_expand(u, u->ndim, es);
    hb_tensor_free(u);
    if (!e) return NULL;
    int64_t vs[HB_MAXDIM];
    memcpy(vs, x->size, sizeof vs);
    vs[d] *= g;
    hb_tensor_t *r = hb_view(e, x->ndim, vs); /* view copies the expanded tensor */
    hb_tensor_free(e);
    return r;
}
