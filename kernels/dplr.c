/* dplr.c — the diagonal-plus-low-rank (DPLR) delta rule: RWKV-7's time mixing (see dplr.h).
 *
 * Shape letters: B batch, T time, H heads, K key dim, V value dim, C chunk length, BC = 16 the secondary
 * sub-block. Per (sequence, head), S ∈ R^{K×V}, S_{−1} = h0 or 0, gk_t ≤ 0 per key channel:
 *   S_t = diag(e^{gk_t}) S_{t−1} + b_t (a_tᵀ S_{t−1}) + k_t v_tᵀ,     o_t = S_tᵀ (scale q_t)
 *
 * Reference backward (BPTT; dS = ∂L/∂S_t, starting at dht), with u_t = a_tᵀ S_{t−1}:
 *   dS += scale q_t do_tᵀ;  dq_t = scale S_t do_t;  dk_t = dS v_t;  dv_t = dSᵀ k_t;  du = dSᵀ b_t;
 *   db_t = dS u_t;  da_t = S_{t−1} du;  dgk_t = e^{gk_t} ⊙ rowsum(dS ⊙ S_{t−1});
 *   dS ← diag(e^{gk_t}) dS + a_t duᵀ;   finally dh0 = dS.
 *
 * Chunked form (fla's chunk_dplr: WY representation with the per-channel decay inside). In a chunk of
 * n ≤ C rows r = 0..n−1 entered with state S: G_r = Σ_{u≤r} gk_u (inclusive, per channel, ≤ 0),
 * E_r = G_{r−1} (exclusive, E_0 = 0), L = n−1. Unrolling the recurrence inside the chunk, the "new
 * values" U_r = u_rᵀ = a_rᵀ S_{r−1} satisfy U = Ã S + Mak V + Mab U, so with
 *   Mqk_rs = scale Σ_j q_rj k_sj e^{G_rj − G_sj}  (s ≤ r)     Mqb_rs: the same with b_s
 *   Mak_rs =       Σ_j a_rj k_sj e^{E_rj − G_sj}  (s < r)     Mab_rs: the same with b_s
 *   Q̂ = scale q ⊙ e^{G},  Ã = a ⊙ e^{E},  K̄ = k ⊙ e^{G_L − G},  B̄ = b ⊙ e^{G_L − G},  T = (I − Mab)^{−1}:
 *   Y = Ã S + Mak V,   U = T Y,   O = Q̂ S + Mqk V + Mqb U,   S' = diag(e^{G_L}) S + K̄ᵀ V + B̄ᵀ U.
 * Rows are stacked so each step is one kgemm: QA = [q; a], KB = [k; b] (2n×K), VU = [V; U] (2n×V), and
 * the four score matrices form one 2n×2n matrix M = [[Mqk, Mqb], [Mak, Mab]] (rows q|a, columns k|b):
 *   P = [Q̂; Ã] S;  Y = P_a + Mak V;  U = T Y;  O = P_q + M_q· VU;  S' = e^{G_L} ⊙ S + [K̄; B̄]ᵀ VU.
 * T is a unit lower triangular inverse (16-row diagonal blocks by substitution, the rest by kgemm).
 *
 * Stable decayed scores (no e^{+G} ever overflows): the cumulative sums G are kept in double (even in
 * the float build) so that differences of large sums lose nothing, and every exponential is of a
 * difference. Row sub-block i (rows n0..e−1) uses the reference point R_i = G_{n0−1} = E_{n0}:
 *   left   XL_r = [scale q_r ⊙ e^{G_r − R_i};  a_r ⊙ e^{E_r − R_i}]       (factors ≤ 1)
 *   right  YR_s = [k_s; b_s] ⊙ F_s,  F_s = e^{R_i − G_s}                (≤ 1 for s < n0)
 * and one kgemm gives the 2bl×2e tile XL YRᵀ of the sub-block's rows of M (masked when scattered).
 * Inside the diagonal sub-block F_s ≥ 1 is bounded by the sub-block's decay: a channel whose decay
 * over the sub-block is below TAME (e^{LOG_TAME}) is "untamed" there — its F is set to 0 and its
 * diagonal-sub-block terms are added element-wise with exponentials of (≤ 0) differences.
 * The gates are clamped at −1000 for the cumulative sums (e^{−1000} is 0 in both precisions, so
 * nothing changes but −inf and absurd magnitudes cannot produce inf − inf).
 *
 * Chunked backward (chunks in reverse; dS = ∂L/∂S', starting at dht), with the forward recomputed:
 *   dVU = M_qᵀ dO + [K̄; B̄] dS   (rows: dV partial, dU);   X = Tᵀ dU;   dV += Makᵀ X
 *   dM  = [dO; X] [V; U]ᵀ   (masked like M: the four score gradients), formed one row sub-block at a
 *         time as its tile dTile = [dO_i; X_i] [V_{<e}; U_{<e}]ᵀ (two kgemms), never as a whole
 *   d[q; a] = ([dO; X] Sᵀ) ⊙ [scale e^{G}; e^{E}] + score part;  d[k; b] = (VU dSᵀ) ⊙ e^{G_L−G} + score part
 *   score part, per row sub-block: dXL = dTile YR, dYR = dTileᵀ XL, then dq,da += left factor ⊙ dXL,
 *   dk,db += F ⊙ dYR (plus the untamed element-wise terms)
 *   dS ← e^{G_L} ⊙ dS + [Q̂; Ã]ᵀ [dO; X];   finally dh0 = dS.
 * Gate gradient by an identity (no exponential at all): with the global cumulative log decay Γ_t,
 * S_t = diag(e^{Γ_t}) Ŝ_t turns the recurrence into Ŝ_t = Ŝ_{t−1} + (b_t e^{−Γ_t})(a_t e^{Γ_{t−1}})ᵀ Ŝ_{t−1}
 * + (k_t e^{−Γ_t}) v_tᵀ, o_t = Ŝ_tᵀ (scale q_t e^{Γ_t}), ht = diag(e^{Γ_{T−1}}) Ŝ_{T−1}. Hence
 *   ∂L/∂Γ_t = q_t⊙dq_t − k_t⊙dk_t − b_t⊙db_t + a_{t+1}⊙da_{t+1} + [t = T−1] rowsum(dht ⊙ ht),
 *   dgk_t = Σ_{u≥t} ∂L/∂Γ_u,
 * a reverse cumulative sum over each sequence of quantities the backward already has.
 *
 * Threads: every entry point runs over the (sequence, head) pairs; scratch is allocated once per call,
 * one slot per thread, and the pairs are dealt to slots round-robin, so each pair's arithmetic does not
 * depend on the thread count. Each chunk's rows are copied into dense buffers first (their H·K stride
 * would thrash L1 in the block products).
 */
#include "kreal.h"
#include "alloc.h"
#include "dplr.h"
#include "kmath.h"
#include "parallel.h"
#include "seqs.h"
#include <stdlib.h>
#include <string.h>

#define BC 16    /* secondary sub-block (rows) of the decayed score matrices */
#define TB 16    /* diagonal block of the triangular inverse */
#define GMIN (-1000.0) /* gates are clamped here in the chunked cumulative sums */

/* e^x in loops GCC vectorises: hb_expf_edges (kmath.h) in float; libm exp in double. LOG_TAME: a
 * diagonal sub-block channel whose decay over the sub-block is below e^{LOG_TAME} is done element-wise. */
#ifdef HB_KERNEL_F64
#define gexp exp
#define LOG_TAME (-230.0)
#else
#define gexp hb_expf_edges
#define LOG_TAME (-34.5)
#endif

static int64_t imin(int64_t x, int64_t y) { return x < y ? x : y; }

/* ---------------------------------------------------------------------------------------------- */
/* Shared plumbing                                                                                */

typedef struct {
    real *o, *ht, *hs;                               /* forward outputs */
    real *dq, *dk, *dv, *da, *db, *dg, *dh0;         /* backward outputs (+=) */
    const real *dout, *dht, *q, *k, *v, *a, *b, *g, *h0, *hsin;
    real scale;
    const int64_t *cu;
    int64_t N, B, T, H, K, V, C;
} args_t;

