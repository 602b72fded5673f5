/* test_kda.c — TAP tests of kernels/kda.c (Kimi Delta Attention).
 *
 * Checks: chunked forward vs the per-step reference (f64 ≤ 1e-10; f32 chunk and f32 reference vs the
 * f64 reference ≤ 1e-4; outputs and final states; T = 1, 37, 100, 130 with C = 64 and 16; HV = H and
 * 2H; decays near 0, moderate, ≈ −20, mixed and fla's gate at its init; β in (0,1), (0,2), near 0 and
 * near 2; with and without h0; K = V = 64 and 128); odd chunk lengths C = 1, 3 and > T; float64
 * finite-difference gradients of both backward paths w.r.t. q, k, v, g, beta and h0 (loss Σ o·w +
 * Σ ht·wh, so dht is exercised too) with T not a multiple of C; chunked vs reference backward (f64
 * ≤ 1e-9, f32 ≤ 1e-3); saved chunk states vs recomputation; NULL gradients and accumulation (+=);
 * decode steps vs the reference; prefill (ht) + decode, and a chunked continuation from ht; packed
 * documents (cu_seqlens, lengths 1, 63, 64, 65, 200 and an empty one) vs each document run alone,
 * forward, final states and backward, plus a packed gradcheck; 1 vs 2 threads bit-identical; bad
 * dimensions and bad cu_seqlens return −1; T = 0; the mixer descriptor's entry points (both dtypes)
 * == the kernel functions, saved_numel, saved hs == recomputed.
 */
#define KTEST_SEED 0x5DEECE66DA3B9F17ull
#include "../kernels/kda.h"
#include "../kernels/parallel.h"
#include "alloc.h"
#include "ktest.h"
#include <string.h>

/* ---- data ---- */

enum { G_NEAR0, G_MOD, G_M20, G_MIX, G_GATE, G_NMODES };
static const char *gname[] = {"g~0", "g moderate", "g~-20", "g mixed", "g fla init"};
enum { B_UNI1, B_UNI2, B_NEAR0, B_NEAR2, B_NMODES };
static const char *bname[] = {"beta<1", "beta<2", "beta~0", "beta~2"};

typedef struct {
    int64_t B, T, H, HV, K, V;
    int gm, bm, use_h0;
    const int64_t *cu; /* packed documents (B = 1) or NULL */
    int64_t N;
} cfg_t;

/* the six gradients, in this order everywhere */
enum { DQ, DK, DV, DG, DB, DH0, NGRAD };
static const char *grad_name[] = {"dq", "dk", "dv", "dg", "dbeta", "dh0"};

typedef struct {
    cfg_t c;
    int64_t ns, n[NGRAD]; /* sequences; element counts of q, k, v, g, beta, states */
    double *x[NGRAD];     /* q, k, v, g, beta, h0 (h0 NULL when unused) */
    double *w, *wh;       /* loss weights: L = Σ o·w + Σ ht·wh */
    float *xf[NGRAD], *wf, *whf;
} data_t;

static double u01(void) { return 0.5 * (urand() + 1); }

static double gsample(int m) {
    switch (m) {
    case G_NEAR0: return -1e-3 * u01();
    case G_MOD: return -0.02 - 0.5 * u01();
    case G_M20: return -20 + urand();
    case G_MIX: return u01() < 0.2 ? -20 + urand() : -0.05 * u01();
    default: { /* −exp(A_log) softplus(x + dt_bias) with fla's init: A in [1,16], dt in [1e-3, 0.1] */
        const double A = 1 + 15 * u01(), dt = exp(log(1e-3) + u01() * (log(0.1) - log(1e-3)));
        const double x = dt + log(-expm1(-dt)) + urand();
        return -A * (x > 30 ? x : log1p(exp(x)));
    }
    }
}

static double bsample(int m) {
    switch (m) {
    case B_UNI1: return 0.02 + 0.96 * u01();
    case B_UNI2: return 2 * (0.02 + 0.96 * u01());
    case B_NEAR0: return 0.02 * u01();
    default: return 2 - 0.02 * u01();
    }
}

static data_t make_data(cfg_t c) {
    data_t d;
    memset(&d, 0, sizeof d);
    d.c = c;
    d.ns = c.cu ? c.N : c.B;
    const int64_t BT = c.B * c.T;
    d.n[DQ] = d.n[DK] = BT * c.H * c.K, d.n[DV] = BT * c.HV * c.V, d.n[DG] = BT * c.HV * c.K;
    d.n[DB] = BT * c.HV, d.n[DH0] = d.ns * c.HV * c.K * c.V;
    for (int i = 0; i < DH0; i++) d.x[i] = dzeros(d.n[i]);
    for (int64_t r = 0; r < BT * c.H; r++) /* l2-normalised q and k rows */
        for (int m = 0; m < 2; m++) {
            double *x = d.x[m] + r * c.K, nn = 0;
            for (int64_t i = 0; i < c.K; i++) x[i] = urand(), nn += x[i] * x[i];
            for (int64_t i = 0; i < c.K; i++) x[i] /= sqrt(nn);
        }
    for (int64_t i = 0; i < d.n[DV]; i++) d.x[DV][i] = urand();
    for (int64_t i = 0; i < d.n[DG]; i++) d.x[DG][i] = gsample(c.gm);
    for (int64_t i = 0; i < d.n[DB]; i++) d.x[DB][i] = bsample(c.bm);
    if (c.use_h0) d.x[DH0] = drand_vec(d.n[DH0], 0.5);
    d.w = drand_vec(d.n[DV], 1), d.wh = drand_vec(d.n[DH0], 1);
    for (int i = 0; i < NGRAD; i++) d.xf[i] = to_f(d.x[i], d.n[i]);
    d.wf = to_f(d.w, d.n[DV]), d.whf = to_f(d.wh, d.n[DH0]);
    return d;
}

static void free_data(data_t *d) {
    for (int i = 0; i < NGRAD; i++) free(d->x[i]), free(d->xf[i]);
    free(d->w), free(d->wh), free(d->wf), free(d->whf);
}

static double scale_of(const cfg_t *c) { return 1.0 / sqrt((double)c->K); }

/* ---- kernel calls on a data_t ---- */

#define DIMS(c) (c).cu, (c).N, (c).B, (c).T, (c).H, (c).HV, (c).K, (c).V

