/* test_gla.c — checks of kernels/gla.c (gated linear attention), TAP output.
 *
 * 1. chunked forward vs the reference recurrence, f32 (rel ≤ 1e-4) and f64 (rel ≤ 1e-10), outputs
 *    and final state, for several shapes (T = 1, 37, 100, 130; C = 64, 16 and 20; B, H > 1; K ≠ V)
 *    and gate regimes: near 0 (−1e-3·U(0.5,1.5)), GLA-like logsigmoid(N(0,1))/16, HGRN-2-like
 *    logsigmoid(3·N(0,1)) (sub-blocks mixing "tame" and element-wise channels), very negative
 *    (−20 / −30·U on some channels) and −1000 on half the channels: no inf/NaN anywhere;
 * 2. chunked backward vs the BPTT reference backward (f32 rel ≤ 1e-4, f64 rel ≤ 1e-10);
 * 2b. the chunk states the chunked forward saves (hs), handed to the chunked backward, give the
 *    recomputing backward's gradients (f64 rel ≤ 1e-13, f32 ≤ 1e-6), padded and packed, with dht;
 * 3. float64 central finite differences (h = 1e-6, error ≤ 1e-6 relative to max(1e-3, max|num|))
 *    of BOTH backward paths w.r.t. q, k, v, gk and h0, on loss = Σ o·w + Σ ht·wh;
 * 4. decode: gla_step reproduces the reference outputs and final state;
 * 5. prefill (chunked, ht) + decode (step) and prefill + chunked continuation (h0) match one pass;
 * 6. NULL gradient pointers are skipped (dgk alone equals dgk with all gradients);
 * 7. thread-count independence: 1 vs 2 threads give bit-identical results;
 * 8. bad arguments return −1;
 * 9. packed sequences (cu_seqlens): documents {1, 63, 64, 65, 200} in one row give each document's own
 *    outputs, final states and gradients (dq, dk, dv, dgk, dh0 with dht; f32 rel ≤ 1e-5) in both forms,
 *    float64 finite differences through the packed kernels (an empty document included), bad layouts
 *    return −1.
 */
#include "gla.h"
#include "parallel.h"
#include "ktest.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the data come from tap.h's seeded urand01() and nrand(); gates through logsigmoid */
static double logsigmoid(double z) { return (z < 0 ? z : 0) - log1p(exp(-fabs(z))); }

/* ---- problems ---- */
enum { G_NEAR0, G_GLA, G_MIX, G_NEG, G_HUGE };
static const char *gname[] = {"near0", "gla", "hgrn2", "neg20", "neg1000"};

typedef struct {
    int64_t B, T, H, K, V;
    double *q, *k, *v, *g, *h0, *w, *wh; /* w = dL/do, wh = dL/dht */
    float *qf, *kf, *vf, *gf, *h0f, *wf, *whf;
} prob;

static double *dvec(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }
static float *fvec(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static float *tof(const double *x, int64_t n) {
    float *y = fvec(n);
    for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

static void prob_make(prob *p, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int gmode,
                      int with_h0) {
    p->B = B, p->T = T, p->H = H, p->K = K, p->V = V;
    int64_t nk = B * T * H * K, nv = B * T * H * V, ns = B * H * K * V;
    p->q = dvec(nk), p->k = dvec(nk), p->v = dvec(nv), p->g = dvec(nk), p->w = dvec(nv);
    p->h0 = with_h0 ? dvec(ns) : NULL;
    p->wh = dvec(ns);
    for (int64_t i = 0; i < nk; i++) {
        p->q[i] = nrand();
        p->k[i] = nrand();
        int64_t j = i % K;
        switch (gmode) {
        case G_NEAR0: p->g[i] = -1e-3 * (0.5 + urand01()); break;
        case G_GLA: p->g[i] = logsigmoid(nrand()) / 16; break;
        case G_MIX: p->g[i] = logsigmoid(3 * nrand()); break;
        case G_NEG: p->g[i] = j % 3 == 0 ? -20 : j % 3 == 1 ? -30 * urand01() : logsigmoid(nrand()) / 16; break;
        default: p->g[i] = j % 2 == 0 ? -1000 : logsigmoid(nrand()) / 16; break;
        }
    }
    for (int64_t i = 0; i < nv; i++) p->v[i] = nrand(), p->w[i] = nrand();
    for (int64_t i = 0; i < ns; i++) {
        if (p->h0) p->h0[i] = 0.5 * nrand();
        p->wh[i] = nrand();
    }
    p->qf = tof(p->q, nk), p->kf = tof(p->k, nk), p->vf = tof(p->v, nv), p->gf = tof(p->g, nk);
    p->wf = tof(p->w, nv), p->whf = tof(p->wh, ns);
    p->h0f = p->h0 ? tof(p->h0, ns) : NULL;
}

static void prob_free(prob *p) {
    free(p->q), free(p->k), free(p->v), free(p->g), free(p->h0), free(p->w), free(p->wh);
    free(p->qf), free(p->kf), free(p->vf), free(p->gf), free(p->h0f), free(p->wf), free(p->whf);
}

/* max|a−b| / max|b| (absolute when b is all zero); NaN/inf in a gives inf. */
static double relerr_d(const double *a, const double *b, int64_t n) {
    double m = 0, e = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        double d = fabs(a[i] - b[i]);
        if (d > e) e = d;
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return m > 0 ? e / m : e;
}
static double relerr_f(const float *a, const float *b, int64_t n) {
    double m = 0, e = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > e) e = d;
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
    }
    return m > 0 ? e / m : e;
}

