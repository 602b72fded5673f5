/* hgrn.c — HGRN's element-wise gated linear recurrence (spec §5.4, §12.3).
 *
 * Shapes: B batch, T time, D channels, C chunk length. x, g, o (B,T,D); states h0, ht (B,D).
 *
 *   h_t = e^{g_t} ⊙ h_{t−1} + x_t,   h_{−1} = h0 (or 0),   o_t = h_t          (g_t ≤ 0)
 *
 * Backward (do_t = ∂L/∂o_t, dh_t the total gradient reaching h_t):
 *   dh_t = do_t + e^{g_{t+1}} ⊙ dh_{t+1}    (dh_T = 0)
 *   dx_t = dh_t,   dg_t = dh_t ⊙ e^{g_t} ⊙ h_{t−1}     (h_{t−1} = o_{t−1}, or h0 at t = 0)
 *
 * Chunked form. Each channel is an independent first-order linear scan h_t = a_t h_{t−1} + x_t, and
 * a chunk [t0, t1) maps its entering state linearly: h_{t1−1} = ℓ + e^{Σ_{t0≤t<t1} g_t} h_{t0−1},
 * where ℓ is the chunk's local scan started from 0. So (like fla/ops/hgrn/chunk.py, but without
 * the (B,T,D) cumulative-gate buffer):
 *   phase 1  for every chunk but the last, in parallel: local scan → ℓ_j and Σ g over the chunk
 *   phase 2  per channel, sequential over chunks: the carry entering each chunk (cheap: NC steps)
 *   phase 3  every chunk in parallel: the exact scan from its carry, writing o.
 * The backward is the same over the reverse scan: a chunk maps the dh entering at its end (dh_{t1})
 * to dh_{t0} = ℓ' + e^{Σ_{t0<t≤t1} g_t} dh_{t1}.
 * Phases 1 and 3 both read the chunk (and compute e^{g}), so the chunked form does about twice the
 * work of a plain scan and only pays off when B × channel blocks alone cannot keep the threads busy;
 * with one chunk (C ≥ T) phase 3 is the plain scan. hgrn_chunk_hint (hgrn.h) picks C from the shapes.
 *
 * Work items are (batch, chunk, block of CB channels); the inner loops run over channels (stride 1).
 * Blocks are wide (CB = 1024) because a scan down a narrow column of a (T,D) array is several times
 * slower than one down whole rows (measured here: 64-channel columns ran 2–3× slower).
 * Each item writes only its own rows/channels, so results do not depend on the thread count.
 * There are no matrix products here: the recurrence is element-wise (the projections around it
 * are the GEMMs).
 */
#include "kreal.h"
#include "alloc.h"
#include "parallel.h"
#include "hgrn.h"
#include <stdlib.h>
#include <string.h>

enum { CB = 1024 };

/* Row helpers over n channels. restrict and the fixed 8-wide inner loops let gcc -O2 vectorise them
 * (its default cost model will not vectorise a loop that needs a scalar epilogue or alias checks). */
static void vexp(real *restrict e, const real *restrict g, int64_t n) {
    for (int64_t k = 0; k < n; k++) e[k] = kexp(g[k]);
}
/* h = e ⊙ h + x */
static void vscan(real *restrict h, const real *restrict e, const real *restrict x, int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) h[k + u] = e[k + u] * h[k + u] + x[k + u];
    for (; k < n; k++) h[k] = e[k] * h[k] + x[k];
}
/* z += s */
static void vadd(real *restrict z, const real *restrict s, int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) z[k + u] += s[k + u];
    for (; k < n; k++) z[k] += s[k];
}
/* z += a ⊙ b ⊙ c */
static void vaxpy3(real *restrict z, const real *restrict a, const real *restrict b, const real *restrict c, int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) z[k + u] += a[k + u] * b[k + u] * c[k + u];
    for (; k < n; k++) z[k] += a[k] * b[k] * c[k];
}

/* ---------------------------------------------------------------------------------------------
 * (1) Reference: the plain scan, serial.
 * ------------------------------------------------------------------------------------------- */