/* C == 0: the reference, else the chunked form with chunk C */
static int fwd64(const data_t *d, int64_t C, double *o, double *ht, double *hs) {
    const cfg_t c = d->c;
    double *const *x = d->x;
    if (C == 0) return kda_fwd_ref_f64(o, ht, x[DQ], x[DK], x[DV], x[DG], x[DB], x[DH0], scale_of(&c), DIMS(c));
    return kda_fwd_chunk_f64(o, ht, hs, x[DQ], x[DK], x[DV], x[DG], x[DB], x[DH0], scale_of(&c), DIMS(c), C);
}
static int fwd32(const data_t *d, int64_t C, float *o, float *ht, float *hs) {
    const cfg_t c = d->c;
    float *const *x = d->xf;
    const float sc = (float)scale_of(&c);
    if (C == 0) return kda_fwd_ref_f32(o, ht, x[DQ], x[DK], x[DV], x[DG], x[DB], x[DH0], sc, DIMS(c));
    return kda_fwd_chunk_f32(o, ht, hs, x[DQ], x[DK], x[DV], x[DG], x[DB], x[DH0], sc, DIMS(c), C);
}
/* gradients of L = Σ o·w + Σ ht·wh accumulated into gr[] (entries may be NULL) */
static int bwd64(const data_t *d, int64_t C, double **gr, const double *hs) {
    const cfg_t c = d->c;
    double *const *x = d->x;
    if (C == 0)
        return kda_bwd_ref_f64(gr[DQ], gr[DK], gr[DV], gr[DG], gr[DB], gr[DH0], d->w, d->wh, x[DQ], x[DK],
                               x[DV], x[DG], x[DB], x[DH0], scale_of(&c), DIMS(c));
    return kda_bwd_chunk_f64(gr[DQ], gr[DK], gr[DV], gr[DG], gr[DB], gr[DH0], d->w, d->wh, x[DQ], x[DK],
                             x[DV], x[DG], x[DB], x[DH0], hs, scale_of(&c), DIMS(c), C);
}
static int bwd32(const data_t *d, int64_t C, float **gr, const float *hs) {
    const cfg_t c = d->c;
    float *const *x = d->xf;
    const float sc = (float)scale_of(&c);
    if (C == 0)
        return kda_bwd_ref_f32(gr[DQ], gr[DK], gr[DV], gr[DG], gr[DB], gr[DH0], d->wf, d->whf, x[DQ], x[DK],
                               x[DV], x[DG], x[DB], x[DH0], sc, DIMS(c));
    return kda_bwd_chunk_f32(gr[DQ], gr[DK], gr[DV], gr[DG], gr[DB], gr[DH0], d->wf, d->whf, x[DQ], x[DK],
                             x[DV], x[DG], x[DB], x[DH0], hs, sc, DIMS(c), C);
}

static void alloc_grads64(const data_t *d, double **gr) {
    for (int i = 0; i < NGRAD; i++) gr[i] = dzeros(d->n[i]);
}
static void alloc_grads32(const data_t *d, float **gr) {
    for (int i = 0; i < NGRAD; i++) gr[i] = fzeros(d->n[i]);
}
static void free_grads(void **gr) {
    for (int i = 0; i < NGRAD; i++) free(gr[i]);
}

/* dst (B,n,X) = src (B,T,X) rows t0..t0+n−1 */
static void slice(double *dst, const double *src, int64_t B, int64_t T, int64_t t0, int64_t n, int64_t X) {
    for (int64_t b = 0; b < B; b++) memcpy(dst + b * n * X, src + (b * T + t0) * X, (size_t)(n * X) * sizeof(double));
}
static void unslice(double *dst, const double *src, int64_t B, int64_t T, int64_t t0, int64_t n, int64_t X) {
    for (int64_t b = 0; b < B; b++) memcpy(dst + (b * T + t0) * X, src + b * n * X, (size_t)(n * X) * sizeof(double));
}

/* the per-token widths of q, k, v, g, beta */
static void widths(const cfg_t *c, int64_t *X) {
    X[DQ] = X[DK] = c->H * c->K, X[DV] = c->HV * c->V, X[DG] = c->HV * c->K, X[DB] = c->HV;
}

/* ---- forward: chunked vs reference ---- */

static void test_forward(void) {
    static const int64_t Ts[] = {1, 37, 100, 130}, Cs[] = {64, 16};
    for (int ti = 0; ti < 4; ti++)
        for (int ci = 0; ci < 2; ci++) {
            double e64 = 0, e32 = 0, er32 = 0;
            char w64[96] = "", w32[96] = "";
            int rc = 0, combo = 0;
            for (int gm = 0; gm < G_NMODES; gm++)
                for (int bm = 0; bm < B_NMODES; bm++)
                    for (int hv = 1; hv <= 2; hv++, combo++) {
                        cfg_t c = {2, Ts[ti], 2, 2 * hv, 16, 12, gm, bm, combo % 2, NULL, 0};
                        data_t d = make_data(c);
                        const int64_t no = d.n[DV], nh = d.n[DH0];
                        double *o1 = dzeros(no), *o2 = dzeros(no), *h1 = dzeros(nh), *h2 = dzeros(nh);
                        float *f1 = fzeros(no), *f2 = fzeros(no), *fh1 = fzeros(nh), *fh2 = fzeros(nh);
                        rc |= fwd64(&d, 0, o1, h1, NULL) | fwd64(&d, Cs[ci], o2, h2, NULL);
                        rc |= fwd32(&d, 0, f1, fh1, NULL) | fwd32(&d, Cs[ci], f2, fh2, NULL);
                        const double a = fmax(rel_err_dd(o2, o1, no), rel_err_dd(h2, h1, nh));
                        const double b = fmax(rel_err_fd(f2, o1, no), rel_err_fd(fh2, h1, nh));
                        const double br = fmax(rel_err_fd(f1, o1, no), rel_err_fd(fh1, h1, nh));
                        if (a >= e64) e64 = a, snprintf(w64, sizeof w64, "%s %s HV=%d", gname[gm], bname[bm], (int)c.HV);
                        if (b >= e32) e32 = b, snprintf(w32, sizeof w32, "%s %s HV=%d", gname[gm], bname[bm], (int)c.HV);
                        er32 = fmax(er32, br);
                        free(o1), free(o2), free(h1), free(h2), free(f1), free(f2), free(fh1), free(fh2);
                        free_data(&d);
                    }
            char name[128];
            snprintf(name, sizeof name, "fwd_chunk f64 == fwd_ref f64, T=%d C=%d (o and ht)", (int)Ts[ti], (int)Cs[ci]);
            check(rc == 0 && e64 <= 1e-10, name, "rc %d max rel err %.3g (worst %s)", rc, e64, w64);
            snprintf(name, sizeof name, "fwd_chunk f32 and fwd_ref f32 == fwd_ref f64, T=%d C=%d", (int)Ts[ti],
                     (int)Cs[ci]);
            check(rc == 0 && e32 <= 1e-4 && er32 <= 1e-4, name, "chunk %.3g (worst %s), ref %.3g", e32, w32, er32);
        }

    /* realistic head sizes in f32 */
    static const int64_t KVs[] = {64, 128};
    for (int ki = 0; ki < 2; ki++)
        for (int gm = G_MOD; gm < G_NMODES; gm += 2) {
            cfg_t c = {1, 200, 1, 2, KVs[ki], KVs[ki], gm, B_UNI2, 1, NULL, 0};
            data_t d = make_data(c);
            double *o = dzeros(d.n[DV]), *h = dzeros(d.n[DH0]);
            float *f = fzeros(d.n[DV]), *fh = fzeros(d.n[DH0]);
            int rc = fwd64(&d, 0, o, h, NULL) | fwd32(&d, 64, f, fh, NULL);
            const double e = fmax(rel_err_fd(f, o, d.n[DV]), rel_err_fd(fh, h, d.n[DH0]));
            char name[128];
            snprintf(name, sizeof name, "fwd_chunk f32 == fwd_ref f64, K=V=%d T=200 C=64 HV=2 beta<2 %s",
                     (int)KVs[ki], gname[gm]);
            check(rc == 0 && e <= 1e-4, name, "rc %d rel err %.3g", rc, e);
            free(o), free(h), free(f), free(fh);
            free_data(&d);
        }
}