/* ---- 1. forward chunk vs reference ---- */
static void test_forward(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int gmode) {
    prob p;
    prob_make(&p, B, T, H, K, V, gmode, 1);
    int64_t nv = B * T * H * V, ns = B * H * K * V;
    double scale = 1 / sqrt((double)K);
    char name[160];

    double *o1 = dvec(nv), *o2 = dvec(nv), *h1 = dvec(ns), *h2 = dvec(ns);
    int rc = gla_fwd_ref_f64(o1, h1, p.q, p.k, p.v, p.g, p.h0, scale, NULL, 0, B, T, H, K, V);
    rc |= gla_fwd_chunk_f64(o2, h2, NULL, p.q, p.k, p.v, p.g, p.h0, scale, NULL, 0, B, T, H, K, V, C);
    double eo = relerr_d(o2, o1, nv), eh = relerr_d(h2, h1, ns);
    snprintf(name, sizeof name, "fwd f64 chunk==ref B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld gate=%s",
             (long)B, (long)T, (long)H, (long)K, (long)V, (long)C, gname[gmode]);
    check(rc == 0 && eo <= 1e-10 && eh <= 1e-10 && relerr_d(o1, o1, nv) == 0, name,
        "rc=%d o err %.3g ht err %.3g", rc, eo, eh);

    float *f1 = fvec(nv), *f2 = fvec(nv), *g1 = fvec(ns), *g2 = fvec(ns);
    rc = gla_fwd_ref_f32(f1, g1, p.qf, p.kf, p.vf, p.gf, p.h0f, (float)scale, NULL, 0, B, T, H, K, V);
    rc |= gla_fwd_chunk_f32(f2, g2, NULL, p.qf, p.kf, p.vf, p.gf, p.h0f, (float)scale, NULL, 0, B, T, H, K, V, C);
    eo = relerr_f(f2, f1, nv), eh = relerr_f(g2, g1, ns);
    name[5] = '3', name[6] = '2'; /* "f64" → "f32" */
    check(rc == 0 && eo <= 1e-4 && eh <= 1e-4 && relerr_f(f1, f1, nv) == 0, name,
        "rc=%d o err %.3g ht err %.3g", rc, eo, eh);
    free(o1), free(o2), free(h1), free(h2), free(f1), free(f2), free(g1), free(g2);
    prob_free(&p);
}

/* ---- 2. backward chunk vs reference ---- */
static void test_backward(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int gmode) {
    prob p;
    prob_make(&p, B, T, H, K, V, gmode, 1);
    int64_t nk = B * T * H * K, nv = B * T * H * V, ns = B * H * K * V;
    double scale = 1 / sqrt((double)K);
    char name[160];
    const char *gnm[5] = {"dq", "dk", "dv", "dgk", "dh0"};
    int64_t len[5] = {nk, nk, nv, nk, ns};

    double *gr[5], *gc[5];
    for (int i = 0; i < 5; i++) gr[i] = dvec(len[i]), gc[i] = dvec(len[i]);
    int rc = gla_bwd_ref_f64(gr[0], gr[1], gr[2], gr[3], gr[4], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0,
                             scale, NULL, 0, B, T, H, K, V);
    rc |= gla_bwd_chunk_f64(gc[0], gc[1], gc[2], gc[3], gc[4], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0, NULL,
                            scale, NULL, 0, B, T, H, K, V, C);
    double worst = 0;
    int wi = 0;
    for (int i = 0; i < 5; i++) {
        double e = relerr_d(gc[i], gr[i], len[i]);
        if (!(e <= worst)) worst = e, wi = i;
    }
    snprintf(name, sizeof name, "bwd f64 chunk==ref B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld gate=%s",
             (long)B, (long)T, (long)H, (long)K, (long)V, (long)C, gname[gmode]);
    check(rc == 0 && worst <= 1e-10, name, "rc=%d worst %s err %.3g", rc, gnm[wi], worst);

    /* the saved-state path: the chunk forward's hs handed to the chunk backward (with dht) gives the
     * recomputing path's gradients */
    int64_t nhs = gla_chunk_count(NULL, 0, B, T, C) * H * K * V;
    double *hs = dvec(nhs), *o = dvec(nv), *ht = dvec(ns), *gs[5];
    for (int i = 0; i < 5; i++) gs[i] = dvec(len[i]);
    rc = gla_fwd_chunk_f64(o, ht, hs, p.q, p.k, p.v, p.g, p.h0, scale, NULL, 0, B, T, H, K, V, C);
    rc |= gla_bwd_chunk_f64(gs[0], gs[1], gs[2], gs[3], gs[4], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0, hs,
                            scale, NULL, 0, B, T, H, K, V, C);
    double ws = 0, wr = 0;
    for (int i = 0; i < 5; i++) ws = fmax(ws, relerr_d(gs[i], gc[i], len[i])), wr = fmax(wr, relerr_d(gs[i], gr[i], len[i]));
    char sname[200];
    snprintf(sname, sizeof sname, "bwd f64 saved chunk states (hs, dht) == recompute, == ref B=%ld T=%ld H=%ld K=%ld "
             "V=%ld C=%ld gate=%s", (long)B, (long)T, (long)H, (long)K, (long)V, (long)C, gname[gmode]);
    check(rc == 0 && ws <= 1e-13 && wr <= 1e-10, sname, "rc=%d vs recompute %.3g vs ref %.3g", rc, ws, wr);

    float *fr[5], *fc[5];
    for (int i = 0; i < 5; i++) fr[i] = fvec(len[i]), fc[i] = fvec(len[i]);
    rc = gla_bwd_ref_f32(fr[0], fr[1], fr[2], fr[3], fr[4], p.wf, p.whf, p.qf, p.kf, p.vf, p.gf, p.h0f,
                         (float)scale, NULL, 0, B, T, H, K, V);
    rc |= gla_bwd_chunk_f32(fc[0], fc[1], fc[2], fc[3], fc[4], p.wf, p.whf, p.qf, p.kf, p.vf, p.gf,
                            p.h0f, NULL, (float)scale, NULL, 0, B, T, H, K, V, C);
    worst = 0, wi = 0;
    for (int i = 0; i < 5; i++) {
        double e = relerr_f(fc[i], fr[i], len[i]);
        if (!(e <= worst)) worst = e, wi = i;
    }
    name[5] = '3', name[6] = '2';
    check(rc == 0 && worst <= 1e-4, name, "rc=%d worst %s err %.3g", rc, gnm[wi], worst);

    float *hsf = fvec(nhs), *of = fvec(nv), *htf = fvec(ns), *fs[5];
    for (int i = 0; i < 5; i++) fs[i] = fvec(len[i]);
    rc = gla_fwd_chunk_f32(of, htf, hsf, p.qf, p.kf, p.vf, p.gf, p.h0f, (float)scale, NULL, 0, B, T, H, K, V, C);
    rc |= gla_bwd_chunk_f32(fs[0], fs[1], fs[2], fs[3], fs[4], p.wf, p.whf, p.qf, p.kf, p.vf, p.gf, p.h0f, hsf,
                            (float)scale, NULL, 0, B, T, H, K, V, C);
    ws = 0, wr = 0;
    for (int i = 0; i < 5; i++) ws = fmax(ws, relerr_f(fs[i], fc[i], len[i])), wr = fmax(wr, relerr_f(fs[i], fr[i], len[i]));
    sname[5] = '3', sname[6] = '2';
    check(rc == 0 && ws <= 1e-6 && wr <= 1e-4, sname, "rc=%d vs recompute %.3g vs ref %.3g", rc, ws, wr);
    for (int i = 0; i < 5; i++) free(gr[i]), free(gc[i]), free(fr[i]), free(fc[i]), free(gs[i]), free(fs[i]);
    free(hs), free(o), free(ht), free(hsf), free(of), free(htf);
    prob_free(&p);
}

