/* test_deltaproduct.c — TAP tests of kernels/deltaproduct.c (Gated DeltaProduct: NH Householder steps
 * of the gated delta rule per token).
 *
 * Checks: the reference against an independent spelling of the recurrence (the plain delta rule run
 * step by step on the interleaved sub-steps) and, for NH = 1, against delta_rule_fwd_ref; chunked
 * forward vs reference (f64 ≤ 1e-10, f32 ≤ 1e-4; NH = 1, 2, 3; T = 1, 37, 100 with C = 64, 16 and 5;
 * without g, decay near 1, moderate, near 0 and mixed; β in (0,1) and (0,2); HV = H and 2H; with and
 * without h0); float64 central-difference gradients of both backwards w.r.t. q, k, v, beta, g (loss
 * = Σ o·w; T·NH not a multiple of C; decays near 0 and 1; β near 0 and near 2; NH = 1, 2, 3);
 * chunked vs reference backward (f64 ≤ 1e-9, f32 ≤ 1e-3); saved chunk states vs recomputation; NULL
 * gradients and accumulation; decode steps vs the reference; chunked prefill + decode; packed
 * documents {1, 63, 64, 65, 200} (and an empty one) == separate runs, forward, final states and
 * backward, chunked and reference, f32 and f64, with saved states; a packed gradcheck; 1 vs 2
 * threads bit-identical; the descriptor's patterns; bad arguments.
 */
#include "../kernels/delta_rule.h"
#include "../kernels/deltaproduct.h"
#include "../kernels/parallel.h"
#include "ktest.h"
#include <string.h>

/* ---- data ---- */

enum { G_NONE, G_NEAR1, G_MOD, G_NEAR0, G_MIX, G_NMODES };
static const char *gname[] = {"no g", "decay~1", "g moderate", "decay~0", "g mixed"};
enum { B_UNIT, B_TWO, B_NEAR0, B_NEAR2 };
static const char *bname[] = {"beta<1", "beta<2", "beta~0", "beta~2"};

typedef struct {
    int64_t B, T, NH, H, HV, K, V;
    int gmode, bmode, use_h0;
} cfg_t;

typedef struct {
    cfg_t c;
    int64_t nq, nk, nv, nb, ng, no, ns; /* element counts */
    double *q, *k, *v, *beta, *g, *h0, *w; /* g, h0 may be NULL; w weighs o in the loss */
    float *qf, *kf, *vf, *betaf, *gf, *h0f, *wf;
} data_t;

static double gsample(int mode) {
    switch (mode) {
    case G_NEAR1: return -1e-3 * urand01();
    case G_MOD: return -0.02 - 0.5 * urand01();
    case G_NEAR0: return -20 + urand();
    case G_MIX: return urand01() < 0.2 ? -20 + urand() : -0.05 * urand01();
    default: return 0;
    }
}
static double bsample(int mode) {
    switch (mode) {
    case B_TWO: return 2 * (0.02 + 0.96 * urand01());
    case B_NEAR0: return 1e-3 * (0.1 + urand01());
    case B_NEAR2: return 2 - 1e-3 * (0.1 + urand01());
    default: return 0.02 + 0.96 * urand01();
    }
}

static void unit_rows(double *x, int64_t rows, int64_t K) {
    for (int64_t r = 0; r < rows; r++) {
        double nn = 0;
        for (int64_t i = 0; i < K; i++) x[r * K + i] = urand(), nn += x[r * K + i] * x[r * K + i];
        for (int64_t i = 0; i < K; i++) x[r * K + i] /= sqrt(nn);
    }
}

/* q, k: l2-normalised rows; v, w uniform(−1, 1); β and g per mode; h0 0.5·uniform. NS = B. */
static data_t make_data(cfg_t c) {
    data_t d;
    memset(&d, 0, sizeof d);
    d.c = c;
    const int64_t BT = c.B * c.T;
    d.nq = BT * c.H * c.K, d.nk = d.nq * c.NH, d.nv = BT * c.NH * c.HV * c.V, d.nb = BT * c.NH * c.HV;
    d.ng = BT * c.HV, d.no = BT * c.HV * c.V, d.ns = c.B * c.HV * c.K * c.V;
    d.q = dzeros(d.nq), d.k = dzeros(d.nk), d.v = drand_vec(d.nv, 1), d.w = drand_vec(d.no, 1);
    unit_rows(d.q, BT * c.H, c.K);
    unit_rows(d.k, BT * c.NH * c.H, c.K);
    d.beta = dzeros(d.nb);
    for (int64_t i = 0; i < d.nb; i++) d.beta[i] = bsample(c.bmode);
    if (c.gmode != G_NONE) {
        d.g = dzeros(d.ng);
        for (int64_t i = 0; i < d.ng; i++) d.g[i] = gsample(c.gmode);
    }
    if (c.use_h0) d.h0 = drand_vec(d.ns, 0.5);
    d.qf = to_f(d.q, d.nq), d.kf = to_f(d.k, d.nk), d.vf = to_f(d.v, d.nv), d.wf = to_f(d.w, d.no);
    d.betaf = to_f(d.beta, d.nb), d.gf = to_f(d.g, d.ng), d.h0f = to_f(d.h0, d.ns);
    return d;
}

static void free_data(data_t *d) {
    free(d->q), free(d->k), free(d->v), free(d->beta), free(d->g), free(d->h0), free(d->w);
    free(d->qf), free(d->kf), free(d->vf), free(d->betaf), free(d->gf), free(d->h0f), free(d->wf);
}

static double scale_of(const cfg_t *c) { return 1.0 / sqrt((double)c->K); }

/* the five gradient sizes in the order q, k, v, beta, g */
static void grad_sizes(const data_t *d, int64_t n[5]) {
    n[0] = d->nq, n[1] = d->nk, n[2] = d->nv, n[3] = d->nb, n[4] = d->ng;
}
static const char *xname[5] = {"q", "k", "v", "beta", "g"};

/* ---- the reference against an independent spelling ---- */

/* o, ht by the plain delta rule run one sub-step at a time: q̃, g̃ interleaved, o read at the last
 * sub-step of each token (delta_rule_step, which no deltaproduct function calls). */
static void interleaved_ref(double *o, double *ht, const data_t *d) {
    const cfg_t *c = &d->c;
    const int64_t B = c->B, H = c->H, HV = c->HV, K = c->K, V = c->V, NH = c->NH;
    double *S = dzeros(d->ns), *qt = dzeros(B * H * K), *kt = dzeros(B * H * K), *vt = dzeros(B * HV * V);
    double *bt = dzeros(B * HV), *gt = dzeros(B * HV), *ot = dzeros(B * HV * V);
    if (d->h0) memcpy(S, d->h0, (size_t)d->ns * sizeof(double));
    for (int64_t t = 0; t < c->T; t++)
        for (int64_t i = 0; i < NH; i++) {
            for (int64_t b = 0; b < B; b++) {
                const int64_t bt_ = b * c->T + t, r = bt_ * NH + i;
                for (int64_t x = 0; x < H * K; x++) {
                    qt[b * H * K + x] = i == NH - 1 ? d->q[bt_ * H * K + x] : 0;
                    kt[b * H * K + x] = d->k[r * H * K + x];
                }
                memcpy(vt + b * HV * V, d->v + r * HV * V, (size_t)(HV * V) * sizeof(double));
                for (int64_t j = 0; j < HV; j++) {
                    bt[b * HV + j] = d->beta[r * HV + j];
                    gt[b * HV + j] = d->g && i == 0 ? d->g[bt_ * HV + j] : 0;
                }
            }
            delta_rule_step_f64(ot, S, qt, kt, vt, bt, d->g ? gt : NULL, scale_of(c), B, H, HV, K, V);
            if (i == NH - 1)
                for (int64_t b = 0; b < B; b++)
                    memcpy(o + (b * c->T + t) * HV * V, ot + b * HV * V, (size_t)(HV * V) * sizeof(double));
        }
    memcpy(ht, S, (size_t)d->ns * sizeof(double));
    free(S), free(qt), free(kt), free(vt), free(bt), free(gt), free(ot);
}