/* odd chunk lengths (1, 3, 200 > T), forward and backward against the reference, f64 */
static void test_odd_chunks(void) {
    cfg_t c = {2, 29, 1, 4, 6, 5, G_MIX, B_UNI2, 1, NULL, 0};
    data_t d = make_data(c);
    double *o1 = dzeros(d.n[DV]), *o2 = dzeros(d.n[DV]), *h1 = dzeros(d.n[DH0]), *h2 = dzeros(d.n[DH0]);
    double *a[NGRAD], *b[NGRAD];
    alloc_grads64(&d, a);
    int rc = fwd64(&d, 0, o1, h1, NULL) | bwd64(&d, 0, a, NULL);
    static const int64_t Cs[] = {1, 3, 200};
    for (int ci = 0; ci < 3; ci++) {
        alloc_grads64(&d, b);
        rc |= fwd64(&d, Cs[ci], o2, h2, NULL) | bwd64(&d, Cs[ci], b, NULL);
        double e = fmax(rel_err_dd(o2, o1, d.n[DV]), rel_err_dd(h2, h1, d.n[DH0]));
        for (int i = 0; i < NGRAD; i++) e = fmax(e, rel_err_dd(b[i], a[i], d.n[i]));
        free_grads((void **)b);
        char name[128];
        snprintf(name, sizeof name, "C=%d: fwd_chunk and bwd_chunk == reference (f64, H=1 HV=4)", (int)Cs[ci]);
        check(rc == 0 && e <= 1e-10, name, "rc %d max rel err %.3g", rc, e);
    }
    free_grads((void **)a);
    free(o1), free(o2), free(h1), free(h2);
    free_data(&d);
}

/* ---- finite-difference gradient checks (float64) ---- */

static double loss64(const data_t *d, double *o, double *ht) {
    fwd64(d, 0, o, ht, NULL);
    double L = 0;
    for (int64_t i = 0; i < d->n[DV]; i++) L += o[i] * d->w[i];
    for (int64_t i = 0; i < d->n[DH0]; i++) L += ht[i] * d->wh[i];
    return L;
}

/* max |numeric − analytic| / max(max |numeric|, 1e-3), per input; fourth-order central differences */
static void fd_errors(data_t *d, double **an, double *err) {
    const double eps = 1e-4;
    double *o = dzeros(d->n[DV]), *ht = dzeros(d->n[DH0]);
    for (int i = 0; i < NGRAD; i++) {
        double md = 0, mn = 0;
        double *p = d->x[i];
        for (int64_t j = 0; p && j < d->n[i]; j++) {
            const double p0 = p[j];
            double f[4];
            static const double off[4] = {-2, -1, 1, 2};
            for (int s = 0; s < 4; s++) p[j] = p0 + off[s] * eps, f[s] = loss64(d, o, ht);
            p[j] = p0;
            const double num = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * eps);
            md = fmax(md, fabs(num - an[i][j]));
            mn = fmax(mn, fabs(num));
        }
        err[i] = md / fmax(mn, 1e-3);
    }
    free(o), free(ht);
}

static void test_gradcheck(cfg_t c, int64_t C) {
    data_t d = make_data(c);
    for (int path = 0; path < 2; path++) {
        double *an[NGRAD], err[NGRAD];
        alloc_grads64(&d, an);
        const int rc = bwd64(&d, path ? C : 0, an, NULL);
        fd_errors(&d, an, err);
        double emax = 0;
        char buf[200] = "";
        for (int i = 0; i < NGRAD; i++) {
            if (!d.x[i]) continue;
            emax = fmax(emax, err[i]);
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s %.1e ", grad_name[i], err[i]);
        }
        char name[200];
        snprintf(name, sizeof name, "gradcheck f64 %s (%s, %s, B=%d T=%d H=%d HV=%d K=%d V=%d C=%d%s%s)",
                 path ? "bwd_chunk" : "bwd_ref", gname[c.gm], bname[c.bm], (int)c.B, (int)c.T, (int)c.H,
                 (int)c.HV, (int)c.K, (int)c.V, (int)C, c.use_h0 ? " h0" : "", c.cu ? " packed" : "");
        check(rc == 0 && emax <= 1e-7, name, "%s", buf);
        free_grads((void **)an);
    }
    free_data(&d);
}

/* ---- backward: chunked vs reference ---- */

static void test_bwd_vs_ref(void) {
    /* f64, all decay and beta modes, GVA, T = 130 with C = 64 and 16 */
    for (int gm = 0; gm < G_NMODES; gm++) {
        double e = 0;
        int rc = 0;
        for (int bm = 0; bm < B_NMODES; bm++) {
            cfg_t c = {2, 130, 2, 4, 8, 7, gm, bm, bm % 2, NULL, 0};
            data_t d = make_data(c);
            double *a[NGRAD], *b[NGRAD], *b2[NGRAD];
            alloc_grads64(&d, a), alloc_grads64(&d, b), alloc_grads64(&d, b2);
            rc |= bwd64(&d, 0, a, NULL) | bwd64(&d, 64, b, NULL) | bwd64(&d, 16, b2, NULL);
            for (int i = 0; i < NGRAD; i++)
                e = fmax(e, fmax(rel_err_dd(b[i], a[i], d.n[i]), rel_err_dd(b2[i], a[i], d.n[i])));
            free_grads((void **)a), free_grads((void **)b), free_grads((void **)b2);
            free_data(&d);
        }
        char name[160];
        snprintf(name, sizeof name, "bwd_chunk f64 == bwd_ref f64 (%s, all beta modes, HV=2H, T=130, C=64 and 16)",
                 gname[gm]);
        check(rc == 0 && e <= 1e-9, name, "rc %d max rel err over the six gradients %.3g", rc, e);
    }
    /* f32 against the f64 reference */
    static const int64_t KVs[][2] = {{8, 7}, {64, 64}};
    for (int s = 0; s < 2; s++)
        for (int gm = 0; gm < G_NMODES; gm++) {
            cfg_t c = {1, 150, 1, 2, KVs[s][0], KVs[s][1], gm, gm % 2 ? B_UNI2 : B_NEAR2, 1, NULL, 0};
            data_t d = make_data(c);
            double *a[NGRAD];
            float *b[NGRAD], *r[NGRAD], *hs = fzeros(kda_chunk_count(NULL, 0, c.B, c.T, 64) * c.HV * c.K * c.V);
            float *o = fzeros(d.n[DV]);
            alloc_grads64(&d, a), alloc_grads32(&d, b), alloc_grads32(&d, r);
            int rc = bwd64(&d, 0, a, NULL) | fwd32(&d, 64, o, NULL, hs) | bwd32(&d, 64, b, hs) | bwd32(&d, 0, r, NULL);
            double e = 0, er = 0;
            char buf[160] = "";
            for (int i = 0; i < NGRAD; i++) {
                const double ei = rel_err_fd(b[i], a[i], d.n[i]);
                e = fmax(e, ei), er = fmax(er, rel_err_fd(r[i], a[i], d.n[i]));
                snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s %.1e ", grad_name[i], ei);
            }
            char name[160];
            snprintf(name, sizeof name, "bwd_chunk f32 (saved hs) and bwd_ref f32 == bwd_ref f64 (%s, %s, K=%d V=%d)",
                     gname[gm], bname[c.bm], (int)c.K, (int)c.V);
            check(rc == 0 && e <= 1e-3 && er <= 1e-3, name, "chunk: %s; ref: %.1e", buf, er);
            free_grads((void **)a), free_grads((void **)b), free_grads((void **)r), free(hs), free(o);
            free_data(&d);
        }
}

