/* kda.c — Kimi Delta Attention: the delta rule with a per-key-channel decay (fla/ops/kda).
 *
 * Shape letters: B batch rows, T tokens, H q/k heads, HV value heads (a multiple of H; value head j
 * reads q/k head h = j / (HV/H)), K key dim, V value dim, C chunk length, BC = 16 the secondary
 * sub-block. q, k (B,T,H,K) are l2-normalised by the caller; v, o (B,T,HV,V); g (B,T,HV,K);
 * beta (B,T,HV); states (K,V). Sequences are the B rows, or the N packed documents of cu_seqlens
 * (kernels/seqs.h): every work item walks one sequence from its own first token.
 *
 * Recurrence, per (sequence, value head), S_{−1} = h0 (or 0), γ_t = e^{g_t} ∈ R^K:
 *   S'_t = diag(γ_t) S_{t−1};   u_t = β_t (v_t − S'_tᵀ k_t);   S_t = S'_t + k_t u_tᵀ;
 *   o_t = S_tᵀ (scale q_t)
 *
 * Chunked form (fla's chunk_kda: the WY/UT transform of the delta rule with GLA's per-channel decay
 * inside it). In a chunk of rows r = 0..n−1 entered with state S, G_r = g_0 + … + g_r (per channel,
 * ≤ 0, non-increasing), L = n−1 the last row, and for s ≤ r the decay e^{G_r − G_s} (≤ 1). Unrolling
 * S'_r = diag(e^{G_r}) S + Σ_{s<r} diag(e^{G_r − G_s}) k_s u_sᵀ inside u_r gives
 *   (I + A) U = diag(β) R,    R = V − Kg S,    Kg_r = k_r ⊙ e^{G_r}
 *   A_rs   = β_r B_rs (s < r),   B_rs = Σ_x k_rx k_sx e^{G_rx − G_sx}                 (Akk of fla)
 *   M_rs   = scale Σ_x q_rx k_sx e^{G_rx − G_sx}  (s ≤ r, diagonal included)           (Aqk of fla)
 *   T = (I + A)^{−1} (blocked forward substitution),   U = T diag(β) R   (fla's u − w S, "v_new")
 *   O = Qg S + M U,   Qg_r = scale q_r ⊙ e^{G_r}
 *   S_next = diag(e^{G_L}) S + Klᵀ U,   Kl_r = k_r ⊙ e^{G_L − G_r}
 * Every product above is a kgemm on C×K, C×V, C×C or K×V blocks.
 *
 * Scores without e^{+G}: the rows are split into sub-blocks of BC rows; for row sub-block i (first
 * row n0) and columns s < n0 (earlier sub-blocks)
 *   M[i, :n0] = QR Bcᵀ,  B[i, :n0] = KR Bcᵀ,   QR_r = scale q_r ⊙ e^{G_r − G_n0},
 *   KR_r = k_r ⊙ e^{G_r − G_n0},   Bc_s = k_s ⊙ CF_s,  CF_s = e^{G_n0 − G_s}
 * (both factors ≤ 1: one kgemm per sub-block row and matrix). Inside a diagonal sub-block the pairs
 * s ≤ r are summed element-wise with the running product P_rs = Π_{s<u≤r} e^{g_u} (no division, no
 * exponent of a sum), as fla's token-parallel diagonal kernel does.
 * Every decay factor is a running product of e^{g} inside one sub-block (≤ BC − 1 factors, each ≤ 1)
 * times one exponential per sub-block anchor (e^{G_n0}, e^{G_L − G_m}, e^{G_n0 − G_m'}), the anchors
 * taken from cumulative sums kept in double, so a float difference of two large sums never loses the
 * small decays between them (see chunk_load). Accuracy of the f32 chunked form: that of the f32
 * reference (≈1e−6 relative, tests/test_kda.c).
 *
 * Chunked backward, chunks in reverse, dS = ∂L/∂S_next (starts at dht, or 0):
 *   dU  = Mᵀ dO + Kl dS;   dM = dO Uᵀ (s ≤ r);   dQg = dO Sᵀ;   dKl = U dSᵀ
 *   X   = Tᵀ dU (= ∂L/∂(diag(β)R));   dA = −X Uᵀ (s < r)   (dA = −Tᵀ dT Tᵀ with dT = dU (βR)ᵀ)
 *   dR  = diag(β) X;  dv = dR;  dβ_r = R_r·X_r + Σ_s dA_rs B_rs;  dB = diag(β) dA;  dKg = −dR Sᵀ
 *   dS ← diag(e^{G_L}) dS + Qgᵀ dO − Kgᵀ dR      (then ∂L/∂S entering the chunk; dh0 at the end)
 *   dq = scale e^{G} ⊙ dQg + (row side of M);   dk = e^{G} ⊙ dKg + e^{G_L−G} ⊙ dKl + (M, B sides)
 * Score gradients: for a score P_rs = Σ_x a_rx b_sx e^{G_rx − G_sx} with gradient dP,
 *   da_r = Σ_s dP_rs b_s ⊙ e^{G_r − G_s},  db_s = Σ_r dP_rs a_r ⊙ e^{G_r − G_s}
 * taken with the same sub-blocks (one kgemm for each side of each off-diagonal sub-block row, the
 * diagonal sub-blocks element-wise).
 * Gate gradient: every factor e^{x} passes (its gradient × the factor) to the G's in x: dG_r gains
 *   Qg⊙dQg + Kg⊙dKg − Kl⊙dKl (row r),  a_r ⊙ da_r − b_r ⊙ db_r (scores, r as row / as column),
 *   and dG_L gains e^{G_L} ⊙ rowsum(S ⊙ dS) + Σ_r Kl_r ⊙ dKl_r;   dg_t = Σ_{r ≥ t} dG_r in the chunk.
 * Terms that cancel exactly are left out of dG (the diagonal of M, where e^{G_r − G_r} = 1, and the
 * r = L term of Kl): in float32 their rounding would swamp dg when the decay is strong.
 *
 * The forward can save the state entering every chunk (hs); otherwise the backward reruns the state
 * pass of each value head first. Each chunk's q, k, v (and do) rows are copied into dense buffers
 * (strided by H·K they map to a few L1 sets and the block products thrash), and the next chunk's
 * rows are prefetched.
 *
 * Threads: forwards and the decode step run over (sequence, value head) pairs; backwards over
 * (sequence, q/k head) pairs, looping the value heads of the group inside, so dq and dk are
 * accumulated race-free in a fixed order. Scratch is allocated once per call, one slot per thread;
 * items are dealt to slots round-robin, so no item's arithmetic depends on the thread count.
 * Compiled twice (kreal.h): float → kda_*_f32, -DHB_KERNEL_F64 → kda_*_f64 (exported at the bottom).
 */
#include "kreal.h"
#include "alloc.h"
#include "kda.h"
#include "kmath.h"
#include "parallel.h"
#include "seqs.h"
#include <stdlib.h>
#include <string.h>

#define REF_SEG 64 /* checkpoint interval of the reference backward */
#define BC 16      /* secondary sub-block inside a chunk */
#define TRI_BLOCK 16

/* e^x for x ≤ 0 in loops GCC vectorises: hb_expf_edges (kmath.h) in float; libm exp in double. */
#ifdef HB_KERNEL_F64
#define gexp exp
#else
#define gexp hb_expf_edges
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Shared plumbing                                                                                */

typedef struct {
    real *o, *ht, *hs;                           /* forward outputs */
    real *dq, *dk, *dv, *dg, *dbeta, *dh0;       /* backward outputs (+=) */
    const real *dout, *dht, *q, *k, *v, *g, *beta, *h0, *hsin;
    real scale;
    const int64_t *cu; /* cu_seqlens or NULL */
    const int64_t *choff; /* first chunk of each sequence in hs (NULL when no hs is used) */
    int64_t T, H, HV, K, V, C, maxlen;
} args_t;

typedef void (*item_fn)(const args_t *a, int64_t item, real *scratch);

typedef struct {
    item_fn fn;
    const args_t *a;
    int64_t n_items, n_slots;
    size_t per_slot;
    real *scratch;
} slots_t;