static int fwd_ref(real *o, real *ht, const real *x, const real *g, const real *h0,
                     int64_t B, int64_t T, int64_t D) {
    for (int64_t b = 0; b < B; b++) {
        const real *prev = h0 ? h0 + b * D : NULL;
        for (int64_t t = 0; t < T; t++) {
            const real *xt = x + (b * T + t) * D, *gt = g + (b * T + t) * D;
            real *ot = o + (b * T + t) * D;
            for (int64_t c = 0; c < D; c++) ot[c] = (prev ? kexp(gt[c]) * prev[c] : 0) + xt[c];
            prev = ot;
        }
        if (ht) {
            if (prev) memcpy(ht + b * D, prev, (size_t)D * sizeof(real));
            else memset(ht + b * D, 0, (size_t)D * sizeof(real));
        }
    }
    return 0;
}

static int bwd_ref(real *dx, real *dg, const real *do_, const real *g, const real *o,
                     const real *h0, int64_t B, int64_t T, int64_t D) {
    if ((!dx && !dg) || T <= 0) return 0;
    real *dh = hb_malloc((size_t)(D ? D : 1) * sizeof(real));
    if (!dh) return -1;
    for (int64_t b = 0; b < B; b++) {
        memset(dh, 0, (size_t)D * sizeof(real));
        for (int64_t t = T - 1; t >= 0; t--) {
            const int64_t row = (b * T + t) * D;
            const real *hprev = t > 0 ? o + row - D : h0 ? h0 + b * D : NULL;
            for (int64_t c = 0; c < D; c++) {
                const real a = t + 1 < T ? kexp(g[row + D + c]) : 0;
                dh[c] = do_[row + c] + a * dh[c];
                if (dx) dx[row + c] += dh[c];
                if (dg && hprev) dg[row + c] += dh[c] * kexp(g[row + c]) * hprev[c];
            }
        }
    }
    free(dh);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * (2) Chunked forward.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    real *o, *ht, *dx, *dg;
    const real *x, *g, *h0, *do_, *oin; /* oin: the forward output, read by the backward */
    int64_t B, T, D, C, NC, NB;
    real *sa, *sb; /* per-chunk summaries (B,NC,D): local end state / carry, and gate sums */
} ctx_t;

/* Number of chunks of length C (C ≤ 0 or C ≥ T: one). */
static int64_t n_chunks(int64_t T, int64_t C) {
    if (T <= 0) return 0;
    if (C < 1 || C >= T) return 1;
    return (T + C - 1) / C;
}

/* Decompose an item index into (batch, chunk, channel block) with chunks j ∈ [j0, j0 + nj). */
static void item_bjc(const ctx_t *c, int64_t i, int64_t j0, int64_t nj, int64_t *b, int64_t *j, int64_t *c0,
                     int64_t *nc) {
    const int64_t blk = i % c->NB, rest = i / c->NB;
    *j = j0 + rest % nj;
    *b = rest / nj;
    *c0 = blk * CB;
    *nc = c->D - *c0 < CB ? c->D - *c0 : CB;
}

/* Phase 1: local scan from 0 over chunk j < NC−1 → sa = ℓ_j, sb = Σ g. */
static void fwd_phase1(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    int64_t b, j, c0, n;
    item_bjc(c, i, 0, c->NC - 1, &b, &j, &c0, &n);
    real h[CB], s[CB], e[CB];
    for (int64_t k = 0; k < n; k++) h[k] = s[k] = 0;
    const int64_t t1 = (j + 1) * c->C;
    for (int64_t t = j * c->C; t < t1; t++) {
        const real *xt = c->x + (b * c->T + t) * c->D + c0, *gt = c->g + (b * c->T + t) * c->D + c0;
        vexp(e, gt, n);
        vscan(h, e, xt, n);
        vadd(s, gt, n);
    }
    memcpy(c->sa + (b * c->NC + j) * c->D + c0, h, (size_t)n * sizeof(real));
    memcpy(c->sb + (b * c->NC + j) * c->D + c0, s, (size_t)n * sizeof(real));
}

/* Phase 2: carries. sa[j] ← state entering chunk j. */
static void fwd_phase2(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const int64_t b = i / c->NB, c0 = (i % c->NB) * CB, n = c->D - c0 < CB ? c->D - c0 : CB;
    real carry[CB];
    for (int64_t k = 0; k < n; k++) carry[k] = c->h0 ? c->h0[b * c->D + c0 + k] : 0;
    for (int64_t j = 0; j < c->NC; j++) {
        real *la = c->sa + (b * c->NC + j) * c->D + c0;
        const real *lb = c->sb + (b * c->NC + j) * c->D + c0;
        for (int64_t k = 0; k < n; k++) {
            const real local = j + 1 < c->NC ? la[k] : 0; /* the last chunk has no phase-1 summary */
            la[k] = carry[k];
            if (j + 1 < c->NC) carry[k] = kexp(lb[k]) * carry[k] + local;
        }
    }
}