/* ---- 3. finite differences ---- */
static double loss_f64(const prob *p, double scale, double *o, double *ht) {
    int64_t nv = p->B * p->T * p->H * p->V, ns = p->B * p->H * p->K * p->V;
    gla_fwd_ref_f64(o, ht, p->q, p->k, p->v, p->g, p->h0, scale, NULL, 0, p->B, p->T, p->H, p->K, p->V);
    double L = 0;
    for (int64_t i = 0; i < nv; i++) L += o[i] * p->w[i];
    for (int64_t i = 0; i < ns; i++) L += ht[i] * p->wh[i];
    return L;
}

static void test_fd(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int gmode) {
    prob p;
    prob_make(&p, B, T, H, K, V, gmode, 1);
    int64_t nk = B * T * H * K, nv = B * T * H * V, ns = B * H * K * V;
    double scale = 1 / sqrt((double)K), h = 1e-6;
    double *o = dvec(nv), *ht = dvec(ns);
    double *xs[5] = {p.q, p.k, p.v, p.g, p.h0};
    const char *xn[5] = {"q", "k", "v", "gk", "h0"};
    int64_t len[5] = {nk, nk, nv, nk, ns};
    double *gr[5], *gc[5], *num[5];
    for (int i = 0; i < 5; i++) gr[i] = dvec(len[i]), gc[i] = dvec(len[i]), num[i] = dvec(len[i]);
    int rc = gla_bwd_ref_f64(gr[0], gr[1], gr[2], gr[3], gr[4], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0,
                             scale, NULL, 0, B, T, H, K, V);
    rc |= gla_bwd_chunk_f64(gc[0], gc[1], gc[2], gc[3], gc[4], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0, NULL,
                            scale, NULL, 0, B, T, H, K, V, C);
    for (int i = 0; i < 5; i++)
        for (int64_t j = 0; j < len[i]; j++) {
            double x0 = xs[i][j];
            xs[i][j] = x0 + h;
            double lp = loss_f64(&p, scale, o, ht);
            xs[i][j] = x0 - h;
            double lm = loss_f64(&p, scale, o, ht);
            xs[i][j] = x0;
            num[i][j] = (lp - lm) / (2 * h);
        }
    for (int path = 0; path < 2; path++) {
        double **an = path ? gc : gr, worst = 0;
        int wi = 0;
        for (int i = 0; i < 5; i++) {
            double m = 1e-3, e = 0;
            for (int64_t j = 0; j < len[i]; j++) {
                if (fabs(num[i][j]) > m) m = fabs(num[i][j]);
                double d = fabs(an[i][j] - num[i][j]);
                if (!(d <= e)) e = d;
            }
            if (!(e / m <= worst)) worst = e / m, wi = i;
        }
        char name[160];
        snprintf(name, sizeof name, "fd f64 %s B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld gate=%s",
                 path ? "bwd_chunk" : "bwd_ref", (long)B, (long)T, (long)H, (long)K, (long)V, (long)C,
                 gname[gmode]);
        check(rc == 0 && worst <= 1e-6, name, "rc=%d worst d%s err %.3g", rc, xn[wi], worst);
    }
    for (int i = 0; i < 5; i++) free(gr[i]), free(gc[i]), free(num[i]);
    free(o), free(ht);
    prob_free(&p);
}

