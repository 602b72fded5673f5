/* ssd.c — Mamba-2's SSD scan: linear attention with a scalar decay per (token, head), q/k shared by
 * groups of heads (see ssd.h for the interface and the Mamba-2 correspondence).
 *
 * Shape letters: B batch, T time, H heads, G groups (R = H/G heads per group), K state size, V head
 * dim, C chunk length, BC = 16 the secondary sub-block, L ≤ C the rows of the current chunk.
 * q, k (B,T,G,K); v, o (B,T,H,V); g (B,T,H); states (K,V) per (sequence, head).
 *
 * Recurrence, per (sequence, head h of group γ): S_{−1} = h0 (or 0),
 *   S_t = e^{g_t} S_{t−1} + k_t v_tᵀ,   o_t = S_tᵀ (scale q_t).
 * Reference backward (BPTT), dS = ∂L/∂S_t carried backwards from dht:
 *   dS += scale q_t do_tᵀ;  dq_t += scale S_t do_t;  dk_t += dS v_t;  dv_t += dSᵀ k_t;
 *   dg_t += e^{g_t} ⟨S_{t−1}, dS⟩;  dS ← e^{g_t} dS;  finally dh0 += dS.
 *
 * Chunked form (the SSD algorithm). In a chunk of rows r = 0..L−1 entered with state S, with the
 * chunk-local sums G_r = g_0 + … + g_r and the segment sums Σ_rs = g_{s+1} + … + g_r (s ≤ r, Σ_rr = 0):
 *   Λ_rs = e^{Σ_rs} (s ≤ r, 0 above),   M = scale (Q Kᵀ) ⊙ Λ
 *   O    = scale diag(e^{G}) Q S + M V
 *   S'   = e^{G_{L−1}} S + Kᵀ diag(e^{Σ_{L−1,r}}) V
 * Σ_rs is summed directly (row r = row r−1 + g_r, fla's segsum) rather than taken as G_r − G_s, so
 * no cumulative sum is ever subtracted from another (no cancellation when decays are strong) and every
 * exponential has an argument ≤ 0 (no e^{+G} however negative g is). Q Kᵀ, M V, dO Vᵀ, Mᵀ dO, dP K
 * and dPᵀ Q run over the lower block triangle of BC-row sub-blocks (the rest of C×C is never formed).
 *
 * Chunked backward, chunks in reverse, dS = ∂L/∂S' (from dht), dO the chunk's output gradient:
 *   dM  = dO Vᵀ;   dP = scale dM ⊙ Λ;   dQ += dP K;   dK += dPᵀ Q                       (intra)
 *   dV  = Mᵀ dO + diag(e^{Σ_{L−1,·}}) K dS                                              (intra + state)
 *   dOs = scale diag(e^{G}) dO;   dQ += dOs Sᵀ;   dK += diag(e^{Σ_{L−1,·}}) V dSᵀ       (inter + state)
 *   dS  ← e^{G_{L−1}} dS + Qᵀ dOs
 * and the gate gradient from every factor e^{x} (its gradient times the factor, onto each sum in x):
 *   ∂L/∂G_r      += dOs_r · (S_r-part)  = q_r · (dOs S ᵀ)_r                               (inter)
 *   ∂L/∂Σ_rs      = dM_rs M_rs (s < r): + onto G_r, − onto G_s                           (intra)
 *   ∂L/∂Σ_{L−1,r} = e^{Σ_{L−1,r}} k_rᵀ dS v_r (r < L−1): + onto G_{L−1}, − onto G_r      (state)
 *   ∂L/∂G_{L−1}  += e^{G_{L−1}} ⟨S, dS⟩;   dg_u = Σ_{r ≥ u} ∂L/∂G_r (within the chunk).
 * Terms without gate dependence (Λ_rr = 1, e^{Σ_{L−1,L−1}} = 1) are left out rather than added and
 * subtracted, so dg keeps its relative accuracy in float32 when the decay is strong.
 *
 * Heads of a group share q and k, hence Q Kᵀ and (summed over the heads) the dP products: a work item
 * is a block of HB heads of one group of one sequence, and the state-side products of its heads run
 * as one wide kgemm over the HB·V columns [S_h1 | S_h2 | …] (K × HB·V). A group is split into two
 * blocks (MIN_ITEMS) only when the call has a single (sequence, group) pair, so that B = 1, G = 1 still
 * keeps two threads busy; the split depends on the dimensions only, never on the thread count (more
 * blocks cost efficiency: Q Kᵀ and the dP products are shared by fewer heads, the kgemms are narrower,
 * and each extra block needs a partial dq, dk buffer). In the backward, the first block of a group adds
 * dq, dk directly and the others write per-block partial buffers, added afterwards in block order, so
 * every sum has a fixed order: results do not depend on the thread count.
 * Each chunk's q, k, v, do rows are first copied into dense buffers (strided by G·K or H·V they
 * thrash L1 and defeat the hardware prefetchers); gradients are added to the strided outputs once.
 * Compiled twice (kreal.h): float → *_f32, -DHB_KERNEL_F64 → *_f64.
 */
#include "kreal.h"
#include "alloc.h"
#include "kmath.h"
#include "parallel.h"
#include "seqs.h"
#include "ssd.h"
#include <stdlib.h>
#include <string.h>

#define BC 16        /* secondary sub-block rows */
#define MIN_ITEMS 2  /* split groups into head blocks below this many (sequence, group) pairs */

/* e^x for x ≤ 0 in loops GCC vectorises: hb_expf_edges (kmath.h) in float; libm exp in double. */
#ifdef HB_KERNEL_F64
#define gexp exp
#else
#define gexp hb_expf_edges
#endif

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

typedef struct {
    real *o, *ht, *hs, *dq, *dk, *dv, *dg, *dh0;
    real *pdq, *pdk;                          /* partial dq, dk of head blocks ≥ 1 (NB−1, B·T·G·K) */
    const real *q, *k, *v, *g, *h0, *do_, *dht, *hsin;
    const int64_t *cu, *choff;                /* cu_seqlens; first hs row of each sequence */
    real scale;
    int tiled;
    int64_t NS, B, T, H, G, R, K, V, C, Ce;   /* Ce = min(C, longest sequence): scratch rows */
    int64_t HB, NB;                           /* heads per block, blocks per group */
    int64_t ncmax;                            /* most chunks of one sequence */
} args_t;

/* Head index of the j-th head of group gi. */
static int64_t head_of(const args_t *a, int64_t gi, int64_t j) {
    return a->tiled ? j * a->G + gi : gi * a->R + j;
}

static int bad_dims(int64_t B, int64_t T, int64_t H, int64_t G, int64_t K, int64_t V, int tiled) {
    return B < 0 || T < 0 || H < 1 || G < 1 || K < 1 || V < 1 || H % G != 0 ||
           (tiled != 0 && tiled != 1);
}

