/* test_dplr.c — TAP tests of kernels/dplr.c (the DPLR delta rule of RWKV-7).
 *
 * Checks: chunked forward vs the per-step reference (f64 ≤ 1e-10, f32 chunk and f32 reference vs the f64
 * reference ≤ 1e-4; outputs and final states) over T = 1, 37, 100, 130, 200 with C = 64, 16, 1, 3 and
 * C > T; RWKV-7's own instance (a = −kk, b = kk ⊙ â, log decays −0.6065·σ) and extreme settings (decays
 * near 0 (gk ≈ −20, whole sub-blocks "untamed"), exactly 0 (gk = −inf, forward and chunk-vs-reference
 * backward) and near 1 (gk ≈ −1e−6), strong decays everywhere (e^{−2..−3.5} per step),
 * β = â near 0 and near 2, general unrelated a and b); float64 central-difference gradient checks of
 * the reference backward AND the chunked backward w.r.t. q, k, v, a, b, gk and h0 (loss Σ o·w + Σ ht·w'
 * so dht is exercised too); chunked vs reference backward (f64 ≤ 1e-9, f32 ≤ 1e-3); saved chunk states
 * vs recomputation; decode steps vs the reference; chunked prefill + decode, and chunked prefill in two
 * pieces; packed documents {1, 63, 64, 65, 200} (and ones with empty documents) vs each run alone,
 * forward, final states and backward, plus a packed f64 gradient check; 1 vs 2 threads bit-identical;
 * bad arguments; NULL gradient buffers and accumulation; the mixer descriptor's entry points (argument order,
 * saved chunk states, scale, f32 and f64) against the direct calls.
 */
#include "../kernels/dplr.h"
#include "../kernels/parallel.h"
#define KTEST_SEED 0x5DEECE66DA3B9F11ull
#include "ktest.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { IQ, IK, IV, IA, IB, IG, IH0, NIN };
static const char *iname[NIN] = {"q", "k", "v", "a", "b", "gk", "h0"};

enum { G_RWKV, G_EXTREME, G_STRONG, G_INF };  /* log decays */
enum { L_RWKV, L_EDGE, L_GENERAL };           /* low-rank pair */
static const char *gname[] = {"rwkv decay", "decay ~0 and ~1", "strong decay", "decay 0 (gk = -inf) in some channels"};
static const char *lname[] = {"a=-kk b=kk*a^", "b=kk*beta, beta~0|~2", "general a,b"};

typedef struct {
    int64_t B, T, H, K, V, N; /* N: number of sequences (B, or the packed documents) */
    const int64_t *cu;
    double scale;
    int64_t n[NIN];           /* element counts */
    double *x[NIN];           /* x[IH0] may be NULL */
    float *f[NIN];            /* float copies */
} data_t;

static double sigm(double z) { return 1 / (1 + exp(-z)); }

static double gate(int mode, int64_t j) {
    const double rw = -0.6065306597126334 * sigm(3 * urand());
    if (mode == G_RWKV) return rw;
    if (mode == G_INF) return j % 4 == 1 ? -INFINITY : rw;
    if (mode == G_STRONG) return -2 - 1.5 * urand(); /* 16-row sub-blocks: e^{-8} .. e^{-56}, tame or not in f32 */
    if (j % 3 == 0) return -20 + urand();
    if (j % 3 == 1) return -1e-6 * (1.5 + urand());
    return rw;
}

/* Inputs for B sequences of T tokens (or N packed documents in one row of T tokens). */
static void make_data(data_t *d, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V,
                      const int64_t *cu, int64_t N, int gmode, int lmode, int with_h0) {
    memset(d, 0, sizeof *d);
    d->B = B, d->T = T, d->H = H, d->K = K, d->V = V, d->cu = cu, d->N = cu ? N : B;
    d->scale = lmode == L_RWKV ? 1.0 : 0.7;
    const int64_t nk = B * T * H * K;
    for (int i = 0; i < NIN; i++) d->n[i] = nk;
    d->n[IV] = B * T * H * V, d->n[IH0] = d->N * H * K * V;
    d->x[IQ] = drand_vec(nk, 1), d->x[IK] = drand_vec(nk, 1), d->x[IV] = drand_vec(d->n[IV], 1);
    d->x[IA] = dzeros(nk), d->x[IB] = dzeros(nk), d->x[IG] = dzeros(nk);
    d->x[IH0] = with_h0 ? drand_vec(d->n[IH0], 0.5) : NULL;
    for (int64_t row = 0; row < B * T * H; row++) {
        double *a = d->x[IA] + row * K, *b = d->x[IB] + row * K, *g = d->x[IG] + row * K, nrm = 0;
        for (int64_t j = 0; j < K; j++) g[j] = gate(gmode, j);
        if (lmode == L_GENERAL) {
            for (int64_t j = 0; j < K; j++) a[j] = 0.5 * urand() / sqrt((double)K), b[j] = 0.5 * urand() / sqrt((double)K);
            continue;
        }
        for (int64_t j = 0; j < K; j++) a[j] = urand(), nrm += a[j] * a[j];
        for (int64_t j = 0; j < K; j++) {
            const double kk = a[j] / sqrt(nrm), u = 0.5 * (1 + urand());
            const double beta = lmode == L_RWKV ? u : row % H % 2 == 0 ? 1e-3 * u : 2 - 1e-3 * u;
            a[j] = -kk, b[j] = kk * beta;
        }
    }
    for (int i = 0; i < NIN; i++) d->f[i] = to_f(d->x[i], d->n[i]);
}

static void free_data(data_t *d) {
    for (int i = 0; i < NIN; i++) free(d->x[i]), free(d->f[i]);
}