static void test_reference(void) {
    double e = 0;
    int rc = 0;
    for (int64_t NH = 1; NH <= 3; NH++)
        for (int gm = 0; gm < G_NMODES; gm++) {
            cfg_t c = {2, 23, NH, 2, 4, 6, 5, gm, B_TWO, gm % 2};
            data_t d = make_data(c);
            double *o1 = dzeros(d.no), *o2 = dzeros(d.no), *h1 = dzeros(d.ns), *h2 = dzeros(d.ns);
            rc |= deltaproduct_fwd_ref_f64(o1, h1, d.q, d.k, d.v, d.beta, d.g, d.h0, scale_of(&c), NULL, 0, c.B,
                                           c.T, c.NH, c.H, c.HV, c.K, c.V);
            interleaved_ref(o2, h2, &d);
            e = fmax(e, fmax(rel_err_dd(o1, o2, d.no), rel_err_dd(h1, h2, d.ns)));
            if (NH == 1) { /* one Householder step is the gated delta rule itself */
                rc |= delta_rule_fwd_ref_f64(o2, h2, d.q, d.k, d.v, d.beta, d.g, d.h0, scale_of(&c), NULL, 0,
                                             c.B, c.T, c.H, c.HV, c.K, c.V);
                e = fmax(e, fmax(rel_err_dd(o1, o2, d.no), rel_err_dd(h1, h2, d.ns)));
            }
            free(o1), free(o2), free(h1), free(h2);
            free_data(&d);
        }
    check(rc == 0 && e <= 1e-12, "fwd_ref == the delta rule stepped over the interleaved sub-steps (NH 1-3)",
          "rc %d rel err %.3g", rc, e);
}

/* ---- forward: chunked vs reference ---- */

static void test_forward(void) {
    static const int64_t Ts[] = {1, 37, 100}, Cs[] = {64, 16, 5};
    for (int64_t NH = 1; NH <= 3; NH++)
        for (int ti = 0; ti < 3; ti++)
            for (int ci = 0; ci < 3; ci++) {
                double e32 = 0, e64 = 0;
                int rc = 0, combo = 0;
                for (int gm = 0; gm < G_NMODES; gm++)
                    for (int bm = B_UNIT; bm <= B_TWO; bm++)
                        for (int hv = 1; hv <= 2; hv++, combo++) {
                            cfg_t c = {2, Ts[ti], NH, 2, 2 * hv, 8, 6, gm, bm, combo % 2};
                            data_t d = make_data(c);
                            double sc = scale_of(&c);
                            double *o1 = dzeros(d.no), *o2 = dzeros(d.no), *h1 = dzeros(d.ns), *h2 = dzeros(d.ns);
                            float *f1 = fzeros(d.no), *f2 = fzeros(d.no), *fh1 = fzeros(d.ns), *fh2 = fzeros(d.ns);
                            rc |= deltaproduct_fwd_ref_f64(o1, h1, d.q, d.k, d.v, d.beta, d.g, d.h0, sc, NULL, 0,
                                                           c.B, c.T, c.NH, c.H, c.HV, c.K, c.V);
                            rc |= deltaproduct_fwd_chunk_f64(o2, h2, NULL, d.q, d.k, d.v, d.beta, d.g, d.h0, sc,
                                                             NULL, 0, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V, Cs[ci]);
                            rc |= deltaproduct_fwd_ref_f32(f1, fh1, d.qf, d.kf, d.vf, d.betaf, d.gf, d.h0f,
                                                           (float)sc, NULL, 0, c.B, c.T, c.NH, c.H, c.HV, c.K,
                                                           c.V);
                            rc |= deltaproduct_fwd_chunk_f32(f2, fh2, NULL, d.qf, d.kf, d.vf, d.betaf, d.gf,
                                                             d.h0f, (float)sc, NULL, 0, c.B, c.T, c.NH, c.H,
                                                             c.HV, c.K, c.V, Cs[ci]);
                            e64 = fmax(e64, fmax(rel_err_dd(o2, o1, d.no), rel_err_dd(h2, h1, d.ns)));
                            e32 = fmax(e32, fmax(rel_err_fd(f1, o1, d.no), rel_err_fd(fh1, h1, d.ns)));
                            e32 = fmax(e32, fmax(rel_err_fd(f2, o1, d.no), rel_err_fd(fh2, h1, d.ns)));
                            free(o1), free(o2), free(h1), free(h2), free(f1), free(f2), free(fh1), free(fh2);
                            free_data(&d);
                        }
                char name[128];
                snprintf(name, sizeof name, "fwd_chunk == fwd_ref f64, NH=%d T=%d C=%d (o and ht)", (int)NH,
                         (int)Ts[ti], (int)Cs[ci]);
                check(rc == 0 && e64 <= 1e-10, name, "rc %d rel err %.3g", rc, e64);
                snprintf(name, sizeof name, "f32 fwd_chunk and fwd_ref vs f64 fwd_ref, NH=%d T=%d C=%d", (int)NH,
                         (int)Ts[ti], (int)Cs[ci]);
                check(rc == 0 && e32 <= 1e-4, name, "rc %d rel err %.3g", rc, e32);
            }
    /* a realistic head size in f32 */
    cfg_t c = {1, 300, 2, 2, 2, 64, 128, G_MIX, B_TWO, 1};
    data_t d = make_data(c);
    double *o1 = dzeros(d.no);
    float *f2 = fzeros(d.no);
    int rc = deltaproduct_fwd_ref_f64(o1, NULL, d.q, d.k, d.v, d.beta, d.g, d.h0, 0.125, NULL, 0, c.B, c.T, c.NH,
                                      c.H, c.HV, c.K, c.V);
    rc |= deltaproduct_fwd_chunk_f32(f2, NULL, NULL, d.qf, d.kf, d.vf, d.betaf, d.gf, d.h0f, 0.125f, NULL, 0, c.B,
                                     c.T, c.NH, c.H, c.HV, c.K, c.V, 64);
    double e = rel_err_fd(f2, o1, d.no);
    check(rc == 0 && e <= 1e-4, "f32 fwd_chunk vs f64 fwd_ref, K=64 V=128 NH=2 T=300 beta<2 g mixed",
          "rc %d rel err %.3g", rc, e);
    free(o1), free(f2);
    free_data(&d);
}

/* ---- finite-difference gradient checks (float64) ---- */

typedef struct {
    const int64_t *cu;
    int64_t N;
} seqs_t;

static double loss64(const data_t *d, seqs_t s, double *o) {
    const cfg_t *c = &d->c;
    deltaproduct_fwd_ref_f64(o, NULL, d->q, d->k, d->v, d->beta, d->g, d->h0, scale_of(c), s.cu, s.N, c->B, c->T,
                             c->NH, c->H, c->HV, c->K, c->V);
    double L = 0;
    for (int64_t i = 0; i < d->no; i++) L += o[i] * d->w[i];
    return L;
}