/* ---------------------------------------------------------------------------------------------
 * Work items over per-thread scratch slots: slot s runs items s, s+n, … (fixed, so the arithmetic of
 * an item does not depend on the thread count).
 * ------------------------------------------------------------------------------------------- */

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

static int run_items(item_fn fn, const args_t *a, int64_t n_items, size_t per_slot) {
    if (n_items <= 0) return 0;
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

/* ---------------------------------------------------------------------------------------------
 * Rows and states.
 * ------------------------------------------------------------------------------------------- */

/* dst (L×D, row stride ldd) = the L rows of src that are lds apart (prefetching ahead). */
static void pack_rows(real *dst, int64_t ldd, const real *src, int64_t lds, int64_t L, int64_t D) {
    for (int64_t r = 0; r < L; r++) {
        if (r + 8 < L)
            for (int64_t x = 0; x < D; x += 64 / (int64_t)sizeof(real)) __builtin_prefetch(src + (r + 8) * lds + x);
        memcpy(dst + r * ldd, src + r * lds, (size_t)D * sizeof(real));
    }
}

/* dst rows (ldd apart) += src (L×D, row stride lds). */
static void add_rows(real *dst, int64_t ldd, const real *src, int64_t lds, int64_t L, int64_t D) {
    for (int64_t r = 0; r < L; r++) {
        real *d = dst + r * ldd;
        const real *x = src + r * lds;
        for (int64_t j = 0; j < D; j++) d[j] += x[j];
    }
}

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

/* Sequence n of the call, and the hs row of its first chunk. */
static hb_seq_t seq_of(const args_t *a, int64_t n) { return hb_seq_get(a->cu, a->T, n); }
static int64_t hs_row(const args_t *a, int64_t n) {
    return a->cu ? a->choff[n] : n * ((a->T + a->C - 1) / a->C);
}

/* ---------------------------------------------------------------------------------------------
 * Reference: the per-timestep recurrence and its BPTT backward.
 * ------------------------------------------------------------------------------------------- */

/* S = e^{g} S + k vᵀ. */
static void rec_step(real *S, const real *k, const real *v, real g, int64_t K, int64_t V) {
    const real d = kexp(g);
    for (int64_t i = 0; i < K; i++) {
        real *Si = S + i * V, ki = k[i];
        for (int64_t j = 0; j < V; j++) Si[j] = d * Si[j] + ki * v[j];
    }
}

/* o = Sᵀ (scale q). */
static void rec_out(real *o, const real *S, const real *q, real scale, int64_t K, int64_t V) {
    for (int64_t j = 0; j < V; j++) o[j] = 0;
    for (int64_t i = 0; i < K; i++) {
        const real qi = scale * q[i], *Si = S + i * V;
        for (int64_t j = 0; j < V; j++) o[j] += qi * Si[j];
    }
}

static void state_init(real *S, const real *h0, int64_t idx, int64_t KV) {
    if (h0) memcpy(S, h0 + idx * KV, (size_t)KV * sizeof(real));
    else memset(S, 0, (size_t)KV * sizeof(real));
}

/* item = (sequence n, head h) */
static void fwd_ref_item(const args_t *a, int64_t item, real *S) {
    const int64_t H = a->H, G = a->G, K = a->K, V = a->V, KV = K * V;
    const int64_t n = item / H, h = item % H, gi = a->tiled ? h % G : h / a->R;
    const hb_seq_t s = seq_of(a, n);
    state_init(S, a->h0, n * H + h, KV);
    for (int64_t t = 0; t < s.len; t++) {
        const int64_t tok = s.start + t;
        rec_step(S, a->k + (tok * G + gi) * K, a->v + (tok * H + h) * V, a->g[tok * H + h], K, V);
        rec_out(a->o + (tok * H + h) * V, S, a->q + (tok * G + gi) * K, a->scale, K, V);
    }
    if (a->ht) memcpy(a->ht + (n * H + h) * KV, S, (size_t)KV * sizeof(real));
}

/* Checkpoint spacing of the reference backward: ~sqrt(T). */
static int64_t ref_seg(int64_t T) {
    int64_t s = 1;
    while (s * s < T) s++;
    return s;
}

/* item = (sequence n, group gi); the R heads of the group in turn. */
static void bwd_ref_item(const args_t *a, int64_t item, real *scr) {
    const int64_t H = a->H, G = a->G, K = a->K, V = a->V, KV = K * V;
    const int64_t n = item / G, gi = item % G;
    const hb_seq_t s = seq_of(a, n);
    const int64_t Ls = ref_seg(hb_seq_maxlen(a->cu, a->NS, a->T)), len = s.len;
    const int64_t nseg = (len + Ls - 1) / Ls;
    real *ck = scr;                   /* nseg checkpoints: the state entering each segment */
    real *buf = ck + (nseg + 1) * KV; /* Ls + 1 states of the segment being walked */
    real *dS = buf + (Ls + 1) * KV;
    for (int64_t j = 0; j < a->R; j++) {
        const int64_t h = head_of(a, gi, j);
        real *S = buf;
        state_init(S, a->h0, n * H + h, KV);
        for (int64_t t = 0; t < len; t++) {
            if (t % Ls == 0) memcpy(ck + (t / Ls) * KV, S, (size_t)KV * sizeof(real));
            const int64_t tok = s.start + t;
            rec_step(S, a->k + (tok * G + gi) * K, a->v + (tok * H + h) * V, a->g[tok * H + h], K, V);
        }
        state_init(dS, a->dht, n * H + h, KV);
        for (int64_t sg = nseg - 1; sg >= 0; sg--) {
            const int64_t t0 = sg * Ls, t1 = imin(len, t0 + Ls);
            memcpy(buf, ck + sg * KV, (size_t)KV * sizeof(real)); /* buf[u] = S_{t0+u−1} */
            for (int64_t t = t0; t < t1; t++) {
                const int64_t tok = s.start + t;
                real *Sn = buf + (t - t0 + 1) * KV;
                memcpy(Sn, Sn - KV, (size_t)KV * sizeof(real));
                rec_step(Sn, a->k + (tok * G + gi) * K, a->v + (tok * H + h) * V, a->g[tok * H + h], K, V);
            }
            for (int64_t t = t1 - 1; t >= t0; t--) {
                const int64_t tok = s.start + t;
                const real *St = buf + (t - t0 + 1) * KV, *Sp = St - KV;
                const real *qt = a->q + (tok * G + gi) * K, *kt = a->k + (tok * G + gi) * K;
                const real *vt = a->v + (tok * H + h) * V, *dot = a->do_ + (tok * H + h) * V;
                const real gt = a->g[tok * H + h], e = kexp(gt);
                for (int64_t i = 0; i < K; i++) {
                    const real qi = a->scale * qt[i];
                    real *dSi = dS + i * V;
                    for (int64_t x = 0; x < V; x++) dSi[x] += qi * dot[x];
                }
                if (a->dq)
                    for (int64_t i = 0; i < K; i++) {
                        real acc = 0;
                        for (int64_t x = 0; x < V; x++) acc += St[i * V + x] * dot[x];
                        a->dq[(tok * G + gi) * K + i] += a->scale * acc;
                    }
                if (a->dk)
                    for (int64_t i = 0; i < K; i++) {
                        real acc = 0;
                        for (int64_t x = 0; x < V; x++) acc += dS[i * V + x] * vt[x];
                        a->dk[(tok * G + gi) * K + i] += acc;
                    }
                if (a->dv)
                    for (int64_t x = 0; x < V; x++) {
                        real acc = 0;
                        for (int64_t i = 0; i < K; i++) acc += dS[i * V + x] * kt[i];
                        a->dv[(tok * H + h) * V + x] += acc;
                    }
                if (a->dg) {
                    real acc = 0;
                    for (int64_t x = 0; x < KV; x++) acc += Sp[x] * dS[x];
                    a->dg[tok * H + h] += e * acc;
                }
                for (int64_t x = 0; x < KV; x++) dS[x] *= e;
            }
        }
        if (a->dh0)
            for (int64_t x = 0; x < KV; x++) a->dh0[(n * H + h) * KV + x] += dS[x];
    }
}

/* ---------------------------------------------------------------------------------------------
 * Chunked form: workspace and per-chunk pieces.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    real *Qc, *Kc;     /* Ce×K packed q, k rows of the chunk */
    real *QK;          /* Ce×Ce  Q Kᵀ on the lower block triangle */
    real *Lm, *M;      /* Ce×Ce  Λ and M of the current head */
    real *dM, *dPs;    /* Ce×Ce  dM of the current head; Σ_heads dP */
    real *Vg, *Og;     /* Ce×W   packed v (forward: then e^{Σ_{L−1,r}} ⊙ v) and o of the block's heads */
    real *dOg, *dOs;   /* Ce×W   packed do; scale e^{G} ⊙ do */
    real *KdS, *dVg;   /* Ce×W   K dS; dv */
    real *dQc, *dKc;   /* Ce×K   dq, dk of the chunk */
    real *tK;          /* Ce×K   per-head dq (inter part) */
    real *Sg, *dSg;    /* K×W    states [S_h1 | S_h2 | …] and their gradients */
    real *eG, *eL;     /* HB×Ce  e^{G_r}, e^{Σ_{L−1,r}} per head */
    real *seg, *dG, *colG; /* Ce */
    real *states;      /* (ncmax+1)×K×W chunk-entry states (backward without hs) */
} ws_t;