/* ---- 4/5. decode and prefill + decode ---- */
static void test_decode(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int64_t T1,
                        int gmode) {
    prob p;
    prob_make(&p, B, T, H, K, V, gmode, 1);
    int64_t nv = B * T * H * V, ns = B * H * K * V, HK = H * K, HV = H * V;
    double scale = 1 / sqrt((double)K);
    char name[160];
    double *o = dvec(nv), *ht = dvec(ns);
    gla_fwd_ref_f64(o, ht, p.q, p.k, p.v, p.g, p.h0, scale, NULL, 0, B, T, H, K, V);

    /* step-by-step decode from h0, f64 and f32 */
    double *S = dvec(ns), *od = dvec(nv), *q1 = dvec(B * HK), *k1 = dvec(B * HK), *g1 = dvec(B * HK);
    double *v1 = dvec(B * HV), *o1 = dvec(B * HV);
    float *Sf = fvec(ns), *odf = fvec(nv), *q1f = fvec(B * HK), *k1f = fvec(B * HK), *g1f = fvec(B * HK);
    float *v1f = fvec(B * HV), *o1f = fvec(B * HV), *of = fvec(nv), *htf = fvec(ns);
    gla_fwd_ref_f32(of, htf, p.qf, p.kf, p.vf, p.gf, p.h0f, (float)scale, NULL, 0, B, T, H, K, V);
    memcpy(S, p.h0, (size_t)ns * sizeof(double));
    memcpy(Sf, p.h0f, (size_t)ns * sizeof(float));
    int rc = 0;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t b = 0; b < B; b++) {
            int64_t sk = ((b * T + t) * H) * K, sv = ((b * T + t) * H) * V;
            for (int64_t x = 0; x < HK; x++) {
                q1[b * HK + x] = p.q[sk + x], k1[b * HK + x] = p.k[sk + x], g1[b * HK + x] = p.g[sk + x];
                q1f[b * HK + x] = p.qf[sk + x], k1f[b * HK + x] = p.kf[sk + x], g1f[b * HK + x] = p.gf[sk + x];
            }
            for (int64_t x = 0; x < HV; x++) v1[b * HV + x] = p.v[sv + x], v1f[b * HV + x] = p.vf[sv + x];
        }
        rc |= gla_step_f64(o1, S, q1, k1, v1, g1, scale, B, H, K, V);
        rc |= gla_step_f32(o1f, Sf, q1f, k1f, v1f, g1f, (float)scale, B, H, K, V);
        for (int64_t b = 0; b < B; b++)
            for (int64_t x = 0; x < HV; x++) {
                od[((b * T + t) * H) * V + x] = o1[b * HV + x];
                odf[((b * T + t) * H) * V + x] = o1f[b * HV + x];
            }
    }
    double eo = relerr_d(od, o, nv), eh = relerr_d(S, ht, ns);
    double eof = relerr_f(odf, of, nv), ehf = relerr_f(Sf, htf, ns);
    snprintf(name, sizeof name, "step decode == ref (o, state) f64+f32 B=%ld T=%ld H=%ld gate=%s",
             (long)B, (long)T, (long)H, gname[gmode]);
    check(rc == 0 && eo <= 1e-12 && eh <= 1e-12 && eof <= 1e-6 && ehf <= 1e-6, name,
        "rc=%d f64 %.3g %.3g f32 %.3g %.3g", rc, eo, eh, eof, ehf);

    /* prefill T1 tokens with the chunked forward (ht), then decode the rest with gla_step */
    int64_t T2 = T - T1;
    double *qa = dvec(B * T1 * HK), *ka = dvec(B * T1 * HK), *ga = dvec(B * T1 * HK), *va = dvec(B * T1 * HV);
    double *qb = dvec(B * T2 * HK), *kb = dvec(B * T2 * HK), *gb = dvec(B * T2 * HK), *vb = dvec(B * T2 * HV);
    for (int64_t b = 0; b < B; b++) {
        memcpy(qa + b * T1 * HK, p.q + b * T * HK, (size_t)(T1 * HK) * sizeof(double));
        memcpy(ka + b * T1 * HK, p.k + b * T * HK, (size_t)(T1 * HK) * sizeof(double));
        memcpy(ga + b * T1 * HK, p.g + b * T * HK, (size_t)(T1 * HK) * sizeof(double));
        memcpy(va + b * T1 * HV, p.v + b * T * HV, (size_t)(T1 * HV) * sizeof(double));
        memcpy(qb + b * T2 * HK, p.q + (b * T + T1) * HK, (size_t)(T2 * HK) * sizeof(double));
        memcpy(kb + b * T2 * HK, p.k + (b * T + T1) * HK, (size_t)(T2 * HK) * sizeof(double));
        memcpy(gb + b * T2 * HK, p.g + (b * T + T1) * HK, (size_t)(T2 * HK) * sizeof(double));
        memcpy(vb + b * T2 * HV, p.v + (b * T + T1) * HV, (size_t)(T2 * HV) * sizeof(double));
    }
    double *oa = dvec(B * T1 * HV), *ob = dvec(B * T2 * HV), *hmid = dvec(ns), *hend = dvec(ns);
    rc = gla_fwd_chunk_f64(oa, hmid, NULL, qa, ka, va, ga, p.h0, scale, NULL, 0, B, T1, H, K, V, C);
    rc |= gla_fwd_chunk_f64(ob, hend, NULL, qb, kb, vb, gb, hmid, scale, NULL, 0, B, T2, H, K, V, C);
    double e1 = 0, e2 = 0;
    for (int64_t b = 0; b < B; b++) {
        double ea = relerr_d(oa + b * T1 * HV, o + b * T * HV, T1 * HV);
        double eb = relerr_d(ob + b * T2 * HV, o + (b * T + T1) * HV, T2 * HV);
        if (ea > e1) e1 = ea;
        if (eb > e1) e1 = eb;
    }
    e2 = relerr_d(hend, ht, ns);
    snprintf(name, sizeof name, "prefill %ld (chunk, ht) + chunked continuation from h0 == one pass",
             (long)T1);
    check(rc == 0 && e1 <= 1e-10 && e2 <= 1e-10, name, "rc=%d o %.3g ht %.3g", rc, e1, e2);

    /* prefill state from the chunked forward, then decode step by step */
    memcpy(S, hmid, (size_t)ns * sizeof(double));
    rc = 0, e1 = 0;
    for (int64_t t = T1; t < T; t++) {
        for (int64_t b = 0; b < B; b++) {
            int64_t sk = ((b * T + t) * H) * K, sv = ((b * T + t) * H) * V;
            memcpy(q1 + b * HK, p.q + sk, (size_t)HK * sizeof(double));
            memcpy(k1 + b * HK, p.k + sk, (size_t)HK * sizeof(double));
            memcpy(g1 + b * HK, p.g + sk, (size_t)HK * sizeof(double));
            memcpy(v1 + b * HV, p.v + sv, (size_t)HV * sizeof(double));
        }
        rc |= gla_step_f64(o1, S, q1, k1, v1, g1, scale, B, H, K, V);
        for (int64_t b = 0; b < B; b++) {
            double e = relerr_d(o1 + b * HV, o + ((b * T + t) * H) * V, HV);
            if (e > e1) e1 = e;
        }
    }
    e2 = relerr_d(S, ht, ns);
    snprintf(name, sizeof name, "prefill %ld (chunk) + %ld decode steps == one pass", (long)T1, (long)T2);
    check(rc == 0 && e1 <= 1e-10 && e2 <= 1e-10, name, "rc=%d o %.3g state %.3g", rc, e1, e2);

    free(o), free(ht), free(S), free(od), free(q1), free(k1), free(g1), free(v1), free(o1);
    free(Sf), free(odf), free(q1f), free(k1f), free(g1f), free(v1f), free(o1f), free(of), free(htf);
    free(qa), free(ka), free(ga), free(va), free(qb), free(kb), free(gb), free(vb);
    free(oa), free(ob), free(hmid), free(hend);
    prob_free(&p);
}

