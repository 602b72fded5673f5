/* test_delta_rule.c — TAP tests of kernels/delta_rule.c (DeltaNet / GatedDeltaNet delta rule).
 *
 * Checks: chunked forward vs the per-step reference (f32 ≤ 1e-4, f64 ≤ 1e-10; T = 1, 37, 100, 130
 * with C = 64 and 16; B, H > 1; without g, g near 0, moderate, g ≈ −20 and mixed; β in (0,1) and
 * (0,2); HV = H and 2H; with and without h0); odd chunk lengths C = 1, 3 and > T (forward and
 * backward); float64 central finite-difference gradients of both backward paths w.r.t. q, k, v,
 * beta, g (loss = Σ o·w); chunked vs reference backward in f32; saved chunk states vs
 * recomputation; NULL gradients and accumulation; decode steps vs the reference; prefill (chunked)
 * + decode and chunked prefill in two pieces; thread-count independence (1 vs 2 threads,
 * bit-identical); bad arguments. Packed sequences (cu_seqlens): documents {1, 63, 64, 65, 200} in one
 * row give each document's own outputs, final states, chunk states and gradients (f32, rel ≤ 1e-5) in
 * both forms, with and without the saved chunk states, GVA and gated/ungated; float64 finite differences
 * through the packed kernels (an empty document included); bad layouts return −1. The mixer entry points,
 * which save D and T after the chunk states, give bit for bit the public functions' outputs and gradients
 * (f32 and f64, packed too).
 */
#include "../kernels/delta_rule.h"
#include "../kernels/mixer.h"
#include "../kernels/parallel.h"
#include "ktest.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- data ---- */

enum { G_NONE, G_NEAR0, G_MOD, G_M20, G_MIX, G_NMODES };
static const char *gname[] = {"no g", "g~0", "g moderate", "g~-20", "g mixed"};

typedef struct {
    int64_t B, T, H, HV, K, V;
    int gmode;
    double bmax;
    int use_h0;
} cfg_t;

typedef struct {
    cfg_t c;
    int64_t nq, nv, nb, ns;
    double *q, *k, *v, *beta, *g, *h0, *w; /* g, h0 may be NULL */
    float *qf, *kf, *vf, *betaf, *gf, *h0f, *wf;
} data_t;

static double *dalloc(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }
static float *falloc(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static float *tof(const double *x, int64_t n) {
    if (!x) return NULL;
    float *y = falloc(n);
    for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

static double gsample(int mode) {
    switch (mode) {
    case G_NEAR0: return -1e-3 * urand01();
    case G_MOD: return -0.02 - 0.5 * urand01();
    case G_M20: return -20 + urand();
    case G_MIX: return urand01() < 0.2 ? -20 + urand() : -0.05 * urand01();
    default: return 0;
    }
}

/* q, k: l2-normalised random rows; v, w uniform(−1,1); β uniform in (0, bmax). */
static data_t make_data(cfg_t c) {
    data_t d;
    memset(&d, 0, sizeof d);
    d.c = c;
    d.nq = c.B * c.T * c.H * c.K, d.nv = c.B * c.T * c.HV * c.V, d.nb = c.B * c.T * c.HV;
    d.ns = c.B * c.HV * c.K * c.V;
    d.q = dalloc(d.nq), d.k = dalloc(d.nq), d.v = dalloc(d.nv), d.w = dalloc(d.nv);
    d.beta = dalloc(d.nb);
    for (int64_t r = 0; r < d.nq / c.K; r++) {
        double *x[2] = {d.q + r * c.K, d.k + r * c.K};
        for (int m = 0; m < 2; m++) {
            double nn = 0;
            for (int64_t i = 0; i < c.K; i++) x[m][i] = urand(), nn += x[m][i] * x[m][i];
            for (int64_t i = 0; i < c.K; i++) x[m][i] /= sqrt(nn);
        }
    }
    for (int64_t i = 0; i < d.nv; i++) d.v[i] = urand(), d.w[i] = urand();
    for (int64_t i = 0; i < d.nb; i++) d.beta[i] = c.bmax * (0.02 + 0.96 * urand01());
    if (c.gmode != G_NONE) {
        d.g = dalloc(d.nb);
        for (int64_t i = 0; i < d.nb; i++) d.g[i] = gsample(c.gmode);
    }
    if (c.use_h0) {
        d.h0 = dalloc(d.ns);
        for (int64_t i = 0; i < d.ns; i++) d.h0[i] = 0.5 * urand();
    }
    d.qf = tof(d.q, d.nq), d.kf = tof(d.k, d.nq), d.vf = tof(d.v, d.nv), d.wf = tof(d.w, d.nv);
    d.betaf = tof(d.beta, d.nb), d.gf = tof(d.g, d.nb), d.h0f = tof(d.h0, d.ns);
    return d;
}

static void free_data(data_t *d) {
    free(d->q), free(d->k), free(d->v), free(d->beta), free(d->g), free(d->h0), free(d->w);
    free(d->qf), free(d->kf), free(d->vf), free(d->betaf), free(d->gf), free(d->h0f), free(d->wf);
}

/* max|a − b| / max|b| */
static double relerr(const double *a, const double *b, int64_t n) {
    double e = 0, m = 1e-300;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(a[i] - b[i]) > e || a[i] != a[i]) e = a[i] != a[i] ? INFINITY : fabs(a[i] - b[i]);
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return e / m;
}
static double relerrf(const float *a, const float *b, int64_t n) {
    double e = 0, m = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        double x = a[i], y = b[i];
        if (x != x) return INFINITY;
        if (fabs(x - y) > e) e = fabs(x - y);
        if (fabs(y) > m) m = fabs(y);
    }
    return e / m;
}

static double scale_of(const cfg_t *c) { return 1.0 / sqrt((double)c->K); }

/* ---- forward: chunked vs reference ---- */