/* Forward: ref (C = 0) or chunked, f64 / f32. */
static int fwd64(const data_t *d, int64_t C, double *o, double *ht, double *hs) {
    double *const *x = d->x;
    if (C == 0)
        return dplr_fwd_ref_f64(o, ht, x[IQ], x[IK], x[IV], x[IA], x[IB], x[IG], x[IH0], d->scale, d->cu,
                                d->N, d->B, d->T, d->H, d->K, d->V);
    return dplr_fwd_chunk_f64(o, ht, hs, x[IQ], x[IK], x[IV], x[IA], x[IB], x[IG], x[IH0], d->scale, d->cu,
                              d->N, d->B, d->T, d->H, d->K, d->V, C);
}
static int fwd32(const data_t *d, int64_t C, float *o, float *ht, float *hs) {
    float *const *x = d->f;
    if (C == 0)
        return dplr_fwd_ref_f32(o, ht, x[IQ], x[IK], x[IV], x[IA], x[IB], x[IG], x[IH0], (float)d->scale,
                                d->cu, d->N, d->B, d->T, d->H, d->K, d->V);
    return dplr_fwd_chunk_f32(o, ht, hs, x[IQ], x[IK], x[IV], x[IA], x[IB], x[IG], x[IH0], (float)d->scale,
                              d->cu, d->N, d->B, d->T, d->H, d->K, d->V, C);
}
/* Backward into gr[NIN] (each may be NULL): ref (C = 0) or chunked (hs optional). */
static int bwd64(const data_t *d, int64_t C, double **gr, const double *dO, const double *dht,
                 const double *hs) {
    double *const *x = d->x;
    if (C == 0)
        return dplr_bwd_ref_f64(gr[IQ], gr[IK], gr[IV], gr[IA], gr[IB], gr[IG], gr[IH0], dO, dht, x[IQ], x[IK],
                                x[IV], x[IA], x[IB], x[IG], x[IH0], d->scale, d->cu, d->N, d->B, d->T, d->H,
                                d->K, d->V);
    return dplr_bwd_chunk_f64(gr[IQ], gr[IK], gr[IV], gr[IA], gr[IB], gr[IG], gr[IH0], dO, dht, x[IQ], x[IK],
                              x[IV], x[IA], x[IB], x[IG], x[IH0], hs, d->scale, d->cu, d->N, d->B, d->T, d->H,
                              d->K, d->V, C);
}
static int bwd32(const data_t *d, int64_t C, float **gr, const float *dO, const float *dht, const float *hs) {
    float *const *x = d->f;
    if (C == 0)
        return dplr_bwd_ref_f32(gr[IQ], gr[IK], gr[IV], gr[IA], gr[IB], gr[IG], gr[IH0], dO, dht, x[IQ], x[IK],
                                x[IV], x[IA], x[IB], x[IG], x[IH0], (float)d->scale, d->cu, d->N, d->B, d->T,
                                d->H, d->K, d->V);
    return dplr_bwd_chunk_f32(gr[IQ], gr[IK], gr[IV], gr[IA], gr[IB], gr[IG], gr[IH0], dO, dht, x[IQ], x[IK],
                              x[IV], x[IA], x[IB], x[IG], x[IH0], hs, (float)d->scale, d->cu, d->N, d->B, d->T,
                              d->H, d->K, d->V, C);
}

static void alloc_grads64(const data_t *d, double **gr) {
    for (int i = 0; i < NIN; i++) gr[i] = dzeros(d->n[i]);
}
static void alloc_grads32(const data_t *d, float **gr) {
    for (int i = 0; i < NIN; i++) gr[i] = fzeros(d->n[i]);
}
static void free_grads(void **gr) {
    for (int i = 0; i < NIN; i++) free(gr[i]);
}

static int64_t nstates(const data_t *d) { return d->N * d->H * d->K * d->V; }

/* ---- forward ---- */

static void test_forward(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int gmode, int lmode,
                         int with_h0) {
    data_t d;
    make_data(&d, B, T, H, K, V, NULL, 0, gmode, lmode, with_h0);
    const int64_t no = d.n[IV], ns = nstates(&d);
    double *o_ref = dzeros(no), *ht_ref = dzeros(ns), *o64 = dzeros(no), *ht64 = dzeros(ns);
    float *o32 = fzeros(no), *ht32 = fzeros(ns), *or32 = fzeros(no), *htr32 = fzeros(ns);
    int rc = fwd64(&d, 0, o_ref, ht_ref, NULL) | fwd64(&d, C, o64, ht64, NULL);
    rc |= fwd32(&d, C, o32, ht32, NULL) | fwd32(&d, 0, or32, htr32, NULL);
    const double e64 = fmax(rel_err_dd(o64, o_ref, no), rel_err_dd(ht64, ht_ref, ns));
    const double e32 = fmax(rel_err_fd(o32, o_ref, no), rel_err_fd(ht32, ht_ref, ns));
    const double er32 = fmax(rel_err_fd(or32, o_ref, no), rel_err_fd(htr32, ht_ref, ns));
    char name[256];
    snprintf(name, sizeof name, "fwd chunk == ref (B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld, %s, %s, h0=%d)", (long)B,
             (long)T, (long)H, (long)K, (long)V, (long)C, gname[gmode], lname[lmode], with_h0);
    check(rc == 0 && e64 <= 1e-10 && e32 <= 1e-4 && er32 <= 1e-4, name,
          "rc %d; rel err f64 chunk %.3e, f32 chunk %.3e, f32 ref %.3e (vs f64 ref)", rc, e64, e32, er32);
    free_data(&d);
    free(o_ref), free(ht_ref), free(o64), free(ht64), free(o32), free(ht32), free(or32), free(htr32);
}

/* ---- gradients ---- */

static double loss_of(const data_t *d, const double *wo, const double *wh, double *o, double *ht) {
    fwd64(d, 0, o, ht, NULL);
    double s = 0;
    for (int64_t i = 0; i < d->n[IV]; i++) s += o[i] * wo[i];
    for (int64_t i = 0; i < nstates(d); i++) s += ht[i] * wh[i];
    return s;
}