/* saved chunk states, NULL gradients, accumulation (f64, g mixed, GVA) */
static void test_hs_null_accum(void) {
    cfg_t c = {2, 45, 2, 4, 8, 6, G_MIX, B_UNI2, 1, NULL, 0};
    data_t d = make_data(c);
    const int64_t C = 16, NCT = kda_chunk_count(NULL, 0, c.B, c.T, C);
    double *o = dzeros(d.n[DV]), *hs = dzeros(NCT * c.HV * c.K * c.V), *a[NGRAD], *b[NGRAD];
    alloc_grads64(&d, a), alloc_grads64(&d, b);
    int rc = fwd64(&d, C, o, NULL, hs) | bwd64(&d, C, a, NULL) | bwd64(&d, C, b, hs);
    int same = 1;
    for (int i = 0; i < NGRAD; i++) same &= memcmp(a[i], b[i], (size_t)d.n[i] * sizeof(double)) == 0;
    check(rc == 0 && same, "bwd_chunk with saved hs == bwd_chunk recomputing them (bitwise)", "rc %d", rc);

    /* hs[b, c] is the state entering chunk c of row b: the reference's ht after c·C tokens */
    int64_t X[5];
    widths(&c, X);
    double err = 0;
    for (int64_t ci = 1; ci < NCT / c.B; ci++) {
        cfg_t cp = c;
        cp.T = ci * C;
        data_t p = make_data(cp);
        for (int i = 0; i < 5; i++) slice(p.x[i], d.x[i], c.B, c.T, 0, cp.T, X[i]);
        memcpy(p.x[DH0], d.x[DH0], (size_t)d.n[DH0] * sizeof(double));
        double *po = dzeros(p.n[DV]), *ht = dzeros(d.n[DH0]);
        rc |= fwd64(&p, 0, po, ht, NULL);
        for (int64_t bb = 0; bb < c.B; bb++)
            for (int64_t j = 0; j < c.HV; j++) {
                const double *h1 = hs + ((bb * (NCT / c.B) + ci) * c.HV + j) * c.K * c.V;
                err = fmax(err, rel_err_dd(h1, ht + (bb * c.HV + j) * c.K * c.V, c.K * c.V));
            }
        free(po), free(ht);
        free_data(&p);
    }
    check(rc == 0 && err <= 1e-10, "hs holds the state entering each chunk, (B,NC,HV,K,V) layout", "rel err %.3g",
          err);

    /* one gradient at a time, into buffers pre-filled with 1: result must be 1 + full gradient */
    int okall = 1;
    for (int path = 0; path < 2; path++)
        for (int i = 0; i < NGRAD; i++) {
            double *p[NGRAD] = {NULL, NULL, NULL, NULL, NULL, NULL}, *buf = dzeros(d.n[i]);
            for (int64_t j = 0; j < d.n[i]; j++) buf[j] = 1;
            p[i] = buf;
            rc |= bwd64(&d, path ? C : 0, p, path ? hs : NULL);
            for (int64_t j = 0; j < d.n[i]; j++) okall &= fabs(buf[j] - 1 - a[i][j]) <= 1e-10 * (1 + fabs(a[i][j]));
            free(buf);
        }
    double *none[NGRAD] = {NULL, NULL, NULL, NULL, NULL, NULL};
    rc |= bwd64(&d, C, none, NULL) | bwd64(&d, 0, none, NULL);
    check(rc == 0 && okall, "each gradient alone accumulates (+=) the same values; all NULL is fine (ref and chunk)",
          "rc %d", rc);
    free_grads((void **)a), free_grads((void **)b), free(o), free(hs);
    free_data(&d);
}

/* ---- decode ---- */

static void test_decode(void) {
    for (int gm = 0; gm < G_NMODES; gm += 2) {
        cfg_t c = {2, 60, 2, 4, 8, 6, gm, B_UNI2, 1, NULL, 0};
        data_t d = make_data(c);
        const double sc = scale_of(&c);
        const int64_t B = c.B, T = c.T, H = c.H, HV = c.HV, K = c.K, V = c.V, ns = d.n[DH0];
        int64_t X[5];
        widths(&c, X);
        double *oref = dzeros(d.n[DV]), *href = dzeros(ns);
        float *fref = fzeros(d.n[DV]), *fhref = fzeros(ns);
        int rc = fwd64(&d, 0, oref, href, NULL) | fwd32(&d, 0, fref, fhref, NULL);

        /* step by step from h0 (f64 and f32) */
        double *S = dzeros(ns), *xt[5], *ot = dzeros(B * X[DV]), *o = dzeros(d.n[DV]);
        float *Sf = to_f(d.x[DH0], ns), *xtf[5], *otf = fzeros(B * X[DV]), *of = fzeros(d.n[DV]);
        memcpy(S, d.x[DH0], (size_t)ns * sizeof(double));
        for (int i = 0; i < 5; i++) xt[i] = dzeros(B * X[i]), xtf[i] = fzeros(B * X[i]);
        for (int64_t t = 0; t < T; t++) {
            for (int i = 0; i < 5; i++) {
                slice(xt[i], d.x[i], B, T, t, 1, X[i]);
                for (int64_t j = 0; j < B * X[i]; j++) xtf[i][j] = (float)xt[i][j];
            }
            rc |= kda_step_f64(ot, S, xt[DQ], xt[DK], xt[DV], xt[DG], xt[DB], sc, B, H, HV, K, V);
            rc |= kda_step_f32(otf, Sf, xtf[DQ], xtf[DK], xtf[DV], xtf[DG], xtf[DB], (float)sc, B, H, HV, K, V);
            unslice(o, ot, B, T, t, 1, X[DV]);
            for (int64_t b = 0; b < B; b++)
                memcpy(of + (b * T + t) * X[DV], otf + b * X[DV], (size_t)X[DV] * sizeof(float));
        }
        double e = fmax(rel_err_dd(o, oref, d.n[DV]), rel_err_dd(S, href, ns));
        double ef = 0;
        for (int64_t i = 0; i < d.n[DV]; i++) ef = fmax(ef, fabs((double)of[i] - fref[i]));
        for (int64_t i = 0; i < ns; i++) ef = fmax(ef, fabs((double)Sf[i] - fhref[i]));
        char name[128];
        snprintf(name, sizeof name, "decode steps == fwd_ref, o and final state (%s, HV=2H)", gname[gm]);
        check(rc == 0 && e <= 1e-12 && ef <= 1e-6, name, "rc %d rel err f64 %.3g, f32 max abs diff %.3g", rc, e, ef);

        /* prefill T1 tokens with the chunked forward (ht), decode the rest; then chunked continuation */
        const int64_t T1 = 37, T2 = T - T1;
        data_t a = make_data((cfg_t){B, T1, H, HV, K, V, gm, B_UNI2, 1, NULL, 0});
        data_t b = make_data((cfg_t){B, T2, H, HV, K, V, gm, B_UNI2, 1, NULL, 0});
        for (int i = 0; i < 5; i++) slice(a.x[i], d.x[i], B, T, 0, T1, X[i]), slice(b.x[i], d.x[i], B, T, T1, T2, X[i]);
        memcpy(a.x[DH0], d.x[DH0], (size_t)ns * sizeof(double));
        double *oa = dzeros(a.n[DV]), *ob = dzeros(b.n[DV]), *h1 = dzeros(ns), *h2 = dzeros(ns);
        rc = fwd64(&a, 16, oa, h1, NULL);
        memset(o, 0, (size_t)d.n[DV] * sizeof(double));
        unslice(o, oa, B, T, 0, T1, X[DV]);
        memcpy(S, h1, (size_t)ns * sizeof(double));
        for (int64_t t = T1; t < T; t++) {
            for (int i = 0; i < 5; i++) slice(xt[i], d.x[i], B, T, t, 1, X[i]);
            rc |= kda_step_f64(ot, S, xt[DQ], xt[DK], xt[DV], xt[DG], xt[DB], sc, B, H, HV, K, V);
            unslice(o, ot, B, T, t, 1, X[DV]);
        }
        e = fmax(rel_err_dd(o, oref, d.n[DV]), rel_err_dd(S, href, ns));
        snprintf(name, sizeof name, "chunked prefill (T=37, C=16, ht) + decode == fwd_ref (%s)", gname[gm]);
        check(rc == 0 && e <= 1e-10, name, "rc %d rel err %.3g", rc, e);

        memcpy(b.x[DH0], h1, (size_t)ns * sizeof(double));
        rc = fwd64(&b, 16, ob, h2, NULL);
        unslice(o, ob, B, T, T1, T2, X[DV]);
        e = fmax(rel_err_dd(o, oref, d.n[DV]), rel_err_dd(h2, href, ns));
        snprintf(name, sizeof name, "fwd_chunk(h0 = previous ht) continues the sequence (%s)", gname[gm]);
        check(rc == 0 && e <= 1e-10, name, "rc %d rel err %.3g", rc, e);

        for (int i = 0; i < 5; i++) free(xt[i]), free(xtf[i]);
        free(oref), free(href), free(fref), free(fhref), free(S), free(ot), free(o), free(Sf), free(otf), free(of);
        free(oa), free(ob), free(h1), free(h2);
        free_data(&a), free_data(&b), free_data(&d);
    }
}