static void test_forward(void) {
    static const int64_t Ts[] = {1, 37, 100, 130}, Cs[] = {64, 16};
    for (int ti = 0; ti < 4; ti++)
        for (int ci = 0; ci < 2; ci++) {
            double e32 = 0, e64 = 0;
            char worst32[96] = "", worst64[96] = "";
            int rc = 0, combo = 0;
            for (int gm = 0; gm < G_NMODES; gm++)
                for (int bm = 1; bm <= 2; bm++)
                    for (int hv = 1; hv <= 2; hv++, combo++) {
                        cfg_t c = {2, Ts[ti], 2, 2 * hv, 16, 12, gm, (double)bm, combo % 2};
                        data_t d = make_data(c);
                        double sc = scale_of(&c);
                        double *o1 = dalloc(d.nv), *o2 = dalloc(d.nv);
                        double *h1 = dalloc(d.ns), *h2 = dalloc(d.ns);
                        float *f1 = falloc(d.nv), *f2 = falloc(d.nv);
                        float *fh1 = falloc(d.ns), *fh2 = falloc(d.ns);
                        rc |= delta_rule_fwd_ref_f64(o1, h1, d.q, d.k, d.v, d.beta, d.g, d.h0, sc, NULL, 0,
                                                     c.B, c.T, c.H, c.HV, c.K, c.V);
                        rc |= delta_rule_fwd_chunk_f64(o2, h2, NULL, d.q, d.k, d.v, d.beta, d.g,
                                                       d.h0, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V,
                                                       Cs[ci]);
                        rc |= delta_rule_fwd_ref_f32(f1, fh1, d.qf, d.kf, d.vf, d.betaf, d.gf,
                                                     d.h0f, (float)sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K,
                                                     c.V);
                        rc |= delta_rule_fwd_chunk_f32(f2, fh2, NULL, d.qf, d.kf, d.vf, d.betaf,
                                                       d.gf, d.h0f, (float)sc, NULL, 0, c.B, c.T, c.H,
                                                       c.HV, c.K, c.V, Cs[ci]);
                        double a = fmax(relerr(o2, o1, d.nv), relerr(h2, h1, d.ns));
                        double b = fmax(relerrf(f2, f1, d.nv), relerrf(fh2, fh1, d.ns));
                        if (a >= e64) {
                            e64 = a;
                            snprintf(worst64, sizeof worst64, "%s beta<%d HV=%d", gname[gm], bm,
                                     (int)c.HV);
                        }
                        if (b >= e32) {
                            e32 = b;
                            snprintf(worst32, sizeof worst32, "%s beta<%d HV=%d", gname[gm], bm,
                                     (int)c.HV);
                        }
                        free(o1), free(o2), free(h1), free(h2), free(f1), free(f2), free(fh1),
                            free(fh2);
                        free_data(&d);
                    }
            char name[128];
            snprintf(name, sizeof name, "fwd_chunk == fwd_ref f64, T=%d C=%d (o and ht)",
                     (int)Ts[ti], (int)Cs[ci]);
            check(rc == 0 && e64 <= 1e-10, name, "rc %d rel err %.3g (worst %s)", rc, e64,
                  worst64);
            snprintf(name, sizeof name, "fwd_chunk == fwd_ref f32, T=%d C=%d (o and ht)",
                     (int)Ts[ti], (int)Cs[ci]);
            check(rc == 0 && e32 <= 1e-4, name, "rc %d rel err %.3g (worst %s)", rc, e32,
                  worst32);
        }

    /* a realistic head size in f32 */
    for (int gm = 0; gm < G_NMODES; gm += 2) {
        cfg_t c = {1, 300, 2, 2, 64, 64, gm, 2.0, 1};
        data_t d = make_data(c);
        float *f1 = falloc(d.nv), *f2 = falloc(d.nv);
        int rc = delta_rule_fwd_ref_f32(f1, NULL, d.qf, d.kf, d.vf, d.betaf, d.gf, d.h0f, 0.125f, NULL, 0,
                                        c.B, c.T, c.H, c.HV, c.K, c.V);
        rc |= delta_rule_fwd_chunk_f32(f2, NULL, NULL, d.qf, d.kf, d.vf, d.betaf, d.gf, d.h0f,
                                       0.125f, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V, 64);
        double e = relerrf(f2, f1, d.nv);
        char name[128];
        snprintf(name, sizeof name, "fwd_chunk == fwd_ref f32, K=V=64 T=300 beta<2 %s", gname[gm]);
        check(rc == 0 && e <= 1e-4, name, "rc %d rel err %.3g", rc, e);
        free(f1), free(f2);
        free_data(&d);
    }
}

/* odd chunk lengths (1, 3, 200 > T) forward and backward against the reference, f64 */
static void test_odd_chunks(void) {
    cfg_t c = {2, 29, 1, 4, 6, 5, G_MIX, 2.0, 1};
    data_t d = make_data(c);
    double sc = scale_of(&c);
    const int64_t n[5] = {d.nq, d.nq, d.nv, d.nb, d.nb};
    double *o1 = dalloc(d.nv), *o2 = dalloc(d.nv), *a[5], *b[5];
    for (int i = 0; i < 5; i++) a[i] = dalloc(n[i]);
    int rc = delta_rule_fwd_ref_f64(o1, NULL, d.q, d.k, d.v, d.beta, d.g, d.h0, sc, NULL, 0, c.B, c.T, c.H,
                                    c.HV, c.K, c.V);
    rc |= delta_rule_bwd_ref_f64(a[0], a[1], a[2], a[3], a[4], d.w, d.q, d.k, d.v, d.beta, d.g,
                                 d.h0, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V);
    static const int64_t Cs[] = {1, 3, 200};
    for (int ci = 0; ci < 3; ci++) {
        for (int i = 0; i < 5; i++) b[i] = dalloc(n[i]);
        rc |= delta_rule_fwd_chunk_f64(o2, NULL, NULL, d.q, d.k, d.v, d.beta, d.g, d.h0, sc, NULL, 0, c.B,
                                       c.T, c.H, c.HV, c.K, c.V, Cs[ci]);
        rc |= delta_rule_bwd_chunk_f64(b[0], b[1], b[2], b[3], b[4], d.w, d.q, d.k, d.v, d.beta,
                                       d.g, d.h0, NULL, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V, Cs[ci]);
        double e = relerr(o2, o1, d.nv);
        for (int i = 0; i < 5; i++) e = fmax(e, relerr(b[i], a[i], n[i])), free(b[i]);
        char name[128];
        snprintf(name, sizeof name, "C=%d: fwd_chunk and bwd_chunk == reference (f64, H=1 HV=4)",
                 (int)Cs[ci]);
        check(rc == 0 && e <= 1e-10, name, "rc %d rel err %.3g", rc, e);
    }
    for (int i = 0; i < 5; i++) free(a[i]);
    free(o1), free(o2);
    free_data(&d);
}

/* ---- finite-difference gradient checks (float64) ---- */

static double loss64(const data_t *d, double *o) {
    const cfg_t *c = &d->c;
    delta_rule_fwd_ref_f64(o, NULL, d->q, d->k, d->v, d->beta, d->g, d->h0, scale_of(c), NULL, 0, c->B,
                           c->T, c->H, c->HV, c->K, c->V);
    double L = 0;
    for (int64_t i = 0; i < d->nv; i++) L += o[i] * d->w[i];
    return L;
}