/* ---- 6. NULL gradient pointers ---- */
static void test_null_grads(void) {
    int64_t B = 1, T = 45, H = 2, K = 16, V = 32, C = 16;
    prob p;
    prob_make(&p, B, T, H, K, V, G_GLA, 0);
    int64_t nk = B * T * H * K, nv = B * T * H * V;
    double scale = 0.25;
    double *dq = dvec(nk), *dk = dvec(nk), *dv = dvec(nv), *dg = dvec(nk), *dg2 = dvec(nk), *dg3 = dvec(nk);
    int rc = gla_bwd_chunk_f64(dq, dk, dv, dg, NULL, p.w, NULL, p.q, p.k, p.v, p.g, NULL, NULL, scale, NULL, 0, B, T,
                               H, K, V, C);
    rc |= gla_bwd_chunk_f64(NULL, NULL, NULL, dg2, NULL, p.w, NULL, p.q, p.k, p.v, p.g, NULL, NULL, scale, NULL, 0, B,
                            T, H, K, V, C);
    rc |= gla_bwd_ref_f64(NULL, NULL, NULL, dg3, NULL, p.w, NULL, p.q, p.k, p.v, p.g, NULL, scale, NULL, 0, B, T,
                          H, K, V);
    rc |= gla_bwd_chunk_f64(NULL, NULL, NULL, NULL, NULL, p.w, NULL, p.q, p.k, p.v, p.g, NULL, NULL, scale, NULL, 0, B,
                            T, H, K, V, C);
    check(rc == 0 && memcmp(dg, dg2, (size_t)nk * sizeof(double)) == 0 && relerr_d(dg2, dg3, nk) <= 1e-10,
        "bwd with only dgk (NULL dq/dk/dv/dh0) == full bwd; all-NULL runs", "rc=%d err %.3g", rc,
        relerr_d(dg2, dg3, nk));

    /* accumulation: a second call adds the same amount again */
    double *dq2 = dvec(nk);
    memcpy(dq2, dq, (size_t)nk * sizeof(double));
    rc = gla_bwd_chunk_f64(dq2, NULL, NULL, NULL, NULL, p.w, NULL, p.q, p.k, p.v, p.g, NULL, NULL, scale, NULL, 0, B,
                           T, H, K, V, C);
    double e = 0;
    for (int64_t i = 0; i < nk; i++) e = fmax(e, fabs(dq2[i] - 2 * dq[i]));
    check(rc == 0 && e <= 1e-12, "bwd accumulates (+=) into gradient buffers", "err %.3g", e);
    free(dq), free(dk), free(dv), free(dg), free(dg2), free(dg3), free(dq2);
    prob_free(&p);
}

