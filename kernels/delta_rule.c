/* delta_rule.c — the (gated) delta rule: DeltaNet (g = NULL) and GatedDeltaNet (docs/mixers.md#deltanet,
 * docs/mixers.md#gated-deltanet).
 *
 * Shape letters: B batch, T time, H q/k heads, HV value heads (a multiple of H; value head j reads
 * q/k head h = j / (HV/H)), K key dim, V value dim, C chunk length, NC = ceil(T/C) chunks.
 * q, k (B,T,H,K) are l2-normalised by the caller; v, o (B,T,HV,V); beta, g (B,T,HV); states (K,V).
 *
 * Recurrence, per (batch, value head), S_{−1} = h0 (or 0), γ_t = e^{g_t} (γ = 1 without g):
 *   S'_t = γ_t S_{t−1};   u_t = β_t (v_t − S'_tᵀ k_t);   S_t = S'_t + k_t u_tᵀ;
 *   o_t = S_tᵀ (scale q_t)
 *
 * Chunked form (WY / UT transform). Inside one chunk of rows r = 0..c−1 entered with state S_c, let
 * G_r = g_0 + … + g_r (cumulative log decay, ≤ 0), Γ_rs = e^{G_r − G_s} for s ≤ r (never exp(+G)).
 * Unrolling S'_r = e^{G_r} S_c + Σ_{s<r} Γ_rs k_s u_sᵀ in u_r gives
 * (I + A) u = diag(β)V − diag(βe^G) K S_c with
 *   A  = strictly_lower(β_r Γ_rs k_r·k_s)          T = (I + A)^{−1}  (blocked forward substitution)
 *   W  = T diag(β e^G) K      U = T diag(β) V      Δ = U − W S_c   (Δ_r = u_r, the "new values")
 *   (computed as Δ = T (diag(β)V − diag(βe^G)K S_c): W and U are never formed)
 *   M  = scale · (Q Kᵀ ⊙ Γ) on s ≤ r (diagonal included), 0 above
 *   O  = scale · diag(e^G) Q S_c + M Δ
 *   S_{c+1} = e^{G_last} S_c + (diag(e^{G_last − G}) K)ᵀ Δ
 * Every product above is a kgemm on C×C, C×K, C×V or K×V blocks.
 *
 * Chunked backward (chunks in reverse; dS = ∂L/∂S_{c+1}, zero after the last chunk):
 *   dΔ  = Mᵀ dO + diag(e^{G_last−G}) K dS
 *   dOs = scale · diag(e^G) dO;   dQ = dP K + dOs S_cᵀ;   dP = (dO Δᵀ) ⊙ scale Γ (s ≤ r)
 *   X = Tᵀ dΔ (= ∂/∂(diag(β)V));   Y = Tᵀ dW = −X S_cᵀ (= ∂/∂(diag(βe^G)K)), dW = −dΔ S_cᵀ
 *   dA  = −(X Uᵀ + Y Wᵀ) = −(X (diag(β)V)ᵀ + Y (diag(βe^G)K)ᵀ) Tᵀ on s < r
 *         (since dA = −Tᵀ dT Tᵀ and U = T diag(β)V, W = T diag(βe^G)K)
 *   dK  = dPᵀ Q + diag(e^{G_last−G}) Δ dSᵀ + diag(βe^G) Y + (dB + dBᵀ) K,   dB = dA ⊙ β_r Γ
 *   dV  = diag(β) X;   dβ_r = v_r·X_r + e^{G_r} k_r·Y_r + Σ_s dA_rs Γ_rs k_r·k_s
 *   dS_c = e^{G_last} dS + Qᵀ dOs − Wᵀ dΔ = e^{G_last} dS + Qᵀ dOs − (diag(βe^G)K)ᵀ X
 * (dB is the gradient on K Kᵀ) and dG collects, for every factor e^{x}, (its gradient × the factor)
 * on each G in x (Γ terms give +row sums −column sums; e^{G_last−G_r} gives +G_last −G_r); finally
 * dg_s = Σ_{r ≥ s} dG_r. Terms that cancel exactly (Γ_rr, and e^{G_last−G_r} for r = last) are left
 * out: in float32 their rounding would swamp dg when the decay is strong (g ≈ −20 gives dg ≈ 1e−9).
 * The forward can save the state entering every chunk (hs); otherwise the backward first reruns the
 * state pass of each value head. Each chunk's q, k, v (and do) rows are first copied into dense
 * buffers (chunk_pack, prefetching the next chunk's rows): read in place with their H·K stride,
 * the block products thrash L1 and the hardware prefetchers do not follow them.
 *
 * Sequences (kernels/seqs.h): a work item's "batch" b is a row of the batch, or, with cu_seqlens, a
 * packed document; it walks the rows s.start .. s.start + len − 1 of the flattened token axis from its
 * own h0, its chunks counted from its first token (C is clamped to the longest sequence), so a packed
 * document computes exactly what it computes alone. The chunk states of document n sit at hs_index().
 *
 * Threads: forwards and the decode step run over the B·HV (batch, value head) pairs; backwards run
 * over the B·H (batch, q/k head) pairs and loop the value heads of the group inside, so dq and dk
 * are accumulated race-free and in a fixed order. Scratch is allocated once per call, one slot per
 * thread; the pairs are dealt to slots round-robin (slot s takes items s, s+n, ...), so each item's
 * arithmetic does not depend on the thread count.
 */
#include "kreal.h"
#include "alloc.h"
#include "delta_rule.h"
#include "seqs.h"
#include "kmath.h"
#include "parallel.h"
#include <stdlib.h>
#include <string.h>

#define REF_SEG 64 /* checkpoint interval of the reference backward */

/* e^x for x ≤ 0 in loops GCC vectorises: hb_expf_edges (kmath.h) in float; libm exp in double. */
#ifdef HB_KERNEL_F64
#define gexp exp
#else
#define gexp hb_expf_edges
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Shared plumbing                                                                                */

typedef struct {
    real *o, *ht, *hs;                            /* forward outputs */
    real *dq, *dk, *dv, *dbeta, *dg;              /* backward outputs (+=) */
    const real *dout, *q, *k, *v, *beta, *g, *h0, *hsin;
    real *wy;                                     /* forward: [OUT][OPTIONAL] every chunk's D and T (wy_d, wy_t) */
    const real *wyin;                             /* backward: [IN][OPTIONAL] what that forward wrote (with hsin) */
    int64_t Cr;                                   /* the caller's chunk length (≥ C): the row width of T in wy */
    const int64_t *cu;                            /* cu_seqlens (kernels/seqs.h) or NULL */
    const int64_t *choff;                         /* packed: first chunk of each document in hs, or NULL */
    real scale;
    int64_t B, T, H, HV, K, V, C, NC;             /* NC: chunks of the longest sequence */
} args_t;

/* Sequence b: a row of the batch, or a packed document. */
static hb_seq_t seq_of(const args_t *a, int64_t b) { return hb_seq_get(a->cu, a->T, b); }

/* Chunks of sequence b, and the offset (in states) of its value head j's first chunk state in hs:
 * hs holds, sequence after sequence, (HV, nc_b, K, V) blocks ((B,HV,NC,K,V) for B rows). */
