/* gla.c — gated linear attention (GLA, docs/mixers.md#gla) with a per-key-channel decay; HGRN-2
 * (docs/mixers.md#hgrn-2) runs the same kernel with k = 1 − e^{g}.
 *
 * Shape letters: B batch, T time, H heads, K key dim, V value dim, C chunk length, BC = 16 the
 * secondary sub-block inside a chunk. Layout (B,T,H,D) row-major: the rows of one head are D-vectors
 * with stride H·D. Each chunk first copies its q, k, v (and do) rows into contiguous buffers
 * (pack_rows, with software prefetch: the strided rows defeat the hardware prefetchers and map to
 * a few L1 sets), so every block product below is a kgemm on dense C×K / C×V operands; gradients
 * are formed in dense buffers and added to the strided outputs once (add_rows).
 *
 * Recurrence for one (b,h), gk_t ≤ 0 the log decay of each key channel (S_{−1} = h0 or 0):
 *   S_t = diag(e^{gk_t}) S_{t−1} + k_t v_tᵀ          S ∈ R^{K×V}
 *   o_t = S_tᵀ (scale·q_t)
 * Reference backward (BPTT), dS the gradient w.r.t. S_t carried backwards (starts at dht):
 *   dS += scale q_t do_tᵀ;  dq_t = scale S_t do_t;  dk_t = dS v_t;  dv_t = dSᵀ k_t;
 *   dgk_t = e^{gk_t} ⊙ rowsum(S_{t−1} ⊙ dS);  dS ← diag(e^{gk_t}) dS;  finally dh0 = dS.
 *
 * Chunked form (docs/mixers.md#chunked-forms). In a chunk of L ≤ C rows r = 0..L−1 entering with state S:
 *   G_r = Σ_{u≤r} gk_u (per channel, ≤ 0, non-increasing)
 *   o_r = scale (q_r ⊙ e^{G_r})ᵀ S + Σ_{s≤r} A_rs v_s,   A_rs = scale Σ_j q_rj k_sj e^{G_rj − G_sj}
 *   S'  = diag(e^{G_{L−1}}) S + Σ_r (k_r ⊙ e^{G_{L−1} − G_r}) v_rᵀ
 * Only decays e^{G_a − G_b} with a ≥ b (≤ 1) are formed, as running products of e^{gk} (no
 * exponential of a cumulative sum, so no overflow however negative gk is and no cancellation
 * between large partial sums). The intra-chunk scores use secondary chunking into BC-row sub-blocks,
 * n(r) / m(r) the first / last row of r's sub-block:
 *   En_r = e^{G_r − G_{n(r)}},  Em_s = e^{G_{m(s)} − G_s},  mid_ij = e^{G_{n_i} − G_{m_j}} (j < i)
 *   off-diagonal sub-block (i, j<i):  A_ij = (scale q_i ⊙ En_i) (k_j ⊙ Em_j ⊙ mid_ij)ᵀ
 *   diagonal sub-block:  A_ii = (scale q_i ⊙ En_i) (k_i / En_i)ᵀ on the lower triangle, for the
 *   channels whose decay across the sub-block is ≥ TAME (then 1/En ≤ 1/TAME: bounded); the other
 *   ("untamed") channels element-wise with a running product P_rs = Π_{s<u≤r} e^{gk_u}.
 *   Row sub-block i is thus ONE kgemm over columns 0..e_i (plus rare element-wise channels).
 *   e^{G_r} = En_r e^{G_{n(r)}} and e^{G_{L−1} − G_r} = Em_r e^{G_{L−1} − G_{m(r)}} are products of
 *   factors ≤ 1 as well.
 * Chunked backward, walking the chunks in reverse with dS = dL/dS' (starts at dht):
 *   dA = tril(dO Vᵀ);  dv += Aᵀ dO + (k ⊙ e^{G_{L−1}−G}) dS
 *   dq = scale e^{G} ⊙ (dO Sᵀ) + scale Σ_s dA_rs k_s e^{G_r−G_s}    (row sub-blocks as for A)
 *   dk = e^{G_{L−1}−G} ⊙ (V dSᵀ) + scale Σ_r dA_rs q_r e^{G_r−G_s}  (column sub-block j: one kgemm
 *        with reference row m_j, i.e. q_r ⊙ En_r ⊙ mid below it and q_r / Em_r inside it)
 *   dS ← diag(e^{G_{L−1}}) dS + (scale q ⊙ e^{G})ᵀ dO;   finally dh0 = dS.
 * The chunk-entry states are those the chunked forward saved (hs), or, without them, recomputed by a
 * forward state pass before the reverse walk.
 * Gate gradient by the identity (derivation): with the global cumsum Γ_t = Σ_{u≤t} gk_u, every
 * output depends on the gates only through q̂_t = q_t ⊙ e^{Γ_t}, k̂_u = k_u ⊙ e^{−Γ_u} and, for
 * ht = diag(e^{Γ_{T−1}})(h0 + Σ_u k̂_u v_uᵀ), the explicit factor e^{Γ_{T−1}}. Hence
 *   ∂L/∂Γ_t = q_t ⊙ dq_t − k_t ⊙ dk_t + [t = T−1] rowsum(dht ⊙ ht),   dgk_t = Σ_{u≥t} ∂L/∂Γ_u,
 * a reverse cumulative sum over the whole sequence of quantities the backward already has (no
 * exponential at all). The test checks it against the BPTT reference and finite differences.
 *
 * Sequences (kernels/seqs.h): "b" is a row of the batch or, with cu_seqlens, a packed document; an
 * item walks its own rows from its own h0 with chunks counted from its first token (row(), item_len()),
 * so a packed document computes exactly what it computes alone.
 * Parallel over B·H: each work item owns one (b,h), writes only its rows, and uses its own slice
 * of scratch allocated once per call, so results do not depend on the thread count.
 * Compiled twice (kreal.h): float → *_f32, -DHB_KERNEL_F64 → *_f64.
 */
#include "kreal.h"
#include "alloc.h"
#include "gla.h"
#include "seqs.h"
#include "kmath.h"
#include "parallel.h"
#include <stdlib.h>
#include <string.h>

#define BC 16 /* secondary sub-block length inside a chunk */

/* e^x of a gate (x ≤ 0) in loops GCC vectorises: hb_expf_edges (kmath.h) in float; libm exp in double. */
#ifdef HB_KERNEL_F64
#define gexp exp
#else
#define gexp hb_expf_edges
#endif

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

static int bad_dims(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    return B < 0 || T < 0 || H < 0 || K < 1 || V < 1 || C < 1;
}

