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
 * innermost (stride 1, vectorisable) over a transposed copy of the taps wT (W,D). The forward is
 * split over (batch, block of TB time steps); the backward over blocks of CB channels, each item
 * owning its channels across all batches and times, so dw/db are reduced race-free in a fixed order
 * (results do not depend on the thread count). The single summation order b + w_0 x_0 + … + w_{W−1} x_{W−1}
 * is shared by the forward, the backward's recomputation and the decode step.
 */
#include "kreal.h"
#include "parallel.h"
#include "conv1d.h"
#include <stdlib.h>
#include <string.h>

enum { TB = 64, CB = 64 };

typedef struct {
    real *y, *dx, *dw, *db;
    const real *x, *w, *b, *cache, *dy;
    int act;
    int64_t B, T, D, W;
    real *wT;  /* (W,D) transposed taps */
    real *dz;  /* backward with silu: (T,D) laid out per channel block as (T,cb) */
    real *acc; /* backward: (W+1,D) laid out per channel block as (W+1,cb) */
} ctx_t;

/* Row τ of sequence b restricted to channels [c0, …): x, the cache for τ < 0, or NULL (zeros). */
static const real *src_row(const ctx_t *c, int64_t b, int64_t tau, int64_t c0) {
    if (tau >= 0) return c->x + (b * c->T + tau) * c->D + c0;
    if (!c->cache) return NULL;
    return c->cache + (b * (c->W - 1) + (c->W - 1) + tau) * c->D + c0;
}

/* z[k] = b + Σ_i wT[i] x[t−(W−1)+i] for channels c0 … c0+n−1. */
static void preact(real *z, const ctx_t *c, int64_t b, int64_t t, int64_t c0, int64_t n) {
    for (int64_t k = 0; k < n; k++) z[k] = c->b ? c->b[c0 + k] : 0;
    for (int64_t i = 0; i < c->W; i++) {
        const real *s = src_row(c, b, t - (c->W - 1) + i, c0), *wi = c->wT + i * c->D + c0;
        if (!s) continue;
        for (int64_t k = 0; k < n; k++) z[k] += wi[k] * s[k];
    }
}

static void fwd_item(void *vctx, int64_t it) {
    const ctx_t *c = vctx;
    const int64_t nblk = (c->T + TB - 1) / TB, b = it / nblk, t0 = (it % nblk) * TB;
    const int64_t t1 = t0 + TB < c->T ? t0 + TB : c->T, D = c->D;
    for (int64_t t = t0; t < t1; t++) {
        real *y = c->y + (b * c->T + t) * D;
        preact(y, c, b, t, 0, D);
        if (c->act)
            for (int64_t k = 0; k < D; k++) y[k] = y[k] / (1 + kexp(-y[k]));
    }
}

static real *transpose_taps(const real *w, int64_t D, int64_t W) {
    real *wT = malloc((size_t)(W * D) * sizeof(real));
    if (!wT) return NULL;
    for (int64_t c = 0; c < D; c++)
        for (int64_t i = 0; i < W; i++) wT[i * D + c] = w[c * W + i];
    return wT;
}

int KN(conv1d_fwd)(real *y, const real *x, const real *w, const real *b, int act, const real *cache_in,
                   int64_t B, int64_t T, int64_t D, int64_t W) {
    if (W < 1) return -1;
    if (B <= 0 || T <= 0 || D <= 0) return 0;
    ctx_t c = {.y = y, .x = x, .w = w, .b = b, .act = act, .cache = cache_in, .B = B, .T = T, .D = D, .W = W};
    c.wT = transpose_taps(w, D, W);
    if (!c.wT) return -1;
    hb_parallel_for(B * ((T + TB - 1) / TB), fwd_item, &c);
    free(c.wT);
    return 0;
}