static int64_t seq_chunks(const args_t *a, int64_t b) { return (seq_of(a, b).len + a->C - 1) / a->C; }
static int64_t hs_index(const args_t *a, int64_t b, int64_t j) {
    if (!a->cu) return (b * a->HV + j) * a->NC;
    return a->choff[b] * a->HV + j * seq_chunks(a, b);
}

/* wy, the WY quantities the chunked forward saves for its backward (the mixer's saved buffer, after hs):
 * per value head j, the rows of the flattened B·T token axis, first D (HV, B·T, V) then T (HV, B·T, Cr);
 * the chunk starting at token row t0 has D rows t0.. and the n×n block of T in rows t0.. (row width Cr).
 * With them the backward skips the triangular inverse and the two products of D; it reads bit for bit
 * what it would recompute from hs. */
static size_t wy_d(const args_t *a, int64_t j, int64_t row) {
    return ((size_t)j * (size_t)(a->B * a->T) + (size_t)row) * (size_t)a->V;
}
static size_t wy_t(const args_t *a, int64_t j, int64_t row) {
    return (size_t)(a->HV * a->B * a->T) * (size_t)a->V + ((size_t)j * (size_t)(a->B * a->T) + (size_t)row) * (size_t)a->Cr;
}

/* The checks shared by the full-sequence entry points; fills the sequence geometry of a (C clamped to
 * the longest sequence, NC its chunk count) and, when packed, the chunk offsets *choff (to free). */
static int bad_dims(int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V);
static int seq_setup(args_t *a, const int64_t *cu, int64_t N, int64_t C, int64_t **choff) {
    *choff = NULL;
    if (bad_dims(a->B, a->T, a->H, a->HV, a->K, a->V) || C < 1 || hb_seqs_check(cu, N, a->B, a->T)) return -1;
    const int64_t maxlen = hb_seq_maxlen(cu, N, a->T);
    a->cu = cu;
    a->Cr = C;
    a->C = C < maxlen ? C : (maxlen > 0 ? maxlen : 1); /* C > T: one chunk */
    a->NC = (maxlen + a->C - 1) / a->C;
    if (!cu) return 0;
    int64_t *off = hb_malloc((size_t)(N + 1) * sizeof(int64_t));
    if (!off) return -1;
    off[0] = 0;
    for (int64_t n = 0; n < N; n++) off[n + 1] = off[n] + (cu[n + 1] - cu[n] + a->C - 1) / a->C;
    a->choff = *choff = off;
    return 0;
}

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

/* Run fn over n_items work items with per_slot reals of scratch per thread. */
static int run_items(item_fn fn, const args_t *a, int64_t n_items, size_t per_slot) {
    if (n_items <= 0) return 0;
    int64_t ns = hb_threads_get();
    if (ns > n_items) ns = n_items;
    if (ns < 1) ns = 1;
    real *scr = hb_malloc(((size_t)ns * per_slot + 1) * sizeof(real));
    if (!scr) return -1;
    slots_t sl = {fn, a, n_items, ns, per_slot, scr};
    hb_parallel_for(ns, slot_run, &sl);
    free(scr);
    return 0;
}

static int bad_dims(int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return B < 0 || T < 0 || H < 1 || HV < 1 || K < 1 || V < 1 || HV % H != 0;
}