/* Carve the workspace out of p (NULL: only count). Returns the number of reals. */
static size_t ws_carve(ws_t *w, real *p, const args_t *a, int bwd, int keep_states) {
    const int64_t Ce = a->Ce, K = a->K, W = a->HB * a->V;
    real *base = p;
    size_t off = 0;
#define TAKE(field, n) do { if (p) w->field = base + off; off += (size_t)(n); } while (0)
    TAKE(Qc, Ce * K); TAKE(Kc, Ce * K); TAKE(QK, Ce * Ce); TAKE(Lm, Ce * Ce); TAKE(M, Ce * Ce);
    TAKE(Vg, Ce * W); TAKE(Og, Ce * W); TAKE(Sg, K * W);
    TAKE(eG, a->HB * Ce); TAKE(eL, a->HB * Ce); TAKE(seg, Ce);
    if (bwd) {
        TAKE(dM, Ce * Ce); TAKE(dPs, Ce * Ce); TAKE(dOg, Ce * W); TAKE(dOs, Ce * W);
        TAKE(KdS, Ce * W); TAKE(dVg, Ce * W); TAKE(dQc, Ce * K); TAKE(dKc, Ce * K);
        TAKE(tK, Ce * K); TAKE(dSg, K * W); TAKE(dG, Ce); TAKE(colG, Ce);
        if (keep_states) TAKE(states, (a->ncmax + 1) * K * W);
    }
#undef TAKE
    return off;
}

/* Cm[n:e, 0:e] = alpha A[n:e] Bmᵀ[:, 0:e] for every BC-row sub-block (lower block triangle). */
static void lower_nt(real *Cm, int64_t ldc, const real *A, int64_t lda, const real *Bm, int64_t ldb,
                     int64_t L, int64_t D) {
    for (int64_t n = 0; n < L; n += BC) {
        const int64_t e = imin(L, n + BC);
        kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(e - n), (int)e, (int)D, 1, A + n * lda,
              (int)lda, Bm, (int)ldb, 0, Cm + n * ldc, (int)ldc);
    }
}

/* Out[n:e] (+)= Lo[n:e, 0:e] X[0:e] per sub-block (Lo zero above the diagonal). */
static void lower_nn(real *Out, int64_t ldo, const real *Lo, int64_t ldl, const real *X, int64_t ldx,
                     int64_t L, int64_t D, real beta) {
    for (int64_t n = 0; n < L; n += BC) {
        const int64_t e = imin(L, n + BC);
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(e - n), (int)D, (int)e, 1, Lo + n * ldl,
              (int)ldl, X, (int)ldx, beta, Out + n * ldo, (int)ldo);
    }
}

/* Out[n:e] (+)= Lo[n:L, n:e]ᵀ X[n:L] per sub-block (the transposed lower-triangular product). */
static void lower_tn(real *Out, int64_t ldo, const real *Lo, int64_t ldl, const real *X, int64_t ldx,
                     int64_t L, int64_t D, real beta) {
    for (int64_t n = 0; n < L; n += BC) {
        const int64_t e = imin(L, n + BC);
        kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(e - n), (int)D, (int)(L - n), 1,
              Lo + n * ldl + n, (int)ldl, X + n * ldx, (int)ldx, beta, Out + n * ldo, (int)ldo);
    }
}

/* Gates of head slot j for the chunk's L rows (g rows ldg apart): e^{G_r} into eG, the lower
 * triangle of Λ into Lm (row r: Σ_rs summed from row r−1's), e^{Σ_{L−1,r}} into eL. */
static void chunk_gates(ws_t *w, int64_t j, const real *g, int64_t ldg, int64_t L, int64_t Ce) {
    real *restrict seg = w->seg, *eG = w->eG + j * Ce, *eL = w->eL + j * Ce;
    real G = 0;
    for (int64_t r = 0; r < L; r++) {
        const real gr = g[r * ldg];
        G += gr;
        eG[r] = gexp(G);
        real *restrict Lr = w->Lm + r * Ce;
        for (int64_t s = 0; s < r; s++) {
            seg[s] += gr;
            Lr[s] = gexp(seg[s]);
        }
        seg[r] = 0;
        Lr[r] = 1;
    }
    const real *Ll = w->Lm + (L - 1) * Ce;
    for (int64_t r = 0; r < L; r++) eL[r] = Ll[r];
}