/* The chunk length actually used, before any arithmetic with it: a chunk longer than the sequence is the
 * whole sequence, and at most 2^16 rows (the workspace holds C×C scores; a requested 2^40 overflowed it).
 * Chunking is an exact rewriting of the recurrence, so a shorter chunk changes only the rounding. */
static int64_t chunk_len(int64_t C, int64_t T) {
    int64_t cap = T < ((int64_t)1 << 16) ? T : ((int64_t)1 << 16);
    return C > cap ? (cap > 0 ? cap : 1) : C;
}

/* Everything a work item needs; one struct for all entry points. */
typedef struct {
    real *o, *ht, *dq, *dk, *dv, *dgk, *dh0;
    real *hs;          /* chunked forward: [OPTIONAL] the chunk-entry states it saves (gla.h's layout) */
    const real *hsin;  /* chunked backward: [OPTIONAL] those states, instead of a state pass of its own */
    const real *q, *k, *v, *gk, *h0, *do_, *dht;
    const int64_t *cu; /* cu_seqlens (kernels/seqs.h) or NULL */
    real scale;
    int64_t T, H, K, V, C;
    int64_t Ls;        /* checkpoint spacing of the reference backward */
    real *scratch;
    int64_t per_item; /* scratch reals per work item */
} gla_args;

/* Work item i = (sequence b, head h): b is a row of the batch, or a packed document. Start of its
 * row t in a (B,T,H,D) tensor, and its length. */
static int64_t row(const gla_args *a, int64_t i, int64_t t, int64_t D) {
    int64_t b = i / a->H, h = i % a->H;
    return ((hb_seq_get(a->cu, a->T, b).start + t) * a->H + h) * D;
}
static int64_t item_len(const gla_args *a, int64_t i) { return hb_seq_get(a->cu, a->T, i / a->H).len; }

/* Ask for the L rows (D reals each, ld apart) of a strided head slice to be brought into cache.
 * The rows of one head are H·D apart, which defeats the hardware prefetchers; each chunk prefetches
 * the rows of the next one it will walk. */
static void prefetch_rows(const real *p, int64_t ld, int64_t L, int64_t D) {
    const int64_t step = 64 / (int64_t)sizeof(real);
    for (int64_t r = 0; r < L; r++)
        for (int64_t x = 0; x < D; x += step) __builtin_prefetch(p + r * ld + x, 0, 2);
}

/* dst (L×D, contiguous) = the L rows of src that are ld apart. The kernels work on packed copies
 * of a chunk's rows: strided by H·D (a multiple of 4 KiB for common shapes), the rows of one head
 * all map to a few L1 sets, and block products reading them in place thrash the cache. */
static void pack_rows(real *dst, const real *src, int64_t ld, int64_t L, int64_t D) {
    for (int64_t r = 0; r < L; r++) {
        if (r + 8 < L)
            for (int64_t x = 0; x < D; x += 64 / (int64_t)sizeof(real)) __builtin_prefetch(src + (r + 8) * ld + x);
        memcpy(dst + r * D, src + r * ld, (size_t)D * sizeof(real));
    }
}

/* dst rows (ld apart) += src (L×D, contiguous). */
static void add_rows(real *dst, int64_t ld, const real *src, int64_t L, int64_t D) {
    for (int64_t r = 0; r < L; r++) {
        if (r + 8 < L)
            for (int64_t x = 0; x < D; x += 64 / (int64_t)sizeof(real)) __builtin_prefetch(dst + (r + 8) * ld + x, 1);
        real *d = dst + r * ld;
        const real *x = src + r * D;
        for (int64_t j = 0; j < D; j++) d[j] += x[j];
    }
}

static void state_init(real *S, const real *h0, int64_t i, int64_t KV) {
    if (h0)
        memcpy(S, h0 + i * KV, (size_t)KV * sizeof(real));
    else
        memset(S, 0, (size_t)KV * sizeof(real));
}

/* One recurrence step on S (K×V): S = diag(e^{g}) S + k vᵀ. */
static void rec_step(real *S, const real *k, const real *v, const real *g, int64_t K, int64_t V) {
    for (int64_t j = 0; j < K; j++) {
        real d = kexp(g[j]), kj = k[j];
        real *Sj = S + j * V;
        for (int64_t x = 0; x < V; x++) Sj[x] = d * Sj[x] + kj * v[x];
    }
}

/* o = Sᵀ (scale q). */
static void rec_out(real *o, const real *S, const real *q, real scale, int64_t K, int64_t V) {
    for (int64_t x = 0; x < V; x++) o[x] = 0;
    for (int64_t j = 0; j < K; j++) {
        real qj = scale * q[j];
        const real *Sj = S + j * V;
        for (int64_t x = 0; x < V; x++) o[x] += qj * Sj[x];
    }
}

/* ---------------------------------------------------------------------------------------------
 * Reference: the per-timestep recurrence and its BPTT backward.
 * ------------------------------------------------------------------------------------------- */

static void fwd_ref_item(void *ctx, int64_t i) {
    const gla_args *a = ctx;
    int64_t K = a->K, V = a->V, HK = a->H * K, HV = a->H * V;
    real *S = a->scratch + i * a->per_item;
    state_init(S, a->h0, i, K * V);
    const int64_t T = item_len(a, i);
    if (T > 0) {
        int64_t rk = row(a, i, 0, K), rv = row(a, i, 0, V);
        for (int64_t t = 0; t < T; t++) {
            rec_step(S, a->k + rk + t * HK, a->v + rv + t * HV, a->gk + rk + t * HK, K, V);
            rec_out(a->o + rv + t * HV, S, a->q + rk + t * HK, a->scale, K, V);
        }
    }
    if (a->ht) memcpy(a->ht + i * K * V, S, (size_t)(K * V) * sizeof(real));
}

static int fwd_ref(real *o, real *ht, const real *q, const real *k, const real *v, const real *gk,
                    const real *h0, real scale, const int64_t *cu, int64_t N, int64_t B, int64_t T,
                    int64_t H, int64_t K, int64_t V) {
    if (bad_dims(B, T, H, K, V, 1) || hb_seqs_check(cu, N, B, T) || (T > 0 && (!o || !q || !k || !v || !gk)))
        return -1;
    const int64_t NS = hb_seq_count(cu, N, B);
    if (NS * H == 0) return 0;
    gla_args a = {.o = o, .ht = ht, .q = q, .k = k, .v = v, .gk = gk, .h0 = h0, .cu = cu, .scale = scale,
                  .T = T, .H = H, .K = K, .V = V, .per_item = K * V};
    a.scratch = hb_malloc((size_t)(NS * H * a.per_item) * sizeof(real));
    if (!a.scratch) return -1;
    hb_parallel_for(NS * H, fwd_ref_item, &a);
    free(a.scratch);
    return 0;
}

