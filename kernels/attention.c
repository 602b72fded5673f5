/* attention.c — causal softmax attention (flash-attn contract,
 * docs/mixers.md#softmax-attention) and rotary embeddings.
 *
 * Shape letters: B batch, T time, H query heads, Hkv kv heads (H = G*Hkv, G = group size), D head
 * dim, `tile` the flash tile edge (queries and keys; callers use 64), w the sliding window (0 = none).
 * Layout (B,T,H,D) row-major, so the rows of one head are D-vectors with stride H*D (Hkv*D for k,v):
 * every tile product below is a kgemm with leading dimension H*D / Hkv*D, no copies.
 *
 * Maths, for query head h at time t with kv head h' = h/G and allowed keys
 *   A(t) = { tau : tau <= t  and (w == 0 or tau >= t-(w-1)) }:
 *   s[t,tau] = scale * q[t,h] . k[tau,h']
 *   lse[h,t] = log sum_{tau in A(t)} exp s[t,tau]
 *   P[t,tau] = exp(s[t,tau] - lse[h,t])          o[t,h] = sum_tau P[t,tau] v[tau,h']
 * Backward (dO = dL/do):
 *   dv[tau,h'] += sum_{h in group} sum_t P[t,tau] dO[t,h]
 *   dP[t,tau]   = dO[t,h] . v[tau,h'],   Delta[t] = dO[t,h] . o[t,h]   (= sum_tau P dP)
 *   dS[t,tau]   = P[t,tau] (dP[t,tau] - Delta[t])
 *   dq[t,h]    += scale sum_tau dS k[tau,h'],     dk[tau,h'] += scale sum_{h,t} dS q[t,h]
 *
 * Tiled forward (FlashAttention): for each query tile Q_i (tile rows) keep a running row max m,
 * row sum l and unnormalised accumulator acc (tile x D); for each key tile K_j that intersects the
 * allowed band: S = scale Q_i K_j^T (kgemm), m' = max(m, rowmax S), P = exp(S - m') (masked -> 0),
 * l = l e^{m-m'} + rowsum P, acc = acc e^{m-m'} + P V_j (kgemm). At the end o = acc/l and
 * lse = m + log l. Key tiles outside the causal/window band are never visited.
 * Tiled backward (FlashAttention-2): recompute S and P = exp(S - lse) per (query tile, key tile),
 * then dV_j += P^T dO_i, dP = dO_i V_j^T, dS = P o (dP - Delta_i), dQ_i += scale dS K_j,
 * dK_j += scale dS^T Q_i — five kgemm calls, all accumulating straight into the caller's buffers.
 * A work item owns (b, kv head) and loops over the G query heads of its group, so no two items
 * ever touch the same gradient row and the summation order is fixed (deterministic).
 *
 * Sequences (kernels/seqs.h): a work item's "b" is a row, or with cu_seqlens a packed document whose
 * tokens are rows st .. st + len − 1 of the flattened axis: its queries see only its own keys (block-
 * diagonal causal attention) and a sliding window restarts at its first token. lse keeps its (B,H,T)
 * layout (lse_at).
 *
 * RoPE (GPT-NeoX rotate-half, rotary dim = D): inv_freq[j] = 1/theta^(2j/D), a = (pos0+t)*inv_freq[j],
 *   y[j] = x[j] cos a - x[j+D/2] sin a,   y[j+D/2] = x[j] sin a + x[j+D/2] cos a   (j < D/2),
 * computed in `real` (fp32 for the _f32 kernels, as fla does). The backward applies the transpose.
 *
 * Compiled twice (kreal.h): float -> *_f32, -DHB_KERNEL_F64 -> *_f64.
 */
#include "kreal.h"
#include "alloc.h"
#include "kmath.h"
#include "attention.h"
#include "parallel.h"
#include "seqs.h"
#include <stdlib.h>
#include <string.h>

#ifdef HB_KERNEL_F64
#define kpow pow
#define kcos cos
#define ksin sin
#else
#define kpow powf
#define kcos cosf
#define ksin sinf
#endif

