/* retention.c — RetNet retention: linear attention with a constant per-head decay.
 *
 * Shapes: B batch, T time, H heads, K key dim, V value dim, C chunk length.
 * q, k (B,T,H,K); v, o (B,T,H,V); states (B,H,K,V); lg (H) with γ_h = e^{lg[h]} ∈ (0, 1].
 *
 *   S_t = γ S_{t−1} + k_t v_tᵀ,     S_{−1} = h0 (or 0)
 *   o_t = S_tᵀ (scale q_t)
 *
 * Backward (loss L, do_t = ∂L/∂o_t; dS_t the total gradient reaching S_t):
 *   dS_t = γ dS_{t+1} + scale q_t do_tᵀ,   dq_t = scale S_t do_t,
 *   dk_t = dS_t v_t,                        dv_t = dS_tᵀ k_t.
 *
 * Chunked form (fla/ops/simple_gla, docs/mixers.md#chunked-forms). Inside one chunk of c ≤ C rows
 * r, s = 0…c−1 that starts from state S (the state before its first row):
 *   M_rs = scale γ^{r−s} if s ≤ r else 0                       (c×c decay mask)
 *   O    = (M ⊙ Q Kᵀ) V + diag(scale γ^{r+1}) Q S
 *   S'   = γ^c S + (diag(γ^{c−1−s}) K)ᵀ V
 * Backward of one chunk, given dO and dS' (gradient of the state leaving the chunk):
 *   A = M ⊙ Q Kᵀ,  dA = M ⊙ dO Vᵀ,  dOs = diag(scale γ^{r+1}) dO
 *   dQ = dA K + dOs Sᵀ
 *   dK = dAᵀ Q + diag(γ^{c−1−s}) V dS'ᵀ
 *   dV = Aᵀ dO + diag(γ^{c−1−s}) K dS'
 *   dS = γ^c dS' + Qᵀ dOs                                       (gradient of the entering state)
 * All decay factors are powers γ^n with n ≥ 0 computed as e^{n·lg}: nothing can overflow, and a
 * decay near 0 simply underflows to 0.
 *
 * Sequences (kernels/seqs.h): a "batch" b is a row, or with cu_seqlens a packed document whose rows
 * start at its cu_seqlens entry (seq_off, seq_len); its chunks are counted from its first token.
 * Work is split over the B·H (batch, head) pairs with hb_parallel_for; each pair writes only its own
 * rows of the outputs and uses its own slice of one scratch block allocated per call, so results do
 * not depend on the thread count. The rows of one head are strided (H·K or H·V apart); each chunk
 * copies its rows into contiguous buffers before the block products (see pack_rows).
 */
#include "kreal.h"
#include "alloc.h"
#include "parallel.h"
#include "retention.h"
#include "seqs.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    real *o, *ht, *dq, *dk, *dv;
    real *hs;          /* chunked forward: [OPTIONAL] the state entering each chunk, (NT,H,K,V) (retention.h) */
    const real *hsin;  /* chunked backward: [OPTIONAL] those states: one reverse sweep, no state pass */
    const real *q, *k, *v, *h0, *lg, *do_;
    const int64_t *cu; /* cu_seqlens (kernels/seqs.h) or NULL */
    real scale;
    int64_t B, T, H, K, V, C;
    real *scratch;
    int64_t per_item; /* scratch reals per (sequence, head) item */
} ctx_t;

/* Offsets of head h of sequence b (a row, or a packed document) at its first token in a (B,T,H,D)
 * tensor, and of its state in an (NS,H,K,V) one; its length. */
static int64_t seq_off(const ctx_t *c, int64_t b, int64_t h, int64_t D) {
    return (hb_seq_get(c->cu, c->T, b).start * c->H + h) * D;
}
static int64_t st_off(const ctx_t *c, int64_t b, int64_t h) { return (b * c->H + h) * c->K * c->V; }
static int64_t seq_len(const ctx_t *c, int64_t b) { return hb_seq_get(c->cu, c->T, b).len; }
/* Offset in hs of the state entering chunk 0 of head h of sequence b; chunk j's is j·H·K·V further. */
static int64_t hs_off(const ctx_t *c, int64_t b, int64_t h) {
    return (hb_seq_first_chunk(c->cu, c->T, c->C, b) * c->H + h) * c->K * c->V;
}

/* The argument checks shared by the full-sequence entry points. */
static int bad_args(const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    return B < 0 || T < 0 || H < 0 || K < 0 || V < 0 || hb_seqs_check(cu, N, B, T);
}

