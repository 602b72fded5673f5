/* views.c — differentiable views and copies (views.h) and hb_sum_to, the inverse of a broadcast.
 *
 * A view op builds a new view over the same storage (hb_detach gives the alias) and, when autograd is
 * on, a node whose backward maps the gradient back to the source's shape (narrow → zero-padded copy,
 * transpose → transpose back, expand → sum over the broadcast dims, view → view back). Depends on
 * tensor.h and autograd.h only; ops.c and everything above it build on these views.
 */
#include "views.h"
#include "autograd.h"
#include "../kernels/parallel.h"
#include <string.h>

static int norm_dim(int dim, int ndim, const char *op) {
    int d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= (ndim ? ndim : 1)) {
        hb_seterr("%s: dim %d out of range for a %d-d tensor", op, dim, ndim);
        return -1;
    }
    return d;
}

/* Every backward here needs only the source's shape, never its values: an in-place change of the source
 * after the view was taken does not affect the gradient (the view's consumers check their own inputs). */
static hb_node_t *shape_only(hb_node_t *n) {
    if (n) n->reads_in = 0;
    return n;
}

typedef struct {
    int dim;
    int64_t start, len;
} narrow_ctx;

static int bw_narrow(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const narrow_ctx *c = n->ctx;
    hb_tensor_t *src = n->in[0];
    hb_tensor_t *z = hb_tensor_zeros(g->dtype, src->ndim, src->size);
    if (!z) return -1;
    hb_tensor_t *win = hb_narrow(z, c->dim, c->start, c->len);
    if (!win) { hb_tensor_free(z); return -1; }
    int rc = hb_copy_(win, g);
    hb_tensor_free(win);
    if (rc) { hb_tensor_free(z); return -1; }
    gin[0] = z;
    return 0;
}

hb_tensor_t *hb_narrow(hb_tensor_t *t, int dim, int64_t start, int64_t len) {
    int d = norm_dim(dim, t->ndim, "narrow");
    if (d < 0) return NULL;
    if (start < 0 || len < 0 || start + len > t->size[d]) {
        hb_seterr("narrow: range [%lld, %lld) out of bounds for dim %d of size %lld", (long long)start,
                  (long long)(start + len), dim, (long long)t->size[d]);
        return NULL;
    }
    hb_tensor_t *v = hb_detach(t);
    if (!v) return NULL;
    v->offset += start * t->stride[d];
    v->size[d] = len;
    hb_node_t *n = shape_only(hb_node_attach(v, "narrow", bw_narrow, 1, &t, sizeof(narrow_ctx)));
    if (n) *(narrow_ctx *)n->ctx = (narrow_ctx){.dim = d, .start = start, .len = len};
    return v;
}

hb_tensor_t *hb_select(hb_tensor_t *t, int dim, int64_t index) {
    int d = norm_dim(dim, t->ndim, "select");
    if (d < 0) return NULL;
    if (index < 0) index += t->size[d];
    hb_tensor_t *nw = hb_narrow(t, d, index, 1);
    if (!nw) return NULL;
    hb_tensor_t *r = hb_squeeze(nw, d);
    hb_tensor_free(nw);
    return r;
}

typedef struct {
    int perm[HB_MAXDIM]; /* output dim i is input dim perm[i] */
} permute_ctx;

static int bw_permute(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const permute_ctx *c = n->ctx;
    int inv[HB_MAXDIM];
    for (int i = 0; i < g->ndim; i++) inv[c->perm[i]] = i;
    gin[0] = hb_permute(g, inv);
    return gin[0] ? 0 : -1;
}

hb_tensor_t *hb_permute(hb_tensor_t *t, const int *perm) {
    int seen[HB_MAXDIM] = {0};
    for (int i = 0; i < t->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= t->ndim || seen[perm[i]]) {
            hb_seterr("permute: invalid permutation for a %d-d tensor", t->ndim);
            return NULL;
        }
        seen[perm[i]] = 1;
    }
    hb_tensor_t *v = hb_detach(t);
    if (!v) return NULL;
    for (int i = 0; i < t->ndim; i++) {
        v->size[i] = t->size[perm[i]];
        v->stride[i] = t->stride[perm[i]];
    }
    hb_node_t *n = shape_only(hb_node_attach(v, "permute", bw_permute, 1, &t, sizeof(permute_ctx)));
    if (n) memcpy(((permute_ctx *)n->ctx)->perm, perm, sizeof(int) * (size_t)t->ndim);
    return v;
}