/* Row helpers. They walk rows in blocks of 8 with a constant inner trip count so that GCC -O2
 * and clang vectorise them without -ffast-math; the scalar tail handles n % 8. */

#ifdef HB_KERNEL_F64
/* The f64 kernels are the checking path: plain libm exp. */
static real exp_core(real x) { return exp(x); }
#else
/* exp(x) in float within 1 ulp for -87 <= x <= 88 (Cephes expf polynomial, Cody-Waite reduction),
 * branch-free so that it vectorises: about 3x faster than a libm expf call per element, which
 * matters because the flash loops evaluate T*T/2 exponentials per head. Arguments below -87
 * (including -inf) are clamped to -87 (result 1.6e-38 instead of a smaller number or 0), above 88
 * to 88: callers only pass x <= ~0 whose result joins a sum >= 1, and write exact zeros for
 * masked keys. */
static inline float exp_core(float x) { return hb_expf(x); }
#endif

/* x[j] = exp(x[j] - m) for j < n; returns the sum of the new x (8 partial sums, fixed order). */
static real exp_shift_sum(real *x, int64_t n, real m) {
    real acc[8] = {0}, s = 0;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        real *xj = x + j;
        for (int u = 0; u < 8; u++) {
            xj[u] = exp_core(xj[u] - m);
            acc[u] += xj[u];
        }
    }
    for (; j < n; j++) {
        x[j] = exp_core(x[j] - m);
        s += x[j];
    }
    for (int u = 0; u < 8; u++) s += acc[u];
    return s;
}

/* ds[j] = p[j] * (ds[j] - delta) */
static void ds_row(real *ds, const real *p, real delta, int64_t n) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++) ds[j + u] = p[j + u] * (ds[j + u] - delta);
    for (; j < n; j++) ds[j] = p[j] * (ds[j] - delta);
}

/* x[j] *= a */
static void scale_row(real *x, real a, int64_t n) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++) x[j + u] *= a;
    for (; j < n; j++) x[j] *= a;
}

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* Shared argument check: positive dims, H a multiple of Hkv, window >= 0. */
static int bad_dims(int64_t window, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D) {
    return B < 0 || T < 0 || H < 1 || Hkv < 1 || D < 1 || window < 0 || H % Hkv != 0;
}

/* First allowed key of query t (the last one is t itself). */
static int64_t first_key(int64_t t, int64_t window) {
    return window > 0 ? imax(0, t - (window - 1)) : 0;
}

static real dot(const real *a, const real *b, int64_t n) {
    real s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * Naive reference: one query row at a time, scores in a length-T scratch row.
 */
/* Index in lse (B,H,T) of head h at token f of the flattened (B·T) token axis. */
static int64_t lse_at(int64_t T, int64_t H, int64_t h, int64_t f) { return ((f / T) * H + h) * T + f % T; }

static int fwd_ref(real *o, real *lse, const real *q, const real *k, const real *v, real scale,
                     int64_t window, const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                     int64_t D) {
    if (!o || !q || !k || !v || bad_dims(window, B, T, H, Hkv, D) || hb_seqs_check(cu, N, B, T)) return -1;
    if (B == 0 || T == 0) return 0;
    real *p = hb_malloc((size_t)T * sizeof(real));
    if (!p) return -1;
    int64_t G = H / Hkv;
    for (int64_t b = 0; b < hb_seq_count(cu, N, B); b++) {
        const hb_seq_t sq = hb_seq_get(cu, T, b);
        const int64_t st = sq.start;
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < sq.len; t++) {
                const real *qt = q + ((st + t) * H + h) * D;
                int64_t lo = first_key(t, window);
                real m = -INFINITY, sum = 0;
                for (int64_t s = lo; s <= t; s++) {
                    p[s] = scale * dot(qt, k + ((st + s) * Hkv + h / G) * D, D);
                    if (p[s] > m) m = p[s];
                }
                for (int64_t s = lo; s <= t; s++) {
                    p[s] = kexp(p[s] - m);
                    sum += p[s];
                }
                real *ot = o + ((st + t) * H + h) * D;
                for (int64_t d = 0; d < D; d++) ot[d] = 0;
                for (int64_t s = lo; s <= t; s++) {
                    const real *vs = v + ((st + s) * Hkv + h / G) * D;
                    for (int64_t d = 0; d < D; d++) ot[d] += p[s] * vs[d];
                }
                for (int64_t d = 0; d < D; d++) ot[d] /= sum;
                if (lse) lse[lse_at(T, H, h, st + t)] = m + klog(sum);
            }
    }
    free(p);
    return 0;
}

