/* mixers.c — the sequence ops that are not hybrid mixers (attention, RoPE, the short convolution) as
 * hand-written autograd wrappers of kernels/, and the historical C names of the recurrent mixers
 * (hb_gla, ...) over the generic op of mixer_op.c.
 *
 * Pattern of every hand-written op: check shapes and dtypes, make inputs contiguous, allocate the output,
 * call the _f32 or _f64 kernel through an explicit switch on the dtype (the kernels take typed pointers
 * and hb_data() is void *), then attach a node whose named context (attn_ctx, rope_ctx, conv1d_ctx) and
 * saved tensors hold what the backward needs (lse and the output for attention). Backward allocates
 * zeroed gradient buffers, lets the kernel accumulate into them, and hands them back. The packed forms
 * (hb_*_packed) check cu_seqlens with hb_seqlens_check and save its int64 copy for the backward.
 */
#include "mixers.h"
#include "../kernels/attention.h"
#include "../kernels/conv1d.h"
#include "../kernels/delta_rule.h"
#include "../kernels/gla.h"
#include "../kernels/hgrn.h"
#include "../kernels/retention.h"
#include "autograd.h"
#include "views.h"
#include <stdio.h>
#include <string.h>

#define ATTN_TILE 64

static int check_t(hb_tensor_t *t, const char *op, const char *arg, int ndim) {
    char b[64];
    if (!t) { hb_seterr("%s: %s is missing", op, arg); return -1; }
    if (!hb_dtype_is_float(t->dtype)) {
        hb_seterr("%s: %s must be float32 or float64 (got %s)", op, arg, hb_dtype_name(t->dtype));
        return -1;
    }
    if (ndim >= 0 && t->ndim != ndim) {
        hb_seterr("%s: %s must have %d dims, got shape %s", op, arg, ndim, hb_shape_str(t, b, sizeof b));
        return -1;
    }
    return 0;
}

static int same_dtype(hb_tensor_t **ts, int n, const char *op) {
    for (int i = 1; i < n; i++)
        if (ts[i] && ts[i]->dtype != ts[0]->dtype) {
            hb_seterr("%s: all inputs must share one dtype (%s vs %s)", op, hb_dtype_name(ts[0]->dtype),
                      hb_dtype_name(ts[i]->dtype));
            return -1;
        }
    return 0;
}

static int dims_eq(hb_tensor_t *t, const char *op, const char *arg, int n, const int64_t *want) {
    char b[64], w[64];
    int okk = t->ndim == n;
    for (int i = 0; okk && i < n; i++) okk = t->size[i] == want[i];
    if (!okk) {
        size_t k = 0;
        k += (size_t)snprintf(w + k, sizeof w - k, "[");
        for (int i = 0; i < n && k < sizeof w; i++) k += (size_t)snprintf(w + k, sizeof w - k, "%s%lld", i ? ", " : "", (long long)want[i]);
        if (k < sizeof w) snprintf(w + k, sizeof w - k, "]");
        hb_seterr("%s: %s has shape %s, expected %s", op, arg, hb_shape_str(t, b, sizeof b), w);
        return -1;
    }
    return 0;
}

/* contiguous copies of n inputs (NULL stays NULL); returns -1 on failure after freeing */
static int contig(int n, hb_tensor_t **in, hb_tensor_t **out) {
    for (int i = 0; i < n; i++) {
        out[i] = in[i] ? hb_contiguous(in[i]) : NULL;
        if (in[i] && !out[i]) {
            for (int j = 0; j < i; j++) hb_tensor_free(out[j]);
            return -1;
        }
    }
    return 0;
}
static void free_all(int n, hb_tensor_t **t) {
    for (int i = 0; i < n; i++) hb_tensor_free(t[i]);
}
static void *dp(hb_tensor_t *t) { return t ? hb_data(t) : NULL; }
static hb_tensor_t *zeros_like(hb_tensor_t *t) { return hb_tensor_zeros(t->dtype, t->ndim, t->size); }
static int kfail(const char *op) {
    hb_seterr("%s: kernel failed (out of memory)", op);
    return -1;
}