/* M = scale (Q Kᵀ) ⊙ Λ on s ≤ r; zero on the rest of each diagonal sub-block. */
static void chunk_scores(ws_t *w, real scale, int64_t L, int64_t Ce) {
    for (int64_t r = 0; r < L; r++) {
        const int64_t e = imin(L, (r / BC) * BC + BC);
        const real *restrict QKr = w->QK + r * Ce, *restrict Lr = w->Lm + r * Ce;
        real *restrict Mr = w->M + r * Ce;
        for (int64_t s = 0; s <= r; s++) Mr[s] = scale * QKr[s] * Lr[s];
        for (int64_t s = r + 1; s < e; s++) Mr[s] = 0;
    }
}

/* Pack the chunk's q, k rows of group gi (tokens tok0..tok0+L−1) and form Q Kᵀ. */
static void chunk_qk(const args_t *a, ws_t *w, int64_t tok0, int64_t gi, int64_t L, int need_q) {
    const int64_t G = a->G, K = a->K;
    pack_rows(w->Kc, K, a->k + (tok0 * G + gi) * K, G * K, L, K);
    if (need_q) {
        pack_rows(w->Qc, K, a->q + (tok0 * G + gi) * K, G * K, L, K);
        lower_nt(w->QK, a->Ce, w->Qc, K, w->Kc, K, L, K);
    }
}

/* Item → (sequence, group, first head slot, number of heads). */
typedef struct {
    int64_t n, gi, j0, nh;
    hb_seq_t s;
} block_t;

static block_t block_of(const args_t *a, int64_t item) {
    block_t b;
    const int64_t blk = item % a->NB, sg = item / a->NB;
    b.n = sg / a->G, b.gi = sg % a->G;
    b.j0 = blk * a->HB, b.nh = imin(a->HB, a->R - b.j0);
    b.s = seq_of(a, b.n);
    return b;
}

/* Sg (K×W) ← the states of the block's heads from src (…,H,K,V) rows base·H + h (NULL: zeros). */
static void states_in(const args_t *a, const block_t *b, real *Sg, const real *src, int64_t base) {
    const int64_t K = a->K, V = a->V, W = a->HB * V;
    for (int64_t j = 0; j < b->nh; j++) {
        const int64_t h = head_of(a, b->gi, b->j0 + j);
        for (int64_t i = 0; i < K; i++) {
            real *d = Sg + i * W + j * V;
            if (src) memcpy(d, src + ((base * a->H + h) * K + i) * V, (size_t)V * sizeof(real));
            else memset(d, 0, (size_t)V * sizeof(real));
        }
    }
}

/* dst (…,H,K,V) rows base·H + h (+)= Sg. */
static void states_out(const args_t *a, const block_t *b, real *dst, const real *Sg, int64_t base,
                       int add) {
    const int64_t K = a->K, V = a->V, W = a->HB * V;
    for (int64_t j = 0; j < b->nh; j++) {
        const int64_t h = head_of(a, b->gi, b->j0 + j);
        for (int64_t i = 0; i < K; i++) {
            real *d = dst + ((base * a->H + h) * K + i) * V;
            const real *x = Sg + i * W + j * V;
            if (add)
                for (int64_t y = 0; y < V; y++) d[y] += x[y];
            else
                memcpy(d, x, (size_t)V * sizeof(real));
        }
    }
}

/* Pack the block's v rows into Vg (L × W, head j in columns j·V..). */
static void pack_heads(const args_t *a, const block_t *b, real *dst, const real *src, int64_t tok0,
                       int64_t L) {
    const int64_t H = a->H, V = a->V, W = a->HB * V;
    if (!a->tiled) { /* the block's heads are adjacent: one copy per row */
        pack_rows(dst, W, src + (tok0 * H + head_of(a, b->gi, b->j0)) * V, H * V, L, b->nh * V);
        return;
    }
    for (int64_t j = 0; j < b->nh; j++) {
        const int64_t h = head_of(a, b->gi, b->j0 + j);
        pack_rows(dst + j * V, W, src + (tok0 * H + h) * V, H * V, L, V);
    }
}

/* Sg ← e^{G_{L−1}} Sg + Kcᵀ (e^{Σ_{L−1,·}} ⊙ Vg): the state passed to the next chunk. Scales Vg in place. */
static void chunk_state(const args_t *a, const block_t *b, ws_t *w, int64_t L) {
    const int64_t K = a->K, V = a->V, W = a->HB * V, Ce = a->Ce, Wb = b->nh * V;
    for (int64_t j = 0; j < b->nh; j++) {
        const real *eL = w->eL + j * Ce, dl = w->eG[j * Ce + L - 1];
        for (int64_t r = 0; r < L; r++) {
            real *x = w->Vg + r * W + j * V;
            for (int64_t y = 0; y < V; y++) x[y] *= eL[r];
        }
        for (int64_t i = 0; i < K; i++) {
            real *x = w->Sg + i * W + j * V;
            for (int64_t y = 0; y < V; y++) x[y] *= dl;
        }
    }
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)Wb, (int)L, 1, w->Kc, (int)K, w->Vg,
          (int)W, 1, w->Sg, (int)W);
}

/* ---------------------------------------------------------------------------------------------
 * Chunked forward.
 * ------------------------------------------------------------------------------------------- */