static int bwd_ref(real *dq, real *dk, real *dv, const real *q, const real *k, const real *v,
                     const real *dout, real scale, int64_t window, const int64_t *cu, int64_t N, int64_t B,
                     int64_t T, int64_t H, int64_t Hkv, int64_t D) {
    if (!q || !k || !v || !dout || bad_dims(window, B, T, H, Hkv, D) || hb_seqs_check(cu, N, B, T)) return -1;
    if (B == 0 || T == 0 || (!dq && !dk && !dv)) return 0;
    real *p = hb_malloc((size_t)(2 * T) * sizeof(real));
    if (!p) return -1;
    real *dp = p + T;
    int64_t G = H / Hkv;
    for (int64_t b = 0; b < hb_seq_count(cu, N, B); b++) {
        const hb_seq_t sq = hb_seq_get(cu, T, b);
        const int64_t st = sq.start;
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < sq.len; t++) {
                const real *qt = q + ((st + t) * H + h) * D;
                const real *dot_ = dout + ((st + t) * H + h) * D;
                int64_t lo = first_key(t, window);
                real m = -INFINITY, sum = 0, pdp = 0;
                for (int64_t s = lo; s <= t; s++) {
                    p[s] = scale * dot(qt, k + ((st + s) * Hkv + h / G) * D, D);
                    if (p[s] > m) m = p[s];
                }
                for (int64_t s = lo; s <= t; s++) {
                    p[s] = kexp(p[s] - m);
                    sum += p[s];
                }
                for (int64_t s = lo; s <= t; s++) {
                    p[s] /= sum;
                    dp[s] = dot(dot_, v + ((st + s) * Hkv + h / G) * D, D);
                    pdp += p[s] * dp[s];
                }
                for (int64_t s = lo; s <= t; s++) {
                    real ds = p[s] * (dp[s] - pdp) * scale;
                    int64_t kv = ((st + s) * Hkv + h / G) * D;
                    for (int64_t d = 0; d < D; d++) {
                        if (dq) dq[((st + t) * H + h) * D + d] += ds * k[kv + d];
                        if (dk) dk[kv + d] += ds * qt[d];
                        if (dv) dv[kv + d] += p[s] * dot_[d];
                    }
                }
            }
    }
    free(p);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Tiled forward. Work item = (b, h); scratch per item: S (tile x tile), acc (tile x D), m, l.
 */
typedef struct {
    real *o, *lse;
    const real *q, *k, *v;
    real scale;
    int64_t window, T, H, Hkv, D, tile;
    real *scratch;
    const int64_t *cu; /* cu_seqlens or NULL */
} fwd_ctx;