/* ---- packed documents (cu_seqlens) ---- */

/* Run the packed batch and every document alone (B = 1, its own h0), forward (chunk and ref) and
 * chunked backward; return the max relative error (f32) or the max relative difference (f64). */
static void test_packed(const int64_t *lens, int64_t N, int64_t C, int gm) {
    int64_t cu[16];
    cu[0] = 0;
    for (int64_t n = 0; n < N; n++) cu[n + 1] = cu[n] + lens[n];
    cfg_t c = {1, cu[N], 2, 4, 16, 8, gm, B_UNI2, 1, cu, N};
    data_t d = make_data(c);
    int64_t X[5];
    widths(&c, X);
    const int64_t KV = c.K * c.V, NCT = kda_chunk_count(cu, N, 1, c.T, C);
    float *o = fzeros(d.n[DV]), *ht = fzeros(d.n[DH0]), *hs = fzeros(NCT * c.HV * KV), *orf = fzeros(d.n[DV]);
    float *hr = fzeros(d.n[DH0]), *gr[NGRAD];
    double *o64 = dzeros(d.n[DV]), *ht64 = dzeros(d.n[DH0]), *g64[NGRAD];
    alloc_grads32(&d, gr), alloc_grads64(&d, g64);
    int rc = fwd32(&d, C, o, ht, hs) | fwd32(&d, 0, orf, hr, NULL) | bwd32(&d, C, gr, hs);
    rc |= fwd64(&d, C, o64, ht64, NULL) | bwd64(&d, C, g64, NULL);
    double e32 = 0, e64 = 0, er = 0;
    for (int64_t n = 0; n < N; n++) {
        cfg_t cs = {1, lens[n], c.H, c.HV, c.K, c.V, gm, B_UNI2, 1, NULL, 0};
        data_t s = make_data(cs);
        for (int i = 0; i < 5; i++) slice(s.x[i], d.x[i], 1, c.T, cu[n], lens[n], X[i]);
        for (int i = 0; i < 5; i++)
            for (int64_t j = 0; j < s.n[i]; j++) s.xf[i][j] = (float)s.x[i][j];
        slice(s.w, d.w, 1, c.T, cu[n], lens[n], X[DV]);
        memcpy(s.x[DH0], d.x[DH0] + n * c.HV * KV, (size_t)(c.HV * KV) * sizeof(double));
        memcpy(s.wh, d.wh + n * c.HV * KV, (size_t)(c.HV * KV) * sizeof(double));
        for (int64_t j = 0; j < s.n[DV]; j++) s.wf[j] = (float)s.w[j];
        for (int64_t j = 0; j < s.n[DH0]; j++) s.xf[DH0][j] = (float)s.x[DH0][j], s.whf[j] = (float)s.wh[j];
        float *so = fzeros(s.n[DV]), *sh = fzeros(s.n[DH0]), *sgr[NGRAD];
        double *so64 = dzeros(s.n[DV]), *sh64 = dzeros(s.n[DH0]), *sg64[NGRAD];
        alloc_grads32(&s, sgr), alloc_grads64(&s, sg64);
        rc |= fwd32(&s, C, so, sh, NULL) | bwd32(&s, C, sgr, NULL);
        rc |= fwd64(&s, C, so64, sh64, NULL) | bwd64(&s, C, sg64, NULL);
        /* compare document n's rows of the packed results */
        float *tmp = fzeros(s.n[DV] + s.n[DG] + s.n[DQ] + 1);
        double *tmp64 = dzeros(s.n[DV] + s.n[DG] + s.n[DQ] + 1);
        for (int i = 0; i < NGRAD; i++) {
            const float *pk = i == DH0 ? gr[i] + n * c.HV * KV : NULL;
            const double *pk64 = i == DH0 ? g64[i] + n * c.HV * KV : NULL;
            if (i != DH0) {
                for (int64_t t = 0; t < lens[n]; t++)
                    for (int64_t x = 0; x < X[i]; x++)
                        tmp[t * X[i] + x] = gr[i][(cu[n] + t) * X[i] + x],
                        tmp64[t * X[i] + x] = g64[i][(cu[n] + t) * X[i] + x];
                pk = tmp, pk64 = tmp64;
            }
            double ref_max = 0;
            for (int64_t j = 0; j < s.n[i]; j++) ref_max = fmax(ref_max, fabs(sg64[i][j]));
            for (int64_t j = 0; j < s.n[i]; j++) {
                e32 = fmax(e32, fabs((double)pk[j] - sgr[i][j]) / fmax(ref_max, 1e-30));
                e64 = fmax(e64, fabs(pk64[j] - sg64[i][j]) / fmax(ref_max, 1e-30));
            }
        }
        double om = 0;
        for (int64_t j = 0; j < s.n[DV]; j++) om = fmax(om, fabs(so64[j]));
        for (int64_t t = 0; t < lens[n]; t++)
            for (int64_t x = 0; x < X[DV]; x++) {
                const int64_t pj = (cu[n] + t) * X[DV] + x, sj = t * X[DV] + x;
                e32 = fmax(e32, fabs((double)o[pj] - so[sj]) / om);
                e64 = fmax(e64, fabs(o64[pj] - so64[sj]) / om);
                er = fmax(er, fabs((double)orf[pj] - so64[sj]) / om);
            }
        double hm = 0;
        for (int64_t j = 0; j < s.n[DH0]; j++) hm = fmax(hm, fabs(sh64[j]));
        for (int64_t j = 0; j < s.n[DH0]; j++) {
            e32 = fmax(e32, fabs((double)ht[n * c.HV * KV + j] - sh[j]) / hm);
            e64 = fmax(e64, fabs(ht64[n * c.HV * KV + j] - sh64[j]) / hm);
            er = fmax(er, fabs((double)hr[n * c.HV * KV + j] - sh64[j]) / hm);
        }
        free(tmp), free(tmp64), free(so), free(sh), free(so64), free(sh64);
        free_grads((void **)sgr), free_grads((void **)sg64);
        free_data(&s);
    }
    char name[200], buf[64] = "";
    for (int64_t n = 0; n < N; n++) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%d", n ? "," : "", (int)lens[n]);
    snprintf(name, sizeof name, "packed {%s} C=%d (%s) == each document alone: o, ht, all gradients incl. dh0", buf,
             (int)C, gname[gm]);
    check(rc == 0 && e32 <= 1e-5 && e64 <= 1e-12 && er <= 1e-4, name,
          "rc %d rel err f32 %.3g f64 %.3g; packed fwd_ref f32 vs alone f64 %.3g", rc, e32, e64, er);
    free(o), free(ht), free(hs), free(orf), free(hr), free(o64), free(ht64);
    free_grads((void **)gr), free_grads((void **)g64);
    free_data(&d);
}