static void fwd_chunk_item(const args_t *a, int64_t item, real *scr) {
    const int64_t H = a->H, V = a->V, K = a->K, C = a->C, Ce = a->Ce, W = a->HB * V;
    ws_t w;
    ws_carve(&w, scr, a, 0, 0);
    const block_t b = block_of(a, item);
    const int64_t Wb = b.nh * V, row0 = hs_row(a, b.n);
    states_in(a, &b, w.Sg, a->h0, b.n);
    for (int64_t c = 0, t0 = 0; t0 < b.s.len; c++, t0 += C) {
        const int64_t L = imin(C, b.s.len - t0), tok0 = b.s.start + t0;
        if (a->hs) states_out(a, &b, a->hs, w.Sg, row0 + c, 0);
        chunk_qk(a, &w, tok0, b.gi, L, 1);
        pack_heads(a, &b, w.Vg, a->v, tok0, L);
        /* O = Q S (all heads of the block at once), then per head: rows × scale e^{G_r}, + M V */
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, (int)Wb, (int)K, 1, w.Qc, (int)K, w.Sg,
              (int)W, 0, w.Og, (int)W);
        for (int64_t j = 0; j < b.nh; j++) {
            const int64_t h = head_of(a, b.gi, b.j0 + j);
            chunk_gates(&w, j, a->g + tok0 * H + h, H, L, Ce);
            chunk_scores(&w, a->scale, L, Ce);
            const real *eG = w.eG + j * Ce;
            for (int64_t r = 0; r < L; r++) {
                real *x = w.Og + r * W + j * V;
                const real f = a->scale * eG[r];
                for (int64_t y = 0; y < V; y++) x[y] *= f;
            }
            lower_nn(w.Og + j * V, W, w.M, Ce, w.Vg + j * V, W, L, V, 1);
            for (int64_t r = 0; r < L; r++)
                memcpy(a->o + ((tok0 + r) * H + h) * V, w.Og + r * W + j * V, (size_t)V * sizeof(real));
        }
        chunk_state(a, &b, &w, L);
    }
    if (a->ht) states_out(a, &b, a->ht, w.Sg, b.n, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Chunked backward.
 * ------------------------------------------------------------------------------------------- */

/* The state entering chunk c of the block's head slot j, read in place: from hs (row `row`, rows of V)
 * or from the state pass in w->states (rows of W). *ld receives its row stride. */
static const real *entry_state(const args_t *a, const block_t *b, const ws_t *w, int64_t c, int64_t row,
                               int64_t j, int64_t *ld) {
    const int64_t K = a->K, V = a->V;
    if (a->hsin) {
        *ld = V;
        return a->hsin + ((row * a->H + head_of(a, b->gi, b->j0 + j)) * K) * V;
    }
    *ld = a->HB * V;
    return w->states + c * K * a->HB * V + j * V;
}

/* Backward of chunk c (tokens tok0..tok0+L−1, hs row `row`) for the block's heads, with
 * w->dSg = ∂L/∂S'; leaves ∂L/∂S in w->dSg. dq, dk go to dqo, dko (rows G·K apart; += when add,
 * else =), dv and dg to the outputs. */
static void chunk_bwd(const args_t *a, const block_t *b, ws_t *w, int64_t c, int64_t row, int64_t tok0,
                      int64_t L, real *dqo, real *dko, int add) {
    const int64_t H = a->H, G = a->G, K = a->K, V = a->V, Ce = a->Ce, W = a->HB * V, Wb = b->nh * V;
    const real scale = a->scale;
    chunk_qk(a, w, tok0, b->gi, L, 1);
    pack_heads(a, b, w->Vg, a->v, tok0, L);
    pack_heads(a, b, w->dOg, a->do_, tok0, L);
    for (int64_t r = 0; r < L; r++) memset(w->dPs + r * Ce, 0, (size_t)imin(L, (r / BC) * BC + BC) * sizeof(real));
    /* K dS for all heads (state part of dv and of the gate gradient) */
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, (int)Wb, (int)K, 1, w->Kc, (int)K, w->dSg,
          (int)W, 0, w->KdS, (int)W);
    memset(w->dQc, 0, (size_t)(L * K) * sizeof(real));
    for (int64_t j = 0; j < b->nh; j++) {
        const int64_t h = head_of(a, b->gi, b->j0 + j);
        const real *Vj = w->Vg + j * V, *dOj = w->dOg + j * V;
        real *dG = w->dG, *colG = w->colG;
        chunk_gates(w, j, a->g + tok0 * H + h, H, L, Ce);
        chunk_scores(w, scale, L, Ce);
        const real *eG = w->eG + j * Ce, *eL = w->eL + j * Ce;
        int64_t lds;
        const real *Sj = entry_state(a, b, w, c, row, j, &lds);
        for (int64_t r = 0; r < L; r++) dG[r] = 0, colG[r] = 0;

        /* intra: dM = dO Vᵀ; dV = Mᵀ dO; dP = scale dM ⊙ Λ summed over heads; Σ_rs gate terms */
        lower_nt(w->dM, Ce, dOj, W, Vj, W, L, V);
        lower_tn(w->dVg + j * V, W, w->M, Ce, dOj, W, L, V, 0);
        for (int64_t r = 0; r < L; r++) {
            real *restrict dMr = w->dM + r * Ce, *restrict dPr = w->dPs + r * Ce;
            const real *restrict Mr = w->M + r * Ce, *restrict Lr = w->Lm + r * Ce;
            for (int64_t s = 0; s < r; s++) {
                const real dm = dMr[s], x = dm * Mr[s];
                dPr[s] += scale * dm * Lr[s];
                colG[s] += x;
                dMr[s] = x;
            }
            dPr[r] += scale * dMr[r];
            real acc[16] = {0};
            for (int64_t s = 0; s < r; s++) acc[s & 15] += dMr[s];
            for (int u = 0; u < 16; u++) dG[r] += acc[u];
        }

        /* inter: dOs = scale e^{G} ⊙ dO; dq += dOs Sᵀ; ∂/∂G_r += q_r · (dOs Sᵀ)_r */
        for (int64_t r = 0; r < L; r++) {
            const real f = scale * eG[r];
            const real *x = dOj + r * W;
            real *y = w->dOs + r * W + j * V;
            for (int64_t u = 0; u < V; u++) y[u] = f * x[u];
        }
        kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L, (int)K, (int)V, 1, w->dOs + j * V, (int)W,
              Sj, (int)lds, 0, w->tK, (int)K);
        for (int64_t r = 0; r < L; r++) {
            dG[r] += dotv(w->Qc + r * K, w->tK + r * K, K);
            real *d = w->dQc + r * K;
            const real *x = w->tK + r * K;
            for (int64_t i = 0; i < K; i++) d[i] += x[i];
        }

        /* state: dV += e^{Σ_{L−1,r}} (K dS)_r; Σ_{L−1,r} and G_{L−1} gate terms; Vg ← e^{Σ} ⊙ V */
        real zs = 0;
        for (int64_t r = 0; r < L; r++) {
            const real *kd = w->KdS + r * W + j * V;
            real *vr = w->Vg + r * W + j * V, *dvr = w->dVg + r * W + j * V;
            if (r < L - 1) {
                const real z = eL[r] * dotv(kd, vr, V);
                dG[r] -= z;
                zs += z;
            }
            for (int64_t u = 0; u < V; u++) dvr[u] += eL[r] * kd[u], vr[u] *= eL[r];
        }
        real sd = 0;
        for (int64_t i = 0; i < K; i++) sd += dotv(Sj + i * lds, w->dSg + i * W + j * V, V);
        dG[L - 1] += zs + eG[L - 1] * sd;

        if (a->dg) {
            real acc = 0;
            for (int64_t r = L - 1; r >= 0; r--) {
                acc += dG[r] - colG[r];
                a->dg[(tok0 + r) * H + h] += acc;
            }
        }
        if (a->dv)
            for (int64_t r = 0; r < L; r++) {
                real *d = a->dv + ((tok0 + r) * H + h) * V;
                const real *x = w->dVg + r * W + j * V;
                for (int64_t u = 0; u < V; u++) d[u] += x[u];
            }
    }
    /* dK = (e^{Σ} ⊙ V) dSᵀ + dPᵀ Q;  dQ += dP K */
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L, (int)K, (int)Wb, 1, w->Vg, (int)W, w->dSg,
          (int)W, 0, w->dKc, (int)K);
    lower_tn(w->dKc, K, w->dPs, Ce, w->Qc, K, L, K, 1);
    lower_nn(w->dQc, K, w->dPs, Ce, w->Kc, K, L, K, 1);
    /* dS ← e^{G_{L−1}} dS + Qᵀ dOs */
    for (int64_t j = 0; j < b->nh; j++) {
        const real dl = w->eG[j * Ce + L - 1];
        for (int64_t i = 0; i < K; i++) {
            real *x = w->dSg + i * W + j * V;
            for (int64_t y = 0; y < V; y++) x[y] *= dl;
        }
    }
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)Wb, (int)L, 1, w->Qc, (int)K, w->dOs,
          (int)W, 1, w->dSg, (int)W);
    const int64_t ld = G * K, off = (tok0 * G + b->gi) * K;
    if (dqo) {
        if (add) add_rows(dqo + off, ld, w->dQc, K, L, K);
        else
            for (int64_t r = 0; r < L; r++) memcpy(dqo + off + r * ld, w->dQc + r * K, (size_t)K * sizeof(real));
    }
    if (dko) {
        if (add) add_rows(dko + off, ld, w->dKc, K, L, K);
        else
            for (int64_t r = 0; r < L; r++) memcpy(dko + off + r * ld, w->dKc + r * K, (size_t)K * sizeof(real));
    }
}