static void fwd_item(void *vctx, int64_t item) {
    const fwd_ctx *c = vctx;
    int64_t H = c->H, Hkv = c->Hkv, D = c->D, tile = c->tile, w = c->window;
    int64_t b = item / H, h = item % H, hk = h / (H / Hkv);
    const hb_seq_t sq = hb_seq_get(c->cu, c->T, b);
    const int64_t T = sq.len, st = sq.start; /* this sequence's tokens: rows st .. st + T − 1 */
    int64_t ldq = H * D, ldk = Hkv * D;
    real *S = c->scratch + item * (tile * tile + tile * D + 2 * tile);
    real *acc = S + tile * tile, *m = acc + tile * D, *l = m + tile;

    for (int64_t t0 = 0; t0 < T; t0 += tile) {
        int64_t bq = imin(tile, T - t0);
        const real *Q = c->q + ((st + t0) * H + h) * D;
        for (int64_t i = 0; i < bq; i++) {
            m[i] = -INFINITY;
            l[i] = 0;
        }
        memset(acc, 0, (size_t)(bq * D) * sizeof(real));
        int64_t s_hi = t0 + bq - 1;
        for (int64_t s0 = first_key(t0, w); s0 <= s_hi; s0 += tile) {
            int64_t bk = imin(tile, s_hi + 1 - s0);
            const real *K = c->k + ((st + s0) * Hkv + hk) * D;
            const real *V = c->v + ((st + s0) * Hkv + hk) * D;
            kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)bq, (int)bk, (int)D, c->scale, Q,
                  (int)ldq, K, (int)ldk, 0, S, (int)bk);
            for (int64_t i = 0; i < bq; i++) {
                int64_t t = t0 + i;
                int64_t c0 = imax(s0, first_key(t, w)) - s0, c1 = imin(s0 + bk - 1, t) - s0;
                real *row = S + i * bk;
                if (c0 > c1) { /* no allowed key of this row in this tile */
                    memset(row, 0, (size_t)bk * sizeof(real));
                    continue;
                }
                real mx = row[c0];
                for (int64_t j = c0 + 1; j <= c1; j++)
                    if (row[j] > mx) mx = row[j];
                real mnew = m[i] > mx ? m[i] : mx;
                real alpha = kexp(m[i] - mnew); /* exact 0 on the first visit (m = -inf) */
                for (int64_t j = 0; j < c0; j++) row[j] = 0;
                real sum = exp_shift_sum(row + c0, c1 - c0 + 1, mnew);
                for (int64_t j = c1 + 1; j < bk; j++) row[j] = 0;
                l[i] = l[i] * alpha + sum;
                m[i] = mnew;
                if (alpha != 1) scale_row(acc + i * D, alpha, D);
            }
            kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)bq, (int)D, (int)bk, 1, S,
                  (int)bk, V, (int)ldk, 1, acc, (int)D);
        }
        for (int64_t i = 0; i < bq; i++) {
            real *ot = c->o + ((st + t0 + i) * H + h) * D, inv = 1 / l[i];
            for (int64_t d = 0; d < D; d++) ot[d] = acc[i * D + d] * inv;
            if (c->lse) c->lse[lse_at(c->T, H, h, st + t0 + i)] = m[i] + klog(l[i]);
        }
    }
}