/* Phase 3: the exact scan of chunk j from its carry, writing o (and ht for the last chunk). The loop
 * is the reference's, so with one chunk the result is the reference's bit for bit. */
static void fwd_phase3(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    int64_t b, j, c0, n;
    item_bjc(c, i, 0, c->NC, &b, &j, &c0, &n);
    const real *prev = c->NC > 1 ? c->sa + (b * c->NC + j) * c->D + c0 : c->h0 ? c->h0 + b * c->D + c0 : NULL;
    const int64_t t1 = (j + 1) * c->C < c->T ? (j + 1) * c->C : c->T;
    for (int64_t t = j * c->C; t < t1; t++) {
        const int64_t row = (b * c->T + t) * c->D + c0;
        const real *xt = c->x + row, *gt = c->g + row;
        real *ot = c->o + row;
        if (prev)
            for (int64_t k = 0; k < n; k++) ot[k] = kexp(gt[k]) * prev[k] + xt[k];
        else
            memcpy(ot, xt, (size_t)n * sizeof(real));
        prev = ot;
    }
    if (c->ht && j == c->NC - 1) memcpy(c->ht + b * c->D + c0, prev, (size_t)n * sizeof(real));
}

static int fwd_chunk(real *o, real *ht, const real *x, const real *g, const real *h0,
                       int64_t B, int64_t T, int64_t D, int64_t C) {
    if (T <= 0) {
        for (int64_t i = 0; ht && i < B * D; i++) ht[i] = h0 ? h0[i] : 0;
        return 0;
    }
    if (B <= 0 || D <= 0) return 0;
    ctx_t c = {.o = o, .ht = ht, .x = x, .g = g, .h0 = h0, .B = B, .T = T, .D = D,
               .NC = n_chunks(T, C), .NB = (D + CB - 1) / CB};
    c.C = c.NC > 1 ? C : T;
    if (c.NC > 1) {
        c.sa = hb_malloc((size_t)(2 * B * c.NC * D) * sizeof(real));
        if (!c.sa) return -1;
        c.sb = c.sa + B * c.NC * D;
        hb_parallel_for(B * (c.NC - 1) * c.NB, fwd_phase1, &c);
        hb_parallel_for(B * c.NB, fwd_phase2, &c);
    }
    hb_parallel_for(B * c.NC * c.NB, fwd_phase3, &c);
    free(c.sa);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * (3) Chunked backward.
 * ------------------------------------------------------------------------------------------- */

/* Phase 1: local reverse scan of chunk j ≥ 1 from dh = 0 → sa = ℓ'_j (dh at t0), sb = Σ_{t0<t≤t1} g. */
static void bwd_phase1(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    int64_t b, j, c0, n;
    item_bjc(c, i, 1, c->NC - 1, &b, &j, &c0, &n);
    real dh[CB], s[CB], e[CB];
    const int64_t t0 = j * c->C, t1 = t0 + c->C < c->T ? t0 + c->C : c->T;
    for (int64_t k = 0; k < n; k++) dh[k] = s[k] = e[k] = 0; /* e = e^{g_{t+1}}; 0 past the chunk */
    if (t1 < c->T)
        for (int64_t k = 0; k < n; k++) s[k] = c->g[(b * c->T + t1) * c->D + c0 + k];
    for (int64_t t = t1 - 1; t >= t0; t--) {
        const int64_t row = (b * c->T + t) * c->D + c0;
        const real *dot = c->do_ + row, *gt = c->g + row;
        vscan(dh, e, dot, n);
        vexp(e, gt, n);
        if (t > t0) vadd(s, gt, n);
    }
    memcpy(c->sa + (b * c->NC + j) * c->D + c0, dh, (size_t)n * sizeof(real));
    memcpy(c->sb + (b * c->NC + j) * c->D + c0, s, (size_t)n * sizeof(real));
}

/* Phase 2: sa[j] ← dh_{t1} entering chunk j from the right (0 for the last chunk). */
static void bwd_phase2(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const int64_t b = i / c->NB, c0 = (i % c->NB) * CB, n = c->D - c0 < CB ? c->D - c0 : CB;
    real E[CB];
    for (int64_t k = 0; k < n; k++) E[k] = 0;
    for (int64_t j = c->NC - 1; j >= 0; j--) {
        real *la = c->sa + (b * c->NC + j) * c->D + c0;
        const real *lb = c->sb + (b * c->NC + j) * c->D + c0;
        for (int64_t k = 0; k < n; k++) {
            const real local = j > 0 ? la[k] : 0;
            la[k] = E[k];
            if (j > 0) E[k] = local + kexp(lb[k]) * E[k];
        }
    }
}

/* Phase 3: the exact reverse scan of chunk j from dh_{t1}, accumulating dx and dg. */
static void bwd_phase3(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    int64_t b, j, c0, n;
    item_bjc(c, i, 0, c->NC, &b, &j, &c0, &n);
    real dh[CB], e[CB];
    const int64_t t0 = j * c->C, t1 = t0 + c->C < c->T ? t0 + c->C : c->T, D = c->D;
    for (int64_t k = 0; k < n; k++) dh[k] = e[k] = 0;
    if (c->NC > 1 && t1 < c->T) {
        const real *in = c->sa + (b * c->NC + j) * D + c0, *gn = c->g + (b * c->T + t1) * D + c0;
        for (int64_t k = 0; k < n; k++) {
            dh[k] = in[k];
            e[k] = kexp(gn[k]);
        }
    }
    for (int64_t t = t1 - 1; t >= t0; t--) {
        const int64_t row = (b * c->T + t) * D + c0;
        const real *dot = c->do_ + row, *gt = c->g + row;
        const real *hprev = t > 0 ? c->oin + row - D : c->h0 ? c->h0 + b * D + c0 : NULL;
        vscan(dh, e, dot, n);
        vexp(e, gt, n);
        if (c->dx) vadd(c->dx + row, dh, n);
        if (c->dg && hprev) vaxpy3(c->dg + row, dh, e, hprev, n);
    }
}

static int bwd_chunk(real *dx, real *dg, const real *do_, const real *g, const real *o,
                       const real *h0, int64_t B, int64_t T, int64_t D, int64_t C) {
    if ((!dx && !dg) || T <= 0 || B <= 0 || D <= 0) return 0;
    ctx_t c = {.dx = dx, .dg = dg, .do_ = do_, .g = g, .oin = o, .h0 = h0, .B = B, .T = T, .D = D,
               .NC = n_chunks(T, C), .NB = (D + CB - 1) / CB};
    c.C = c.NC > 1 ? C : T;
    if (c.NC > 1) {
        c.sa = hb_malloc((size_t)(2 * B * c.NC * D) * sizeof(real));
        if (!c.sa) return -1;
        c.sb = c.sa + B * c.NC * D;
        hb_parallel_for(B * (c.NC - 1) * c.NB, bwd_phase1, &c);
        hb_parallel_for(B * c.NB, bwd_phase2, &c);
    }
    hb_parallel_for(B * c.NC * c.NB, bwd_phase3, &c);
    free(c.sa);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * (4) Single-step decode.
 * ------------------------------------------------------------------------------------------- */

static int step(real *o, real *state, const real *x, const real *g, int64_t B, int64_t D) {
    for (int64_t i = 0; i < B * D; i++) {
        state[i] = kexp(g[i]) * state[i] + x[i];
        o[i] = state[i];
    }
    return 0;
}

/* ---- the mixer descriptor's adapters (kernels/mixer.h) ------------------------------------------- */
/* dims "B T D"; inputs x, g (log forget gate); no scalar; the backward reads the output, not x */
static int mixer_fwd_chunk(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], D = a->dim[2];
    const real *x = a->in[0], *g = a->in[1];
    return fwd_chunk(a->o, a->ht, x, g, NULL, B, T, D, hgrn_chunk_hint(B, T, D));
}
static int mixer_bwd_chunk(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], D = a->dim[2];
    const real *g = a->in[1];
    return bwd_chunk(a->din[0], a->din[1], a->dout, g, a->out, NULL, B, T, D, hgrn_chunk_hint(B, T, D));
}
static int mixer_fwd_recurrent(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], D = a->dim[2];
    const real *x = a->in[0], *g = a->in[1];
    return fwd_ref(a->o, a->ht, x, g, NULL, B, T, D);
}
static int mixer_bwd_recurrent(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], D = a->dim[2];
    const real *g = a->in[1];
    return bwd_ref(a->din[0], a->din[1], a->dout, g, a->out, NULL, B, T, D);
}
static int mixer_step(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], D = a->dim[2];
    const real *x = a->in[0], *g = a->in[1];
    return step(a->o, a->state, x, g, B, D);
}