/* max over the inputs of max|analytic − numeric| / max(1e−3, max|numeric|); *worst names the input. */
static double fd_check(data_t *d, double **gr, const double *wo, const double *wh, int *worst) {
    const double eps = 1e-6;
    double *o = dzeros(d->n[IV]), *ht = dzeros(nstates(d)), emax = 0;
    *worst = 0;
    for (int i = 0; i < NIN; i++) {
        if (!d->x[i]) continue;
        double maxdiff = 0, maxnum = 0;
        for (int64_t e = 0; e < d->n[i]; e++) {
            double *p = d->x[i] + e, p0 = *p;
            *p = p0 + eps;
            const double lp = loss_of(d, wo, wh, o, ht);
            *p = p0 - eps;
            const double lm = loss_of(d, wo, wh, o, ht);
            *p = p0;
            const double num = (lp - lm) / (2 * eps);
            maxdiff = fmax(maxdiff, isnan(gr[i][e]) ? INFINITY : fabs(num - gr[i][e]));
            maxnum = fmax(maxnum, fabs(num));
        }
        const double err = maxdiff / fmax(1e-3, maxnum);
        if (err > emax) emax = err, *worst = i;
    }
    free(o), free(ht);
    return emax;
}

static void test_gradients(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int gmode, int lmode,
                           int with_h0, const int64_t *cu, int64_t N) {
    data_t d;
    make_data(&d, B, T, H, K, V, cu, N, gmode, lmode, with_h0);
    double *wo = drand_vec(d.n[IV], 1), *wh = drand_vec(nstates(&d), 1);
    double *hs = dzeros(dplr_chunk_count(cu, N, B, T, C) * H * K * V), *o = dzeros(d.n[IV]);
    fwd64(&d, C, o, NULL, hs);
    for (int path = 0; path < 3; path++) { /* ref, chunk with hs, chunk recomputing */
        double *gr[NIN];
        alloc_grads64(&d, gr);
        const int rc = bwd64(&d, path == 0 ? 0 : C, gr, wo, wh, path == 1 ? hs : NULL);
        int worst;
        const double e = fd_check(&d, gr, wo, wh, &worst);
        char name[300];
        snprintf(name, sizeof name,
                 "gradcheck f64 %s (B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld%s, %s, %s, h0=%d): q k v a b gk%s",
                 path == 0 ? "bwd_ref" : path == 1 ? "bwd_chunk (hs)" : "bwd_chunk", (long)B, (long)T, (long)H,
                 (long)K, (long)V, (long)C, cu ? ", packed" : "", gname[gmode], lname[lmode], with_h0,
                 with_h0 ? " h0" : "");
        check(rc == 0 && e <= 1e-6, name, "rc %d; max rel err %.3e (worst: d%s)", rc, e, iname[worst]);
        free_grads((void **)gr);
    }
    free_data(&d), free(wo), free(wh), free(hs), free(o);
}

/* chunked vs reference backward: f64 and f32, with and without saved chunk states. */
static void test_backward(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int gmode, int lmode) {
    data_t d;
    make_data(&d, B, T, H, K, V, NULL, 0, gmode, lmode, 1);
    const int64_t ns = nstates(&d), nh = dplr_chunk_count(NULL, 0, B, T, C) * H * K * V;
    double *dO = drand_vec(d.n[IV], 1), *dht = drand_vec(ns, 1), *o = dzeros(d.n[IV]), *hs = dzeros(nh);
    float *dOf = to_f(dO, d.n[IV]), *dhtf = to_f(dht, ns), *of = fzeros(d.n[IV]), *hsf = fzeros(nh);
    double *gref[NIN], *gch[NIN], *ghs[NIN];
    float *gf[NIN], *gfr[NIN];
    alloc_grads64(&d, gref), alloc_grads64(&d, gch), alloc_grads64(&d, ghs);
    alloc_grads32(&d, gf), alloc_grads32(&d, gfr);
    int rc = fwd64(&d, C, o, NULL, hs) | fwd32(&d, C, of, NULL, hsf);
    rc |= bwd64(&d, 0, gref, dO, dht, NULL) | bwd64(&d, C, gch, dO, dht, NULL) | bwd64(&d, C, ghs, dO, dht, hs);
    rc |= bwd32(&d, C, gf, dOf, dhtf, hsf) | bwd32(&d, 0, gfr, dOf, dhtf, NULL);
    double e64 = 0, ehs = 0, e32 = 0, er32 = 0;
    int w64 = 0, w32 = 0;
    for (int i = 0; i < NIN; i++) {
        const double x = rel_err_dd(gch[i], gref[i], d.n[i]), y = rel_err_fd(gf[i], gref[i], d.n[i]);
        if (x > e64) e64 = x, w64 = i;
        if (y > e32) e32 = y, w32 = i;
        ehs = fmax(ehs, rel_err_dd(ghs[i], gch[i], d.n[i]));
        er32 = fmax(er32, rel_err_fd(gfr[i], gref[i], d.n[i]));
    }
    char name[256];
    snprintf(name, sizeof name, "bwd chunk == bwd ref (B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld, %s, %s, dht, h0)",
             (long)B, (long)T, (long)H, (long)K, (long)V, (long)C, gname[gmode], lname[lmode]);
    check(rc == 0 && e64 <= 1e-9 && e32 <= 1e-3 && er32 <= 1e-3 && ehs <= 1e-12, name,
          "rc %d; rel err f64 %.3e (worst d%s), f32 chunk %.3e (worst d%s), f32 ref %.3e; saved hs vs "
          "recomputed %.3e", rc, e64, iname[w64], e32, iname[w32], er32, ehs);
    free_grads((void **)gref), free_grads((void **)gch), free_grads((void **)ghs);
    free_grads((void **)gf), free_grads((void **)gfr);
    free_data(&d), free(dO), free(dht), free(o), free(hs), free(dOf), free(dhtf), free(of), free(hsf);
}