static void gradcheck(cfg_t c, int64_t C, seqs_t s, const char *what) {
    data_t d = make_data(c);
    if (s.cu && c.use_h0) { /* packed: one h0 per document */
        free(d.h0);
        d.h0 = drand_vec(s.N * c.HV * c.K * c.V, 0.5);
    }
    double sc = scale_of(&c);
    const double h = 1e-6;
    double *o = dzeros(d.no), *x[5] = {d.q, d.k, d.v, d.beta, d.g}, *gr[2][5];
    int64_t n[5];
    grad_sizes(&d, n);
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 5; i++) gr[p][i] = dzeros(n[i]);
    int rc = deltaproduct_bwd_ref_f64(gr[0][0], gr[0][1], gr[0][2], gr[0][3], gr[0][4], d.w, d.q, d.k, d.v, d.beta,
                                      d.g, d.h0, sc, s.cu, s.N, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V);
    rc |= deltaproduct_bwd_chunk_f64(gr[1][0], gr[1][1], gr[1][2], gr[1][3], gr[1][4], d.w, d.q, d.k, d.v, d.beta,
                                     d.g, d.h0, NULL, sc, s.cu, s.N, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V, C);
    double worst[2] = {0, 0}, agree = 0;
    char wn[2][8] = {"", ""};
    for (int i = 0; i < 5; i++) {
        if (!x[i]) continue;
        double *num = dzeros(n[i]), mx = 0;
        for (int64_t j = 0; j < n[i]; j++) {
            const double x0 = x[i][j];
            x[i][j] = x0 + h;
            const double Lp = loss64(&d, s, o);
            x[i][j] = x0 - h;
            const double Lm = loss64(&d, s, o);
            x[i][j] = x0;
            num[j] = (Lp - Lm) / (2 * h);
            mx = fmax(mx, fabs(num[j]));
        }
        for (int p = 0; p < 2; p++) {
            double e = 0;
            for (int64_t j = 0; j < n[i]; j++)
                if (!(fabs(gr[p][i][j] - num[j]) <= e)) e = fabs(gr[p][i][j] - num[j]);
            e /= fmax(1e-3, mx);
            if (!(e <= worst[p])) worst[p] = e, snprintf(wn[p], sizeof wn[p], "d%s", xname[i]);
        }
        agree = fmax(agree, rel_err_dd(gr[1][i], gr[0][i], n[i]));
        free(num);
    }
    char name[192];
    snprintf(name, sizeof name, "gradcheck f64 bwd_ref and bwd_chunk, dq dk dv dbeta%s (%s, %s, NH=%d H=%d HV=%d T=%d C=%d%s%s)",
             d.g ? " dg" : "", gname[c.gmode], bname[c.bmode], (int)c.NH, (int)c.H, (int)c.HV, (int)c.T, (int)C,
             c.use_h0 ? ", h0" : "", what);
    check(rc == 0 && worst[0] <= 1e-6 && worst[1] <= 1e-6 && agree <= 1e-9, name,
          "rc %d rel err ref %.3g (%s) chunk %.3g (%s); chunk vs ref %.3g", rc, worst[0], wn[0], worst[1], wn[1],
          agree);
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 5; i++) free(gr[p][i]);
    free(o);
    free_data(&d);
}

/* ---- backward: chunked vs reference in f32, saved states, NULL gradients, accumulation ---- */

static void test_bwd_f32(void) {
    for (int64_t NH = 1; NH <= 3; NH++)
        for (int gm = 0; gm < G_NMODES; gm += 2) {
            cfg_t c = {2, 70, NH, 2, 4, 16, 16, gm, B_TWO, 1};
            data_t d = make_data(c);
            float sc = (float)scale_of(&c);
            int64_t n[5];
            grad_sizes(&d, n);
            float *a[5], *b[5];
            for (int i = 0; i < 5; i++) a[i] = fzeros(n[i]), b[i] = fzeros(n[i]);
            int rc = deltaproduct_bwd_ref_f32(a[0], a[1], a[2], a[3], a[4], d.wf, d.qf, d.kf, d.vf, d.betaf, d.gf,
                                              d.h0f, sc, NULL, 0, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V);
            rc |= deltaproduct_bwd_chunk_f32(b[0], b[1], b[2], b[3], b[4], d.wf, d.qf, d.kf, d.vf, d.betaf, d.gf,
                                             d.h0f, NULL, sc, NULL, 0, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V, 32);
            double e = 0;
            for (int i = 0; i < (d.g ? 5 : 4); i++) {
                double *ad = dzeros(n[i]);
                for (int64_t j = 0; j < n[i]; j++) ad[j] = a[i][j];
                e = fmax(e, rel_err_fd(b[i], ad, n[i]));
                free(ad);
            }
            char name[128];
            snprintf(name, sizeof name, "bwd_chunk == bwd_ref f32 (NH=%d, %s, beta<2, HV=2H, T=70 C=32)", (int)NH,
                     gname[gm]);
            check(rc == 0 && e <= 1e-3, name, "rc %d rel err %.3g", rc, e);
            for (int i = 0; i < 5; i++) free(a[i]), free(b[i]);
            free_data(&d);
        }

    /* saved chunk states, NULL gradients, accumulation (f64, g mixed, GVA, NH = 3) */
    cfg_t c = {2, 45, 3, 2, 4, 8, 6, G_MIX, B_TWO, 1};
    data_t d = make_data(c);
    double sc = scale_of(&c);
    const int64_t C = 16, nhs = deltaproduct_chunk_count(NULL, 0, c.B, c.T, c.NH, C) * c.HV * c.K * c.V;
    int64_t n[5];
    grad_sizes(&d, n);
    double *o = dzeros(d.no), *hs = dzeros(nhs), *a[5], *b[5];
    for (int i = 0; i < 5; i++) a[i] = dzeros(n[i]), b[i] = dzeros(n[i]);
    int rc = deltaproduct_fwd_chunk_f64(o, NULL, hs, d.q, d.k, d.v, d.beta, d.g, d.h0, sc, NULL, 0, c.B, c.T, c.NH,
                                        c.H, c.HV, c.K, c.V, C);
    rc |= deltaproduct_bwd_chunk_f64(a[0], a[1], a[2], a[3], a[4], d.w, d.q, d.k, d.v, d.beta, d.g, d.h0, NULL, sc,
                                     NULL, 0, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V, C);
    rc |= deltaproduct_bwd_chunk_f64(b[0], b[1], b[2], b[3], b[4], d.w, d.q, d.k, d.v, d.beta, d.g, d.h0, hs, sc,
                                     NULL, 0, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V, C);
    int same = 1;
    for (int i = 0; i < 5; i++) same &= memcmp(a[i], b[i], (size_t)n[i] * sizeof(double)) == 0;
    check(rc == 0 && same, "bwd_chunk with saved hs == bwd_chunk recomputing them (bitwise, NH=3)", "rc %d", rc);

    /* one gradient at a time, into buffers pre-filled with 1: the result must be 1 + the full gradient */
    int okall = 1;
    for (int i = 0; i < 5; i++) {
        double *p[5] = {NULL, NULL, NULL, NULL, NULL}, *buf = dzeros(n[i]);
        p[i] = buf;
        for (int64_t j = 0; j < n[i]; j++) buf[j] = 1;
        rc |= deltaproduct_bwd_chunk_f64(p[0], p[1], p[2], p[3], p[4], d.w, d.q, d.k, d.v, d.beta, d.g, d.h0, hs,
                                         sc, NULL, 0, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V, C);
        for (int64_t j = 0; j < n[i]; j++) okall &= fabs(buf[j] - 1 - a[i][j]) <= 1e-12;
        for (int64_t j = 0; j < n[i]; j++) buf[j] = 1;
        rc |= deltaproduct_bwd_ref_f64(p[0], p[1], p[2], p[3], p[4], d.w, d.q, d.k, d.v, d.beta, d.g, d.h0, sc,
                                       NULL, 0, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V);
        for (int64_t j = 0; j < n[i]; j++) okall &= fabs(buf[j] - 1 - a[i][j]) <= 1e-10;
        free(buf);
    }
    check(rc == 0 && okall, "a single non-NULL gradient accumulates (+=) the same values (chunk and ref)", "rc %d",
          rc);

    /* without g, a non-NULL dg is left untouched */
    double *dg = dzeros(d.ng);
    rc = deltaproduct_bwd_chunk_f64(NULL, NULL, NULL, NULL, dg, d.w, d.q, d.k, d.v, d.beta, NULL, d.h0, NULL, sc,
                                    NULL, 0, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V, C);
    rc |= deltaproduct_bwd_ref_f64(NULL, NULL, NULL, NULL, dg, d.w, d.q, d.k, d.v, d.beta, NULL, d.h0, sc, NULL, 0,
                                   c.B, c.T, c.NH, c.H, c.HV, c.K, c.V);
    int zero = 1;
    for (int64_t j = 0; j < d.ng; j++) zero &= dg[j] == 0;
    check(rc == 0 && zero, "g == NULL: dg untouched; all gradients NULL is fine", "rc %d", rc);
    free(dg);
    for (int i = 0; i < 5; i++) free(a[i]), free(b[i]);
    free(o), free(hs);
    free_data(&d);
}