static void test_gradcheck(cfg_t c, int64_t C) {
    data_t d = make_data(c);
    double sc = scale_of(&c);
    const double h = 1e-6;
    double *o = dalloc(d.nv);
    double *x[5] = {d.q, d.k, d.v, d.beta, d.g};
    const int64_t n[5] = {d.nq, d.nq, d.nv, d.nb, d.nb};
    static const char *xname[5] = {"q", "k", "v", "beta", "g"};
    double *gr[2][5];
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 5; i++) gr[p][i] = dalloc(n[i]);
    int rc = delta_rule_bwd_ref_f64(gr[0][0], gr[0][1], gr[0][2], gr[0][3], gr[0][4], d.w, d.q,
                                    d.k, d.v, d.beta, d.g, d.h0, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K,
                                    c.V);
    rc |= delta_rule_bwd_chunk_f64(gr[1][0], gr[1][1], gr[1][2], gr[1][3], gr[1][4], d.w, d.q,
                                   d.k, d.v, d.beta, d.g, d.h0, NULL, sc, NULL, 0, c.B, c.T, c.H, c.HV,
                                   c.K, c.V, C);
    for (int i = 0; i < 5; i++) {
        if (!x[i]) continue;
        double *num = dalloc(n[i]), mx = 0;
        for (int64_t j = 0; j < n[i]; j++) {
            double s = x[i][j];
            x[i][j] = s + h;
            double Lp = loss64(&d, o);
            x[i][j] = s - h;
            double Lm = loss64(&d, o);
            x[i][j] = s;
            num[j] = (Lp - Lm) / (2 * h);
            if (fabs(num[j]) > mx) mx = fabs(num[j]);
        }
        for (int p = 0; p < 2; p++) {
            double e = 0;
            for (int64_t j = 0; j < n[i]; j++)
                if (!(fabs(gr[p][i][j] - num[j]) <= e)) e = fabs(gr[p][i][j] - num[j]);
            e /= fmax(1e-3, mx);
            char name[160];
            snprintf(name, sizeof name,
                     "gradcheck f64 %s d%s (%s, beta<%g, H=%d HV=%d T=%d C=%d%s)",
                     p ? "bwd_chunk" : "bwd_ref", xname[i], gname[c.gmode], c.bmax, (int)c.H,
                     (int)c.HV, (int)c.T, (int)C, c.use_h0 ? ", h0" : "");
            check(rc == 0 && e <= 1e-6, name, "rc %d rel err %.3g (max|num| %.3g)", rc, e, mx);
        }
        free(num);
    }
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 5; i++) free(gr[p][i]);
    free(o);
    free_data(&d);
}

/* ---- backward: chunked vs reference in f32, saved states, NULL gradients, accumulation ---- */

static void test_bwd_f32(void) {
    for (int gm = 0; gm < G_NMODES; gm++) {
        cfg_t c = {2, 130, 2, 4, 32, 32, gm, gm % 2 ? 2.0 : 1.0, 1};
        data_t d = make_data(c);
        float sc = (float)scale_of(&c);
        const int64_t n[5] = {d.nq, d.nq, d.nv, d.nb, d.nb};
        for (int64_t C = 64; C >= 16; C /= 4) {
            float *a[5], *b[5];
            for (int i = 0; i < 5; i++) a[i] = falloc(n[i]), b[i] = falloc(n[i]);
            int rc = delta_rule_bwd_ref_f32(a[0], a[1], a[2], a[3], a[4], d.wf, d.qf, d.kf, d.vf,
                                            d.betaf, d.gf, d.h0f, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K,
                                            c.V);
            rc |= delta_rule_bwd_chunk_f32(b[0], b[1], b[2], b[3], b[4], d.wf, d.qf, d.kf, d.vf,
                                           d.betaf, d.gf, d.h0f, NULL, sc, NULL, 0, c.B, c.T, c.H, c.HV,
                                           c.K, c.V, C);
            double e = 0;
            for (int i = 0; i < (d.g ? 5 : 4); i++) e = fmax(e, relerrf(b[i], a[i], n[i]));
            char name[128];
            snprintf(name, sizeof name, "bwd_chunk == bwd_ref f32 (%s, beta<%g, HV=2H, T=130 C=%d)",
                     gname[gm], c.bmax, (int)C);
            check(rc == 0 && e <= 2e-4, name, "rc %d rel err %.3g", rc, e);
            for (int i = 0; i < 5; i++) free(a[i]), free(b[i]);
        }
        free_data(&d);
    }

    /* saved chunk states, NULL gradients, accumulation (f64, g mixed, GVA) */
    cfg_t c = {2, 45, 2, 4, 8, 6, G_MIX, 2.0, 1};
    data_t d = make_data(c);
    double sc = scale_of(&c);
    const int64_t C = 16, NC = 3;
    const int64_t n[5] = {d.nq, d.nq, d.nv, d.nb, d.nb};
    double *o = dalloc(d.nv), *hs = dalloc(d.ns * NC), *a[5], *b[5];
    for (int i = 0; i < 5; i++) a[i] = dalloc(n[i]), b[i] = dalloc(n[i]);
    int rc = delta_rule_fwd_chunk_f64(o, NULL, hs, d.q, d.k, d.v, d.beta, d.g, d.h0, sc, NULL, 0, c.B, c.T,
                                      c.H, c.HV, c.K, c.V, C);
    rc |= delta_rule_bwd_chunk_f64(a[0], a[1], a[2], a[3], a[4], d.w, d.q, d.k, d.v, d.beta, d.g,
                                   d.h0, NULL, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V, C);
    rc |= delta_rule_bwd_chunk_f64(b[0], b[1], b[2], b[3], b[4], d.w, d.q, d.k, d.v, d.beta, d.g,
                                   d.h0, hs, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V, C);
    int same = 1;
    for (int i = 0; i < 5; i++) same &= memcmp(a[i], b[i], (size_t)n[i] * sizeof(double)) == 0;
    check(rc == 0 && same, "bwd_chunk with saved hs == bwd_chunk recomputing them (bitwise)",
          "rc %d", rc);

    /* one gradient at a time, into buffers pre-filled with 1: result must be 1 + full gradient */
    int okall = 1;
    for (int i = 0; i < 5; i++) {
        double *p[5] = {NULL, NULL, NULL, NULL, NULL};
        double *buf = dalloc(n[i]);
        for (int64_t j = 0; j < n[i]; j++) buf[j] = 1;
        p[i] = buf;
        rc |= delta_rule_bwd_chunk_f64(p[0], p[1], p[2], p[3], p[4], d.w, d.q, d.k, d.v, d.beta,
                                       d.g, d.h0, hs, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V, C);
        for (int64_t j = 0; j < n[i]; j++) okall &= fabs(buf[j] - 1 - a[i][j]) <= 1e-12;
        for (int64_t j = 0; j < n[i]; j++) buf[j] = 1;
        rc |= delta_rule_bwd_ref_f64(p[0], p[1], p[2], p[3], p[4], d.w, d.q, d.k, d.v, d.beta,
                                     d.g, d.h0, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V);
        for (int64_t j = 0; j < n[i]; j++) okall &= fabs(buf[j] - 1 - a[i][j]) <= 1e-10;
        free(buf);
    }
    check(rc == 0 && okall, "single non-NULL gradient accumulates (+=) the same values", "rc %d",
          rc);

    /* without g, a non-NULL dg is left untouched */
    double *dg = dalloc(d.nb);
    rc = delta_rule_bwd_chunk_f64(NULL, NULL, NULL, NULL, dg, d.w, d.q, d.k, d.v, d.beta, NULL,
                                  d.h0, NULL, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V, C);
    rc |= delta_rule_bwd_ref_f64(NULL, NULL, NULL, NULL, dg, d.w, d.q, d.k, d.v, d.beta, NULL,
                                 d.h0, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V);
    int zero = 1;
    for (int64_t j = 0; j < d.nb; j++) zero &= dg[j] == 0;
    check(rc == 0 && zero, "g == NULL: dg untouched, all gradients NULL is fine", "rc %d", rc);
    free(dg);
    for (int i = 0; i < 5; i++) free(a[i]), free(b[i]);
    free(o), free(hs);
    free_data(&d);
}