/* ---- softmax attention --------------------------------------------------------------------------- */
/* dtype dispatch to the fully written kernel names (kernels/attention.h) */
static int attn_fwd_dt(hb_dtype_t dt, void *o, void *lse, const void *q, const void *k, const void *v, double scale,
                       int64_t window, const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                       int64_t D) {
    switch (dt) {
    case HB_F32: return attn_fwd_f32(o, lse, q, k, v, (float)scale, window, cu, N, B, T, H, Hkv, D, ATTN_TILE);
    case HB_F64: return attn_fwd_f64(o, lse, q, k, v, scale, window, cu, N, B, T, H, Hkv, D, ATTN_TILE);
    default: return -1;
    }
}
static int attn_bwd_dt(hb_dtype_t dt, void *dq, void *dk, void *dv, const void *q, const void *k, const void *v,
                       const void *o, const void *lse, const void *dout, double scale, int64_t window, const int64_t *cu,
                       int64_t N, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D) {
    switch (dt) {
    case HB_F32: return attn_bwd_f32(dq, dk, dv, q, k, v, o, lse, dout, (float)scale, window, cu, N, B, T, H, Hkv, D, ATTN_TILE);
    case HB_F64: return attn_bwd_f64(dq, dk, dv, q, k, v, o, lse, dout, scale, window, cu, N, B, T, H, Hkv, D, ATTN_TILE);
    default: return -1;
    }
}
static int attn_decode_step_dt(hb_dtype_t dt, void *o, const void *q, const void *kc, const void *vc, double scale,
                               int64_t window, int64_t pos, int64_t B, int64_t Tmax, int64_t H, int64_t Hkv, int64_t D) {
    switch (dt) {
    case HB_F32: return attn_decode_step_f32(o, q, kc, vc, (float)scale, window, pos, B, Tmax, H, Hkv, D);
    case HB_F64: return attn_decode_step_f64(o, q, kc, vc, scale, window, pos, B, Tmax, H, Hkv, D);
    default: return -1;
    }
}

/* saved: q, k, v (contiguous), o (detached), lse, cu_seqlens (int64, packed only) */
typedef struct {
    double scale;
    int64_t window;
    int64_t N; /* packed documents (saved[5] != NULL) */
} attn_ctx;

static int bw_attention(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const attn_ctx *c = n->ctx;
    hb_tensor_t *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *o = n->saved[3], *lse = n->saved[4];
    hb_tensor_t *gc = hb_contiguous(g);
    hb_tensor_t *dq = zeros_like(q), *dk = zeros_like(k), *dv = zeros_like(v);
    if (!gc || !dq || !dk || !dv) { hb_tensor_free(gc); hb_tensor_free(dq); hb_tensor_free(dk); hb_tensor_free(dv); return -1; }
    int64_t B = q->size[0], T = q->size[1], H = q->size[2], D = q->size[3], Hkv = k->size[2];
    int rc = attn_bwd_dt(q->dtype, dp(dq), dp(dk), dp(dv), dp(q), dp(k), dp(v), dp(o), dp(lse), dp(gc), c->scale, c->window,
                         dp(n->saved[5]), c->N, B, T, H, Hkv, D);
    hb_tensor_free(gc);
    if (rc) { hb_tensor_free(dq); hb_tensor_free(dk); hb_tensor_free(dv); return kfail("attention backward"); }
    gin[0] = dq; gin[1] = dk; gin[2] = dv;
    return 0;
}

hb_tensor_t *hb_attention(hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, double scale, int64_t window) {
    return hb_attention_packed(q, k, v, scale, window, NULL);
}