/* One work item: head h of the sequence covering tokens [start, start + len) of the flattened axis;
 * choff: index of its first chunk among the chunk states. */
typedef struct {
    int64_t item, h, start, len, choff;
} item_t;

static item_t item_get(const args_t *a, int64_t i) {
    item_t it;
    const int64_t n = i / a->H;
    const hb_seq_t s = hb_seq_get(a->cu, a->T, n);
    it.item = i, it.h = i % a->H, it.start = s.start, it.len = s.len;
    it.choff = a->C > 0 ? hb_seq_first_chunk(a->cu, a->T, a->C, n) : 0;
    return it;
}

typedef void (*item_fn)(const args_t *a, int64_t item, char *scratch);

typedef struct {
    item_fn fn;
    const args_t *a;
    int64_t n_items, n_slots;
    size_t per_slot;
    char *scratch;
} slots_t;

static void slot_run(void *ctx, int64_t s) {
    const slots_t *sl = ctx;
    for (int64_t i = s; i < sl->n_items; i += sl->n_slots) sl->fn(sl->a, i, sl->scratch + (size_t)s * sl->per_slot);
}

/* Run fn over all (sequence, head) items with per_slot bytes of scratch per thread. */
static int run_items(item_fn fn, const args_t *a, size_t per_slot) {
    const int64_t n_items = hb_seq_count(a->cu, a->N, a->B) * a->H;
    if (n_items <= 0) return 0;
    int64_t ns = hb_threads_get();
    if (ns > n_items) ns = n_items;
    if (ns < 1) ns = 1;
    per_slot = (per_slot + 63) & ~(size_t)63;
    /* plain malloc, aligned by hand: glibc serves repeated calls of this size from its heap (its mmap
     * threshold adapts), where aligned_alloc kept mapping fresh pages and faulting them in per call */
    char *raw = hb_malloc((size_t)ns * per_slot + 64);
    if (!raw) return -1;
    char *scr = raw + ((64 - (uintptr_t)raw % 64) % 64);
    slots_t sl = {fn, a, n_items, ns, per_slot, scr};
    hb_parallel_for(ns, slot_run, &sl);
    hb_free(raw);
    return 0;
}

static int bad_args(const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H, int64_t K,
                    int64_t V, int64_t C) {
    return B < 0 || T < 0 || H < 1 || K < 1 || V < 1 || C < 1 || hb_seqs_check(cu, N, B, T) != 0;
}

/* Bump allocator over one slot's scratch (base NULL: only count). 64-byte aligned pieces. */
typedef struct {
    char *base;
    size_t off;
} arena_t;

static void *take(arena_t *ar, int64_t n, size_t size) {
    const size_t o = (ar->off + 63) & ~(size_t)63;
    ar->off = o + (size_t)n * size;
    return ar->base ? ar->base + o : NULL;
}
#define TAKE(ar, n) ((real *)take((ar), (n), sizeof(real)))