hb_tensor_t *hb_transpose(hb_tensor_t *t, int d0, int d1) {
    int a = norm_dim(d0, t->ndim, "transpose"), b = norm_dim(d1, t->ndim, "transpose");
    if (a < 0 || b < 0) return NULL;
    int perm[HB_MAXDIM];
    for (int i = 0; i < t->ndim; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return hb_permute(t, perm);
}

static int bw_view(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    hb_tensor_t *src = n->in[0];
    gin[0] = hb_view(g, src->ndim, src->size);
    return gin[0] ? 0 : -1;
}

/* Can t be viewed with the new sizes without copying? (contiguous, or merging/splitting compatible dims) */
static int view_strides(const hb_tensor_t *t, int ndim, const int64_t *size, int64_t *stride) {
    if (!hb_is_contiguous(t)) return 0;
    int64_t st = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = st;
        st *= size[i];
    }
    return 1;
}

hb_tensor_t *hb_view(hb_tensor_t *t, int ndim, const int64_t *size_in) {
    if (ndim < 0 || ndim > HB_MAXDIM) { hb_seterr("view: at most %d dims", HB_MAXDIM); return NULL; }
    int64_t size[HB_MAXDIM], known = 1, n = hb_numel(t);
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        size[i] = size_in[i];
        if (size[i] == -1) {
            if (infer >= 0) { hb_seterr("view: only one size may be -1"); return NULL; }
            infer = i;
        } else if (size[i] < 0) {
            hb_seterr("view: invalid size %lld", (long long)size[i]);
            return NULL;
        } else if (__builtin_mul_overflow(known, size[i], &known)) {
            hb_seterr("view: sizes multiply past 2^63 elements");
            return NULL;
        }
    }
    if (infer >= 0) {
        if (known == 0 || n % known) {
            char b[64];
            hb_seterr("view: cannot infer -1 for a tensor of shape %s", hb_shape_str(t, b, sizeof b));
            return NULL;
        }
        size[infer] = n / known;
        known *= size[infer];
    }
    if (known != n) {
        char b[64];
        hb_seterr("view: shape %s (%lld elements) cannot be viewed as %lld elements", hb_shape_str(t, b, sizeof b),
                  (long long)n, (long long)known);
        return NULL;
    }
    hb_tensor_t *src = hb_contiguous(t);
    if (!src) return NULL;
    hb_tensor_t *v = hb_detach(src);
    if (!v) { hb_tensor_free(src); return NULL; }
    v->ndim = ndim;
    view_strides(src, ndim, size, v->stride);
    for (int i = 0; i < ndim; i++) v->size[i] = size[i];
    shape_only(hb_node_attach(v, "view", bw_view, 1, &src, 0));
    hb_tensor_free(src);
    return v;
}

hb_tensor_t *hb_unsqueeze(hb_tensor_t *t, int dim) {
    int d = dim < 0 ? dim + t->ndim + 1 : dim;
    if (d < 0 || d > t->ndim || t->ndim >= HB_MAXDIM) { hb_seterr("unsqueeze: dim %d out of range", dim); return NULL; }
    int64_t size[HB_MAXDIM];
    for (int i = 0, j = 0; i <= t->ndim; i++) size[i] = (i == d) ? 1 : t->size[j++];
    return hb_view(t, t->ndim + 1, size);
}

hb_tensor_t *hb_squeeze(hb_tensor_t *t, int dim) {
    int d = norm_dim(dim, t->ndim, "squeeze");
    if (d < 0) return NULL;
    if (t->size[d] != 1) { hb_seterr("squeeze: dim %d has size %lld, not 1", dim, (long long)t->size[d]); return NULL; }
    /* a pure stride edit: no copy even if t is not contiguous */
    hb_tensor_t *v = hb_detach(t);
    if (!v) return NULL;
    for (int i = d; i < t->ndim - 1; i++) { v->size[i] = t->size[i + 1]; v->stride[i] = t->stride[i + 1]; }
    v->ndim = t->ndim - 1;
    shape_only(hb_node_attach(v, "squeeze", bw_view, 1, &t, 0));
    return v;
}

