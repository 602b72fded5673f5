/* conv1d.c — fla's ShortConvolution (docs/mixers.md#short-convolution): causal depthwise conv over
 * time, optional SiLU.
 *
 * Shapes: B batch, T time, D channels, W taps. x, y (B,T,D); w (D,W); b (D); caches (B,W−1,D).
 *
 *   z[t,c] = b[c] + Σ_{i=0}^{W−1} w[c,i] x[t−(W−1)+i, c],   y = act(z),   act ∈ {identity, silu}
 *   x[τ,c] for τ < 0 is cache[W−1+τ, c] (or 0 without a cache).
 *
 * Backward (dz = dy · act'(z), silu'(z) = σ(z)(1 + z(1 − σ(z)))):
 *   dx[τ,c] += Σ_i w[c,i] dz[τ+(W−1)−i, c]        (terms with τ+(W−1)−i < T)
 *   dw[c,i] += Σ_{b,t} dz[t,c] x[t−(W−1)+i, c]     db[c] += Σ_{b,t} dz[t,c]
 *
 * Sequences (kernels/seqs.h): the B rows, or the N documents of cu_seqlens packed in one row. Taps
 * never reach before a sequence's first token: there the input is the sequence's cache row (or 0), so
 * a packed document is convolved exactly as it is alone. Work items are (sequence, block of TB time
 * steps of it), numbered sequence after sequence (boff: each sequence's first block).
 *
 * There is no chunked form: the direct loop is the kernel. It is written with the channel loop
 * innermost (stride 1, vectorisable) over a transposed copy of the taps wT (W,D), and works on whole
 * rows (contiguous memory). Forward and backward are split over (batch, block of TB time steps).
 * Each backward item writes its own rows of dx and its own partial sums of dw/db; a second pass over
 * blocks of CB channels adds the partials up in item order, so dw/db are race-free and identical for
 * any thread count. The summation order b + w_0 x_0 + … + w_{W−1} x_{W−1} is shared by the forward,
 * the backward's recomputation and the decode step (decode reproduces the forward bit for bit).
 */
#include "kreal.h"
#include "alloc.h"
#include "parallel.h"
#include "conv1d.h"
#include "seqs.h"
#include <stdlib.h>
#include <string.h>

enum { TB = 64, CB = 256 };

typedef struct {
    real *y, *dx, *dw, *db;
    const real *x, *w, *b, *cache, *dy;
    const int64_t *cu;      /* cu_seqlens or NULL */
    int act;
    int64_t T, D, W, NS;    /* NS sequences */
    int64_t *boff;          /* (NS+1) first time block of each sequence; boff[NS] = items */
    real *wT;               /* (W,D) transposed taps */
    real *scratch;          /* backward: per item a ring of W dz rows (W,D) */
    real *part;             /* backward: per item partial dw, db sums (W+1,D) */
} ctx_t;

/* z[k] += a[k] · s[k]. restrict and the fixed 8-wide inner loop let gcc -O2 vectorise it. */
static void vaxpy(real *restrict z, const real *restrict a, const real *restrict s, int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) z[k + u] += a[k + u] * s[k + u];
    for (; k < n; k++) z[k] += a[k] * s[k];
}

/* z[k] += s[k]. */
static void vadd(real *restrict z, const real *restrict s, int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) z[k + u] += s[k + u];
    for (; k < n; k++) z[k] += s[k];
}

/* Row τ of sequence b (starting at token `start`): x, the cache for τ < 0, or NULL (zeros). */
static const real *src_row(const ctx_t *c, int64_t b, int64_t start, int64_t tau) {
    if (tau >= 0) return c->x + (start + tau) * c->D;
    if (!c->cache) return NULL;
    return c->cache + (b * (c->W - 1) + (c->W - 1) + tau) * c->D;
}

/* Work item it → its sequence b (start, len) and time block [t0, t1) of that sequence. */
typedef struct {
    int64_t b, start, len, t0, t1;
} item_t;