/* ---- decode ---- */

/* rows [t0, t1) of a (B,T,R) tensor into dst (B,t1−t0,R) */
static void slice_time(double *dst, const double *src, int64_t B, int64_t T, int64_t R, int64_t t0, int64_t t1) {
    for (int64_t b = 0; b < B; b++)
        memcpy(dst + b * (t1 - t0) * R, src + (b * T + t0) * R, (size_t)((t1 - t0) * R) * sizeof(double));
}

static void test_decode(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int64_t tp) {
    data_t d;
    make_data(&d, B, T, H, K, V, NULL, 0, G_EXTREME, L_RWKV, 1);
    const int64_t HK = H * K, HV = H * V, ns = nstates(&d);
    double *o_ref = dzeros(d.n[IV]), *ht_ref = dzeros(ns);
    fwd64(&d, 0, o_ref, ht_ref, NULL);
    double *st = dzeros(ns), *o = dzeros(d.n[IV]), *ot = dzeros(B * HV), *xt[NIN];
    for (int i = 0; i < IH0; i++) xt[i] = dzeros(B * (i == IV ? HV : HK));
    float *stf = to_f(d.x[IH0], ns), *otf = fzeros(B * HV), *of = fzeros(d.n[IV]), *xtf[NIN];
    for (int i = 0; i < IH0; i++) xtf[i] = fzeros(B * (i == IV ? HV : HK));
    memcpy(st, d.x[IH0], (size_t)ns * sizeof(double));
    int rc = 0;
    for (int64_t t = 0; t < T; t++) {
        for (int i = 0; i < IH0; i++) {
            slice_time(xt[i], d.x[i], B, T, i == IV ? HV : HK, t, t + 1);
            for (int64_t e = 0; e < B * (i == IV ? HV : HK); e++) xtf[i][e] = (float)xt[i][e];
        }
        rc |= dplr_step_f64(ot, st, xt[IQ], xt[IK], xt[IV], xt[IA], xt[IB], xt[IG], d.scale, B, H, K, V);
        rc |= dplr_step_f32(otf, stf, xtf[IQ], xtf[IK], xtf[IV], xtf[IA], xtf[IB], xtf[IG], (float)d.scale, B, H,
                            K, V);
        for (int64_t b = 0; b < B; b++) {
            memcpy(o + (b * T + t) * HV, ot + b * HV, (size_t)HV * sizeof(double));
            memcpy(of + (b * T + t) * HV, otf + b * HV, (size_t)HV * sizeof(float));
        }
    }
    double e = fmax(rel_err_dd(o, o_ref, d.n[IV]), rel_err_dd(st, ht_ref, ns));
    check(rc == 0 && e <= 1e-12, "decode steps f64 reproduce the reference outputs and final state", "rc %d rel err %.3e",
          rc, e);
    e = fmax(rel_err_fd(of, o_ref, d.n[IV]), rel_err_fd(stf, ht_ref, ns));
    check(rc == 0 && e <= 1e-4, "decode steps f32 reproduce the reference outputs and final state", "rc %d rel err %.3e",
          rc, e);

    /* chunked prefill of [0, tp) with ht, then decode steps */
    data_t pa = d, pb = d;
    pa.T = tp, pb.T = T - tp;
    for (int i = 0; i < IH0; i++) {
        const int64_t R = i == IV ? HV : HK;
        pa.x[i] = dzeros(B * tp * R), pb.x[i] = dzeros(B * (T - tp) * R);
        slice_time(pa.x[i], d.x[i], B, T, R, 0, tp), slice_time(pb.x[i], d.x[i], B, T, R, tp, T);
    }
    double *oa = dzeros(B * tp * HV), *ob = dzeros(B * (T - tp) * HV), *ob_ref = dzeros(B * (T - tp) * HV);
    slice_time(ob_ref, o_ref, B, T, HV, tp, T);
    rc = fwd64(&pa, C, oa, st, NULL);
    for (int64_t t = tp; t < T; t++) {
        for (int i = 0; i < IH0; i++) slice_time(xt[i], d.x[i], B, T, i == IV ? HV : HK, t, t + 1);
        rc |= dplr_step_f64(ot, st, xt[IQ], xt[IK], xt[IV], xt[IA], xt[IB], xt[IG], d.scale, B, H, K, V);
        for (int64_t b = 0; b < B; b++) memcpy(o + (b * T + t) * HV, ot + b * HV, (size_t)HV * sizeof(double));
    }
    for (int64_t b = 0; b < B; b++) memcpy(o + b * T * HV, oa + b * tp * HV, (size_t)(tp * HV) * sizeof(double));
    e = fmax(rel_err_dd(o, o_ref, d.n[IV]), rel_err_dd(st, ht_ref, ns));
    check(rc == 0 && e <= 1e-10, "chunked prefill (ht) + decode steps == whole-sequence reference", "rc %d rel err %.3e",
          rc, e);

    /* chunked [0, tp), then chunked [tp, T) from its final state */
    double *mid = dzeros(ns), *fin = dzeros(ns);
    rc = fwd64(&pa, C, oa, mid, NULL);
    pb.x[IH0] = mid;
    rc |= fwd64(&pb, C, ob, fin, NULL);
    e = fmax(rel_err_dd(ob, ob_ref, B * (T - tp) * HV), rel_err_dd(fin, ht_ref, ns));
    check(rc == 0 && e <= 1e-10, "chunked [0,t) then chunked [t,T) from its state == whole-sequence reference",
          "rc %d rel err %.3e", rc, e);

    for (int i = 0; i < IH0; i++) free(pa.x[i]), free(pb.x[i]), free(xt[i]), free(xtf[i]);
    free_data(&d), free(o_ref), free(ht_ref), free(st), free(o), free(ot), free(stf), free(otf), free(of);
    free(oa), free(ob), free(ob_ref), free(mid), free(fin);
}