static real dotp(const real *x, const real *y, int64_t n) {
    real s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

/* S = h0[item] (or 0). */
static void state_init(real *S, const real *h0, int64_t item, int64_t KV) {
    if (h0) memcpy(S, h0 + item * KV, (size_t)KV * sizeof(real));
    else memset(S, 0, (size_t)KV * sizeof(real));
}

/* ---------------------------------------------------------------------------------------------- */
/* Reference forward / backward and the decode step                                              */

/* One step: u = aᵀ S (V, scratch), S ← diag(e^{g}) S + b uᵀ + k vᵀ. */
static void ref_step(real *S, real *u, const real *k, const real *v, const real *a, const real *b,
                     const real *g, int64_t K, int64_t V) {
    for (int64_t x = 0; x < V; x++) u[x] = 0;
    for (int64_t i = 0; i < K; i++) {
        const real ai = a[i], *Si = S + i * V;
        for (int64_t x = 0; x < V; x++) u[x] += ai * Si[x];
    }
    for (int64_t i = 0; i < K; i++) {
        const real d = kexp(g[i]), bi = b[i], ki = k[i];
        real *Si = S + i * V;
        for (int64_t x = 0; x < V; x++) Si[x] = d * Si[x] + bi * u[x] + ki * v[x];
    }
}

/* o = Sᵀ (scale q). */
static void ref_out(real *o, const real *S, const real *q, real scale, int64_t K, int64_t V) {
    for (int64_t x = 0; x < V; x++) o[x] = 0;
    for (int64_t i = 0; i < K; i++) {
        const real qi = scale * q[i], *Si = S + i * V;
        for (int64_t x = 0; x < V; x++) o[x] += qi * Si[x];
    }
}

static void fwd_ref_item(const args_t *a, int64_t i, char *scr) {
    const int64_t H = a->H, K = a->K, V = a->V, HK = H * K, HV = H * V;
    const item_t it = item_get(a, i);
    real *S = (real *)scr, *u = S + K * V;
    state_init(S, a->h0, i, K * V);
    const int64_t rk = (it.start * H + it.h) * K, rv = (it.start * H + it.h) * V;
    for (int64_t t = 0; t < it.len; t++) {
        const int64_t ok = rk + t * HK, ov = rv + t * HV;
        ref_step(S, u, a->k + ok, a->v + ov, a->a + ok, a->b + ok, a->g + ok, K, V);
        ref_out(a->o + ov, S, a->q + ok, a->scale, K, V);
    }
    if (a->ht) memcpy(a->ht + i * K * V, S, (size_t)(K * V) * sizeof(real));
}

static int fwd_args_ok(const real *o, const real *q, const real *k, const real *v, const real *a,
                       const real *b, const real *g, int64_t T) {
    return T == 0 || (o && q && k && v && a && b && g);
}

static int fwd_ref(real *o, real *ht, const real *q, const real *k, const real *v, const real *a,
                   const real *b, const real *gk, const real *h0, real scale, const int64_t *cu,
                   int64_t N, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    if (bad_args(cu, N, B, T, H, K, V, 1) || !fwd_args_ok(o, q, k, v, a, b, gk, T)) return -1;
    args_t ar = {.o = o, .ht = ht, .q = q, .k = k, .v = v, .a = a, .b = b, .g = gk, .h0 = h0,
                 .scale = scale, .cu = cu, .N = N, .B = B, .T = T, .H = H, .K = K, .V = V};
    return run_items(fwd_ref_item, &ar, (size_t)(K * V + V) * sizeof(real));
}

/* Checkpoint spacing of the reference backward: ~sqrt(T). */
static int64_t ref_seg(int64_t T) {
    int64_t s = 1;
    while (s * s < T) s++;
    return s;
}

static void bwd_ref_item(const args_t *a, int64_t i, char *scr) {
    const int64_t H = a->H, K = a->K, V = a->V, KV = K * V, HK = H * K, HV = H * V;
    const item_t it = item_get(a, i);
    const int64_t T = it.len, Ls = ref_seg(a->T), ns = (T + Ls - 1) / Ls;
    real *ck = (real *)scr;                            /* checkpoints: the state entering each segment */
    real *buf = ck + (a->T + Ls - 1) / Ls * KV;        /* the Ls states of one segment */
    real *dS = buf + Ls * KV, *u = dS + KV, *du = u + V;
    const int64_t rk = (it.start * H + it.h) * K, rv = (it.start * H + it.h) * V;

    state_init(dS, a->h0, i, KV); /* dS doubles as the running state of the checkpoint pass */
    for (int64_t t = 0; t < T; t++) {
        const int64_t ok = rk + t * HK;
        if (t % Ls == 0) memcpy(ck + (t / Ls) * KV, dS, (size_t)KV * sizeof(real));
        ref_step(dS, u, a->k + ok, a->v + rv + t * HV, a->a + ok, a->b + ok, a->g + ok, K, V);
    }
    if (a->dht) memcpy(dS, a->dht + i * KV, (size_t)KV * sizeof(real));
    else memset(dS, 0, (size_t)KV * sizeof(real));

    for (int64_t c = ns - 1; c >= 0; c--) {
        const int64_t t0 = c * Ls, t1 = imin(T, t0 + Ls);
        const real *prev = ck + c * KV;
        for (int64_t t = t0; t < t1; t++) { /* buf[t − t0] = S_t */
            const int64_t ok = rk + t * HK;
            real *cur = buf + (t - t0) * KV;
            memcpy(cur, prev, (size_t)KV * sizeof(real));
            ref_step(cur, u, a->k + ok, a->v + rv + t * HV, a->a + ok, a->b + ok, a->g + ok, K, V);
            prev = cur;
        }
        for (int64_t t = t1 - 1; t >= t0; t--) {
            const real *St = buf + (t - t0) * KV, *Sp = t == t0 ? ck + c * KV : St - KV;
            const int64_t ok = rk + t * HK, ov = rv + t * HV;
            const real *qt = a->q + ok, *kt = a->k + ok, *vt = a->v + ov, *at = a->a + ok;
            const real *bt = a->b + ok, *gt = a->g + ok, *dot_ = a->dout + ov;
            for (int64_t x = 0; x < V; x++) u[x] = 0, du[x] = 0;
            for (int64_t r = 0; r < K; r++) { /* output: dS += scale q doᵀ; dq = scale S_t do */
                real *dSr = dS + r * V;
                const real sq = a->scale * qt[r], *Spr = Sp + r * V;
                if (a->dq) a->dq[ok + r] += a->scale * dotp(St + r * V, dot_, V);
                for (int64_t x = 0; x < V; x++) {
                    dSr[x] += sq * dot_[x];
                    u[x] += at[r] * Spr[x];
                    du[x] += bt[r] * dSr[x];
                }
            }
            if (a->dv)
                for (int64_t r = 0; r < K; r++)
                    for (int64_t x = 0; x < V; x++) a->dv[ov + x] += kt[r] * dS[r * V + x];
            for (int64_t r = 0; r < K; r++) {
                real *dSr = dS + r * V;
                const real *Spr = Sp + r * V, d = kexp(gt[r]);
                if (a->dk) a->dk[ok + r] += dotp(dSr, vt, V);
                if (a->db) a->db[ok + r] += dotp(dSr, u, V);
                if (a->da) a->da[ok + r] += dotp(Spr, du, V);
                if (a->dg) a->dg[ok + r] += d * dotp(dSr, Spr, V);
                for (int64_t x = 0; x < V; x++) dSr[x] = d * dSr[x] + at[r] * du[x];
            }
        }
    }
    if (a->dh0)
        for (int64_t x = 0; x < KV; x++) a->dh0[i * KV + x] += dS[x];
}

static int bwd_ref(real *dq, real *dk, real *dv, real *da, real *db, real *dgk, real *dh0,
                   const real *do_, const real *dht, const real *q, const real *k, const real *v,
                   const real *a, const real *b, const real *gk, const real *h0, real scale,
                   const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H, int64_t K,
                   int64_t V) {
    if (bad_args(cu, N, B, T, H, K, V, 1) || !fwd_args_ok(do_, q, k, v, a, b, gk, T)) return -1;
    args_t ar = {.dq = dq, .dk = dk, .dv = dv, .da = da, .db = db, .dg = dgk, .dh0 = dh0,
                 .dout = do_, .dht = dht, .q = q, .k = k, .v = v, .a = a, .b = b, .g = gk,
                 .h0 = h0, .scale = scale, .cu = cu, .N = N, .B = B, .T = T, .H = H, .K = K, .V = V};
    const int64_t Ls = ref_seg(T), ns = (T + Ls - 1) / Ls; /* T bounds every sequence's length */
    return run_items(bwd_ref_item, &ar, (size_t)((ns + Ls + 1) * K * V + 2 * V) * sizeof(real));
}

typedef struct {
    real *o, *state;
    const real *q, *k, *v, *a, *b, *g;
    real scale;
    int64_t K, V;
} step_t;

static void step_item(void *ctx, int64_t i) {
    const step_t *s = ctx;
    const int64_t K = s->K, V = s->V;
    real *S = s->state + i * K * V, *o = s->o + i * V; /* o holds u, then the output */
    ref_step(S, o, s->k + i * K, s->v + i * V, s->a + i * K, s->b + i * K, s->g + i * K, K, V);
    ref_out(o, S, s->q + i * K, s->scale, K, V);
}

static int step(real *o, real *state, const real *q, const real *k, const real *v, const real *a,
                const real *b, const real *gk, real scale, int64_t B, int64_t H, int64_t K,
                int64_t V) {
    if (B < 0 || H < 1 || K < 1 || V < 1) return -1;
    if (B == 0) return 0;
    if (!o || !state || !q || !k || !v || !a || !b || !gk) return -1;
    step_t s = {o, state, q, k, v, a, b, gk, scale, K, V};
    hb_parallel_for_work(B * H, hb_state_step_work(B * H, K, V), step_item, &s);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Chunked forward and backward                                                                   */

/* Per-slot workspace. Row blocks of 2C rows hold the q (or k, v) rows of the chunk in [0, n) and the
 * a (or b, U) rows in [n, 2n). M has leading dimension 2C; Tm, Tt C; Tile 2C. */
typedef struct {
    double *Gd;           /* (C+1,K): Gd[0] = 0, Gd[r+1] = G_r (cumulative log decay, double) */
    real *QA, *KB;        /* (2C,K) packed [q; a] and [k; b] rows */
    real *VU, *P;         /* (2C,V) [V; U]; P = [Q̂ S (then O); Ã S (then Y)] */
    real *Ef, *QAh;       /* (2C,K) [scale e^{G}; e^{E}] and [Q̂; Ã] = QA ⊙ Ef */
    real *eL, *KBb;       /* (C,K) e^{G_L − G}; (2C,K) [K̄; B̄] */
    real *eGL;            /* (K) e^{G_L} */
    real *tame, *tamei;   /* (nb,K) tame flags (1/0) of each row sub-block; those of the current one */
    real *Em, *DF, *mid;  /* (C,K) e^{G_{e−1} − G_s}, e^{R − G_s} in s's sub-block; (nb,nb,K) e^{R_i − G_{e_j−1}} */
    real *LF, *XL;        /* (2C,K) left factors / operands, sub-block i at rows 2·n0.. (q rows, a rows) */
    real *F, *YR;         /* (C,K) right factors of the current sub-block; (2C,K) its operand [k; b] ⊙ F */
    real *M, *Tile;       /* (2C,2C) scores; (2BC,2C) one sub-block's tile (or its gradient) */
    real *Tm, *Tt;        /* (C,C) T = (I − Mab)^{−1} and scratch */
    real *S;              /* (K,V) running state */
    real *dOX, *dVU;      /* (2C,V) [dO; X] and [dV; dU] */
    real *LG;             /* (2BC,V) one row sub-block's [dO_i; X_i] rows */
    real *dQA, *dKB;      /* (2C,K) gradients of the [q; a] and [k; b] rows */
    real *dXL, *dYR;      /* (2BC,K), (2C,K) */
    real *dS, *R, *pa;    /* (K,V) state gradient; (K) dgk running sum and the pending a ⊙ da */
    real *states;         /* (NC+1,K,V) chunk states when the backward recomputes them */
} work_t;

static size_t carve(work_t *w, char *base, const args_t *a, int bwd, int64_t nstates) {
    const int64_t C = a->C, K = a->K, V = a->V;
    arena_t ar = {base, 0};
    w->Gd = take(&ar, (C + 1) * K, sizeof(double));
    w->QA = TAKE(&ar, 2 * C * K), w->KB = TAKE(&ar, 2 * C * K);
    w->VU = TAKE(&ar, 2 * C * V), w->P = TAKE(&ar, 2 * C * V);
    w->Ef = TAKE(&ar, 2 * C * K), w->QAh = TAKE(&ar, 2 * C * K);
    w->eL = TAKE(&ar, C * K), w->KBb = TAKE(&ar, 2 * C * K);
    const int64_t nb = (C + BC - 1) / BC;
    w->eGL = TAKE(&ar, K), w->tame = TAKE(&ar, nb * K), w->tamei = w->tame;
    w->Em = TAKE(&ar, C * K), w->DF = TAKE(&ar, C * K), w->mid = TAKE(&ar, nb * nb * K);
    w->LF = TAKE(&ar, 2 * C * K), w->XL = TAKE(&ar, 2 * C * K);
    w->F = TAKE(&ar, C * K), w->YR = TAKE(&ar, 2 * C * K);
    w->M = TAKE(&ar, 4 * C * C), w->Tile = TAKE(&ar, 2 * BC * 2 * C);
    w->Tm = TAKE(&ar, C * C), w->Tt = TAKE(&ar, C * C);
    w->S = TAKE(&ar, K * V);
    if (bwd) {
        w->dOX = TAKE(&ar, 2 * C * V), w->dVU = TAKE(&ar, 2 * C * V);
        w->LG = TAKE(&ar, 2 * BC * V);
        w->dQA = TAKE(&ar, 2 * C * K), w->dKB = TAKE(&ar, 2 * C * K);
        w->dXL = TAKE(&ar, 2 * BC * K), w->dYR = TAKE(&ar, 2 * C * K);
        w->dS = TAKE(&ar, K * V), w->R = TAKE(&ar, K), w->pa = TAKE(&ar, K);
        w->states = TAKE(&ar, nstates * K * V);
    }
    return ar.off;
}

/* Prefetch (into L2) the L rows of D reals, ld apart, of a strided head slice. */
static void prefetch_rows(const real *p, int64_t ld, int64_t L, int64_t D) {
    const int64_t step = 64 / (int64_t)sizeof(real);
    for (int64_t r = 0; r < L; r++)
        for (int64_t x = 0; x < D; x += step) __builtin_prefetch(p + r * ld + x, 0, 2);
}

/* Copy the n rows of the chunk starting at token t0 of item it into QA, KB, VU (and dOX when with_do),
 * and prefetch the rows of the chunk [tn, tn + nn) (nn = 0: none). */
static void chunk_pack(work_t *w, const args_t *a, const item_t *it, int64_t t0, int64_t n,
                       int with_do, int64_t tn, int64_t nn) {
    const int64_t H = a->H, K = a->K, V = a->V, HK = H * K, HV = H * V;
    if (nn > 0) {
        const int64_t pk = ((it->start + tn) * H + it->h) * K, pv = ((it->start + tn) * H + it->h) * V;
        const real *src[5] = {a->q, a->k, a->a, a->b, a->g};
        for (int x = 0; x < 5; x++) prefetch_rows(src[x] + pk, HK, nn, K);
        prefetch_rows(a->v + pv, HV, nn, V);
        if (with_do) prefetch_rows(a->dout + pv, HV, nn, V);
    }
    const int64_t ok = ((it->start + t0) * H + it->h) * K, ov = ((it->start + t0) * H + it->h) * V;
    for (int64_t r = 0; r < n; r++) {
        const int64_t rk = ok + r * HK, rv = ov + r * HV;
        memcpy(w->QA + r * K, a->q + rk, (size_t)K * sizeof(real));
        memcpy(w->QA + (n + r) * K, a->a + rk, (size_t)K * sizeof(real));
        memcpy(w->KB + r * K, a->k + rk, (size_t)K * sizeof(real));
        memcpy(w->KB + (n + r) * K, a->b + rk, (size_t)K * sizeof(real));
        memcpy(w->VU + r * V, a->v + rv, (size_t)V * sizeof(real));
        if (with_do) memcpy(w->dOX + r * V, a->dout + rv, (size_t)V * sizeof(real));
    }
}

/* out[j] = f·e^{x[j] − y[j]} (y NULL: f·e^{x[j]}) for exponents ≤ 0. */
static void exp_diff(real *restrict out, const double *restrict x, const double *restrict y, real f,
                     int64_t K) {
    if (y)
        for (int64_t j = 0; j < K; j++) out[j] = f * gexp((real)(x[j] - y[j]));
    else
        for (int64_t j = 0; j < K; j++) out[j] = f * gexp((real)x[j]);
}

/* Small element-wise kernels over one row of K, restrict-qualified so that GCC vectorises them. */
static void vmul(real *restrict o, const real *restrict x, const real *restrict y, int64_t K) {
    for (int64_t j = 0; j < K; j++) o[j] = x[j] * y[j];
}
static void vscale(real *restrict o, const real *restrict x, real f, int64_t K) {
    for (int64_t j = 0; j < K; j++) o[j] = f * x[j];
}
static void vmul_by(real *restrict o, const real *restrict y, int64_t K) {
    for (int64_t j = 0; j < K; j++) o[j] *= y[j];
}
/* cur = prev + max(g, GMIN) (NaN kept). */
static void cum_row(double *restrict cur, const double *restrict prev, const real *restrict g, int64_t K) {
    for (int64_t j = 0; j < K; j++) cur[j] = prev[j] + (g[j] < GMIN ? GMIN : (double)g[j]);
}
/* df = e^{R − G_s} on the tame channels (R − G_s ≥ 0, bounded by −LOG_TAME there), 0 on the others. */
static void diag_factor(real *restrict df, const double *restrict R, const double *restrict Gs,
                        const real *restrict tame, int64_t K) {
    for (int64_t j = 0; j < K; j++) {
        const real x = (real)(R[j] - Gs[j]);
        df[j] = tame[j] != 0 ? (x < (real)-LOG_TAME ? x : (real)-LOG_TAME) : (real)-1e4;
    }
    for (int64_t j = 0; j < K; j++) df[j] = gexp(df[j]);
}

/* Gate factors of a chunk of n rows whose gk rows are ldg apart (see the top comment): Gd; Ef = [scale
 * e^{G}; e^{E}], QAh, eL, KBb, eGL; for every row sub-block i = [n0, e) its left factors LF and operands
 * XL, its tame flags, DF_s = e^{R_i − G_s} on its own rows (0 on the untamed channels), Em_s =
 * e^{G_{e−1} − G_s} and mid[i][j] = e^{R_i − G_{e_j − 1}} (j < i), so that F_s = Em_s ⊙ mid[i][j(s)] for
 * s left of the sub-block: a product of factors ≤ 1 (sub_right). */
static void chunk_gates(work_t *w, const real *g, int64_t ldg, int64_t n, int64_t K, int64_t C,
                        real scale) {
    double *Gd = w->Gd;
    const int64_t nbmax = (C + BC - 1) / BC;
    for (int64_t j = 0; j < K; j++) Gd[j] = 0;
    for (int64_t r = 0; r < n; r++) cum_row(Gd + (r + 1) * K, Gd + r * K, g + r * ldg, K);
    const double *GL = Gd + n * K;
    exp_diff(w->eGL, GL, NULL, 1, K);
    for (int64_t r = 0; r < n; r++) exp_diff(w->Ef + (n + r) * K, Gd + r * K, NULL, 1, K); /* e^{E_r} */
    for (int64_t r = 0; r < n; r++) {
        real *eL = w->eL + r * K, *Eq = w->Ef + r * K;
        const real *Ea = w->Ef + (n + r) * K, *EGr = r + 1 < n ? w->Ef + (n + r + 1) * K : w->eGL;
        exp_diff(eL, GL, Gd + (r + 1) * K, 1, K);
        vscale(Eq, EGr, scale, K); /* scale e^{G_r} = scale e^{E_{r+1}} */
        vmul(w->KBb + r * K, w->KB + r * K, eL, K), vmul(w->KBb + (n + r) * K, w->KB + (n + r) * K, eL, K);
        vmul(w->QAh + r * K, w->QA + r * K, Eq, K), vmul(w->QAh + (n + r) * K, w->QA + (n + r) * K, Ea, K);
    }
    for (int64_t n0 = 0, ib = 0; n0 < n; n0 += BC, ib++) {
        const int64_t e = imin(n, n0 + BC), bl = e - n0;
        const double *R = Gd + n0 * K, *Ge = Gd + e * K;
        real *tame = w->tame + ib * K;
        for (int64_t j = 0; j < K; j++) tame[j] = Ge[j] - R[j] >= LOG_TAME ? 1 : 0;
        for (int64_t rr = 0; rr < bl; rr++) { /* la_r = e^{E_r − R} first: lq_r = scale·la_{r+1} */
            const int64_t r = n0 + rr;
            exp_diff(w->LF + (2 * n0 + bl + rr) * K, Gd + r * K, R, 1, K);
            exp_diff(w->Em + r * K, Ge, Gd + (r + 1) * K, 1, K);
            diag_factor(w->DF + r * K, R, Gd + (r + 1) * K, tame, K);
        }
        real *lqe = w->LF + (2 * n0 + bl - 1) * K; /* e^{G_{e−1} − R}, into the last q row's slot */
        exp_diff(lqe, Ge, R, 1, K);
        for (int64_t rr = 0; rr < bl; rr++) {
            const int64_t r = n0 + rr;
            real *lq = w->LF + (2 * n0 + rr) * K;
            const real *la = w->LF + (2 * n0 + bl + rr) * K;
            if (rr + 1 < bl) vscale(lq, la + K, scale, K);
            else for (int64_t j = 0; j < K; j++) lq[j] *= scale;
            vmul(w->XL + (2 * n0 + rr) * K, w->QA + r * K, lq, K);
            vmul(w->XL + (2 * n0 + bl + rr) * K, w->QA + (n + r) * K, la, K);
        }
        for (int64_t jb = 0; jb < ib; jb++) /* mid[ib][jb] = e^{R − G at the last row of jb} */
            exp_diff(w->mid + (ib * nbmax + jb) * K, R, Gd + imin(n, (jb + 1) * BC) * K, 1, K);
    }
}

/* Right operand of row sub-block ib = [n0, e): F_s = Em_s ⊙ mid[ib][j(s)] (s < n0), DF_s (s ≥ n0);
 * YR = [k_s ⊙ F_s (s < e); b_s ⊙ F_s (s < e)]. Sets w->tame to the sub-block's flags. */
static void sub_right(work_t *w, int64_t n, int64_t ib, int64_t K, int64_t C) {
    const int64_t n0 = ib * BC, e = imin(n, n0 + BC), nbmax = (C + BC - 1) / BC;
    w->tamei = w->tame + ib * K;
    for (int64_t s = 0; s < e; s++) {
        real *Fs = w->F + s * K;
        if (s < n0) vmul(Fs, w->Em + s * K, w->mid + (ib * nbmax + s / BC) * K, K);
        else memcpy(Fs, w->DF + s * K, (size_t)K * sizeof(real));
        vmul(w->YR + s * K, w->KB + s * K, Fs, K), vmul(w->YR + (e + s) * K, w->KB + (n + s) * K, Fs, K);
    }
}

/* The four score matrices M = [[Mqk, Mqb], [Mak, Mab]] of a chunk of n rows (2n×2n, ld 2C, zero
 * outside the causal masks). */
static void chunk_scores(work_t *w, int64_t n, int64_t K, int64_t C, real scale) {
    const int64_t ldm = 2 * C, ldt = 2 * C;
    const double *Gd = w->Gd;
    real *M = w->M;
    for (int64_t r = 0; r < 2 * n; r++) memset(M + r * ldm, 0, (size_t)(2 * n) * sizeof(real));
    for (int64_t n0 = 0, ib = 0; n0 < n; n0 += BC, ib++) {
        const int64_t e = imin(n, n0 + BC), bl = e - n0;
        sub_right(w, n, ib, K, C);
        kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(2 * bl), (int)(2 * e), (int)K, 1,
              w->XL + 2 * n0 * K, (int)K, w->YR, (int)K, 0, w->Tile, (int)ldt);
        for (int64_t rr = 0; rr < bl; rr++) {
            const int64_t r = n0 + rr;
            const real *tq = w->Tile + rr * ldt, *ta = w->Tile + (bl + rr) * ldt;
            real *Mq = M + r * ldm, *Ma = M + (n + r) * ldm;
            for (int64_t s = 0; s <= r; s++) Mq[s] = tq[s], Mq[n + s] = tq[e + s];
            for (int64_t s = 0; s < r; s++) Ma[s] = ta[s], Ma[n + s] = ta[e + s];
        }
        for (int64_t j = 0; j < K; j++) { /* untamed channels of the diagonal sub-block */
            if (w->tamei[j] != 0) continue;
            for (int64_t r = n0; r < e; r++) {
                const real qj = scale * w->QA[r * K + j], aj = w->QA[(n + r) * K + j];
                real *Mq = M + r * ldm, *Ma = M + (n + r) * ldm;
                for (int64_t s = n0; s <= r; s++) {
                    const real kj = w->KB[s * K + j], bj = w->KB[(n + s) * K + j];
                    const double Gs = Gd[(s + 1) * K + j];
                    const real f = gexp((real)(Gd[(r + 1) * K + j] - Gs));
                    Mq[s] += qj * kj * f, Mq[n + s] += qj * bj * f;
                    if (s < r) {
                        const real fa = gexp((real)(Gd[r * K + j] - Gs));
                        Ma[s] += aj * kj * fa, Ma[n + s] += aj * bj * fa;
                    }
                }
            }
        }
    }
}

/* Tm = (I − A)^{−1} for A strictly lower triangular (n×n, leading dimension lda), Tm with leading
 * dimension C: TB-row diagonal blocks by forward substitution (T_r = e_r + Σ_{m<r} A_rm T_m), the
 * block row left of each as T[I, :i0] = T_II (A[I, :i0] T[:i0, :i0]) — two kgemms. tmp: (C,C). */
static void tri_inverse(real *Tm, const real *A, int64_t lda, real *tmp, int64_t n, int64_t C) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t s = 0; s < n; s++) Tm[r * C + s] = r == s;
    for (int64_t i0 = 0; i0 < n; i0 += TB) {
        const int64_t bi = imin(n - i0, TB);
        for (int64_t r = i0; r < i0 + bi; r++) {
            real *Tr = Tm + r * C;
            for (int64_t m = i0; m < r; m++) {
                const real arm = A[r * lda + m], *Tmm = Tm + m * C;
                for (int64_t s = i0; s <= m; s++) Tr[s] += arm * Tmm[s];
            }
        }
        if (i0 == 0) continue;
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)bi, (int)i0, (int)i0, 1, A + i0 * lda,
              (int)lda, Tm, (int)C, 0, tmp, (int)C);
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)bi, (int)i0, (int)bi, 1,
              Tm + i0 * C + i0, (int)C, tmp, (int)C, 0, Tm + i0 * C, (int)C);
    }
}