/* ---- 7. thread-count independence ---- */
static void test_threads(void) {
    int64_t B = 2, T = 150, H = 3, K = 32, V = 16, C = 64;
    prob p;
    prob_make(&p, B, T, H, K, V, G_GLA, 1);
    int64_t nk = B * T * H * K, nv = B * T * H * V, ns = B * H * K * V;
    float scale = 0.2f;
    float *r[2][10];
    for (int run = 0; run < 2; run++) {
        hb_threads_set(run == 0 ? 1 : 2);
        float **x = r[run];
        x[0] = fvec(nv), x[1] = fvec(ns), x[2] = fvec(nk), x[3] = fvec(nk), x[4] = fvec(nv);
        x[5] = fvec(nk), x[6] = fvec(ns), x[7] = fvec(nv), x[8] = fvec(nk), x[9] = fvec(nk);
        gla_fwd_chunk_f32(x[0], x[1], NULL, p.qf, p.kf, p.vf, p.gf, p.h0f, scale, NULL, 0, B, T, H, K, V, C);
        gla_bwd_chunk_f32(x[2], x[3], x[4], x[5], x[6], p.wf, p.whf, p.qf, p.kf, p.vf, p.gf, p.h0f, NULL,
                          scale, NULL, 0, B, T, H, K, V, C);
        gla_fwd_ref_f32(x[7], NULL, p.qf, p.kf, p.vf, p.gf, p.h0f, scale, NULL, 0, B, T, H, K, V);
        gla_bwd_ref_f32(x[8], NULL, NULL, x[9], NULL, p.wf, p.whf, p.qf, p.kf, p.vf, p.gf, p.h0f,
                        scale, NULL, 0, B, T, H, K, V);
    }
    int64_t len[10] = {nv, ns, nk, nk, nv, nk, ns, nv, nk, nk};
    int same = 1;
    for (int i = 0; i < 10; i++) same &= memcmp(r[0][i], r[1][i], (size_t)len[i] * sizeof(float)) == 0;
    check(same, "1 thread vs 2 threads: bit-identical fwd/bwd (chunk and ref)", same ? "identical" : "results differ");
    for (int run = 0; run < 2; run++)
        for (int i = 0; i < 10; i++) free(r[run][i]);
    prob_free(&p);
}

/* ---- 8. bad arguments ---- */
static void test_bad_args(void) {
    float x[64] = {0};
    int bad = 0;
    bad += gla_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 1, 0, 2, 16) == -1;
    bad += gla_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 1, 2, 2, 0) == -1;
    bad += gla_fwd_ref_f32(x, NULL, x, x, x, x, NULL, 1, NULL, 0, -1, 2, 1, 2, 2) == -1;
    bad += gla_fwd_chunk_f32(x, NULL, NULL, NULL, x, x, x, NULL, 1, NULL, 0, 1, 2, 1, 2, 2, 16) == -1;
    bad += gla_bwd_chunk_f32(x, x, x, x, NULL, NULL, NULL, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 1, 2, 2, 16) == -1;
    bad += gla_step_f32(x, NULL, x, x, x, x, 1, 1, 1, 2, 2) == -1;
    check(bad == 6, "bad arguments return -1", "%d of 6", bad);
    /* T = 0: ht = h0 */
    float h0[4] = {1, 2, 3, 4}, ht[4] = {0};
    int rc = gla_fwd_chunk_f32(x, ht, NULL, x, x, x, x, h0, 1, NULL, 0, 1, 0, 1, 2, 2, 16);
    check(rc == 0 && memcmp(h0, ht, sizeof h0) == 0, "T=0 copies h0 to ht", "rc=%d", rc);
}

/* ---- 9. packed sequences ---- */
typedef struct {
    int64_t N, T, H, K, V, cu[8];
    double *x[7]; /* q, k, v, g, h0, w (dL/do), wh (dL/dht) */
    int64_t len[7];
} pk;

static void pk_make(pk *p, const int64_t *lens, int n, int64_t H, int64_t K, int64_t V, int gmode) {
    p->N = n, p->H = H, p->K = K, p->V = V;
    p->T = pack_cu(p->cu, lens, n);
    int64_t nk = p->T * H * K, nv = p->T * H * V, ns = n * H * K * V;
    const int64_t len[7] = {nk, nk, nv, nk, ns, nv, ns};
    for (int i = 0; i < 7; i++) p->len[i] = len[i], p->x[i] = dvec(len[i]);
    for (int i = 0; i < 7; i++)
        for (int64_t j = 0; j < len[i]; j++) p->x[i][j] = i == 4 ? 0.5 * nrand() : nrand();
    for (int64_t j = 0; j < nk; j++)
        p->x[3][j] = gmode == G_NEG && j % K % 3 == 0 ? -20 : logsigmoid(nrand()) / (gmode == G_MIX ? 1 : 16);
}
static void pk_free(pk *p) {
    for (int i = 0; i < 7; i++) free(p->x[i]);
}