static real *alloc_scratch(int64_t n_items, int64_t per_item) {
    size_t n = (size_t)(n_items * per_item);
    return hb_malloc((n ? n : 1) * sizeof(real));
}

/* ---------------------------------------------------------------------------------------------
 * (1) Reference: the recurrence, one timestep at a time.
 * ------------------------------------------------------------------------------------------- */

/* One row a of the state update and its output contribution: S_a = g S_a + k_a v, o += q_a S_a.
 * restrict and the fixed 8-wide inner loop let gcc -O2 vectorise it; the reference and the decode
 * step share it, so decoding reproduces the reference bit for bit. */
static void update_row(real *restrict Sa, real *restrict o, const real *restrict v, real g, real ka, real qa,
                       int64_t V) {
    int64_t j = 0;
    for (; j + 8 <= V; j += 8)
        for (int u = 0; u < 8; u++) {
            Sa[j + u] = g * Sa[j + u] + ka * v[j + u];
            o[j + u] += qa * Sa[j + u];
        }
    for (; j < V; j++) {
        Sa[j] = g * Sa[j] + ka * v[j];
        o[j] += qa * Sa[j];
    }
}

static void fwd_ref_item(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const int64_t b = i / c->H, h = i % c->H, K = c->K, V = c->V, HK = c->H * K, HV = c->H * V;
    real *S = c->scratch + i * c->per_item;
    const real g = kexp(c->lg[h]);
    if (c->h0) memcpy(S, c->h0 + st_off(c, b, h), (size_t)(K * V) * sizeof(real));
    else memset(S, 0, (size_t)(K * V) * sizeof(real));
    const real *q = c->q + seq_off(c, b, h, K), *k = c->k + seq_off(c, b, h, K);
    const real *v = c->v + seq_off(c, b, h, V);
    real *o = c->o + seq_off(c, b, h, V);
    for (int64_t t = 0, T = seq_len(c, b); t < T; t++, q += HK, k += HK, v += HV, o += HV) {
        for (int64_t j = 0; j < V; j++) o[j] = 0;
        for (int64_t a = 0; a < K; a++) update_row(S + a * V, o, v, g, k[a], c->scale * q[a], V);
    }
    if (c->ht) memcpy(c->ht + st_off(c, b, h), S, (size_t)(K * V) * sizeof(real));
}

static int fwd_ref(real *o, real *ht, const real *q, const real *k, const real *v,
                          const real *h0, const real *lg, real scale, const int64_t *cu, int64_t N,
                          int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    if (bad_args(cu, N, B, T, H, K, V)) return -1;
    const int64_t NS = hb_seq_count(cu, N, B);
    ctx_t c = {.o = o, .ht = ht, .q = q, .k = k, .v = v, .h0 = h0, .lg = lg, .cu = cu, .scale = scale,
               .B = B, .T = T, .H = H, .K = K, .V = V, .per_item = K * V};
    c.scratch = alloc_scratch(NS * H, c.per_item);
    if (!c.scratch) return -1;
    hb_parallel_for(NS * H, fwd_ref_item, &c);
    free(c.scratch);
    return 0;
}

/* Two sweeps: forward (states S_t, giving dq_t = scale S_t do_t), then backward (dS_t, giving dk, dv). */
static void bwd_ref_item(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const int64_t b = i / c->H, h = i % c->H, K = c->K, V = c->V, HK = c->H * K, HV = c->H * V;
    real *S = c->scratch + i * c->per_item, *dS = S + K * V;
    const real g = kexp(c->lg[h]), sc = c->scale;
    const int64_t oq = seq_off(c, b, h, K), ov = seq_off(c, b, h, V);
    if (c->dq) {
        if (c->h0) memcpy(S, c->h0 + st_off(c, b, h), (size_t)(K * V) * sizeof(real));
        else memset(S, 0, (size_t)(K * V) * sizeof(real));
        const real *k = c->k + oq, *v = c->v + ov, *dout = c->do_ + ov;
        real *dq = c->dq + oq;
        for (int64_t t = 0, T = seq_len(c, b); t < T; t++, k += HK, v += HV, dout += HV, dq += HK) {
            for (int64_t a = 0; a < K; a++) {
                real *Sa = S + a * V, acc = 0;
                for (int64_t j = 0; j < V; j++) {
                    Sa[j] = g * Sa[j] + k[a] * v[j];
                    acc += Sa[j] * dout[j];
                }
                dq[a] += sc * acc;
            }
        }
    }
    if (!c->dk && !c->dv) return;
    memset(dS, 0, (size_t)(K * V) * sizeof(real));
    for (int64_t t = seq_len(c, b) - 1; t >= 0; t--) {
        const real *q = c->q + oq + t * HK, *k = c->k + oq + t * HK;
        const real *v = c->v + ov + t * HV, *dout = c->do_ + ov + t * HV;
        for (int64_t a = 0; a < K; a++) {
            real *dSa = dS + a * V, acc = 0;
            const real qa = sc * q[a];
            for (int64_t j = 0; j < V; j++) {
                dSa[j] = g * dSa[j] + qa * dout[j];
                acc += dSa[j] * v[j];
            }
            if (c->dk) c->dk[oq + t * HK + a] += acc;
            if (c->dv) {
                real *dv = c->dv + ov + t * HV;
                for (int64_t j = 0; j < V; j++) dv[j] += k[a] * dSa[j];
            }
        }
    }
}