static int bw_expand(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    gin[0] = hb_sum_to(g, n->in[0]->ndim, n->in[0]->size);
    return gin[0] ? 0 : -1;
}

hb_tensor_t *hb_expand(hb_tensor_t *t, int ndim, const int64_t *size) {
    if (ndim < t->ndim || ndim > HB_MAXDIM) { hb_seterr("expand: cannot expand %d dims to %d", t->ndim, ndim); return NULL; }
    hb_tensor_t *v = hb_detach(t);
    if (!v) return NULL;
    int off = ndim - t->ndim;
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - off;
        int64_t have = j >= 0 ? t->size[j] : 1, st = j >= 0 ? t->stride[j] : 0;
        int64_t want = size[i] == -1 ? have : size[i];
        if (want < 0) {
            hb_seterr("expand: size %lld at dim %d is negative (-1 keeps a size)", (long long)want, i);
            hb_tensor_free(v);
            return NULL;
        }
        if (have == want) {
            v->size[i] = have;
            v->stride[i] = st;
        } else if (have == 1) {
            v->size[i] = want;
            v->stride[i] = 0;
        } else {
            char b[64];
            hb_seterr("expand: size %lld at dim %d of %s cannot be expanded to %lld", (long long)have, j,
                      hb_shape_str(t, b, sizeof b), (long long)want);
            hb_tensor_free(v);
            return NULL;
        }
    }
    int64_t prod = 1;          /* the view may not be larger than a tensor that could be allocated */
    for (int i = 0; i < ndim; i++) {
        if (v->size[i] > 0 && prod > ((int64_t)1 << 62) / v->size[i]) { prod = INT64_MAX; break; }
        prod *= v->size[i];
    }
    if (hb_check_numel(prod, v->dtype, "expand: the result, a ")) { hb_tensor_free(v); return NULL; }
    shape_only(hb_node_attach(v, "expand", bw_expand, 1, &t, 0));
    return v;
}

static int bw_identity(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    (void)n;
    gin[0] = hb_tensor_ref(g);
    return 0;
}

hb_tensor_t *hb_clone(hb_tensor_t *t) {
    hb_tensor_t *c = hb_tensor_empty(t->dtype, t->ndim, t->size);
    if (!c) return NULL;
    if (hb_copy_(c, t)) { hb_tensor_free(c); return NULL; }
    shape_only(hb_node_attach(c, "clone", bw_identity, 1, &t, 0));
    return c;
}

hb_tensor_t *hb_contiguous(hb_tensor_t *t) {
    if (hb_is_contiguous(t)) return hb_tensor_ref(t);
    return hb_clone(t);
}

static int bw_to_dtype(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    gin[0] = hb_to_dtype(g, n->in[0]->dtype);
    return gin[0] ? 0 : -1;
}

hb_tensor_t *hb_to_dtype(hb_tensor_t *t, hb_dtype_t dt) {
    if (t->dtype == dt) return hb_tensor_ref(t);
    hb_tensor_t *c = hb_tensor_empty(dt, t->ndim, t->size);
    if (!c) return NULL;
    hb_copy_(c, t);
    if (hb_dtype_is_float(dt) && hb_dtype_is_float(t->dtype)) shape_only(hb_node_attach(c, "to_dtype", bw_to_dtype, 1, &t, 0));
    return c;
}

/* ---- sum back to a broadcast source (no autograd) ------------------------------------------------ */
/* Sum contiguous-or-not t over dim d into a new tensor (double accumulation; the summation order of
 * ops.c's reductions, so gradients are the same whichever path reduced them). Runs on the pool: over the
 * rows when d is the last dim (each output a row's sum, four interleaved accumulators), else over
 * (outer index, block of SUM_COLS adjacent outputs), each block walking the summed dim once with a row of
 * accumulators — the cache-friendly order (contiguous reads) and, per output, the same sequence of
 * additions as a one-output-at-a-time loop, so the bits depend neither on the threads nor on the block. */