static void slot_run(void *ctx, int64_t s) {
    const slots_t *sl = ctx;
    for (int64_t i = s; i < sl->n_items; i += sl->n_slots)
        sl->fn(sl->a, i, sl->scratch + (size_t)s * sl->per_slot);
}

/* Run fn over n_items work items with per_slot reals of scratch for each thread. */
static int run_items(item_fn fn, const args_t *a, int64_t n_items, size_t per_slot) {
    if (n_items <= 0) return 0;
    per_slot = (per_slot + 15) / 16 * 16; /* every slot as aligned as the block (work_t's doubles) */
    int64_t ns = hb_threads_get();
    if (ns > n_items) ns = n_items;
    if (ns < 1) ns = 1;
    real *scr = hb_malloc(((size_t)ns * per_slot + 1) * sizeof(real));
    if (!scr) return -1;
    slots_t sl = {fn, a, n_items, ns, per_slot, scr};
    hb_parallel_for(ns, slot_run, &sl);
    hb_free(scr);
    return 0;
}

static int bad_dims(int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return B < 0 || T < 0 || H < 1 || HV < 1 || K < 1 || V < 1 || HV % H != 0;
}

/* Checks shared by every full-sequence entry point; fills the geometry of a. */
static int setup(args_t *a, const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H,
                 int64_t HV, int64_t K, int64_t V, int64_t C) {
    if (bad_dims(B, T, H, HV, K, V) || C < 1 || hb_seqs_check(cu, N, B, T)) return -1;
    a->cu = cu, a->T = T, a->H = H, a->HV = HV, a->K = K, a->V = V;
    a->maxlen = hb_seq_maxlen(cu, N, T);
    a->C = C < a->maxlen ? C : (a->maxlen > 0 ? a->maxlen : 1); /* C ≥ every length: one chunk */
    return 0;
}

/* choff[n] = index of sequence n's first chunk in hs (n = 0..ns). Returns NULL on failure. */
static int64_t *chunk_offsets(const args_t *a, int64_t ns) {
    int64_t *off = hb_malloc((size_t)(ns + 1) * sizeof(int64_t));
    if (!off) return NULL;
    off[0] = 0;
    for (int64_t n = 0; n < ns; n++) {
        hb_seq_t s = hb_seq_get(a->cu, a->T, n);
        off[n + 1] = off[n] + (s.len + a->C - 1) / a->C;
    }
    return off;
}

/* x·y in 16 interleaved partial sums, so that GCC vectorises it without -ffast-math. */
static real dotv(const real *restrict x, const real *restrict y, int64_t n) {
    real acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int u = 0; u < 16; u++) acc[u] += x[i + u] * y[i + u];
    for (; i < n; i++) acc[i & 15] += x[i] * y[i];
    real s = 0;
    for (int u = 0; u < 16; u++) s += acc[u];
    return s;
}

/* C = alpha op(A) op(B) + beta C (row-major), skipping empty products. */
static void mm(int ta, int tb, int64_t m, int64_t n, int64_t k, real alpha, const real *A,
               int64_t lda, const real *B, int64_t ldb, real beta, real *Cm, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) Cm[i * ldc + j] = beta == 0 ? 0 : beta * Cm[i * ldc + j];
        return;
    }
    kgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m,
          (int)n, (int)k, alpha, A, (int)lda, B, (int)ldb, beta, Cm, (int)ldc);
}

/* S = h0[n, j] (or 0). */
static void init_state(real *S, const args_t *a, int64_t n, int64_t j) {
    const size_t kv = (size_t)(a->K * a->V);
    if (a->h0) memcpy(S, a->h0 + (size_t)(n * a->HV + j) * kv, kv * sizeof(real));
    else memset(S, 0, kv * sizeof(real));
}

/* ---------------------------------------------------------------------------------------------- */
/* Reference forward / backward                                                                   */

/* One token: S ← diag(e^{g}) S;  u = β (v − Sᵀ k);  S ← S + k uᵀ;  o = Sᵀ (scale q) if o != NULL. */
static void ref_step(real *S, real *u, real *o, const real *q, const real *k, const real *v,
                     const real *g, real beta, real scale, int64_t K, int64_t V) {
    for (int64_t i = 0; i < K; i++) {
        const real d = kexp(g[i]);
        real *Si = S + i * V;
        for (int64_t j = 0; j < V; j++) Si[j] *= d;
    }
    for (int64_t j = 0; j < V; j++) u[j] = 0;
    for (int64_t i = 0; i < K; i++) {
        const real ki = k[i], *Si = S + i * V;
        for (int64_t j = 0; j < V; j++) u[j] += ki * Si[j];
    }
    for (int64_t j = 0; j < V; j++) u[j] = beta * (v[j] - u[j]);
    for (int64_t i = 0; i < K; i++) {
        const real ki = k[i];
        real *Si = S + i * V;
        for (int64_t j = 0; j < V; j++) Si[j] += ki * u[j];
    }
    if (!o) return;
    for (int64_t j = 0; j < V; j++) o[j] = 0;
    for (int64_t i = 0; i < K; i++) {
        const real qi = scale * q[i], *Si = S + i * V;
        for (int64_t j = 0; j < V; j++) o[j] += qi * Si[j];
    }
}

/* Row pointers of token t of sequence s for q/k head h and value head j. */
#define QROW(a, s, t, h) (((s).start + (t)) * (a)->H + (h)) * (a)->K
#define VROW(a, s, t, j) (((s).start + (t)) * (a)->HV + (j)) * (a)->V
#define GROW(a, s, t, j) (((s).start + (t)) * (a)->HV + (j)) * (a)->K
#define BIDX(a, s, t, j) (((s).start + (t)) * (a)->HV + (j))

static void fwd_ref_item(const args_t *a, int64_t item, real *scr) {
    const int64_t HV = a->HV, K = a->K, V = a->V;
    const int64_t n = item / HV, j = item % HV, h = j / (HV / a->H);
    const hb_seq_t s = hb_seq_get(a->cu, a->T, n);
    real *S = scr, *u = scr + K * V;
    init_state(S, a, n, j);
    for (int64_t t = 0; t < s.len; t++)
        ref_step(S, u, a->o + VROW(a, s, t, j), a->q + QROW(a, s, t, h), a->k + QROW(a, s, t, h),
                 a->v + VROW(a, s, t, j), a->g + GROW(a, s, t, j), a->beta[BIDX(a, s, t, j)],
                 a->scale, K, V);
    if (a->ht) memcpy(a->ht + item * K * V, S, (size_t)(K * V) * sizeof(real));
}

static int fwd_ref(real *o, real *ht, const real *q, const real *k, const real *v, const real *g,
                   const real *beta, const real *h0, real scale, const int64_t *cu, int64_t N,
                   int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    args_t a = {.o = o, .ht = ht, .q = q, .k = k, .v = v, .g = g, .beta = beta, .h0 = h0,
                .scale = scale};
    if (setup(&a, cu, N, B, T, H, HV, K, V, 1) || (B * T > 0 && (!o || !q || !k || !v || !g || !beta)))
        return -1;
    return run_items(fwd_ref_item, &a, hb_seq_count(cu, N, B) * HV, (size_t)(K * V + V));
}

/* BPTT for one (sequence, q/k head), value heads of the group in turn. Step t backwards, with
 * S_p = S_{t−1}, γ = e^{g_t}, S' = diag(γ) S_p, w = v − S'ᵀk, u = β w, and dS = ∂L/∂S_t:
 *   dS += scale q doᵀ;  dq = scale S_t do;  du = dSᵀ k;  dk = dS u;  dβ = w·du;  dw = β du;  dv = dw;
 *   dk −= S' dw;  dS' = dS − k dwᵀ;  dg = rowsum(S' ⊙ dS');  dS_{t−1} = diag(γ) dS'. */