static void bwd_chunk_item(const args_t *a, int64_t item, real *scr) {
    const int64_t V = a->V, K = a->K, C = a->C, W = a->HB * V, KW = K * W;
    ws_t w;
    ws_carve(&w, scr, a, 1, a->hsin == NULL);
    const block_t b = block_of(a, item);
    const int64_t nc = (b.s.len + C - 1) / C, row0 = hs_row(a, b.n), H = a->H;
    const int64_t blk = b.j0 / a->HB;
    if (!a->hsin) { /* state pass: w.states[c] = state entering chunk c */
        states_in(a, &b, w.Sg, a->h0, b.n);
        for (int64_t c = 0; c < nc; c++) {
            const int64_t t0 = c * C, L = imin(C, b.s.len - t0), tok0 = b.s.start + t0;
            memcpy(w.states + c * KW, w.Sg, (size_t)KW * sizeof(real));
            chunk_qk(a, &w, tok0, b.gi, L, 0);
            pack_heads(a, &b, w.Vg, a->v, tok0, L);
            for (int64_t j = 0; j < b.nh; j++)
                chunk_gates(&w, j, a->g + tok0 * H + head_of(a, b.gi, b.j0 + j), H, L, a->Ce);
            chunk_state(a, &b, &w, L);
        }
    }
    states_in(a, &b, w.dSg, a->dht, b.n);
    /* block 0 adds into dq, dk; block p ≥ 1 writes its partial buffer (summed after the items) */
    real *dqo = blk == 0 ? a->dq : a->dq ? a->pdq + (blk - 1) * a->B * a->T * a->G * K : NULL;
    real *dko = blk == 0 ? a->dk : a->dk ? a->pdk + (blk - 1) * a->B * a->T * a->G * K : NULL;
    for (int64_t c = nc - 1; c >= 0; c--) {
        const int64_t t0 = c * C, L = imin(C, b.s.len - t0), tok0 = b.s.start + t0;
        chunk_bwd(a, &b, &w, c, row0 + c, tok0, L, dqo, dko, blk == 0);
    }
    if (a->dh0) states_out(a, &b, a->dh0, w.dSg, b.n, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Entry points.
 * ------------------------------------------------------------------------------------------- */

/* The dimensions of a call. */
static void set_dims(args_t *a, const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H,
                     int64_t G, int64_t K, int64_t V) {
    a->cu = cu, a->B = B, a->T = T, a->H = H, a->G = G, a->R = H / G, a->K = K, a->V = V;
    a->NS = hb_seq_count(cu, N, B);
}

/* The chunked paths' extras: scratch rows, head blocks, and the first hs row of each document
 * (allocated when packed; release with hb_free). */
static int set_chunks(args_t *a, int64_t N, int64_t C) {
    const int64_t maxlen = hb_seq_maxlen(a->cu, N, a->T);
    a->C = C;
    a->Ce = imin(C, maxlen > 0 ? maxlen : 1);
    a->ncmax = (maxlen + C - 1) / C;
    const int64_t pairs = a->NS * a->G;
    int64_t nb = pairs >= MIN_ITEMS ? 1 : (MIN_ITEMS + pairs - 1) / (pairs > 0 ? pairs : 1);
    if (nb > a->R) nb = a->R;
    a->HB = (a->R + nb - 1) / nb;
    a->NB = (a->R + a->HB - 1) / a->HB;
    a->choff = NULL;
    if (a->cu) {
        int64_t *off = hb_malloc((size_t)(N + 1) * sizeof(int64_t));
        if (!off) return -1;
        off[0] = 0;
        for (int64_t n = 0; n < N; n++) off[n + 1] = off[n] + (a->cu[n + 1] - a->cu[n] + C - 1) / C;
        a->choff = off;
    }
    return 0;
}

static int fwd_ref(real *o, real *ht, const real *q, const real *k, const real *v, const real *g,
                   const real *h0, real scale, int tiled, const int64_t *cu, int64_t N, int64_t B,
                   int64_t T, int64_t H, int64_t G, int64_t K, int64_t V) {
    if (bad_dims(B, T, H, G, K, V, tiled) || hb_seqs_check(cu, N, B, T) ||
        (B * T > 0 && (!o || !q || !k || !v || !g)))
        return -1;
    args_t a = {.o = o, .ht = ht, .q = q, .k = k, .v = v, .g = g, .h0 = h0, .scale = scale, .tiled = tiled};
    set_dims(&a, cu, N, B, T, H, G, K, V);
    return run_items(fwd_ref_item, &a, a.NS * H, (size_t)(K * V));
}

static int bwd_ref(real *dq, real *dk, real *dv, real *dg, real *dh0, const real *do_,
                   const real *dht, const real *q, const real *k, const real *v, const real *g,
                   const real *h0, real scale, int tiled, const int64_t *cu, int64_t N, int64_t B,
                   int64_t T, int64_t H, int64_t G, int64_t K, int64_t V) {
    if (bad_dims(B, T, H, G, K, V, tiled) || hb_seqs_check(cu, N, B, T) ||
        (B * T > 0 && (!do_ || !q || !k || !v || !g)))
        return -1;
    args_t a = {.dq = dq, .dk = dk, .dv = dv, .dg = dg, .dh0 = dh0, .do_ = do_, .dht = dht, .q = q,
                .k = k, .v = v, .g = g, .h0 = h0, .scale = scale, .tiled = tiled};
    set_dims(&a, cu, N, B, T, H, G, K, V);
    const int64_t maxlen = hb_seq_maxlen(cu, N, T), Ls = ref_seg(maxlen);
    const size_t per = (size_t)(((maxlen + Ls - 1) / Ls + 1) + (Ls + 1) + 1) * (size_t)(K * V);
    return run_items(bwd_ref_item, &a, a.NS * G, per);
}

static int fwd_chunk(real *o, real *ht, real *hs, const real *q, const real *k, const real *v,
                     const real *g, const real *h0, real scale, int tiled, const int64_t *cu,
                     int64_t N, int64_t B, int64_t T, int64_t H, int64_t G, int64_t K, int64_t V,
                     int64_t C) {
    if (bad_dims(B, T, H, G, K, V, tiled) || C < 1 || hb_seqs_check(cu, N, B, T) ||
        (B * T > 0 && (!o || !q || !k || !v || !g)))
        return -1;
    args_t a = {.o = o, .ht = ht, .hs = hs, .q = q, .k = k, .v = v, .g = g, .h0 = h0,
                .scale = scale, .tiled = tiled};
    set_dims(&a, cu, N, B, T, H, G, K, V);
    if (set_chunks(&a, N, C)) return -1;
    ws_t w;
    int rc = run_items(fwd_chunk_item, &a, a.NS * G * a.NB, ws_carve(&w, NULL, &a, 0, 0));
    hb_free((void *)a.choff);
    return rc;
}

/* dq[x] += Σ_p pdq[p][x] in block order, over a range of rows (parallel over row ranges). */
typedef struct {
    real *d;
    const real *p;
    int64_t np, n, per;
} reduce_t;

static void reduce_range(void *ctx, int64_t i) {
    const reduce_t *r = ctx;
    const int64_t x0 = i * r->per, x1 = imin(r->n, x0 + r->per);
    for (int64_t p = 0; p < r->np; p++) {
        const real *s = r->p + p * r->n;
        for (int64_t x = x0; x < x1; x++) r->d[x] += s[x];
    }
}

static void reduce_partials(real *d, const real *p, int64_t np, int64_t n) {
    if (!d || np == 0 || n == 0) return;
    reduce_t r = {d, p, np, n, 1 << 14};
    hb_parallel_for((n + r.per - 1) / r.per, reduce_range, &r);
}

static int bwd_chunk(real *dq, real *dk, real *dv, real *dg, real *dh0, const real *do_,
                     const real *dht, const real *q, const real *k, const real *v, const real *g,
                     const real *h0, const real *hs, real scale, int tiled, const int64_t *cu,
                     int64_t N, int64_t B, int64_t T, int64_t H, int64_t G, int64_t K, int64_t V,
                     int64_t C) {
    if (bad_dims(B, T, H, G, K, V, tiled) || C < 1 || hb_seqs_check(cu, N, B, T) ||
        (B * T > 0 && (!do_ || !q || !k || !v || !g)))
        return -1;
    args_t a = {.dq = dq, .dk = dk, .dv = dv, .dg = dg, .dh0 = dh0, .do_ = do_, .dht = dht,
                .q = q, .k = k, .v = v, .g = g, .h0 = h0, .hsin = hs, .scale = scale,
                .tiled = tiled};
    set_dims(&a, cu, N, B, T, H, G, K, V);
    if (set_chunks(&a, N, C)) return -1;
    const int64_t np = a.NB - 1, nqk = B * T * G * K;
    real *part = NULL;
    if (np > 0 && (dq || dk) && nqk > 0) {
        part = hb_malloc((size_t)(np * nqk * ((dq != NULL) + (dk != NULL))) * sizeof(real));
        if (!part) {
            hb_free((void *)a.choff);
            return -1;
        }
        a.pdq = dq ? part : NULL;
        a.pdk = dk ? part + (dq ? np * nqk : 0) : NULL;
    }
    ws_t w;
    int rc = run_items(bwd_chunk_item, &a, a.NS * G * a.NB, ws_carve(&w, NULL, &a, 1, hs == NULL));
    if (rc == 0 && part) {
        reduce_partials(dq, a.pdq, np, nqk);
        reduce_partials(dk, a.pdk, np, nqk);
    }
    hb_free(part);
    hb_free((void *)a.choff);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Decode.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    real *o, *state;
    const real *q, *k, *v, *g;
    real scale;
    int tiled;
    int64_t H, G, K, V;
} step_t;

static void step_item(void *ctx, int64_t item) {
    const step_t *a = ctx;
    const int64_t H = a->H, G = a->G, b = item / H, h = item % H;
    const int64_t gi = a->tiled ? h % G : h / (H / G);
    real *S = a->state + item * a->K * a->V;
    rec_step(S, a->k + (b * G + gi) * a->K, a->v + item * a->V, a->g[item], a->K, a->V);
    rec_out(a->o + item * a->V, S, a->q + (b * G + gi) * a->K, a->scale, a->K, a->V);
}

static int step(real *o, real *state, const real *q, const real *k, const real *v, const real *g,
                real scale, int tiled, int64_t B, int64_t H, int64_t G, int64_t K, int64_t V) {
    if (bad_dims(B, 1, H, G, K, V, tiled) || (B > 0 && (!o || !state || !q || !k || !v || !g)))
        return -1;
    step_t a = {o, state, q, k, v, g, scale, tiled, H, G, K, V};
    hb_parallel_for_work(B * H, hb_state_step_work(B * H, K, V), step_item, &a);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The mixer descriptor's entry points (kernels/mixer.h): dims "B T H G K V", inputs q, k, v, g,
 * scalars scale and tiled_groups (nonzero = 1). No initial state and no packing through the generic
 * op yet (h0 = NULL; cu_seqlens = NULL, N = 0).
 * ------------------------------------------------------------------------------------------- */

#define MIXER_ARGS                                                                                \
    const int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], G = a->dim[3], K = a->dim[4],      \
                  V = a->dim[5];                                                                  \
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *g = a->in[3];                        \
    const real scale = (real)a->scalar[0];                                                        \
    const int tiled = a->scalar[1] != 0;                                                          \
    (void)T

static int mixer_fwd_chunk(const hb_mixer_args_t *a) {
    MIXER_ARGS;
    return fwd_chunk(a->o, a->ht, a->saved, q, k, v, g, NULL, scale, tiled, a->cu_seqlens, a->N, B,
                     T, H, G, K, V, a->chunk);
}
static int mixer_bwd_chunk(const hb_mixer_args_t *a) {
    MIXER_ARGS;
    return bwd_chunk(a->din[0], a->din[1], a->din[2], a->din[3], NULL, a->dout, NULL, q, k, v, g,
                     NULL, a->saved, scale, tiled, a->cu_seqlens, a->N, B, T, H, G, K, V, a->chunk);
}
static int mixer_fwd_recurrent(const hb_mixer_args_t *a) {
    MIXER_ARGS;
    return fwd_ref(a->o, a->ht, q, k, v, g, NULL, scale, tiled, a->cu_seqlens, a->N, B, T, H, G, K,
                   V);
}
static int mixer_bwd_recurrent(const hb_mixer_args_t *a) {
    MIXER_ARGS;
    return bwd_ref(a->din[0], a->din[1], a->din[2], a->din[3], NULL, a->dout, NULL, q, k, v, g,
                   NULL, scale, tiled, a->cu_seqlens, a->N, B, T, H, G, K, V);
}
static int mixer_step(const hb_mixer_args_t *a) {
    MIXER_ARGS;
    return step(a->o, a->state, q, k, v, g, scale, tiled, B, H, G, K, V);
}
#undef MIXER_ARGS

/* ---------------------------------------------------------------------------------------------
 * Public names, written out for each precision.
 * ------------------------------------------------------------------------------------------- */

#ifdef HB_KERNEL_F64
int ssd_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                    const double *g, const double *h0, double scale, int tiled_groups,
                    const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                    int64_t G, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, g, h0, scale, tiled_groups, cu_seqlens, N, B, T, H, G, K, V);
}
int ssd_bwd_ref_f64(double *dq, double *dk, double *dv, double *dg, double *dh0,
                    const double *do_, const double *dht, const double *q, const double *k,
                    const double *v, const double *g, const double *h0, double scale,
                    int tiled_groups, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                    int64_t H, int64_t G, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, dg, dh0, do_, dht, q, k, v, g, h0, scale, tiled_groups, cu_seqlens,
                   N, B, T, H, G, K, V);
}
int ssd_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k,
                      const double *v, const double *g, const double *h0, double scale,
                      int tiled_groups, const int64_t *cu_seqlens, int64_t N, int64_t B,
                      int64_t T, int64_t H, int64_t G, int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, g, h0, scale, tiled_groups, cu_seqlens, N, B, T, H, G, K,
                     V, C);
}
int ssd_bwd_chunk_f64(double *dq, double *dk, double *dv, double *dg, double *dh0,
                      const double *do_, const double *dht, const double *q, const double *k,
                      const double *v, const double *g, const double *h0, const double *hs,
                      double scale, int tiled_groups, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t G, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, dg, dh0, do_, dht, q, k, v, g, h0, hs, scale, tiled_groups,
                     cu_seqlens, N, B, T, H, G, K, V, C);
}
int ssd_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                 const double *g, double scale, int tiled_groups, int64_t B, int64_t H, int64_t G,
                 int64_t K, int64_t V) {
    return step(o, state, q, k, v, g, scale, tiled_groups, B, H, G, K, V);
}
int ssd_mixer_fwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int ssd_mixer_bwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int ssd_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int ssd_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int ssd_mixer_step_f64(const hb_mixer_args_t *a) { return mixer_step(a); }
#else
int ssd_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                    const float *g, const float *h0, float scale, int tiled_groups,
                    const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                    int64_t G, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, g, h0, scale, tiled_groups, cu_seqlens, N, B, T, H, G, K, V);
}
int ssd_bwd_ref_f32(float *dq, float *dk, float *dv, float *dg, float *dh0, const float *do_,
                    const float *dht, const float *q, const float *k, const float *v,
                    const float *g, const float *h0, float scale, int tiled_groups,
                    const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                    int64_t G, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, dg, dh0, do_, dht, q, k, v, g, h0, scale, tiled_groups, cu_seqlens,
                   N, B, T, H, G, K, V);
}
int ssd_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k,
                      const float *v, const float *g, const float *h0, float scale,
                      int tiled_groups, const int64_t *cu_seqlens, int64_t N, int64_t B,
                      int64_t T, int64_t H, int64_t G, int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, g, h0, scale, tiled_groups, cu_seqlens, N, B, T, H, G, K,
                     V, C);
}
int ssd_bwd_chunk_f32(float *dq, float *dk, float *dv, float *dg, float *dh0, const float *do_,
                      const float *dht, const float *q, const float *k, const float *v,
                      const float *g, const float *h0, const float *hs, float scale,
                      int tiled_groups, const int64_t *cu_seqlens, int64_t N, int64_t B,
                      int64_t T, int64_t H, int64_t G, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, dg, dh0, do_, dht, q, k, v, g, h0, hs, scale, tiled_groups,
                     cu_seqlens, N, B, T, H, G, K, V, C);
}
int ssd_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                 const float *g, float scale, int tiled_groups, int64_t B, int64_t H, int64_t G,
                 int64_t K, int64_t V) {
    return step(o, state, q, k, v, g, scale, tiled_groups, B, H, G, K, V);
}
int ssd_mixer_fwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int ssd_mixer_bwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int ssd_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int ssd_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int ssd_mixer_step_f32(const hb_mixer_args_t *a) { return mixer_step(a); }
/* the chunk states hs (B·ceil(T/C), or Σ_n ceil(len_n/C) packed, H, K, V) that the chunked forward
 * hands its backward */