static real dot(const real *x, const real *y, int64_t n) {
    real s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

/* x·y summed in 16 interleaved partial sums, so that GCC vectorises it without -ffast-math (the
 * chunked paths; the reference keeps the plain left-to-right dot). */
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

/* One step of the state recurrence: u = β(v − γ Sᵀk), S ← γ S + k uᵀ. u (V) is scratch/output. */
static void state_step(real *S, real *u, const real *k, const real *v, real beta, real gamma,
                       int64_t K, int64_t V) {
    for (int64_t j = 0; j < V; j++) u[j] = 0;
    for (int64_t i = 0; i < K; i++) {
        const real ki = k[i], *Si = S + i * V;
        for (int64_t j = 0; j < V; j++) u[j] += ki * Si[j];
    }
    for (int64_t j = 0; j < V; j++) u[j] = beta * (v[j] - gamma * u[j]);
    for (int64_t i = 0; i < K; i++) {
        const real ki = k[i];
        real *Si = S + i * V;
        for (int64_t j = 0; j < V; j++) Si[j] = gamma * Si[j] + ki * u[j];
    }
}

/* o = Sᵀ (scale q). */
static void state_out(real *o, const real *S, const real *q, real scale, int64_t K, int64_t V) {
    for (int64_t j = 0; j < V; j++) o[j] = 0;
    for (int64_t i = 0; i < K; i++) {
        const real qi = scale * q[i], *Si = S + i * V;
        for (int64_t j = 0; j < V; j++) o[j] += qi * Si[j];
    }
}

/* S = h0[b, j] (or 0). */
static void init_state(real *S, const args_t *a, int64_t b, int64_t j) {
    size_t kv = (size_t)(a->K * a->V);
    if (a->h0) memcpy(S, a->h0 + (size_t)(b * a->HV + j) * kv, kv * sizeof(real));
    else memset(S, 0, kv * sizeof(real));
}

/* ---------------------------------------------------------------------------------------------- */
/* Reference forward / backward                                                                   */

static void fwd_ref_item(const args_t *a, int64_t item, real *S) {
    const int64_t HV = a->HV, K = a->K, V = a->V;
    const int64_t b = item / HV, j = item % HV, h = j / (HV / a->H);
    const hb_seq_t s = seq_of(a, b);
    init_state(S, a, b, j);
    for (int64_t t = 0; t < s.len; t++) {
        const int64_t bt = s.start + t;
        const real *qt = a->q + (bt * a->H + h) * K, *kt = a->k + (bt * a->H + h) * K;
        const real *vt = a->v + (bt * HV + j) * V;
        real *ot = a->o + (bt * HV + j) * V; /* holds u_t, then o_t */
        real gamma = a->g ? kexp(a->g[bt * HV + j]) : (real)1;
        state_step(S, ot, kt, vt, a->beta[bt * HV + j], gamma, K, V);
        state_out(ot, S, qt, a->scale, K, V);
    }
    if (a->ht) memcpy(a->ht + (size_t)item * K * V, S, (size_t)(K * V) * sizeof(real));
}

static int fwd_ref(real *o, real *ht, const real *q, const real *k, const real *v,
                           const real *beta, const real *g, const real *h0, real scale,
                           const int64_t *cu, int64_t N,
                           int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    if (bad_dims(B, T, H, HV, K, V) || hb_seqs_check(cu, N, B, T) || (T > 0 && (!o || !q || !k || !v || !beta)))
        return -1;
    args_t a = {.o = o, .ht = ht, .q = q, .k = k, .v = v, .beta = beta, .g = g, .h0 = h0, .cu = cu,
                .scale = scale, .B = B, .T = T, .H = H, .HV = HV, .K = K, .V = V};
    return run_items(fwd_ref_item, &a, hb_seq_count(cu, N, B) * HV, (size_t)(K * V));
}

/* BPTT for one (batch, q/k head) group. States are checkpointed every REF_SEG steps; each segment
 * is recomputed into buf (buf[i] = state before step t0+i) and walked backwards. Per step, with dS
 * holding ∂L/∂S_t:
 *   dS += scale q doᵀ;  dq = scale S_t do;  du = dSᵀ k;  dk = dS u − β γ S_{t−1} du;  dv = β du;
 *   dβ = du·w (w = v − γ S_{t−1}ᵀ k);  dS −= β k duᵀ (now ∂L/∂S'_t);
 *   dg = Σ dS ⊙ γ S_{t−1};  dS *= γ. */
static void bwd_ref_item(const args_t *a, int64_t item, real *scr) {
    const int64_t H = a->H, HV = a->HV, K = a->K, V = a->V, KV = K * V;
    const int64_t b = item / H, h = item % H, grp = HV / H;
    const hb_seq_t s = seq_of(a, b);
    const int64_t T = s.len;
    const int64_t nseg = (T + REF_SEG - 1) / REF_SEG;
    real *ck = scr, *buf = ck + nseg * KV, *dS = buf + (REF_SEG + 1) * KV;
    real *w = dS + KV, *u = w + V, *du = u + V, *dqv = du + V, *dkv = dqv + K;
    for (int64_t jj = 0; jj < grp; jj++) {
        const int64_t j = h * grp + jj;
        real *S = buf;
        init_state(S, a, b, j);
        for (int64_t t = 0; t < T; t++) {
            const int64_t bt = s.start + t;
            if (t % REF_SEG == 0) memcpy(ck + (t / REF_SEG) * KV, S, (size_t)KV * sizeof(real));
            state_step(S, u, a->k + (bt * H + h) * K, a->v + (bt * HV + j) * V,
                       a->beta[bt * HV + j], a->g ? kexp(a->g[bt * HV + j]) : (real)1, K, V);
        }
        memset(dS, 0, (size_t)KV * sizeof(real));
        for (int64_t seg = nseg - 1; seg >= 0; seg--) {
            const int64_t t0 = seg * REF_SEG, n = T - t0 < REF_SEG ? T - t0 : REF_SEG;
            memcpy(buf, ck + seg * KV, (size_t)KV * sizeof(real));
            for (int64_t i = 0; i < n; i++) {
                const int64_t bt = s.start + t0 + i;
                memcpy(buf + (i + 1) * KV, buf + i * KV, (size_t)KV * sizeof(real));
                state_step(buf + (i + 1) * KV, u, a->k + (bt * H + h) * K, a->v + (bt * HV + j) * V,
                           a->beta[bt * HV + j], a->g ? kexp(a->g[bt * HV + j]) : (real)1, K, V);
            }
            for (int64_t i = n - 1; i >= 0; i--) {
                const int64_t bt = s.start + t0 + i;
                const real *Sp = buf + i * KV, *St = buf + (i + 1) * KV;
                const real *qt = a->q + (bt * H + h) * K, *kt = a->k + (bt * H + h) * K;
                const real *vt = a->v + (bt * HV + j) * V, *dOt = a->dout + (bt * HV + j) * V;
                const real bet = a->beta[bt * HV + j];
                const real gam = a->g ? kexp(a->g[bt * HV + j]) : (real)1;
                /* w = v − γ S_{t−1}ᵀ k, u = β w */
                for (int64_t c = 0; c < V; c++) w[c] = 0;
                for (int64_t r = 0; r < K; r++)
                    for (int64_t c = 0; c < V; c++) w[c] += kt[r] * Sp[r * V + c];
                for (int64_t c = 0; c < V; c++) {
                    w[c] = vt[c] - gam * w[c];
                    u[c] = bet * w[c];
                }
                /* output: dS += scale q doᵀ, dq = scale S_t do */
                for (int64_t r = 0; r < K; r++) {
                    dqv[r] = a->scale * dot(St + r * V, dOt, V);
                    const real sq = a->scale * qt[r];
                    for (int64_t c = 0; c < V; c++) dS[r * V + c] += sq * dOt[c];
                }
                /* S_t = S' + k uᵀ */
                for (int64_t c = 0; c < V; c++) du[c] = 0;
                for (int64_t r = 0; r < K; r++) {
                    dkv[r] = dot(dS + r * V, u, V);
                    for (int64_t c = 0; c < V; c++) du[c] += kt[r] * dS[r * V + c];
                }
                /* u = β (v − S'ᵀ k) */
                real db = dot(du, w, V);
                for (int64_t r = 0; r < K; r++) {
                    dkv[r] -= bet * gam * dot(Sp + r * V, du, V);
                    const real bk = bet * kt[r];
                    for (int64_t c = 0; c < V; c++) dS[r * V + c] -= bk * du[c];
                }
                /* S' = γ S_{t−1} */
                if (a->g) {
                    real dgt = gam * dot(dS, Sp, KV);
                    for (int64_t r = 0; r < KV; r++) dS[r] *= gam;
                    if (a->dg) a->dg[bt * HV + j] += dgt;
                }
                if (a->dq)
                    for (int64_t r = 0; r < K; r++) a->dq[(bt * H + h) * K + r] += dqv[r];
                if (a->dk)
                    for (int64_t r = 0; r < K; r++) a->dk[(bt * H + h) * K + r] += dkv[r];
                if (a->dv)
                    for (int64_t c = 0; c < V; c++) a->dv[(bt * HV + j) * V + c] += bet * du[c];
                if (a->dbeta) a->dbeta[bt * HV + j] += db;
            }
        }
    }
}

static int bwd_ref(real *dq, real *dk, real *dv, real *dbeta, real *dg, const real *do_,
                           const real *q, const real *k, const real *v, const real *beta,
                           const real *g, const real *h0, real scale, const int64_t *cu, int64_t N,
                           int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    if (bad_dims(B, T, H, HV, K, V) || hb_seqs_check(cu, N, B, T) || (T > 0 && (!do_ || !q || !k || !v || !beta)))
        return -1;
    args_t a = {.dq = dq, .dk = dk, .dv = dv, .dbeta = dbeta, .dg = dg, .dout = do_, .q = q,
                .k = k, .v = v, .beta = beta, .g = g, .h0 = h0, .cu = cu, .scale = scale,
                .B = B, .T = T, .H = H, .HV = HV, .K = K, .V = V};
    const int64_t nseg = (hb_seq_maxlen(cu, N, T) + REF_SEG - 1) / REF_SEG;
    size_t per = (size_t)((nseg + REF_SEG + 2) * K * V + 3 * V + 2 * K);
    return run_items(bwd_ref_item, &a, hb_seq_count(cu, N, B) * H, per);
}

/* ---------------------------------------------------------------------------------------------- */
/* Chunked forward                                                                                */

/* Per-slot workspace of the chunked paths (C×C matrices with leading dimension C). */
typedef struct {
    real *G, *eG, *eL;                /* (C) cumulative log decay, e^G, e^{G_last − G} */
    real *Gam, *KK, *A, *Tm, *M, *dM; /* (C,C); Tm leading dimension ldt */
    real *Ts, *Ds;                    /* the scratch of Tm and D, where they are not blocks of wy */
    int64_t ldt;
    real *Z;                          /* (C,C) backward */
    real *Kb, *Y, *dQ, *dK;           /* (C,K) */
    real *Vb, *U, *D, *dD, *dOs, *QS, *X, *tmp; /* (C,V) */
    real *dG, *dB, *dGc;              /* (C) */
    real *Qp, *Kp, *Vp, *Op, *dOp;    /* the chunk's q, k (C,K) and v, o, do (C,V) rows, packed */
    real *S, *dS;                     /* (K,V) */
    real *states;                     /* (NC,K,V) when the backward recomputes the state pass */
} work_t;

static real *take(real *scr, size_t *off, int64_t n) {
    real *r = scr ? scr + *off : NULL;
    *off += (size_t)n;
    return r;
}

/* Carve the workspace from scr and return its size in reals (scr == NULL: only count). bwd adds
 * the backward buffers, states the recomputed chunk states. */
static size_t carve(work_t *w, real *scr, const args_t *a, int bwd, int states) {
    const int64_t C = a->C, K = a->K, V = a->V;
    size_t o = 0;
    w->G = take(scr, &o, C), w->eG = take(scr, &o, C), w->eL = take(scr, &o, C);
    w->Gam = take(scr, &o, C * C), w->KK = take(scr, &o, C * C), w->A = take(scr, &o, C * C);
    w->Tm = w->Ts = take(scr, &o, C * C), w->M = take(scr, &o, C * C);
    w->ldt = C;
    w->Kb = take(scr, &o, C * K);
    w->Vb = take(scr, &o, C * V), w->U = take(scr, &o, C * V), w->D = w->Ds = take(scr, &o, C * V);
    w->Qp = take(scr, &o, C * K), w->Kp = take(scr, &o, C * K);
    w->Vp = take(scr, &o, C * V), w->Op = take(scr, &o, C * V), w->dOp = take(scr, &o, C * V);
    w->S = take(scr, &o, K * V);
    if (bwd) {
        w->dM = take(scr, &o, C * C);
        w->Z = take(scr, &o, C * C);
        w->Y = take(scr, &o, C * K), w->dQ = take(scr, &o, C * K);
        w->dK = take(scr, &o, C * K);
        w->dD = take(scr, &o, C * V), w->dOs = take(scr, &o, C * V), w->QS = take(scr, &o, C * V);
        w->X = take(scr, &o, C * V), w->tmp = take(scr, &o, C * V);
        w->dG = take(scr, &o, C), w->dB = take(scr, &o, C), w->dGc = take(scr, &o, C);
        w->dS = take(scr, &o, K * V);
        if (states) w->states = take(scr, &o, a->NC * K * V);
    }
    return o;
}

/* Chunk geometry: rows t0..t0+n−1 of (batch b, value head j, q/k head h). Q, Kc, Vc (and dO) are
 * packed copies (chunk_pack) with row strides lq = K, lv = V; outputs go to the global rows. */
typedef struct {
    int64_t n, lq, lv;
    int64_t row, j;                     /* first token row (flattened B·T axis) and value head */
    const real *Q, *Kc, *Vc, *dO, *beta, *g; /* beta/g stride HV */
    int64_t bo;                         /* offset of (b, t0, j) in (B,T,HV) */
    int64_t vo;                         /* offset of (b, t0, j) in (B,T,HV,V) */
    int64_t qo;                         /* offset of (b, t0, h) in (B,T,H,K) */
    int64_t gq, gv;                     /* global row strides H·K and HV·V */
} chunk_t;

static chunk_t chunk_at(const args_t *a, int64_t b, int64_t h, int64_t j, int64_t t0) {
    chunk_t c;
    const hb_seq_t s = seq_of(a, b);
    const int64_t bt = s.start + t0;
    c.n = s.len - t0 < a->C ? s.len - t0 : a->C;
    c.row = bt, c.j = j;
    c.lq = a->H * a->K;
    c.lv = a->HV * a->V;
    c.qo = (bt * a->H + h) * a->K;
    c.gq = c.lq, c.gv = c.lv;
    c.Q = a->q + c.qo;
    c.Kc = a->k + c.qo;
    c.bo = bt * a->HV + j;
    c.vo = c.bo * a->V;
    c.dO = a->dout ? a->dout + c.vo : NULL;
    c.Vc = a->v + c.vo;
    c.beta = a->beta + c.bo;
    c.g = a->g ? a->g + c.bo : NULL;
    return c;
}

/* Prefetch (into L2) the L rows of D reals, ld apart, of a strided head slice. */
static void prefetch_rows(const real *p, int64_t ld, int64_t L, int64_t D) {
    const int64_t step = 64 / (int64_t)sizeof(real);
    for (int64_t r = 0; r < L; r++)
        for (int64_t x = 0; x < D; x += step) __builtin_prefetch(p + r * ld + x, 0, 2);
}

/* Copy the chunk's k, v (and q, do when asked) rows into the packed buffers of w and point c at
 * them, then prefetch the rows of the chunk `next` (NULL: none). Strided by H·K (a multiple of
 * 4 KiB for common shapes), the rows of one head map to a few L1 sets: block products reading them
 * in place thrash the cache, and the hardware prefetchers do not follow them. */
static void chunk_pack(work_t *w, chunk_t *c, const args_t *a, int with_q, int with_do,
                       const chunk_t *next) {
    const int64_t n = c->n, K = a->K, V = a->V;
    if (next) {
        prefetch_rows(next->Kc, next->gq, next->n, K);
        prefetch_rows(next->Vc, next->gv, next->n, V);
        if (with_q) prefetch_rows(next->Q, next->gq, next->n, K);
        if (with_do) prefetch_rows(next->dO, next->gv, next->n, V);
    }
    for (int64_t r = 0; r < n; r++) {
        memcpy(w->Kp + r * K, c->Kc + r * c->gq, (size_t)K * sizeof(real));
        memcpy(w->Vp + r * V, c->Vc + r * c->gv, (size_t)V * sizeof(real));
        if (with_q) memcpy(w->Qp + r * K, c->Q + r * c->gq, (size_t)K * sizeof(real));
        if (with_do) memcpy(w->dOp + r * V, c->dO + r * c->gv, (size_t)V * sizeof(real));
    }
    c->Kc = w->Kp, c->Vc = w->Vp, c->lq = K, c->lv = V;
    c->Q = with_q ? w->Qp : NULL;
    c->dO = with_do ? w->dOp : NULL;
}


/* T = (I + A)^{−1} for A strictly lower triangular (n×n, leading dimension C; T's ldt), block by block
 * (blocks of TRI_BLOCK rows). A diagonal block is inverted by forward substitution (row r of T_II
 * is e_r − Σ_{m<r} A_rm T_m); from (I + A) T = I, the block row left of it is
 * T[I, :I0] = −T_II (A[I, :I0] T[:I0, :I0]), two gemms. tmp is (C,C) scratch. */
#define TRI_BLOCK 16
static void tri_inverse(real *Tm, int64_t ldt, const real *A, real *tmp, int64_t n, int64_t C) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t s = 0; s < n; s++) Tm[r * ldt + s] = r == s;
    for (int64_t i0 = 0; i0 < n; i0 += TRI_BLOCK) {
        const int64_t bi = n - i0 < TRI_BLOCK ? n - i0 : TRI_BLOCK;
        for (int64_t r = i0; r < i0 + bi; r++) {
            real *Tr = Tm + r * ldt;
            for (int64_t m = i0; m < r; m++) {
                const real arm = A[r * C + m];
                const real *Tmm = Tm + m * ldt;
                for (int64_t s = i0; s <= m; s++) Tr[s] -= arm * Tmm[s];
            }
        }
        if (i0 == 0) continue;
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi, i0, i0, 1, A + i0 * C, C, Tm, ldt, 0,
              tmp, C);
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi, i0, bi, -1, Tm + i0 * ldt + i0, ldt, tmp,
              C, 0, Tm + i0 * ldt, ldt);
    }
}