static item_t item_of(const ctx_t *c, int64_t it) {
    int64_t lo = 0, hi = c->NS - 1; /* the last b with boff[b] <= it */
    while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (c->boff[mid] <= it) lo = mid;
        else hi = mid - 1;
    }
    const hb_seq_t s = hb_seq_get(c->cu, c->T, lo);
    item_t r = {lo, s.start, s.len, (it - c->boff[lo]) * TB, 0};
    r.t1 = r.t0 + TB < s.len ? r.t0 + TB : s.len;
    return r;
}

/* Fill c->NS and c->boff; -1 when it cannot be allocated. */
static int plan_items(ctx_t *c, int64_t N, int64_t B) {
    c->NS = hb_seq_count(c->cu, N, B);
    c->boff = hb_malloc((size_t)(c->NS + 1) * sizeof(int64_t));
    if (!c->boff) return -1;
    c->boff[0] = 0;
    for (int64_t b = 0; b < c->NS; b++) c->boff[b + 1] = c->boff[b] + (hb_seq_get(c->cu, c->T, b).len + TB - 1) / TB;
    return 0;
}

/* z = b + Σ_i wT[i] ⊙ x[t−(W−1)+i] (one row of D channels) of sequence b starting at `start`. */
static void preact(real *z, const ctx_t *c, int64_t b, int64_t start, int64_t t) {
    for (int64_t k = 0; k < c->D; k++) z[k] = c->b ? c->b[k] : 0;
    for (int64_t i = 0; i < c->W; i++) {
        const real *s = src_row(c, b, start, t - (c->W - 1) + i);
        if (s) vaxpy(z, c->wT + i * c->D, s, c->D);
    }
}

static void fwd_item(void *vctx, int64_t it) {
    const ctx_t *c = vctx;
    const item_t r = item_of(c, it);
    const int64_t D = c->D;
    for (int64_t t = r.t0; t < r.t1; t++) {
        real *y = c->y + (r.start + t) * D;
        preact(y, c, r.b, r.start, t);
        if (c->act)
            for (int64_t k = 0; k < D; k++) y[k] = y[k] / (1 + kexp(-y[k]));
    }
}

/* Fill wT (W,D) from w (D,W). */
static void transpose_taps(real *wT, const real *w, int64_t D, int64_t W) {
    for (int64_t c = 0; c < D; c++)
        for (int64_t i = 0; i < W; i++) wT[i * D + c] = w[c * W + i];
}

/* The checks shared by the entry points over a sequence. */
static int bad_args(const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t D, int64_t W) {
    return W < 1 || B < 0 || T < 0 || D < 0 || hb_seqs_check(cu, N, B, T);
}

static int fwd(real *y, const real *x, const real *w, const real *b, int act, const real *cache_in,
                   const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t D, int64_t W) {
    if (bad_args(cu, N, B, T, D, W)) return -1;
    if (B <= 0 || T <= 0 || D <= 0) return 0;
    ctx_t c = {.y = y, .x = x, .w = w, .b = b, .act = act, .cache = cache_in, .cu = cu, .T = T, .D = D, .W = W};
    if (plan_items(&c, N, B)) return -1;
    c.wT = hb_malloc((size_t)(W * D) * sizeof(real));
    if (!c.wT) { free(c.boff); return -1; }
    transpose_taps(c.wT, w, D, W);
    hb_parallel_for(c.boff[c.NS], fwd_item, &c);
    free(c.wT);
    free(c.boff);
    return 0;
}

/* Backward of one (batch, time block [t0, t1)) item, full rows. Walks t = t0 … t1+W−2, keeping the
 * last W rows of dz in a ring: row t feeds the partial dw/db sums (t < t1), and once dz up to row t
 * is known, dx[τ] for τ = t − (W−1) is complete (rows past T contribute nothing). */