/* ---- the exported names, written out (this file is compiled twice: kernels/kreal.h) ---------------- */
#ifdef HB_KERNEL_F64
int hgrn_fwd_ref_f64(double *o, double *ht, const double *x, const double *g, const double *h0, int64_t B,
                     int64_t T, int64_t D) {
    return fwd_ref(o, ht, x, g, h0, B, T, D);
}
int hgrn_bwd_ref_f64(double *dx, double *dg, const double *do_, const double *g, const double *o,
                     const double *h0, int64_t B, int64_t T, int64_t D) {
    return bwd_ref(dx, dg, do_, g, o, h0, B, T, D);
}
int hgrn_fwd_chunk_f64(double *o, double *ht, const double *x, const double *g, const double *h0, int64_t B,
                       int64_t T, int64_t D, int64_t C) {
    return fwd_chunk(o, ht, x, g, h0, B, T, D, C);
}
int hgrn_bwd_chunk_f64(double *dx, double *dg, const double *do_, const double *g, const double *o,
                       const double *h0, int64_t B, int64_t T, int64_t D, int64_t C) {
    return bwd_chunk(dx, dg, do_, g, o, h0, B, T, D, C);
}
int hgrn_step_f64(double *o, double *state, const double *x, const double *g, int64_t B, int64_t D) {
    return step(o, state, x, g, B, D);
}
int hgrn_mixer_fwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int hgrn_mixer_bwd_chunk_f64(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int hgrn_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int hgrn_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int hgrn_mixer_step_f64(const hb_mixer_args_t *a) { return mixer_step(a); }
#else
int hgrn_fwd_ref_f32(float *o, float *ht, const float *x, const float *g, const float *h0, int64_t B,
                     int64_t T, int64_t D) {
    return fwd_ref(o, ht, x, g, h0, B, T, D);
}
int hgrn_bwd_ref_f32(float *dx, float *dg, const float *do_, const float *g, const float *o, const float *h0,
                     int64_t B, int64_t T, int64_t D) {
    return bwd_ref(dx, dg, do_, g, o, h0, B, T, D);
}
int hgrn_fwd_chunk_f32(float *o, float *ht, const float *x, const float *g, const float *h0, int64_t B,
                       int64_t T, int64_t D, int64_t C) {
    return fwd_chunk(o, ht, x, g, h0, B, T, D, C);
}
int hgrn_bwd_chunk_f32(float *dx, float *dg, const float *do_, const float *g, const float *o,
                       const float *h0, int64_t B, int64_t T, int64_t D, int64_t C) {
    return bwd_chunk(dx, dg, do_, g, o, h0, B, T, D, C);
}
int hgrn_step_f32(float *o, float *state, const float *x, const float *g, int64_t B, int64_t D) {
    return step(o, state, x, g, B, D);
}
int hgrn_mixer_fwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_fwd_chunk(a); }
int hgrn_mixer_bwd_chunk_f32(const hb_mixer_args_t *a) { return mixer_bwd_chunk(a); }
int hgrn_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_fwd_recurrent(a); }
int hgrn_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a) { return mixer_bwd_recurrent(a); }
int hgrn_mixer_step_f32(const hb_mixer_args_t *a) { return mixer_step(a); }
/* the descriptor (compiled once, with the float pass; it names the double entry points too) */
const hb_mixer_desc_t hb_mixer_hgrn = {
    .name = "hgrn",
    .dims = "B T D",
    .in = {{"x", "B T D", HB_IN_GRAD | HB_IN_UNSAVED},
           {"g", "B T D", HB_IN_GRAD}},
    .out = "B T D",
    .state = "B D",
    .chunk = 0, /* the chunk length comes from hgrn_chunk_hint (shapes only) */
    .saves_output = 1,
    .f32 = {hgrn_mixer_fwd_chunk_f32, hgrn_mixer_bwd_chunk_f32, hgrn_mixer_fwd_recurrent_f32,
            hgrn_mixer_bwd_recurrent_f32, hgrn_mixer_step_f32},
    .f64 = {hgrn_mixer_fwd_chunk_f64, hgrn_mixer_bwd_chunk_f64, hgrn_mixer_fwd_recurrent_f64,
            hgrn_mixer_bwd_recurrent_f64, hgrn_mixer_step_f64},
};
#endif