/* Recompute the WY quantities of a chunk entered with state S: G, e^G, e^{G_last−G}, Γ, KKᵀ, A,
 * T = (I+A)^{−1}, Kb = diag(βe^G)K, Vb = diag(β)V, D = T (Vb − Kb S). Clobbers M and U. T and D are the
 * chunk's blocks of wy when the forward saves them (written in place, no copy), and are read from there
 * instead of computed in a backward after such a forward (a->wyin); else the scratch. */
static void chunk_prep(work_t *w, const chunk_t *c, const real *S, const args_t *a) {
    const int64_t n = c->n, C = a->C, K = a->K, V = a->V, HV = a->HV;
    const real *wy = a->wy ? a->wy : a->wyin;
    if (wy) {
        w->Tm = (real *)(uintptr_t)(wy + wy_t(a, c->j, c->row)), w->ldt = a->Cr;
        w->D = (real *)(uintptr_t)(wy + wy_d(a, c->j, c->row));
    } else {
        w->Tm = w->Ts, w->D = w->Ds, w->ldt = C;
    }
    real *G = w->G, *eG = w->eG, *eL = w->eL, *Gam = w->Gam, *A = w->A, *Tm = w->Tm;
    const int64_t ldt = w->ldt;
    if (c->g) {
        real acc = 0;
        for (int64_t r = 0; r < n; r++) {
            acc += c->g[r * HV];
            G[r] = acc;
        }
        for (int64_t r = 0; r < n; r++) {
            eG[r] = gexp(G[r]);
            eL[r] = gexp(G[n - 1] - G[r]);
            for (int64_t s = 0; s <= r; s++) Gam[r * C + s] = gexp(G[r] - G[s]);
        }
    } else {
        for (int64_t r = 0; r < n; r++) {
            G[r] = 0, eG[r] = 1, eL[r] = 1;
            for (int64_t s = 0; s <= r; s++) Gam[r * C + s] = 1;
        }
    }
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, K, 1, c->Kc, c->lq, c->Kc, c->lq, 0,
          w->KK, C);
    for (int64_t r = 0; r < n; r++) {
        const real br = c->beta[r * HV];
        for (int64_t s = 0; s < r; s++) A[r * C + s] = br * Gam[r * C + s] * w->KK[r * C + s];
        for (int64_t s = r; s < n; s++) A[r * C + s] = 0;
    }
    if (!a->wyin) tri_inverse(Tm, ldt, A, w->M, n, C);
    for (int64_t r = 0; r < n; r++) {
        const real br = c->beta[r * HV], bg = br * eG[r];
        const real *kr = c->Kc + r * c->lq, *vr = c->Vc + r * c->lv;
        for (int64_t i = 0; i < K; i++) w->Kb[r * K + i] = bg * kr[i];
        for (int64_t i = 0; i < V; i++) w->Vb[r * V + i] = br * vr[i];
    }
    if (a->wyin) return;
    memcpy(w->U, w->Vb, (size_t)(n * V) * sizeof(real));
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, V, K, -1, w->Kb, K, S, V, 1, w->U, V);
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, V, n, 1, Tm, ldt, w->U, V, 0, w->D, V);
}