/* P = [Q̂ S; Ã S] (only Ã S without with_q), Y = Ã S + Mak V (kept in P's a rows), T, U = T Y (VU's
 * a rows). */
static void chunk_solve(work_t *w, const real *S, int64_t n, int64_t K, int64_t V, int64_t C,
                        int with_q) {
    const int64_t ldm = 2 * C, r0 = with_q ? 0 : n;
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(2 * n - r0), (int)V, (int)K, 1,
          w->QAh + r0 * K, (int)K, S, (int)V, 0, w->P + r0 * V, (int)V);
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)V, (int)n, 1, w->M + n * ldm,
          (int)ldm, w->VU, (int)V, 1, w->P + n * V, (int)V);
    tri_inverse(w->Tm, w->M + n * ldm + n, ldm, w->Tt, n, C);
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)V, (int)n, 1, w->Tm, (int)C,
          w->P + n * V, (int)V, 0, w->VU + n * V, (int)V);
}

/* S ← diag(e^{G_L}) S + [K̄; B̄]ᵀ [V; U]. */
static void chunk_state(work_t *w, real *S, int64_t n, int64_t K, int64_t V) {
    for (int64_t j = 0; j < K; j++) {
        const real e = w->eGL[j];
        real *Sj = S + j * V;
        for (int64_t x = 0; x < V; x++) Sj[x] *= e;
    }
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)V, (int)(2 * n), 1, w->KBb, (int)K,
          w->VU, (int)V, 1, S, (int)V);
}