/* ---- decode ---- */

/* dst (B,n,X) = src (B,T,X) rows t0..t0+n−1 (src NULL: nothing) */
static void slice(double *dst, const double *src, int64_t B, int64_t T, int64_t t0, int64_t n, int64_t X) {
    if (!src) return;
    for (int64_t b = 0; b < B; b++) memcpy(dst + b * n * X, src + (b * T + t0) * X, (size_t)(n * X) * sizeof(double));
}
static void slicef(float *dst, const float *src, int64_t B, int64_t T, int64_t t0, int64_t n, int64_t X) {
    if (!src) return;
    for (int64_t b = 0; b < B; b++) memcpy(dst + b * n * X, src + (b * T + t0) * X, (size_t)(n * X) * sizeof(float));
}

static void test_decode(void) {
    for (int64_t NH = 1; NH <= 3; NH++)
        for (int gm = 0; gm < G_NMODES; gm += 2) {
            cfg_t c = {2, 50, NH, 2, 4, 8, 6, gm, B_TWO, 1};
            data_t d = make_data(c);
            const double sc = scale_of(&c);
            const int64_t B = c.B, T = c.T, H = c.H, HV = c.HV, K = c.K, V = c.V;
            const int64_t XQ = H * K, XK = NH * H * K, XV = NH * HV * V, XB = NH * HV, XO = HV * V;
            double *oref = dzeros(d.no), *href = dzeros(d.ns);
            float *fref = fzeros(d.no), *fhref = fzeros(d.ns);
            int rc = deltaproduct_fwd_ref_f64(oref, href, d.q, d.k, d.v, d.beta, d.g, d.h0, sc, NULL, 0, B, T, NH, H,
                                              HV, K, V);
            rc |= deltaproduct_fwd_ref_f32(fref, fhref, d.qf, d.kf, d.vf, d.betaf, d.gf, d.h0f, (float)sc, NULL, 0,
                                           B, T, NH, H, HV, K, V);
            /* step by step from h0, f64 and f32: o_t and the final state */
            double *S = dzeros(d.ns), *qt = dzeros(B * XQ), *kt = dzeros(B * XK), *vt = dzeros(B * XV);
            double *bt = dzeros(B * XB), *gt = dzeros(B * HV), *ot = dzeros(B * XO), *rt = dzeros(B * XO);
            float *Sf = fzeros(d.ns), *qf = fzeros(B * XQ), *kf = fzeros(B * XK), *vf = fzeros(B * XV);
            float *bf = fzeros(B * XB), *gf = fzeros(B * HV), *otf = fzeros(B * XO);
            double *rtd = dzeros(B * XO);
            memcpy(S, d.h0, (size_t)d.ns * sizeof(double));
            memcpy(Sf, d.h0f, (size_t)d.ns * sizeof(float));
            double e = 0, ef = 0;
            for (int64_t t = 0; t < T; t++) {
                slice(qt, d.q, B, T, t, 1, XQ), slice(kt, d.k, B, T, t, 1, XK), slice(vt, d.v, B, T, t, 1, XV);
                slice(bt, d.beta, B, T, t, 1, XB), slice(gt, d.g, B, T, t, 1, HV), slice(rt, oref, B, T, t, 1, XO);
                slicef(qf, d.qf, B, T, t, 1, XQ), slicef(kf, d.kf, B, T, t, 1, XK), slicef(vf, d.vf, B, T, t, 1, XV);
                slicef(bf, d.betaf, B, T, t, 1, XB), slicef(gf, d.gf, B, T, t, 1, HV);
                rc |= deltaproduct_step_f64(ot, S, qt, kt, vt, bt, d.g ? gt : NULL, sc, B, NH, H, HV, K, V);
                rc |= deltaproduct_step_f32(otf, Sf, qf, kf, vf, bf, d.g ? gf : NULL, (float)sc, B, NH, H, HV, K, V);
                for (int64_t x = 0; x < B * XO; x++) rtd[x] = fref[(x / XO * T + t) * XO + x % XO];
                e = fmax(e, rel_err_dd(ot, rt, B * XO));
                ef = fmax(ef, rel_err_fd(otf, rtd, B * XO));
            }
            e = fmax(e, rel_err_dd(S, href, d.ns));
            double *fhd = dzeros(d.ns);
            for (int64_t x = 0; x < d.ns; x++) fhd[x] = fhref[x];
            ef = fmax(ef, rel_err_fd(Sf, fhd, d.ns));
            char name[128];
            snprintf(name, sizeof name, "decode steps == fwd_ref, o and final state (NH=%d, %s, HV=2H)", (int)NH,
                     gname[gm]);
            check(rc == 0 && e <= 1e-12 && ef <= 1e-6, name, "rc %d rel err f64 %.3g f32 (vs f32 ref) %.3g", rc, e, ef);

            /* chunked prefill of T1 tokens (ht), then decode the rest from it; and a second chunked
             * piece from h0 = the first's ht */
            const int64_t T1 = 19, T2 = T - T1;
            double *pa[5], *pb[5], *oa = dzeros(B * T1 * XO), *ob = dzeros(B * T2 * XO), *h1 = dzeros(d.ns);
            double *h2 = dzeros(d.ns), *ra = dzeros(B * T1 * XO), *rb = dzeros(B * T2 * XO);
            const double *src[5] = {d.q, d.k, d.v, d.beta, d.g};
            const int64_t X[5] = {XQ, XK, XV, XB, HV};
            for (int i = 0; i < 5; i++) {
                pa[i] = dzeros(B * T1 * X[i]), pb[i] = dzeros(B * T2 * X[i]);
                slice(pa[i], src[i], B, T, 0, T1, X[i]), slice(pb[i], src[i], B, T, T1, T2, X[i]);
            }
            slice(ra, oref, B, T, 0, T1, XO), slice(rb, oref, B, T, T1, T2, XO);
            rc = deltaproduct_fwd_chunk_f64(oa, h1, NULL, pa[0], pa[1], pa[2], pa[3], d.g ? pa[4] : NULL, d.h0, sc,
                                            NULL, 0, B, T1, NH, H, HV, K, V, 16);
            double emax = rel_err_dd(oa, ra, B * T1 * XO);
            memcpy(S, h1, (size_t)d.ns * sizeof(double));
            for (int64_t t = 0; t < T2; t++) {
                slice(qt, pb[0], B, T2, t, 1, XQ), slice(kt, pb[1], B, T2, t, 1, XK), slice(vt, pb[2], B, T2, t, 1, XV);
                slice(bt, pb[3], B, T2, t, 1, XB), slice(gt, d.g ? pb[4] : NULL, B, T2, t, 1, HV);
                slice(rt, rb, B, T2, t, 1, XO);
                rc |= deltaproduct_step_f64(ot, S, qt, kt, vt, bt, d.g ? gt : NULL, sc, B, NH, H, HV, K, V);
                emax = fmax(emax, rel_err_dd(ot, rt, B * XO));
            }
            emax = fmax(emax, rel_err_dd(S, href, d.ns));
            snprintf(name, sizeof name, "chunked prefill (T=19, C=16) + decode == fwd_ref (NH=%d, %s)", (int)NH,
                     gname[gm]);
            check(rc == 0 && emax <= 1e-10, name, "rc %d rel err %.3g", rc, emax);
            rc = deltaproduct_fwd_chunk_f64(ob, h2, NULL, pb[0], pb[1], pb[2], pb[3], d.g ? pb[4] : NULL, h1, sc, NULL,
                                            0, B, T2, NH, H, HV, K, V, 16);
            emax = fmax(rel_err_dd(h2, href, d.ns), rel_err_dd(ob, rb, B * T2 * XO));
            snprintf(name, sizeof name, "fwd_chunk(h0 = previous ht) continues the sequence (NH=%d, %s)", (int)NH,
                     gname[gm]);
            check(rc == 0 && emax <= 1e-10, name, "rc %d rel err %.3g", rc, emax);

            for (int i = 0; i < 5; i++) free(pa[i]), free(pb[i]);
            double *dfree[] = {oref, href, S, qt, kt, vt, bt, gt, ot, rt, rtd, fhd, oa, ob, h1, h2, ra, rb};
            float *ffree[] = {fref, fhref, Sf, qf, kf, vf, bf, gf, otf};
            for (size_t i = 0; i < sizeof dfree / sizeof *dfree; i++) free(dfree[i]);
            for (size_t i = 0; i < sizeof ffree / sizeof *ffree; i++) free(ffree[i]);
            free_data(&d);
        }
}