static void bwd_ref_item(const args_t *a, int64_t item, real *scr) {
    const int64_t H = a->H, HV = a->HV, K = a->K, V = a->V, KV = K * V;
    const int64_t n = item / H, h = item % H, grp = HV / H;
    const hb_seq_t s = hb_seq_get(a->cu, a->T, n);
    const int64_t nseg = (s.len + REF_SEG - 1) / REF_SEG;
    real *ck = scr, *buf = ck + ((a->maxlen + REF_SEG - 1) / REF_SEG) * KV;
    real *dS = buf + (REF_SEG + 1) * KV;
    real *w = dS + KV, *u = w + V, *du = u + V, *gam = du + V, *dqv = gam + K, *dkv = dqv + K;
    for (int64_t jj = 0; jj < grp; jj++) {
        const int64_t j = h * grp + jj;
        init_state(buf, a, n, j);
        for (int64_t t = 0; t < s.len; t++) {
            if (t % REF_SEG == 0) memcpy(ck + (t / REF_SEG) * KV, buf, (size_t)KV * sizeof(real));
            ref_step(buf, u, NULL, NULL, a->k + QROW(a, s, t, h), a->v + VROW(a, s, t, j),
                     a->g + GROW(a, s, t, j), a->beta[BIDX(a, s, t, j)], 0, K, V);
        }
        if (a->dht) memcpy(dS, a->dht + (n * HV + j) * KV, (size_t)KV * sizeof(real));
        else memset(dS, 0, (size_t)KV * sizeof(real));
        for (int64_t seg = nseg - 1; seg >= 0; seg--) {
            const int64_t t0 = seg * REF_SEG, ns = s.len - t0 < REF_SEG ? s.len - t0 : REF_SEG;
            memcpy(buf, ck + seg * KV, (size_t)KV * sizeof(real));
            for (int64_t i = 0; i < ns; i++) {
                const int64_t t = t0 + i;
                memcpy(buf + (i + 1) * KV, buf + i * KV, (size_t)KV * sizeof(real));
                ref_step(buf + (i + 1) * KV, u, NULL, NULL, a->k + QROW(a, s, t, h),
                         a->v + VROW(a, s, t, j), a->g + GROW(a, s, t, j),
                         a->beta[BIDX(a, s, t, j)], 0, K, V);
            }
            for (int64_t i = ns - 1; i >= 0; i--) {
                const int64_t t = t0 + i;
                const real *Sp = buf + i * KV, *St = buf + (i + 1) * KV;
                const real *qt = a->q + QROW(a, s, t, h), *kt = a->k + QROW(a, s, t, h);
                const real *vt = a->v + VROW(a, s, t, j), *dOt = a->dout + VROW(a, s, t, j);
                const real *gt = a->g + GROW(a, s, t, j), bet = a->beta[BIDX(a, s, t, j)];
                for (int64_t r = 0; r < K; r++) gam[r] = kexp(gt[r]);
                /* w = v − S'ᵀ k, u = β w */
                for (int64_t c = 0; c < V; c++) w[c] = 0;
                for (int64_t r = 0; r < K; r++) {
                    const real f = gam[r] * kt[r];
                    for (int64_t c = 0; c < V; c++) w[c] += f * Sp[r * V + c];
                }
                for (int64_t c = 0; c < V; c++) {
                    w[c] = vt[c] - w[c];
                    u[c] = bet * w[c];
                }
                /* o = S_tᵀ (scale q) */
                for (int64_t r = 0; r < K; r++) {
                    real acc = 0;
                    for (int64_t c = 0; c < V; c++) acc += St[r * V + c] * dOt[c];
                    dqv[r] = a->scale * acc;
                    const real sq = a->scale * qt[r];
                    for (int64_t c = 0; c < V; c++) dS[r * V + c] += sq * dOt[c];
                }
                /* S_t = S' + k uᵀ */
                for (int64_t c = 0; c < V; c++) du[c] = 0;
                for (int64_t r = 0; r < K; r++) {
                    real acc = 0;
                    for (int64_t c = 0; c < V; c++) {
                        acc += dS[r * V + c] * u[c];
                        du[c] += kt[r] * dS[r * V + c];
                    }
                    dkv[r] = acc;
                }
                /* u = β (v − S'ᵀ k) */
                real db = 0;
                for (int64_t c = 0; c < V; c++) db += w[c] * du[c], du[c] *= bet; /* du ← dw */
                for (int64_t r = 0; r < K; r++) {
                    real acc = 0, dgr = 0;
                    for (int64_t c = 0; c < V; c++) {
                        acc += Sp[r * V + c] * du[c];
                        dS[r * V + c] -= kt[r] * du[c];
                        dgr += Sp[r * V + c] * dS[r * V + c];
                    }
                    dkv[r] -= gam[r] * acc;
                    /* S' = diag(γ) S_{t−1} */
                    if (a->dg) a->dg[GROW(a, s, t, j) + r] += gam[r] * dgr;
                    for (int64_t c = 0; c < V; c++) dS[r * V + c] *= gam[r];
                }
                if (a->dq)
                    for (int64_t r = 0; r < K; r++) a->dq[QROW(a, s, t, h) + r] += dqv[r];
                if (a->dk)
                    for (int64_t r = 0; r < K; r++) a->dk[QROW(a, s, t, h) + r] += dkv[r];
                if (a->dv)
                    for (int64_t c = 0; c < V; c++) a->dv[VROW(a, s, t, j) + c] += du[c];
                if (a->dbeta) a->dbeta[BIDX(a, s, t, j)] += db;
            }
        }
        if (a->dh0)
            for (int64_t r = 0; r < KV; r++) a->dh0[(n * HV + j) * KV + r] += dS[r];
    }
}

static int bwd_ref(real *dq, real *dk, real *dv, real *dg, real *dbeta, real *dh0, const real *do_,
                   const real *dht, const real *q, const real *k, const real *v, const real *g,
                   const real *beta, const real *h0, real scale, const int64_t *cu, int64_t N,
                   int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    args_t a = {.dq = dq, .dk = dk, .dv = dv, .dg = dg, .dbeta = dbeta, .dh0 = dh0, .dout = do_,
                .dht = dht, .q = q, .k = k, .v = v, .g = g, .beta = beta, .h0 = h0,
                .scale = scale};
    if (setup(&a, cu, N, B, T, H, HV, K, V, 1) ||
        (B * T > 0 && (!do_ || !q || !k || !v || !g || !beta)))
        return -1;
    const int64_t nseg = (a.maxlen + REF_SEG - 1) / REF_SEG;
    const size_t per = (size_t)((nseg + REF_SEG + 2) * K * V + 3 * V + 3 * K);
    return run_items(bwd_ref_item, &a, hb_seq_count(cu, N, B) * H, per);
}

/* ---------------------------------------------------------------------------------------------- */
/* Chunked forward                                                                                */

/* Per-slot workspace of the chunked paths (C×C matrices with leading dimension C). */
typedef struct {
    double *G;                           /* (C,K) cumulative log decays, in double (see chunk_load) */
    real *q, *k, *v, *dO, *beta;         /* the chunk's rows, packed: (C,K) (C,K) (C,V) (C,V) (C) */
    real *eg, *Eg, *El, *RF, *Em;        /* (C,K) gate factors (see chunk_load) */
    real *E0;                            /* (K) scratch of chunk_load and sub_columns */
    real *QR, *KR, *Bc, *CF, *Qg, *Kg;   /* (C,K) operands */
    real *M, *Bm, *A, *Tm, *tmp;         /* (C,C) scores M (Aqk), B (Akk / β), A, T, scratch */
    real *R, *X, *U, *O;                 /* (C,V) R = V − Kg S, X = diag(β) R, U = T X, output */
    real *P;                             /* (K) running decay product */
    real *dM, *dA;                       /* (C,C) backward */
    real *dU, *dX;                       /* (C,V) */
    real *dQ, *dK, *dG, *T1, *T2, *Kl;   /* (C,K) */
    real *dB;                            /* (C) dβ of the chunk */
    real *S, *dS;                        /* (K,V) */
    real *states;                        /* (NCmax,K,V) recomputed chunk states */
} work_t;

static real *take(real *scr, size_t *off, int64_t n) {
    real *r = scr ? scr + *off : NULL;
    *off += (size_t)n;
    return r;
}