/* ---- packed sequences ---- */

/* Document n of a packed data set as a data set of its own (B = 1, no cu_seqlens). */
static void doc_of(data_t *dst, const data_t *src, int64_t n) {
    *dst = *src;
    const int64_t t0 = src->cu[n], len = src->cu[n + 1] - t0, H = src->H, K = src->K, V = src->V;
    dst->cu = NULL, dst->B = 1, dst->N = 1, dst->T = len;
    for (int i = 0; i < NIN; i++) {
        const int64_t R = i == IV ? H * V : H * K, off = i == IH0 ? n * H * K * V : t0 * R;
        dst->n[i] = i == IH0 ? H * K * V : len * R;
        dst->x[i] = src->x[i] ? src->x[i] + off : NULL;
        dst->f[i] = src->f[i] ? src->f[i] + off : NULL;
    }
}

static void test_packed(const int64_t *lens, int64_t N, int64_t H, int64_t K, int64_t V, int64_t C) {
    int64_t cu[16] = {0};
    for (int64_t n = 0; n < N; n++) cu[n + 1] = cu[n] + lens[n];
    const int64_t T = cu[N];
    data_t d;
    make_data(&d, 1, T, H, K, V, cu, N, G_EXTREME, L_RWKV, 1);
    const int64_t ns = nstates(&d), KV = K * V, HV = H * V, HK = H * K;
    const int64_t nh = dplr_chunk_count(cu, N, 1, T, C) * H * KV;
    double *dO = drand_vec(d.n[IV], 1), *dht = drand_vec(ns, 1);
    float *dOf = to_f(dO, d.n[IV]), *dhtf = to_f(dht, ns);
    double e64 = 0, e32 = 0;
    for (int path = 0; path < 2; path++) { /* 0: chunked, 1: reference */
        const int64_t Cp = path == 0 ? C : 0;
        double *o = dzeros(d.n[IV]), *ht = dzeros(ns), *hs = dzeros(nh), *gr[NIN];
        float *of = fzeros(d.n[IV]), *htf = fzeros(ns), *hsf = fzeros(nh), *gf[NIN];
        alloc_grads64(&d, gr), alloc_grads32(&d, gf);
        int rc = fwd64(&d, Cp, o, ht, hs) | fwd32(&d, Cp, of, htf, hsf);
        rc |= bwd64(&d, Cp, gr, dO, dht, path == 0 ? hs : NULL) | bwd32(&d, Cp, gf, dOf, dhtf, path == 0 ? hsf : NULL);
        for (int64_t n = 0; n < N; n++) {
            data_t s;
            doc_of(&s, &d, n);
            const int64_t t0 = cu[n], len = s.T;
            double *so = dzeros(len * HV), *sht = dzeros(KV * H), *sg[NIN];
            float *sof = fzeros(len * HV), *shtf = fzeros(KV * H), *sgf[NIN];
            alloc_grads64(&s, sg), alloc_grads32(&s, sgf);
            rc |= fwd64(&s, Cp, so, sht, NULL) | fwd32(&s, Cp, sof, shtf, NULL);
            rc |= bwd64(&s, Cp, sg, dO + t0 * HV, dht + n * H * KV, NULL);
            rc |= bwd32(&s, Cp, sgf, dOf + t0 * HV, dhtf + n * H * KV, NULL);
            e64 = fmax(e64, fmax(rel_err_dd(o + t0 * HV, so, len * HV), rel_err_dd(ht + n * H * KV, sht, H * KV)));
            for (int64_t x = 0; x < len * HV; x++) e32 = fmax(e32, fabs((double)of[t0 * HV + x] - sof[x]));
            for (int64_t x = 0; x < H * KV; x++) e32 = fmax(e32, fabs((double)htf[n * H * KV + x] - shtf[x]));
            for (int i = 0; i < NIN; i++) {
                const int64_t off = i == IH0 ? n * H * KV : t0 * (i == IV ? HV : HK);
                e64 = fmax(e64, rel_err_dd(gr[i] + off, sg[i], s.n[i]));
                double mx = 0, df = 0;
                for (int64_t x = 0; x < s.n[i]; x++)
                    mx = fmax(mx, fabs(sgf[i][x])), df = fmax(df, fabs((double)gf[i][off + x] - sgf[i][x]));
                e32 = fmax(e32, df / (mx > 0 ? mx : 1));
            }
            free(so), free(sht), free(sof), free(shtf);
            free_grads((void **)sg), free_grads((void **)sgf);
        }
        char name[256], ls[128] = "";
        for (int64_t n = 0; n < N; n++) snprintf(ls + strlen(ls), sizeof ls - strlen(ls), "%s%ld", n ? "," : "", (long)lens[n]);
        snprintf(name, sizeof name, "packed {%s} (H=%ld K=%ld V=%ld%s) == each document alone: o, ht, all gradients",
                 ls, (long)H, (long)K, (long)V, path == 0 ? ", chunked" : ", reference");
        check(rc == 0 && e64 <= 1e-12 && e32 <= 1e-5, name, "rc %d; rel err f64 %.3e, f32 %.3e", rc, e64, e32);
        free(o), free(ht), free(hs), free(of), free(htf), free(hsf);
        free_grads((void **)gr), free_grads((void **)gf);
        e64 = e32 = 0;
    }
    free_data(&d), free(dO), free(dht), free(dOf), free(dhtf);
}

/* ---- threads ---- */

