/* deltaproduct.c — Gated DeltaProduct: the gated delta rule with NH Householder steps per token
 * (fla's GatedDeltaProduct; recurrence and shapes in deltaproduct.h, maths in
 * docs/mixers.md#gated-deltaproduct).
 *
 * Design. A token's NH Householder steps are NH consecutive steps of the ordinary (gated) delta rule
 *   S'_r = e^{g̃_r} S_{r−1};  S_r = S'_r + β_r k_r (v_r − S'_rᵀ k_r)ᵀ;  õ_r = S_rᵀ (scale q̃_r)
 * over the sub-steps r = t·NH + i, with g̃ = g_t at i = 0 and 0 otherwise (the decay is applied once,
 * before the first step) and q̃ = q_t at i = NH−1 and 0 otherwise (the output is read after the last
 * step): o_t = õ_{t·NH+NH−1}. This is fla's own formulation (chunk_gated_delta_product runs the WY
 * kernels on the interleaved sequence). k, v and beta already have that interleaved layout —
 * (B,T,NH,...) is (B,T·NH,...) — so only q and g are spread out (zeros elsewhere) and o gathered back.
 * The chunked forward and backward are therefore kernels/delta_rule.c's WY/UT chunked form on T·NH
 * sub-steps with chunk C (counted in sub-steps):
 *   forward:  q̃, g̃ spread; delta_rule_fwd_chunk(õ, ht, hs; q̃, k, v, β, g̃); o_t = õ_{t·NH+NH−1}
 *   backward: dõ spread from do (zero at the other sub-steps); delta_rule_bwd_chunk accumulates dk, dv,
 *             dβ in place; dq_t += dq̃_{t·NH+NH−1}; dg_t += dg̃_{t·NH}
 * (the gradients the delta rule computes for the zero entries of q̃ and g̃ are dropped: those entries
 * are constants). With NH = 1 nothing is copied: the delta rule runs on the caller's buffers. Packed
 * documents (cu_seqlens) run one delta-rule call per document on its slice of sub-steps
 * [cu_n·NH, cu_{n+1}·NH), with its own h0/ht and its block of hs.
 * Cost against a kernel written for this layout: the WY part (β K Kᵀ, the triangular solve, W·S and
 * Kᵀ·Δ) is the same; the output part (q·S, tril(q·kᵀ), its product with Δ) is computed for all T·NH
 * sub-steps instead of the T tokens. Useful matrix-product FLOPs per (sequence, value head), R = T·NH,
 * K = V = D, forward: 4·R·K·V + R·(C−1)·(2K+V) + 2·T·K·V + T·(C+1)·(K+V); the delta rule does
 * 6·R·K·V + R·(C−1)·(2K+V) + R·(C+1)·(K+V): 1.22× at NH = 2, 1.32× at NH = 3 (D = 64 or 128, C = 64),
 * 1× at NH = 1 (measured timings: docs/mixers.md#gated-deltaproduct).
 *
 * The reference forward and the decode step are written out here, token by token and step by step
 * (the naive recurrence, fla's naive_recurrent_gated_delta_product); the reference backward is the
 * delta rule's BPTT over the interleaved sub-steps. Threads: the reference forward and the step run
 * over (sequence, value head) items, each with its own state, so no result depends on the thread
 * count (delta_rule's chunked forms guarantee the same).
 */
#include "kreal.h"
#include "alloc.h"
#include "delta_rule.h"
#include "deltaproduct.h"
#include "parallel.h"
#include "seqs.h"
#include <stdlib.h>
#include <string.h>

/* the delta rule of this file's precision */
#ifdef HB_KERNEL_F64
#define dr_fwd_chunk delta_rule_fwd_chunk_f64
#define dr_bwd_chunk delta_rule_bwd_chunk_f64
#define dr_bwd_ref delta_rule_bwd_ref_f64
#else
#define dr_fwd_chunk delta_rule_fwd_chunk_f32
#define dr_bwd_chunk delta_rule_bwd_chunk_f32
#define dr_bwd_ref delta_rule_bwd_ref_f32
#endif