static int64_t mixer_saved_numel(const hb_mixer_args_t *a) {
    return ssd_chunk_count(a->cu_seqlens, a->N, a->dim[0], a->dim[1], a->chunk) * a->dim[2] *
           a->dim[4] * a->dim[5];
}
/* the descriptor (compiled once, with the float pass; it names the double entry points too).
 * scale defaults to 1 (Mamba-2's); tiled_groups to 0 (head h reads group h / (H/G)). */
const hb_mixer_desc_t hb_mixer_ssd = {
    .name = "ssd",
    .dims = "B T H G K V",
    .in = {{"q", "B T G K", HB_IN_GRAD},
           {"k", "B T G K", HB_IN_GRAD},
           {"v", "B T H V", HB_IN_GRAD},
           {"g", "B T H", HB_IN_GRAD}},
    .scalar = {{"scale", 1.0, NULL}, {"tiled_groups", 0.0, NULL}},
    .out = "B T H V",
    .state = "B H K V",
    .multiple = {{"H", "G"}},
    .chunk = 64,
    .packed = 1,
    .saved_numel = mixer_saved_numel,
    .f32 = {ssd_mixer_fwd_chunk_f32, ssd_mixer_bwd_chunk_f32, ssd_mixer_fwd_recurrent_f32,
            ssd_mixer_bwd_recurrent_f32, ssd_mixer_step_f32},
    .f64 = {ssd_mixer_fwd_chunk_f64, ssd_mixer_bwd_chunk_f64, ssd_mixer_fwd_recurrent_f64,
            ssd_mixer_bwd_recurrent_f64, ssd_mixer_step_f64},
};
#endif