/* Recompute everything a chunk's backward (or state update) needs, entered with state S. */
static void chunk_prep(work_t *w, const args_t *a, const item_t *it, int64_t t0, int64_t n,
                       const real *S, int with_q) {
    const int64_t H = a->H, K = a->K;
    chunk_gates(w, a->g + ((it->start + t0) * H + it->h) * K, H * K, n, K, a->C, a->scale);
    chunk_scores(w, n, K, a->C, a->scale);
    chunk_solve(w, S, n, K, a->V, a->C, with_q);
}

/* The chunk length used: C, or the longest sequence when that is shorter (one chunk per sequence
 * either way, so the chunk states' layout is that of the caller's C; scratch stays O(length²)). */
static int64_t clamp_chunk(const int64_t *cu, int64_t N, int64_t T, int64_t C) {
    const int64_t L = hb_seq_maxlen(cu, N, T);
    return C < L ? C : (L > 0 ? L : 1);
}

/* Chunks of the longest sequence. */
static int64_t max_chunks(const args_t *a) {
    return (hb_seq_maxlen(a->cu, a->N, a->T) + a->C - 1) / a->C;
}

static void fwd_chunk_item(const args_t *a, int64_t i, char *scr) {
    const int64_t H = a->H, K = a->K, V = a->V, KV = K * V, C = a->C, HV = H * V;
    const item_t it = item_get(a, i);
    work_t w;
    carve(&w, scr, a, 0, 0);
    real *S = w.S;
    state_init(S, a->h0, i, KV);
    for (int64_t t0 = 0, ci = 0; t0 < it.len; t0 += C, ci++) {
        const int64_t n = imin(C, it.len - t0), nn = imin(C, it.len - t0 - n);
        if (a->hs) memcpy(a->hs + ((it.choff + ci) * H + it.h) * KV, S, (size_t)KV * sizeof(real));
        chunk_pack(&w, a, &it, t0, n, 0, t0 + n, nn);
        chunk_prep(&w, a, &it, t0, n, S, 1);
        /* O = Q̂ S + [Mqk Mqb] [V; U] */
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)V, (int)(2 * n), 1, w.M,
              (int)(2 * C), w.VU, (int)V, 1, w.P, (int)V);
        real *o = a->o + ((it.start + t0) * H + it.h) * V;
        for (int64_t r = 0; r < n; r++) memcpy(o + r * HV, w.P + r * V, (size_t)V * sizeof(real));
        chunk_state(&w, S, n, K, V);
    }
    if (a->ht) memcpy(a->ht + i * KV, S, (size_t)KV * sizeof(real));
}