static void bwd_item(void *vctx, int64_t it) {
    const ctx_t *c = vctx;
    const item_t r = item_of(c, it);
    const int64_t b = r.b, t0 = r.t0, t1 = r.t1, start = r.start;
    const int64_t D = c->D, W = c->W, T = r.len;
    real *ring = c->scratch + it * W * D;
    real *part = c->part ? c->part + it * (W + 1) * D : NULL;
    if (part) memset(part, 0, (size_t)((W + 1) * D) * sizeof(real));
    const int64_t tend = t1 + W - 1 < T ? t1 + W - 1 : T; /* dz rows needed: [t0, tend) */
    for (int64_t t = t0; t < tend + W - 1; t++) {
        if (t < tend) { /* dz row t */
            real *dz = ring + (t % W) * D;
            const real *dy = c->dy + (start + t) * D;
            if (c->act) {
                preact(dz, c, b, start, t);
                for (int64_t k = 0; k < D; k++) {
                    const real s = 1 / (1 + kexp(-dz[k]));
                    dz[k] = dy[k] * s * (1 + dz[k] * (1 - s));
                }
            } else {
                memcpy(dz, dy, (size_t)D * sizeof(real));
            }
            if (part && t < t1) {
                for (int64_t i = 0; i < W; i++) {
                    const real *s = src_row(c, b, start, t - (W - 1) + i);
                    if (s) vaxpy(part + i * D, dz, s, D);
                }
                vadd(part + W * D, dz, D);
            }
        }
        const int64_t tau = t - (W - 1);
        if (c->dx && tau >= t0 && tau < t1) { /* dx[τ] += Σ_i wT[i] ⊙ dz[τ+(W−1)−i] */
            real *dx = c->dx + (start + tau) * D;
            for (int64_t i = W - 1; i >= 0; i--) {
                const int64_t td = tau + (W - 1) - i;
                if (td < T) vaxpy(dx, c->wT + i * D, ring + (td % W) * D, D);
            }
        }
    }
}

/* Sum the per-item partials of channels [c0, c0+CB) in item order (deterministic) into item 0's
 * slot, then add them to dw, db. */
static void reduce_item(void *vctx, int64_t blk) {
    const ctx_t *c = vctx;
    const int64_t W = c->W, D = c->D, c0 = blk * CB, n = D - c0 < CB ? D - c0 : CB, items = c->boff[c->NS];
    for (int64_t it = 1; it < items; it++)
        for (int64_t i = 0; i <= W; i++) vadd(c->part + i * D + c0, c->part + (it * (W + 1) + i) * D + c0, n);
    for (int64_t k = c0; k < c0 + n; k++) {
        if (c->dw)
            for (int64_t i = 0; i < W; i++) c->dw[k * W + i] += c->part[i * D + k];
        if (c->db) c->db[k] += c->part[W * D + k];
    }
}

static int bwd(real *dx, real *dw, real *db, const real *dy, const real *x, const real *w,
                   const real *b, int act, const real *cache_in, const int64_t *cu, int64_t N, int64_t B, int64_t T,
                   int64_t D, int64_t W) {
    if (bad_args(cu, N, B, T, D, W)) return -1;
    if ((!dx && !dw && !db) || B <= 0 || T <= 0 || D <= 0) return 0;
    ctx_t c = {.dx = dx, .dw = dw, .db = db, .dy = dy, .x = x, .w = w, .b = b, .act = act, .cache = cache_in,
               .cu = cu, .T = T, .D = D, .W = W};
    if (plan_items(&c, N, B)) return -1;
    const int64_t items = c.boff[c.NS], need_part = dw || db;
    c.wT = hb_malloc((size_t)(W * D + items * W * D + (need_part ? items * (W + 1) * D : 0)) * sizeof(real));
    if (!c.wT) { free(c.boff); return -1; }
    transpose_taps(c.wT, w, D, W);
    c.scratch = c.wT + W * D;
    c.part = need_part ? c.scratch + items * W * D : NULL;
    hb_parallel_for(items, bwd_item, &c);
    if (need_part && items > 0) hb_parallel_for((D + CB - 1) / CB, reduce_item, &c);
    free(c.wT);
    free(c.boff);
    return 0;
}