/* ---- thread-count independence ---- */

typedef struct {
    float *o, *ht, *hs, *g[NGRAD], *ro, *rg[NGRAD], *so, *st;
} outs_t;

static void run_all(const data_t *d, outs_t *r, int64_t C) {
    const cfg_t *c = &d->c;
    const int64_t NCT = kda_chunk_count(c->cu, c->N, c->B, c->T, C), ns = d->n[DH0];
    r->o = fzeros(d->n[DV]), r->ht = fzeros(ns), r->hs = fzeros(NCT * c->HV * c->K * c->V);
    r->ro = fzeros(d->n[DV]), r->so = fzeros(c->B * c->HV * c->V), r->st = to_f(d->x[DH0], c->B * c->HV * c->K * c->V);
    alloc_grads32(d, r->g), alloc_grads32(d, r->rg);
    fwd32(d, C, r->o, r->ht, r->hs);
    bwd32(d, C, r->g, NULL);
    fwd32(d, 0, r->ro, NULL, NULL);
    bwd32(d, 0, r->rg, NULL);
    if (!c->cu) /* one decode step on the first tokens */
        kda_step_f32(r->so, r->st, d->xf[DQ], d->xf[DK], d->xf[DV], d->xf[DG], d->xf[DB], (float)scale_of(c), c->B,
                     c->H, c->HV, c->K, c->V);
}

static void test_threads(cfg_t c, int64_t C) {
    data_t d = make_data(c);
    outs_t r1, r2;
    hb_threads_set(1);
    run_all(&d, &r1, C);
    hb_threads_set(2);
    run_all(&d, &r2, C);
    const int64_t NCT = kda_chunk_count(c.cu, c.N, c.B, c.T, C), ns = d.n[DH0];
    int same = !memcmp(r1.o, r2.o, (size_t)d.n[DV] * 4) && !memcmp(r1.ht, r2.ht, (size_t)ns * 4) &&
               !memcmp(r1.hs, r2.hs, (size_t)(NCT * c.HV * c.K * c.V) * 4) && !memcmp(r1.ro, r2.ro, (size_t)d.n[DV] * 4);
    for (int i = 0; i < NGRAD; i++)
        same &= !memcmp(r1.g[i], r2.g[i], (size_t)d.n[i] * 4) && !memcmp(r1.rg[i], r2.rg[i], (size_t)d.n[i] * 4);
    same &= !memcmp(r1.so, r2.so, (size_t)(c.B * c.HV * c.V) * 4);
    char name[128];
    snprintf(name, sizeof name, "1 thread == 2 threads, bitwise: fwd/bwd chunk and ref%s (%s)", c.cu ? "" : ", step",
             c.cu ? "packed" : "B=3");
    check(same, name, same ? "identical" : "differs");
    outs_t *rs[2] = {&r1, &r2};
    for (int p = 0; p < 2; p++) {
        free(rs[p]->o), free(rs[p]->ht), free(rs[p]->hs), free(rs[p]->ro), free(rs[p]->so), free(rs[p]->st);
        free_grads((void **)rs[p]->g), free_grads((void **)rs[p]->rg);
    }
    free_data(&d);
}

/* ---- the mixer descriptor (kernels/mixer.h): what core/mixer_op.c calls ---- */

/* The five entry points of hb_mixer_kda (f32 and f64) give bit for bit what the kernel functions give
 * (no h0, no dht: the op has neither), saved_numel is the size of hs, and the saved hs handed back to
 * the chunked backward gives the same gradients as recomputing it. */