/* Checkpoint spacing of the reference backward: ~sqrt(T). */
static int64_t ref_seg(int64_t T) {
    int64_t s = 1;
    while (s * s < T) s++;
    return s;
}

static void bwd_ref_item(void *ctx, int64_t i) {
    const gla_args *a = ctx;
    int64_t K = a->K, V = a->V, KV = K * V, HK = a->H * K, HV = a->H * V, T = item_len(a, i);
    int64_t Ls = a->Ls, ns = (T + Ls - 1) / Ls;
    real *ck = a->scratch + i * a->per_item; /* ns checkpoints: state entering each segment */
    real *buf = ck + ns * KV;                /* Ls states of the segment being walked */
    real *dS = buf + Ls * KV;
    int64_t rk = T > 0 ? row(a, i, 0, K) : 0, rv = T > 0 ? row(a, i, 0, V) : 0;

    state_init(dS, a->h0, i, KV); /* dS doubles as the running state of the checkpoint pass */
    for (int64_t t = 0; t < T; t++) {
        if (t % Ls == 0) memcpy(ck + (t / Ls) * KV, dS, (size_t)KV * sizeof(real));
        rec_step(dS, a->k + rk + t * HK, a->v + rv + t * HV, a->gk + rk + t * HK, K, V);
    }
    if (a->dht)
        memcpy(dS, a->dht + i * KV, (size_t)KV * sizeof(real));
    else
        memset(dS, 0, (size_t)KV * sizeof(real));

    for (int64_t c = ns - 1; c >= 0; c--) {
        int64_t t0 = c * Ls, t1 = imin(T, t0 + Ls);
        const real *prev = ck + c * KV;
        for (int64_t t = t0; t < t1; t++) { /* buf[t−t0] = S_t */
            real *cur = buf + (t - t0) * KV;
            memcpy(cur, prev, (size_t)KV * sizeof(real));
            rec_step(cur, a->k + rk + t * HK, a->v + rv + t * HV, a->gk + rk + t * HK, K, V);
            prev = cur;
        }
        for (int64_t t = t1 - 1; t >= t0; t--) {
            const real *St = buf + (t - t0) * KV;
            const real *Sp = t == t0 ? ck + c * KV : St - KV;
            const real *qt = a->q + rk + t * HK, *kt = a->k + rk + t * HK, *gt = a->gk + rk + t * HK;
            const real *vt = a->v + rv + t * HV, *dot_ = a->do_ + rv + t * HV;
            for (int64_t j = 0; j < K; j++) {
                real *dSj = dS + j * V;
                const real *Stj = St + j * V, *Spj = Sp + j * V;
                real sq = a->scale * qt[j], dqj = 0, dkj = 0, dgj = 0, d = kexp(gt[j]);
                for (int64_t x = 0; x < V; x++) {
                    dSj[x] += sq * dot_[x];
                    dqj += Stj[x] * dot_[x];
                    dkj += dSj[x] * vt[x];
                    dgj += Spj[x] * dSj[x];
                }
                if (a->dq) a->dq[rk + t * HK + j] += a->scale * dqj;
                if (a->dk) a->dk[rk + t * HK + j] += dkj;
                if (a->dgk) a->dgk[rk + t * HK + j] += d * dgj;
                if (a->dv)
                    for (int64_t x = 0; x < V; x++) a->dv[rv + t * HV + x] += dSj[x] * kt[j];
                for (int64_t x = 0; x < V; x++) dSj[x] *= d;
            }
        }
    }
    if (a->dh0)
        for (int64_t x = 0; x < KV; x++) a->dh0[i * KV + x] += dS[x];
}