static int fwd_chunk(real *o, real *ht, real *hs, const real *q, const real *k, const real *v,
                     const real *a, const real *b, const real *gk, const real *h0, real scale,
                     const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t H, int64_t K,
                     int64_t V, int64_t C) {
    if (bad_args(cu, N, B, T, H, K, V, C) || !fwd_args_ok(o, q, k, v, a, b, gk, T)) return -1;
    args_t ar = {.o = o, .ht = ht, .hs = hs, .q = q, .k = k, .v = v, .a = a, .b = b, .g = gk,
                 .h0 = h0, .scale = scale, .cu = cu, .N = N, .B = B, .T = T, .H = H, .K = K,
                 .V = V, .C = C};
    ar.C = clamp_chunk(cu, N, T, C);
    work_t w;
    return run_items(fwd_chunk_item, &ar, carve(&w, NULL, &ar, 0, 0));
}

/* Backward of one chunk of n rows entered with state S (see the top comment). On entry w->dS is
 * ∂L/∂S' (the state leaving the chunk); on exit ∂L/∂S. Accumulates into the gradient outputs and
 * carries the dgk running sum w->R and the pending a ⊙ da term w->pa. */
static void chunk_bwd(work_t *w, const args_t *a, const item_t *it, int64_t t0, int64_t n,
                      const real *S) {
    const int64_t H = a->H, K = a->K, V = a->V, C = a->C, ldm = 2 * C, ldt = 2 * C;
    const int64_t HK = H * K, HV = H * V;
    const real scale = a->scale;
    real *dS = w->dS, *M = w->M;
    chunk_prep(w, a, it, t0, n, S, 0);

    /* dVU = [Mqk Mqb]ᵀ dO + [K̄; B̄] dS;  X = Tᵀ dU;  dV += Makᵀ X */
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(2 * n), (int)V, (int)n, 1, M, (int)ldm,
          w->dOX, (int)V, 0, w->dVU, (int)V);
    kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(2 * n), (int)V, (int)K, 1, w->KBb, (int)K,
          dS, (int)V, 1, w->dVU, (int)V);
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)V, (int)n, 1, w->Tm, (int)C,
          w->dVU + n * V, (int)V, 0, w->dOX + n * V, (int)V);
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)V, (int)n, 1, M + n * ldm, (int)ldm,
          w->dOX + n * V, (int)V, 1, w->dVU, (int)V);
    /* d[q; a] = ([dO; X] Sᵀ) ⊙ Ef;  d[k; b] = ([V; U] dSᵀ) ⊙ e^{G_L − G} */
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(2 * n), (int)K, (int)V, 1, w->dOX, (int)V,
          S, (int)V, 0, w->dQA, (int)K);
    kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(2 * n), (int)K, (int)V, 1, w->VU, (int)V,
          dS, (int)V, 0, w->dKB, (int)K);
    for (int64_t r = 0; r < 2 * n; r++)
        vmul_by(w->dQA + r * K, w->Ef + r * K, K), vmul_by(w->dKB + r * K, w->eL + (r < n ? r : r - n) * K, K);

    /* Score part, one row sub-block at a time: dTile = [dO_i; X_i] [V_{<e}; U_{<e}]ᵀ (the sub-block's
     * rows of dM, masked in place), dXL = dTile YR, dYR = dTileᵀ XL; untamed diagonal-sub-block
     * channels element-wise. */
    const double *Gd = w->Gd;
    for (int64_t n0 = 0, ib = 0; n0 < n; n0 += BC, ib++) {
        const int64_t e = imin(n, n0 + BC), bl = e - n0;
        sub_right(w, n, ib, K, C);
        real *dT = w->Tile;
        for (int64_t rr = 0; rr < bl; rr++) {
            memcpy(w->LG + rr * V, w->dOX + (n0 + rr) * V, (size_t)V * sizeof(real));
            memcpy(w->LG + (bl + rr) * V, w->dOX + (n + n0 + rr) * V, (size_t)V * sizeof(real));
        }
        kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(2 * bl), (int)e, (int)V, 1, w->LG, (int)V,
              w->VU, (int)V, 0, dT, (int)ldt);
        kgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(2 * bl), (int)e, (int)V, 1, w->LG, (int)V,
              w->VU + n * V, (int)V, 0, dT + e, (int)ldt);
        for (int64_t rr = 0; rr < bl; rr++) { /* masks: s ≤ r on the q rows, s < r on the a rows */
            const int64_t r = n0 + rr;
            real *tq = dT + rr * ldt, *ta = dT + (bl + rr) * ldt;
            for (int64_t s = r + 1; s < e; s++) tq[s] = 0, tq[e + s] = 0;
            for (int64_t s = r; s < e; s++) ta[s] = 0, ta[e + s] = 0;
        }
        const real *XLb = w->XL + 2 * n0 * K, *LFb = w->LF + 2 * n0 * K;
        kgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(2 * bl), (int)K, (int)(2 * e), 1, dT,
              (int)ldt, w->YR, (int)K, 0, w->dXL, (int)K);
        kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(2 * e), (int)K, (int)(2 * bl), 1, dT,
              (int)ldt, XLb, (int)K, 0, w->dYR, (int)K);
        for (int64_t rr = 0; rr < bl; rr++) {
            const int64_t r = n0 + rr;
            real *dq = w->dQA + r * K, *da = w->dQA + (n + r) * K;
            const real *xq = w->dXL + rr * K, *xa = w->dXL + (bl + rr) * K;
            const real *lq = LFb + rr * K, *la = LFb + (bl + rr) * K;
            for (int64_t j = 0; j < K; j++) dq[j] += lq[j] * xq[j], da[j] += la[j] * xa[j];
        }
        for (int64_t s = 0; s < e; s++) {
            real *dk = w->dKB + s * K, *db = w->dKB + (n + s) * K;
            const real *yk = w->dYR + s * K, *yb = w->dYR + (e + s) * K, *Fs = w->F + s * K;
            for (int64_t j = 0; j < K; j++) dk[j] += Fs[j] * yk[j], db[j] += Fs[j] * yb[j];
        }
        for (int64_t j = 0; j < K; j++) {
            if (w->tamei[j] != 0) continue;
            for (int64_t r = n0; r < e; r++) {
                const real qj = scale * w->QA[r * K + j], aj = w->QA[(n + r) * K + j];
                /* the tile's rows: column s of dMqk is tq[s], of dMqb tq[e + s] (ta: the a rows) */
                const real *tq = dT + (r - n0) * ldt, *ta = dT + (bl + r - n0) * ldt;
                real dqj = 0, daj = 0;
                for (int64_t s = n0; s <= r; s++) {
                    const real kj = w->KB[s * K + j], bj = w->KB[(n + s) * K + j];
                    const double Gs = Gd[(s + 1) * K + j];
                    const real f = gexp((real)(Gd[(r + 1) * K + j] - Gs));
                    dqj += f * (tq[s] * kj + tq[e + s] * bj);
                    w->dKB[s * K + j] += f * tq[s] * qj;
                    w->dKB[(n + s) * K + j] += f * tq[e + s] * qj;
                    if (s < r) {
                        const real fa = gexp((real)(Gd[r * K + j] - Gs));
                        daj += fa * (ta[s] * kj + ta[e + s] * bj);
                        w->dKB[s * K + j] += fa * ta[s] * aj;
                        w->dKB[(n + s) * K + j] += fa * ta[e + s] * aj;
                    }
                }
                w->dQA[r * K + j] += scale * dqj;
                w->dQA[(n + r) * K + j] += daj;
            }
        }
    }

    /* ∂L/∂S = e^{G_L} ⊙ dS + [Q̂; Ã]ᵀ [dO; X] */
    for (int64_t j = 0; j < K; j++) {
        const real e = w->eGL[j];
        real *dSj = dS + j * V;
        for (int64_t x = 0; x < V; x++) dSj[x] *= e;
    }
    kgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)V, (int)(2 * n), 1, w->QAh, (int)K,
          w->dOX, (int)V, 1, dS, (int)V);

    /* Accumulate (one pass over the rows, last to first, prefetching the strided output rows a few
     * rows ahead); dgk by the reverse cumulative sum of q⊙dq − k⊙dk − b⊙db + (a⊙da of the next row). */
    const int64_t ok = ((it->start + t0) * H + it->h) * K, ov = ((it->start + t0) * H + it->h) * V;
    real *outk[5] = {a->dq, a->da, a->dk, a->db, a->dg};
    real *R = w->R, *pa = w->pa;
    for (int64_t r = n - 1; r >= 0; r--) {
        const real *restrict q = w->QA + r * K, *restrict ar = w->QA + (n + r) * K;
        const real *restrict k = w->KB + r * K, *restrict b = w->KB + (n + r) * K;
        const real *restrict dq = w->dQA + r * K, *restrict da = w->dQA + (n + r) * K;
        const real *restrict dk = w->dKB + r * K, *restrict db = w->dKB + (n + r) * K;
        const real *src[4] = {dq, da, dk, db};
        const int64_t rk = ok + r * HK, rv = ov + r * HV;
        if (r >= 4)
            for (int x = 0; x < 5; x++)
                if (outk[x]) prefetch_rows(outk[x] + rk - 4 * HK, HK, 1, K);
        for (int x = 0; x < 4; x++)
            if (outk[x]) {
                real *restrict d = outk[x] + rk;
                const real *restrict sx = src[x];
                for (int64_t j = 0; j < K; j++) d[j] += sx[j];
            }
        if (a->dv) {
            real *restrict d = a->dv + rv;
            const real *restrict dv = w->dVU + r * V;
            if (r >= 4) prefetch_rows(d - 4 * HV, HV, 1, V);
            for (int64_t x = 0; x < V; x++) d[x] += dv[x];
        }
        if (a->dg) {
            real *restrict dg = a->dg + rk;
            for (int64_t j = 0; j < K; j++) {
                R[j] += q[j] * dq[j] - k[j] * dk[j] - b[j] * db[j] + pa[j];
                pa[j] = ar[j] * da[j];
                dg[j] += R[j];
            }
        }
    }
}