#define DESC_CASE(R, SUF, X, W, zeros)                                                                 \
    do {                                                                                               \
        const hb_mixer_kernels_t *kk = &hb_mixer_kda.SUF;                                              \
        R *o1 = zeros(d.n[DV]), *o2 = zeros(d.n[DV]), *h1 = zeros(d.n[DH0]), *h2 = zeros(d.n[DH0]);   \
        R *s1 = zeros(nhs), *s2 = zeros(nhs), *g1[NGRAD], *g2[NGRAD], *g3[NGRAD];                      \
        for (int i = 0; i < NGRAD; i++) g1[i] = zeros(d.n[i]), g2[i] = zeros(d.n[i]), g3[i] = zeros(d.n[i]); \
        const R sc = (R)scale_of(&c);                                                                  \
        hb_mixer_args_t a = args;                                                                      \
        for (int i = 0; i < 5; i++) a.in[i] = X[i];                                                    \
        a.o = o1, a.ht = h1, a.saved = s1;                                                             \
        int rc = kk->fwd_chunk(&a);                                                                    \
        rc |= kda_fwd_chunk_##SUF(o2, h2, s2, X[DQ], X[DK], X[DV], X[DG], X[DB], NULL, sc, NULL, 0,    \
                                  c.B, c.T, c.H, c.HV, c.K, c.V, C);                                   \
        int same = !memcmp(o1, o2, (size_t)d.n[DV] * sizeof(R)) &&                                    \
                   !memcmp(h1, h2, (size_t)d.n[DH0] * sizeof(R)) && !memcmp(s1, s2, (size_t)nhs * sizeof(R)); \
        a.o = a.ht = a.saved = NULL, a.dout = W;                                                       \
        for (int i = 0; i < 5; i++) a.din[i] = g1[i];                                                  \
        a.saved = s1;                                                                                  \
        rc |= kk->bwd_chunk(&a);                                                                       \
        for (int i = 0; i < 5; i++) a.din[i] = g3[i];                                                  \
        a.saved = NULL;                                                                                \
        rc |= kk->bwd_chunk(&a);                                                                       \
        rc |= kda_bwd_chunk_##SUF(g2[DQ], g2[DK], g2[DV], g2[DG], g2[DB], NULL, W, NULL, X[DQ], X[DK], \
                                  X[DV], X[DG], X[DB], NULL, NULL, sc, NULL, 0, c.B, c.T, c.H, c.HV,  \
                                  c.K, c.V, C);                                                        \
        double erec = 0;                                                                               \
        for (int i = 0; i < 5; i++) {                                                                  \
            same &= !memcmp(g1[i], g2[i], (size_t)d.n[i] * sizeof(R));                                 \
            for (int64_t j = 0; j < d.n[i]; j++) erec = fmax(erec, fabs((double)g3[i][j] - g1[i][j])); \
        }                                                                                              \
        /* recurrent mode and the decode step */                                                       \
        for (int i = 0; i < 5; i++) memset(g1[i], 0, (size_t)d.n[i] * sizeof(R)),                     \
                                    memset(g2[i], 0, (size_t)d.n[i] * sizeof(R));                     \
        a = args;                                                                                      \
        for (int i = 0; i < 5; i++) a.in[i] = X[i];                                                    \
        a.o = o1, a.ht = h1;                                                                           \
        rc |= kk->fwd_recurrent(&a);                                                                   \
        rc |= kda_fwd_ref_##SUF(o2, h2, X[DQ], X[DK], X[DV], X[DG], X[DB], NULL, sc, NULL, 0, c.B, c.T, \
                                c.H, c.HV, c.K, c.V);                                                  \
        same &= !memcmp(o1, o2, (size_t)d.n[DV] * sizeof(R)) && !memcmp(h1, h2, (size_t)d.n[DH0] * sizeof(R)); \
        a.o = a.ht = NULL, a.dout = W;                                                                 \
        for (int i = 0; i < 5; i++) a.din[i] = g1[i];                                                  \
        rc |= kk->bwd_recurrent(&a);                                                                   \
        rc |= kda_bwd_ref_##SUF(g2[DQ], g2[DK], g2[DV], g2[DG], g2[DB], NULL, W, NULL, X[DQ], X[DK],   \
                                X[DV], X[DG], X[DB], NULL, sc, NULL, 0, c.B, c.T, c.H, c.HV, c.K, c.V); \
        for (int i = 0; i < 5; i++) same &= !memcmp(g1[i], g2[i], (size_t)d.n[i] * sizeof(R));        \
        /* one step from the final state: token 0 of every input */                                   \
        memcpy(h2, h1, (size_t)d.n[DH0] * sizeof(R));                                                  \
        a = args, a.dim[1] = 1;                                                                        \
        for (int i = 0; i < 5; i++) a.in[i] = X[i];                                                    \
        a.o = o1, a.state = h1;                                                                        \
        rc |= kk->step(&a);                                                                            \
        rc |= kda_step_##SUF(o2, h2, X[DQ], X[DK], X[DV], X[DG], X[DB], sc, c.B, c.H, c.HV, c.K, c.V); \
        /* both read the first B·H·K (...) elements of the (B,T,...) buffers as (B,...) inputs */ \
        same &= !memcmp(o1, o2, (size_t)(c.B * c.HV * c.V) * sizeof(R)) &&                            \
                !memcmp(h1, h2, (size_t)d.n[DH0] * sizeof(R));                                         \
        char name[160];                                                                                \
        snprintf(name, sizeof name, "hb_mixer_kda." #SUF ": the five entry points == the kernel functions " \
                 "(T=%d, C=%d, HV=2H); saved hs == recomputed", (int)c.T, (int)C);                     \
        check(rc == 0 && same && erec <= (sizeof(R) == 8 ? 1e-12 : 1e-5), name,                        \
              "rc %d, bit-identical %d, saved vs recomputed hs: max |dgrad| %.3g", rc, same, erec);    \
        free(o1), free(o2), free(h1), free(h2), free(s1), free(s2);                                    \
        for (int i = 0; i < NGRAD; i++) free(g1[i]), free(g2[i]), free(g3[i]);                         \
    } while (0)

static void test_descriptor(void) {
    const hb_mixer_desc_t *m = &hb_mixer_kda;
    int shape_ok = !strcmp(m->name, "kda") && !strcmp(m->dims, "B T H HV K V") && m->chunk == 64 &&
                   !strcmp(m->in[0].name, "q") && !strcmp(m->in[3].name, "g") && !strcmp(m->in[3].shape, "B T HV K") &&
                   !strcmp(m->in[4].name, "beta") && !m->in[5].name && !strcmp(m->state, "B HV K V") &&
                   !strcmp(m->multiple[0].dim, "HV") && !strcmp(m->multiple[0].of, "H") && m->saved_numel;
    check(shape_ok, "hb_mixer_kda: name, dims, inputs q k v g beta, state (B,HV,K,V), HV a multiple of H, chunk 64",
          "dims '%s'", m->dims);
    const int64_t C = 16;
    cfg_t c = {2, 37, 2, 4, 8, 6, G_MIX, B_UNI2, 0, NULL, 0};
    data_t d = make_data(c);
    hb_mixer_args_t args;
    memset(&args, 0, sizeof args);
    const int64_t dims[6] = {c.B, c.T, c.H, c.HV, c.K, c.V};
    for (int i = 0; i < 6; i++) args.dim[i] = dims[i];
    args.scalar[0] = scale_of(&c), args.chunk = C;
    const int64_t nhs = kda_chunk_count(NULL, 0, c.B, c.T, C) * c.HV * c.K * c.V;
    check(m->saved_numel(&args) == nhs, "hb_mixer_kda.saved_numel == the chunk states' size B·ceil(T/C)·HV·K·V",
          "%lld vs %lld", (long long)m->saved_numel(&args), (long long)nhs);
    DESC_CASE(double, f64, d.x, d.w, dzeros);
    DESC_CASE(float, f32, d.xf, d.wf, fzeros);
    free_data(&d);
}
#undef DESC_CASE

/* ---- bad arguments, T = 0 ---- */