static void test_packed(int64_t H, int64_t K, int64_t V, int64_t C, int form, int gmode) {
    pk p;
    pk_make(&p, PACK_LENS, PACK_N, H, K, V, gmode);
    const int64_t N = p.N, T = p.T, *cu = p.cu, SK = H * K, SV = H * V, S = H * K * V;
    float scale = 1.0f / sqrtf((float)K), *x[7], *r[2][7];
    for (int i = 0; i < 7; i++) x[i] = tof(p.x[i], p.len[i]);
    const int64_t out_len[7] = {p.len[2], p.len[4], p.len[0], p.len[1], p.len[2], p.len[3], p.len[4]};
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 7; i++) r[a][i] = fvec(out_len[i]); /* o, ht, dq, dk, dv, dgk, dh0 */
    float **g = r[0];
    /* the chunked form hands its saved chunk states (hs, packed layout) from the forward to the backward */
    float *hs = form ? fvec(gla_chunk_count(cu, N, 1, T, C) * S) : NULL;
    int rc = form ? gla_fwd_chunk_f32(g[0], g[1], hs, x[0], x[1], x[2], x[3], x[4], scale, cu, N, 1, T, H, K, V, C)
                  : gla_fwd_ref_f32(g[0], g[1], x[0], x[1], x[2], x[3], x[4], scale, cu, N, 1, T, H, K, V);
    rc |= form ? gla_bwd_chunk_f32(g[2], g[3], g[4], g[5], g[6], x[5], x[6], x[0], x[1], x[2], x[3], x[4], hs, scale, cu, N,
                                   1, T, H, K, V, C)
               : gla_bwd_ref_f32(g[2], g[3], g[4], g[5], g[6], x[5], x[6], x[0], x[1], x[2], x[3], x[4], scale, cu, N,
                                 1, T, H, K, V);
    for (int64_t d = 0; d < N; d++) { /* document d alone */
        const int64_t L = cu[d + 1] - cu[d], ok_ = cu[d] * SK, ov = cu[d] * SV, os = d * S;
        float **a = r[1];
        rc |= form ? gla_fwd_chunk_f32(a[0] + ov, a[1] + os, NULL, x[0] + ok_, x[1] + ok_, x[2] + ov, x[3] + ok_, x[4] + os,
                                       scale, NULL, 0, 1, L, H, K, V, C)
                   : gla_fwd_ref_f32(a[0] + ov, a[1] + os, x[0] + ok_, x[1] + ok_, x[2] + ov, x[3] + ok_, x[4] + os,
                                     scale, NULL, 0, 1, L, H, K, V);
        rc |= form ? gla_bwd_chunk_f32(a[2] + ok_, a[3] + ok_, a[4] + ov, a[5] + ok_, a[6] + os, x[5] + ov, x[6] + os,
                                       x[0] + ok_, x[1] + ok_, x[2] + ov, x[3] + ok_, x[4] + os, NULL, scale, NULL, 0, 1, L, H,
                                       K, V, C)
                   : gla_bwd_ref_f32(a[2] + ok_, a[3] + ok_, a[4] + ov, a[5] + ok_, a[6] + os, x[5] + ov, x[6] + os,
                                     x[0] + ok_, x[1] + ok_, x[2] + ov, x[3] + ok_, x[4] + os, scale, NULL, 0, 1, L, H,
                                     K, V);
    }
    double e = 0;
    for (int i = 0; i < 7; i++) e = fmax(e, relerr_f(r[0][i], r[1][i], out_len[i]));
    char name[200];
    snprintf(name, sizeof name, "packed {1,63,64,65,200} == each document alone, f32 %s (H=%ld K=%ld V=%ld C=%ld "
             "gate=%s): o, ht, dq, dk, dv, dgk, dh0", form ? "chunk, saved states" : "ref", (long)H, (long)K, (long)V, (long)C,
             gname[gmode]);
    check(rc == 0 && e <= 1e-5, name, "rc %d, max rel err %.3e", rc, e);
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 7; i++) free(r[a][i]);
    for (int i = 0; i < 7; i++) free(x[i]);
    free(hs);
    pk_free(&p);
}

static double pk_loss(const pk *p, double *o, double *ht) {
    gla_fwd_ref_f64(o, ht, p->x[0], p->x[1], p->x[2], p->x[3], p->x[4], 1 / sqrt((double)p->K), p->cu, p->N, 1, p->T,
                    p->H, p->K, p->V);
    double L = 0;
    for (int64_t i = 0; i < p->len[5]; i++) L += o[i] * p->x[5][i];
    for (int64_t i = 0; i < p->len[6]; i++) L += ht[i] * p->x[6][i];
    return L;
}