static int bwd_ref(real *dq, real *dk, real *dv, const real *do_,
                          const real *q, const real *k, const real *v, const real *h0,
                          const real *lg, real scale, const int64_t *cu, int64_t N,
                          int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    if (bad_args(cu, N, B, T, H, K, V)) return -1;
    if (!dq && !dk && !dv) return 0;
    const int64_t NS = hb_seq_count(cu, N, B);
    ctx_t c = {.dq = dq, .dk = dk, .dv = dv, .do_ = do_, .q = q, .k = k, .v = v, .h0 = h0, .lg = lg, .cu = cu,
               .scale = scale, .B = B, .T = T, .H = H, .K = K, .V = V, .per_item = 2 * K * V};
    c.scratch = alloc_scratch(NS * H, c.per_item);
    if (!c.scratch) return -1;
    hb_parallel_for(NS * H, bwd_ref_item, &c);
    free(c.scratch);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * (2) Chunked forward.
 * ------------------------------------------------------------------------------------------- */

/* A (n×n, leading dim C) ← M ⊙ A, M (C×C) the decay mask: the lower triangle (s ≤ r) is multiplied,
 * the upper one set to 0 (not multiplied, so an inf there cannot turn into a NaN). */
static void apply_mask(real *restrict A, const real *restrict M, int64_t n, int64_t C) {
    for (int64_t r = 0; r < n; r++) {
        real *Ar = A + r * C;
        const real *Mr = M + r * C;
        int64_t s = 0;
        for (; s + 8 <= r + 1; s += 8)
            for (int u = 0; u < 8; u++) Ar[s + u] *= Mr[s + u];
        for (; s <= r; s++) Ar[s] *= Mr[s];
        for (s = r + 1; s < n; s++) Ar[s] = 0;
    }
}

/* dst (n×D, dense) = diag(f) src (rows ld apart). restrict and the 8-wide inner loop let gcc -O2
 * vectorise it. */
static void scale_rows(real *restrict dst, const real *restrict src, int64_t ld, int64_t n, int64_t D,
                       const real *restrict f) {
    for (int64_t r = 0; r < n; r++) {
        real *d = dst + r * D;
        const real *x = src + r * ld, fr = f[r];
        int64_t j = 0;
        for (; j + 8 <= D; j += 8)
            for (int u = 0; u < 8; u++) d[j + u] = fr * x[j + u];
        for (; j < D; j++) d[j] = fr * x[j];
    }
}

/* dst (n×D, dense) = the n rows of src that are ld apart, and a prefetch (into L2) of the rows of
 * the chunk walked next (pf, pn rows; NULL: none). The kernels work on packed copies of a chunk's
 * rows: strided by H·D (a multiple of 4 KiB for common shapes), the rows of one head map to a few
 * L1 sets, block products reading them in place thrash the cache, and the hardware prefetchers do
 * not follow them. */
static void pack_rows(real *restrict dst, const real *restrict src, int64_t ld, int64_t n, int64_t D,
                      const real *pf, int64_t pn) {
    for (int64_t r = 0; r < pn; r++)
        for (int64_t x = 0; x < D; x += 64 / (int64_t)sizeof(real)) __builtin_prefetch(pf + r * ld + x, 0, 2);
    for (int64_t r = 0; r < n; r++) {
        if (r + 8 < n) /* short distance: the rows of this chunk still arriving */
            for (int64_t x = 0; x < D; x += 64 / (int64_t)sizeof(real)) __builtin_prefetch(src + (r + 8) * ld + x);
        memcpy(dst + r * D, src + r * ld, (size_t)D * sizeof(real));
    }
}

/* dst rows (ld apart) += src (n×D, dense). */
static void add_rows(real *restrict dst, int64_t ld, const real *restrict src, int64_t n, int64_t D) {
    for (int64_t r = 0; r < n; r++) {
        if (r + 8 < n)
            for (int64_t x = 0; x < D; x += 64 / (int64_t)sizeof(real)) __builtin_prefetch(dst + (r + 8) * ld + x, 1);
        for (int64_t j = 0; j < D; j++) dst[r * ld + j] += src[r * D + j];
    }
}

/* Fill pw[n] = γ^n for n = 0…C, fr[r] = scale γ^{r+1} and the mask M (C×C): scale γ^{r−s} for s ≤ r. */
static void decay_powers(real *pw, real *fr, real *M, real lg, real scale, int64_t C) {
    for (int64_t n = 0; n <= C; n++) pw[n] = kexp((real)n * lg);
    for (int64_t r = 0; r < C; r++) fr[r] = scale * pw[r + 1];
    for (int64_t r = 0; r < C; r++)
        for (int64_t s = 0; s < C; s++) M[r * C + s] = s <= r ? scale * pw[r - s] : 0;
}

/* Scratch per item: S (K·V), A (C·C), M (C·C), Qs, Kd, Qp, Kp (C·K each), Vp, Op (C·V each),
 * pw (C+1), fr (C), fk (C). */
static void fwd_chunk_item(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const int64_t b = i / c->H, h = i % c->H, K = c->K, V = c->V, C = c->C, T = seq_len(c, b);
    const int64_t HK = c->H * K, HV = c->H * V;
    real *S = c->scratch + i * c->per_item, *A = S + K * V, *M = A + C * C, *Qs = M + C * C, *Kd = Qs + C * K;
    real *Qp = Kd + C * K, *Kp = Qp + C * K, *Vp = Kp + C * K, *Op = Vp + C * V;
    real *pw = Op + C * V, *fr = pw + C + 1, *fk = fr + C;
    decay_powers(pw, fr, M, c->lg[h], c->scale, C);
    int have_state = c->h0 != NULL;
    if (have_state) memcpy(S, c->h0 + st_off(c, b, h), (size_t)(K * V) * sizeof(real));
    else memset(S, 0, (size_t)(K * V) * sizeof(real));
    const real *q = c->q + seq_off(c, b, h, K), *k = c->k + seq_off(c, b, h, K);
    const real *v = c->v + seq_off(c, b, h, V);
    real *o = c->o + seq_off(c, b, h, V), *hs = c->hs ? c->hs + hs_off(c, b, h) : NULL;
    for (int64_t t0 = 0; t0 < T; t0 += C) {
        const int64_t n = T - t0 < C ? T - t0 : C, pn = T - t0 - n < C ? T - t0 - n : C;
        if (hs) memcpy(hs + (t0 / C) * c->H * K * V, S, (size_t)(K * V) * sizeof(real));
        pack_rows(Qp, q + t0 * HK, HK, n, K, q + (t0 + n) * HK, pn);
        pack_rows(Kp, k + t0 * HK, HK, n, K, k + (t0 + n) * HK, pn);
        pack_rows(Vp, v + t0 * HV, HV, n, V, v + (t0 + n) * HV, pn);
        /* intra-chunk: O = (M ⊙ Q Kᵀ) V */
        kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)K, 1, Qp, (int)K, Kp, (int)K,
              0, A, (int)C);
        apply_mask(A, M, n, C);
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)V, (int)n, 1, A, (int)C, Vp, (int)V,
              0, Op, (int)V);
        /* inter-chunk: O += diag(scale γ^{r+1}) Q S */
        if (have_state) {
            scale_rows(Qs, Qp, K, n, K, fr);
            kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)V, (int)K, 1, Qs, (int)K, S, (int)V,
                  1, Op, (int)V);
        }
        for (int64_t r = 0; r < n; r++) memcpy(o + (t0 + r) * HV, Op + r * V, (size_t)V * sizeof(real));
        /* state pass: S = γ^n S + (diag(γ^{n−1−s}) K)ᵀ V */
        if (t0 + n < T || c->ht) {
            for (int64_t s = 0; s < n; s++) fk[s] = pw[n - 1 - s];
            scale_rows(Kd, Kp, K, n, K, fk);
            kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)V, (int)n, 1, Kd, (int)K, Vp, (int)V,
                  pw[n], S, (int)V);
            have_state = 1;
        }
    }
    if (c->ht) memcpy(c->ht + st_off(c, b, h), S, (size_t)(K * V) * sizeof(real));
}