/* ---- decode ---- */

/* dst (B,n,X) = src (B,T,X) rows t0..t0+n−1; src may be NULL (then dst is left alone) */
static void slice(double *dst, const double *src, int64_t B, int64_t T, int64_t t0, int64_t n,
                  int64_t X) {
    if (!src) return;
    for (int64_t b = 0; b < B; b++)
        memcpy(dst + b * n * X, src + (b * T + t0) * X, (size_t)(n * X) * sizeof(double));
}
static void slicef(float *dst, const float *src, int64_t B, int64_t T, int64_t t0, int64_t n,
                   int64_t X) {
    if (!src) return;
    for (int64_t b = 0; b < B; b++)
        memcpy(dst + b * n * X, src + (b * T + t0) * X, (size_t)(n * X) * sizeof(float));
}

static void test_decode(void) {
    for (int gm = 0; gm < G_NMODES; gm += 2) {
        cfg_t c = {2, 60, 2, 4, 8, 6, gm, 2.0, 1};
        data_t d = make_data(c);
        const double sc = scale_of(&c);
        const int64_t B = c.B, T = c.T, H = c.H, HV = c.HV, K = c.K, V = c.V;
        const int64_t HK = H * K, HVV = HV * V;
        double *oref = dalloc(d.nv), *href = dalloc(d.ns);
        float *fref = falloc(d.nv), *fhref = falloc(d.ns);
        int rc = delta_rule_fwd_ref_f64(oref, href, d.q, d.k, d.v, d.beta, d.g, d.h0, sc, NULL, 0, B, T, H,
                                        HV, K, V);
        rc |= delta_rule_fwd_ref_f32(fref, fhref, d.qf, d.kf, d.vf, d.betaf, d.gf, d.h0f,
                                     (float)sc, NULL, 0, B, T, H, HV, K, V);

        /* step by step from h0, f64 and f32: o_t and the final state */
        double *S = dalloc(d.ns), *qt = dalloc(B * HK), *kt = dalloc(B * HK), *vt = dalloc(B * HVV);
        double *bt = dalloc(B * HV), *gt = dalloc(B * HV), *ot = dalloc(B * HVV);
        double *oref_t = dalloc(B * HVV);
        float *Sf = falloc(d.ns), *qf = falloc(B * HK), *kf = falloc(B * HK), *vf = falloc(B * HVV);
        float *bf = falloc(B * HV), *gf = falloc(B * HV), *otf = falloc(B * HVV);
        float *fref_t = falloc(B * HVV);
        memcpy(S, d.h0, (size_t)d.ns * sizeof(double));
        memcpy(Sf, d.h0f, (size_t)d.ns * sizeof(float));
        double e = 0, ef = 0;
        for (int64_t t = 0; t < T; t++) {
            slice(qt, d.q, B, T, t, 1, HK), slice(kt, d.k, B, T, t, 1, HK);
            slice(vt, d.v, B, T, t, 1, HVV), slice(bt, d.beta, B, T, t, 1, HV);
            slice(gt, d.g, B, T, t, 1, HV), slice(oref_t, oref, B, T, t, 1, HVV);
            slicef(qf, d.qf, B, T, t, 1, HK), slicef(kf, d.kf, B, T, t, 1, HK);
            slicef(vf, d.vf, B, T, t, 1, HVV), slicef(bf, d.betaf, B, T, t, 1, HV);
            slicef(gf, d.gf, B, T, t, 1, HV), slicef(fref_t, fref, B, T, t, 1, HVV);
            rc |= delta_rule_step_f64(ot, S, qt, kt, vt, bt, d.g ? gt : NULL, sc, B, H, HV, K, V);
            rc |= delta_rule_step_f32(otf, Sf, qf, kf, vf, bf, d.g ? gf : NULL, (float)sc, B, H,
                                      HV, K, V);
            e = fmax(e, relerr(ot, oref_t, B * HVV));
            ef = fmax(ef, relerrf(otf, fref_t, B * HVV));
        }
        e = fmax(e, relerr(S, href, d.ns));
        ef = fmax(ef, relerrf(Sf, fhref, d.ns));
        char name[128];
        snprintf(name, sizeof name, "decode steps == fwd_ref, o and final state (%s, HV=2H)",
                 gname[gm]);
        check(rc == 0 && e <= 1e-12 && ef <= 1e-6, name, "rc %d rel err f64 %.3g f32 %.3g", rc,
              e, ef);

        /* prefill T1 tokens with the chunked forward, then decode the rest from its ht */
        const int64_t T1 = 37, T2 = T - T1;
        double *qa = dalloc(B * T1 * HK), *ka = dalloc(B * T1 * HK), *va = dalloc(B * T1 * HVV);
        double *ba = dalloc(B * T1 * HV), *ga = dalloc(B * T1 * HV), *oa = dalloc(B * T1 * HVV);
        double *qb = dalloc(B * T2 * HK), *kb = dalloc(B * T2 * HK), *vb = dalloc(B * T2 * HVV);
        double *bb = dalloc(B * T2 * HV), *gb = dalloc(B * T2 * HV), *ob = dalloc(B * T2 * HVV);
        double *ra = dalloc(B * T1 * HVV), *rb = dalloc(B * T2 * HVV), *h1 = dalloc(d.ns);
        double *h2 = dalloc(d.ns);
        slice(qa, d.q, B, T, 0, T1, HK), slice(ka, d.k, B, T, 0, T1, HK);
        slice(va, d.v, B, T, 0, T1, HVV), slice(ba, d.beta, B, T, 0, T1, HV);
        slice(ga, d.g, B, T, 0, T1, HV), slice(ra, oref, B, T, 0, T1, HVV);
        slice(qb, d.q, B, T, T1, T2, HK), slice(kb, d.k, B, T, T1, T2, HK);
        slice(vb, d.v, B, T, T1, T2, HVV), slice(bb, d.beta, B, T, T1, T2, HV);
        slice(gb, d.g, B, T, T1, T2, HV), slice(rb, oref, B, T, T1, T2, HVV);
        rc = delta_rule_fwd_chunk_f64(oa, h1, NULL, qa, ka, va, ba, d.g ? ga : NULL, d.h0, sc, NULL, 0, B,
                                      T1, H, HV, K, V, 16);
        double emax = relerr(oa, ra, B * T1 * HVV);
        memcpy(S, h1, (size_t)d.ns * sizeof(double));
        for (int64_t t = 0; t < T2; t++) {
            slice(qt, qb, B, T2, t, 1, HK), slice(kt, kb, B, T2, t, 1, HK);
            slice(vt, vb, B, T2, t, 1, HVV), slice(bt, bb, B, T2, t, 1, HV);
            slice(gt, gb, B, T2, t, 1, HV), slice(oref_t, rb, B, T2, t, 1, HVV);
            rc |= delta_rule_step_f64(ot, S, qt, kt, vt, bt, d.g ? gt : NULL, sc, B, H, HV, K, V);
            emax = fmax(emax, relerr(ot, oref_t, B * HVV));
        }
        emax = fmax(emax, relerr(S, href, d.ns));
        snprintf(name, sizeof name, "chunked prefill (T=37, C=16) + decode == fwd_ref (%s)",
                 gname[gm]);
        check(rc == 0 && emax <= 1e-10, name, "rc %d rel err %.3g", rc, emax);

        /* chunked prefill in two pieces: the second starts from the first's ht */
        rc = delta_rule_fwd_chunk_f64(ob, h2, NULL, qb, kb, vb, bb, d.g ? gb : NULL, h1, sc, NULL, 0, B, T2,
                                      H, HV, K, V, 16);
        emax = fmax(relerr(h2, href, d.ns), relerr(ob, rb, B * T2 * HVV));
        snprintf(name, sizeof name, "fwd_chunk(h0 = previous ht) continues the sequence (%s)",
                 gname[gm]);
        check(rc == 0 && emax <= 1e-10, name, "rc %d rel err %.3g", rc, emax);

        double *dfree[] = {oref, href, S, qt, kt, vt, bt, gt, ot, oref_t, qa, ka, va, ba, ga, oa,
                           qb, kb, vb, bb, gb, ob, ra, rb, h1, h2};
        float *ffree[] = {fref, fhref, Sf, qf, kf, vf, bf, gf, otf, fref_t};
        for (size_t i = 0; i < sizeof dfree / sizeof *dfree; i++) free(dfree[i]);
        for (size_t i = 0; i < sizeof ffree / sizeof *ffree; i++) free(ffree[i]);
        free_data(&d);
    }
}

