/* conv1d.c — fla's ShortConvolution (spec §1.3): causal depthwise conv over time, optional SiLU.
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
#include <stdlib.h>
#include <string.h>

enum { TB = 64, CB = 256 };

typedef struct {
    real *y, *dx, *dw, *db;
    const real *x, *w, *b, *cache, *dy;
    int act;
    int64_t B, T, D, W, NT; /* NT = number of time blocks per sequence */
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

/* Row τ of sequence b: x, the cache for τ < 0, or NULL (zeros). */
static const real *src_row(const ctx_t *c, int64_t b, int64_t tau) {
    if (tau >= 0) return c->x + (b * c->T + tau) * c->D;
    if (!c->cache) return NULL;
    return c->cache + (b * (c->W - 1) + (c->W - 1) + tau) * c->D;
}

/* z = b + Σ_i wT[i] ⊙ x[t−(W−1)+i] (one row of D channels). */
static void preact(real *z, const ctx_t *c, int64_t b, int64_t t) {
    for (int64_t k = 0; k < c->D; k++) z[k] = c->b ? c->b[k] : 0;
    for (int64_t i = 0; i < c->W; i++) {
        const real *s = src_row(c, b, t - (c->W - 1) + i);
        if (s) vaxpy(z, c->wT + i * c->D, s, c->D);
    }
}

static void fwd_item(void *vctx, int64_t it) {
    const ctx_t *c = vctx;
    const int64_t b = it / c->NT, t0 = (it % c->NT) * TB, t1 = t0 + TB < c->T ? t0 + TB : c->T, D = c->D;
    for (int64_t t = t0; t < t1; t++) {
        real *y = c->y + (b * c->T + t) * D;
        preact(y, c, b, t);
        if (c->act)
            for (int64_t k = 0; k < D; k++) y[k] = y[k] / (1 + kexp(-y[k]));
    }
}

/* Fill wT (W,D) from w (D,W). */
static void transpose_taps(real *wT, const real *w, int64_t D, int64_t W) {
    for (int64_t c = 0; c < D; c++)
        for (int64_t i = 0; i < W; i++) wT[i * D + c] = w[c * W + i];
}

static int fwd(real *y, const real *x, const real *w, const real *b, int act, const real *cache_in,
                   int64_t B, int64_t T, int64_t D, int64_t W) {
    if (W < 1) return -1;
    if (B <= 0 || T <= 0 || D <= 0) return 0;
    ctx_t c = {.y = y, .x = x, .w = w, .b = b, .act = act, .cache = cache_in, .B = B, .T = T, .D = D, .W = W,
               .NT = (T + TB - 1) / TB};
    c.wT = hb_malloc((size_t)(W * D) * sizeof(real));
    if (!c.wT) return -1;
    transpose_taps(c.wT, w, D, W);
    hb_parallel_for(B * c.NT, fwd_item, &c);
    free(c.wT);
    return 0;
}

/* Backward of one (batch, time block [t0, t1)) item, full rows. Walks t = t0 … t1+W−2, keeping the
 * last W rows of dz in a ring: row t feeds the partial dw/db sums (t < t1), and once dz up to row t
 * is known, dx[τ] for τ = t − (W−1) is complete (rows past T contribute nothing). */