/* Carve the workspace from scr and return its size in reals (scr == NULL: only count). */
static size_t carve(work_t *w, real *scr, const args_t *a, int bwd, int states) {
    const int64_t C = a->C, K = a->K, V = a->V, CK = C * K, CV = C * V, CC = C * C;
    size_t o = 0;
    w->G = (double *)take(scr, &o, CK * (int64_t)(sizeof(double) / sizeof(real))); /* first: aligned */
    w->q = take(scr, &o, CK), w->k = take(scr, &o, CK), w->v = take(scr, &o, CV);
    w->beta = take(scr, &o, C);
    w->eg = take(scr, &o, CK), w->Eg = take(scr, &o, CK);
    w->El = take(scr, &o, CK), w->RF = take(scr, &o, CK), w->Em = take(scr, &o, CK);
    w->E0 = take(scr, &o, K);
    w->QR = take(scr, &o, CK), w->KR = take(scr, &o, CK), w->Bc = take(scr, &o, CK);
    w->CF = take(scr, &o, CK), w->Qg = take(scr, &o, CK), w->Kg = take(scr, &o, CK);
    w->M = take(scr, &o, CC), w->Bm = take(scr, &o, CC), w->A = take(scr, &o, CC);
    w->Tm = take(scr, &o, CC), w->tmp = take(scr, &o, CC);
    w->R = take(scr, &o, CV), w->X = take(scr, &o, CV), w->U = take(scr, &o, CV);
    w->O = take(scr, &o, CV);
    w->P = take(scr, &o, K);
    w->S = take(scr, &o, K * V);
    if (bwd) {
        w->dO = take(scr, &o, CV);
        w->dM = take(scr, &o, CC), w->dA = take(scr, &o, CC);
        w->dU = take(scr, &o, CV), w->dX = take(scr, &o, CV);
        w->dQ = take(scr, &o, CK), w->dK = take(scr, &o, CK), w->dG = take(scr, &o, CK);
        w->T1 = take(scr, &o, CK), w->T2 = take(scr, &o, CK), w->Kl = take(scr, &o, CK);
        w->dB = take(scr, &o, C);
        w->dS = take(scr, &o, K * V);
        if (states) w->states = take(scr, &o, ((a->maxlen + C - 1) / C) * K * V);
    }
    return o;
}

/* One chunk: rows t0..t0+n−1 of sequence s, q/k head h, value head j. */
typedef struct {
    hb_seq_t s;
    int64_t t0, n, h, j;
} chunk_t;

/* Prefetch (into L2) one row of D reals of a strided head slice. */
static void prefetch_row(const real *p, int64_t D) {
    for (int64_t x = 0; x < D; x += 64 / (int64_t)sizeof(real)) __builtin_prefetch(p + x, 0, 2);
}

/* Copy the chunk's k, v, beta (and q, do when asked) rows into w and compute its gate factors
 *   eg_r = e^{g_r},   RF_r = e^{G_r − G_n0},   Em_r = e^{G_m − G_r}   (n0, m: first and last row of r's
 *   sub-block; running products of at most BC − 1 factors eg ≤ 1),
 *   Eg_r = e^{G_n0} RF_r = e^{G_r},   El_r = e^{G_L − G_m} Em_r = e^{G_L − G_r},
 * with one exponential per element (eg) and one per sub-block anchor; prefetch the rows of the chunk
 * `next` (NULL: none), one row per row copied. The cumulative log decays G_r = g_0 + … + g_r, needed
 * at the anchors, are summed in double in both builds: after a strongly decaying row G is large, and
 * a float difference of two such sums would lose the small decays between them. */
static void chunk_load(work_t *w, const args_t *a, const chunk_t *c, int with_q, int with_do,
                       const chunk_t *next) {
    const int64_t n = c->n, K = a->K, V = a->V, lq = a->H * K, lv = a->HV * V, lg = a->HV * K;
    const real *q = a->q + QROW(a, c->s, c->t0, c->h), *k = a->k + QROW(a, c->s, c->t0, c->h);
    const real *v = a->v + VROW(a, c->s, c->t0, c->j), *g = a->g + GROW(a, c->s, c->t0, c->j);
    const real *beta = a->beta + BIDX(a, c->s, c->t0, c->j);
    for (int64_t r = 0; r < n; r++) {
        if (next && r < next->n) { /* row r of the next chunk, spread over this loop */
            const int64_t t = next->t0 + r;
            prefetch_row(a->k + QROW(a, next->s, t, next->h), K);
            prefetch_row(a->v + VROW(a, next->s, t, next->j), V);
            prefetch_row(a->g + GROW(a, next->s, t, next->j), K);
            if (with_q) prefetch_row(a->q + QROW(a, next->s, t, next->h), K);
            if (with_do) prefetch_row(a->dout + VROW(a, next->s, t, next->j), V);
        }
        memcpy(w->k + r * K, k + r * lq, (size_t)K * sizeof(real));
        memcpy(w->v + r * V, v + r * lv, (size_t)V * sizeof(real));
        if (with_q) memcpy(w->q + r * K, q + r * lq, (size_t)K * sizeof(real));
        if (with_do) memcpy(w->dO + r * V, a->dout + VROW(a, c->s, c->t0 + r, c->j), (size_t)V * sizeof(real));
        w->beta[r] = beta[r * a->HV];
        const real *gr = g + r * lg;
        double *Gr = w->G + r * K;
        real *er = w->eg + r * K;
        for (int64_t x = 0; x < K; x++) Gr[x] = (r ? Gr[x - K] : 0) + gr[x], er[x] = gexp(gr[x]);
    }
    const double *GL = w->G + (n - 1) * K;
    real *E0 = w->E0;
    for (int64_t n0 = 0; n0 < n; n0 += BC) {
        const int64_t m = (n0 + BC < n ? n0 + BC : n) - 1;
        const double *Gn = w->G + n0 * K, *Gm = w->G + m * K;
        for (int64_t x = 0; x < K; x++) {
            w->RF[n0 * K + x] = 1, w->Em[m * K + x] = 1;
            E0[x] = gexp((real)Gn[x]);
        }
        for (int64_t r = n0 + 1; r <= m; r++)
            for (int64_t x = 0; x < K; x++) w->RF[r * K + x] = w->RF[(r - 1) * K + x] * w->eg[r * K + x];
        for (int64_t r = m - 1; r >= n0; r--)
            for (int64_t x = 0; x < K; x++) w->Em[r * K + x] = w->Em[(r + 1) * K + x] * w->eg[(r + 1) * K + x];
        for (int64_t r = n0; r <= m; r++)
            for (int64_t x = 0; x < K; x++) w->Eg[r * K + x] = E0[x] * w->RF[r * K + x];
        for (int64_t x = 0; x < K; x++) E0[x] = gexp((real)(GL[x] - Gm[x]));
        for (int64_t r = n0; r <= m; r++)
            for (int64_t x = 0; x < K; x++) w->El[r * K + x] = E0[x] * w->Em[r * K + x];
    }
}

/* Bc_s = k_s ⊙ CF_s with CF_s = e^{G_n0 − G_s} = e^{G_n0 − G_m} Em_s for s < n0 (m the last row of
 * s's sub-block): the columns of row sub-block n0. */
static void sub_columns(work_t *w, int64_t n0, int64_t K) {
    const double *Gn = w->G + n0 * K;
    for (int64_t j0 = 0; j0 < n0; j0 += BC) {
        const double *Gm = w->G + (j0 + BC - 1) * K;
        for (int64_t x = 0; x < K; x++) w->E0[x] = gexp((real)(Gn[x] - Gm[x]));
        for (int64_t s = j0; s < j0 + BC; s++) {
            const real *ks = w->k + s * K, *Em = w->Em + s * K, *mid = w->E0;
            real *CF = w->CF + s * K, *Bc = w->Bc + s * K;
            for (int64_t x = 0; x < K; x++) {
                CF[x] = mid[x] * Em[x];
                Bc[x] = ks[x] * CF[x];
            }
        }
    }
}

/* One pair r > s of a diagonal sub-block: P ← P ⊙ e^{g_r} (P = k_s ⊙ e^{G_r − G_s} on return) and
 * *bm = k_r·P, *m = q_r·P (q_r NULL: skipped), in 16 interleaved partial sums (vectorised). */