/* ---- packed sequences ---- */

/* Document n of a packed row, as its own (1, len) problem: slices of d's token rows. */
typedef struct {
    int64_t len;
    double *x[5], *w; /* q, k, v, beta, g (g NULL without it); loss weights */
} doc_t;

static doc_t doc_of(const data_t *d, int64_t start, int64_t len) {
    const cfg_t *c = &d->c;
    const int64_t X[5] = {c->H * c->K, c->NH * c->H * c->K, c->NH * c->HV * c->V, c->NH * c->HV, c->HV};
    const double *src[5] = {d->q, d->k, d->v, d->beta, d->g};
    doc_t r = {.len = len};
    for (int i = 0; i < 5; i++) {
        r.x[i] = src[i] ? dzeros(len * X[i]) : NULL;
        if (src[i]) memcpy(r.x[i], src[i] + start * X[i], (size_t)(len * X[i]) * sizeof(double));
    }
    r.w = dzeros(len * c->HV * c->V);
    memcpy(r.w, d->w + start * c->HV * c->V, (size_t)(len * c->HV * c->V) * sizeof(double));
    return r;
}

static float *fcopy(const double *x, int64_t n) { return to_f(x, n); }

/* max|a − b| / max|b| over floats (b the reference; NaN-propagating as ktest.h's) */
static double rel_err_ff(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= num)) num = e;
        if (!(fabs((double)b[i]) <= den)) den = fabs((double)b[i]);
    }
    return num / (den > 0 ? den : 1);
}