hb_tensor_t *hb_attention_packed(hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, double scale, int64_t window,
                                 hb_tensor_t *cu_seqlens) {
    const char *op = "attention";
    if (check_t(q, op, "q", 4) || check_t(k, op, "k", 4) || check_t(v, op, "v", 4)) return NULL;
    hb_tensor_t *all[3] = {q, k, v};
    if (same_dtype(all, 3, op)) return NULL;
    int64_t B = q->size[0], T = q->size[1], H = q->size[2], D = q->size[3], Hkv = k->size[2];
    int64_t ks[4] = {B, T, Hkv, D};
    if (dims_eq(k, op, "k", 4, ks) || dims_eq(v, op, "v", 4, ks)) return NULL;
    if (Hkv < 1 || H % Hkv) { hb_seterr("%s: %lld query heads are not a multiple of %lld kv heads", op, (long long)H, (long long)Hkv); return NULL; }
    if (window < 0) { hb_seterr("%s: window must be >= 0", op); return NULL; }
    int64_t N = 0;
    hb_tensor_t *cu = cu_seqlens ? hb_seqlens_check(cu_seqlens, B, T, op, &N) : NULL, *c[3];
    if (cu_seqlens && !cu) return NULL;
    if (contig(3, all, c)) { hb_tensor_free(cu); return NULL; }
    int64_t ls[3] = {B, H, T};
    hb_tensor_t *o = hb_tensor_empty(q->dtype, 4, q->size), *lse = hb_tensor_empty(q->dtype, 3, ls);
    if (!o || !lse ||
        attn_fwd_dt(q->dtype, dp(o), dp(lse), dp(c[0]), dp(c[1]), dp(c[2]), scale, window, dp(cu), N, B, T, H, Hkv, D)) {
        if (o && lse) kfail(op);
        free_all(3, c); hb_tensor_free(o); hb_tensor_free(lse); hb_tensor_free(cu);
        return NULL;
    }
    hb_node_t *n = hb_node_attach(o, op, bw_attention, 3, all, sizeof(attn_ctx));
    if (n) {   /* the backward reads the saved contiguous copies, not the inputs */
        n->reads_in = 0;
        for (int i = 0; i < 3; i++) hb_node_save(n, i, c[i]);
        hb_node_save(n, 4, lse);
        hb_node_save(n, 5, cu);
        *(attn_ctx *)n->ctx = (attn_ctx){.scale = scale, .window = window, .N = N};
        hb_node_save_output(n, 3, o);
    }
    free_all(3, c);
    hb_tensor_free(lse);
    hb_tensor_free(cu);
    return o;
}

hb_tensor_t *hb_attention_step(hb_tensor_t *q, hb_tensor_t *kc, hb_tensor_t *vc, double scale, int64_t window, int64_t pos) {
    const char *op = "attention_step";
    if (check_t(q, op, "q", 3) || check_t(kc, op, "k cache", 4) || check_t(vc, op, "v cache", 4)) return NULL;
    int64_t B = q->size[0], H = q->size[1], D = q->size[2], Tmax = kc->size[1], Hkv = kc->size[2];
    int64_t cs[4] = {B, Tmax, Hkv, D};
    if (dims_eq(kc, op, "k cache", 4, cs) || dims_eq(vc, op, "v cache", 4, cs)) return NULL;
    if (kc->dtype != q->dtype || vc->dtype != q->dtype) { hb_seterr("%s: dtypes differ", op); return NULL; }
    if (pos < 0 || !hb_is_contiguous(kc) || !hb_is_contiguous(vc) || Hkv < 1 || H % Hkv) {
        hb_seterr("%s: bad cache (pos %lld, capacity %lld, contiguous caches required)", op, (long long)pos, (long long)Tmax);
        return NULL;
    }
    if (pos >= Tmax && !(window > 0 && window <= Tmax)) {   /* a ring buffer serves a window only */
        hb_seterr("%s: position %lld is beyond the cache's %lld slots; a cache shorter than the context is a ring "
                  "of the last positions, which serves only a window of at most %lld (window %lld)", op, (long long)pos,
                  (long long)Tmax, (long long)Tmax, (long long)window);
        return NULL;
    }
    hb_tensor_t *qc = hb_contiguous(q);
    hb_tensor_t *o = qc ? hb_tensor_empty(q->dtype, 3, q->size) : NULL;
    if (o && attn_decode_step_dt(q->dtype, dp(o), dp(qc), dp(kc), dp(vc), scale, window, pos, B, Tmax, H, Hkv, D)) {
        hb_tensor_free(o);
        o = NULL;
        kfail(op);
    }
    hb_tensor_free(qc);
    return o;
}