static int bwd_ref(real *dq, real *dk, real *dv, real *dgk, real *dh0, const real *do_,
                    const real *dht, const real *q, const real *k, const real *v, const real *gk,
                    const real *h0, real scale, const int64_t *cu, int64_t N, int64_t B, int64_t T,
                    int64_t H, int64_t K, int64_t V) {
    if (bad_dims(B, T, H, K, V, 1) || hb_seqs_check(cu, N, B, T) || (T > 0 && (!do_ || !q || !k || !v || !gk)))
        return -1;
    const int64_t NS = hb_seq_count(cu, N, B), maxlen = hb_seq_maxlen(cu, N, T);
    if (NS * H == 0) return 0;
    int64_t Ls = ref_seg(maxlen), ns = (maxlen + Ls - 1) / Ls;
    gla_args a = {.dq = dq, .dk = dk, .dv = dv, .dgk = dgk, .dh0 = dh0, .do_ = do_, .dht = dht,
                  .q = q, .k = k, .v = v, .gk = gk, .h0 = h0, .cu = cu, .scale = scale,
                  .T = T, .H = H, .K = K, .V = V, .Ls = Ls, .per_item = (ns + Ls + 1) * K * V};
    a.scratch = hb_malloc((size_t)(NS * H * a.per_item) * sizeof(real));
    if (!a.scratch) return -1;
    hb_parallel_for(NS * H, bwd_ref_item, &a);
    free(a.scratch);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Chunked forward and backward.
 * ------------------------------------------------------------------------------------------- */

/* A sub-block channel is "tame" when its decay over the sub-block, e^{G_m − G_n}, is at least
 * TAME: then 1/En and 1/Em stay ≤ 1/TAME and the diagonal sub-block of that channel can go through
 * the same kgemm as the off-diagonal ones. Other channels are done element-wise. */
#ifdef HB_KERNEL_F64
#define TAME 1e-100
#else
#define TAME 1e-15f
#endif

/* Per-item chunk workspace (views into the item's scratch slice). nb = ceil(C/BC). */
typedef struct {
    real *eg, *En, *Em, *Eg, *El; /* C×K gate factors (see chunk_gates) */
    real *D, *tame;               /* nb×K: sub-block decay e^{G_m − G_{n−1}}; 1 if tame else 0 */
    real *mid;                    /* nb×nb×K: e^{G_{n_i} − G_{m_j}}, j < i */
    real *Qn, *Kx, *Qx;           /* C×K operands of the block products */
    real *dqc, *dkc;              /* C×K gradients of the chunk's q, k rows */
    real *A, *dA;                 /* C×C intra-chunk scores and their gradient (row stride C) */
    real *qc, *kc;                /* C×K the chunk's q, k rows, packed (contiguous) */
    real *vc, *oc, *doc, *dvc;    /* C×V its v rows, output rows, do rows and dv rows, packed */
    real *vec;                    /* 3K */
    real *S, *dS;                 /* K×V running state and its gradient */
    real *states;                 /* (nc+1)×K×V chunk-entry states (backward only) */
} chunk_ws;

static int64_t nbmax_of(int64_t C) { return (C + BC - 1) / BC; }

static int64_t ws_size(int64_t K, int64_t V, int64_t C, int64_t nstates) {
    int64_t nb = nbmax_of(C);
    return 12 * C * K + 4 * C * V + (2 + nb) * nb * K + 2 * C * C + 3 * K + (2 + nstates) * K * V;
}

static void ws_carve(chunk_ws *w, real *p, int64_t K, int64_t V, int64_t C) {
    int64_t nb = nbmax_of(C), CK = C * K;
    real **ck[] = {&w->eg, &w->En, &w->Em, &w->Eg, &w->El, &w->Qn, &w->Kx, &w->Qx, &w->dqc, &w->dkc,
                   &w->qc, &w->kc};
    for (int i = 0; i < 12; i++) *ck[i] = p, p += CK;
    real **cv[] = {&w->vc, &w->oc, &w->doc, &w->dvc};
    for (int i = 0; i < 4; i++) *cv[i] = p, p += C * V;
    w->D = p; p += nb * K;
    w->tame = p; p += nb * K;
    w->mid = p; p += nb * nb * K;
    w->A = p; p += C * C;
    w->dA = p; p += C * C;
    w->vec = p; p += 3 * K;
    w->S = p; p += K * V;
    w->dS = p; p += K * V;
    w->states = p;
}

/* Gate factors of one chunk of L rows (g rows with stride ldg), all running products of
 * eg_u = e^{g_u} ≤ 1 (no exponent of a sum, so no overflow and no cancellation in G):
 *   En_r = e^{G_r − G_{n(r)}},  Em_r = e^{G_{m(r)} − G_r},  D_b = e^{G_{m_b} − G_{n_b − 1}},
 *   Eg_r = e^{G_r} = En_r eg_{n(r)} Π_{b < b(r)} D_b,   El_r = e^{G_{L−1} − G_r} = Em_r Π_{b > b(r)} D_b,
 *   mid[i][j] = e^{G_{n_i} − G_{m_j}} = eg_{n_i} Π_{j<b<i} D_b,   tame[b] = (Em_{n_b} ≥ TAME).
 * Without `full` (the state pass) only eg, Em, D, El and the last row of Eg are computed. */
static void chunk_gates(chunk_ws *w, const real *g, int64_t ldg, int64_t L, int64_t K, int64_t C,
                        int full) {
    int64_t nbmax = nbmax_of(C), nb = (L + BC - 1) / BC;
    for (int64_t r = 0; r < L; r++) {
        const real *gr = g + r * ldg;
        real *er = w->eg + r * K;
        if (r + 8 < L)
            for (int64_t x = 0; x < K; x += 64 / (int64_t)sizeof(real)) __builtin_prefetch(gr + 8 * ldg + x);
        for (int64_t x = 0; x < K; x++) er[x] = gexp(gr[x]);
    }
    for (int64_t ib = 0; ib < nb; ib++) {
        int64_t n = ib * BC, m = imin(L, n + BC) - 1;
        real *En = w->En, *Em = w->Em, *eg = w->eg;
        for (int64_t x = 0; x < K; x++) Em[m * K + x] = 1;
        for (int64_t r = m - 1; r >= n; r--)
            for (int64_t x = 0; x < K; x++) Em[r * K + x] = Em[(r + 1) * K + x] * eg[(r + 1) * K + x];
        for (int64_t x = 0; x < K; x++) {
            w->D[ib * K + x] = eg[n * K + x] * Em[n * K + x];
            w->tame[ib * K + x] = Em[n * K + x] >= TAME ? 1 : 0;
        }
        if (!full) continue;
        for (int64_t x = 0; x < K; x++) En[n * K + x] = 1;
        for (int64_t r = n + 1; r <= m; r++)
            for (int64_t x = 0; x < K; x++) En[r * K + x] = En[(r - 1) * K + x] * eg[r * K + x];
    }
    real *pre = w->vec, *suf = w->vec + K, *acc = w->vec + 2 * K;
    for (int64_t x = 0; x < K; x++) pre[x] = 1, suf[x] = 1;
    for (int64_t ib = 0; ib < nb; ib++) { /* Eg, forwards */
        int64_t n = ib * BC, e = imin(L, n + BC);
        if (full) {
            for (int64_t x = 0; x < K; x++) acc[x] = pre[x] * w->eg[n * K + x];
            for (int64_t r = n; r < e; r++)
                for (int64_t x = 0; x < K; x++) w->Eg[r * K + x] = w->En[r * K + x] * acc[x];
        }
        for (int64_t x = 0; x < K; x++) pre[x] *= w->D[ib * K + x];
    }
    if (!full) memcpy(w->Eg + (L - 1) * K, pre, (size_t)K * sizeof(real));
    for (int64_t ib = nb - 1; ib >= 0; ib--) { /* El, backwards */
        int64_t n = ib * BC, e = imin(L, n + BC);
        for (int64_t r = n; r < e; r++)
            for (int64_t x = 0; x < K; x++) w->El[r * K + x] = w->Em[r * K + x] * suf[x];
        for (int64_t x = 0; x < K; x++) suf[x] *= w->D[ib * K + x];
    }
    for (int64_t ib = 1; ib < nb && full; ib++) { /* mid */
        for (int64_t x = 0; x < K; x++) acc[x] = w->eg[ib * BC * K + x];
        for (int64_t jb = ib - 1; jb >= 0; jb--) {
            real *mid = w->mid + (ib * nbmax + jb) * K;
            for (int64_t x = 0; x < K; x++) {
                mid[x] = acc[x];
                acc[x] *= w->D[jb * K + x];
            }
        }
    }
}

/* Intra-chunk scores A (L×L, row stride C; zero above the diagonal inside the diagonal sub-blocks,
 * columns beyond a row's sub-block never read):  A_rs = scale Σ_j q_rj k_sj e^{G_rj − G_sj}, s ≤ r.
 * Row sub-block i (rows n..e−1) is one product A[n:e, 0:e] = Qn_i Kxᵀ with reference row n:
 *   Qn_r = scale q_r ⊙ En_r;  Kx_s = k_s ⊙ Em_s ⊙ mid[i][b(s)] (s < n),  Kx_s = k_s / En_s (s ≥ n,
 *   tame channels; 0 otherwise). Untamed channels of the diagonal sub-block are added element-wise
 *   with a running product P = e^{G_r − G_s}.
 * With bwd set (dA already masked to the lower triangle) also adds the whole intra-chunk part of
 * dq and the element-wise part of dk (chunk_dk adds the rest) into dqc, dkc. */
static void chunk_intra(chunk_ws *w, const real *q, const real *k, int64_t ldk, real scale, int64_t L,
                        int64_t K, int64_t C, int bwd) {
    int64_t nbmax = nbmax_of(C), nb = (L + BC - 1) / BC;
    for (int64_t r = 0; r < L; r++) {
        const real *qr = q + r * ldk, *En = w->En + r * K;
        real *Qn = w->Qn + r * K;
        for (int64_t x = 0; x < K; x++) Qn[x] = scale * qr[x] * En[x];
    }
    for (int64_t ib = 0; ib < nb; ib++) {
        int64_t n = ib * BC, e = imin(L, n + BC), bl = e - n;
        const real *tame = w->tame + ib * K;
        for (int64_t jb = 0; jb < ib; jb++) {
            const real *mid = w->mid + (ib * nbmax + jb) * K;
            for (int64_t s = jb * BC; s < jb * BC + BC; s++) {
                const real *ks = k + s * ldk, *Em = w->Em + s * K;
                real *Kx = w->Kx + s * K;
                for (int64_t x = 0; x < K; x++) Kx[x] = ks[x] * Em[x] * mid[x];
            }
        }
        for (int64_t s = n; s < e; s++) {
            const real *ks = k + s * ldk, *En = w->En + s * K;
            real *Kx = w->Kx + s * K;
            for (int64_t x = 0; x < K; x++) Kx[x] = tame[x] != 0 ? ks[x] / En[x] : 0;
        }
        kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)bl, (int)e, (int)K, 1, w->Qn + n * K,
              (int)K, w->Kx, (int)K, 0, w->A + n * C, (int)C);
        for (int64_t r = n; r < e; r++)
            for (int64_t s = r + 1; s < e; s++) w->A[r * C + s] = 0;
        if (bwd) {
            real *t = w->Qx + n * K; /* Qx rows n..e−1 are free until chunk_dk */
            kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)bl, (int)K, (int)e, scale,
                  w->dA + n * C, (int)C, w->Kx, (int)K, 0, t, (int)K);
            for (int64_t r = n; r < e; r++) {
                const real *En = w->En + r * K, *tr = t + (r - n) * K;
                real *dq = w->dqc + r * K;
                for (int64_t x = 0; x < K; x++) dq[x] += En[x] * tr[x];
            }
        }
        for (int64_t x = 0; x < K; x++) { /* untamed channels of the diagonal sub-block */
            if (tame[x] != 0) continue;
            for (int64_t s = n; s < e; s++) {
                real ks = k[s * ldk + x], P = 1;
                for (int64_t r = s; r < e && P != 0; r++) {
                    if (r > s) P *= w->eg[r * K + x];
                    real qr = q[r * ldk + x];
                    w->A[r * C + s] += scale * qr * ks * P;
                    if (bwd) {
                        real d = scale * w->dA[r * C + s] * P;
                        w->dqc[r * K + x] += d * ks;
                        w->dkc[s * K + x] += d * qr;
                    }
                }
            }
        }
    }
}