static void bwd_chunk_item(const args_t *a, int64_t i, char *scr) {
    const int64_t H = a->H, K = a->K, V = a->V, KV = K * V, C = a->C;
    const item_t it = item_get(a, i);
    const int64_t NC = (it.len + C - 1) / C;
    work_t w;
    carve(&w, scr, a, 1, a->hsin ? 0 : max_chunks(a) + 1);
    const real *states; /* state entering chunk ci at states + ci·sstride */
    int64_t sstride;
    if (a->hsin) {
        states = a->hsin + (it.choff * H + it.h) * KV, sstride = H * KV;
    } else { /* rerun the state pass */
        real *S = w.S;
        state_init(S, a->h0, i, KV);
        for (int64_t ci = 0; ci < NC; ci++) {
            const int64_t t0 = ci * C, n = imin(C, it.len - t0), nn = imin(C, it.len - t0 - n);
            memcpy(w.states + ci * KV, S, (size_t)KV * sizeof(real));
            chunk_pack(&w, a, &it, t0, n, 0, t0 + n, nn);
            chunk_prep(&w, a, &it, t0, n, S, 0);
            chunk_state(&w, S, n, K, V);
        }
        memcpy(w.states + NC * KV, S, (size_t)KV * sizeof(real));
        states = w.states, sstride = KV;
    }
    memset(w.R, 0, (size_t)K * sizeof(real));
    memset(w.pa, 0, (size_t)K * sizeof(real));
    if (a->dht) {
        memcpy(w.dS, a->dht + i * KV, (size_t)KV * sizeof(real));
        if (a->dg) { /* ∂L/∂Γ_{T−1} gets rowsum(dht ⊙ ht): ht from the last chunk state */
            const real *htp = a->hsin ? NULL : w.states + NC * KV;
            if (!htp) {
                if (NC == 0) {
                    state_init(w.S, a->h0, i, KV);
                } else {
                    const int64_t t0 = (NC - 1) * C, n = it.len - t0;
                    memcpy(w.S, states + (NC - 1) * sstride, (size_t)KV * sizeof(real));
                    chunk_pack(&w, a, &it, t0, n, 0, 0, 0);
                    chunk_prep(&w, a, &it, t0, n, w.S, 0);
                    chunk_state(&w, w.S, n, K, V);
                }
                htp = w.S;
            }
            for (int64_t j = 0; j < K; j++) w.R[j] = dotp(a->dht + i * KV + j * V, htp + j * V, V);
        }
    } else {
        memset(w.dS, 0, (size_t)KV * sizeof(real));
    }
    for (int64_t ci = NC - 1; ci >= 0; ci--) {
        const int64_t t0 = ci * C, n = imin(C, it.len - t0);
        chunk_pack(&w, a, &it, t0, n, 1, ci > 0 ? t0 - C : 0, ci > 0 ? C : 0);
        chunk_bwd(&w, a, &it, t0, n, states + ci * sstride);
    }
    if (a->dh0)
        for (int64_t x = 0; x < KV; x++) a->dh0[i * KV + x] += w.dS[x];
}

static int bwd_chunk(real *dq, real *dk, real *dv, real *da, real *db, real *dgk, real *dh0,
                     const real *do_, const real *dht, const real *q, const real *k,
                     const real *v, const real *a, const real *b, const real *gk, const real *h0,
                     const real *hs, real scale, const int64_t *cu, int64_t N, int64_t B, int64_t T,
                     int64_t H, int64_t K, int64_t V, int64_t C) {
    if (bad_args(cu, N, B, T, H, K, V, C) || !fwd_args_ok(do_, q, k, v, a, b, gk, T)) return -1;
    args_t ar = {.dq = dq, .dk = dk, .dv = dv, .da = da, .db = db, .dg = dgk, .dh0 = dh0,
                 .dout = do_, .dht = dht, .q = q, .k = k, .v = v, .a = a, .b = b, .g = gk,
                 .h0 = h0, .hsin = hs, .scale = scale, .cu = cu, .N = N, .B = B, .T = T, .H = H,
                 .K = K, .V = V, .C = C};
    ar.C = clamp_chunk(cu, N, T, C);
    work_t w;
    return run_items(bwd_chunk_item, &ar, carve(&w, NULL, &ar, 1, hs ? 0 : max_chunks(&ar) + 1));
}