/* packed == separate, f64 (≤ 1e-12) and f32 (≤ 1e-5), chunked (C = 64, saved hs) and reference */
static void test_packed(void) {
    static const int64_t lens[] = {1, 63, 0, 64, 65, 200};
    const int64_t N = 6;
    int64_t cu[7] = {0};
    for (int64_t i = 0; i < N; i++) cu[i + 1] = cu[i] + lens[i];
    for (int64_t NH = 2; NH <= 3; NH++) {
        cfg_t c = {1, cu[N], NH, 2, 4, 8, 6, G_MIX, B_TWO, 0};
        data_t d = make_data(c);
        const int64_t HV = c.HV, KV = c.K * c.V, C = 64, sv = HV * KV;
        const double sc = scale_of(&c);
        double *h0 = drand_vec(N * sv, 0.5);
        int64_t n[5];
        grad_sizes(&d, n);
        const int64_t X[5] = {c.H * c.K, NH * c.H * c.K, NH * HV * c.V, NH * HV, HV};
        double worst64 = 0, worst32 = 0;
        int rc = 0;
        for (int path = 0; path < 2; path++) { /* 0: chunked, 1: reference */
            /* packed, f64 and f32 */
            const int64_t nhs = deltaproduct_chunk_count(cu, N, 1, c.T, NH, C) * sv;
            double *o = dzeros(d.no), *ht = dzeros(N * sv), *hs = dzeros(nhs), *gp[5];
            float *of = fzeros(d.no), *htf = fzeros(N * sv), *hsf = fzeros(nhs), *gpf[5];
            float *h0f = fcopy(h0, N * sv);
            for (int i = 0; i < 5; i++) gp[i] = dzeros(n[i]), gpf[i] = fzeros(n[i]);
            if (path == 0) {
                rc |= deltaproduct_fwd_chunk_f64(o, ht, hs, d.q, d.k, d.v, d.beta, d.g, h0, sc, cu, N, 1, c.T, NH,
                                                 c.H, HV, c.K, c.V, C);
                rc |= deltaproduct_bwd_chunk_f64(gp[0], gp[1], gp[2], gp[3], gp[4], d.w, d.q, d.k, d.v, d.beta, d.g,
                                                 h0, hs, sc, cu, N, 1, c.T, NH, c.H, HV, c.K, c.V, C);
                rc |= deltaproduct_fwd_chunk_f32(of, htf, hsf, d.qf, d.kf, d.vf, d.betaf, d.gf, h0f, (float)sc, cu, N,
                                                 1, c.T, NH, c.H, HV, c.K, c.V, C);
                rc |= deltaproduct_bwd_chunk_f32(gpf[0], gpf[1], gpf[2], gpf[3], gpf[4], d.wf, d.qf, d.kf, d.vf,
                                                 d.betaf, d.gf, h0f, hsf, (float)sc, cu, N, 1, c.T, NH, c.H, HV, c.K,
                                                 c.V, C);
            } else {
                rc |= deltaproduct_fwd_ref_f64(o, ht, d.q, d.k, d.v, d.beta, d.g, h0, sc, cu, N, 1, c.T, NH, c.H, HV,
                                               c.K, c.V);
                rc |= deltaproduct_bwd_ref_f64(gp[0], gp[1], gp[2], gp[3], gp[4], d.w, d.q, d.k, d.v, d.beta, d.g, h0,
                                               sc, cu, N, 1, c.T, NH, c.H, HV, c.K, c.V);
                rc |= deltaproduct_fwd_ref_f32(of, htf, d.qf, d.kf, d.vf, d.betaf, d.gf, h0f, (float)sc, cu, N, 1, c.T,
                                               NH, c.H, HV, c.K, c.V);
                rc |= deltaproduct_bwd_ref_f32(gpf[0], gpf[1], gpf[2], gpf[3], gpf[4], d.wf, d.qf, d.kf, d.vf,
                                               d.betaf, d.gf, h0f, (float)sc, cu, N, 1, c.T, NH, c.H, HV, c.K, c.V);
            }
            /* each document on its own, f64 and f32, into the same layout */
            double *os = dzeros(d.no), *hts = dzeros(N * sv), *gs[5];
            float *osf = fzeros(d.no), *htsf = fzeros(N * sv), *gsf[5];
            for (int i = 0; i < 5; i++) gs[i] = dzeros(n[i]), gsf[i] = fzeros(n[i]);
            for (int64_t m = 0; m < N; m++) {
                doc_t s = doc_of(&d, cu[m], lens[m]);
                const int64_t L = lens[m], oo = cu[m] * HV * c.V;
                double *g1[5];
                float *xf[5], *g1f[5], *wf = fcopy(s.w, L * HV * c.V), *h0m = fcopy(h0 + m * sv, sv);
                for (int i = 0; i < 5; i++) {
                    g1[i] = dzeros(L * X[i]), g1f[i] = fzeros(L * X[i]);
                    xf[i] = s.x[i] ? fcopy(s.x[i], L * X[i]) : NULL;
                }
                if (path == 0) {
                    rc |= deltaproduct_fwd_chunk_f64(os + oo, hts + m * sv, NULL, s.x[0], s.x[1], s.x[2], s.x[3],
                                                     s.x[4], h0 + m * sv, sc, NULL, 0, 1, L, NH, c.H, HV, c.K, c.V, C);
                    rc |= deltaproduct_bwd_chunk_f64(g1[0], g1[1], g1[2], g1[3], g1[4], s.w, s.x[0], s.x[1], s.x[2],
                                                     s.x[3], s.x[4], h0 + m * sv, NULL, sc, NULL, 0, 1, L, NH, c.H, HV,
                                                     c.K, c.V, C);
                    rc |= deltaproduct_fwd_chunk_f32(osf + oo, htsf + m * sv, NULL, xf[0], xf[1], xf[2], xf[3], xf[4],
                                                     h0m, (float)sc, NULL, 0, 1, L, NH, c.H, HV, c.K, c.V, C);
                    rc |= deltaproduct_bwd_chunk_f32(g1f[0], g1f[1], g1f[2], g1f[3], g1f[4], wf, xf[0], xf[1], xf[2],
                                                     xf[3], xf[4], h0m, NULL, (float)sc, NULL, 0, 1, L, NH, c.H, HV,
                                                     c.K, c.V, C);
                } else {
                    rc |= deltaproduct_fwd_ref_f64(os + oo, hts + m * sv, s.x[0], s.x[1], s.x[2], s.x[3], s.x[4],
                                                   h0 + m * sv, sc, NULL, 0, 1, L, NH, c.H, HV, c.K, c.V);
                    rc |= deltaproduct_bwd_ref_f64(g1[0], g1[1], g1[2], g1[3], g1[4], s.w, s.x[0], s.x[1], s.x[2],
                                                   s.x[3], s.x[4], h0 + m * sv, sc, NULL, 0, 1, L, NH, c.H, HV, c.K,
                                                   c.V);
                    rc |= deltaproduct_fwd_ref_f32(osf + oo, htsf + m * sv, xf[0], xf[1], xf[2], xf[3], xf[4], h0m,
                                                   (float)sc, NULL, 0, 1, L, NH, c.H, HV, c.K, c.V);
                    rc |= deltaproduct_bwd_ref_f32(g1f[0], g1f[1], g1f[2], g1f[3], g1f[4], wf, xf[0], xf[1], xf[2],
                                                   xf[3], xf[4], h0m, (float)sc, NULL, 0, 1, L, NH, c.H, HV, c.K, c.V);
                }
                for (int i = 0; i < 5; i++) {
                    memcpy(gs[i] + cu[m] * X[i], g1[i], (size_t)(L * X[i]) * sizeof(double));
                    memcpy(gsf[i] + cu[m] * X[i], g1f[i], (size_t)(L * X[i]) * sizeof(float));
                    free(g1[i]), free(g1f[i]), free(xf[i]), free(s.x[i]);
                }
                free(s.w), free(wf), free(h0m);
            }
            worst64 = fmax(worst64, fmax(rel_err_dd(o, os, d.no), rel_err_dd(ht, hts, N * sv)));
            worst32 = fmax(worst32, fmax(rel_err_ff(of, osf, d.no), rel_err_ff(htf, htsf, N * sv)));
            for (int i = 0; i < 5; i++) {
                worst64 = fmax(worst64, rel_err_dd(gp[i], gs[i], n[i]));
                worst32 = fmax(worst32, rel_err_ff(gpf[i], gsf[i], n[i]));
                free(gp[i]), free(gs[i]), free(gpf[i]), free(gsf[i]);
            }
            /* the empty document's final state is its h0 */
            int empty_ok = !memcmp(ht + 2 * sv, h0 + 2 * sv, (size_t)sv * sizeof(double));
            char name[160];
            snprintf(name, sizeof name,
                     "packed {1,63,0,64,65,200} == separate runs, %s, NH=%d: o, ht, dq dk dv dbeta dg (f64, f32)",
                     path ? "fwd_ref/bwd_ref" : "fwd_chunk/bwd_chunk (saved hs)", (int)NH);
            check(rc == 0 && worst64 <= 1e-12 && worst32 <= 1e-5 && empty_ok, name,
                  "rc %d rel err f64 %.3g f32 %.3g; empty document ht == h0: %d", rc, worst64, worst32, empty_ok);
            free(o), free(ht), free(hs), free(of), free(htf), free(hsf), free(h0f), free(os), free(hts), free(osf),
                free(htsf);
        }
        free(h0);
        free_data(&d);
    }
}

/* ---- thread-count independence ---- */

typedef struct {
    float *o, *ht, *hs, *g[5], *rg[5], *of, *so, *st;
} outs_t;