/* M = scale (Q Kᵀ ⊙ Γ) on s ≤ r, 0 above. */
static void chunk_scores(work_t *w, const chunk_t *c, const args_t *a) {
    const int64_t n = c->n, C = a->C;
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, a->K, 1, c->Q, c->lq, c->Kc, c->lq, 0,
          w->M, C);
    for (int64_t r = 0; r < n; r++) {
        for (int64_t s = 0; s <= r; s++) w->M[r * C + s] *= a->scale * w->Gam[r * C + s];
        for (int64_t s = r + 1; s < n; s++) w->M[r * C + s] = 0;
    }
}

/* S ← e^{G_last} S + (diag(e^{G_last−G}) K)ᵀ D  (uses Kb as scratch). */
static void chunk_state(work_t *w, const chunk_t *c, real *S, const args_t *a) {
    const int64_t n = c->n, K = a->K, V = a->V;
    for (int64_t r = 0; r < n; r++) {
        const real *kr = c->Kc + r * c->lq;
        for (int64_t i = 0; i < K; i++) w->Kb[r * K + i] = w->eL[r] * kr[i];
    }
    if (c->g) {
        const real e = w->eG[n - 1];
        for (int64_t i = 0; i < K * V; i++) S[i] *= e;
    }
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, V, n, 1, w->Kb, K, w->D, V, 1, S, V);
}

static void fwd_chunk_item(const args_t *a, int64_t item, real *scr) {
    const int64_t HV = a->HV, K = a->K, V = a->V, KV = K * V;
    const int64_t b = item / HV, j = item % HV, h = j / (HV / a->H);
    work_t w;
    carve(&w, scr, a, 0, 0);
    real *S = w.S;
    init_state(S, a, b, j);
    chunk_t c = chunk_at(a, b, h, j, 0);
    const int64_t NC = seq_chunks(a, b);
    for (int64_t ci = 0; ci < NC; ci++) {
        const int64_t n = c.n;
        const chunk_t next = ci + 1 < NC ? chunk_at(a, b, h, j, (ci + 1) * a->C) : c;
        chunk_pack(&w, &c, a, 1, 0, ci + 1 < NC ? &next : NULL);
        real *O = w.Op;
        if (a->hs) memcpy(a->hs + (hs_index(a, b, j) + ci) * KV, S, (size_t)KV * sizeof(real));
        chunk_prep(&w, &c, S, a); /* with a->wy: T and D written there for the backward */
        chunk_scores(&w, &c, a);
        /* O = scale diag(e^G) Q S + M D */
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, V, K, 1, c.Q, c.lq, S, V, 0, O, V);
        for (int64_t r = 0; r < n; r++) {
            const real f = a->scale * w.eG[r];
            for (int64_t i = 0; i < V; i++) O[r * V + i] *= f;
        }
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, V, n, 1, w.M, a->C, w.D, V, 1, O, V);
        for (int64_t r = 0; r < n; r++)
            memcpy(a->o + c.vo + r * c.gv, O + r * V, (size_t)V * sizeof(real));
        chunk_state(&w, &c, S, a);
        c = next;
    }
    if (a->ht) memcpy(a->ht + item * KV, S, (size_t)KV * sizeof(real));
}