static void diag_pair_fwd(real *restrict P, const real *restrict er, const real *restrict kr,
                          const real *restrict qr, real *bm, real *m, int64_t K) {
    real ab[16] = {0}, am[16] = {0};
    int64_t x = 0;
    for (; x + 16 <= K; x += 16)
        for (int u = 0; u < 16; u++) {
            const real p = P[x + u] * er[x + u];
            P[x + u] = p;
            ab[u] += kr[x + u] * p;
            if (qr) am[u] += qr[x + u] * p;
        }
    for (; x < K; x++) {
        P[x] *= er[x];
        ab[x & 15] += kr[x] * P[x];
        if (qr) am[x & 15] += qr[x] * P[x];
    }
    real sb = 0, sm = 0;
    for (int u = 0; u < 16; u++) sb += ab[u], sm += am[u];
    *bm = sb;
    if (qr) *m = sm;
}

/* Intra-chunk scores (n×n, leading dimension C, zero above their triangles):
 *   Bm_rs = Σ_x k_rx k_sx e^{G_rx − G_sx} (s < r),   M_rs = scale Σ_x q_rx k_sx e^{G_rx − G_sx}
 *   (s ≤ r; only with want_q). Off-diagonal sub-blocks by kgemm, diagonal ones element-wise. */
static void chunk_scores(work_t *w, const args_t *a, int64_t n, int want_q) {
    const int64_t K = a->K, C = a->C;
    const real scale = a->scale;
    for (int64_t r = 0; r < n; r++) {
        const real *RF = w->RF + r * K, *kr = w->k + r * K, *qr = w->q + r * K;
        real *KR = w->KR + r * K, *QR = w->QR + r * K;
        for (int64_t x = 0; x < K; x++) KR[x] = kr[x] * RF[x];
        if (want_q)
            for (int64_t x = 0; x < K; x++) QR[x] = scale * qr[x] * RF[x];
    }
    for (int64_t r = 0; r < n; r++) {
        memset(w->Bm + r * C, 0, (size_t)n * sizeof(real));
        if (want_q) memset(w->M + r * C, 0, (size_t)n * sizeof(real));
    }
    real *P = w->P;
    for (int64_t n0 = 0; n0 < n; n0 += BC) {
        const int64_t e = n0 + BC < n ? n0 + BC : n, bl = e - n0;
        if (n0 > 0) {
            sub_columns(w, n0, K);
            mm(0, 1, bl, n0, K, 1, w->KR + n0 * K, K, w->Bc, K, 0, w->Bm + n0 * C, C);
            if (want_q) mm(0, 1, bl, n0, K, 1, w->QR + n0 * K, K, w->Bc, K, 0, w->M + n0 * C, C);
        }
        for (int64_t s = n0; s < e; s++) {
            const real *ks = w->k + s * K;
            if (want_q) w->M[s * C + s] = scale * dotv(w->q + s * K, ks, K);
            for (int64_t x = 0; x < K; x++) P[x] = ks[x];
            for (int64_t r = s + 1; r < e; r++) { /* P = k_s ⊙ e^{G_r − G_s} */
                real m = 0;
                diag_pair_fwd(P, w->eg + r * K, w->k + r * K, want_q ? w->q + r * K : NULL,
                              w->Bm + r * C + s, &m, K);
                if (want_q) w->M[r * C + s] = scale * m;
            }
        }
    }
}

/* T = (I + A)^{−1} for A strictly lower triangular (n×n, leading dimension C), block by block
 * (TRI_BLOCK rows): a diagonal block by forward substitution (row r of T_II is
 * e_r − Σ_{m<r} A_rm T_m), the block row left of it from (I + A) T = I as
 * T[I, :I0] = −T_II (A[I, :I0] T[:I0, :I0]), two kgemms. tmp is (C,C) scratch. */
static void tri_inverse(real *Tm, const real *A, real *tmp, int64_t n, int64_t C) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t s = 0; s < n; s++) Tm[r * C + s] = r == s;
    for (int64_t i0 = 0; i0 < n; i0 += TRI_BLOCK) {
        const int64_t bi = n - i0 < TRI_BLOCK ? n - i0 : TRI_BLOCK;
        for (int64_t r = i0; r < i0 + bi; r++) {
            real *Tr = Tm + r * C;
            for (int64_t m = i0; m < r; m++) {
                const real arm = A[r * C + m], *Tmr = Tm + m * C;
                for (int64_t s = i0; s <= m; s++) Tr[s] -= arm * Tmr[s];
            }
        }
        if (i0 == 0) continue;
        mm(0, 0, bi, i0, i0, 1, A + i0 * C, C, Tm, C, 0, tmp, C);
        mm(0, 0, bi, i0, bi, -1, Tm + i0 * C + i0, C, tmp, C, 0, Tm + i0 * C, C);
    }
}

/* The WY quantities of a chunk entered with state S: scores, A = diag(β) Bm, T = (I + A)^{−1},
 * Kg = k ⊙ e^{G}, R = V − Kg S, X = diag(β) R, U = T X. */
static void chunk_prep(work_t *w, const args_t *a, int64_t n, const real *S, int want_q) {
    const int64_t C = a->C, K = a->K, V = a->V;
    chunk_scores(w, a, n, want_q);
    for (int64_t r = 0; r < n; r++) {
        const real br = w->beta[r];
        for (int64_t s = 0; s < n; s++) w->A[r * C + s] = br * w->Bm[r * C + s];
    }
    tri_inverse(w->Tm, w->A, w->tmp, n, C);
    for (int64_t r = 0; r < n * K; r++) w->Kg[r] = w->k[r] * w->Eg[r];
    memcpy(w->R, w->v, (size_t)(n * V) * sizeof(real));
    mm(0, 0, n, V, K, -1, w->Kg, K, S, V, 1, w->R, V);
    for (int64_t r = 0; r < n; r++)
        for (int64_t x = 0; x < V; x++) w->X[r * V + x] = w->beta[r] * w->R[r * V + x];
    mm(0, 0, n, V, n, 1, w->Tm, C, w->X, V, 0, w->U, V);
}

/* S ← diag(e^{G_L}) S + Klᵀ U with Kl = k ⊙ e^{G_L − G} (built in Kl). */
static void chunk_state(work_t *w, const args_t *a, int64_t n, real *S, real *Kl) {
    const int64_t K = a->K, V = a->V;
    for (int64_t r = 0; r < n * K; r++) Kl[r] = w->k[r] * w->El[r];
    const real *EL = w->Eg + (n - 1) * K;
    for (int64_t i = 0; i < K; i++)
        for (int64_t x = 0; x < V; x++) S[i * V + x] *= EL[i];
    mm(1, 0, K, V, n, 1, Kl, K, w->U, V, 1, S, V);
}

static chunk_t chunk_of(const args_t *a, hb_seq_t s, int64_t ci, int64_t h, int64_t j) {
    chunk_t c = {s, ci * a->C, 0, h, j};
    c.n = s.len - c.t0 < a->C ? s.len - c.t0 : a->C;
    return c;
}

static void fwd_chunk_item(const args_t *a, int64_t item, real *scr) {
    const int64_t HV = a->HV, K = a->K, V = a->V, KV = K * V;
    const int64_t n = item / HV, j = item % HV, h = j / (HV / a->H);
    const hb_seq_t s = hb_seq_get(a->cu, a->T, n);
    const int64_t nc = (s.len + a->C - 1) / a->C;
    work_t w;
    carve(&w, scr, a, 0, 0);
    real *S = w.S;
    init_state(S, a, n, j);
    for (int64_t ci = 0; ci < nc; ci++) {
        const chunk_t c = chunk_of(a, s, ci, h, j), next = chunk_of(a, s, ci + 1, h, j);
        const int64_t L = c.n;
        chunk_load(&w, a, &c, 1, 0, ci + 1 < nc ? &next : NULL);
        if (a->hs) memcpy(a->hs + ((a->choff[n] + ci) * HV + j) * KV, S, (size_t)KV * sizeof(real));
        chunk_prep(&w, a, L, S, 1);
        /* O = Qg S + M U */
        for (int64_t r = 0; r < L * K; r++) w.Qg[r] = a->scale * w.q[r] * w.Eg[r];
        mm(0, 0, L, V, K, 1, w.Qg, K, S, V, 0, w.O, V);
        mm(0, 0, L, V, L, 1, w.M, a->C, w.U, V, 1, w.O, V);
        for (int64_t r = 0; r < L; r++)
            memcpy(a->o + VROW(a, s, c.t0 + r, j), w.O + r * V, (size_t)V * sizeof(real));
        chunk_state(&w, a, L, S, w.Bc);
    }
    if (a->ht) memcpy(a->ht + item * KV, S, (size_t)KV * sizeof(real));
}