static void bwd_item(void *vctx, int64_t it) {
    const ctx_t *c = vctx;
    const int64_t b = it / c->NT, t0 = (it % c->NT) * TB, t1 = t0 + TB < c->T ? t0 + TB : c->T;
    const int64_t D = c->D, W = c->W, T = c->T;
    real *ring = c->scratch + it * W * D;
    real *part = c->part ? c->part + it * (W + 1) * D : NULL;
    if (part) memset(part, 0, (size_t)((W + 1) * D) * sizeof(real));
    const int64_t tend = t1 + W - 1 < T ? t1 + W - 1 : T; /* dz rows needed: [t0, tend) */
    for (int64_t t = t0; t < tend + W - 1; t++) {
        if (t < tend) { /* dz row t */
            real *dz = ring + (t % W) * D;
            const real *dy = c->dy + (b * T + t) * D;
            if (c->act) {
                preact(dz, c, b, t);
                for (int64_t k = 0; k < D; k++) {
                    const real s = 1 / (1 + kexp(-dz[k]));
                    dz[k] = dy[k] * s * (1 + dz[k] * (1 - s));
                }
            } else {
                memcpy(dz, dy, (size_t)D * sizeof(real));
            }
            if (part && t < t1) {
                for (int64_t i = 0; i < W; i++) {
                    const real *s = src_row(c, b, t - (W - 1) + i);
                    if (s) vaxpy(part + i * D, dz, s, D);
                }
                vadd(part + W * D, dz, D);
            }
        }
        const int64_t tau = t - (W - 1);
        if (c->dx && tau >= t0 && tau < t1) { /* dx[τ] += Σ_i wT[i] ⊙ dz[τ+(W−1)−i] */
            real *dx = c->dx + (b * T + tau) * D;
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
    const int64_t W = c->W, D = c->D, c0 = blk * CB, n = D - c0 < CB ? D - c0 : CB, items = c->B * c->NT;
    for (int64_t it = 1; it < items; it++)
        for (int64_t i = 0; i <= W; i++) vadd(c->part + i * D + c0, c->part + (it * (W + 1) + i) * D + c0, n);
    for (int64_t k = c0; k < c0 + n; k++) {
        if (c->dw)
            for (int64_t i = 0; i < W; i++) c->dw[k * W + i] += c->part[i * D + k];
        if (c->db) c->db[k] += c->part[W * D + k];
    }
}

static int bwd(real *dx, real *dw, real *db, const real *dy, const real *x, const real *w,
                   const real *b, int act, const real *cache_in, int64_t B, int64_t T, int64_t D, int64_t W) {
    if (W < 1) return -1;
    if ((!dx && !dw && !db) || B <= 0 || T <= 0 || D <= 0) return 0;
    ctx_t c = {.dx = dx, .dw = dw, .db = db, .dy = dy, .x = x, .w = w, .b = b, .act = act, .cache = cache_in,
               .B = B, .T = T, .D = D, .W = W, .NT = (T + TB - 1) / TB};
    const int64_t items = B * c.NT, need_part = dw || db;
    c.wT = hb_malloc((size_t)(W * D + items * W * D + (need_part ? items * (W + 1) * D : 0)) * sizeof(real));
    if (!c.wT) return -1;
    transpose_taps(c.wT, w, D, W);
    c.scratch = c.wT + W * D;
    c.part = need_part ? c.scratch + items * W * D : NULL;
    hb_parallel_for(items, bwd_item, &c);
    if (need_part) hb_parallel_for((D + CB - 1) / CB, reduce_item, &c);
    free(c.wT);
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

static int cache_from_seq(real *cache, const real *x, int64_t B, int64_t T, int64_t D, int64_t W) {
    if (W < 1) return -1;
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t j = 0; j < W - 1; j++) {
            const int64_t tau = T - (W - 1) + j;
            real *dst = cache + (bb * (W - 1) + j) * D;
            if (tau >= 0) memcpy(dst, x + (bb * T + tau) * D, (size_t)D * sizeof(real));
            else memset(dst, 0, (size_t)D * sizeof(real));
        }
    return 0;
}

/* ---- the exported names, written out (this file is compiled twice: kernels/kreal.h) ---------------- */
#ifdef HB_KERNEL_F64
int conv1d_fwd_f64(double *y, const double *x, const double *w, const double *b, int act,
                   const double *cache_in, int64_t B, int64_t T, int64_t D, int64_t W) {
    return fwd(y, x, w, b, act, cache_in, B, T, D, W);
}
int conv1d_bwd_f64(double *dx, double *dw, double *db, const double *dy, const double *x, const double *w,
                   const double *b, int act, const double *cache_in, int64_t B, int64_t T, int64_t D,
                   int64_t W) {
    return bwd(dx, dw, db, dy, x, w, b, act, cache_in, B, T, D, W);
}
int conv1d_step_f64(double *y, double *cache, const double *x, const double *w, const double *b, int act,
                    int64_t B, int64_t D, int64_t W) {
    return step(y, cache, x, w, b, act, B, D, W);
}
int conv1d_cache_from_seq_f64(double *cache, const double *x, int64_t B, int64_t T, int64_t D, int64_t W) {
    return cache_from_seq(cache, x, B, T, D, W);
}
#else
int conv1d_fwd_f32(float *y, const float *x, const float *w, const float *b, int act, const float *cache_in,
                   int64_t B, int64_t T, int64_t D, int64_t W) {
    return fwd(y, x, w, b, act, cache_in, B, T, D, W);
}
int conv1d_bwd_f32(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                   const float *b, int act, const float *cache_in, int64_t B, int64_t T, int64_t D,
                   int64_t W) {
    return bwd(dx, dw, db, dy, x, w, b, act, cache_in, B, T, D, W);
}
int conv1d_step_f32(float *y, float *cache, const float *x, const float *w, const float *b, int act,
                    int64_t B, int64_t D, int64_t W) {
    return step(y, cache, x, w, b, act, B, D, W);
}
int conv1d_cache_from_seq_f32(float *cache, const float *x, int64_t B, int64_t T, int64_t D, int64_t W) {
    return cache_from_seq(cache, x, B, T, D, W);
}
#endif