static void test_threads(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    data_t d;
    make_data(&d, B, T, H, K, V, NULL, 0, G_EXTREME, L_RWKV, 1);
    const int64_t no = d.n[IV], ns = nstates(&d), nh = dplr_chunk_count(NULL, 0, B, T, C) * H * K * V;
    float *dO = fzeros(no);
    for (int64_t i = 0; i < no; i++) dO[i] = (float)urand();
    float *o[2], *ht[2], *hs[2], *orf[2], *gc[2][NIN], *grf[2][NIN];
    for (int run = 0; run < 2; run++) {
        hb_threads_set(run + 1);
        o[run] = fzeros(no), ht[run] = fzeros(ns), hs[run] = fzeros(nh), orf[run] = fzeros(no);
        alloc_grads32(&d, gc[run]), alloc_grads32(&d, grf[run]);
        fwd32(&d, C, o[run], ht[run], hs[run]);
        fwd32(&d, 0, orf[run], NULL, NULL);
        bwd32(&d, C, gc[run], dO, NULL, hs[run]);
        bwd32(&d, 0, grf[run], dO, NULL, NULL);
    }
    int same = memcmp(o[0], o[1], (size_t)no * 4) == 0 && memcmp(ht[0], ht[1], (size_t)ns * 4) == 0 &&
               memcmp(hs[0], hs[1], (size_t)nh * 4) == 0 && memcmp(orf[0], orf[1], (size_t)no * 4) == 0;
    for (int i = 0; i < NIN; i++)
        same &= memcmp(gc[0][i], gc[1][i], (size_t)d.n[i] * 4) == 0 && memcmp(grf[0][i], grf[1][i], (size_t)d.n[i] * 4) == 0;
    char name[200];
    snprintf(name, sizeof name, "1 thread and 2 threads bit-identical: fwd/bwd chunk and ref (B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld)",
             (long)B, (long)T, (long)H, (long)K, (long)V, (long)C);
    check(same, name, same ? "identical" : "results differ");
    for (int run = 0; run < 2; run++) {
        free(o[run]), free(ht[run]), free(hs[run]), free(orf[run]);
        free_grads((void **)gc[run]), free_grads((void **)grf[run]);
    }
    free(dO), free_data(&d);
    hb_threads_set(2);
}

/* ---- accumulation, NULL buffers, bad arguments ---- */

static void test_accumulate(void) {
    data_t d;
    make_data(&d, 2, 37, 2, 6, 5, NULL, 0, G_EXTREME, L_EDGE, 1);
    const int64_t ns = nstates(&d);
    double *dO = drand_vec(d.n[IV], 1), *dht = drand_vec(ns, 1);
    int acc_ok = 1, null_ok = 1, rc = 0;
    for (int path = 0; path < 2; path++) {
        const int64_t C = path ? 16 : 0;
        double *fresh[NIN], *acc[NIN], *part[NIN], *none[NIN] = {0};
        alloc_grads64(&d, fresh), alloc_grads64(&d, acc), alloc_grads64(&d, part);
        for (int i = 0; i < NIN; i++)
            for (int64_t x = 0; x < d.n[i]; x++) acc[i][x] = 1.0;
        rc |= bwd64(&d, C, fresh, dO, dht, NULL) | bwd64(&d, C, acc, dO, dht, NULL);
        for (int i = 0; i < NIN; i++)
            for (int64_t x = 0; x < d.n[i]; x++) acc_ok &= fabs(acc[i][x] - 1.0 - fresh[i][x]) <= 1e-12 * (1 + fabs(fresh[i][x]));
        for (int skip = 0; skip < NIN; skip++) { /* every buffer NULL once: the others are unchanged */
            double *g[NIN];
            for (int i = 0; i < NIN; i++) {
                g[i] = i == skip ? NULL : part[i];
                memset(part[i], 0, (size_t)d.n[i] * sizeof(double));
            }
            rc |= bwd64(&d, C, g, dO, dht, NULL);
            for (int i = 0; i < NIN; i++)
                if (i != skip) null_ok &= memcmp(part[i], fresh[i], (size_t)d.n[i] * sizeof(double)) == 0;
        }
        rc |= bwd64(&d, C, none, dO, dht, NULL);
        free_grads((void **)fresh), free_grads((void **)acc), free_grads((void **)part);
    }
    check(rc == 0 && acc_ok, "backward accumulates (+=) into every gradient buffer (ref and chunk)", "rc %d", rc);
    check(rc == 0 && null_ok, "backward with one NULL gradient buffer computes the others unchanged; all NULL is fine",
          "rc %d", rc);
    free_data(&d), free(dO), free(dht);
}