/* ---- rotary position embedding ------------------------------------------------------------------- */
static int rope_dt(hb_dtype_t dt, int backward, void *out, const void *x, double theta, int64_t pos0, const int64_t *cu,
                   int64_t N, const int64_t *size) {
    switch (dt) {
    case HB_F32:
        return backward ? rope_bwd_f32(out, x, theta, pos0, cu, N, size[0], size[1], size[2], size[3])
                        : rope_fwd_f32(out, x, theta, pos0, cu, N, size[0], size[1], size[2], size[3]);
    case HB_F64:
        return backward ? rope_bwd_f64(out, x, theta, pos0, cu, N, size[0], size[1], size[2], size[3])
                        : rope_fwd_f64(out, x, theta, pos0, cu, N, size[0], size[1], size[2], size[3]);
    default: return -1;
    }
}

/* saved: cu_seqlens (int64, packed only) */
typedef struct {
    double theta;
    int64_t pos0;
    int64_t N; /* packed documents (saved[0] != NULL) */
} rope_ctx;

static int bw_rope(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const rope_ctx *c = n->ctx;
    hb_tensor_t *gc = hb_contiguous(g);
    hb_tensor_t *dx = gc ? zeros_like(gc) : NULL;
    if (!dx) { hb_tensor_free(gc); return -1; }
    int rc = rope_dt(g->dtype, 1, dp(dx), dp(gc), c->theta, c->pos0, dp(n->saved[0]), c->N, g->size);
    hb_tensor_free(gc);
    if (rc) { hb_tensor_free(dx); return kfail("rope backward"); }
    gin[0] = dx;
    return 0;
}

hb_tensor_t *hb_rope(hb_tensor_t *x, double theta, int64_t pos0) { return hb_rope_packed(x, theta, pos0, NULL); }

hb_tensor_t *hb_rope_packed(hb_tensor_t *x, double theta, int64_t pos0, hb_tensor_t *cu_seqlens) {
    if (check_t(x, "rope", "x", 4)) return NULL;
    if (x->size[3] % 2) { hb_seterr("rope: head dim %lld must be even", (long long)x->size[3]); return NULL; }
    if (pos0 < 0 || !(theta > 0)) {
        hb_seterr("rope: needs pos0 >= 0 and theta > 0 (got pos0 = %lld, theta = %g)", (long long)pos0, theta);
        return NULL;
    }
    int64_t N = 0;
    hb_tensor_t *cu = cu_seqlens ? hb_seqlens_check(cu_seqlens, x->size[0], x->size[1], "rope", &N) : NULL;
    if (cu_seqlens && !cu) return NULL;
    hb_tensor_t *xc = hb_contiguous(x);
    hb_tensor_t *o = xc ? hb_tensor_empty(x->dtype, 4, x->size) : NULL;
    if (!o) { hb_tensor_free(xc); hb_tensor_free(cu); return NULL; }
    int rc = rope_dt(x->dtype, 0, dp(o), dp(xc), theta, pos0, dp(cu), N, x->size);
    hb_tensor_free(xc);
    if (rc) { hb_tensor_free(o); hb_tensor_free(cu); kfail("rope"); return NULL; }
    hb_node_t *n = hb_node_attach(o, "rope", bw_rope, 1, &x, sizeof(rope_ctx));
    if (n) {
        *(rope_ctx *)n->ctx = (rope_ctx){.theta = theta, .pos0 = pos0, .N = N};
        n->reads_in = 0;   /* a rotation: its backward needs no values */
        hb_node_save(n, 0, cu);
    }
    hb_tensor_free(cu);
    return o;
}