/* ---- thread-count independence ---- */

typedef struct {
    float *o, *ht, *hs, *g[5], *rg[5], *of, *so, *st;
} outs_t;

static void run_all(const data_t *d, outs_t *r) {
    const cfg_t *c = &d->c;
    float sc = (float)scale_of(c);
    const int64_t n[5] = {d->nq, d->nq, d->nv, d->nb, d->nb}, C = 16;
    r->o = falloc(d->nv), r->ht = falloc(d->ns), r->hs = falloc(d->ns * ((c->T + C - 1) / C));
    r->of = falloc(d->nv), r->so = falloc(c->B * c->HV * c->V), r->st = falloc(d->ns);
    for (int i = 0; i < 5; i++) r->g[i] = falloc(n[i]), r->rg[i] = falloc(n[i]);
    delta_rule_fwd_chunk_f32(r->o, r->ht, r->hs, d->qf, d->kf, d->vf, d->betaf, d->gf, d->h0f, sc, NULL, 0,
                             c->B, c->T, c->H, c->HV, c->K, c->V, C);
    delta_rule_bwd_chunk_f32(r->g[0], r->g[1], r->g[2], r->g[3], r->g[4], d->wf, d->qf, d->kf,
                             d->vf, d->betaf, d->gf, d->h0f, NULL, sc, NULL, 0, c->B, c->T, c->H, c->HV,
                             c->K, c->V, C);
    delta_rule_fwd_ref_f32(r->of, NULL, d->qf, d->kf, d->vf, d->betaf, d->gf, d->h0f, sc, NULL, 0, c->B,
                           c->T, c->H, c->HV, c->K, c->V);
    delta_rule_bwd_ref_f32(r->rg[0], r->rg[1], r->rg[2], r->rg[3], r->rg[4], d->wf, d->qf, d->kf,
                           d->vf, d->betaf, d->gf, d->h0f, sc, NULL, 0, c->B, c->T, c->H, c->HV, c->K,
                           c->V);
    memcpy(r->st, d->h0f, (size_t)d->ns * sizeof(float)); /* one decode step on the first tokens */
    delta_rule_step_f32(r->so, r->st, d->qf, d->kf, d->vf, d->betaf, d->gf, sc, c->B, c->H, c->HV,
                        c->K, c->V);
}