static void test_bad_args(void) {
    float x[64] = {0};
    const int64_t cu_bad[3] = {0, 5, 3}, cu_ok[3] = {0, 2, 4}, cu_short[3] = {0, 2, 3};
    int ok_all = 1;
    /* dims: B < 0, T < 0, H = 0, K = 0, V = 0 */
    ok_all &= dplr_fwd_ref_f32(x, NULL, x, x, x, x, x, x, NULL, 1, NULL, 0, -1, 2, 1, 2, 2) == -1;
    ok_all &= dplr_fwd_ref_f32(x, NULL, x, x, x, x, x, x, NULL, 1, NULL, 0, 1, -2, 1, 2, 2) == -1;
    ok_all &= dplr_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 0, 2, 2, 16) == -1;
    ok_all &= dplr_bwd_ref_f32(x, x, x, x, x, x, NULL, x, NULL, x, x, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 1, 0, 2) == -1;
    ok_all &= dplr_bwd_chunk_f32(x, x, x, x, x, x, NULL, x, NULL, x, x, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 1, 2,
                                 0, 16) == -1;
    /* C = 0 */
    ok_all &= dplr_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 1, 2, 2, 0) == -1;
    ok_all &= dplr_bwd_chunk_f32(x, x, x, x, x, x, NULL, x, NULL, x, x, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 1, 2,
                                 2, 0) == -1;
    /* missing required pointers: o, gk, do */
    ok_all &= dplr_fwd_ref_f32(NULL, NULL, x, x, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 1, 2, 2) == -1;
    ok_all &= dplr_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 1, 2, 2, 16) == -1;
    ok_all &= dplr_bwd_chunk_f32(x, x, x, x, x, x, NULL, NULL, NULL, x, x, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 1,
                                 2, 2, 16) == -1;
    ok_all &= dplr_step_f32(x, x, x, x, x, x, x, NULL, 1, 1, 1, 2, 2) == -1;
    ok_all &= dplr_step_f32(x, x, x, x, x, x, x, x, 1, 1, 1, 0, 2) == -1;
    check(ok_all, "bad dimensions, C = 0 and missing pointers return -1", "%s", ok_all ? "all -1" : "one accepted");
    ok_all = 1;
    /* cu_seqlens: decreasing, B != 1, cu[N] != T, N = 0 */
    ok_all &= dplr_fwd_ref_f32(x, NULL, x, x, x, x, x, x, NULL, 1, cu_bad, 2, 1, 3, 1, 2, 2) == -1;
    ok_all &= dplr_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, x, x, NULL, 1, cu_ok, 2, 2, 2, 1, 2, 2, 16) == -1;
    ok_all &= dplr_bwd_ref_f32(x, x, x, x, x, x, NULL, x, NULL, x, x, x, x, x, x, NULL, 1, cu_short, 2, 1, 4, 1, 2,
                               2) == -1;
    ok_all &= dplr_bwd_chunk_f32(x, x, x, x, x, x, NULL, x, NULL, x, x, x, x, x, x, NULL, NULL, 1, cu_ok, 0, 1, 4, 1,
                                 2, 2, 16) == -1;
    ok_all &= dplr_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, x, x, NULL, 1, cu_ok, 2, 1, 4, 1, 2, 2, 16) == 0;
    check(ok_all, "bad cu_seqlens (decreasing, B != 1, cu[N] != T, N = 0) return -1; a good one returns 0", "%s",
          ok_all ? "as expected" : "mismatch");
}

/* ---- the mixer descriptor (kernels/mixer.h): its adapters hand every argument to the right place ---- */
static int same64(const double *x, const double *y, int64_t n) { return !memcmp(x, y, (size_t)n * sizeof(double)); }

static void test_descriptor(void) {
    const hb_mixer_desc_t *ds = &hb_mixer_dplr;
    static const char *names[] = {"q", "k", "v", "a", "b", "gk"};
    int names_ok = !strcmp(ds->name, "dplr") && !strcmp(ds->dims, "B T H K V") && ds->in[6].name == NULL &&
                   !strcmp(ds->scalar[0].name, "scale") && !strcmp(ds->scalar[0].rsqrt_of, "K") && ds->chunk == 64;
    for (int i = 0; i < 6; i++) names_ok &= ds->in[i].name && !strcmp(ds->in[i].name, names[i]);
    check(names_ok, "descriptor: dplr, dims B T H K V, inputs q k v a b gk, scale = K^-1/2 by default, chunk 64", "%s",
          names_ok ? "as expected" : "mismatch");

    const int64_t B = 2, T = 21, H = 2, K = 5, V = 4, C = 8;
    data_t d;
    make_data(&d, B, T, H, K, V, NULL, 0, G_RWKV, L_GENERAL, 0); /* unrelated a, b: a swap would show */
    hb_mixer_args_t m = {.scalar = {d.scale}, .dim = {B, T, H, K, V}, .chunk = C};
    for (int i = 0; i < 6; i++) m.in[i] = d.x[i];
    const int64_t no = d.n[IV], ns = B * H * K * V, nsaved = ds->saved_numel(&m);
    check(nsaved == dplr_chunk_count(NULL, 0, B, T, C) * H * K * V, "descriptor: saved_numel = the chunk states",
          "%lld elements", (long long)nsaved);
    double *o1 = dzeros(no), *o2 = dzeros(no), *h1 = dzeros(ns), *h2 = dzeros(ns), *s1 = dzeros(nsaved),
           *s2 = dzeros(nsaved), *dO = drand_vec(no, 1);
    m.o = o1, m.ht = h1, m.saved = s1;
    int rc = ds->f64.fwd_chunk(&m);
    rc |= fwd64(&d, C, o2, h2, s2);
    int fwd_ok = same64(o1, o2, no) && same64(h1, h2, ns) && same64(s1, s2, nsaved);
    m.o = o1, m.ht = h1, m.saved = NULL;
    rc |= ds->f64.fwd_recurrent(&m);
    rc |= fwd64(&d, 0, o2, h2, NULL);
    fwd_ok &= same64(o1, o2, no) && same64(h1, h2, ns);
    float *of1 = fzeros(no), *of2 = fzeros(no);
    hb_mixer_args_t mf = m;
    for (int i = 0; i < 6; i++) mf.in[i] = d.f[i];
    mf.o = of1, mf.ht = NULL, mf.saved = NULL;
    rc |= ds->f32.fwd_chunk(&mf);
    rc |= fwd32(&d, C, of2, NULL, NULL);
    fwd_ok &= !memcmp(of1, of2, (size_t)no * sizeof(float));
    check(rc == 0 && fwd_ok, "descriptor: chunked and recurrent forward entry points (f64, f32) == the direct calls",
          "rc %d", rc);

    double *g1[NIN], *g2[NIN];
    int bwd_ok = 1;
    for (int mode = 0; mode < 2; mode++) {
        alloc_grads64(&d, g1), alloc_grads64(&d, g2);
        hb_mixer_args_t mb = m;
        mb.dout = dO, mb.saved = mode ? NULL : s1;
        for (int i = 0; i < 6; i++) mb.din[i] = g1[i];
        rc |= mode ? ds->f64.bwd_recurrent(&mb) : ds->f64.bwd_chunk(&mb);
        rc |= bwd64(&d, mode ? 0 : C, g2, dO, NULL, mode ? NULL : s2);
        for (int i = 0; i < 6; i++) bwd_ok &= same64(g1[i], g2[i], d.n[i]);
        free_grads((void **)g1), free_grads((void **)g2);
    }
    check(rc == 0 && bwd_ok, "descriptor: chunked and recurrent backward entry points == the direct calls (all six gradients)",
          "rc %d", rc);

    /* one decode step of the first token from a random state */
    const int64_t nk1 = B * H * K, nv1 = B * H * V;
    double *in1[6], *st1 = drand_vec(ns, 0.5), *st2 = dzeros(ns), *so1 = dzeros(nv1), *so2 = dzeros(nv1);
    memcpy(st2, st1, (size_t)ns * sizeof(double));
    for (int i = 0; i < 6; i++) {
        const int64_t w = i == IV ? V : K, n1 = i == IV ? nv1 : nk1;
        in1[i] = dzeros(n1);
        for (int64_t r = 0; r < B * H; r++) /* token 0 of batch r / H, head r % H */
            memcpy(in1[i] + r * w, d.x[i] + ((r / H) * T * H + r % H) * w, (size_t)w * sizeof(double));
    }
    hb_mixer_args_t mst = {.o = so1, .state = st1, .scalar = {d.scale}, .dim = {B, 1, H, K, V}};
    for (int i = 0; i < 6; i++) mst.in[i] = in1[i];
    rc = ds->f64.step(&mst);
    rc |= dplr_step_f64(so2, st2, in1[IQ], in1[IK], in1[IV], in1[IA], in1[IB], in1[IG], d.scale, B, H, K, V);
    check(rc == 0 && same64(so1, so2, nv1) && same64(st1, st2, ns), "descriptor: the step entry point == dplr_step",
          "rc %d", rc);
    for (int i = 0; i < 6; i++) free(in1[i]);
    free(st1), free(st2), free(so1), free(so2);
    free(o1), free(o2), free(h1), free(h2), free(s1), free(s2), free(dO), free(of1), free(of2);
    free_data(&d);
}