static int step(real *y, real *cache, const real *x, const real *w, const real *b, int act,
                    int64_t B, int64_t D, int64_t W) {
    if (W < 1) return -1;
    for (int64_t bb = 0; bb < B; bb++) {
        real *cb = cache + bb * (W - 1) * D, *yb = y + bb * D;
        const real *xb = x + bb * D;
        for (int64_t ch = 0; ch < D; ch++) {
            real z = b ? b[ch] : 0;
            for (int64_t i = 0; i < W - 1; i++) z += w[ch * W + i] * cb[i * D + ch];
            z += w[ch * W + W - 1] * xb[ch];
            yb[ch] = act ? z / (1 + kexp(-z)) : z;
        }
        if (W > 1) {
            memmove(cb, cb + D, (size_t)((W - 2) * D) * sizeof(real));
            memcpy(cb + (W - 2) * D, xb, (size_t)D * sizeof(real));
        }
    }
    return 0;
}

static int cache_from_seq(real *cache, const real *x, const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t D,
                          int64_t W) {
    if (bad_args(cu, N, B, T, D, W)) return -1;
    for (int64_t bb = 0; bb < hb_seq_count(cu, N, B); bb++) {
        const hb_seq_t s = hb_seq_get(cu, T, bb);
        for (int64_t j = 0; j < W - 1; j++) {
            const int64_t tau = s.len - (W - 1) + j;
            real *dst = cache + (bb * (W - 1) + j) * D;
            if (tau >= 0) memcpy(dst, x + (s.start + tau) * D, (size_t)D * sizeof(real));
            else memset(dst, 0, (size_t)D * sizeof(real));
        }
    }
    return 0;
}

/* ---- the exported names, written out (this file is compiled twice: kernels/kreal.h) ---------------- */
#ifdef HB_KERNEL_F64
int conv1d_fwd_f64(double *y, const double *x, const double *w, const double *b, int act, const double *cache_in,
                   const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D, int64_t W) {
    return fwd(y, x, w, b, act, cache_in, cu_seqlens, N, B, T, D, W);
}
int conv1d_bwd_f64(double *dx, double *dw, double *db, const double *dy, const double *x, const double *w,
                   const double *b, int act, const double *cache_in, const int64_t *cu_seqlens, int64_t N,
                   int64_t B, int64_t T, int64_t D, int64_t W) {
    return bwd(dx, dw, db, dy, x, w, b, act, cache_in, cu_seqlens, N, B, T, D, W);
}
int conv1d_step_f64(double *y, double *cache, const double *x, const double *w, const double *b, int act,
                    int64_t B, int64_t D, int64_t W) {
    return step(y, cache, x, w, b, act, B, D, W);
}
int conv1d_cache_from_seq_f64(double *cache, const double *x, const int64_t *cu_seqlens, int64_t N,
                              int64_t B, int64_t T, int64_t D, int64_t W) {
    return cache_from_seq(cache, x, cu_seqlens, N, B, T, D, W);
}
#else
int conv1d_fwd_f32(float *y, const float *x, const float *w, const float *b, int act, const float *cache_in,
                   const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D, int64_t W) {
    return fwd(y, x, w, b, act, cache_in, cu_seqlens, N, B, T, D, W);
}
int conv1d_bwd_f32(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                   const float *b, int act, const float *cache_in, const int64_t *cu_seqlens, int64_t N,
                   int64_t B, int64_t T, int64_t D, int64_t W) {
    return bwd(dx, dw, db, dy, x, w, b, act, cache_in, cu_seqlens, N, B, T, D, W);
}
int conv1d_step_f32(float *y, float *cache, const float *x, const float *w, const float *b, int act,
                    int64_t B, int64_t D, int64_t W) {
    return step(y, cache, x, w, b, act, B, D, W);
}
int conv1d_cache_from_seq_f32(float *cache, const float *x, const int64_t *cu_seqlens, int64_t N,
                              int64_t B, int64_t T, int64_t D, int64_t W) {
    return cache_from_seq(cache, x, cu_seqlens, N, B, T, D, W);
}
#endif