static int fwd(real *o, real *lse, const real *q, const real *k, const real *v, real scale,
                 int64_t window, const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                 int64_t D, int64_t tile) {
    if (!o || !q || !k || !v || tile < 1 || bad_dims(window, B, T, H, Hkv, D) || hb_seqs_check(cu, N, B, T))
        return -1;
    if (B == 0 || T == 0) return 0;
    const int64_t NS = hb_seq_count(cu, N, B), maxlen = hb_seq_maxlen(cu, N, T);
    tile = imin(tile, maxlen > 0 ? maxlen : 1);
    real *scratch = hb_malloc((size_t)(NS * H * (tile * tile + tile * D + 2 * tile)) * sizeof(real));
    if (!scratch) return -1;
    fwd_ctx c = {o, lse, q, k, v, scale, window, T, H, Hkv, D, tile, scratch, cu};
    hb_parallel_for(NS * H, fwd_item, &c);
    free(scratch);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Tiled backward. Work item = (b, kv head); scratch per item: P, dS (tile x tile), Delta (tile).
 */
typedef struct {
    real *dq, *dk, *dv;
    const real *q, *k, *v, *o, *lse, *dout;
    real scale;
    int64_t window, T, H, Hkv, D, tile;
    real *scratch;
    const int64_t *cu; /* cu_seqlens or NULL */
} bwd_ctx;

static void bwd_item(void *vctx, int64_t item) {
    const bwd_ctx *c = vctx;
    int64_t H = c->H, Hkv = c->Hkv, D = c->D, tile = c->tile, w = c->window;
    int64_t G = H / Hkv, b = item / Hkv, hk = item % Hkv;
    const hb_seq_t sq = hb_seq_get(c->cu, c->T, b);
    const int64_t T = sq.len, st = sq.start; /* this sequence's tokens: rows st .. st + T − 1 */
    int64_t ldq = H * D, ldk = Hkv * D;
    real *P = c->scratch + item * (2 * tile * tile + tile);
    real *dS = P + tile * tile, *delta = dS + tile * tile;
    int need_ds = c->dq || c->dk;

    for (int64_t h = hk * G; h < (hk + 1) * G; h++)
        for (int64_t t0 = 0; t0 < T; t0 += tile) {
            int64_t bq = imin(tile, T - t0);
            int64_t qoff = ((st + t0) * H + h) * D;
            const real *Q = c->q + qoff, *dO = c->dout + qoff, *lse = c->lse + lse_at(c->T, H, h, st + t0);
            for (int64_t i = 0; i < bq; i++) delta[i] = dot(dO + i * ldq, c->o + qoff + i * ldq, D);
            int64_t s_hi = t0 + bq - 1;
            for (int64_t s0 = first_key(t0, w); s0 <= s_hi; s0 += tile) {
                int64_t bk = imin(tile, s_hi + 1 - s0);
                int64_t koff = ((st + s0) * Hkv + hk) * D;
                const real *K = c->k + koff, *V = c->v + koff;
                kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)bq, (int)bk, (int)D, c->scale,
                      Q, (int)ldq, K, (int)ldk, 0, P, (int)bk);
                for (int64_t i = 0; i < bq; i++) {
                    int64_t t = t0 + i;
                    int64_t c0 = imax(s0, first_key(t, w)) - s0, c1 = imin(s0 + bk - 1, t) - s0;
                    real *row = P + i * bk;
                    if (c0 > c1) {
                        memset(row, 0, (size_t)bk * sizeof(real));
                        continue;
                    }
                    for (int64_t j = 0; j < c0; j++) row[j] = 0;
                    exp_shift_sum(row + c0, c1 - c0 + 1, lse[i]);
                    for (int64_t j = c1 + 1; j < bk; j++) row[j] = 0;
                }
                if (c->dv)
                    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)bk, (int)D, (int)bq, 1, P,
                          (int)bk, dO, (int)ldq, 1, c->dv + koff, (int)ldk);
                if (!need_ds) continue;
                kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)bq, (int)bk, (int)D, 1, dO,
                      (int)ldq, V, (int)ldk, 0, dS, (int)bk);
                for (int64_t i = 0; i < bq; i++) ds_row(dS + i * bk, P + i * bk, delta[i], bk);
                if (c->dq)
                    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)bq, (int)D, (int)bk,
                          c->scale, dS, (int)bk, K, (int)ldk, 1, c->dq + qoff, (int)ldq);
                if (c->dk)
                    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)bk, (int)D, (int)bq,
                          c->scale, dS, (int)bk, Q, (int)ldq, 1, c->dk + koff, (int)ldk);
            }
        }
}