/* Kernel-product part of the intra-chunk dk (dA masked to the lower triangle): for column
 * sub-block j (rows n..e−1) with reference row m = e−1,
 *   dk_s += scale Em_s ⊙ Σ_{r ≥ n} dA_rs Qx_r,   Qx_r = q_r / Em_r (r in j, tame channels; else 0),
 *   Qx_r = q_r ⊙ En_r ⊙ mid[b(r)][j] (r ≥ e). */
static void chunk_dk(chunk_ws *w, const real *q, int64_t ldk, real scale, int64_t L, int64_t K,
                     int64_t C) {
    int64_t nbmax = nbmax_of(C), nb = (L + BC - 1) / BC;
    for (int64_t jb = 0; jb < nb; jb++) {
        int64_t n = jb * BC, e = imin(L, n + BC), bl = e - n;
        const real *tame = w->tame + jb * K;
        for (int64_t r = n; r < e; r++) {
            const real *qr = q + r * ldk, *Em = w->Em + r * K;
            real *Qx = w->Qx + r * K;
            for (int64_t x = 0; x < K; x++) Qx[x] = tame[x] != 0 ? qr[x] / Em[x] : 0;
        }
        for (int64_t r = e; r < L; r++) {
            const real *qr = q + r * ldk, *En = w->En + r * K;
            const real *mid = w->mid + ((r / BC) * nbmax + jb) * K;
            real *Qx = w->Qx + r * K;
            for (int64_t x = 0; x < K; x++) Qx[x] = qr[x] * En[x] * mid[x];
        }
        real *t = w->Kx; /* free after chunk_intra */
        kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)bl, (int)K, (int)(L - n), scale,
              w->dA + n * C + n, (int)C, w->Qx + n * K, (int)K, 0, t, (int)K);
        for (int64_t s = n; s < e; s++) {
            const real *Em = w->Em + s * K, *ts = t + (s - n) * K;
            real *dk = w->dkc + s * K;
            for (int64_t x = 0; x < K; x++) dk[x] += Em[x] * ts[x];
        }
    }
}

/* S ← diag(e^{G_{L−1}}) S + (k ⊙ El)ᵀ V over the chunk's rows (uses Kx). */
static void chunk_state(chunk_ws *w, real *S, const real *k, int64_t ldk, const real *v, int64_t ldv,
                        int64_t L, int64_t K, int64_t V) {
    for (int64_t r = 0; r < L; r++) {
        const real *kr = k + r * ldk, *El = w->El + r * K;
        real *Kx = w->Kx + r * K;
        for (int64_t x = 0; x < K; x++) Kx[x] = kr[x] * El[x];
    }
    const real *dL = w->Eg + (L - 1) * K;
    for (int64_t j = 0; j < K; j++)
        for (int64_t x = 0; x < V; x++) S[j * V + x] *= dL[j];
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)V, (int)L, 1, w->Kx, (int)K, v,
          (int)ldv, 1, S, (int)V);
}

/* Offset in hs of item i's first chunk state: hs is (NT,H,K,V), NT = hb_seq_chunks(...), chunk j of
 * sequence n at row hb_seq_first_chunk(n) + j (gla.h). */
static int64_t hs_base(const gla_args *a, int64_t i) {
    return (hb_seq_first_chunk(a->cu, a->T, a->C, i / a->H) * a->H + i % a->H) * a->K * a->V;
}

/* Forward over chunks c0, c0+1, … of item i, entering chunk c0 with state S0 (NULL: h0 or zeros; then
 * c0 = 0). Writes o when a->o is set. With keep, copies the state entering each chunk c to keep + c·ks
 * and, with `last`, the final state to keep + nc·ks (the backward's state pass). Leaves the final
 * state in w->S. */