static int fwd_chunk(real *o, real *ht, real *hs, const real *q, const real *k, const real *v,
                     const real *g, const real *beta, const real *h0, real scale,
                     const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H, int64_t HV,
                     int64_t K, int64_t V, int64_t C) {
    args_t a = {.o = o, .ht = ht, .hs = hs, .q = q, .k = k, .v = v, .g = g, .beta = beta,
                .h0 = h0, .scale = scale};
    if (setup(&a, cu, N, B, T, H, HV, K, V, C) ||
        (B * T > 0 && (!o || !q || !k || !v || !g || !beta)))
        return -1;
    const int64_t ns = hb_seq_count(cu, N, B);
    int64_t *off = NULL;
    if (hs && !(off = chunk_offsets(&a, ns))) return -1;
    a.choff = off;
    work_t w;
    int rc = run_items(fwd_chunk_item, &a, ns * HV, carve(&w, NULL, &a, 0, 0));
    hb_free(off);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Chunked backward                                                                               */

/* Backward of one pair r > s of a diagonal sub-block, with cq = ∂L/∂M_rs, ck = ∂L/∂Bm_rs and
 * P ← P ⊙ e^{g_r} = e^{G_r − G_s}: the q_r, k_r (row) and k_s (column) gradients and ±dG. */
static void diag_pair_bwd(real *restrict dQr, real *restrict dKr, real *restrict dKs,
                          real *restrict dGr, real *restrict dGs, real *restrict P,
                          const real *restrict er, const real *restrict qr, const real *restrict kr,
                          const real *restrict ks, real cq, real ck, int64_t K) {
    for (int64_t x = 0; x < K; x++) {
        const real p = P[x] * er[x];
        P[x] = p;
        const real kp = ks[x] * p, wv = (cq * qr[x] + ck * kr[x]) * p, z = wv * ks[x];
        dQr[x] += cq * kp;
        dKr[x] += ck * kp;
        dKs[x] += wv;
        dGr[x] += z;
        dGs[x] -= z;
    }
}

/* Backward of one chunk of L rows entered with state S (see the top comment). On entry w->dS =
 * ∂L/∂S_next; on exit ∂L/∂S. Leaves the chunk's gradients in w->dQ, dK, dX (dv), dB (dβ) and dG
 * (dg, already reverse-summed); the caller adds them to the outputs. */
static void chunk_bwd(work_t *w, const args_t *a, const chunk_t *c, const real *S) {
    const int64_t L = c->n;
    const int64_t C = a->C, K = a->K, V = a->V;
    const real scale = a->scale;
    real *dS = w->dS, *dQ = w->dQ, *dK = w->dK, *dG = w->dG, *T1 = w->T1, *T2 = w->T2;
    real *dbeta = w->dB;
    chunk_prep(w, a, L, S, 1);
    for (int64_t r = 0; r < L * K; r++) {
        w->Qg[r] = scale * w->q[r] * w->Eg[r];
        w->Kl[r] = w->k[r] * w->El[r];
    }

    /* Output O = Qg S + M U and state S_next = diag(e^{G_L}) S + Klᵀ U. */
    mm(1, 0, L, V, L, 1, w->M, C, w->dO, V, 0, w->dU, V); /* dU = Mᵀ dO + Kl dS */
    mm(0, 0, L, V, K, 1, w->Kl, K, dS, V, 1, w->dU, V);
    mm(0, 1, L, K, V, 1, w->U, V, dS, V, 0, T1, K); /* dKl = U dSᵀ */
    {
        const real *EL = w->Eg + (L - 1) * K;
        real *dGL = dG + (L - 1) * K;
        for (int64_t x = 0; x < K; x++) dGL[x] = EL[x] * dotv(S + x * V, dS + x * V, V);
        for (int64_t r = 0; r < L; r++) {
            const real *El = w->El + r * K, *Kl = w->Kl + r * K, *t = T1 + r * K;
            real *dKr = dK + r * K, *dGr = dG + r * K;
            for (int64_t x = 0; x < K; x++) dKr[x] = El[x] * t[x];
            if (r == L - 1) continue; /* e^{G_L − G_L} = 1: the two terms cancel exactly */
            for (int64_t x = 0; x < K; x++) {
                const real z = Kl[x] * t[x];
                dGr[x] = -z;
                dGL[x] += z;
            }
        }
    }
    mm(0, 1, L, L, V, 1, w->dO, V, w->U, V, 0, w->dM, C); /* dM = dO Uᵀ (lower part used) */
    mm(0, 1, L, K, V, 1, w->dO, V, S, V, 0, T1, K);       /* dQg = dO Sᵀ */
    for (int64_t r = 0; r < L * K; r++) {
        dQ[r] = scale * w->Eg[r] * T1[r];
        dG[r] += w->Qg[r] * T1[r];
    }

    /* U = T X, X = diag(β) R, R = V − Kg S: dX = Tᵀ dU, dA = −dX Uᵀ. */
    mm(1, 0, L, V, L, 1, w->Tm, C, w->dU, V, 0, w->dX, V);
    mm(0, 1, L, L, V, -1, w->dX, V, w->U, V, 0, w->dA, C);
    for (int64_t r = 0; r < L; r++) {
        real *dXr = w->dX + r * V;
        dbeta[r] = dotv(w->R + r * V, dXr, V);
        for (int64_t x = 0; x < V; x++) dXr[x] *= w->beta[r]; /* dX ← dR = dv */
    }
    mm(0, 1, L, K, V, -1, w->dX, V, S, V, 0, T1, K); /* dKg = −dR Sᵀ */
    for (int64_t r = 0; r < L * K; r++) {
        dK[r] += w->Eg[r] * T1[r];
        dG[r] += w->Kg[r] * T1[r];
    }
    {   /* ∂L/∂S = diag(e^{G_L}) dS + Qgᵀ dO − Kgᵀ dR */
        const real *EL = w->Eg + (L - 1) * K;
        for (int64_t i = 0; i < K; i++)
            for (int64_t x = 0; x < V; x++) dS[i * V + x] *= EL[i];
        mm(1, 0, K, V, L, 1, w->Qg, K, w->dO, V, 1, dS, V);
        mm(1, 0, K, V, L, -1, w->Kg, K, w->dX, V, 1, dS, V);
    }

    /* A = diag(β) Bm: dβ_r += Σ_s dA_rs Bm_rs, dBm = diag(β) dA (kept in dA, strictly lower). */
    for (int64_t r = 0; r < L; r++) {
        real *dAr = w->dA + r * C;
        dbeta[r] += dotv(dAr, w->Bm + r * C, r);
        for (int64_t s = 0; s < r; s++) dAr[s] *= w->beta[r];
    }

    /* The gradient rows this chunk adds to, a few microseconds before the adds (at the chunk's start
     * the working set of its products would evict them again). */
    for (int64_t r = 0; r < L; r++) {
        const int64_t t = c->t0 + r;
        if (a->dq) prefetch_row(a->dq + QROW(a, c->s, t, c->h), K);
        if (a->dk) prefetch_row(a->dk + QROW(a, c->s, t, c->h), K);
        if (a->dv) prefetch_row(a->dv + VROW(a, c->s, t, c->j), V);
        if (a->dg) prefetch_row(a->dg + GROW(a, c->s, t, c->j), K);
    }

    /* Scores, off-diagonal sub-blocks: M[i,:n0] = QR Bcᵀ, Bm[i,:n0] = KR Bcᵀ. */
    for (int64_t n0 = BC; n0 < L; n0 += BC) {
        const int64_t e = n0 + BC < L ? n0 + BC : L, bl = e - n0;
        sub_columns(w, n0, K);
        real *t = T1 + n0 * K;
        mm(0, 0, bl, K, n0, 1, w->dM + n0 * C, C, w->Bc, K, 0, t, K); /* dQR */
        for (int64_t r = n0; r < e; r++)
            for (int64_t x = 0; x < K; x++) {
                dQ[r * K + x] += scale * w->RF[r * K + x] * T1[r * K + x];
                dG[r * K + x] += w->QR[r * K + x] * T1[r * K + x];
            }
        mm(0, 0, bl, K, n0, 1, w->dA + n0 * C, C, w->Bc, K, 0, t, K); /* dKR */
        for (int64_t r = n0; r < e; r++)
            for (int64_t x = 0; x < K; x++) {
                dK[r * K + x] += w->RF[r * K + x] * T1[r * K + x];
                dG[r * K + x] += w->KR[r * K + x] * T1[r * K + x];
            }
        mm(1, 0, n0, K, bl, 1, w->dM + n0 * C, C, w->QR + n0 * K, K, 0, T2, K); /* dBc */
        mm(1, 0, n0, K, bl, 1, w->dA + n0 * C, C, w->KR + n0 * K, K, 1, T2, K);
        for (int64_t r = 0; r < n0 * K; r++) {
            dK[r] += w->CF[r] * T2[r];
            dG[r] -= w->Bc[r] * T2[r];
        }
    }

    /* Scores, diagonal sub-blocks, element-wise with the running product P = e^{G_r − G_s}. */
    real *P = w->P;
    for (int64_t n0 = 0; n0 < L; n0 += BC) {
        const int64_t e = n0 + BC < L ? n0 + BC : L;
        for (int64_t s = n0; s < e; s++) {
            const real *ks = w->k + s * K, *qs = w->q + s * K;
            real *dKs = dK + s * K, *dGs = dG + s * K;
            const real cd = scale * w->dM[s * C + s]; /* diagonal of M: no decay, no dG */
            for (int64_t x = 0; x < K; x++) {
                dQ[s * K + x] += cd * ks[x];
                dKs[x] += cd * qs[x];
                P[x] = 1;
            }
            for (int64_t r = s + 1; r < e; r++)
                diag_pair_bwd(dQ + r * K, dK + r * K, dKs, dG + r * K, dGs, P, w->eg + r * K,
                              w->q + r * K, w->k + r * K, ks, scale * w->dM[r * C + s],
                              w->dA[r * C + s], K);
        }
    }

    /* dg_t = Σ_{r ≥ t} dG_r inside the chunk (G_r = g_0 + … + g_r). */
    for (int64_t r = L - 2; r >= 0; r--)
        for (int64_t x = 0; x < K; x++) dG[r * K + x] += dG[(r + 1) * K + x];
}

/* dst rows (ld apart) += src (L×D, contiguous). */
static void add_rows(real *dst, int64_t ld, const real *src, int64_t L, int64_t D) {
    for (int64_t r = 0; r < L; r++) {
        real *d = dst + r * ld;
        const real *x = src + r * D;
        for (int64_t j = 0; j < D; j++) d[j] += x[j];
    }
}

static void bwd_chunk_item(const args_t *a, int64_t item, real *scr) {
    const int64_t H = a->H, HV = a->HV, K = a->K, V = a->V, KV = K * V;
    const int64_t n = item / H, h = item % H, grp = HV / H;
    const hb_seq_t s = hb_seq_get(a->cu, a->T, n);
    const int64_t nc = (s.len + a->C - 1) / a->C;
    work_t w;
    carve(&w, scr, a, 1, a->hsin == NULL);
    for (int64_t jj = 0; jj < grp; jj++) {
        const int64_t j = h * grp + jj;
        const real *states; /* state entering chunk ci: states + ci * stride */
        int64_t stride = KV;
        if (a->hsin) {
            states = a->hsin + (a->choff[n] * HV + j) * KV;
            stride = HV * KV;
        } else { /* recompute the state pass */
            real *S = w.S;
            init_state(S, a, n, j);
            for (int64_t ci = 0; ci < nc; ci++) {
                const chunk_t c = chunk_of(a, s, ci, h, j), next = chunk_of(a, s, ci + 1, h, j);
                chunk_load(&w, a, &c, 0, 0, ci + 1 < nc ? &next : NULL);
                memcpy(w.states + ci * KV, S, (size_t)KV * sizeof(real));
                chunk_prep(&w, a, c.n, S, 0);
                chunk_state(&w, a, c.n, S, w.Bc);
            }
            states = w.states;
        }
        if (a->dht) memcpy(w.dS, a->dht + (n * HV + j) * KV, (size_t)KV * sizeof(real));
        else memset(w.dS, 0, (size_t)KV * sizeof(real));
        for (int64_t ci = nc - 1; ci >= 0; ci--) {
            const chunk_t c = chunk_of(a, s, ci, h, j), prev = chunk_of(a, s, ci - 1, h, j);
            const int64_t L = c.n;
            chunk_load(&w, a, &c, 1, 1, ci > 0 ? &prev : NULL);
            chunk_bwd(&w, a, &c, states + ci * stride);
            if (a->dq) add_rows(a->dq + QROW(a, s, c.t0, h), H * K, w.dQ, L, K);
            if (a->dk) add_rows(a->dk + QROW(a, s, c.t0, h), H * K, w.dK, L, K);
            if (a->dv) add_rows(a->dv + VROW(a, s, c.t0, j), HV * V, w.dX, L, V);
            if (a->dg) add_rows(a->dg + GROW(a, s, c.t0, j), HV * K, w.dG, L, K);
            if (a->dbeta)
                for (int64_t r = 0; r < L; r++) a->dbeta[BIDX(a, s, c.t0 + r, j)] += w.dB[r];
        }
        if (a->dh0)
            for (int64_t r = 0; r < KV; r++) a->dh0[(n * HV + j) * KV + r] += w.dS[r];
    }
}

static int bwd_chunk(real *dq, real *dk, real *dv, real *dg, real *dbeta, real *dh0,
                     const real *do_, const real *dht, const real *q, const real *k,
                     const real *v, const real *g, const real *beta, const real *h0,
                     const real *hs, real scale, const int64_t *cu, int64_t N, int64_t B,
                     int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    args_t a = {.dq = dq, .dk = dk, .dv = dv, .dg = dg, .dbeta = dbeta, .dh0 = dh0, .dout = do_,
                .dht = dht, .q = q, .k = k, .v = v, .g = g, .beta = beta, .h0 = h0, .hsin = hs,
                .scale = scale};
    if (setup(&a, cu, N, B, T, H, HV, K, V, C) ||
        (B * T > 0 && (!do_ || !q || !k || !v || !g || !beta)))
        return -1;
    const int64_t ns = hb_seq_count(cu, N, B);
    int64_t *off = NULL;
    if (hs && !(off = chunk_offsets(&a, ns))) return -1;
    a.choff = off;
    work_t w;
    int rc = run_items(bwd_chunk_item, &a, ns * H, carve(&w, NULL, &a, 1, hs == NULL));
    hb_free(off);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Decode step                                                                                    */

typedef struct {
    real *o, *state, *scr;
    const real *q, *k, *v, *g, *beta;
    real scale;
    int64_t H, HV, K, V;
} step_t;

static void step_item(void *ctx, int64_t item) {
    const step_t *a = ctx;
    const int64_t HV = a->HV, K = a->K, V = a->V;
    const int64_t b = item / HV, j = item % HV, h = j / (HV / a->H);
    ref_step(a->state + item * K * V, a->scr + item * V, a->o + item * V, a->q + (b * a->H + h) * K,
             a->k + (b * a->H + h) * K, a->v + item * V, a->g + item * K, a->beta[item], a->scale,
             K, V);
}

static int step(real *o, real *state, const real *q, const real *k, const real *v, const real *g,
                const real *beta, real scale, int64_t B, int64_t H, int64_t HV, int64_t K,
                int64_t V) {
    if (bad_dims(B, 1, H, HV, K, V) || (B > 0 && (!o || !state || !q || !k || !v || !g || !beta)))
        return -1;
    if (B == 0) return 0;
    real *scr = hb_malloc((size_t)(B * HV * V) * sizeof(real));
    if (!scr) return -1;
    step_t a = {o, state, scr, q, k, v, g, beta, scale, H, HV, K, V};
    hb_parallel_for_work(B * HV, hb_state_step_work(B * HV, K, V), step_item, &a);
    hb_free(scr);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The mixer descriptor's adapters (kernels/mixer.h)                                              */
/* dims "B T H HV K V" (HV value heads, a multiple of the H q/k heads); inputs q, k, v, g, beta in
 * fla's chunk_kda order; scalar scale; the chunked forward saves the chunk states hs
 * (kda_chunk_count(...),HV,K,V) for the chunked backward. Packed sequences: a->cu_seqlens / a->N go
 * straight to the kernels (the descriptor is packed). No initial state through the op (h0 = NULL). */
#define MIXER_DIMS(a)                                                                              \
    const int64_t B = (a)->dim[0], T = (a)->dim[1], H = (a)->dim[2], HV = (a)->dim[3],            \
                  K = (a)->dim[4], V = (a)->dim[5];                                                \
    const real *q = (a)->in[0], *k = (a)->in[1], *v = (a)->in[2], *g = (a)->in[3],                \
               *beta = (a)->in[4];                                                                 \
    const real scale = (real)(a)->scalar[0]

static int mixer_fwd_chunk(const hb_mixer_args_t *a) {
    MIXER_DIMS(a);
    return fwd_chunk(a->o, a->ht, a->saved, q, k, v, g, beta, NULL, scale, a->cu_seqlens, a->N, B, T,
                     H, HV, K, V, a->chunk);
}
static int mixer_bwd_chunk(const hb_mixer_args_t *a) {
    MIXER_DIMS(a);
    return bwd_chunk(a->din[0], a->din[1], a->din[2], a->din[3], a->din[4], NULL, a->dout, NULL, q, k,
                     v, g, beta, NULL, a->saved, scale, a->cu_seqlens, a->N, B, T, H, HV, K, V,
                     a->chunk);
}
static int mixer_fwd_recurrent(const hb_mixer_args_t *a) {
    MIXER_DIMS(a);
    return fwd_ref(a->o, a->ht, q, k, v, g, beta, NULL, scale, a->cu_seqlens, a->N, B, T, H, HV, K,
                   V);
}
static int mixer_bwd_recurrent(const hb_mixer_args_t *a) {
    MIXER_DIMS(a);
    return bwd_ref(a->din[0], a->din[1], a->din[2], a->din[3], a->din[4], NULL, a->dout, NULL, q, k,
                   v, g, beta, NULL, scale, a->cu_seqlens, a->N, B, T, H, HV, K, V);
}
static int mixer_step(const hb_mixer_args_t *a) {
    MIXER_DIMS(a);
    (void)T;
    return step(a->o, a->state, q, k, v, g, beta, scale, B, H, HV, K, V);
}
#undef MIXER_DIMS

/* ---------------------------------------------------------------------------------------------- */
/* Public names                                                                                   */

#ifdef HB_KERNEL_F64
int kda_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                    const double *g, const double *beta, const double *h0, double scale,
                    const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, g, beta, h0, scale, cu_seqlens, N, B, T, H, HV, K, V);
}
int kda_bwd_ref_f64(double *dq, double *dk, double *dv, double *dg, double *dbeta, double *dh0,
                    const double *do_, const double *dht, const double *q, const double *k,
                    const double *v, const double *g, const double *beta, const double *h0,
                    double scale, const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, dg, dbeta, dh0, do_, dht, q, k, v, g, beta, h0, scale, cu_seqlens,
                   N, B, T, H, HV, K, V);
}
int kda_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k,
                      const double *v, const double *g, const double *beta, const double *h0,
                      double scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, g, beta, h0, scale, cu_seqlens, N, B, T, H, HV, K, V, C);
}
int kda_bwd_chunk_f64(double *dq, double *dk, double *dv, double *dg, double *dbeta, double *dh0,
                      const double *do_, const double *dht, const double *q, const double *k,
                      const double *v, const double *g, const double *beta, const double *h0,
                      const double *hs, double scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, dg, dbeta, dh0, do_, dht, q, k, v, g, beta, h0, hs, scale,
                     cu_seqlens, N, B, T, H, HV, K, V, C);
}
int kda_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                 const double *g, const double *beta, double scale,
                 int64_t B, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return step(o, state, q, k, v, g, beta, scale, B, H, HV, K, V);
}
int kda_mixer_fwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int kda_mixer_bwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int kda_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int kda_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int kda_mixer_step_f64(const hb_mixer_args_t *a) { return mixer_step(a); }
#else
int kda_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                    const float *g, const float *beta, const float *h0, float scale,
                    const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, g, beta, h0, scale, cu_seqlens, N, B, T, H, HV, K, V);
}
int kda_bwd_ref_f32(float *dq, float *dk, float *dv, float *dg, float *dbeta, float *dh0,
                    const float *do_, const float *dht, const float *q, const float *k,
                    const float *v, const float *g, const float *beta, const float *h0,
                    float scale, const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, dg, dbeta, dh0, do_, dht, q, k, v, g, beta, h0, scale, cu_seqlens,
                   N, B, T, H, HV, K, V);
}
int kda_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k,
                      const float *v, const float *g, const float *beta, const float *h0,
                      float scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, g, beta, h0, scale, cu_seqlens, N, B, T, H, HV, K, V, C);
}
int kda_bwd_chunk_f32(float *dq, float *dk, float *dv, float *dg, float *dbeta, float *dh0,
                      const float *do_, const float *dht, const float *q, const float *k,
                      const float *v, const float *g, const float *beta, const float *h0,
                      const float *hs, float scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, dg, dbeta, dh0, do_, dht, q, k, v, g, beta, h0, hs, scale,
                     cu_seqlens, N, B, T, H, HV, K, V, C);
}
int kda_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                 const float *g, const float *beta, float scale,
                 int64_t B, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return step(o, state, q, k, v, g, beta, scale, B, H, HV, K, V);
}
int kda_mixer_fwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int kda_mixer_bwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int kda_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int kda_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int kda_mixer_step_f32(const hb_mixer_args_t *a) { return mixer_step(a); }
/* the chunk states hs (kda_chunk_count(...),HV,K,V) that the chunked forward hands its backward:
 * B·ceil(T/C), or Σ_n ceil(len_n/C) over packed documents */