static void test_packed_fd(void) {
    const int64_t lens[] = {1, 3, 0, 4, 6};
    pk p;
    pk_make(&p, lens, 5, 2, 3, 2, G_GLA);
    double *o = dvec(p.len[2]), *ht = dvec(p.len[4]), *an[3][5];
    const int64_t *cu = p.cu, N = p.N, T = p.T, H = p.H, K = p.K, V = p.V;
    double scale = 1 / sqrt((double)K), **x = p.x;
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < 5; i++) an[a][i] = dvec(p.len[i]);
    double *hs = dvec(gla_chunk_count(cu, N, 1, T, 2) * H * K * V), *o2 = dvec(p.len[2]), *ht2 = dvec(p.len[4]);
    int rc = gla_fwd_chunk_f64(o2, ht2, hs, x[0], x[1], x[2], x[3], x[4], scale, cu, N, 1, T, H, K, V, 2);
    rc |= gla_bwd_chunk_f64(an[2][0], an[2][1], an[2][2], an[2][3], an[2][4], x[5], x[6], x[0], x[1], x[2], x[3], x[4],
                            hs, scale, cu, N, 1, T, H, K, V, 2);
    rc |= gla_bwd_ref_f64(an[0][0], an[0][1], an[0][2], an[0][3], an[0][4], x[5], x[6], x[0], x[1], x[2], x[3], x[4],
                             scale, cu, N, 1, T, H, K, V);
    rc |= gla_bwd_chunk_f64(an[1][0], an[1][1], an[1][2], an[1][3], an[1][4], x[5], x[6], x[0], x[1], x[2], x[3], x[4], NULL,
                            scale, cu, N, 1, T, H, K, V, 2);
    double worst[3] = {0, 0, 0};
    for (int i = 0; i < 5; i++) {
        double m = 1e-3, e[3] = {0, 0, 0};
        for (int64_t j = 0; j < p.len[i]; j++) {
            double x0 = x[i][j];
            x[i][j] = x0 + 1e-6;
            double lp = pk_loss(&p, o, ht);
            x[i][j] = x0 - 1e-6;
            double lm = pk_loss(&p, o, ht);
            x[i][j] = x0;
            double num = (lp - lm) / 2e-6;
            m = fmax(m, fabs(num));
            for (int a = 0; a < 3; a++) e[a] = fmax(e[a], fabs(an[a][i][j] - num));
        }
        for (int a = 0; a < 3; a++) worst[a] = fmax(worst[a], e[a] / m);
    }
    check(rc == 0 && worst[0] <= 1e-6 && worst[1] <= 1e-6 && worst[2] <= 1e-6,
          "packed fd f64 (documents {1,3,0,4,6}, C=2): bwd_ref, bwd_chunk and bwd_chunk from saved states dq dk dv dgk dh0",
          "rc=%d worst ref %.3g chunk %.3g saved %.3g", rc, worst[0], worst[1], worst[2]);
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < 5; i++) free(an[a][i]);
    free(o), free(ht), free(hs), free(o2), free(ht2);
    pk_free(&p);
}

static void test_packed_bad(void) {
    const int64_t T = 8, H = 1, K = 2, V = 2;
    float *x = fvec(2 * T * 4), *o = fvec(2 * T * 4);
    bad_pack_t bad[8];
    int nb = bad_packs(T, bad), all = 1;
    for (int i = 0; i < nb; i++) {
        const int64_t *cu = bad[i].cu, N = bad[i].N, B = bad[i].B;
        int r[4] = {gla_fwd_ref_f32(o, NULL, x, x, x, x, NULL, 1, cu, N, B, T, H, K, V),
                    gla_fwd_chunk_f32(o, NULL, NULL, x, x, x, x, NULL, 1, cu, N, B, T, H, K, V, 4),
                    gla_bwd_ref_f32(o, o, o, o, NULL, x, NULL, x, x, x, x, NULL, 1, cu, N, B, T, H, K, V),
                    gla_bwd_chunk_f32(o, o, o, o, NULL, x, NULL, x, x, x, x, NULL, NULL, 1, cu, N, B, T, H, K, V, 4)};
        int good = r[0] == -1 && r[1] == -1 && r[2] == -1 && r[3] == -1;
        if (!good) diag("not refused: %s", bad[i].what);
        all &= good;
    }
    check(all, "packed: bad cu_seqlens (start, end, order, B != 1, N = 0) return -1 from every function", "%d layouts", nb);
    free(x), free(o);
}

int main(void) {
    rng_seed(0x9E3779B97F4A7C15ull);
    hb_threads_set(2);
    static const int64_t shapes[][6] = { /* B T H K V C */
        {2, 1, 2, 16, 32, 64},  {1, 37, 2, 16, 32, 64}, {2, 37, 1, 16, 32, 16}, {2, 100, 3, 32, 32, 64},
        {1, 100, 2, 32, 32, 16}, {2, 130, 2, 16, 32, 64}, {1, 130, 2, 32, 32, 16}, {1, 130, 1, 32, 32, 20}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int gm = G_NEAR0; gm <= G_NEG; gm++)
        for (int i = 0; i < ns; i++) {
            const int64_t *s = shapes[i];
            test_forward(s[0], s[1], s[2], s[3], s[4], s[5], gm);
        }
    test_forward(1, 100, 2, 16, 32, 64, G_HUGE);
    test_forward(1, 100, 2, 16, 32, 16, G_HUGE);
    for (int gm = G_NEAR0; gm <= G_HUGE; gm++)
        for (int i = 0; i < ns; i++) {
            const int64_t *s = shapes[i];
            if (gm == G_HUGE && i % 3) continue;
            test_backward(s[0], s[1], s[2], s[3], s[4], s[5], gm);
        }
    test_fd(1, 37, 2, 16, 32, 16, G_GLA);
    for (int gm = G_NEAR0; gm <= G_NEG; gm++) test_fd(1, 37, 2, 8, 12, 16, gm);
    test_fd(2, 20, 1, 8, 8, 64, G_GLA);
    test_fd(1, 70, 1, 4, 6, 16, G_NEG);
    test_fd(1, 33, 1, 5, 3, 7, G_NEAR0);
    test_decode(2, 37, 2, 16, 32, 16, 20, G_GLA);
    test_decode(1, 100, 2, 32, 32, 64, 70, G_NEG);
    test_decode(1, 130, 1, 16, 32, 64, 128, G_NEAR0);
    test_null_grads();
    test_threads();
    test_bad_args();
    for (int form = 0; form < 2; form++) {
        test_packed(2, 16, 32, 64, form, G_GLA);
        test_packed(1, 8, 8, 16, form, G_NEG);
    }
    test_packed(2, 8, 4, 20, 1, G_MIX);
    test_packed_fd();
    test_packed_bad();
    return tap_done();
}