static void run_all(const data_t *d, outs_t *r, const int64_t *cu, int64_t N) {
    const cfg_t *c = &d->c;
    const float sc = (float)scale_of(c);
    const int64_t C = 16, NS = cu ? N : c->B, sv = c->HV * c->K * c->V;
    int64_t n[5];
    grad_sizes(d, n);
    r->o = fzeros(d->no), r->ht = fzeros(NS * sv);
    r->hs = fzeros(deltaproduct_chunk_count(cu, N, c->B, c->T, c->NH, C) * sv);
    r->of = fzeros(d->no), r->so = fzeros(c->B * c->HV * c->V), r->st = fzeros(d->ns);
    for (int i = 0; i < 5; i++) r->g[i] = fzeros(n[i]), r->rg[i] = fzeros(n[i]);
    deltaproduct_fwd_chunk_f32(r->o, r->ht, r->hs, d->qf, d->kf, d->vf, d->betaf, d->gf, NULL, sc, cu, N, c->B, c->T,
                               c->NH, c->H, c->HV, c->K, c->V, C);
    deltaproduct_bwd_chunk_f32(r->g[0], r->g[1], r->g[2], r->g[3], r->g[4], d->wf, d->qf, d->kf, d->vf, d->betaf,
                               d->gf, NULL, NULL, sc, cu, N, c->B, c->T, c->NH, c->H, c->HV, c->K, c->V, C);
    deltaproduct_fwd_ref_f32(r->of, NULL, d->qf, d->kf, d->vf, d->betaf, d->gf, NULL, sc, cu, N, c->B, c->T, c->NH,
                             c->H, c->HV, c->K, c->V);
    deltaproduct_bwd_ref_f32(r->rg[0], r->rg[1], r->rg[2], r->rg[3], r->rg[4], d->wf, d->qf, d->kf, d->vf, d->betaf,
                             d->gf, NULL, sc, cu, N, c->B, c->T, c->NH, c->H, c->HV, c->K, c->V);
    memcpy(r->st, d->h0f, (size_t)d->ns * sizeof(float)); /* one decode step on the first tokens */
    deltaproduct_step_f32(r->so, r->st, d->qf, d->kf, d->vf, d->betaf, d->gf, sc, c->B, c->NH, c->H, c->HV, c->K,
                          c->V);
}

static int same_outs(const outs_t *a, const outs_t *b, const data_t *d, int64_t NS, int64_t nhs) {
    int64_t n[5];
    grad_sizes(d, n);
    const int64_t sv = d->c.HV * d->c.K * d->c.V;
    int same = !memcmp(a->o, b->o, (size_t)d->no * 4) && !memcmp(a->ht, b->ht, (size_t)(NS * sv) * 4) &&
               !memcmp(a->hs, b->hs, (size_t)nhs * 4) && !memcmp(a->of, b->of, (size_t)d->no * 4) &&
               !memcmp(a->so, b->so, (size_t)(d->c.B * d->c.HV * d->c.V) * 4) &&
               !memcmp(a->st, b->st, (size_t)d->ns * 4);
    for (int i = 0; i < 5; i++)
        same &= !memcmp(a->g[i], b->g[i], (size_t)n[i] * 4) && !memcmp(a->rg[i], b->rg[i], (size_t)n[i] * 4);
    return same;
}

static void free_outs(outs_t *r) {
    free(r->o), free(r->ht), free(r->hs), free(r->of), free(r->so), free(r->st);
    for (int i = 0; i < 5; i++) free(r->g[i]), free(r->rg[i]);
}

static void test_threads(void) {
    static const int64_t cu[4] = {0, 17, 40, 77};
    for (int packed = 0; packed < 2; packed++) {
        cfg_t c = {packed ? 1 : 3, 77, 2, 2, 4, 16, 16, G_MIX, B_TWO, 1};
        data_t d = make_data(c);
        const int64_t *cs = packed ? cu : NULL, N = packed ? 3 : 0;
        outs_t r1, r2;
        hb_threads_set(1);
        run_all(&d, &r1, cs, N);
        hb_threads_set(2);
        run_all(&d, &r2, cs, N);
        const int64_t nhs = deltaproduct_chunk_count(cs, N, c.B, c.T, c.NH, 16) * c.HV * c.K * c.V;
        const int same = same_outs(&r1, &r2, &d, packed ? N : c.B, nhs);
        check(same,
              packed ? "1 thread == 2 threads, packed (every function, bitwise)"
                     : "1 thread == 2 threads (every function, bitwise)",
              "bitwise identical: %d", same);
        free_outs(&r1), free_outs(&r2);
        free_data(&d);
    }
}

/* ---- bad arguments ---- */

static void test_bad_args(void) {
    float x[512] = {0};
    const int64_t badcu[3] = {0, 3, 2}, cu[3] = {0, 1, 2};
    int rejected =
        deltaproduct_fwd_ref_f32(x, NULL, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 2, 2, 3, 2, 2) == -1 && /* HV%H */
        deltaproduct_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 2, 1, 1, 2, 2, 0) == -1 &&
        deltaproduct_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 0, 1, 1, 2, 2, 16) == -1 &&
        deltaproduct_bwd_chunk_f32(x, x, x, x, x, NULL, x, x, x, x, NULL, NULL, NULL, 1, NULL, 0, 1, 2, 2, 1, 1, 2, 2,
                                   16) == -1 &&
        deltaproduct_step_f32(x, x, x, x, x, x, NULL, 1, 1, 2, 1, 1, 0, 2) == -1 &&
        deltaproduct_bwd_ref_f32(NULL, NULL, NULL, NULL, NULL, x, x, x, x, x, NULL, NULL, 1, NULL, 0, -1, 2, 2, 1, 1,
                                 2, 2) == -1 &&
        deltaproduct_fwd_ref_f32(x, NULL, NULL, x, x, x, NULL, NULL, 1, NULL, 0, 1, 2, 2, 1, 1, 2, 2) == -1;
    ok(rejected, "bad arguments (HV %% H != 0, C = 0, NH = 0, NULL dout, K = 0, B < 0, NULL q) return -1");
    rejected =
        deltaproduct_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, NULL, 1, badcu, 2, 1, 2, 2, 1, 1, 2, 2, 16) == -1 &&
        deltaproduct_fwd_ref_f32(x, NULL, x, x, x, x, NULL, NULL, 1, cu, 2, 2, 1, 2, 1, 1, 2, 2) == -1 && /* B != 1 */
        deltaproduct_bwd_ref_f32(x, x, x, x, x, x, x, x, x, x, NULL, NULL, 1, cu, 2, 1, 3, 2, 1, 1, 2, 2) == -1 &&
        deltaproduct_bwd_chunk_f32(x, x, x, x, x, x, x, x, x, x, NULL, NULL, NULL, 1, cu, 0, 1, 2, 2, 1, 1, 2, 2, 16) ==
            -1;
    ok(rejected, "bad cu_seqlens (decreasing, B != 1, cu[N] != T, N = 0) return -1");
    /* T = 0: ht = h0 */
    float h0[4] = {1, 2, 3, 4}, ht[4] = {0};
    int rc = deltaproduct_fwd_chunk_f32(x, ht, NULL, x, x, x, x, NULL, h0, 1, NULL, 0, 1, 0, 2, 1, 1, 2, 2, 64);
    check(rc == 0 && !memcmp(h0, ht, sizeof h0), "T = 0: fwd_chunk returns ht = h0", "rc %d", rc);
}

/* ---- the descriptor ---- */