/* ---- the recurrent mixers: their historical C names over the generic op (core/mixer_op.c) ----------- */
hb_tensor_t *hb_gla(hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *gk, double scale, hb_mode_t mode,
                    int64_t chunk, hb_tensor_t **ht) {
    hb_tensor_t *in[] = {q, k, v, gk};
    return hb_mixer(&hb_mixer_gla, in, &scale, mode, chunk, ht);
}
hb_tensor_t *hb_gla_step(hb_tensor_t *state, hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *gk, double scale) {
    hb_tensor_t *in[] = {q, k, v, gk};
    return hb_mixer_step(&hb_mixer_gla, state, in, &scale);
}

hb_tensor_t *hb_retention(hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *lg, double scale, hb_mode_t mode,
                          int64_t chunk, hb_tensor_t **ht) {
    hb_tensor_t *in[] = {q, k, v, lg};
    return hb_mixer(&hb_mixer_retention, in, &scale, mode, chunk, ht);
}
hb_tensor_t *hb_retention_step(hb_tensor_t *state, hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *lg,
                               double scale) {
    hb_tensor_t *in[] = {q, k, v, lg};
    return hb_mixer_step(&hb_mixer_retention, state, in, &scale);
}

hb_tensor_t *hb_delta_rule(hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *beta, hb_tensor_t *g,
                           double scale, hb_mode_t mode, int64_t chunk, hb_tensor_t **ht) {
    hb_tensor_t *in[] = {q, k, v, beta, g};
    return hb_mixer(&hb_mixer_delta_rule, in, &scale, mode, chunk, ht);
}
hb_tensor_t *hb_delta_rule_step(hb_tensor_t *state, hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *beta,
                                hb_tensor_t *g, double scale) {
    hb_tensor_t *in[] = {q, k, v, beta, g};
    return hb_mixer_step(&hb_mixer_delta_rule, state, in, &scale);
}

hb_tensor_t *hb_hgrn(hb_tensor_t *x, hb_tensor_t *g, hb_mode_t mode, hb_tensor_t **ht) {
    hb_tensor_t *in[] = {x, g};
    return hb_mixer(&hb_mixer_hgrn, in, NULL, mode, 0, ht);
}
hb_tensor_t *hb_hgrn_step(hb_tensor_t *state, hb_tensor_t *x, hb_tensor_t *g) {
    hb_tensor_t *in[] = {x, g};
    return hb_mixer_step(&hb_mixer_hgrn, state, in, NULL);
}