/* wy: NULL from the public functions, a block of the mixer's saved buffer from its entry points (wy_d, wy_t) */
static int fwd_chunk(real *o, real *ht, real *hs, real *wy, const real *q, const real *k,
                     const real *v, const real *beta, const real *g, const real *h0,
                     real scale, const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H,
                     int64_t HV, int64_t K, int64_t V, int64_t C) {
    if (T > 0 && (!o || !q || !k || !v || !beta)) return -1;
    args_t a = {.o = o, .ht = ht, .hs = hs, .wy = wy, .q = q, .k = k, .v = v, .beta = beta, .g = g,
                .h0 = h0, .scale = scale, .B = B, .T = T, .H = H, .HV = HV, .K = K, .V = V};
    int64_t *choff;
    if (seq_setup(&a, cu, N, C, &choff)) return -1;
    work_t w;
    int rc = run_items(fwd_chunk_item, &a, hb_seq_count(cu, N, B) * HV, carve(&w, NULL, &a, 0, 0));
    free(choff);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Chunked backward                                                                               */

/* Backward of one chunk (see the top comment), entered with state S. On entry w->dS = ∂L/∂S_{c+1};
 * on exit ∂L/∂S_c. Accumulates into the non-NULL gradient outputs. */
static void chunk_bwd(work_t *w, const chunk_t *c, const real *S, const args_t *a) {
    const int64_t n = c->n, C = a->C, K = a->K, V = a->V, HV = a->HV, lq = c->lq, lv = c->lv;
    const real *dO = c->dO, scale = a->scale;
    real *dG = w->dG, *dS = w->dS, *dM = w->dM, *dK = w->dK;
    chunk_prep(w, c, S, a);
    chunk_scores(w, c, a);

    /* Output O = scale diag(e^G) Q S + M D: dD = Mᵀ dO. */
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, V, n, 1, w->M, C, dO, lv, 0, w->dD, V);

    /* State S_{c+1} = e^{G_last} S + Σ_r e^{G_last−G_r} k_r D_rᵀ: tmp = K dS. */
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, V, K, 1, c->Kc, lq, dS, V, 0, w->tmp, V);
    real zsum = 0;
    for (int64_t r = 0; r < n; r++) {
        const real e = w->eL[r], *tr = w->tmp + r * V;
        const real z = dotv(tr, w->D + r * V, V);
        real *dDr = w->dD + r * V;
        for (int64_t i = 0; i < V; i++) dDr[i] += e * tr[i];
        if (r < n - 1) { /* for r = n−1 the two terms cancel exactly: leave them out */
            dG[r] = -e * z;
            zsum += e * z;
        } else {
            dG[r] = 0;
        }
    }
    dG[n - 1] += zsum + w->eG[n - 1] * dotv(S, dS, K * V);
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, K, V, 1, w->D, V, dS, V, 0, dK, K);
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < K; i++) dK[r * K + i] *= w->eL[r];

    /* Intra-chunk part M D: dM = dO Dᵀ; dG from Γ; dP = dM ⊙ scale Γ (kept in dM). */
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, V, 1, dO, lv, w->D, V, 0, dM, C);
    real *restrict colG = w->dGc; /* column sums, subtracted from dG below */
    for (int64_t s = 0; s < n; s++) colG[s] = 0;
    for (int64_t r = 0; r < n; r++) {
        real *restrict dMr = dM + r * C;
        const real *restrict Mr = w->M + r * C, *restrict Gr = w->Gam + r * C;
        real acc[16] = {0};
        for (int64_t s = 0; s < r; s++) { /* Γ_rr = 1 has no G dependence */
            const real e = dMr[s] * Mr[s];
            acc[s & 15] += e;
            colG[s] += e;
            dMr[s] *= scale * Gr[s];
        }
        for (int u = 0; u < 16; u++) dG[r] += acc[u];
        dM[r * C + r] *= scale;
        for (int64_t s = r + 1; s < n; s++) dM[r * C + s] = 0;
    }
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, K, n, 1, dM, C, c->Kc, lq, 0, w->dQ, K);
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, K, n, 1, dM, C, c->Q, lq, 1, dK, K);

    /* Inter-chunk part scale diag(e^G) Q S: dOs = scale diag(e^G) dO. */
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, V, K, 1, c->Q, lq, S, V, 0, w->QS, V);
    for (int64_t r = 0; r < n; r++) {
        const real f = scale * w->eG[r];
        for (int64_t i = 0; i < V; i++) w->dOs[r * V + i] = f * dO[r * lv + i];
        dG[r] += dotv(w->QS + r * V, w->dOs + r * V, V);
    }
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, K, V, 1, w->dOs, V, S, V, 1, w->dQ, K);

    /* D = T (Vb − Kb S): X = Tᵀ dD, Y = −X Sᵀ, dA = −(X Vbᵀ + Y Kbᵀ) Tᵀ (kept in dM, only
     * s < r is used). */
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, V, n, 1, w->Tm, w->ldt, w->dD, V, 0, w->X, V);
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, K, V, -1, w->X, V, S, V, 0, w->Y, K);
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, V, 1, w->X, V, w->Vb, V, 0, w->Z, C);
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, K, 1, w->Y, K, w->Kb, K, 1, w->Z, C);
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, -1, w->Z, C, w->Tm, w->ldt, 0, dM, C);

    /* Vb = diag(β) V, Kb = diag(β e^G) K; dV = diag(β) X (added at the end). */
    for (int64_t r = 0; r < n; r++) {
        const real br = c->beta[r * HV], bg = br * w->eG[r];
        const real *kr = c->Kc + r * lq, *vr = c->Vc + r * lv;
        const real ky = dotv(kr, w->Y + r * K, K);
        w->dB[r] = dotv(vr, w->X + r * V, V) + w->eG[r] * ky;
        dG[r] += bg * ky;
        for (int64_t i = 0; i < K; i++) dK[r * K + i] += bg * w->Y[r * K + i];
    }

    /* A_rs = β_r Γ_rs k_r·k_s (s < r): dβ, dG, and dKK = dA ⊙ β_r Γ made symmetric in place
     * (lower part mirrored to the upper, zero diagonal): dK += (dKK + dKKᵀ) K is one gemm. */
    for (int64_t r = 0; r < n; r++) {
        const real br = c->beta[r * HV];
        real *restrict dMr = dM + r * C;
        const real *restrict Ar = w->A + r * C, *restrict Gr = w->Gam + r * C, *restrict KKr = w->KK + r * C;
        real accg[16] = {0}, accb[16] = {0};
        for (int64_t s = 0; s < r; s++) {
            const real da = dMr[s], f = da * Ar[s];
            accg[s & 15] += f;
            colG[s] += f;
            accb[s & 15] += da * Gr[s] * KKr[s];
            dMr[s] = da * br * Gr[s];
        }
        for (int u = 0; u < 16; u++) dG[r] += accg[u], w->dB[r] += accb[u];
        dMr[r] = 0;
    }
    for (int64_t s = 0; s < n; s++) dG[s] -= colG[s];
    for (int64_t r = 0; r < n; r++) /* mirror the lower part to the upper */
        for (int64_t s = 0; s < r; s++) dM[s * C + r] = dM[r * C + s];
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, K, n, 1, dM, C, c->Kc, lq, 1, dK, K);

    /* ∂L/∂S_c = e^{G_last} dS + Qᵀ dOs − Kbᵀ X. */
    if (c->g) {
        const real e = w->eG[n - 1];
        for (int64_t i = 0; i < K * V; i++) dS[i] *= e;
    }
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, V, n, 1, c->Q, lq, w->dOs, V, 1, dS, V);
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, V, n, -1, w->Kb, K, w->X, V, 1, dS, V);

    /* Accumulate. G_r = Σ_{s≤r} g_s, so dg_s = Σ_{r≥s} dG_r. */
    const int64_t qo = c->qo, gq = c->gq, gv = c->gv;
    if (a->dq)
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < K; i++) a->dq[qo + r * gq + i] += w->dQ[r * K + i];
    if (a->dk)
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < K; i++) a->dk[qo + r * gq + i] += dK[r * K + i];
    if (a->dv)
        for (int64_t r = 0; r < n; r++) {
            const real br = c->beta[r * HV];
            for (int64_t i = 0; i < V; i++) a->dv[c->vo + r * gv + i] += br * w->X[r * V + i];
        }
    if (a->dbeta)
        for (int64_t r = 0; r < n; r++) a->dbeta[c->bo + r * HV] += w->dB[r];
    if (a->dg && c->g) {
        real acc = 0;
        for (int64_t r = n - 1; r >= 0; r--) {
            acc += dG[r];
            a->dg[c->bo + r * HV] += acc;
        }
    }
}

