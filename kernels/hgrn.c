/* hgrn.c — HGRN's element-wise gated linear recurrence (docs/mixers.md#hgrn, docs/mixers.md#chunked-forms).
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
 * Sequences (kernels/seqs.h): the B rows or the N packed documents of cu_seqlens; each has its own
 * chunks, counted from its first token (choff numbers them across sequences), its own h0 and ht.
 * Work items are (sequence, chunk, block of CB channels); the inner loops run over channels (stride 1).
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
#include "seqs.h"
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
static void vaxpy3(real *restrict z, const real *restrict a, const real *restrict b, const real *restrict c,
                   int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) z[k + u] += a[k + u] * b[k + u] * c[k + u];
    for (; k < n; k++) z[k] += a[k] * b[k] * c[k];
}

/* ---------------------------------------------------------------------------------------------
 * Sequences (kernels/seqs.h): the B rows, or the N packed documents of cu_seqlens. Row r of the
 * flattened token axis is at x + r·D; the state of sequence n at h0 + n·D.
 * ------------------------------------------------------------------------------------------- */

/* The argument checks shared by every full-sequence entry point. */
static int bad_args(const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t D) {
    return B < 0 || T < 0 || D < 0 || hb_seqs_check(cu, N, B, T);
}

/* ---------------------------------------------------------------------------------------------
 * (1) Reference: the plain scan, serial.
 * ------------------------------------------------------------------------------------------- */

static int fwd_ref(real *o, real *ht, const real *x, const real *g, const real *h0, const int64_t *cu, int64_t N,
                   int64_t B, int64_t T, int64_t D) {
    if (bad_args(cu, N, B, T, D)) return -1;
    const int64_t ns = hb_seq_count(cu, N, B);
    for (int64_t n = 0; n < ns; n++) {
        const hb_seq_t s = hb_seq_get(cu, T, n);
        const real *prev = h0 ? h0 + n * D : NULL;
        for (int64_t t = 0; t < s.len; t++) {
            const real *xt = x + (s.start + t) * D, *gt = g + (s.start + t) * D;
            real *ot = o + (s.start + t) * D;
            for (int64_t c = 0; c < D; c++) ot[c] = (prev ? kexp(gt[c]) * prev[c] : 0) + xt[c];
            prev = ot;
        }
        if (ht) {
            if (prev) memcpy(ht + n * D, prev, (size_t)D * sizeof(real));
            else memset(ht + n * D, 0, (size_t)D * sizeof(real));
        }
    }
    return 0;
}