static void chunk_forward(const gla_args *a, chunk_ws *w, int64_t i, int64_t c0, const real *S0, real *keep,
                          int64_t ks, int last) {
    int64_t K = a->K, V = a->V, C = a->C, T = item_len(a, i), HK = a->H * K, HV = a->H * V;
    if (S0)
        memcpy(w->S, S0, (size_t)(K * V) * sizeof(real));
    else
        state_init(w->S, a->h0, i, K * V);
    int64_t c = c0;
    for (int64_t t0 = c0 * C; t0 < T; t0 += C, c++) {
        int64_t L = imin(C, T - t0), bk = row(a, i, t0, K), bv = row(a, i, t0, V);
        if (t0 + C < T) {
            int64_t Ln = imin(C, T - t0 - C);
            prefetch_rows(a->gk + bk + C * HK, HK, Ln, K);
            prefetch_rows(a->k + bk + C * HK, HK, Ln, K);
            prefetch_rows(a->v + bv + C * HV, HV, Ln, V);
            if (a->o) prefetch_rows(a->q + bk + C * HK, HK, Ln, K);
        }
        pack_rows(w->kc, a->k + bk, HK, L, K);
        pack_rows(w->vc, a->v + bv, HV, L, V);
        if (keep) memcpy(keep + c * ks, w->S, (size_t)(K * V) * sizeof(real));
        chunk_gates(w, a->gk + bk, HK, L, K, C, a->o != NULL);
        if (a->o) {
            pack_rows(w->qc, a->q + bk, HK, L, K);
            for (int64_t r = 0; r < L; r++) { /* Qx = scale q ⊙ e^{G} */
                const real *qr = w->qc + r * K, *Eg = w->Eg + r * K;
                real *Qx = w->Qx + r * K;
                for (int64_t x = 0; x < K; x++) Qx[x] = a->scale * qr[x] * Eg[x];
            }
            kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, (int)V, (int)K, 1, w->Qx, (int)K,
                  w->S, (int)V, 0, w->oc, (int)V);
            chunk_intra(w, w->qc, w->kc, K, a->scale, L, K, C, 0);
            for (int64_t n = 0; n < L; n += BC) {
                int64_t e = imin(L, n + BC);
                kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(e - n), (int)V, (int)e, 1,
                      w->A + n * C, (int)C, w->vc, (int)V, 1, w->oc + n * V, (int)V);
            }
            for (int64_t r = 0; r < L; r++)
                memcpy(a->o + bv + r * HV, w->oc + r * V, (size_t)V * sizeof(real));
        }
        chunk_state(w, w->S, w->kc, K, w->vc, V, L, K, V);
    }
    if (keep && last) memcpy(keep + c * ks, w->S, (size_t)(K * V) * sizeof(real));
}

static void fwd_chunk_item(void *ctx, int64_t i) {
    const gla_args *a = ctx;
    chunk_ws w;
    ws_carve(&w, a->scratch + i * a->per_item, a->K, a->V, a->C);
    chunk_forward(a, &w, i, 0, NULL, a->hs ? a->hs + hs_base(a, i) : NULL, a->H * a->K * a->V, 0);
    if (a->ht) memcpy(a->ht + i * a->K * a->V, w.S, (size_t)(a->K * a->V) * sizeof(real));
}

static int fwd_chunk(real *o, real *ht, real *hs, const real *q, const real *k, const real *v, const real *gk,
                      const real *h0, real scale, const int64_t *cu, int64_t N, int64_t B, int64_t T,
                      int64_t H, int64_t K, int64_t V, int64_t C) {
    if (bad_dims(B, T, H, K, V, C) || hb_seqs_check(cu, N, B, T) || (T > 0 && (!o || !q || !k || !v || !gk)))
        return -1;
    const int64_t NS = hb_seq_count(cu, N, B);
    C = chunk_len(C, hb_seq_maxlen(cu, N, T));
    if (NS * H == 0) return 0;
    gla_args a = {.o = o, .ht = ht, .hs = hs, .q = q, .k = k, .v = v, .gk = gk, .h0 = h0, .cu = cu,
                  .scale = scale, .T = T, .H = H, .K = K, .V = V, .C = C, .per_item = ws_size(K, V, C, 0)};
    a.scratch = hb_malloc((size_t)(NS * H * a.per_item) * sizeof(real));
    if (!a.scratch) return -1;
    hb_parallel_for(NS * H, fwd_chunk_item, &a);
    free(a.scratch);
    return 0;
}