static void bwd_chunk_item(const args_t *a, int64_t item, real *scr) {
    const int64_t H = a->H, HV = a->HV, K = a->K, V = a->V, KV = K * V;
    const int64_t b = item / H, h = item % H, grp = HV / H, NC = seq_chunks(a, b);
    work_t w;
    carve(&w, scr, a, 1, a->hsin == NULL);
    for (int64_t jj = 0; jj < grp; jj++) {
        const int64_t j = h * grp + jj;
        const real *states;
        if (a->hsin) {
            states = a->hsin + hs_index(a, b, j) * KV;
        } else { /* recompute the state pass */
            real *S = w.S;
            init_state(S, a, b, j);
            for (int64_t ci = 0; ci < NC; ci++) {
                chunk_t c = chunk_at(a, b, h, j, ci * a->C);
                const chunk_t next = ci + 1 < NC ? chunk_at(a, b, h, j, (ci + 1) * a->C) : c;
                chunk_pack(&w, &c, a, 0, 0, ci + 1 < NC ? &next : NULL);
                memcpy(w.states + ci * KV, S, (size_t)KV * sizeof(real));
                chunk_prep(&w, &c, S, a);
                chunk_state(&w, &c, S, a);
            }
            states = w.states;
        }
        memset(w.dS, 0, (size_t)KV * sizeof(real));
        for (int64_t ci = NC - 1; ci >= 0; ci--) {
            chunk_t c = chunk_at(a, b, h, j, ci * a->C);
            const chunk_t prev = ci > 0 ? chunk_at(a, b, h, j, (ci - 1) * a->C) : c;
            chunk_pack(&w, &c, a, 1, 1, ci > 0 ? &prev : NULL);
            chunk_bwd(&w, &c, states + ci * KV, a);
        }
    }
}

static int bwd_chunk(real *dq, real *dk, real *dv, real *dbeta, real *dg, const real *do_,
                     const real *q, const real *k, const real *v, const real *beta,
                     const real *g, const real *h0, const real *hs, const real *wy, real scale,
                     const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H, int64_t HV,
                     int64_t K, int64_t V, int64_t C) {
    if (T > 0 && (!do_ || !q || !k || !v || !beta)) return -1;
    if (wy && !hs) return -1; /* wy is read beside the chunk states, never with a recomputed state pass */
    args_t a = {.dq = dq, .dk = dk, .dv = dv, .dbeta = dbeta, .dg = dg, .dout = do_, .q = q,
                .k = k, .v = v, .beta = beta, .g = g, .h0 = h0, .hsin = hs, .wyin = wy, .scale = scale,
                .B = B, .T = T, .H = H, .HV = HV, .K = K, .V = V};
    int64_t *choff;
    if (seq_setup(&a, cu, N, C, &choff)) return -1;
    work_t w;
    int rc = run_items(bwd_chunk_item, &a, hb_seq_count(cu, N, B) * H, carve(&w, NULL, &a, 1, hs == NULL));
    free(choff);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* Decode step                                                                                    */

typedef struct {
    real *o, *state;
    const real *q, *k, *v, *beta, *g;
    real scale;
    int64_t H, HV, K, V;
} step_t;

static void step_item(void *ctx, int64_t item) {
    const step_t *a = ctx;
    const int64_t HV = a->HV, K = a->K, V = a->V;
    const int64_t b = item / HV, j = item % HV, h = j / (HV / a->H);
    real *S = a->state + item * K * V, *o = a->o + item * V; /* o holds u, then the output */
    const real *qt = a->q + (b * a->H + h) * K, *kt = a->k + (b * a->H + h) * K;
    state_step(S, o, kt, a->v + item * V, a->beta[item], a->g ? kexp(a->g[item]) : (real)1, K, V);
    state_out(o, S, qt, a->scale, K, V);
}

static int step(real *o, real *state, const real *q, const real *k, const real *v,
                        const real *beta, const real *g, real scale,
                        int64_t B, int64_t H, int64_t HV, int64_t K, int64_t V) {
    if (bad_dims(B, 1, H, HV, K, V) || (B > 0 && (!o || !state || !q || !k || !v || !beta)))
        return -1;
    step_t a = {o, state, q, k, v, beta, g, scale, H, HV, K, V};
    hb_parallel_for_work(B * HV, hb_state_step_work(B * HV, K, V), step_item, &a);
    return 0;
}

/* ---- the mixer descriptor's adapters (kernels/mixer.h) ------------------------------------------- */
/* dims "B T H HV K V" (HV value heads, a multiple of the H q/k heads); inputs q, k, v, beta, g
 * (optional); scalar scale; saves the chunk states hs (B,HV,NC,K,V) and after them wy (wy_d, wy_t) for the
 * chunked backward */
static int64_t mixer_hs_numel(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], HV = a->dim[3], K = a->dim[4], V = a->dim[5];
    return delta_rule_chunk_count(a->cu_seqlens, a->N, B, T, a->chunk) * HV * K * V;
}
static int mixer_fwd_chunk(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], HV = a->dim[3], K = a->dim[4], V = a->dim[5];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *beta = a->in[3], *g = a->in[4];
    real scale = (real)a->scalar[0], *hs = a->saved, *wy = hs ? hs + mixer_hs_numel(a) : NULL;
    return fwd_chunk(a->o, a->ht, hs, wy, q, k, v, beta, g, NULL, scale, a->cu_seqlens, a->N, B, T, H, HV, K, V,
                     a->chunk);
}
static int mixer_bwd_chunk(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], HV = a->dim[3], K = a->dim[4], V = a->dim[5];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *beta = a->in[3], *g = a->in[4];
    const real *hs = a->saved, *wy = hs ? hs + mixer_hs_numel(a) : NULL;
    real scale = (real)a->scalar[0];
    return bwd_chunk(a->din[0], a->din[1], a->din[2], a->din[3], a->din[4], a->dout, q, k, v, beta, g, NULL, hs,
                     wy, scale, a->cu_seqlens, a->N, B, T, H, HV, K, V, a->chunk);
}
static int mixer_fwd_recurrent(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], HV = a->dim[3], K = a->dim[4], V = a->dim[5];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *beta = a->in[3], *g = a->in[4];
    real scale = (real)a->scalar[0];
    return fwd_ref(a->o, a->ht, q, k, v, beta, g, NULL, scale, a->cu_seqlens, a->N, B, T, H, HV, K, V);
}
static int mixer_bwd_recurrent(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], H = a->dim[2], HV = a->dim[3], K = a->dim[4], V = a->dim[5];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *beta = a->in[3], *g = a->in[4];
    real scale = (real)a->scalar[0];
    return bwd_ref(a->din[0], a->din[1], a->din[2], a->din[3], a->din[4], a->dout, q, k, v, beta, g, NULL, scale,
                   a->cu_seqlens,
                   a->N, B, T, H, HV, K, V);
}
static int mixer_step(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], H = a->dim[2], HV = a->dim[3], K = a->dim[4], V = a->dim[5];
    const real *q = a->in[0], *k = a->in[1], *v = a->in[2], *beta = a->in[3], *g = a->in[4];
    real scale = (real)a->scalar[0];
    return step(a->o, a->state, q, k, v, beta, g, scale, B, H, HV, K, V);
}