static int fwd_chunk(real *o, real *ht, real *hs, const real *q, const real *k, const real *v,
                            const real *h0, const real *lg, real scale, const int64_t *cu, int64_t N,
                            int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    if (bad_args(cu, N, B, T, H, K, V)) return -1;
    const int64_t NS = hb_seq_count(cu, N, B), maxlen = hb_seq_maxlen(cu, N, T);
    if (C < 1) C = 64;
    if (C > maxlen && maxlen > 0) C = maxlen;
    ctx_t c = {.o = o, .ht = ht, .hs = hs, .q = q, .k = k, .v = v, .h0 = h0, .lg = lg, .cu = cu, .scale = scale,
               .B = B, .T = T, .H = H, .K = K, .V = V, .C = C};
    c.per_item = K * V + 2 * C * C + 4 * C * K + 2 * C * V + 3 * C + 1;
    c.scratch = alloc_scratch(NS * H, c.per_item);
    if (!c.scratch) return -1;
    hb_parallel_for(NS * H, fwd_chunk_item, &c);
    free(c.scratch);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * (3) Chunked backward. Without the forward's chunk states, in two sweeps:
 *   forward over the chunks, carrying S (only if dq is wanted): dQ = dA K + dOs Sᵀ, then S → S';
 *   backward over the chunks, carrying dS: dK, dV, then dS ← γ^n dS + Qᵀ dOs.
 * (dk and dv do not depend on the states at all.) dA is recomputed in the second sweep, one extra
 * n×n×V product per chunk. With the states the chunked forward saved (hsin), one backward sweep does
 * all three: dQ from the chunk's saved entry state and the dA it computes for dK anyway — no state
 * pass, no second dA, a third fewer row copies.
 * Each chunk's q, k, v, do rows are packed first (pack_rows); its dq, dk, dv rows are computed into
 * packed buffers and added to the outputs once.
 * Scratch per item: S, dS (K·V each), A, dA, M (C·C each), dOs, Vd, Vp, dOp, dVp (C·V each),
 * Kd, Qp, Kp, dXp, dQp (C·K each), pw (C+1), fr, fk (C each).
 * ------------------------------------------------------------------------------------------- */

static void bwd_chunk_item(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const int64_t b = i / c->H, h = i % c->H, K = c->K, V = c->V, C = c->C, T = seq_len(c, b);
    const int64_t HK = c->H * K, HV = c->H * V, KV = K * V, NC = (T + C - 1) / C;
    real *S = c->scratch + i * c->per_item, *dS = S + KV, *A = dS + KV, *dA = A + C * C, *M = dA + C * C;
    real *dOs = M + C * C, *Vd = dOs + C * V, *Kd = Vd + C * V;
    real *Qp = Kd + C * K, *Kp = Qp + C * K, *dXp = Kp + C * K, *Vp = dXp + C * K, *dOp = Vp + C * V;
    real *dVp = dOp + C * V, *dQp = dVp + C * V;
    real *pw = dQp + C * K, *fr = pw + C + 1, *fk = fr + C;
    decay_powers(pw, fr, M, c->lg[h], c->scale, C);
    const real *q = c->q + seq_off(c, b, h, K), *k = c->k + seq_off(c, b, h, K);
    const real *v = c->v + seq_off(c, b, h, V), *dout = c->do_ + seq_off(c, b, h, V);
    real *dq = c->dq ? c->dq + seq_off(c, b, h, K) : NULL;
    real *dk = c->dk ? c->dk + seq_off(c, b, h, K) : NULL;
    real *dv = c->dv ? c->dv + seq_off(c, b, h, V) : NULL;

    const real *hsin = c->hsin ? c->hsin + hs_off(c, b, h) : NULL; /* entry state of chunk j: + j·H·K·V */

    /* Sweep 1 (dq, without saved states): chunks in order, S = the state entering the chunk. dXp holds
     * the chunk's dQ. */
    if (dq && !hsin) {
        int have_state = c->h0 != NULL;
        if (have_state) memcpy(S, c->h0 + st_off(c, b, h), (size_t)KV * sizeof(real));
        else memset(S, 0, (size_t)KV * sizeof(real));
        for (int64_t j = 0; j < NC; j++) {
            const int64_t t0 = j * C, n = T - t0 < C ? T - t0 : C, pn = T - t0 - n < C ? T - t0 - n : C;
            pack_rows(Kp, k + t0 * HK, HK, n, K, k + (t0 + n) * HK, pn);
            pack_rows(Vp, v + t0 * HV, HV, n, V, v + (t0 + n) * HV, pn);
            pack_rows(dOp, dout + t0 * HV, HV, n, V, dout + (t0 + n) * HV, pn);
            /* dQ = (M ⊙ dO Vᵀ) K */
            kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)V, 1, dOp, (int)V, Vp, (int)V,
                  0, dA, (int)C);
            apply_mask(dA, M, n, C);
            kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)K, (int)n, 1, dA, (int)C, Kp, (int)K,
                  0, dXp, (int)K);
            /* dQ += diag(scale γ^{r+1}) dO Sᵀ */
            if (have_state) {
                scale_rows(dOs, dOp, V, n, V, fr);
                kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)K, (int)V, 1, dOs, (int)V, S, (int)V,
                      1, dXp, (int)K);
            }
            add_rows(dq + t0 * HK, HK, dXp, n, K);
            /* S = γ^n S + (diag(γ^{n−1−s}) K)ᵀ V */
            if (j + 1 < NC) {
                for (int64_t s = 0; s < n; s++) fk[s] = pw[n - 1 - s];
                scale_rows(Kd, Kp, K, n, K, fk);
                kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)V, (int)n, 1, Kd, (int)K, Vp, (int)V,
                      have_state ? pw[n] : 0, S, (int)V);
                have_state = 1;
            }
        }
    }
    const int dq2 = dq && hsin; /* dq in sweep 2 */
    if (!dk && !dv && !dq2) return;

    /* Sweep 2 (dk, dv; dq with saved states): chunks in reverse, dS = gradient of the state leaving the
     * current chunk. dXp holds the chunk's dK, dVp its dV, dQp its dQ. */
    memset(dS, 0, (size_t)KV * sizeof(real));
    for (int64_t j = NC - 1; j >= 0; j--) {
        const int64_t t0 = j * C, n = T - t0 < C ? T - t0 : C, pn = j > 0 ? C : 0;
        const int have_dS = j < NC - 1; /* nothing flows back into the last chunk's final state */
        pack_rows(Qp, q + t0 * HK, HK, n, K, q + (t0 - pn) * HK, pn);
        pack_rows(Kp, k + t0 * HK, HK, n, K, k + (t0 - pn) * HK, pn);
        pack_rows(Vp, v + t0 * HV, HV, n, V, v + (t0 - pn) * HV, pn);
        pack_rows(dOp, dout + t0 * HV, HV, n, V, dout + (t0 - pn) * HV, pn);
        for (int64_t s = 0; s < n; s++) fk[s] = pw[n - 1 - s];
        /* dOs = diag(scale γ^{r+1}) dO, for dQ's state term (a nonzero entry state) and the dS update */
        const int dq_state = dq2 && (j > 0 || c->h0);
        if (dq_state || j > 0) scale_rows(dOs, dOp, V, n, V, fr);
        if (dk || dq2) { /* dA = M ⊙ dO Vᵀ */
            kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)V, 1, dOp, (int)V, Vp, (int)V,
                  0, dA, (int)C);
            apply_mask(dA, M, n, C);
        }
        if (dq2) {
            /* dQ = dA K + diag(scale γ^{r+1}) dO Sᵀ, S the state entering this chunk (zero for the first
             * chunk without h0) */
            kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)K, (int)n, 1, dA, (int)C, Kp, (int)K,
                  0, dQp, (int)K);
            if (dq_state)
                kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)K, (int)V, 1, dOs, (int)V,
                      hsin + j * c->H * KV, (int)V, 1, dQp, (int)K);
            add_rows(dq + t0 * HK, HK, dQp, n, K);
        }
        if (dk) {
            /* dK = (M ⊙ dO Vᵀ)ᵀ Q + diag(γ^{n−1−s}) V dSᵀ */
            kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)K, (int)n, 1, dA, (int)C, Qp, (int)K,
                  0, dXp, (int)K);
            if (have_dS) {
                scale_rows(Vd, Vp, V, n, V, fk);
                kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)K, (int)V, 1, Vd, (int)V, dS, (int)V,
                      1, dXp, (int)K);
            }
            add_rows(dk + t0 * HK, HK, dXp, n, K);
        }
        if (dv) {
            /* dV = (M ⊙ Q Kᵀ)ᵀ dO + diag(γ^{n−1−s}) K dS */
            kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)K, 1, Qp, (int)K, Kp, (int)K,
                  0, A, (int)C);
            apply_mask(A, M, n, C);
            kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)V, (int)n, 1, A, (int)C, dOp, (int)V,
                  0, dVp, (int)V);
            if (have_dS) {
                scale_rows(Kd, Kp, K, n, K, fk);
                kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)V, (int)K, 1, Kd, (int)K, dS, (int)V,
                      1, dVp, (int)V);
            }
            add_rows(dv + t0 * HV, HV, dVp, n, V);
        }
        /* dS ← γ^n dS + Qᵀ diag(scale γ^{r+1}) dO, the gradient of the state entering this chunk */
        if (j > 0)
            kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)V, (int)n, 1, Qp, (int)K, dOs, (int)V,
                  have_dS ? pw[n] : 0, dS, (int)V);
    }
}