/* ---- short convolution ------------------------------------------------------------------------------- */
/* dtype dispatch to the fully written kernel names (kernels/conv1d.h) */
static int conv1d_fwd_dt(hb_dtype_t dt, void *y, const void *x, const void *w, const void *b, int act, const int64_t *cu,
                         int64_t N, int64_t B, int64_t T, int64_t D, int64_t W) {
    switch (dt) {
    case HB_F32: return conv1d_fwd_f32(y, x, w, b, act, NULL, cu, N, B, T, D, W);
    case HB_F64: return conv1d_fwd_f64(y, x, w, b, act, NULL, cu, N, B, T, D, W);
    default: return -1;
    }
}
static int conv1d_bwd_dt(hb_dtype_t dt, void *dx, void *dw, void *db, const void *dy, const void *x, const void *w,
                         const void *b, int act, const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t D, int64_t W) {
    switch (dt) {
    case HB_F32: return conv1d_bwd_f32(dx, dw, db, dy, x, w, b, act, NULL, cu, N, B, T, D, W);
    case HB_F64: return conv1d_bwd_f64(dx, dw, db, dy, x, w, b, act, NULL, cu, N, B, T, D, W);
    default: return -1;
    }
}
static int conv1d_step_dt(hb_dtype_t dt, void *y, void *cache, const void *x, const void *w, const void *b, int act,
                          int64_t B, int64_t D, int64_t W) {
    switch (dt) {
    case HB_F32: return conv1d_step_f32(y, cache, x, w, b, act, B, D, W);
    case HB_F64: return conv1d_step_f64(y, cache, x, w, b, act, B, D, W);
    default: return -1;
    }
}
static int conv1d_cache_from_seq_dt(hb_dtype_t dt, void *cache, const void *x, const int64_t *cu, int64_t N, int64_t B,
                                    int64_t T, int64_t D, int64_t W) {
    switch (dt) {
    case HB_F32: return conv1d_cache_from_seq_f32(cache, x, cu, N, B, T, D, W);
    case HB_F64: return conv1d_cache_from_seq_f64(cache, x, cu, N, B, T, D, W);
    default: return -1;
    }
}

/* saved: x, w, bias (contiguous; bias may be NULL), cu_seqlens (int64, packed only) */
typedef struct {
    int act;     /* 0 none, 1 silu */
    int64_t W;   /* kernel width */
    int64_t N;   /* packed documents (saved[3] != NULL) */
} conv1d_ctx;

static int bw_conv(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const conv1d_ctx *c = n->ctx;
    hb_tensor_t *x = n->saved[0], *w = n->saved[1], *b = n->saved[2];
    hb_tensor_t *gc = hb_contiguous(g);
    hb_tensor_t *dx = zeros_like(x), *dw = zeros_like(w), *db = b ? zeros_like(b) : NULL;
    if (!gc || !dx || !dw || (b && !db)) { hb_tensor_free(gc); hb_tensor_free(dx); hb_tensor_free(dw); hb_tensor_free(db); return -1; }
    int64_t B = x->size[0], T = x->size[1], D = x->size[2];
    int rc = conv1d_bwd_dt(x->dtype, dp(dx), dp(dw), dp(db), dp(gc), dp(x), dp(w), dp(b), c->act, dp(n->saved[3]), c->N, B, T,
                           D, c->W);
    hb_tensor_free(gc);
    if (rc) { hb_tensor_free(dx); hb_tensor_free(dw); hb_tensor_free(db); return kfail("conv1d backward"); }
    gin[0] = dx; gin[1] = dw; gin[2] = db;
    return 0;
}

static int conv_check(hb_tensor_t *x, hb_tensor_t *w, hb_tensor_t *bias, int64_t D, int64_t *W, const char *op) {
    char a[64];
    if (check_t(w, op, "weight", -1)) return -1;
    if (!((w->ndim == 3 && w->size[0] == D && w->size[1] == 1) || (w->ndim == 2 && w->size[0] == D))) {
        hb_seterr("%s: weight has shape %s, expected [%lld, 1, W] to match %lld channels", op, hb_shape_str(w, a, sizeof a),
                  (long long)D, (long long)D);
        return -1;
    }
    *W = w->size[w->ndim - 1];
    if (bias && (bias->ndim != 1 || bias->size[0] != D)) { hb_seterr("%s: bias must be [%lld]", op, (long long)D); return -1; }
    if (w->dtype != x->dtype || (bias && bias->dtype != x->dtype)) { hb_seterr("%s: dtypes differ", op); return -1; }
    return 0;
}

hb_tensor_t *hb_conv1d(hb_tensor_t *x, hb_tensor_t *w, hb_tensor_t *bias, int act, hb_tensor_t **cache_out) {
    return hb_conv1d_packed(x, w, bias, act, NULL, cache_out);
}