static int64_t mixer_saved_numel(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], HV = a->dim[3], K = a->dim[4], V = a->dim[5];
    return kda_chunk_count(a->cu_seqlens, a->N, B, T, a->chunk) * HV * K * V;
}
/* the descriptor (compiled once, with the float pass; it names the double entry points too) */
const hb_mixer_desc_t hb_mixer_kda = {
    .name = "kda",
    .dims = "B T H HV K V",
    .in = {{"q", "B T H K", HB_IN_GRAD},
           {"k", "B T H K", HB_IN_GRAD},
           {"v", "B T HV V", HB_IN_GRAD},
           {"g", "B T HV K", HB_IN_GRAD},
           {"beta", "B T HV", HB_IN_GRAD}},
    .scalar = {{"scale", 0, "K"}},
    .out = "B T HV V",
    .state = "B HV K V",
    .multiple = {{"HV", "H"}},
    .chunk = 64,
    .packed = 1,
    .saved_numel = mixer_saved_numel,
    .f32 = {kda_mixer_fwd_chunk_f32, kda_mixer_bwd_chunk_f32, kda_mixer_fwd_recurrent_f32,
            kda_mixer_bwd_recurrent_f32, kda_mixer_step_f32},
    .f64 = {kda_mixer_fwd_chunk_f64, kda_mixer_bwd_chunk_f64, kda_mixer_fwd_recurrent_f64,
            kda_mixer_bwd_recurrent_f64, kda_mixer_step_f64},
};
#endif