static void test_threads(void) {
    cfg_t c = {3, 77, 2, 4, 16, 16, G_MIX, 2.0, 1};
    data_t d = make_data(c);
    outs_t r1, r2;
    hb_threads_set(1);
    run_all(&d, &r1);
    hb_threads_set(2);
    run_all(&d, &r2);
    const int64_t n[5] = {d.nq, d.nq, d.nv, d.nb, d.nb};
    int same = !memcmp(r1.o, r2.o, (size_t)d.nv * 4) && !memcmp(r1.ht, r2.ht, (size_t)d.ns * 4) &&
               !memcmp(r1.hs, r2.hs, (size_t)(d.ns * 5) * 4);
    check(same, "fwd_chunk: 1 thread == 2 threads (bitwise)", "differs");
    same = 1;
    for (int i = 0; i < 5; i++) same &= !memcmp(r1.g[i], r2.g[i], (size_t)n[i] * 4);
    check(same, "bwd_chunk: 1 thread == 2 threads (bitwise)", "differs");
    same = !memcmp(r1.of, r2.of, (size_t)d.nv * 4);
    for (int i = 0; i < 5; i++) same &= !memcmp(r1.rg[i], r2.rg[i], (size_t)n[i] * 4);
    check(same, "fwd_ref/bwd_ref: 1 thread == 2 threads (bitwise)", "differs");
    same = !memcmp(r1.so, r2.so, (size_t)(c.B * c.HV * c.V) * 4) &&
           !memcmp(r1.st, r2.st, (size_t)d.ns * 4);
    check(same, "step: 1 thread == 2 threads (bitwise)", "differs");
    outs_t *rs[2] = {&r1, &r2};
    for (int p = 0; p < 2; p++) {
        free(rs[p]->o), free(rs[p]->ht), free(rs[p]->hs), free(rs[p]->of), free(rs[p]->so),
            free(rs[p]->st);
        for (int i = 0; i < 5; i++) free(rs[p]->g[i]), free(rs[p]->rg[i]);
    }
    free_data(&d);
}

/* ---- bad arguments ---- */

static void test_bad_args(void) {
    float x[64] = {0};
    int rejected = delta_rule_fwd_ref_f32(x, NULL, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 2, 3, 2, 2) == -1 &&
                  delta_rule_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 1, 1, 2, 2,
                                           0) == -1 &&
                  delta_rule_bwd_chunk_f32(x, x, x, x, x, NULL, x, x, x, x, NULL, NULL, NULL, 1, NULL, 0, 1, 2,
                                           1, 1, 2, 2, 16) == -1 &&
                  delta_rule_step_f32(x, x, x, x, x, x, NULL, 1, 1, 1, 1, 0, 2) == -1 &&
                  delta_rule_bwd_ref_f32(NULL, NULL, NULL, NULL, NULL, x, x, x, x, x, NULL, NULL, 1, NULL, 0,
                                         -1, 2, 1, 1, 2, 2) == -1;
    ok(rejected, "bad arguments (HV %% H != 0, C = 0, NULL dout, K = 0, B < 0) return -1");
    /* T = 0: ht = h0 */
    float h0[4] = {1, 2, 3, 4}, ht[4] = {0};
    int rc = delta_rule_fwd_chunk_f32(x, ht, NULL, x, x, x, x, NULL, h0, 1, NULL, 0, 1, 0, 1, 1, 2, 2, 64);
    check(rc == 0 && !memcmp(h0, ht, sizeof h0), "T = 0: fwd_chunk returns ht = h0", "rc %d", rc);
}

/* ---- packed sequences ---- */

/* c.B = 1, c.T = the packed length; per-document h0 (N,HV,K,V) beside d (whose h0 is unused) */
static void test_packed(int64_t H, int64_t HV, int64_t K, int64_t V, int gm, int64_t C, int form, int use_hs) {
    int64_t cu[PACK_N + 1];
    const int64_t T = pack_cu(cu, PACK_LENS, PACK_N), N = PACK_N, KV = K * V;
    data_t d = make_data((cfg_t){1, T, H, HV, K, V, gm, gm % 2 ? 2.0 : 1.0, 0});
    const int64_t ns = N * HV * KV, nhs = delta_rule_chunk_count(cu, N, 1, T, C) * HV * KV;
    double *h0d = dalloc(ns);
    for (int64_t i = 0; i < ns; i++) h0d[i] = 0.5 * urand();
    float *h0 = tof(h0d, ns), sc = 1.0f / sqrtf((float)K), *r[2][8];
    const int64_t len[8] = {d.nv, ns, nhs, d.nq, d.nq, d.nv, d.nb, d.nb}; /* o ht hs dq dk dv dbeta dg */
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 8; i++) r[a][i] = falloc(len[i]);
    float **p = r[0];
    int rc = form ? delta_rule_fwd_chunk_f32(p[0], p[1], p[2], d.qf, d.kf, d.vf, d.betaf, d.gf, h0, sc, cu, N, 1, T, H,
                                             HV, K, V, C)
                  : delta_rule_fwd_ref_f32(p[0], p[1], d.qf, d.kf, d.vf, d.betaf, d.gf, h0, sc, cu, N, 1, T, H, HV, K, V);
    rc |= form ? delta_rule_bwd_chunk_f32(p[3], p[4], p[5], p[6], p[7], d.wf, d.qf, d.kf, d.vf, d.betaf, d.gf, h0,
                                          use_hs ? p[2] : NULL, sc, cu, N, 1, T, H, HV, K, V, C)
               : delta_rule_bwd_ref_f32(p[3], p[4], p[5], p[6], p[7], d.wf, d.qf, d.kf, d.vf, d.betaf, d.gf, h0, sc, cu,
                                        N, 1, T, H, HV, K, V);
    int64_t hsoff = 0;
    for (int64_t n = 0; n < N; n++) { /* document n alone: offsets of its rows, state and chunk states */
        const int64_t L = cu[n + 1] - cu[n], oq = cu[n] * H * K, ov = cu[n] * HV * V, ob = cu[n] * HV, os = n * HV * KV;
        const float *g = d.gf ? d.gf + ob : NULL;
        float **a = r[1], *dg = a[7] + ob;
        rc |= form ? delta_rule_fwd_chunk_f32(a[0] + ov, a[1] + os, a[2] + hsoff, d.qf + oq, d.kf + oq, d.vf + ov,
                                              d.betaf + ob, g, h0 + os, sc, NULL, 0, 1, L, H, HV, K, V, C)
                   : delta_rule_fwd_ref_f32(a[0] + ov, a[1] + os, d.qf + oq, d.kf + oq, d.vf + ov, d.betaf + ob, g,
                                            h0 + os, sc, NULL, 0, 1, L, H, HV, K, V);
        rc |= form ? delta_rule_bwd_chunk_f32(a[3] + oq, a[4] + oq, a[5] + ov, a[6] + ob, dg, d.wf + ov, d.qf + oq,
                                              d.kf + oq, d.vf + ov, d.betaf + ob, g, h0 + os, use_hs ? a[2] + hsoff : NULL,
                                              sc, NULL, 0, 1, L, H, HV, K, V, C)
                   : delta_rule_bwd_ref_f32(a[3] + oq, a[4] + oq, a[5] + ov, a[6] + ob, dg, d.wf + ov, d.qf + oq,
                                            d.kf + oq, d.vf + ov, d.betaf + ob, g, h0 + os, sc, NULL, 0, 1, L, H, HV, K, V);
        hsoff += delta_rule_chunk_count(NULL, 0, 1, L, C) * HV * KV;
    }
    double e = 0;
    for (int i = 0; i < 8; i++)
        if (form || i != 2) e = fmax(e, relerrf(r[0][i], r[1][i], len[i]));
    char name[200];
    snprintf(name, sizeof name, "packed {1,63,64,65,200} == each document alone, f32 %s%s (%s, H=%d HV=%d C=%d): o, ht, "
             "%sdq, dk, dv, dbeta, dg", form ? "chunk" : "ref", form ? (use_hs ? " with hs" : " recomputing hs") : "",
             gname[gm], (int)H, (int)HV, (int)C, form ? "hs, " : "");
    check(rc == 0 && e <= 1e-5, name, "rc %d, max rel err %.3e", rc, e);
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 8; i++) free(r[a][i]);
    free(h0d), free(h0);
    free_data(&d);
}