typedef struct {
    const int64_t *cu;
    int64_t N, B, T, NH, H, HV, K, V, C;
} dims_t;

static int bad_dims(const dims_t *d) {
    return d->B < 0 || d->T < 0 || d->NH < 1 || d->H < 1 || d->HV < 1 || d->K < 1 || d->V < 1 ||
           d->HV % d->H != 0 || hb_seqs_check(d->cu, d->N, d->B, d->T) != 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The naive recurrence (reference forward and decode step)                                       */

/* One token on state S (K,V) of value head j: S ← e^g S (when has_g), the NH Householder steps with
 * k_i = k + i·ks, v_i = v + i·vs, β_i = beta[i·bs], then o = Sᵀ (scale q). o (V) also serves as
 * scratch for u. */
static void token(real *S, real *o, const real *q, const real *k, int64_t ks, const real *v, int64_t vs,
                  const real *beta, int64_t bs, int has_g, real g, real scale, int64_t NH, int64_t K,
                  int64_t V) {
    if (has_g) {
        const real gam = kexp(g);
        for (int64_t x = 0; x < K * V; x++) S[x] *= gam;
    }
    for (int64_t i = 0; i < NH; i++) {
        const real *ki = k + i * ks, *vi = v + i * vs, b = beta[i * bs];
        real *u = o;
        for (int64_t c = 0; c < V; c++) u[c] = 0; /* u = Sᵀ k_i */
        for (int64_t r = 0; r < K; r++)
            for (int64_t c = 0; c < V; c++) u[c] += ki[r] * S[r * V + c];
        for (int64_t c = 0; c < V; c++) u[c] = b * (vi[c] - u[c]);
        for (int64_t r = 0; r < K; r++)
            for (int64_t c = 0; c < V; c++) S[r * V + c] += ki[r] * u[c];
    }
    for (int64_t c = 0; c < V; c++) o[c] = 0;
    for (int64_t r = 0; r < K; r++) {
        const real qr = scale * q[r];
        for (int64_t c = 0; c < V; c++) o[c] += qr * S[r * V + c];
    }
}

typedef struct {
    real *o, *ht, *state;
    const real *q, *k, *v, *beta, *g, *h0;
    real scale;
    dims_t d;
    real *scratch; /* one K·V state per slot */
    int64_t n_items, n_slots;
} ref_t;

/* (sequence n, value head j) = item: every token of the sequence from h0 (or 0). */
static void ref_item(const ref_t *a, int64_t item, real *S) {
    const dims_t *d = &a->d;
    const int64_t NH = d->NH, H = d->H, HV = d->HV, K = d->K, V = d->V;
    const int64_t n = item / HV, j = item % HV, h = j / (HV / H), KV = K * V;
    const hb_seq_t s = hb_seq_get(d->cu, d->T, n);
    if (a->h0) memcpy(S, a->h0 + item * KV, (size_t)KV * sizeof(real));
    else memset(S, 0, (size_t)KV * sizeof(real));
    for (int64_t t = 0; t < s.len; t++) {
        const int64_t row = s.start + t;
        token(S, a->o + (row * HV + j) * V, a->q + (row * H + h) * K, a->k + (row * NH * H + h) * K, H * K,
              a->v + (row * NH * HV + j) * V, HV * V, a->beta + row * NH * HV + j, HV, a->g != NULL,
              a->g ? a->g[row * HV + j] : 0, a->scale, NH, K, V);
    }
    if (a->ht) memcpy(a->ht + item * KV, S, (size_t)KV * sizeof(real));
}

static void ref_slot(void *ctx, int64_t slot) {
    const ref_t *a = ctx;
    for (int64_t i = slot; i < a->n_items; i += a->n_slots)
        ref_item(a, i, a->scratch + slot * a->d.K * a->d.V);
}

static int fwd_ref(real *o, real *ht, const real *q, const real *k, const real *v, const real *beta,
                   const real *g, const real *h0, real scale, dims_t d) {
    if (bad_dims(&d) || (d.T > 0 && (!o || !q || !k || !v || !beta))) return -1;
    ref_t a = {.o = o, .ht = ht, .q = q, .k = k, .v = v, .beta = beta, .g = g, .h0 = h0, .scale = scale, .d = d};
    a.n_items = hb_seq_count(d.cu, d.N, d.B) * d.HV;
    if (a.n_items == 0) return 0;
    a.n_slots = hb_threads_get() < a.n_items ? hb_threads_get() : a.n_items;
    if (a.n_slots < 1) a.n_slots = 1;
    a.scratch = hb_malloc((size_t)(a.n_slots * d.K * d.V) * sizeof(real));
    if (!a.scratch) return -1;
    hb_parallel_for(a.n_slots, ref_slot, &a);
    hb_free(a.scratch);
    return 0;
}

/* decode: item (b, j) steps its state in place */
static void step_item(void *ctx, int64_t item) {
    const ref_t *a = ctx;
    const dims_t *d = &a->d;
    const int64_t NH = d->NH, H = d->H, HV = d->HV, K = d->K, V = d->V;
    const int64_t b = item / HV, j = item % HV, h = j / (HV / H);
    token(a->state + item * K * V, a->o + item * V, a->q + (b * H + h) * K, a->k + (b * NH * H + h) * K, H * K,
          a->v + (b * NH * HV + j) * V, HV * V, a->beta + b * NH * HV + j, HV, a->g != NULL,
          a->g ? a->g[item] : 0, a->scale, NH, K, V);
}

static int step(real *o, real *state, const real *q, const real *k, const real *v, const real *beta,
                const real *g, real scale, int64_t B, int64_t NH, int64_t H, int64_t HV, int64_t K, int64_t V) {
    dims_t d = {.B = B, .T = 1, .NH = NH, .H = H, .HV = HV, .K = K, .V = V};
    if (bad_dims(&d) || (B > 0 && (!o || !state || !q || !k || !v || !beta))) return -1;
    ref_t a = {.o = o, .state = state, .q = q, .k = k, .v = v, .beta = beta, .g = g, .scale = scale, .d = d};
    hb_parallel_for_work(B * HV, hb_state_step_work(B * HV * NH, K, V), step_item, &a);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* The interleaved sequence of T·NH sub-steps                                                     */

/* dst row (r·NH + pos) = src row r, for the R rows of w reals (dst zeroed by the caller). */
static void spread(real *dst, const real *src, int64_t R, int64_t NH, int64_t pos, int64_t w) {
    for (int64_t r = 0; r < R; r++) memcpy(dst + (r * NH + pos) * w, src + r * w, (size_t)w * sizeof(real));
}

/* dst row r = (or +=, when add) src row (r·NH + pos). */
static void gather(real *dst, const real *src, int64_t R, int64_t NH, int64_t pos, int64_t w, int add) {
    for (int64_t r = 0; r < R; r++) {
        const real *s = src + (r * NH + pos) * w;
        real *o = dst + r * w;
        if (add)
            for (int64_t x = 0; x < w; x++) o[x] += s[x];
        else
            memcpy(o, s, (size_t)w * sizeof(real));
    }
}

/* A zeroed buffer of n reals (NULL on failure; n = 0 gives one element). */
static real *zalloc(int64_t n) { return hb_calloc((size_t)(n > 0 ? n : 1), sizeof(real)); }

/* The inputs of the delta rule on the sub-step sequence: q̃ and g̃ spread (NH > 1) or the caller's. */
typedef struct {
    const real *q, *g;
    real *qbuf, *gbuf; /* owned, NULL when not needed */
} spread_t;

static int spread_inputs(spread_t *s, const real *q, const real *g, const dims_t *d) {
    const int64_t rows = d->B * d->T; /* tokens on the flattened axis (B = 1 when packed) */
    memset(s, 0, sizeof *s);
    s->q = q, s->g = g;
    if (d->NH == 1) return 0;
    s->qbuf = zalloc(rows * d->NH * d->H * d->K);
    if (g) s->gbuf = zalloc(rows * d->NH * d->HV);
    if (!s->qbuf || (g && !s->gbuf)) return -1;
    spread(s->qbuf, q, rows, d->NH, d->NH - 1, d->H * d->K);
    if (g) spread(s->gbuf, g, rows, d->NH, 0, d->HV);
    s->q = s->qbuf, s->g = s->gbuf;
    return 0;
}

static void spread_free(spread_t *s) { hb_free(s->qbuf), hb_free(s->gbuf); }

/* The delta-rule call on every sequence of sub-steps: one call over the B rows, or one per packed
 * document. Pointers are at the start of the whole (B, T·NH, ...) sequence; the loop offsets them. */
typedef struct {
    real *o, *ht, *hs;                   /* forward */
    real *dq, *dk, *dv, *dbeta, *dg;     /* backward */
    const real *dout, *q, *k, *v, *beta, *g, *h0, *hsin;
    real scale;
} dr_call_t;

enum { DR_FWD_CHUNK, DR_BWD_CHUNK, DR_BWD_REF };

static int dr_run(int kind, const dr_call_t *c, const dims_t *d) {
    const int64_t NH = d->NH, H = d->H, HV = d->HV, K = d->K, V = d->V, KV = K * V;
    const int64_t ns = hb_seq_count(d->cu, d->N, d->B);
    const int per_doc = d->cu != NULL;
    int64_t hs_off = 0;
    for (int64_t n = 0; n < (per_doc ? ns : 1); n++) {
        const hb_seq_t s = per_doc ? hb_seq_get(d->cu, d->T, n) : (hb_seq_t){0, d->T};
        const int64_t B = per_doc ? 1 : d->B, R = s.len * NH, r0 = s.start * NH; /* sub-steps */
        const int64_t st = per_doc ? n * HV * KV : 0;
#define AT(p, w) ((p) ? (p) + r0 * (w) : NULL)
        const real *q = AT(c->q, H * K), *k = AT(c->k, H * K), *v = AT(c->v, HV * V);
        const real *beta = AT(c->beta, HV), *g = AT(c->g, HV), *dout = AT(c->dout, HV * V);
        const real *h0 = c->h0 ? c->h0 + st : NULL;
        int rc;
        if (kind == DR_FWD_CHUNK) {
            rc = dr_fwd_chunk(AT(c->o, HV * V), c->ht ? c->ht + st : NULL, c->hs ? c->hs + hs_off : NULL, q, k, v,
                              beta, g, h0, c->scale, NULL, 0, B, R, H, HV, K, V, d->C);
        } else if (kind == DR_BWD_CHUNK) {
            rc = dr_bwd_chunk(AT(c->dq, H * K), AT(c->dk, H * K), AT(c->dv, HV * V), AT(c->dbeta, HV),
                              AT(c->dg, HV), dout, q, k, v, beta, g, h0, c->hsin ? c->hsin + hs_off : NULL,
                              c->scale, NULL, 0, B, R, H, HV, K, V, d->C);
        } else {
            rc = dr_bwd_ref(AT(c->dq, H * K), AT(c->dk, H * K), AT(c->dv, HV * V), AT(c->dbeta, HV),
                            AT(c->dg, HV), dout, q, k, v, beta, g, h0, c->scale, NULL, 0, B, R, H, HV,
                            K, V);
        }
#undef AT
        if (rc) return -1;
        if (kind != DR_BWD_REF) hs_off += HV * ((R + d->C - 1) / d->C) * KV;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Chunked forward, and both backwards                                                            */

static int fwd_chunk(real *o, real *ht, real *hs, const real *q, const real *k, const real *v,
                     const real *beta, const real *g, const real *h0, real scale, dims_t d) {
    if (bad_dims(&d) || d.C < 1 || (d.T > 0 && (!o || !q || !k || !v || !beta))) return -1;
    const int64_t rows = d.B * d.T, w = d.HV * d.V;
    spread_t s;
    real *obuf = NULL;
    int rc = spread_inputs(&s, q, g, &d);
    if (!rc && d.NH > 1 && !(obuf = zalloc(rows * d.NH * w))) rc = -1;
    if (!rc) {
        dr_call_t c = {.o = d.NH > 1 ? obuf : o, .ht = ht, .hs = hs, .q = s.q, .k = k, .v = v, .beta = beta,
                       .g = s.g, .h0 = h0, .scale = scale};
        rc = dr_run(DR_FWD_CHUNK, &c, &d);
    }
    if (!rc && d.NH > 1) gather(o, obuf, rows, d.NH, d.NH - 1, w, 0);
    hb_free(obuf);
    spread_free(&s);
    return rc;
}

/* both backwards: ref = 1 runs the delta rule's BPTT, else its chunked backward (hs optional) */
static int bwd(int ref, real *dq, real *dk, real *dv, real *dbeta, real *dg, const real *do_, const real *q,
               const real *k, const real *v, const real *beta, const real *g, const real *h0, const real *hs,
               real scale, dims_t d) {
    if (bad_dims(&d) || (!ref && d.C < 1) || (d.T > 0 && (!do_ || !q || !k || !v || !beta))) return -1;
    const int64_t rows = d.B * d.T, NH = d.NH;
    if (!g) dg = NULL;
    spread_t s;
    real *dobuf = NULL, *dqbuf = NULL, *dgbuf = NULL;
    int rc = spread_inputs(&s, q, g, &d);
    if (!rc && NH > 1) {
        dobuf = zalloc(rows * NH * d.HV * d.V);
        if (dq) dqbuf = zalloc(rows * NH * d.H * d.K);
        if (dg) dgbuf = zalloc(rows * NH * d.HV);
        if (!dobuf || (dq && !dqbuf) || (dg && !dgbuf)) rc = -1;
        else spread(dobuf, do_, rows, NH, NH - 1, d.HV * d.V);
    }
    if (!rc) {
        dr_call_t c = {.dq = NH > 1 ? dqbuf : dq, .dk = dk, .dv = dv, .dbeta = dbeta, .dg = NH > 1 ? dgbuf : dg,
                       .dout = NH > 1 ? dobuf : do_, .q = s.q, .k = k, .v = v, .beta = beta, .g = s.g, .h0 = h0,
                       .hsin = hs, .scale = scale};
        rc = dr_run(ref ? DR_BWD_REF : DR_BWD_CHUNK, &c, &d);
    }
    if (!rc && NH > 1) {
        if (dq) gather(dq, dqbuf, rows, NH, NH - 1, d.H * d.K, 1);
        if (dg) gather(dg, dgbuf, rows, NH, 0, d.HV, 1);
    }
    hb_free(dobuf), hb_free(dqbuf), hb_free(dgbuf);
    spread_free(&s);
    return rc;
}

/* ---- the mixer descriptor's adapters (kernels/mixer.h) ------------------------------------------- */
/* dims "B T NH H HV K V"; inputs q, k, v, beta, g (optional); scalar scale; saves the chunk states hs
 * (B,HV,NC,K,V), NC = ceil(T·NH/C) (per document when packed: a->cu_seqlens, a->N), for the chunked
 * backward. */
static dims_t mixer_dims(const hb_mixer_args_t *a) {
    return (dims_t){.cu = a->cu_seqlens, .N = a->N, .B = a->dim[0], .T = a->dim[1], .NH = a->dim[2], .H = a->dim[3],
                    .HV = a->dim[4], .K = a->dim[5], .V = a->dim[6], .C = a->chunk};
}
static int mixer_fwd_chunk(const hb_mixer_args_t *a) {
    return fwd_chunk(a->o, a->ht, a->saved, a->in[0], a->in[1], a->in[2], a->in[3], a->in[4], NULL,
                     (real)a->scalar[0], mixer_dims(a));
}
static int mixer_bwd_chunk(const hb_mixer_args_t *a) {
    return bwd(0, a->din[0], a->din[1], a->din[2], a->din[3], a->din[4], a->dout, a->in[0], a->in[1], a->in[2],
               a->in[3], a->in[4], NULL, a->saved, (real)a->scalar[0], mixer_dims(a));
}
static int mixer_fwd_recurrent(const hb_mixer_args_t *a) {
    return fwd_ref(a->o, a->ht, a->in[0], a->in[1], a->in[2], a->in[3], a->in[4], NULL, (real)a->scalar[0],
                   mixer_dims(a));
}
static int mixer_bwd_recurrent(const hb_mixer_args_t *a) {
    return bwd(1, a->din[0], a->din[1], a->din[2], a->din[3], a->din[4], a->dout, a->in[0], a->in[1], a->in[2],
               a->in[3], a->in[4], NULL, NULL, (real)a->scalar[0], mixer_dims(a));
}
static int mixer_step(const hb_mixer_args_t *a) {
    return step(a->o, a->state, a->in[0], a->in[1], a->in[2], a->in[3], a->in[4], (real)a->scalar[0], a->dim[0],
                a->dim[2], a->dim[3], a->dim[4], a->dim[5], a->dim[6]);
}

/* ---- the exported names, written out (this file is compiled twice: kernels/kreal.h) ---------------- */
#define DIMS(C_) \
    (dims_t) { .cu = cu_seqlens, .N = N, .B = B, .T = T, .NH = NH, .H = H, .HV = HV, .K = K, .V = V, .C = C_ }
#ifdef HB_KERNEL_F64
int deltaproduct_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                             const double *beta, const double *g, const double *h0, double scale,
                             const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t NH,
                             int64_t H, int64_t HV, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, beta, g, h0, scale, DIMS(1));
}
int deltaproduct_bwd_ref_f64(double *dq, double *dk, double *dv, double *dbeta, double *dg,
                             const double *do_, const double *q, const double *k, const double *v,
                             const double *beta, const double *g, const double *h0, double scale,
                             const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t NH,
                             int64_t H, int64_t HV, int64_t K, int64_t V) {
    return bwd(1, dq, dk, dv, dbeta, dg, do_, q, k, v, beta, g, h0, NULL, scale, DIMS(1));
}
int deltaproduct_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k,
                               const double *v, const double *beta, const double *g, const double *h0,
                               double scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                               int64_t NH, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, beta, g, h0, scale, DIMS(C));
}
int deltaproduct_bwd_chunk_f64(double *dq, double *dk, double *dv, double *dbeta, double *dg,
                               const double *do_, const double *q, const double *k, const double *v,
                               const double *beta, const double *g, const double *h0, const double *hs,
                               double scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                               int64_t NH, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return bwd(0, dq, dk, dv, dbeta, dg, do_, q, k, v, beta, g, h0, hs, scale, DIMS(C));
}
int deltaproduct_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                          const double *beta, const double *g, double scale, int64_t B, int64_t NH,
                          int64_t H, int64_t HV, int64_t K, int64_t V) {
    return step(o, state, q, k, v, beta, g, scale, B, NH, H, HV, K, V);
}
int deltaproduct_mixer_fwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int deltaproduct_mixer_bwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int deltaproduct_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int deltaproduct_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int deltaproduct_mixer_step_f64(const hb_mixer_args_t *a) { return mixer_step(a); }
#else
int deltaproduct_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                             const float *beta, const float *g, const float *h0, float scale,
                             const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t NH,
                             int64_t H, int64_t HV, int64_t K, int64_t V) {
    return fwd_ref(o, ht, q, k, v, beta, g, h0, scale, DIMS(1));
}
int deltaproduct_bwd_ref_f32(float *dq, float *dk, float *dv, float *dbeta, float *dg, const float *do_,
                             const float *q, const float *k, const float *v, const float *beta,
                             const float *g, const float *h0, float scale, const int64_t *cu_seqlens,
                             int64_t N, int64_t B, int64_t T, int64_t NH, int64_t H, int64_t HV, int64_t K,
                             int64_t V) {
    return bwd(1, dq, dk, dv, dbeta, dg, do_, q, k, v, beta, g, h0, NULL, scale, DIMS(1));
}
int deltaproduct_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k,
                               const float *v, const float *beta, const float *g, const float *h0,
                               float scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                               int64_t NH, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return fwd_chunk(o, ht, hs, q, k, v, beta, g, h0, scale, DIMS(C));
}
int deltaproduct_bwd_chunk_f32(float *dq, float *dk, float *dv, float *dbeta, float *dg, const float *do_,
                               const float *q, const float *k, const float *v, const float *beta,
                               const float *g, const float *h0, const float *hs, float scale,
                               const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t NH,
                               int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C) {
    return bwd(0, dq, dk, dv, dbeta, dg, do_, q, k, v, beta, g, h0, hs, scale, DIMS(C));
}
int deltaproduct_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                          const float *beta, const float *g, float scale, int64_t B, int64_t NH, int64_t H,
                          int64_t HV, int64_t K, int64_t V) {
    return step(o, state, q, k, v, beta, g, scale, B, NH, H, HV, K, V);
}
int deltaproduct_mixer_fwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int deltaproduct_mixer_bwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int deltaproduct_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int deltaproduct_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int deltaproduct_mixer_step_f32(const hb_mixer_args_t *a) { return mixer_step(a); }
/* the chunk states hs (B,HV,NC,K,V), NC = ceil(T·NH/C), that the chunked forward hands its backward */
static int64_t mixer_saved_numel(const hb_mixer_args_t *a) {
    const dims_t d = mixer_dims(a);
    return deltaproduct_chunk_count(d.cu, d.N, d.B, d.T, d.NH, d.C) * d.HV * d.K * d.V;
}
/* the descriptor (compiled once, with the float pass; it names the double entry points too) */
const hb_mixer_desc_t hb_mixer_deltaproduct = {
    .name = "deltaproduct",
    .dims = "B T NH H HV K V",
    .in = {{"q", "B T H K", HB_IN_GRAD},
           {"k", "B T NH H K", HB_IN_GRAD},
           {"v", "B T NH HV V", HB_IN_GRAD},
           {"beta", "B T NH HV", HB_IN_GRAD},
           {"g", "B T HV", HB_IN_GRAD | HB_IN_OPTIONAL}},
    .scalar = {{"scale", 0, "K"}},
    .out = "B T HV V",
    .state = "B HV K V",
    .multiple = {{"HV", "H"}},
    .chunk = 64,
    .packed = 1,
    .saved_numel = mixer_saved_numel,
    .f32 = {deltaproduct_mixer_fwd_chunk_f32, deltaproduct_mixer_bwd_chunk_f32,
            deltaproduct_mixer_fwd_recurrent_f32, deltaproduct_mixer_bwd_recurrent_f32,
            deltaproduct_mixer_step_f32},
    .f64 = {deltaproduct_mixer_fwd_chunk_f64, deltaproduct_mixer_bwd_chunk_f64,
            deltaproduct_mixer_fwd_recurrent_f64, deltaproduct_mixer_bwd_recurrent_f64,
            deltaproduct_mixer_step_f64},
};
#endif