/* ---- the exported names, written out (this file is compiled twice: kernels/kreal.h) ---------------- */
#ifdef HB_KERNEL_F64
int delta_rule_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                           const double *beta, const double *g, const double *h0, double scale,
                           const int64_t *cu_seqlens, int64_t N,
                           int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, beta, g, h0, scale, cu_seqlens, N, B, T, H, HV, K, V);
}
int delta_rule_bwd_ref_f64(double *dq, double *dk, double *dv, double *dbeta, double *dg, const double *do_,
                           const double *q, const double *k, const double *v, const double *beta,
                           const double *g, const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                           int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, dbeta, dg, do_, q, k, v, beta, g, h0, scale, cu_seqlens, N, B, T, H, HV, K, V);
}
int delta_rule_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k,
                             const double *v, const double *beta, const double *g, const double *h0,
                             double scale, const int64_t *cu_seqlens, int64_t N,
                             int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, NULL, q, k, v, beta, g, h0, scale, cu_seqlens, N, B, T, H, HV, K, V, C);
}
int delta_rule_bwd_chunk_f64(double *dq, double *dk, double *dv, double *dbeta, double *dg, const double *do_,
                             const double *q, const double *k, const double *v, const double *beta,
                             const double *g, const double *h0, const double *hs, double scale,
                             const int64_t *cu_seqlens, int64_t N,
                             int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, dbeta, dg, do_, q, k, v, beta, g, h0, hs, NULL, scale, cu_seqlens, N, B, T, H, HV,
                     K, V, C);
}
int delta_rule_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                        const double *beta, const double *g, double scale, int64_t B, int64_t H, int64_t HV,
                        int64_t K, int64_t V) {
    return step(o, state, q, k, v, beta, g, scale, B, H, HV, K, V);
}
int delta_rule_mixer_fwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int delta_rule_mixer_bwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int delta_rule_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int delta_rule_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int delta_rule_mixer_step_f64(const hb_mixer_args_t *a) { return mixer_step(a); }
#else
int delta_rule_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                           const float *beta, const float *g, const float *h0, float scale,
                           const int64_t *cu_seqlens, int64_t N,
                           int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, beta, g, h0, scale, cu_seqlens, N, B, T, H, HV, K, V);
}
int delta_rule_bwd_ref_f32(float *dq, float *dk, float *dv, float *dbeta, float *dg, const float *do_,
                           const float *q, const float *k, const float *v, const float *beta,
                           const float *g, const float *h0, float scale, const int64_t *cu_seqlens, int64_t N,
                           int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, dbeta, dg, do_, q, k, v, beta, g, h0, scale, cu_seqlens, N, B, T, H, HV, K, V);
}
int delta_rule_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k,
                             const float *v, const float *beta, const float *g, const float *h0,
                             float scale, const int64_t *cu_seqlens, int64_t N,
                             int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, NULL, q, k, v, beta, g, h0, scale, cu_seqlens, N, B, T, H, HV, K, V, C);
}
int delta_rule_bwd_chunk_f32(float *dq, float *dk, float *dv, float *dbeta, float *dg, const float *do_,
                             const float *q, const float *k, const float *v, const float *beta,
                             const float *g, const float *h0, const float *hs, float scale,
                             const int64_t *cu_seqlens, int64_t N,
                             int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, dbeta, dg, do_, q, k, v, beta, g, h0, hs, NULL, scale, cu_seqlens, N, B, T, H, HV,
                     K, V, C);
}
int delta_rule_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                        const float *beta, const float *g, float scale, int64_t B, int64_t H, int64_t HV,
                        int64_t K, int64_t V) {
    return step(o, state, q, k, v, beta, g, scale, B, H, HV, K, V);
}
int delta_rule_mixer_fwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int delta_rule_mixer_bwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int delta_rule_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int delta_rule_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int delta_rule_mixer_step_f32(const hb_mixer_args_t *a) { return mixer_step(a); }
/* what the chunked forward hands its backward: the chunk states hs, (B,HV,NC,K,V), NC = ceil(T/C), or
 * (HV, ceil(len_n/C), K, V) blocks per packed document; then wy, D (HV,B·T,V) and T (HV,B·T,C) */
static int64_t mixer_saved_numel(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], HV = a->dim[3], V = a->dim[5];
    return mixer_hs_numel(a) + HV * B * T * (V + a->chunk);
}
/* the descriptor (compiled once, with the float pass; it names the double entry points too) */
const hb_mixer_desc_t hb_mixer_delta_rule = {
    .name = "delta_rule",
    .dims = "B T H HV K V",
    .in = {{"q", "B T H K", HB_IN_GRAD},
           {"k", "B T H K", HB_IN_GRAD},
           {"v", "B T HV V", HB_IN_GRAD},
           {"beta", "B T HV", HB_IN_GRAD},
           {"g", "B T HV", HB_IN_GRAD | HB_IN_OPTIONAL}},
    .scalar = {{"scale", 0, "K"}},
    .out = "B T HV V",
    .state = "B HV K V",
    .multiple = {{"HV", "H"}},
    .chunk = 64,
    .packed = 1,
    .saved_numel = mixer_saved_numel,
    .f32 = {delta_rule_mixer_fwd_chunk_f32, delta_rule_mixer_bwd_chunk_f32, delta_rule_mixer_fwd_recurrent_f32,
            delta_rule_mixer_bwd_recurrent_f32, delta_rule_mixer_step_f32},
    .f64 = {delta_rule_mixer_fwd_chunk_f64, delta_rule_mixer_bwd_chunk_f64, delta_rule_mixer_fwd_recurrent_f64,
            delta_rule_mixer_bwd_recurrent_f64, delta_rule_mixer_step_f64},
};
#endif