static void bwd_chunk_item(void *ctx, int64_t i) {
    const gla_args *a = ctx;
    int64_t K = a->K, V = a->V, C = a->C, T = item_len(a, i), HK = a->H * K, HV = a->H * V, KV = K * V;
    int64_t nc = (T + C - 1) / C;
    real scale = a->scale;
    chunk_ws w;
    ws_carve(&w, a->scratch + i * a->per_item, K, V, C);
    gla_args fa = *a;
    fa.o = NULL;
    const real *states, *htf; /* the state entering chunk c is states + c·ss; htf = ht (read with dht) */
    int64_t ss;
    if (a->hsin) { /* saved by the forward; ht (only with dht) = the last chunk's state update */
        states = a->hsin + hs_base(a, i), ss = a->H * KV;
        if (a->dht) chunk_forward(&fa, &w, i, nc > 0 ? nc - 1 : 0, nc > 0 ? states + (nc - 1) * ss : NULL, NULL, 0, 0);
        htf = w.S;
    } else { /* the state pass: w.states[c] = state entering chunk c; w.states[nc] = ht */
        chunk_forward(&fa, &w, i, 0, NULL, w.states, KV, 1);
        states = w.states, ss = KV, htf = w.states + nc * KV;
    }

    /* R (K): running reverse cumsum of ∂L/∂Γ, kept in w.S (free from here on). With hsin, htf is w.S
     * itself: R[j] overwrites element j only after row j (elements j·V ≥ j) has been read, and rows
     * j' > j start at j'·V > j, so no element is read after it was overwritten. */
    real *dS = w.dS, *R = w.S;
    for (int64_t j = 0; j < K; j++) {
        real s = 0;
        if (a->dht)
            for (int64_t x = 0; x < V; x++) s += a->dht[i * KV + j * V + x] * htf[j * V + x];
        R[j] = s;
    }
    if (a->dht)
        memcpy(dS, a->dht + i * KV, (size_t)KV * sizeof(real));
    else
        memset(dS, 0, (size_t)KV * sizeof(real));

    for (int64_t c = nc - 1; c >= 0; c--) {
        int64_t t0 = c * C, L = imin(C, T - t0), bk = row(a, i, t0, K), bv = row(a, i, t0, V);
        const real *S = states + c * ss;
        if (c > 0) { /* the rows of the next chunk walked */
            prefetch_rows(a->q + bk - C * HK, HK, C, K);
            prefetch_rows(a->k + bk - C * HK, HK, C, K);
            prefetch_rows(a->gk + bk - C * HK, HK, C, K);
            prefetch_rows(a->v + bv - C * HV, HV, C, V);
            prefetch_rows(a->do_ + bv - C * HV, HV, C, V);
            if (a->dq) prefetch_rows(a->dq + bk - C * HK, HK, C, K);
            if (a->dk) prefetch_rows(a->dk + bk - C * HK, HK, C, K);
            if (a->dgk) prefetch_rows(a->dgk + bk - C * HK, HK, C, K);
            if (a->dv) prefetch_rows(a->dv + bv - C * HV, HV, C, V);
        }
        real *q = w.qc, *k = w.kc, *v = w.vc, *dO = w.doc, *dvc = w.dvc;
        pack_rows(q, a->q + bk, HK, L, K);
        pack_rows(k, a->k + bk, HK, L, K);
        pack_rows(v, a->v + bv, HV, L, V);
        pack_rows(dO, a->do_ + bv, HV, L, V);
        chunk_gates(&w, a->gk + bk, HK, L, K, C, 1);
        /* dA = dO Vᵀ on the lower block triangle */
        for (int64_t n = 0; n < L; n += BC) {
            int64_t e = imin(L, n + BC);
            kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(e - n), (int)e, (int)V, 1, dO + n * V,
                  (int)V, v, (int)V, 0, w.dA + n * C, (int)C);
            for (int64_t r = n; r < e; r++)
                for (int64_t s = r + 1; s < e; s++) w.dA[r * C + s] = 0;
        }
        /* inter-chunk parts: dqc = scale e^{G} ⊙ (dO Sᵀ), dkc = El ⊙ (V dSᵀ) */
        kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L, (int)K, (int)V, scale, dO, (int)V, S,
              (int)V, 0, w.dqc, (int)K);
        kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L, (int)K, (int)V, 1, v, (int)V, dS,
              (int)V, 0, w.dkc, (int)K);
        for (int64_t x = 0; x < L * K; x++) {
            w.dqc[x] *= w.Eg[x];
            w.dkc[x] *= w.El[x];
        }
        if (a->dv) { /* dvc = (k ⊙ El) dS */
            for (int64_t x = 0; x < L * K; x++) w.Kx[x] = k[x] * w.El[x];
            kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, (int)V, (int)K, 1, w.Kx, (int)K,
                  dS, (int)V, 0, dvc, (int)V);
        }
        chunk_intra(&w, q, k, K, scale, L, K, C, 1);
        chunk_dk(&w, q, K, scale, L, K, C);
        if (a->dv) { /* dvc += Aᵀ dO, one product per column sub-block */
            for (int64_t n = 0; n < L; n += BC) {
                int64_t e = imin(L, n + BC);
                kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(e - n), (int)V, (int)(L - n), 1,
                      w.A + n * C + n, (int)C, dO + n * V, (int)V, 1, dvc + n * V, (int)V);
            }
            add_rows(a->dv + bv, HV, dvc, L, V);
        }
        /* gate gradient (reverse cumsum of q ⊙ dq − k ⊙ dk) and the q, k gradients */
        if (a->dgk)
            for (int64_t r = L - 1; r >= 0; r--) {
                const real *qr = q + r * K, *kr = k + r * K, *dqr = w.dqc + r * K, *dkr = w.dkc + r * K;
                real *dg = a->dgk + bk + r * HK;
                if (r >= 8)
                    for (int64_t x = 0; x < K; x += 64 / (int64_t)sizeof(real)) __builtin_prefetch(dg - 8 * HK + x, 1);
                for (int64_t x = 0; x < K; x++) {
                    R[x] += qr[x] * dqr[x] - kr[x] * dkr[x];
                    dg[x] += R[x];
                }
            }
        if (a->dq) add_rows(a->dq + bk, HK, w.dqc, L, K);
        if (a->dk) add_rows(a->dk + bk, HK, w.dkc, L, K);
        /* dS ← diag(e^{G_{L−1}}) dS + (scale q ⊙ e^{G})ᵀ dO */
        const real *dL = w.Eg + (L - 1) * K;
        for (int64_t j = 0; j < K; j++)
            for (int64_t x = 0; x < V; x++) dS[j * V + x] *= dL[j];
        for (int64_t x = 0; x < L * K; x++) w.Qx[x] = scale * q[x] * w.Eg[x];
        kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)V, (int)L, 1, w.Qx, (int)K, dO,
              (int)V, 1, dS, (int)V);
    }
    if (a->dh0)
        for (int64_t x = 0; x < KV; x++) a->dh0[i * KV + x] += dS[x];
}