static int bwd(real *dq, real *dk, real *dv, const real *q, const real *k, const real *v,
                 const real *o, const real *lse, const real *dout, real scale, int64_t window,
                 const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                 int64_t tile) {
    if (!q || !k || !v || !o || !lse || !dout || tile < 1 || bad_dims(window, B, T, H, Hkv, D) ||
        hb_seqs_check(cu, N, B, T))
        return -1;
    if (B == 0 || T == 0 || (!dq && !dk && !dv)) return 0;
    const int64_t NS = hb_seq_count(cu, N, B), maxlen = hb_seq_maxlen(cu, N, T);
    tile = imin(tile, maxlen > 0 ? maxlen : 1);
    real *scratch = hb_malloc((size_t)(NS * Hkv * (2 * tile * tile + tile)) * sizeof(real));
    if (!scratch) return -1;
    bwd_ctx c = {dq, dk, dv, q, k, v, o, lse, dout, scale, window, T, H, Hkv, D, tile, scratch, cu};
    hb_parallel_for(NS * Hkv, bwd_item, &c);
    free(scratch);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Decode step. Work item = (b, kv head): the G query rows of the group form one G x n score block.
 * Position p lives in cache slot p mod Tmax: with pos < Tmax that is slot p (a cache that grows), and a
 * sliding window of at most Tmax keys turns the cache into a ring of the last Tmax positions. The n
 * attended keys are then one run of slots or two (the end of the ring, then its start); both are
 * visited in position order, so scores, softmax and the weighted sum are those of the plain cache.
 */
typedef struct {
    real *o;
    const real *q, *kc, *vc;
    real scale;
    int64_t s0, n1, n, Tmax, H, Hkv, D;   /* first slot, keys in the first run, keys in all */
    real *scratch;
} dec_ctx;

static void dec_item(void *vctx, int64_t item) {
    const dec_ctx *c = vctx;
    int64_t H = c->H, Hkv = c->Hkv, D = c->D, n = c->n, n1 = c->n1, n2 = n - n1, G = H / Hkv;
    int64_t b = item / Hkv, hk = item % Hkv, ldk = Hkv * D;
    real *S = c->scratch + item * G * n;
    int64_t qoff = (b * H + hk * G) * D, koff = ((b * c->Tmax + c->s0) * Hkv + hk) * D,
            k0off = (b * c->Tmax * Hkv + hk) * D;   /* slot 0: where the second run starts */
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)G, (int)n1, (int)D, c->scale, c->q + qoff,
          (int)D, c->kc + koff, (int)ldk, 0, S, (int)n);
    if (n2)
        kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)G, (int)n2, (int)D, c->scale, c->q + qoff,
              (int)D, c->kc + k0off, (int)ldk, 0, S + n1, (int)n);
    for (int64_t g = 0; g < G; g++) {
        real *row = S + g * n, mx = row[0];
        for (int64_t j = 1; j < n; j++)
            if (row[j] > mx) mx = row[j];
        scale_row(row, 1 / exp_shift_sum(row, n, mx), n);
    }
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)G, (int)D, (int)n1, 1, S, (int)n,
          c->vc + koff, (int)ldk, 0, c->o + qoff, (int)D);
    if (n2)
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)G, (int)D, (int)n2, 1, S + n1, (int)n,
              c->vc + k0off, (int)ldk, 1, c->o + qoff, (int)D);
}

static int decode_step(real *o, const real *q, const real *kc, const real *vc, real scale,
                         int64_t window, int64_t pos, int64_t B, int64_t Tmax, int64_t H,
                         int64_t Hkv, int64_t D) {
    if (!o || !q || !kc || !vc || pos < 0 || Tmax < 1 || bad_dims(window, B, Tmax, H, Hkv, D))
        return -1;
    if (pos >= Tmax && !(window > 0 && window <= Tmax)) return -1;   /* older keys were overwritten */
    if (B == 0) return 0;
    int64_t lo = first_key(pos, window), n = pos - lo + 1, s0 = lo % Tmax;
    int64_t n1 = s0 + n <= Tmax ? n : Tmax - s0;
    real *scratch = hb_malloc((size_t)(B * H * n) * sizeof(real));
    if (!scratch) return -1;
    dec_ctx c = {o, q, kc, vc, scale, s0, n1, n, Tmax, H, Hkv, D, scratch};
    hb_parallel_for_work(B * Hkv, hb_cache_read_work(B * H, n, D), dec_item, &c);
    free(scratch);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * RoPE. Work item = one (b, t) row; the angle table for that position is shared by its H heads.
 * mode 0: out = R x (out may equal x);  mode 1: out += R^T x.
 * A token's position is pos0 + its index in its sequence: in its row, or, packed, in its document
 * (positions restart at every document, found by bisection of cu_seqlens).
 */
typedef struct {
    real *out;
    const real *x;
    const real *inv_freq;
    int64_t pos0, T, H, D, mode;
    const int64_t *cu; /* cu_seqlens or NULL */
    int64_t N;
} rope_ctx;

/* Index of token f of the flattened token axis within its sequence. */
static int64_t seq_pos(const rope_ctx *c, int64_t f) {
    if (!c->cu) return f % c->T;
    int64_t lo = 0, hi = c->N - 1; /* the last document n with cu[n] <= f: it holds f */
    while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (c->cu[mid] <= f) lo = mid;
        else hi = mid - 1;
    }
    return f - c->cu[lo];
}