static int bwd_ref(real *dx, real *dg, const real *do_, const real *g, const real *o, const real *h0,
                   const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t D) {
    if (bad_args(cu, N, B, T, D)) return -1;
    if ((!dx && !dg) || T <= 0) return 0;
    real *dh = hb_malloc((size_t)(D ? D : 1) * sizeof(real));
    if (!dh) return -1;
    const int64_t ns = hb_seq_count(cu, N, B);
    for (int64_t n = 0; n < ns; n++) {
        const hb_seq_t s = hb_seq_get(cu, T, n);
        memset(dh, 0, (size_t)D * sizeof(real));
        for (int64_t t = s.len - 1; t >= 0; t--) {
            const int64_t row = (s.start + t) * D;
            const real *hprev = t > 0 ? o + row - D : h0 ? h0 + n * D : NULL;
            for (int64_t c = 0; c < D; c++) {
                const real a = t + 1 < s.len ? kexp(g[row + D + c]) : 0;
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
 * (2) Chunked forward. Chunks are counted from each sequence's first token: sequence n has nc_n =
 * ceil(len_n / C) chunks, numbered choff[n] .. choff[n+1]−1 among all of them.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    real *o, *ht, *dx, *dg;
    const real *x, *g, *h0, *do_, *oin; /* oin: the forward output, read by the backward */
    const int64_t *cu;                  /* cu_seqlens or NULL */
    int64_t T, D, C, NS, NCT, NB;       /* NS sequences, NCT chunks over all of them, NB channel blocks */
    int64_t *choff;                     /* (NS+1) first chunk of each sequence */
    real *sa, *sb; /* per-chunk summaries (NCT,D): local end state / carry, and gate sums */
} ctx_t;

/* The chunk length used: C ≤ 0 means one chunk per sequence. */
static int64_t chunk_len(int64_t C, int64_t maxlen) { return C < 1 || C > maxlen ? (maxlen > 0 ? maxlen : 1) : C; }

/* Fill c->choff / c->NCT; returns -1 when the offsets could not be allocated. */
static int chunk_plan(ctx_t *c, int64_t N, int64_t B) {
    c->NS = hb_seq_count(c->cu, N, B);
    c->choff = hb_malloc((size_t)(c->NS + 1) * sizeof(int64_t));
    if (!c->choff) return -1;
    c->choff[0] = 0;
    for (int64_t n = 0; n < c->NS; n++) {
        const hb_seq_t s = hb_seq_get(c->cu, c->T, n);
        c->choff[n + 1] = c->choff[n] + (s.len + c->C - 1) / c->C;
    }
    c->NCT = c->choff[c->NS];
    return 0;
}

/* An item (chunk among all chunks, block of channels): its sequence n, chunk j within it, row range
 * [t0, t1) within the sequence, sequence start, channel range [c0, c0 + nc). */
typedef struct {
    int64_t n, j, nj, t0, t1, start, c0, nc;
} item_t;

static item_t item_of(const ctx_t *c, int64_t i) {
    item_t it;
    const int64_t blk = i % c->NB, gc = i / c->NB;
    int64_t lo = 0, hi = c->NS - 1; /* the last n with choff[n] <= gc */
    while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (c->choff[mid] <= gc) lo = mid;
        else hi = mid - 1;
    }
    const hb_seq_t s = hb_seq_get(c->cu, c->T, lo);
    it.n = lo;
    it.j = gc - c->choff[lo];
    it.nj = c->choff[lo + 1] - c->choff[lo];
    it.start = s.start;
    it.t0 = it.j * c->C;
    it.t1 = it.t0 + c->C < s.len ? it.t0 + c->C : s.len;
    it.c0 = blk * CB;
    it.nc = c->D - it.c0 < CB ? c->D - it.c0 : CB;
    return it;
}

/* Phase 1: local scan from 0 over a chunk that is not its sequence's last → sa = ℓ_j, sb = Σ g. */
static void fwd_phase1(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const item_t it = item_of(c, i);
    if (it.j == it.nj - 1) return;
    const int64_t n = it.nc, c0 = it.c0;
    real h[CB], s[CB], e[CB];
    for (int64_t k = 0; k < n; k++) h[k] = s[k] = 0;
    for (int64_t t = it.t0; t < it.t1; t++) {
        const real *xt = c->x + (it.start + t) * c->D + c0, *gt = c->g + (it.start + t) * c->D + c0;
        vexp(e, gt, n);
        vscan(h, e, xt, n);
        vadd(s, gt, n);
    }
    const int64_t gc = c->choff[it.n] + it.j;
    memcpy(c->sa + gc * c->D + c0, h, (size_t)n * sizeof(real));
    memcpy(c->sb + gc * c->D + c0, s, (size_t)n * sizeof(real));
}

/* Phase 2, per (sequence, channel block): carries. sa[j] ← state entering chunk j. */
static void fwd_phase2(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const int64_t b = i / c->NB, c0 = (i % c->NB) * CB, n = c->D - c0 < CB ? c->D - c0 : CB;
    const int64_t nj = c->choff[b + 1] - c->choff[b];
    real carry[CB];
    for (int64_t k = 0; k < n; k++) carry[k] = c->h0 ? c->h0[b * c->D + c0 + k] : 0;
    for (int64_t j = 0; j < nj; j++) {
        real *la = c->sa + (c->choff[b] + j) * c->D + c0;
        const real *lb = c->sb + (c->choff[b] + j) * c->D + c0;
        for (int64_t k = 0; k < n; k++) {
            const real local = j + 1 < nj ? la[k] : 0; /* the last chunk has no phase-1 summary */
            la[k] = carry[k];
            if (j + 1 < nj) carry[k] = kexp(lb[k]) * carry[k] + local;
        }
    }
}

/* Phase 3: the exact scan of a chunk from its carry, writing o (and ht for a sequence's last chunk).
 * The loop is the reference's, so with one chunk per sequence the result is the reference's bit for bit. */
static void fwd_phase3(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const item_t it = item_of(c, i);
    const int64_t n = it.nc, c0 = it.c0;
    const real *prev = it.nj > 1 ? c->sa + (c->choff[it.n] + it.j) * c->D + c0
                                 : c->h0 ? c->h0 + it.n * c->D + c0 : NULL;
    for (int64_t t = it.t0; t < it.t1; t++) {
        const int64_t row = (it.start + t) * c->D + c0;
        const real *xt = c->x + row, *gt = c->g + row;
        real *ot = c->o + row;
        if (prev)
            for (int64_t k = 0; k < n; k++) ot[k] = kexp(gt[k]) * prev[k] + xt[k];
        else
            memcpy(ot, xt, (size_t)n * sizeof(real));
        prev = ot;
    }
    if (c->ht && it.j == it.nj - 1) memcpy(c->ht + it.n * c->D + c0, prev, (size_t)n * sizeof(real));
}

/* ht of the sequences without a token: h0 (or 0). */
static void empty_states(real *ht, const real *h0, const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t D) {
    for (int64_t n = 0; ht && n < hb_seq_count(cu, N, B); n++)
        if (hb_seq_get(cu, T, n).len == 0)
            for (int64_t k = 0; k < D; k++) ht[n * D + k] = h0 ? h0[n * D + k] : 0;
}

static int fwd_chunk(real *o, real *ht, const real *x, const real *g, const real *h0, const int64_t *cu, int64_t N,
                     int64_t B, int64_t T, int64_t D, int64_t C) {
    if (bad_args(cu, N, B, T, D)) return -1;
    empty_states(ht, h0, cu, N, B, T, D);
    if (T <= 0 || B <= 0 || D <= 0) return 0;
    ctx_t c = {.o = o, .ht = ht, .x = x, .g = g, .h0 = h0, .cu = cu, .T = T, .D = D,
               .C = chunk_len(C, hb_seq_maxlen(cu, N, T)), .NB = (D + CB - 1) / CB};
    if (chunk_plan(&c, N, B)) return -1;
    if (c.NCT > c.NS) { /* some sequence has two chunks or more */
        c.sa = hb_malloc((size_t)(2 * c.NCT * D) * sizeof(real));
        if (!c.sa) { free(c.choff); return -1; }
        c.sb = c.sa + c.NCT * D;
        hb_parallel_for(c.NCT * c.NB, fwd_phase1, &c);
        hb_parallel_for(c.NS * c.NB, fwd_phase2, &c);
    }
    hb_parallel_for(c.NCT * c.NB, fwd_phase3, &c);
    free(c.sa);
    free(c.choff);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * (3) Chunked backward.
 * ------------------------------------------------------------------------------------------- */

/* Phase 1: local reverse scan of a chunk j ≥ 1 from dh = 0 → sa = ℓ'_j (dh at t0), sb = Σ_{t0<t≤t1} g. */
static void bwd_phase1(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const item_t it = item_of(c, i);
    if (it.j == 0) return;
    const int64_t n = it.nc, c0 = it.c0, t0 = it.t0, t1 = it.t1;
    real dh[CB], s[CB], e[CB];
    for (int64_t k = 0; k < n; k++) dh[k] = s[k] = e[k] = 0; /* e = e^{g_{t+1}}; 0 past the chunk */
    if (it.j + 1 < it.nj)
        for (int64_t k = 0; k < n; k++) s[k] = c->g[(it.start + t1) * c->D + c0 + k];
    for (int64_t t = t1 - 1; t >= t0; t--) {
        const int64_t row = (it.start + t) * c->D + c0;
        const real *dot = c->do_ + row, *gt = c->g + row;
        vscan(dh, e, dot, n);
        vexp(e, gt, n);
        if (t > t0) vadd(s, gt, n);
    }
    const int64_t gc = c->choff[it.n] + it.j;
    memcpy(c->sa + gc * c->D + c0, dh, (size_t)n * sizeof(real));
    memcpy(c->sb + gc * c->D + c0, s, (size_t)n * sizeof(real));
}

/* Phase 2, per (sequence, channel block): sa[j] ← dh_{t1} entering chunk j from the right (0 for the last). */
static void bwd_phase2(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const int64_t b = i / c->NB, c0 = (i % c->NB) * CB, n = c->D - c0 < CB ? c->D - c0 : CB;
    const int64_t nj = c->choff[b + 1] - c->choff[b];
    real E[CB];
    for (int64_t k = 0; k < n; k++) E[k] = 0;
    for (int64_t j = nj - 1; j >= 0; j--) {
        real *la = c->sa + (c->choff[b] + j) * c->D + c0;
        const real *lb = c->sb + (c->choff[b] + j) * c->D + c0;
        for (int64_t k = 0; k < n; k++) {
            const real local = j > 0 ? la[k] : 0;
            la[k] = E[k];
            if (j > 0) E[k] = local + kexp(lb[k]) * E[k];
        }
    }
}

/* Phase 3: the exact reverse scan of a chunk from dh_{t1}, accumulating dx and dg. */
static void bwd_phase3(void *vctx, int64_t i) {
    const ctx_t *c = vctx;
    const item_t it = item_of(c, i);
    const int64_t n = it.nc, c0 = it.c0, t0 = it.t0, t1 = it.t1, D = c->D;
    real dh[CB], e[CB];
    for (int64_t k = 0; k < n; k++) dh[k] = e[k] = 0;
    if (it.nj > 1 && it.j + 1 < it.nj) {
        const real *in = c->sa + (c->choff[it.n] + it.j) * D + c0, *gn = c->g + (it.start + t1) * D + c0;
        for (int64_t k = 0; k < n; k++) {
            dh[k] = in[k];
            e[k] = kexp(gn[k]);
        }
    }
    for (int64_t t = t1 - 1; t >= t0; t--) {
        const int64_t row = (it.start + t) * D + c0;
        const real *dot = c->do_ + row, *gt = c->g + row;
        const real *hprev = t > 0 ? c->oin + row - D : c->h0 ? c->h0 + it.n * D + c0 : NULL;
        vscan(dh, e, dot, n);
        vexp(e, gt, n);
        if (c->dx) vadd(c->dx + row, dh, n);
        if (c->dg && hprev) vaxpy3(c->dg + row, dh, e, hprev, n);
    }
}

static int bwd_chunk(real *dx, real *dg, const real *do_, const real *g, const real *o, const real *h0,
                     const int64_t *cu, int64_t N, int64_t B, int64_t T, int64_t D, int64_t C) {
    if (bad_args(cu, N, B, T, D)) return -1;
    if ((!dx && !dg) || T <= 0 || B <= 0 || D <= 0) return 0;
    ctx_t c = {.dx = dx, .dg = dg, .do_ = do_, .g = g, .oin = o, .h0 = h0, .cu = cu, .T = T, .D = D,
               .C = chunk_len(C, hb_seq_maxlen(cu, N, T)), .NB = (D + CB - 1) / CB};
    if (chunk_plan(&c, N, B)) return -1;
    if (c.NCT > c.NS) {
        c.sa = hb_malloc((size_t)(2 * c.NCT * D) * sizeof(real));
        if (!c.sa) { free(c.choff); return -1; }
        c.sb = c.sa + c.NCT * D;
        hb_parallel_for(c.NCT * c.NB, bwd_phase1, &c);
        hb_parallel_for(c.NS * c.NB, bwd_phase2, &c);
    }
    hb_parallel_for(c.NCT * c.NB, bwd_phase3, &c);
    free(c.sa);
    free(c.choff);
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
/* dims "B T D"; inputs x, g (log forget gate); no scalar; the backward reads the output, not x; packed
 * sequences through a->cu_seqlens, a->N */
static int64_t mixer_chunk(const hb_mixer_args_t *a) {
    const int64_t B = a->dim[0], T = a->dim[1], D = a->dim[2];
    return hgrn_chunk_hint(hb_seq_count(a->cu_seqlens, a->N, B), hb_seq_maxlen(a->cu_seqlens, a->N, T), D);
}
static int mixer_fwd_chunk(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], D = a->dim[2];
    const real *x = a->in[0], *g = a->in[1];
    return fwd_chunk(a->o, a->ht, x, g, NULL, a->cu_seqlens, a->N, B, T, D, mixer_chunk(a));
}
static int mixer_bwd_chunk(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], D = a->dim[2];
    const real *g = a->in[1];
    return bwd_chunk(a->din[0], a->din[1], a->dout, g, a->out, NULL, a->cu_seqlens, a->N, B, T, D, mixer_chunk(a));
}
static int mixer_fwd_recurrent(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], D = a->dim[2];
    const real *x = a->in[0], *g = a->in[1];
    return fwd_ref(a->o, a->ht, x, g, NULL, a->cu_seqlens, a->N, B, T, D);
}
static int mixer_bwd_recurrent(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], T = a->dim[1], D = a->dim[2];
    const real *g = a->in[1];
    return bwd_ref(a->din[0], a->din[1], a->dout, g, a->out, NULL, a->cu_seqlens, a->N, B, T, D);
}
static int mixer_step(const hb_mixer_args_t *a) {
    int64_t B = a->dim[0], D = a->dim[2];
    const real *x = a->in[0], *g = a->in[1];
    return step(a->o, a->state, x, g, B, D);
}