static int bwd_chunk(real *dq, real *dk, real *dv, real *dgk, real *dh0, const real *do_,
                      const real *dht, const real *q, const real *k, const real *v, const real *gk,
                      const real *h0, const real *hs, real scale, const int64_t *cu, int64_t N, int64_t B,
                      int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    if (bad_dims(B, T, H, K, V, C) || hb_seqs_check(cu, N, B, T) || (T > 0 && (!do_ || !q || !k || !v || !gk)))
        return -1;
    const int64_t NS = hb_seq_count(cu, N, B), maxlen = hb_seq_maxlen(cu, N, T);
    C = chunk_len(C, maxlen);
    if (NS * H == 0) return 0;
    int64_t nc = (maxlen + C - 1) / C;
    gla_args a = {.dq = dq, .dk = dk, .dv = dv, .dgk = dgk, .dh0 = dh0, .do_ = do_, .dht = dht, .hsin = hs,
                  .q = q, .k = k, .v = v, .gk = gk, .h0 = h0, .cu = cu, .scale = scale,
                  .T = T, .H = H, .K = K, .V = V, .C = C, .per_item = ws_size(K, V, C, hs ? 0 : nc + 1)};
    a.scratch = hb_malloc((size_t)(NS * H * a.per_item) * sizeof(real));
    if (!a.scratch) return -1;
    hb_parallel_for(NS * H, bwd_chunk_item, &a);
    free(a.scratch);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Decode.
 * ------------------------------------------------------------------------------------------- */

static void step_item(void *ctx, int64_t i) {
    const gla_args *a = ctx;
    int64_t K = a->K, V = a->V;
    real *S = a->ht + i * K * V;
    rec_step(S, a->k + i * K, a->v + i * V, a->gk + i * K, K, V);
    rec_out(a->o + i * V, S, a->q + i * K, a->scale, K, V);
}

static int step(real *o, real *state, const real *q, const real *k, const real *v, const real *gk,
                 real scale, int64_t B, int64_t H, int64_t K, int64_t V) {
    if (bad_dims(B, 1, H, K, V, 1) || !o || !state || !q || !k || !v || !gk) return -1;
    gla_args a = {.o = o, .ht = state, .q = q, .k = k, .v = v, .gk = gk, .scale = scale,
                  .H = H, .K = K, .V = V};
    hb_parallel_for_work(B * H, hb_state_step_work(B * H, K, V), step_item, &a);
    return 0;
}

/* ---- the mixer descriptor's adapters (kernels/mixer.h) ------------------------------------------- */
/* dims "B T H K V"; inputs q, k, v, g (the per-key-channel log decay gk); scalar scale */
static int mixer_fwd_chunk(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *gk = a->in[3];
    real scale = (real)a->scalar[0];
    return fwd_chunk(a->o, a->ht, a->saved, q, k, v, gk, NULL, scale, a->cu_seqlens, a->N, B, T, H, K, V, a->chunk);
}
static int mixer_bwd_chunk(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *gk = a->in[3];
    real scale = (real)a->scalar[0];
    return bwd_chunk(a->din[0], a->din[1], a->din[2], a->din[3], NULL, a->dout, NULL, q, k, v, gk, NULL, a->saved,
                     scale, a->cu_seqlens, a->N, B, T, H, K, V, a->chunk);
}
static int mixer_fwd_recurrent(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *gk = a->in[3];
    real scale = (real)a->scalar[0];
    return fwd_ref(a->o, a->ht, q, k, v, gk, NULL, scale, a->cu_seqlens, a->N, B, T, H, K, V);
}
static int mixer_bwd_recurrent(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *gk = a->in[3];
    real scale = (real)a->scalar[0];
    return bwd_ref(a->din[0], a->din[1], a->din[2], a->din[3], NULL, a->dout, NULL, q, k, v, gk, NULL, scale,
                   a->cu_seqlens, a->N, B, T, H, K, V);
}
static int mixer_step(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *gk = a->in[3];
    real scale = (real)a->scalar[0];
    return step(a->o, a->state, q, k, v, gk, scale, B, H, K, V);
}

/* ---- the exported names, written out (this file is compiled twice: kernels/kreal.h) ---------------- */
#ifdef HB_KERNEL_F64
int gla_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                    const double *gk, const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                        int64_t B, int64_t T, int64_t H,
                    int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, gk, h0, scale, cu_seqlens, N, B, T, H, K, V);
}
int gla_bwd_ref_f64(double *dq, double *dk, double *dv, double *dgk, double *dh0, const double *do_,
                    const double *dht, const double *q, const double *k, const double *v, const double *gk,
                    const double *h0, double scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                        int64_t H, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, dgk, dh0, do_, dht, q, k, v, gk, h0, scale, cu_seqlens, N, B, T, H, K, V);
}
int gla_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k, const double *v,
                      const double *gk, const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                          int64_t B, int64_t T, int64_t H,
                      int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, gk, h0, scale, cu_seqlens, N, B, T, H, K, V, C);
}
int gla_bwd_chunk_f64(double *dq, double *dk, double *dv, double *dgk, double *dh0, const double *do_,
                      const double *dht, const double *q, const double *k, const double *v, const double *gk,
                      const double *h0, const double *hs, double scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, dgk, dh0, do_, dht, q, k, v, gk, h0, hs, scale, cu_seqlens, N, B, T, H, K, V, C);
}
int gla_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                 const double *gk, double scale, int64_t B, int64_t H, int64_t K, int64_t V) {
    return step(o, state, q, k, v, gk, scale, B, H, K, V);
}
int gla_mixer_fwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int gla_mixer_bwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int gla_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int gla_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int gla_mixer_step_f64(const hb_mixer_args_t *a) { return mixer_step(a); }
#else
int gla_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v, const float *gk,
                    const float *h0, float scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                        int64_t H, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, gk, h0, scale, cu_seqlens, N, B, T, H, K, V);
}
int gla_bwd_ref_f32(float *dq, float *dk, float *dv, float *dgk, float *dh0, const float *do_,
                    const float *dht, const float *q, const float *k, const float *v, const float *gk,
                    const float *h0, float scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                        int64_t H, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, dgk, dh0, do_, dht, q, k, v, gk, h0, scale, cu_seqlens, N, B, T, H, K, V);
}
int gla_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k, const float *v, const float *gk,
                      const float *h0, float scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                          int64_t H, int64_t K, int64_t V,
                      int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, gk, h0, scale, cu_seqlens, N, B, T, H, K, V, C);
}
int gla_bwd_chunk_f32(float *dq, float *dk, float *dv, float *dgk, float *dh0, const float *do_,
                      const float *dht, const float *q, const float *k, const float *v, const float *gk,
                      const float *h0, const float *hs, float scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, dgk, dh0, do_, dht, q, k, v, gk, h0, hs, scale, cu_seqlens, N, B, T, H, K, V, C);
}
int gla_step_f32(float *o, float *state, const float *q, const float *k, const float *v, const float *gk,
                 float scale, int64_t B, int64_t H, int64_t K, int64_t V) {
    return step(o, state, q, k, v, gk, scale, B, H, K, V);
}
int gla_mixer_fwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int gla_mixer_bwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int gla_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int gla_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int gla_mixer_step_f32(const hb_mixer_args_t *a) { return mixer_step(a); }
/* the chunk states hs that the chunked forward hands its backward: (NT,H,K,V), NT = hb_seq_chunks */
static int64_t mixer_saved_numel(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], K = a->dim[3], V = a->dim[4];
    return hb_seq_chunks(a->cu_seqlens, a->N, B, T, a->chunk) * H * K * V;
}
/* the descriptor (compiled once, with the float pass; it names the double entry points too) */
const hb_mixer_desc_t hb_mixer_gla = {
    .name = "gla",
    .dims = "B T H K V",
    .in = {{"q", "B T H K", HB_IN_GRAD},
           {"k", "B T H K", HB_IN_GRAD},
           {"v", "B T H V", HB_IN_GRAD},
           {"g", "B T H K", HB_IN_GRAD}},
    .scalar = {{"scale", 0, "K"}},
    .out = "B T H V",
    .state = "B H K V",
    .chunk = 64,
    .packed = 1,
    .saved_numel = mixer_saved_numel,
    .f32 = {gla_mixer_fwd_chunk_f32, gla_mixer_bwd_chunk_f32, gla_mixer_fwd_recurrent_f32,
            gla_mixer_bwd_recurrent_f32, gla_mixer_step_f32},
    .f64 = {gla_mixer_fwd_chunk_f64, gla_mixer_bwd_chunk_f64, gla_mixer_fwd_recurrent_f64,
            gla_mixer_bwd_recurrent_f64, gla_mixer_step_f64},
};
#endif