static int bwd_chunk(real *dq, real *dk, real *dv, const real *do_,
                            const real *q, const real *k, const real *v, const real *h0, const real *hs,
                            const real *lg, real scale, const int64_t *cu, int64_t N,
                            int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    if (bad_args(cu, N, B, T, H, K, V)) return -1;
    if ((!dq && !dk && !dv) || T <= 0) return 0;
    const int64_t NS = hb_seq_count(cu, N, B), maxlen = hb_seq_maxlen(cu, N, T);
    if (C < 1) C = 64;
    if (C > maxlen) C = maxlen > 0 ? maxlen : 1;
    ctx_t c = {.dq = dq, .dk = dk, .dv = dv, .do_ = do_, .q = q, .k = k, .v = v, .h0 = h0, .hsin = hs, .lg = lg,
               .cu = cu, .scale = scale, .B = B, .T = T, .H = H, .K = K, .V = V, .C = C};
    c.per_item = 2 * K * V + 3 * C * C + 5 * C * V + 5 * C * K + 3 * C + 1;
    c.scratch = alloc_scratch(NS * H, c.per_item);
    if (!c.scratch) return -1;
    hb_parallel_for(NS * H, bwd_chunk_item, &c);
    free(c.scratch);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * (4) Single-step decode.
 * ------------------------------------------------------------------------------------------- */

static int step(real *o, real *state, const real *q, const real *k, const real *v,
                       const real *lg, real scale, int64_t B, int64_t H, int64_t K, int64_t V) {
    for (int64_t i = 0; i < B * H; i++) {
        const real g = kexp(lg[i % H]);
        real *S = state + i * K * V, *oi = o + i * V;
        const real *qi = q + i * K, *ki = k + i * K, *vi = v + i * V;
        for (int64_t j = 0; j < V; j++) oi[j] = 0;
        for (int64_t a = 0; a < K; a++) update_row(S + a * V, oi, vi, g, ki[a], scale * qi[a], V);
    }
    return 0;
}

/* ---- the mixer descriptor's adapters (kernels/mixer.h) ------------------------------------------- */
/* dims "B T H K V"; inputs q, k, v, decay (ln γ per head, a constant); scalar scale */
static int mixer_fwd_chunk(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *lg = a->in[3];
    real scale = (real)a->scalar[0];
    return fwd_chunk(a->o, a->ht, a->saved, q, k, v, NULL, lg, scale, a->cu_seqlens, a->N, B, T, H, K, V, a->chunk);
}
static int mixer_bwd_chunk(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *lg = a->in[3];
    real scale = (real)a->scalar[0];
    return bwd_chunk(a->din[0], a->din[1], a->din[2], a->dout, q, k, v, NULL, a->saved, lg, scale, a->cu_seqlens, a->N,
                     B, T, H, K, V, a->chunk);
}
static int mixer_fwd_recurrent(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *lg = a->in[3];
    real scale = (real)a->scalar[0];
    return fwd_ref(a->o, a->ht, q, k, v, NULL, lg, scale, a->cu_seqlens, a->N, B, T, H, K, V);
}
static int mixer_bwd_recurrent(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *lg = a->in[3];
    real scale = (real)a->scalar[0];
    return bwd_ref(a->din[0], a->din[1], a->din[2], a->dout, q, k, v, NULL, lg, scale, a->cu_seqlens, a->N, B, T, H,
                   K, V);
}
static int mixer_step(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *lg = a->in[3];
    real scale = (real)a->scalar[0];
    return step(a->o, a->state, q, k, v, lg, scale, B, H, K, V);
}

/* ---- the exported names, written out (this file is compiled twice: kernels/kreal.h) ---------------- */
#ifdef HB_KERNEL_F64
int retention_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                          const double *h0, const double *lg, double scale, const int64_t *cu_seqlens, int64_t N,
                              int64_t B, int64_t T, int64_t H,
                          int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, h0, lg, scale, cu_seqlens, N, B, T, H, K, V);
}
int retention_bwd_ref_f64(double *dq, double *dk, double *dv, const double *do_, const double *q,
                          const double *k, const double *v, const double *h0, const double *lg, double scale,
                              const int64_t *cu_seqlens, int64_t N,
                          int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, do_, q, k, v, h0, lg, scale, cu_seqlens, N, B, T, H, K, V);
}
int retention_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k, const double *v,
                            const double *h0, const double *lg, double scale, const int64_t *cu_seqlens, int64_t N,
                                int64_t B, int64_t T, int64_t H,
                            int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, h0, lg, scale, cu_seqlens, N, B, T, H, K, V, C);
}
int retention_bwd_chunk_f64(double *dq, double *dk, double *dv, const double *do_, const double *q,
                            const double *k, const double *v, const double *h0, const double *hs, const double *lg,
                            double scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                                int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, do_, q, k, v, h0, hs, lg, scale, cu_seqlens, N, B, T, H, K, V, C);
}
int retention_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                       const double *lg, double scale, int64_t B, int64_t H, int64_t K, int64_t V) {
    return step(o, state, q, k, v, lg, scale, B, H, K, V);
}
int retention_mixer_fwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int retention_mixer_bwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int retention_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int retention_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int retention_mixer_step_f64(const hb_mixer_args_t *a) { return mixer_step(a); }
#else
int retention_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                          const float *h0, const float *lg, float scale, const int64_t *cu_seqlens, int64_t N,
                              int64_t B, int64_t T, int64_t H,
                          int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, h0, lg, scale, cu_seqlens, N, B, T, H, K, V);
}
int retention_bwd_ref_f32(float *dq, float *dk, float *dv, const float *do_, const float *q, const float *k,
                          const float *v, const float *h0, const float *lg, float scale, const int64_t *cu_seqlens,
                              int64_t N, int64_t B, int64_t T,
                          int64_t H, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, do_, q, k, v, h0, lg, scale, cu_seqlens, N, B, T, H, K, V);
}
int retention_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k, const float *v,
                            const float *h0, const float *lg, float scale, const int64_t *cu_seqlens, int64_t N,
                                int64_t B, int64_t T, int64_t H,
                            int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, h0, lg, scale, cu_seqlens, N, B, T, H, K, V, C);
}
int retention_bwd_chunk_f32(float *dq, float *dk, float *dv, const float *do_, const float *q, const float *k,
                            const float *v, const float *h0, const float *hs, const float *lg, float scale, const int64_t *cu_seqlens,
                                int64_t N, int64_t B,
                            int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, do_, q, k, v, h0, hs, lg, scale, cu_seqlens, N, B, T, H, K, V, C);
}
int retention_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                       const float *lg, float scale, int64_t B, int64_t H, int64_t K, int64_t V) {
    return step(o, state, q, k, v, lg, scale, B, H, K, V);
}
int retention_mixer_fwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int retention_mixer_bwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int retention_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int retention_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int retention_mixer_step_f32(const hb_mixer_args_t *a) { return mixer_step(a); }
/* the chunk states hs that the chunked forward hands its backward: (NT,H,K,V), NT = hb_seq_chunks */
static int64_t mixer_saved_numel(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    return hb_seq_chunks(a->cu_seqlens, a->N, B, T, a->chunk) * H * K * V;
}
/* the descriptor (compiled once, with the float pass; it names the double entry points too) */
const hb_mixer_desc_t hb_mixer_retention = {
    .name = "retention",
    .dims = "B T H K V",
    .in = {{"q", "B T H K", HB_IN_GRAD},
           {"k", "B T H K", HB_IN_GRAD},
           {"v", "B T H V", HB_IN_GRAD},
           {"decay", "H", HB_IN_CAST}},
    .scalar = {{"scale", 0, "K"}},
    .out = "B T H V",
    .state = "B H K V",
    .chunk = 64,
    .packed = 1,
    .saved_numel = mixer_saved_numel,
    .f32 = {retention_mixer_fwd_chunk_f32, retention_mixer_bwd_chunk_f32, retention_mixer_fwd_recurrent_f32,
            retention_mixer_bwd_recurrent_f32, retention_mixer_step_f32},
    .f64 = {retention_mixer_fwd_chunk_f64, retention_mixer_bwd_chunk_f64, retention_mixer_fwd_recurrent_f64,
            retention_mixer_bwd_recurrent_f64, retention_mixer_step_f64},
};
#endif