/* ---- the mixer descriptor's adapters (kernels/mixer.h) ------------------------------------------- */
/* dims "B T H K V"; inputs q, k, v, a, b, gk in that order; scalar scale; the chunked forward saves the
 * chunk states hs (dplr_chunk_count(...), H, K, V) for the chunked backward. No h0 (the argument block
 * carries none); packed documents: m->cu_seqlens, m->N. */
static int mixer_fwd_chunk(const hb_mixer_args_t *m) {
    const int64_t *d = m->dim;
    const real *const *x = (const real *const *)m->in;
    return fwd_chunk(m->o, m->ht, m->saved, x[0], x[1], x[2], x[3], x[4], x[5], NULL, (real)m->scalar[0],
                     m->cu_seqlens, m->N, d[0], d[1], d[2], d[3], d[4], m->chunk);
}
static int mixer_bwd_chunk(const hb_mixer_args_t *m) {
    const int64_t *d = m->dim;
    const real *const *x = (const real *const *)m->in;
    real *const *g = (real *const *)m->din;
    return bwd_chunk(g[0], g[1], g[2], g[3], g[4], g[5], NULL, m->dout, NULL, x[0], x[1], x[2], x[3], x[4],
                     x[5], NULL, m->saved, (real)m->scalar[0], m->cu_seqlens, m->N, d[0], d[1], d[2], d[3], d[4],
                     m->chunk);
}
static int mixer_fwd_recurrent(const hb_mixer_args_t *m) {
    const int64_t *d = m->dim;
    const real *const *x = (const real *const *)m->in;
    return fwd_ref(m->o, m->ht, x[0], x[1], x[2], x[3], x[4], x[5], NULL, (real)m->scalar[0],
                   m->cu_seqlens, m->N, d[0], d[1], d[2], d[3], d[4]);
}
static int mixer_bwd_recurrent(const hb_mixer_args_t *m) {
    const int64_t *d = m->dim;
    const real *const *x = (const real *const *)m->in;
    real *const *g = (real *const *)m->din;
    return bwd_ref(g[0], g[1], g[2], g[3], g[4], g[5], NULL, m->dout, NULL, x[0], x[1], x[2], x[3], x[4],
                   x[5], NULL, (real)m->scalar[0], m->cu_seqlens, m->N, d[0], d[1], d[2], d[3], d[4]);
}
static int mixer_step(const hb_mixer_args_t *m) {
    const int64_t *d = m->dim;
    const real *const *x = (const real *const *)m->in;
    return step(m->o, m->state, x[0], x[1], x[2], x[3], x[4], x[5], (real)m->scalar[0], d[0], d[2], d[3], d[4]);
}

/* ---------------------------------------------------------------------------------------------- */
/* Public names                                                                                   */

#ifdef HB_KERNEL_F64
int dplr_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                     const double *a, const double *b, const double *gk, const double *h0,
                     double scale, const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, a, b, gk, h0, scale, cu_seqlens, N, B, T, H, K, V);
}
int dplr_bwd_ref_f64(double *dq, double *dk, double *dv, double *da, double *db, double *dgk,
                     double *dh0, const double *do_, const double *dht, const double *q,
                     const double *k, const double *v, const double *a, const double *b,
                     const double *gk, const double *h0, double scale,
                     const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, da, db, dgk, dh0, do_, dht, q, k, v, a, b, gk, h0, scale, cu_seqlens,
                   N, B, T, H, K, V);
}
int dplr_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k,
                       const double *v, const double *a, const double *b, const double *gk,
                       const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                       int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, a, b, gk, h0, scale, cu_seqlens, N, B, T, H, K, V, C);
}
int dplr_bwd_chunk_f64(double *dq, double *dk, double *dv, double *da, double *db, double *dgk,
                       double *dh0, const double *do_, const double *dht, const double *q,
                       const double *k, const double *v, const double *a, const double *b,
                       const double *gk, const double *h0, const double *hs, double scale,
                       const int64_t *cu_seqlens, int64_t N,
                       int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, da, db, dgk, dh0, do_, dht, q, k, v, a, b, gk, h0, hs, scale,
                     cu_seqlens, N, B, T, H, K, V, C);
}
int dplr_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                  const double *a, const double *b, const double *gk, double scale,
                  int64_t B, int64_t H, int64_t K, int64_t V) {
    return step(o, state, q, k, v, a, b, gk, scale, B, H, K, V);
}
int dplr_mixer_fwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int dplr_mixer_bwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int dplr_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int dplr_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int dplr_mixer_step_f64(const hb_mixer_args_t *a) { return mixer_step(a); }
#else
int dplr_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                     const float *a, const float *b, const float *gk, const float *h0, float scale,
                     const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, a, b, gk, h0, scale, cu_seqlens, N, B, T, H, K, V);
}
int dplr_bwd_ref_f32(float *dq, float *dk, float *dv, float *da, float *db, float *dgk, float *dh0,
                     const float *do_, const float *dht, const float *q, const float *k,
                     const float *v, const float *a, const float *b, const float *gk,
                     const float *h0, float scale, const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    return bwd_ref(dq, dk, dv, da, db, dgk, dh0, do_, dht, q, k, v, a, b, gk, h0, scale, cu_seqlens,
                   N, B, T, H, K, V);
}
int dplr_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k,
                       const float *v, const float *a, const float *b, const float *gk,
                       const float *h0, float scale, const int64_t *cu_seqlens, int64_t N,
                       int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, a, b, gk, h0, scale, cu_seqlens, N, B, T, H, K, V, C);
}
int dplr_bwd_chunk_f32(float *dq, float *dk, float *dv, float *da, float *db, float *dgk,
                       float *dh0, const float *do_, const float *dht, const float *q,
                       const float *k, const float *v, const float *a, const float *b,
                       const float *gk, const float *h0, const float *hs, float scale,
                       const int64_t *cu_seqlens, int64_t N,
                       int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    return bwd_chunk(dq, dk, dv, da, db, dgk, dh0, do_, dht, q, k, v, a, b, gk, h0, hs, scale,
                     cu_seqlens, N, B, T, H, K, V, C);
}
int dplr_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                  const float *a, const float *b, const float *gk, float scale,
                  int64_t B, int64_t H, int64_t K, int64_t V) {
    return step(o, state, q, k, v, a, b, gk, scale, B, H, K, V);
}
int dplr_mixer_fwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int dplr_mixer_bwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int dplr_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int dplr_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int dplr_mixer_step_f32(const hb_mixer_args_t *a) { return mixer_step(a); }
/* the chunk states hs (B, ceil(T/C), H, K, V) that the chunked forward hands its backward */
static int64_t mixer_saved_numel(const hb_mixer_args_t *a) {
    const int64_t *d = a->dim;
    return dplr_chunk_count(a->cu_seqlens, a->N, d[0], d[1], a->chunk) * d[2] * d[3] * d[4];
}
/* the descriptor (compiled once, with the float pass; it names the double entry points too) */
const hb_mixer_desc_t hb_mixer_dplr = {
    .name = "dplr",
    .dims = "B T H K V",
    .in = {{"q", "B T H K", HB_IN_GRAD},
           {"k", "B T H K", HB_IN_GRAD},
           {"v", "B T H V", HB_IN_GRAD},
           {"a", "B T H K", HB_IN_GRAD},
           {"b", "B T H K", HB_IN_GRAD},
           {"gk", "B T H K", HB_IN_GRAD}},
    .scalar = {{"scale", 0, "K"}},
    .out = "B T H V",
    .state = "B H K V",
    .chunk = 64,
    .packed = 1,
    .saved_numel = mixer_saved_numel,
    .f32 = {dplr_mixer_fwd_chunk_f32, dplr_mixer_bwd_chunk_f32, dplr_mixer_fwd_recurrent_f32,
            dplr_mixer_bwd_recurrent_f32, dplr_mixer_step_f32},
    .f64 = {dplr_mixer_fwd_chunk_f64, dplr_mixer_bwd_chunk_f64, dplr_mixer_fwd_recurrent_f64,
            dplr_mixer_bwd_recurrent_f64, dplr_mixer_step_f64},
};
#endif