static void rope_item(void *vctx, int64_t item) {
    const rope_ctx *c = vctx;
    int64_t H = c->H, D = c->D, half = D / 2;
    real pos = (real)(c->pos0 + seq_pos(c, item));
    for (int64_t j = 0; j < half; j++) {
        real a = pos * c->inv_freq[j], cs = kcos(a), sn = ksin(a);
        for (int64_t h = 0; h < H; h++) {
            int64_t off = (item * H + h) * D + j;
            real x1 = c->x[off], x2 = c->x[off + half];
            if (c->mode == 0) {
                c->out[off] = x1 * cs - x2 * sn;
                c->out[off + half] = x1 * sn + x2 * cs;
            } else {
                c->out[off] += x1 * cs + x2 * sn;
                c->out[off + half] += x2 * cs - x1 * sn;
            }
        }
    }
}

static int rope_run(real *out, const real *x, double theta, int64_t pos0, const int64_t *cu, int64_t N, int64_t B,
                    int64_t T, int64_t H, int64_t D, int mode) {
    if (!out || !x || B < 0 || T < 0 || H < 1 || D < 2 || D % 2 != 0 || pos0 < 0 || !(theta > 0) ||
        hb_seqs_check(cu, N, B, T))
        return -1;
    if (B == 0 || T == 0) return 0;
    real *inv_freq = hb_malloc((size_t)(D / 2) * sizeof(real));
    if (!inv_freq) return -1;
    for (int64_t j = 0; j < D / 2; j++)
        inv_freq[j] = (real)1 / kpow((real)theta, (real)(2 * j) / (real)D);
    rope_ctx c = {out, x, inv_freq, pos0, T, H, D, mode, cu, N};
    hb_parallel_for(B * T, rope_item, &c);
    free(inv_freq);
    return 0;
}

static int rope_fwd(real *out, const real *x, double theta, int64_t pos0, const int64_t *cu, int64_t N, int64_t B,
                    int64_t T, int64_t H, int64_t D) {
    return rope_run(out, x, theta, pos0, cu, N, B, T, H, D, 0);
}

static int rope_bwd(real *dx, const real *dout, double theta, int64_t pos0, const int64_t *cu, int64_t N, int64_t B,
                    int64_t T, int64_t H, int64_t D) {
    return rope_run(dx, dout, theta, pos0, cu, N, B, T, H, D, 1);
}