int main(void) {
    hb_threads_set(2);
    /* forward: shapes × chunk lengths × gate and low-rank settings */
    static const int64_t shapes[][6] = {
        /* B, T, H, K, V, C */
        {1, 1, 1, 8, 8, 64},  {2, 37, 2, 16, 12, 16}, {1, 100, 2, 32, 32, 64}, {2, 130, 1, 64, 64, 64},
        {1, 200, 2, 64, 48, 64}, {1, 130, 2, 24, 16, 32}, {2, 37, 1, 8, 8, 1}, {1, 40, 2, 8, 6, 3},
        {2, 30, 1, 8, 8, 100} /* C > T */, {1, 100, 1, 128, 128, 64},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t *s = shapes[i];
        for (int gm = 0; gm < 3; gm++)
            test_forward(s[0], s[1], s[2], s[3], s[4], s[5], gm, (int)((i + gm) % 2), (int)((i + gm) % 2));
    }
    test_forward(2, 40, 2, 16, 16, 16, G_RWKV, L_GENERAL, 1);
    test_forward(1, 70, 1, 16, 8, 32, G_EXTREME, L_GENERAL, 0);
    test_forward(2, 100, 2, 16, 16, 64, G_INF, L_RWKV, 1);

    /* f64 finite differences: T not a multiple of C, extreme decays, β near 0 and 2, general a, b */
    test_gradients(2, 23, 2, 5, 4, 8, G_EXTREME, L_EDGE, 1, NULL, 0);
    test_gradients(1, 23, 2, 5, 4, 8, G_RWKV, L_RWKV, 1, NULL, 0);
    test_gradients(2, 19, 1, 4, 3, 16, G_STRONG, L_GENERAL, 0, NULL, 0);
    test_gradients(1, 40, 1, 4, 5, 16, G_EXTREME, L_GENERAL, 1, NULL, 0);
    test_gradients(1, 9, 2, 3, 3, 64, G_RWKV, L_EDGE, 1, NULL, 0); /* one chunk, C > T */
    {
        static const int64_t cu[5] = {0, 3, 3, 10, 11}; /* documents of 3, 0, 7 and 1 tokens */
        test_gradients(1, 11, 2, 4, 3, 4, G_EXTREME, L_EDGE, 1, cu, 4);
    }

    /* chunked vs reference backward */
    test_backward(2, 100, 2, 16, 16, 64, G_EXTREME, L_EDGE);
    test_backward(1, 130, 2, 64, 64, 64, G_RWKV, L_RWKV);
    test_backward(2, 37, 2, 32, 24, 16, G_STRONG, L_RWKV);
    test_backward(1, 200, 1, 64, 32, 64, G_EXTREME, L_RWKV);
    test_backward(1, 40, 2, 16, 16, 3, G_RWKV, L_GENERAL);
    test_backward(1, 100, 1, 128, 128, 64, G_EXTREME, L_EDGE);
    test_backward(1, 90, 2, 16, 16, 32, G_INF, L_RWKV);

    test_decode(2, 45, 2, 6, 5, 16, 20);
    test_decode(1, 150, 2, 32, 32, 64, 67);

    {
        static const int64_t lens[5] = {1, 63, 64, 65, 200};
        test_packed(lens, 5, 2, 16, 16, 64);
        static const int64_t lens2[4] = {0, 17, 0, 40};
        test_packed(lens2, 4, 1, 8, 12, 16);
    }

    test_threads(2, 150, 3, 32, 24, 32);
    test_threads(1, 200, 2, 64, 64, 64);
    test_accumulate();
    test_bad_args();
    test_descriptor();
    return tap_done();
}