/* The mixer entry points save the WY quantities (D, T) after the chunk states and the backward reads them:
 * outputs and gradients must be bit for bit those of the public functions, which recompute them from hs
 * (same inputs, C, cu_seqlens), in float and in double. cu: NULL or a packed layout of N documents. */
static int64_t wy_cu[PACK_N + 1];
static void test_saved_wy(cfg_t c, int64_t C, int packed) {
    const int64_t N = packed ? PACK_N : 0;
    if (packed) c.B = 1, c.T = pack_cu(wy_cu, PACK_LENS, PACK_N);
    const int64_t *cu = packed ? wy_cu : NULL;
    data_t d = make_data(c);
    const int64_t nhs = delta_rule_chunk_count(cu, N, c.B, c.T, C) * c.HV * c.K * c.V;
    const int64_t len[6] = {d.nv, d.nq, d.nq, d.nv, d.nb, d.nb}; /* o dq dk dv dbeta dg */
    int same32 = 1, same64 = 1, rc = 0;
    for (int dbl = 0; dbl < 2; dbl++) {
        const size_t es = dbl ? sizeof(double) : sizeof(float);
        void *r[2][6];
        for (int a = 0; a < 2; a++)
            for (int i = 0; i < 6; i++) r[a][i] = calloc((size_t)len[i] + 1, es);
        hb_mixer_args_t m;
        memset(&m, 0, sizeof m);
        const int64_t dim[6] = {c.B, c.T, c.H, c.HV, c.K, c.V};
        memcpy(m.dim, dim, sizeof dim);
        m.chunk = C, m.cu_seqlens = cu, m.N = N, m.scalar[0] = scale_of(&c);
        if (dbl) m.in[0] = d.q, m.in[1] = d.k, m.in[2] = d.v, m.in[3] = d.beta, m.in[4] = d.g, m.dout = d.w;
        else m.in[0] = d.qf, m.in[1] = d.kf, m.in[2] = d.vf, m.in[3] = d.betaf, m.in[4] = d.gf, m.dout = d.wf;
        const int64_t ns = hb_mixer_delta_rule.saved_numel(&m);
        void *saved = calloc((size_t)ns + 1, es), *hs = calloc((size_t)nhs + 1, es);
        rc |= ns < nhs;
        m.o = r[0][0], m.saved = saved;
        const hb_mixer_kernels_t *kn = dbl ? &hb_mixer_delta_rule.f64 : &hb_mixer_delta_rule.f32;
        rc |= kn->fwd_chunk(&m);
        for (int i = 0; i < 5; i++) m.din[i] = r[0][i + 1];
        if (!d.g) m.din[4] = NULL;
        rc |= kn->bwd_chunk(&m);
        void **p = r[1];
        if (dbl) {
            rc |= delta_rule_fwd_chunk_f64(p[0], NULL, hs, d.q, d.k, d.v, d.beta, d.g, NULL, m.scalar[0], cu, N, c.B,
                                           c.T, c.H, c.HV, c.K, c.V, C);
            rc |= delta_rule_bwd_chunk_f64(p[1], p[2], p[3], p[4], d.g ? p[5] : NULL, d.w, d.q, d.k, d.v, d.beta, d.g,
                                           NULL, hs, m.scalar[0], cu, N, c.B, c.T, c.H, c.HV, c.K, c.V, C);
        } else {
            rc |= delta_rule_fwd_chunk_f32(p[0], NULL, hs, d.qf, d.kf, d.vf, d.betaf, d.gf, NULL, (float)m.scalar[0], cu,
                                           N, c.B, c.T, c.H, c.HV, c.K, c.V, C);
            rc |= delta_rule_bwd_chunk_f32(p[1], p[2], p[3], p[4], d.g ? p[5] : NULL, d.wf, d.qf, d.kf, d.vf, d.betaf,
                                           d.gf, NULL, hs, (float)m.scalar[0], cu, N, c.B, c.T, c.H, c.HV, c.K, c.V, C);
        }
        int same = !memcmp(saved, hs, (size_t)nhs * es);
        for (int i = 0; i < 6; i++) same &= !memcmp(r[0][i], r[1][i], (size_t)len[i] * es);
        if (dbl) same64 = same; else same32 = same;
        for (int a = 0; a < 2; a++)
            for (int i = 0; i < 6; i++) free(r[a][i]);
        free(saved), free(hs);
    }
    char name[200];
    snprintf(name, sizeof name, "saved D, T (mixer entry points) == recomputed from hs, bitwise, f32 and f64 (%s, B=%d T=%d "
             "H=%d HV=%d C=%d%s)", gname[c.gmode], (int)c.B, (int)c.T, (int)c.H, (int)c.HV, (int)C, packed ? ", packed" : "");
    check(rc == 0 && same32 && same64, name, "rc %d, f32 %s, f64 %s", rc, same32 ? "same" : "differs",
          same64 ? "same" : "differs");
    free_data(&d);
}

static const int64_t *PCU; /* the packed gradient check's layout */
static int64_t PN;
static double *PH0;

static double packed_loss(const data_t *d, double *o) {
    const cfg_t *c = &d->c;
    delta_rule_fwd_ref_f64(o, NULL, d->q, d->k, d->v, d->beta, d->g, PH0, scale_of(c), PCU, PN, 1, c->T, c->H, c->HV,
                           c->K, c->V);
    double L = 0;
    for (int64_t i = 0; i < d->nv; i++) L += o[i] * d->w[i];
    return L;
}