/* ---- the exported names, written out (this file is compiled twice: kernels/kreal.h) ---------------- */
#ifdef HB_KERNEL_F64
int hgrn_fwd_ref_f64(double *o, double *ht, const double *x, const double *g, const double *h0,
                     const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D) {
    return fwd_ref(o, ht, x, g, h0, cu_seqlens, N, B, T, D);
}
int hgrn_bwd_ref_f64(double *dx, double *dg, const double *do_, const double *g, const double *o,
                     const double *h0, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D) {
    return bwd_ref(dx, dg, do_, g, o, h0, cu_seqlens, N, B, T, D);
}
int hgrn_fwd_chunk_f64(double *o, double *ht, const double *x, const double *g, const double *h0,
                       const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D, int64_t C) {
    return fwd_chunk(o, ht, x, g, h0, cu_seqlens, N, B, T, D, C);
}
int hgrn_bwd_chunk_f64(double *dx, double *dg, const double *do_, const double *g, const double *o,
                       const double *h0, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                       int64_t D, int64_t C) {
    return bwd_chunk(dx, dg, do_, g, o, h0, cu_seqlens, N, B, T, D, C);
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
int hgrn_fwd_ref_f32(float *o, float *ht, const float *x, const float *g, const float *h0,
                     const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D) {
    return fwd_ref(o, ht, x, g, h0, cu_seqlens, N, B, T, D);
}
int hgrn_bwd_ref_f32(float *dx, float *dg, const float *do_, const float *g, const float *o, const float *h0,
                     const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D) {
    return bwd_ref(dx, dg, do_, g, o, h0, cu_seqlens, N, B, T, D);
}
int hgrn_fwd_chunk_f32(float *o, float *ht, const float *x, const float *g, const float *h0,
                       const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D, int64_t C) {
    return fwd_chunk(o, ht, x, g, h0, cu_seqlens, N, B, T, D, C);
}
int hgrn_bwd_chunk_f32(float *dx, float *dg, const float *do_, const float *g, const float *o,
                       const float *h0, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                       int64_t D, int64_t C) {
    return bwd_chunk(dx, dg, do_, g, o, h0, cu_seqlens, N, B, T, D, C);
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
    .packed = 1,
    .f32 = {hgrn_mixer_fwd_chunk_f32, hgrn_mixer_bwd_chunk_f32, hgrn_mixer_fwd_recurrent_f32,
            hgrn_mixer_bwd_recurrent_f32, hgrn_mixer_step_f32},
    .f64 = {hgrn_mixer_fwd_chunk_f64, hgrn_mixer_bwd_chunk_f64, hgrn_mixer_fwd_recurrent_f64,
            hgrn_mixer_bwd_recurrent_f64, hgrn_mixer_step_f64},
};
#endif