static void test_descriptor(void) {
    const hb_mixer_desc_t *d = &hb_mixer_deltaproduct;
    int good = !strcmp(d->name, "deltaproduct") && !strcmp(d->dims, "B T NH H HV K V") &&
               !strcmp(d->in[1].shape, "B T NH H K") && !strcmp(d->in[2].shape, "B T NH HV V") &&
               !strcmp(d->in[3].shape, "B T NH HV") && (d->in[4].flags & HB_IN_OPTIONAL) && d->chunk == 64;
    hb_mixer_args_t a = {.dim = {2, 10, 3, 1, 2, 4, 5}, .chunk = 16}; /* ceil(30/16) = 2 chunks per row */
    good &= d->saved_numel(&a) == 2 * 2 * 2 * 4 * 5;
    check(good, "descriptor: name, dims, interleaved k/v/beta patterns, optional g, saved = B·HV·ceil(T·NH/C)·K·V",
          "saved %lld", (long long)d->saved_numel(&a));

    /* the f64 and f32 entry points (what core/mixer_op.c calls) == the functions they adapt */
    cfg_t c = {2, 13, 3, 1, 2, 4, 3, G_MIX, B_TWO, 0};
    data_t x = make_data(c);
    const double sc = scale_of(&c);
    hb_mixer_args_t m = {.in = {x.q, x.k, x.v, x.beta, x.g}, .scalar = {sc}, .dim = {2, 13, 3, 1, 2, 4, 3}, .chunk = 8};
    const int64_t nsv = d->saved_numel(&m);
    int64_t n[5];
    grad_sizes(&x, n);
    double *o1 = dzeros(x.no), *o2 = dzeros(x.no), *h1 = dzeros(x.ns), *h2 = dzeros(x.ns), *sv = dzeros(nsv);
    double *g1[5], *g2[5];
    for (int i = 0; i < 5; i++) g1[i] = dzeros(n[i]), g2[i] = dzeros(n[i]);
    m.o = o1, m.ht = h1, m.saved = sv;
    int rc = d->f64.fwd_chunk(&m);
    rc |= deltaproduct_fwd_chunk_f64(o2, h2, NULL, x.q, x.k, x.v, x.beta, x.g, NULL, sc, NULL, 0, c.B, c.T, c.NH, c.H,
                                     c.HV, c.K, c.V, 8);
    double e = fmax(rel_err_dd(o1, o2, x.no), rel_err_dd(h1, h2, x.ns));
    m.dout = x.w;
    for (int i = 0; i < 5; i++) m.din[i] = g1[i];
    rc |= d->f64.bwd_chunk(&m);
    rc |= deltaproduct_bwd_chunk_f64(g2[0], g2[1], g2[2], g2[3], g2[4], x.w, x.q, x.k, x.v, x.beta, x.g, NULL, NULL,
                                     sc, NULL, 0, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V, 8);
    for (int i = 0; i < 5; i++) e = fmax(e, rel_err_dd(g1[i], g2[i], n[i]));
    m.saved = NULL, m.o = o1, m.ht = h1;
    rc |= d->f64.fwd_recurrent(&m);
    rc |= deltaproduct_fwd_ref_f64(o2, h2, x.q, x.k, x.v, x.beta, x.g, NULL, sc, NULL, 0, c.B, c.T, c.NH, c.H, c.HV,
                                   c.K, c.V);
    e = fmax(e, fmax(rel_err_dd(o1, o2, x.no), rel_err_dd(h1, h2, x.ns)));
    for (int i = 0; i < 5; i++) memset(g1[i], 0, (size_t)n[i] * sizeof(double)), memset(g2[i], 0, (size_t)n[i] * sizeof(double));
    rc |= d->f64.bwd_recurrent(&m);
    rc |= deltaproduct_bwd_ref_f64(g2[0], g2[1], g2[2], g2[3], g2[4], x.w, x.q, x.k, x.v, x.beta, x.g, NULL, sc, NULL,
                                   0, c.B, c.T, c.NH, c.H, c.HV, c.K, c.V);
    for (int i = 0; i < 5; i++) e = fmax(e, rel_err_dd(g1[i], g2[i], n[i]));
    /* step on the first token of each row (q/k/v/beta/g of row b's token 0 are at b·T·X: use T = 1 data) */
    cfg_t c1 = c;
    c1.T = 1;
    data_t y = make_data(c1);
    double *st1 = drand_vec(y.ns, 0.5), *st2 = dzeros(y.ns);
    memcpy(st2, st1, (size_t)y.ns * sizeof(double));
    hb_mixer_args_t ms = {.o = o1, .state = st1, .in = {y.q, y.k, y.v, y.beta, y.g}, .scalar = {sc},
                          .dim = {2, 1, 3, 1, 2, 4, 3}};
    rc |= d->f64.step(&ms);
    rc |= deltaproduct_step_f64(o2, st2, y.q, y.k, y.v, y.beta, y.g, sc, 2, 3, 1, 2, 4, 3);
    e = fmax(e, fmax(rel_err_dd(o1, o2, y.no), rel_err_dd(st1, st2, y.ns)));
    /* f32 chunked forward through the descriptor */
    float *of1 = fzeros(x.no), *of2 = fzeros(x.no);
    hb_mixer_args_t mf = {.o = of1, .in = {x.qf, x.kf, x.vf, x.betaf, x.gf}, .scalar = {sc},
                          .dim = {2, 13, 3, 1, 2, 4, 3}, .chunk = 8};
    rc |= d->f32.fwd_chunk(&mf);
    rc |= deltaproduct_fwd_chunk_f32(of2, NULL, NULL, x.qf, x.kf, x.vf, x.betaf, x.gf, NULL, (float)sc, NULL, 0, c.B,
                                     c.T, c.NH, c.H, c.HV, c.K, c.V, 8);
    int same32 = !memcmp(of1, of2, (size_t)x.no * sizeof(float));
    check(rc == 0 && e == 0 && same32,
          "descriptor entry points (f64: fwd/bwd chunk with saved states, fwd/bwd recurrent, step; f32 fwd) == "
          "the kernels", "rc %d max diff %.3g f32 same %d", rc, e, same32);
    for (int i = 0; i < 5; i++) free(g1[i]), free(g2[i]);
    free(o1), free(o2), free(h1), free(h2), free(sv), free(st1), free(st2), free(of1), free(of2);
    free_data(&x), free_data(&y);
}

int main(void) {
    rng_seed(0x5DEECE66Dull);
    test_reference();
    test_forward();
    /* gradient checks: T·NH not a multiple of C, decays near 1 and 0, β near 0 and near 2 */
    const seqs_t one = {NULL, 0};
    gradcheck((cfg_t){2, 11, 1, 2, 2, 5, 4, G_NONE, B_UNIT, 0}, 8, one, "");
    gradcheck((cfg_t){2, 11, 2, 1, 2, 5, 4, G_MOD, B_TWO, 1}, 8, one, "");
    gradcheck((cfg_t){1, 11, 2, 2, 2, 5, 4, G_NEAR1, B_NEAR2, 1}, 8, one, "");
    gradcheck((cfg_t){1, 11, 3, 2, 4, 4, 5, G_NEAR0, B_NEAR0, 1}, 8, one, "");
    gradcheck((cfg_t){1, 9, 3, 1, 2, 4, 3, G_NEAR1, B_NEAR0, 0}, 5, one, "");
    gradcheck((cfg_t){2, 7, 3, 2, 2, 4, 3, G_MIX, B_NEAR2, 1}, 16, one, "");
    gradcheck((cfg_t){1, 10, 2, 1, 1, 4, 3, G_NONE, B_NEAR2, 1}, 3, one, "");
    static const int64_t pcu[5] = {0, 3, 3, 8, 14};
    gradcheck((cfg_t){1, 14, 2, 1, 2, 4, 3, G_MIX, B_TWO, 1}, 4, (seqs_t){pcu, 4}, ", packed {3,0,5,6}");
    test_bwd_f32();
    test_decode();
    test_packed();
    test_threads();
    test_bad_args();
    test_descriptor();
    return tap_done();
}