static void test_packed_gradcheck(int gm) {
    const int64_t lens[] = {1, 3, 0, 4, 6}, N = 5;
    int64_t cu[6];
    const int64_t T = pack_cu(cu, lens, (int)N);
    cfg_t c = {1, T, 1, 2, 3, 2, gm, 2.0, 0};
    data_t d = make_data(c);
    PCU = cu, PN = N, PH0 = dalloc(N * c.HV * c.K * c.V);
    for (int64_t i = 0; i < N * c.HV * c.K * c.V; i++) PH0[i] = 0.5 * urand();
    double *o = dalloc(d.nv), sc = scale_of(&c), *x[5] = {d.q, d.k, d.v, d.beta, d.g}, *gr[2][5], worst[2] = {0, 0};
    const int64_t n[5] = {d.nq, d.nq, d.nv, d.nb, d.nb};
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 5; i++) gr[p][i] = dalloc(n[i]);
    int rc = delta_rule_bwd_ref_f64(gr[0][0], gr[0][1], gr[0][2], gr[0][3], gr[0][4], d.w, d.q, d.k, d.v, d.beta, d.g,
                                    PH0, sc, cu, N, 1, T, c.H, c.HV, c.K, c.V);
    rc |= delta_rule_bwd_chunk_f64(gr[1][0], gr[1][1], gr[1][2], gr[1][3], gr[1][4], d.w, d.q, d.k, d.v, d.beta, d.g,
                                   PH0, NULL, sc, cu, N, 1, T, c.H, c.HV, c.K, c.V, 2);
    for (int i = 0; i < 5; i++) {
        if (!x[i]) continue;
        double mx = 1e-3, e[2] = {0, 0};
        for (int64_t j = 0; j < n[i]; j++) {
            double s0 = x[i][j];
            x[i][j] = s0 + 1e-6;
            double Lp = packed_loss(&d, o);
            x[i][j] = s0 - 1e-6;
            double Lm = packed_loss(&d, o);
            x[i][j] = s0;
            double num = (Lp - Lm) / 2e-6;
            mx = fmax(mx, fabs(num));
            for (int p = 0; p < 2; p++) e[p] = fmax(e[p], fabs(gr[p][i][j] - num));
        }
        for (int p = 0; p < 2; p++) worst[p] = fmax(worst[p], e[p] / mx);
    }
    char name[160];
    snprintf(name, sizeof name, "packed gradcheck f64 (documents {1,3,0,4,6}, C=2, %s, GVA): bwd_ref and bwd_chunk",
             gname[gm]);
    check(rc == 0 && worst[0] <= 1e-6 && worst[1] <= 1e-6, name, "rc %d rel err ref %.3g chunk %.3g", rc, worst[0],
          worst[1]);
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 5; i++) free(gr[p][i]);
    free(o), free(PH0);
    PCU = NULL, PN = 0, PH0 = NULL;
    free_data(&d);
}

static void test_packed_bad(void) {
    const int64_t T = 8, H = 1, HV = 1, K = 2, V = 2;
    float *x = falloc(2 * T * 4), *o = falloc(2 * T * 4);
    bad_pack_t bad[8];
    int nb = bad_packs(T, bad), all = 1;
    for (int i = 0; i < nb; i++) {
        const int64_t *cu = bad[i].cu, N = bad[i].N, B = bad[i].B;
        int r[4] = {delta_rule_fwd_ref_f32(o, NULL, x, x, x, x, NULL, NULL, 1, cu, N, B, T, H, HV, K, V),
                    delta_rule_fwd_chunk_f32(o, NULL, NULL, x, x, x, x, NULL, NULL, 1, cu, N, B, T, H, HV, K, V, 4),
                    delta_rule_bwd_ref_f32(o, o, o, o, NULL, x, x, x, x, x, NULL, NULL, 1, cu, N, B, T, H, HV, K, V),
                    delta_rule_bwd_chunk_f32(o, o, o, o, NULL, x, x, x, x, x, NULL, NULL, NULL, 1, cu, N, B, T, H, HV, K,
                                             V, 4)};
        int good = r[0] == -1 && r[1] == -1 && r[2] == -1 && r[3] == -1;
        if (!good) diag("not refused: %s", bad[i].what);
        all &= good;
    }
    check(all, "packed: bad cu_seqlens (start, end, order, B != 1, N = 0) return -1 from every function", "%d layouts", nb);
    free(x), free(o);
}

int main(void) {
    rng_seed(0x9E3779B97F4A7C15ull);
    test_forward();
    test_odd_chunks();
    /* gradient checks: T=21 with C=8 (two full chunks + a tail) and T=13 with C=16 (one partial) */
    test_gradcheck((cfg_t){2, 21, 2, 2, 5, 4, G_NONE, 1.0, 0}, 8);
    test_gradcheck((cfg_t){2, 21, 1, 2, 5, 4, G_MOD, 2.0, 1}, 8);
    test_gradcheck((cfg_t){1, 21, 2, 2, 5, 4, G_NEAR0, 2.0, 1}, 8);
    test_gradcheck((cfg_t){1, 21, 2, 4, 5, 4, G_M20, 1.0, 1}, 8);
    test_gradcheck((cfg_t){2, 13, 1, 2, 4, 5, G_MIX, 2.0, 1}, 16);
    test_bwd_f32();
    test_decode();
    test_threads();
    test_bad_args();
    for (int form = 0; form < 2; form++) {
        test_packed(2, 2, 16, 16, G_MOD, 64, form, 1);
        test_packed(1, 2, 8, 8, G_NONE, 16, form, 1);
    }
    test_packed(2, 4, 8, 4, G_MIX, 64, 1, 0);
    test_packed(1, 1, 4, 4, G_M20, 3, 1, 1);
    test_packed_gradcheck(G_MOD);
    test_packed_gradcheck(G_NONE);
    test_packed_bad();
    test_saved_wy((cfg_t){2, 100, 2, 4, 8, 12, G_MIX, 2.0, 0}, 16, 0);
    test_saved_wy((cfg_t){3, 37, 1, 1, 16, 8, G_NONE, 1.0, 0}, 64, 0);
    test_saved_wy((cfg_t){1, 130, 2, 2, 8, 8, G_MOD, 1.0, 0}, 64, 0);
    test_saved_wy((cfg_t){1, 0, 2, 4, 8, 4, G_M20, 2.0, 0}, 16, 1);
    test_saved_wy((cfg_t){1, 0, 1, 2, 4, 8, G_NONE, 1.0, 0}, 64, 1);
    return tap_done();
}