hb_tensor_t *hb_conv1d_packed(hb_tensor_t *x, hb_tensor_t *w, hb_tensor_t *bias, int act, hb_tensor_t *cu_seqlens,
                              hb_tensor_t **cache_out) {
    const char *op = "conv1d";
    if (cache_out) *cache_out = NULL;
    if (check_t(x, op, "x", 3)) return NULL;
    int64_t B = x->size[0], T = x->size[1], D = x->size[2], W, N = 0;
    if (conv_check(x, w, bias, D, &W, op)) return NULL;
    hb_tensor_t *cu = cu_seqlens ? hb_seqlens_check(cu_seqlens, B, T, op, &N) : NULL;
    if (cu_seqlens && !cu) return NULL;
    hb_tensor_t *all[3] = {x, w, bias}, *c[3];
    if (contig(3, all, c)) { hb_tensor_free(cu); return NULL; }
    hb_tensor_t *y = hb_tensor_empty(x->dtype, 3, x->size);
    int nomem = !y, rc = nomem || conv1d_fwd_dt(x->dtype, dp(y), dp(c[0]), dp(c[1]), dp(c[2]), act, dp(cu), N, B, T, D, W);
    if (!rc && cache_out) { /* the decode cache of every sequence: (B or N, W-1, D) */
        int64_t cs[3] = {cu ? N : B, W - 1, D};
        *cache_out = hb_tensor_empty(x->dtype, 3, cs);
        nomem = !*cache_out;
        rc = nomem || conv1d_cache_from_seq_dt(x->dtype, dp(*cache_out), dp(c[0]), dp(cu), N, B, T, D, W);
        if (rc) { hb_tensor_free(*cache_out); *cache_out = NULL; }
    }
    if (rc) { free_all(3, c); hb_tensor_free(y); hb_tensor_free(cu); if (!nomem) kfail(op); return NULL; }
    hb_node_t *n = hb_node_attach(y, op, bw_conv, bias ? 3 : 2, all, sizeof(conv1d_ctx));
    if (n) {
        n->reads_in = 0;   /* the backward reads the saved contiguous copies */
        for (int i = 0; i < 3; i++) hb_node_save(n, i, c[i]);
        hb_node_save(n, 3, cu);
        *(conv1d_ctx *)n->ctx = (conv1d_ctx){.act = act, .W = W, .N = N};
    }
    free_all(3, c);
    hb_tensor_free(cu);
    return y;
}

hb_tensor_t *hb_conv1d_step(hb_tensor_t *cache, hb_tensor_t *x, hb_tensor_t *w, hb_tensor_t *bias, int act) {
    if (check_t(x, "conv1d_step", "x", 2) || check_t(cache, "conv1d_step", "cache", 3)) return NULL;
    int64_t B = x->size[0], D = x->size[1], W;
    if (conv_check(x, w, bias, D, &W, "conv1d_step")) return NULL;
    int64_t cs[3] = {B, W - 1, D};
    if (dims_eq(cache, "conv1d_step", "cache", 3, cs)) return NULL;
    if (cache->dtype != x->dtype) { hb_seterr("conv1d_step: cache dtype differs from x"); return NULL; }
    hb_tensor_t *all[3] = {x, w, bias}, *c[3];
    if (!hb_is_contiguous(cache)) { hb_seterr("conv1d_step: cache must be contiguous"); return NULL; }
    if (contig(3, all, c)) return NULL;
    hb_tensor_t *y = hb_tensor_empty(x->dtype, 2, x->size);
    hb_tensor_bump_version(cache);
    if (y && conv1d_step_dt(x->dtype, dp(y), dp(cache), dp(c[0]), dp(c[1]), dp(c[2]), act, B, D, W)) {
        hb_tensor_free(y);
        y = NULL;
        kfail("conv1d_step");
    }
    free_all(3, c);
    return y;
}