static void test_bad_args(void) {
    float x[256] = {0}, y[256] = {0};
    const int64_t good[] = {0, 3, 7}, bad0[] = {1, 3, 7}, badT[] = {0, 3, 6}, bad_dec[] = {0, 5, 3};
    int ok = 1;
    /* dims: HV % H, K = 0, V = 0, B < 0, T < 0, C = 0 */
    ok &= kda_fwd_ref_f32(x, NULL, x, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 2, 3, 2, 2) == -1;
    ok &= kda_fwd_ref_f32(x, NULL, x, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 1, 1, 0, 2) == -1;
    ok &= kda_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 1, 1, 2, 0, 16) == -1;
    ok &= kda_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 1, 1, 2, 2, 0) == -1;
    ok &= kda_bwd_chunk_f32(x, x, x, x, x, NULL, x, NULL, x, x, x, x, x, NULL, NULL, 1, NULL, 0, -1, 2, 1, 1, 2, 2,
                            16) == -1;
    ok &= kda_bwd_ref_f32(x, x, x, x, x, NULL, x, NULL, x, x, x, x, x, NULL, 1, NULL, 0, 1, -2, 1, 1, 2, 2) == -1;
    /* NULL inputs: do_, g, beta */
    ok &= kda_bwd_chunk_f32(x, x, x, x, x, NULL, NULL, NULL, x, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 1, 1, 2, 2,
                            16) == -1;
    ok &= kda_bwd_ref_f32(x, x, x, x, x, NULL, NULL, NULL, x, x, x, x, x, NULL, 1, NULL, 0, 1, 2, 1, 1, 2, 2) == -1;
    ok &= kda_fwd_chunk_f32(x, NULL, NULL, x, x, x, NULL, x, NULL, 1, NULL, 0, 1, 2, 1, 1, 2, 2, 16) == -1;
    ok &= kda_fwd_ref_f32(x, NULL, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 1, 1, 2, 2) == -1;
    ok &= kda_step_f32(x, x, x, x, x, x, x, 1, 1, 0, 1, 2, 2) == -1;
    ok &= kda_step_f32(x, x, x, x, x, NULL, x, 1, 1, 1, 1, 2, 2) == -1;
    check(ok, "bad dimensions and NULL inputs return -1 (HV % H, K = 0, V = 0, C = 0, B < 0, T < 0, no do/g/beta)",
          "all %d calls", 12);
    /* bad cu_seqlens: B != 1, cu[0] != 0, cu[N] != T, decreasing, N = 0 */
    ok = kda_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, x, NULL, 1, good, 2, 2, 7, 1, 1, 2, 2, 4) == -1;
    ok &= kda_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, x, NULL, 1, bad0, 2, 1, 7, 1, 1, 2, 2, 4) == -1;
    ok &= kda_fwd_ref_f32(x, NULL, x, x, x, x, x, NULL, 1, badT, 2, 1, 7, 1, 1, 2, 2) == -1;
    ok &= kda_bwd_chunk_f32(x, x, x, x, x, NULL, x, NULL, x, x, x, x, x, NULL, NULL, 1, bad_dec, 2, 1, 3, 1, 1, 2,
                            2, 4) == -1;
    ok &= kda_bwd_ref_f32(x, x, x, x, x, NULL, x, NULL, x, x, x, x, x, NULL, 1, good, 0, 1, 0, 1, 1, 2, 2) == -1;
    int untouched = 1;
    for (int i = 0; i < 256; i++) untouched &= x[i] == 0;
    check(ok && untouched, "bad cu_seqlens return -1 before writing anything (B != 1, cu[0] != 0, cu[N] != T, decreasing, N = 0)",
          "untouched %d", untouched);
    /* the good layout passes */
    float z[256];
    for (int i = 0; i < 256; i++) x[i] = 0.1f, y[i] = -0.1f;
    ok = kda_fwd_chunk_f32(z, NULL, NULL, x, x, x, y, x, NULL, 0.5f, good, 2, 1, 7, 1, 1, 2, 2, 4) == 0;
    check(ok, "a valid cu_seqlens layout is accepted", "ok %d", ok);

    /* T = 0: ht = h0, dh0 += dht */
    float h0[4] = {1, 2, 3, 4}, ht[4] = {0}, dht[4] = {5, 6, 7, 8}, dh0[4] = {1, 1, 1, 1};
    int rc = kda_fwd_chunk_f32(x, ht, NULL, x, x, x, x, x, h0, 1, NULL, 0, 1, 0, 1, 1, 2, 2, 64);
    rc |= kda_bwd_chunk_f32(NULL, NULL, NULL, NULL, NULL, dh0, x, dht, x, x, x, x, x, h0, NULL, 1, NULL, 0, 1, 0, 1, 1,
                            2, 2, 64);
    int good0 = !memcmp(h0, ht, sizeof h0);
    for (int i = 0; i < 4; i++) good0 &= dh0[i] == 1 + dht[i];
    check(rc == 0 && good0, "T = 0: fwd_chunk returns ht = h0, bwd_chunk adds dht to dh0", "rc %d", rc);
}

/* every allocation of every entry point, failed in turn, gives -1 (and the next call works) */
static void test_alloc_fail(void) {
    static const int64_t cu[] = {0, 20, 21, 40};
    cfg_t c = {1, 40, 1, 2, 8, 4, G_MOD, B_UNI2, 1, cu, 3};
    data_t d = make_data(c);
    const int64_t C = 16, NCT = kda_chunk_count(cu, 3, 1, 40, C);
    float *o = fzeros(d.n[DV]), *ht = fzeros(d.n[DH0]), *hs = fzeros(NCT * c.HV * c.K * c.V), *gr[NGRAD];
    alloc_grads32(&d, gr);
    int fails = 0, calls = 0;
    for (int fn = 0; fn < 6; fn++)
        for (int64_t n = 0; n < 3; n++) {
            hb_alloc_fail_after(n);
            const int64_t before = hb_alloc_injected();
            int rc;
            switch (fn) {
            case 0: rc = fwd32(&d, 0, o, ht, NULL); break;
            case 1: rc = fwd32(&d, C, o, ht, hs); break;
            case 2: rc = bwd32(&d, 0, gr, NULL); break;
            case 3: rc = bwd32(&d, C, gr, NULL); break;
            case 4: rc = bwd32(&d, C, gr, hs); break;
            default: rc = kda_step_f32(o, ht, d.xf[DQ], d.xf[DK], d.xf[DV], d.xf[DG], d.xf[DB], 0.3f, 1, 1, 2, 8, 4);
            }
            hb_alloc_fail_after(-1);
            if (hb_alloc_injected() > before) calls++, fails += rc == -1; /* an allocation did fail */
        }
    check(calls >= 6 && fails == calls, "a failed allocation returns -1 (every entry point, each of its allocations)",
          "%d failed allocations, %d returned -1", calls, fails);
    free(o), free(ht), free(hs), free_grads((void **)gr);
    free_data(&d);
}

int main(void) {
    hb_threads_set(2);
    test_forward();
    test_odd_chunks();
    /* gradient checks: T = 21 with C = 8 (two full chunks and a tail), T = 13 with C = 16 (one partial) */
    test_gradcheck((cfg_t){2, 21, 1, 2, 5, 4, G_MOD, B_UNI2, 1, NULL, 0}, 8);
    test_gradcheck((cfg_t){1, 21, 2, 2, 5, 4, G_NEAR0, B_NEAR2, 1, NULL, 0}, 8);
    test_gradcheck((cfg_t){1, 21, 1, 2, 5, 4, G_NEAR0, B_NEAR0, 0, NULL, 0}, 8);
    test_gradcheck((cfg_t){1, 21, 2, 4, 5, 4, G_M20, B_UNI1, 1, NULL, 0}, 8);
    test_gradcheck((cfg_t){2, 13, 1, 2, 4, 5, G_MIX, B_NEAR2, 1, NULL, 0}, 16);
    test_gradcheck((cfg_t){1, 40, 1, 1, 6, 3, G_GATE, B_UNI2, 1, NULL, 0}, 16);
    static const int64_t gc_lens[] = {3, 9, 1, 12};
    int64_t gc_cu[5] = {0};
    for (int i = 0; i < 4; i++) gc_cu[i + 1] = gc_cu[i] + gc_lens[i];
    test_gradcheck((cfg_t){1, gc_cu[4], 1, 2, 4, 3, G_MOD, B_UNI2, 1, gc_cu, 4}, 4);
    test_bwd_vs_ref();
    test_hs_null_accum();
    test_decode();
    static const int64_t lens[] = {1, 63, 64, 65, 200}, lens0[] = {5, 0, 17, 1, 0};
    test_packed(lens, 5, 64, G_MOD);
    test_packed(lens, 5, 16, G_MIX);
    test_packed(lens0, 5, 8, G_GATE);
    test_threads((cfg_t){3, 77, 2, 4, 16, 16, G_MIX, B_UNI2, 1, NULL, 0}, 16);
    static const int64_t tcu[] = {0, 30, 31, 100, 160};
    test_threads((cfg_t){1, 160, 1, 2, 16, 16, G_GATE, B_UNI2, 1, tcu, 4}, 32);
    test_descriptor();
    test_bad_args();
    test_alloc_fail();
    return tap_done();
}