/* One block of channels [c0, c0+n) over all batches and times. */
static void bwd_item(void *vctx, int64_t it) {
    const ctx_t *c = vctx;
    const int64_t c0 = it * CB, n = c->D - c0 < CB ? c->D - c0 : CB, T = c->T, D = c->D, W = c->W;
    real *dzb = c->dz ? c->dz + T * c0 : NULL; /* (T, n) */
    real *acc = c->acc + (W + 1) * c0;         /* (W+1, n): dw taps, then db */
    real tmp[CB];
    for (int64_t k = 0; k < (W + 1) * n; k++) acc[k] = 0;
    for (int64_t b = 0; b < c->B; b++) {
        /* dz for this sequence: dy itself (identity) or dy · silu'(z) */
        const real *dz = c->dy + b * T * D + c0;
        int64_t ldz = D;
        if (c->act) {
            for (int64_t t = 0; t < T; t++) {
                real *zt = dzb + t * n;
                const real *dyt = c->dy + (b * T + t) * D + c0;
                preact(zt, c, b, t, c0, n);
                for (int64_t k = 0; k < n; k++) {
                    const real s = 1 / (1 + kexp(-zt[k]));
                    zt[k] = dyt[k] * s * (1 + zt[k] * (1 - s));
                }
            }
            dz = dzb, ldz = n;
        }
        if (c->dx) {
            for (int64_t tau = 0; tau < T; tau++) {
                for (int64_t k = 0; k < n; k++) tmp[k] = 0;
                for (int64_t i = 0; i < W; i++) {
                    const int64_t t = tau + (W - 1) - i;
                    if (t >= T) continue;
                    const real *wi = c->wT + i * D + c0, *dzt = dz + t * ldz;
                    for (int64_t k = 0; k < n; k++) tmp[k] += wi[k] * dzt[k];
                }
                real *dxt = c->dx + (b * T + tau) * D + c0;
                for (int64_t k = 0; k < n; k++) dxt[k] += tmp[k];
            }
        }
        if (c->dw || c->db) {
            for (int64_t t = 0; t < T; t++) {
                const real *dzt = dz + t * ldz;
                for (int64_t i = 0; i < W; i++) {
                    const real *s = src_row(c, b, t - (W - 1) + i, c0);
                    if (!s) continue;
                    real *ai = acc + i * n;
                    for (int64_t k = 0; k < n; k++) ai[k] += dzt[k] * s[k];
                }
                real *ab = acc + W * n;
                for (int64_t k = 0; k < n; k++) ab[k] += dzt[k];
            }
        }
    }
    for (int64_t k = 0; k < n; k++) {
        if (c->dw)
            for (int64_t i = 0; i < W; i++) c->dw[(c0 + k) * W + i] += acc[i * n + k];
        if (c->db) c->db[c0 + k] += acc[W * n + k];
    }
}

int KN(conv1d_bwd)(real *dx, real *dw, real *db, const real *dy, const real *x, const real *w,
                   const real *b, int act, const real *cache_in, int64_t B, int64_t T, int64_t D, int64_t W) {
    if (W < 1) return -1;
    if ((!dx && !dw && !db) || B <= 0 || T <= 0 || D <= 0) return 0;
    ctx_t c = {.dx = dx, .dw = dw, .db = db, .dy = dy, .x = x, .w = w, .b = b, .act = act, .cache = cache_in,
               .B = B, .T = T, .D = D, .W = W};
    const int64_t n_scratch = W * D + (W + 1) * D + (act ? T * D : 0);
    c.wT = malloc((size_t)n_scratch * sizeof(real));
    if (!c.wT) return -1;
    for (int64_t ch = 0; ch < D; ch++)
        for (int64_t i = 0; i < W; i++) c.wT[i * D + ch] = w[ch * W + i];
    c.acc = c.wT + W * D;
    c.dz = act ? c.acc + (W + 1) * D : NULL;
    hb_parallel_for((D + CB - 1) / CB, bwd_item, &c);
    free(c.wT);
    return 0;
}

int KN(conv1d_step)(real *y, real *cache, const real *x, const real *w, const real *b, int act,
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

int KN(conv1d_cache_from_seq)(real *cache, const real *x, int64_t B, int64_t T, int64_t D, int64_t W) {
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