/* ---- the exported names, written out (this file is compiled twice: kernels/kreal.h) ---------------- */
#ifdef HB_KERNEL_F64
int attn_fwd_ref_f64(double *o, double *lse, const double *q, const double *k, const double *v, double scale,
                     int64_t window, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                     int64_t Hkv, int64_t D) {
    return fwd_ref(o, lse, q, k, v, scale, window, cu_seqlens, N, B, T, H, Hkv, D);
}
int attn_bwd_ref_f64(double *dq, double *dk, double *dv, const double *q, const double *k, const double *v,
                     const double *dout, double scale, int64_t window, const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D) {
    return bwd_ref(dq, dk, dv, q, k, v, dout, scale, window, cu_seqlens, N, B, T, H, Hkv, D);
}
int attn_fwd_f64(double *o, double *lse, const double *q, const double *k, const double *v, double scale,
                 int64_t window, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                 int64_t Hkv, int64_t D, int64_t tile) {
    return fwd(o, lse, q, k, v, scale, window, cu_seqlens, N, B, T, H, Hkv, D, tile);
}
int attn_bwd_f64(double *dq, double *dk, double *dv, const double *q, const double *k, const double *v,
                 const double *o, const double *lse, const double *dout, double scale, int64_t window,
                 const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                 int64_t D, int64_t tile) {
    return bwd(dq, dk, dv, q, k, v, o, lse, dout, scale, window, cu_seqlens, N, B, T, H, Hkv, D, tile);
}
int attn_decode_step_f64(double *o, const double *q, const double *kc, const double *vc, double scale,
                         int64_t window, int64_t pos, int64_t B, int64_t Tmax, int64_t H, int64_t Hkv,
                         int64_t D) {
    return decode_step(o, q, kc, vc, scale, window, pos, B, Tmax, H, Hkv, D);
}
int rope_fwd_f64(double *out, const double *x, double theta, int64_t pos0, const int64_t *cu_seqlens, int64_t N,
                 int64_t B, int64_t T, int64_t H, int64_t D) {
    return rope_fwd(out, x, theta, pos0, cu_seqlens, N, B, T, H, D);
}
int rope_bwd_f64(double *dx, const double *dout, double theta, int64_t pos0, const int64_t *cu_seqlens, int64_t N,
                 int64_t B, int64_t T, int64_t H, int64_t D) {
    return rope_bwd(dx, dout, theta, pos0, cu_seqlens, N, B, T, H, D);
}
#else
int attn_fwd_ref_f32(float *o, float *lse, const float *q, const float *k, const float *v, float scale,
                     int64_t window, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                     int64_t Hkv, int64_t D) {
    return fwd_ref(o, lse, q, k, v, scale, window, cu_seqlens, N, B, T, H, Hkv, D);
}
int attn_bwd_ref_f32(float *dq, float *dk, float *dv, const float *q, const float *k, const float *v,
                     const float *dout, float scale, int64_t window, const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D) {
    return bwd_ref(dq, dk, dv, q, k, v, dout, scale, window, cu_seqlens, N, B, T, H, Hkv, D);
}
int attn_fwd_f32(float *o, float *lse, const float *q, const float *k, const float *v, float scale,
                 int64_t window, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                 int64_t Hkv, int64_t D, int64_t tile) {
    return fwd(o, lse, q, k, v, scale, window, cu_seqlens, N, B, T, H, Hkv, D, tile);
}
int attn_bwd_f32(float *dq, float *dk, float *dv, const float *q, const float *k, const float *v,
                 const float *o, const float *lse, const float *dout, float scale, int64_t window,
                 const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                 int64_t D, int64_t tile) {
    return bwd(dq, dk, dv, q, k, v, o, lse, dout, scale, window, cu_seqlens, N, B, T, H, Hkv, D, tile);
}
int attn_decode_step_f32(float *o, const float *q, const float *kc, const float *vc, float scale,
                         int64_t window, int64_t pos, int64_t B, int64_t Tmax, int64_t H, int64_t Hkv,
                         int64_t D) {
    return decode_step(o, q, kc, vc, scale, window, pos, B, Tmax, H, Hkv, D);
}
int rope_fwd_f32(float *out, const float *x, double theta, int64_t pos0, const int64_t *cu_seqlens, int64_t N,
                 int64_t B, int64_t T, int64_t H, int64_t D) {
    return rope_fwd(out, x, theta, pos0, cu_seqlens, N, B, T, H, D);
}
int rope_bwd_f32(float *dx, const float *dout, double theta, int64_t pos0, const int64_t *cu_seqlens, int64_t N,
                 int64_t B, int64_t T, int64_t H, int64_t D) {
    return rope_bwd(dx, dout, theta, pos0, cu_seqlens, N, B, T, H, D);
}
#endif