enum { SUM_COLS = 16 };
typedef struct {
    const void *src;
    void *dst;
    hb_dtype_t dt;
    int64_t len, inner, nblk;
} sum_dim_job_t;

static void sum_dim_item(void *ctx, int64_t i) {
    const sum_dim_job_t *j = ctx;
    const int64_t len = j->len, inner = j->inner;
    if (inner == 1) { /* row i */
        double acc;
        if (j->dt == HB_F32) {
            const float *p = (const float *)j->src + i * len;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t k = 0;
            for (; k + 4 <= len; k += 4) { s0 += p[k]; s1 += p[k + 1]; s2 += p[k + 2]; s3 += p[k + 3]; }
            for (; k < len; k++) s0 += p[k];
            acc = (s0 + s1) + (s2 + s3);
            ((float *)j->dst)[i] = (float)acc;
        } else {
            const double *p = (const double *)j->src + i * len;
            acc = 0;
            for (int64_t k = 0; k < len; k++) acc += p[k];
            ((double *)j->dst)[i] = acc;
        }
        return;
    }
    const int64_t ou = i / j->nblk, c0 = (i % j->nblk) * SUM_COLS;
    const int64_t nc = inner - c0 < SUM_COLS ? inner - c0 : SUM_COLS, base = ou * len * inner + c0;
    double acc[SUM_COLS] = {0};
    if (j->dt == HB_F32) {
        const float *p = (const float *)j->src + base;
        for (int64_t k = 0; k < len; k++, p += inner)
            for (int64_t c = 0; c < nc; c++) acc[c] += p[c];
        for (int64_t c = 0; c < nc; c++) ((float *)j->dst)[ou * inner + c0 + c] = (float)acc[c];
    } else {
        const double *p = (const double *)j->src + base;
        for (int64_t k = 0; k < len; k++, p += inner)
            for (int64_t c = 0; c < nc; c++) acc[c] += p[c];
        for (int64_t c = 0; c < nc; c++) ((double *)j->dst)[ou * inner + c0 + c] = acc[c];
    }
}

static hb_tensor_t *sum_dim(hb_tensor_t *t, int d, int keepdim) {
    hb_tensor_t *tc = hb_is_contiguous(t) ? hb_tensor_ref(t) : hb_tensor_empty(t->dtype, t->ndim, t->size);
    if (!tc || (tc != t && hb_copy_(tc, t))) { hb_tensor_free(tc); return NULL; }
    int64_t outer = 1, len = t->size[d], inner = 1, osize[HB_MAXDIM];
    int ond = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i < d) outer *= t->size[i];
        if (i > d) inner *= t->size[i];
        if (i != d || keepdim) osize[ond++] = i == d ? 1 : t->size[i];
    }
    hb_tensor_t *o = hb_tensor_empty(t->dtype, ond, osize);
    if (!o) { hb_tensor_free(tc); return NULL; }
    sum_dim_job_t j = {hb_data(tc), hb_data(o), t->dtype, len, inner, (inner + SUM_COLS - 1) / SUM_COLS};
    int64_t items = inner == 1 ? outer : outer * j.nblk;
    if (items > 0) hb_parallel_for_work(items, 2.0 * (double)outer * (double)len * (double)inner, sum_dim_item, &j);
    hb_tensor_free(tc);
    return o;
}

hb_tensor_t *hb_sum_to(hb_tensor_t *g, int ndim, const int64_t *size) {
    if (!hb_dtype_is_float(g->dtype)) { hb_seterr("sum_to: float tensor expected (got %s)", hb_dtype_name(g->dtype)); return NULL; }
    hb_tensor_t *cur = hb_tensor_ref(g);
    while (cur->ndim > ndim) {              /* sum away leading extra dims */
        hb_tensor_t *r = sum_dim(cur, 0, 0);
        hb_tensor_free(cur);
        if (!r) return NULL;
        cur = r;
    }
    for (int i = 0; i < ndim; i++) {
        if (size[i] == 1 && cur->size[i] != 1) {
            hb_tensor_t *r = sum_dim(cur, i, 1);
            hb_tensor_free(cur);
            if (!r) return NULL;
            cur = r;
        }
    }
    return cur;
}
