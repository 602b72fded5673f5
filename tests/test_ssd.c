/* test_ssd.c — TAP tests of kernels/ssd.c (Mamba-2's SSD scan).
 *
 * Checks: chunked forward vs the per-step reference (f64 ≤ 1e-10; f32 chunk and f32 reference vs the
 * f64 reference ≤ 1e-4) for T = 1, 37, 100, 130 with C = 64 and 16, decays near 1 (g ≈ −1e−3),
 * moderate, near 0 (g ≈ −20) and mixed, H = G, H = 2G, H = 4G with blocked and tiled groups, with and
 * without h0, a realistic K = V = 64 size; odd chunk lengths C = 1, 3 and > T (forward and backward);
 * the group mapping against q, k expanded per head; float64 central-difference gradients of both
 * backward paths w.r.t. q, k, v, g and h0 (loss = Σ o·w + Σ ht·wh, T not a multiple of C); chunked vs
 * reference backward (f64 ≤ 1e-9, f32 ≤ 1e-3); saved chunk states (hs) vs recomputation; NULL
 * gradients and accumulation; decode steps vs the reference, prefill + decode, chunked prefill in two
 * pieces; packed documents {1, 63, 64, 65, 200} vs separate runs (forward, final states, backward) and
 * a packed gradient check; 1 vs 2 threads bit-identical; the mixer descriptor hb_mixer_ssd (its fields,
 * its five entry points == the kernel functions in f32 and f64 with blocked and tiled groups, saved_numel,
 * the saved hs, tiled_groups read as a flag); bad arguments.
 */
#include "../kernels/alloc.h"
#include "../kernels/parallel.h"
#include "../kernels/ssd.h"
#define KTEST_SEED 0x5DEECE66DB4A3F21ull
#include "ktest.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- problems ---- */

enum { G_NEAR0, G_MOD, G_M20, G_MIX, G_NMODES };
static const char *gname[] = {"decay~1", "decay moderate", "decay~0 (g~-20)", "decay mixed"};

typedef struct {
    int64_t B, T, H, G, K, V;
    int gmode, tiled, use_h0, use_dht;
    double scale;
    const int64_t *cu; /* packed documents (B = 1), N of them */
    int64_t N;
} cfg_t;

typedef struct {
    cfg_t c;
    int64_t nq, nv, ng, ns; /* sizes of q/k, v/o, g, states */
    double *q, *k, *v, *g, *h0, *w, *wh;  /* h0, wh may be NULL; w = dL/do, wh = dL/dht */
    float *fq, *fk, *fv, *fg, *fh0, *fw, *fwh;
} prob_t;

static double u01(void) { return 0.5 * (urand() + 1); }

static double gsample(int mode) {
    switch (mode) {
    case G_NEAR0: return -1e-3 * u01();
    case G_MOD: return -0.02 - 0.5 * u01();
    case G_M20: return -20 + urand();
    default: return u01() < 0.2 ? -20 + urand() : -0.05 * u01();
    }
}

static int64_t nseq(const cfg_t *c) { return c->cu ? c->N : c->B; }

static prob_t make_prob(cfg_t c) {
    prob_t p;
    memset(&p, 0, sizeof p);
    p.c = c;
    p.nq = c.B * c.T * c.G * c.K, p.nv = c.B * c.T * c.H * c.V, p.ng = c.B * c.T * c.H;
    p.ns = nseq(&c) * c.H * c.K * c.V;
    if (p.nq < 0 || p.nv < 0 || p.ns < 0) abort(); /* (tells GCC's allocation-size check they are not) */
    p.q = drand_vec(p.nq, 1), p.k = drand_vec(p.nq, 1), p.v = drand_vec(p.nv, 1), p.w = drand_vec(p.nv, 1);
    p.g = drand_vec(p.ng, 0);
    for (int64_t i = 0; i < p.ng; i++) p.g[i] = gsample(c.gmode);
    if (c.use_h0) p.h0 = drand_vec(p.ns, 0.5);
    if (c.use_dht) p.wh = drand_vec(p.ns, 1);
    p.fq = to_f(p.q, p.nq), p.fk = to_f(p.k, p.nq), p.fv = to_f(p.v, p.nv), p.fg = to_f(p.g, p.ng);
    p.fw = to_f(p.w, p.nv), p.fh0 = to_f(p.h0, p.ns), p.fwh = to_f(p.wh, p.ns);
    return p;
}

static void free_prob(prob_t *p) {
    free(p->q), free(p->k), free(p->v), free(p->g), free(p->h0), free(p->w), free(p->wh);
    free(p->fq), free(p->fk), free(p->fv), free(p->fg), free(p->fh0), free(p->fw), free(p->fwh);
}

/* Results of one forward + backward: o, ht, dq, dk, dv, dg, dh0 (in this order). */
#define NRES 7
static const char *rname[NRES] = {"o", "ht", "dq", "dk", "dv", "dg", "dh0"};
typedef struct { double *x[NRES]; } res_t;
typedef struct { float *x[NRES]; } resf_t;

static void res_sizes(const prob_t *p, int64_t n[NRES]) {
    n[0] = p->nv, n[1] = p->ns, n[2] = p->nq, n[3] = p->nq, n[4] = p->nv, n[5] = p->ng, n[6] = p->ns;
}
static res_t res_new(const prob_t *p) {
    int64_t n[NRES];
    res_sizes(p, n);
    res_t r;
    for (int i = 0; i < NRES; i++) r.x[i] = dzeros(n[i]);
    return r;
}
static resf_t resf_new(const prob_t *p) {
    int64_t n[NRES];
    res_sizes(p, n);
    resf_t r;
    for (int i = 0; i < NRES; i++) r.x[i] = fzeros(n[i]);
    return r;
}
static void res_free(res_t *r) { for (int i = 0; i < NRES; i++) free(r->x[i]); }
static void resf_free(resf_t *r) { for (int i = 0; i < NRES; i++) free(r->x[i]); }

/* Forward and backward through the reference (chunk = 0) or the chunked path with chunk length
 * `chunk` (the chunked backward reuses the forward's hs when use_hs). Returns the OR of the rcs. */
static int run64(const prob_t *p, int64_t chunk, int use_hs, res_t *r) {
    const cfg_t *c = &p->c;
    double **x = r->x;
    if (!chunk) {
        int rc = ssd_fwd_ref_f64(x[0], x[1], p->q, p->k, p->v, p->g, p->h0, c->scale, c->tiled, c->cu,
                                 c->N, c->B, c->T, c->H, c->G, c->K, c->V);
        return rc | ssd_bwd_ref_f64(x[2], x[3], x[4], x[5], x[6], p->w, p->wh, p->q, p->k, p->v, p->g,
                                    p->h0, c->scale, c->tiled, c->cu, c->N, c->B, c->T, c->H, c->G,
                                    c->K, c->V);
    }
    const int64_t nch = ssd_chunk_count(c->cu, c->N, c->B, c->T, chunk);
    double *hs = use_hs ? dzeros(nch * c->H * c->K * c->V) : NULL;
    int rc = ssd_fwd_chunk_f64(x[0], x[1], hs, p->q, p->k, p->v, p->g, p->h0, c->scale, c->tiled,
                               c->cu, c->N, c->B, c->T, c->H, c->G, c->K, c->V, chunk);
    rc |= ssd_bwd_chunk_f64(x[2], x[3], x[4], x[5], x[6], p->w, p->wh, p->q, p->k, p->v, p->g, p->h0,
                            hs, c->scale, c->tiled, c->cu, c->N, c->B, c->T, c->H, c->G, c->K, c->V,
                            chunk);
    free(hs);
    return rc;
}

static int run32(const prob_t *p, int64_t chunk, int use_hs, resf_t *r) {
    const cfg_t *c = &p->c;
    float **x = r->x, sc = (float)c->scale;
    if (!chunk) {
        int rc = ssd_fwd_ref_f32(x[0], x[1], p->fq, p->fk, p->fv, p->fg, p->fh0, sc, c->tiled, c->cu,
                                 c->N, c->B, c->T, c->H, c->G, c->K, c->V);
        return rc | ssd_bwd_ref_f32(x[2], x[3], x[4], x[5], x[6], p->fw, p->fwh, p->fq, p->fk, p->fv,
                                    p->fg, p->fh0, sc, c->tiled, c->cu, c->N, c->B, c->T, c->H, c->G,
                                    c->K, c->V);
    }
    const int64_t nch = ssd_chunk_count(c->cu, c->N, c->B, c->T, chunk);
    float *hs = use_hs ? fzeros(nch * c->H * c->K * c->V) : NULL;
    int rc = ssd_fwd_chunk_f32(x[0], x[1], hs, p->fq, p->fk, p->fv, p->fg, p->fh0, sc, c->tiled,
                               c->cu, c->N, c->B, c->T, c->H, c->G, c->K, c->V, chunk);
    rc |= ssd_bwd_chunk_f32(x[2], x[3], x[4], x[5], x[6], p->fw, p->fwh, p->fq, p->fk, p->fv, p->fg,
                            p->fh0, hs, sc, c->tiled, c->cu, c->N, c->B, c->T, c->H, c->G, c->K,
                            c->V, chunk);
    free(hs);
    return rc;
}

/* max|a − b| / max|b| (b the reference; a NaN in a counts as infinite). */
static double rerr(const double *a, const double *b, int64_t n) {
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs(a[i] - b[i]);
        if (!(d <= e)) e = d == d ? d : INFINITY;
        m = fmax(m, fabs(b[i]));
    }
    return e / (m > 0 ? m : 1);
}
static double rerrf(const float *a, const double *b, int64_t n) {
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) e = d == d ? d : INFINITY;
        m = fmax(m, fabs(b[i]));
    }
    return e / (m > 0 ? m : 1);
}

/* Largest error over results [i0, i1); the worst one's name in *worst. */
static double cmp64(const prob_t *p, const res_t *a, const res_t *b, int i0, int i1, const char **worst) {
    int64_t n[NRES];
    res_sizes(p, n);
    double e = 0;
    for (int i = i0; i < i1; i++) {
        const double x = rerr(a->x[i], b->x[i], n[i]);
        if (!(x <= e)) e = x, *worst = rname[i];
    }
    return e;
}
static double cmp32(const prob_t *p, const resf_t *a, const res_t *b, int i0, int i1, const char **worst) {
    int64_t n[NRES];
    res_sizes(p, n);
    double e = 0;
    for (int i = i0; i < i1; i++) {
        const double x = rerrf(a->x[i], b->x[i], n[i]);
        if (!(x <= e)) e = x, *worst = rname[i];
    }
    return e;
}

static void cfg_str(char *s, size_t n, const cfg_t *c) {
    snprintf(s, n, "B=%d T=%d H=%d G=%d%s K=%d V=%d, %s%s%s", (int)c->B, (int)c->T, (int)c->H, (int)c->G,
             c->G < c->H ? (c->tiled ? " tiled" : " blocked") : "", (int)c->K, (int)c->V, gname[c->gmode],
             c->use_h0 ? ", h0" : "", c->use_dht ? ", dht" : "");
}

/* ---- forward and backward: chunked vs reference ---- */

static void test_chunk_vs_ref(void) {
    static const int64_t Ts[] = {1, 37, 100, 130}, Cs[] = {64, 16};
    static const int64_t HG[][3] = {{2, 2, 0}, {4, 2, 0}, {4, 2, 1}, {4, 1, 0}, {8, 2, 1}};
    for (int ti = 0; ti < 4; ti++)
        for (int ci = 0; ci < 2; ci++) {
            double ef64 = 0, ef32 = 0, eb64 = 0, eb32 = 0, er32 = 0;
            char w64[160] = "", w32[160] = "", wb64[160] = "", wb32[160] = "";
            int rc = 0, combo = 0;
            for (int gm = 0; gm < G_NMODES; gm++)
                for (int hg = 0; hg < 5; hg++, combo++) {
                    cfg_t c = {1 + combo % 2, Ts[ti], HG[hg][0], HG[hg][1], 8, 6, gm, (int)HG[hg][2],
                               combo % 3 != 0, combo % 2, combo % 4 == 1 ? 0.7 : 1.0, NULL, 0};
                    prob_t p = make_prob(c);
                    res_t ref = res_new(&p), chk = res_new(&p);
                    resf_t fchk = resf_new(&p), fref = resf_new(&p);
                    rc |= run64(&p, 0, 0, &ref);
                    rc |= run64(&p, Cs[ci], combo % 2, &chk);
                    rc |= run32(&p, Cs[ci], combo % 2, &fchk);
                    rc |= run32(&p, 0, 0, &fref);
                    const char *wn = "";
                    char cs[128];
                    cfg_str(cs, sizeof cs, &c);
                    double e = cmp64(&p, &chk, &ref, 0, 2, &wn);
                    if (e >= ef64) ef64 = e, snprintf(w64, sizeof w64, "%s in %s", wn, cs);
                    e = fmax(cmp32(&p, &fchk, &ref, 0, 2, &wn), 0);
                    if (e >= ef32) ef32 = e, snprintf(w32, sizeof w32, "%s in %s", wn, cs);
                    er32 = fmax(er32, cmp32(&p, &fref, &ref, 0, 2, &wn));
                    e = cmp64(&p, &chk, &ref, 2, NRES, &wn);
                    if (e >= eb64) eb64 = e, snprintf(wb64, sizeof wb64, "%s in %s", wn, cs);
                    e = fmax(cmp32(&p, &fchk, &ref, 2, NRES, &wn), cmp32(&p, &fref, &ref, 2, NRES, &wn));
                    if (e >= eb32) eb32 = e, snprintf(wb32, sizeof wb32, "%s in %s", wn, cs);
                    res_free(&ref), res_free(&chk), resf_free(&fchk), resf_free(&fref);
                    free_prob(&p);
                }
            char name[160];
            snprintf(name, sizeof name, "fwd_chunk f64 == fwd_ref f64 (o, ht), T=%d C=%d, 20 configs",
                     (int)Ts[ti], (int)Cs[ci]);
            check(rc == 0 && ef64 <= 1e-10, name, "rc %d max rel err %.3g (worst: %s)", rc, ef64, w64);
            snprintf(name, sizeof name, "fwd_chunk f32 and fwd_ref f32 == fwd_ref f64 (o, ht), T=%d C=%d",
                     (int)Ts[ti], (int)Cs[ci]);
            check(rc == 0 && ef32 <= 1e-4 && er32 <= 1e-4, name, "max rel err chunk %.3g (worst: %s), ref %.3g",
                  ef32, w32, er32);
            snprintf(name, sizeof name, "bwd_chunk f64 == bwd_ref f64 (dq dk dv dg dh0), T=%d C=%d",
                     (int)Ts[ti], (int)Cs[ci]);
            check(rc == 0 && eb64 <= 1e-9, name, "max rel err %.3g (worst: %s)", eb64, wb64);
            snprintf(name, sizeof name, "bwd_chunk f32 and bwd_ref f32 == bwd_ref f64, T=%d C=%d",
                     (int)Ts[ti], (int)Cs[ci]);
            check(rc == 0 && eb32 <= 1e-3, name, "max rel err %.3g (worst: %s)", eb32, wb32);
        }

    /* realistic sizes in f32: K = V = 64 and K = 128, V = 64 (Mamba-2's N, P) */
    static const int64_t KV[][2] = {{64, 64}, {128, 64}};
    for (int s = 0; s < 2; s++)
        for (int gm = 0; gm < G_NMODES; gm += 3) {
            cfg_t c = {1, 300, 4, 1, KV[s][0], KV[s][1], gm, 0, 1, 1, 1.0, NULL, 0};
            prob_t p = make_prob(c);
            res_t ref = res_new(&p);
            resf_t f = resf_new(&p);
            int rc = run64(&p, 0, 0, &ref) | run32(&p, 64, 1, &f);
            const char *wn = "";
            const double ef = cmp32(&p, &f, &ref, 0, 2, &wn), eb = cmp32(&p, &f, &ref, 2, NRES, &wn);
            char name[200], cs[128];
            cfg_str(cs, sizeof cs, &c);
            snprintf(name, sizeof name, "f32 chunk fwd+bwd == f64 ref at %s, C=64", cs);
            check(rc == 0 && ef <= 1e-4 && eb <= 1e-3, name, "fwd rel err %.3g, bwd %.3g (worst %s)", ef, eb, wn);
            res_free(&ref), resf_free(&f), free_prob(&p);
        }
}

/* odd chunk lengths (1, 3, 200 > T), forward and backward against the reference, f64 */
static void test_odd_chunks(void) {
    cfg_t c = {2, 29, 4, 2, 6, 5, G_MIX, 1, 1, 1, 1.0, NULL, 0};
    prob_t p = make_prob(c);
    res_t ref = res_new(&p);
    int rc = run64(&p, 0, 0, &ref);
    static const int64_t Cs[] = {1, 3, 200};
    for (int ci = 0; ci < 3; ci++) {
        res_t r = res_new(&p);
        rc |= run64(&p, Cs[ci], ci % 2, &r);
        const char *wn = "";
        const double e = cmp64(&p, &r, &ref, 0, NRES, &wn);
        char name[128];
        snprintf(name, sizeof name, "C=%d: fwd_chunk and bwd_chunk == reference (f64, T=29)", (int)Cs[ci]);
        check(rc == 0 && e <= 1e-10, name, "rc %d rel err %.3g (worst %s)", rc, e, wn);
        res_free(&r);
    }
    res_free(&ref), free_prob(&p);
}

/* the group mapping: grouped q, k == the same q, k expanded to one group per head */
static void test_groups(void) {
    for (int tiled = 0; tiled <= 1; tiled++) {
        cfg_t c = {2, 45, 6, 2, 5, 4, G_MOD, tiled, 1, 1, 1.0, NULL, 0};
        prob_t p = make_prob(c);
        cfg_t ce = c;
        ce.G = c.H;
        prob_t e = make_prob(ce);
        const int64_t R = c.H / c.G;
        for (int64_t bt = 0; bt < c.B * c.T; bt++)
            for (int64_t h = 0; h < c.H; h++) {
                const int64_t gi = tiled ? h % c.G : h / R;
                memcpy(e.q + (bt * c.H + h) * c.K, p.q + (bt * c.G + gi) * c.K, (size_t)c.K * sizeof(double));
                memcpy(e.k + (bt * c.H + h) * c.K, p.k + (bt * c.G + gi) * c.K, (size_t)c.K * sizeof(double));
            }
        memcpy(e.v, p.v, (size_t)p.nv * sizeof(double)), memcpy(e.g, p.g, (size_t)p.ng * sizeof(double));
        memcpy(e.w, p.w, (size_t)p.nv * sizeof(double)), memcpy(e.h0, p.h0, (size_t)p.ns * sizeof(double));
        memcpy(e.wh, p.wh, (size_t)p.ns * sizeof(double));
        res_t a = res_new(&p), b = res_new(&e), a2 = res_new(&p);
        int rc = run64(&p, 16, 0, &a) | run64(&e, 16, 0, &b) | run64(&p, 0, 0, &a2);
        /* dq, dk of the grouped run = the expanded run's summed over the heads of each group */
        double *sq = dzeros(p.nq), *sk = dzeros(p.nq);
        for (int64_t bt = 0; bt < c.B * c.T; bt++)
            for (int64_t h = 0; h < c.H; h++) {
                const int64_t gi = tiled ? h % c.G : h / R;
                for (int64_t i = 0; i < c.K; i++) {
                    sq[(bt * c.G + gi) * c.K + i] += b.x[2][(bt * c.H + h) * c.K + i];
                    sk[(bt * c.G + gi) * c.K + i] += b.x[3][(bt * c.H + h) * c.K + i];
                }
            }
        double err = fmax(rerr(a.x[0], b.x[0], p.nv), rerr(a.x[1], b.x[1], p.ns));
        err = fmax(err, fmax(rerr(a.x[2], sq, p.nq), rerr(a.x[3], sk, p.nq)));
        for (int i = 4; i < NRES; i++) err = fmax(err, rerr(a.x[i], b.x[i], i == 5 ? p.ng : i == 4 ? p.nv : p.ns));
        double err2 = fmax(rerr(a2.x[0], b.x[0], p.nv), fmax(rerr(a2.x[2], sq, p.nq), rerr(a2.x[3], sk, p.nq)));
        char name[128];
        snprintf(name, sizeof name, "%s groups (head h reads group %s): chunk and ref == q, k expanded per head",
                 tiled ? "tiled" : "blocked", tiled ? "h %% G" : "h / (H/G)");
        check(rc == 0 && err <= 1e-12 && err2 <= 1e-12, name, "rel err chunk %.3g ref %.3g", err, err2);
        free(sq), free(sk);
        res_free(&a), res_free(&b), res_free(&a2), free_prob(&p), free_prob(&e);
    }
}

/* ---- float64 finite-difference gradient checks ---- */

static double loss64(const prob_t *p, double *o, double *ht) {
    const cfg_t *c = &p->c;
    ssd_fwd_ref_f64(o, ht, p->q, p->k, p->v, p->g, p->h0, c->scale, c->tiled, c->cu, c->N, c->B, c->T,
                    c->H, c->G, c->K, c->V);
    double L = 0;
    for (int64_t i = 0; i < p->nv; i++) L += o[i] * p->w[i];
    if (p->wh)
        for (int64_t i = 0; i < p->ns; i++) L += ht[i] * p->wh[i];
    return L;
}

static void test_gradcheck(cfg_t c, int64_t C) {
    prob_t p = make_prob(c);
    double *o = dzeros(p.nv), *ht = dzeros(p.ns);
    res_t gr[2] = {res_new(&p), res_new(&p)};
    int rc = run64(&p, 0, 0, &gr[0]) | run64(&p, C, 1, &gr[1]);
    double *x[5] = {p.q, p.k, p.v, p.g, p.h0};
    const int64_t n[5] = {p.nq, p.nq, p.nv, p.ng, p.ns};
    static const char *xn[5] = {"q", "k", "v", "g", "h0"};
    double worst[2] = {0, 0}, maxnum[5] = {0};
    char wn[2][16] = {"", ""};
    for (int i = 0; i < 5; i++) {
        if (!x[i]) continue;
        /* the loss is linear in q, k, v and h0 (central differences exact up to rounding: a large step
         * keeps the rounding noise of the loss small); g needs a small step: 1e-4 (truncation ~1e-9) */
        const double h = i == 3 ? 1e-4 : 1e-2;
        double *num = dzeros(n[i]);
        for (int64_t j = 0; j < n[i]; j++) {
            const double s = x[i][j];
            x[i][j] = s + h;
            const double Lp = loss64(&p, o, ht);
            x[i][j] = s - h;
            const double Lm = loss64(&p, o, ht);
            x[i][j] = s;
            num[j] = (Lp - Lm) / (2 * h);
            maxnum[i] = fmax(maxnum[i], fabs(num[j]));
        }
        for (int path = 0; path < 2; path++) {
            double e = 0;
            for (int64_t j = 0; j < n[i]; j++) {
                const double d = fabs(gr[path].x[2 + i][j] - num[j]);
                if (!(d <= e)) e = d == d ? d : INFINITY;
            }
            e /= fmax(1e-3, maxnum[i]);
            if (!(e <= worst[path])) worst[path] = e, snprintf(wn[path], sizeof wn[path], "d%s", xn[i]);
        }
        free(num);
    }
    char cs[128], name[200];
    cfg_str(cs, sizeof cs, &c);
    for (int path = 0; path < 2; path++) {
        snprintf(name, sizeof name, "gradcheck f64 %s dq dk dv dg%s (%s, C=%d)", path ? "bwd_chunk" : "bwd_ref",
                 c.use_h0 ? " dh0" : "", cs, (int)C);
        check(rc == 0 && worst[path] <= 1e-6, name, "rc %d max rel err %.3g (%s); max|num| q %.3g k %.3g v %.3g g %.3g",
              rc, worst[path], wn[path], maxnum[0], maxnum[1], maxnum[2], maxnum[3]);
    }
    free(o), free(ht), res_free(&gr[0]), res_free(&gr[1]), free_prob(&p);
}

/* ---- saved states, NULL gradients, accumulation ---- */

static void test_hs_null_accum(void) {
    cfg_t c = {1, 45, 4, 1, 8, 6, G_MIX, 0, 1, 1, 1.0, NULL, 0}; /* B·G = 1: groups split into head blocks */
    prob_t p = make_prob(c);
    const int64_t C = 16, nch = ssd_chunk_count(NULL, 0, c.B, c.T, C);
    double *hs = dzeros(nch * c.H * c.K * c.V), *o = dzeros(p.nv);
    res_t a = res_new(&p), b = res_new(&p);
    int rc = ssd_fwd_chunk_f64(o, NULL, hs, p.q, p.k, p.v, p.g, p.h0, 1, 0, NULL, 0, c.B, c.T, c.H, c.G,
                               c.K, c.V, C);
    rc |= ssd_bwd_chunk_f64(a.x[2], a.x[3], a.x[4], a.x[5], a.x[6], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0,
                            NULL, 1, 0, NULL, 0, c.B, c.T, c.H, c.G, c.K, c.V, C);
    rc |= ssd_bwd_chunk_f64(b.x[2], b.x[3], b.x[4], b.x[5], b.x[6], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0,
                            hs, 1, 0, NULL, 0, c.B, c.T, c.H, c.G, c.K, c.V, C);
    int64_t n[NRES];
    res_sizes(&p, n);
    int same = 1;
    for (int i = 2; i < NRES; i++) same &= !memcmp(a.x[i], b.x[i], (size_t)n[i] * sizeof(double));
    check(rc == 0 && same, "bwd_chunk with the forward's hs == bwd_chunk recomputing them (bitwise)", "rc %d", rc);

    /* hs rows are the reference states after c·C tokens */
    double *ht = dzeros(p.ns), err = 0;
    for (int64_t ci = 1; ci < nch; ci++) {
        rc |= ssd_fwd_ref_f64(o, ht, p.q, p.k, p.v, p.g, p.h0, 1, 0, NULL, 0, 1, ci * C, c.H, c.G, c.K, c.V);
        err = fmax(err, rerr(hs + ci * c.H * c.K * c.V, ht, p.ns));
    }
    err = fmax(err, rerr(hs, p.h0, p.ns));
    check(rc == 0 && err <= 1e-12, "hs[c] == reference state after c·C tokens (hs[0] = h0)", "rel err %.3g", err);

    /* one gradient at a time into buffers holding 1: result is 1 + the full gradient */
    int okall = 1;
    for (int i = 2; i < NRES; i++)
        for (int path = 0; path < 2; path++) {
            double *d[NRES] = {0}, *buf = dzeros(n[i]);
            for (int64_t j = 0; j < n[i]; j++) buf[j] = 1;
            d[i] = buf;
            if (path)
                rc |= ssd_bwd_chunk_f64(d[2], d[3], d[4], d[5], d[6], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0, hs, 1, 0,
                                        NULL, 0, c.B, c.T, c.H, c.G, c.K, c.V, C);
            else
                rc |= ssd_bwd_ref_f64(d[2], d[3], d[4], d[5], d[6], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0, 1, 0, NULL,
                                      0, c.B, c.T, c.H, c.G, c.K, c.V);
            for (int64_t j = 0; j < n[i]; j++) okall &= fabs(buf[j] - 1 - a.x[i][j]) <= 1e-10 * (1 + fabs(a.x[i][j]));
            free(buf);
        }
    check(rc == 0 && okall, "a single non-NULL gradient accumulates (+=) the full gradient (chunk and ref)", "rc %d", rc);

    /* all gradients NULL is fine; NULL dht and h0 mean zeros */
    rc = ssd_bwd_chunk_f64(NULL, NULL, NULL, NULL, NULL, p.w, NULL, p.q, p.k, p.v, p.g, NULL, NULL, 1, 0, NULL, 0,
                           c.B, c.T, c.H, c.G, c.K, c.V, C);
    rc |= ssd_bwd_ref_f64(NULL, NULL, NULL, NULL, NULL, p.w, NULL, p.q, p.k, p.v, p.g, NULL, 1, 0, NULL, 0, c.B,
                          c.T, c.H, c.G, c.K, c.V);
    check(rc == 0, "all gradient buffers NULL: both backwards return 0", "rc %d", rc);
    free(hs), free(o), free(ht), res_free(&a), res_free(&b), free_prob(&p);
}

/* ---- decode ---- */

/* dst (B,n,X) = src (B,T,X) rows t0..t0+n−1 */
static void slice(double *dst, const double *src, int64_t B, int64_t T, int64_t t0, int64_t n, int64_t X) {
    for (int64_t b = 0; b < B; b++) memcpy(dst + b * n * X, src + (b * T + t0) * X, (size_t)(n * X) * sizeof(double));
}

static void test_decode(void) {
    for (int gm = 0; gm < G_NMODES; gm++) {
        cfg_t c = {2, 60, 4, 2, 8, 6, gm, gm % 2, 1, 0, 1.0, NULL, 0};
        prob_t p = make_prob(c);
        const int64_t B = c.B, T = c.T, H = c.H, G = c.G, K = c.K, V = c.V;
        double *oref = dzeros(p.nv), *href = dzeros(p.ns);
        int rc = ssd_fwd_ref_f64(oref, href, p.q, p.k, p.v, p.g, p.h0, 1, c.tiled, NULL, 0, B, T, H, G, K, V);
        /* step by step from h0 (f64 and f32) */
        double *S = dzeros(p.ns), *qt = dzeros(B * G * K), *kt = dzeros(B * G * K), *vt = dzeros(B * H * V);
        double *gt = dzeros(B * H), *ot = dzeros(B * H * V), *rt = dzeros(B * H * V);
        float *Sf = to_f(p.h0, p.ns), *otf = fzeros(B * H * V);
        memcpy(S, p.h0, (size_t)p.ns * sizeof(double));
        double e = 0, ef = 0;
        for (int64_t t = 0; t < T; t++) {
            slice(qt, p.q, B, T, t, 1, G * K), slice(kt, p.k, B, T, t, 1, G * K);
            slice(vt, p.v, B, T, t, 1, H * V), slice(gt, p.g, B, T, t, 1, H), slice(rt, oref, B, T, t, 1, H * V);
            rc |= ssd_step_f64(ot, S, qt, kt, vt, gt, 1, c.tiled, B, H, G, K, V);
            float *fq = to_f(qt, B * G * K), *fk = to_f(kt, B * G * K), *fv = to_f(vt, B * H * V), *fg = to_f(gt, B * H);
            rc |= ssd_step_f32(otf, Sf, fq, fk, fv, fg, 1, c.tiled, B, H, G, K, V);
            free(fq), free(fk), free(fv), free(fg);
            e = fmax(e, rerr(ot, rt, B * H * V));
            ef = fmax(ef, rerrf(otf, rt, B * H * V));
        }
        e = fmax(e, rerr(S, href, p.ns));
        ef = fmax(ef, rerrf(Sf, href, p.ns));
        char name[160];
        snprintf(name, sizeof name, "decode steps == fwd_ref, outputs and final state (%s, %s groups)", gname[gm],
                 c.tiled ? "tiled" : "blocked");
        check(rc == 0 && e <= 1e-12 && ef <= 1e-5, name, "rc %d rel err f64 %.3g f32 %.3g", rc, e, ef);

        /* chunked prefill of T1 tokens (ht), then decode steps; and a second chunked piece from that ht */
        const int64_t T1 = 37, T2 = T - T1;
        double *qa = dzeros(B * T1 * G * K), *ka = dzeros(B * T1 * G * K), *va = dzeros(B * T1 * H * V);
        double *ga = dzeros(B * T1 * H), *oa = dzeros(B * T1 * H * V), *ra = dzeros(B * T1 * H * V);
        double *qb = dzeros(B * T2 * G * K), *kb = dzeros(B * T2 * G * K), *vb = dzeros(B * T2 * H * V);
        double *gb = dzeros(B * T2 * H), *ob = dzeros(B * T2 * H * V), *rb = dzeros(B * T2 * H * V);
        double *h1 = dzeros(p.ns), *h2 = dzeros(p.ns);
        slice(qa, p.q, B, T, 0, T1, G * K), slice(ka, p.k, B, T, 0, T1, G * K), slice(va, p.v, B, T, 0, T1, H * V);
        slice(ga, p.g, B, T, 0, T1, H), slice(ra, oref, B, T, 0, T1, H * V);
        slice(qb, p.q, B, T, T1, T2, G * K), slice(kb, p.k, B, T, T1, T2, G * K), slice(vb, p.v, B, T, T1, T2, H * V);
        slice(gb, p.g, B, T, T1, T2, H), slice(rb, oref, B, T, T1, T2, H * V);
        rc = ssd_fwd_chunk_f64(oa, h1, NULL, qa, ka, va, ga, p.h0, 1, c.tiled, NULL, 0, B, T1, H, G, K, V, 16);
        double em = rerr(oa, ra, B * T1 * H * V);
        memcpy(S, h1, (size_t)p.ns * sizeof(double));
        for (int64_t t = 0; t < T2; t++) {
            slice(qt, qb, B, T2, t, 1, G * K), slice(kt, kb, B, T2, t, 1, G * K), slice(vt, vb, B, T2, t, 1, H * V);
            slice(gt, gb, B, T2, t, 1, H), slice(rt, rb, B, T2, t, 1, H * V);
            rc |= ssd_step_f64(ot, S, qt, kt, vt, gt, 1, c.tiled, B, H, G, K, V);
            em = fmax(em, rerr(ot, rt, B * H * V));
        }
        em = fmax(em, rerr(S, href, p.ns));
        snprintf(name, sizeof name, "chunked prefill (T=37, C=16) + decode steps == fwd_ref (%s)", gname[gm]);
        check(rc == 0 && em <= 1e-10, name, "rc %d rel err %.3g", rc, em);
        rc = ssd_fwd_chunk_f64(ob, h2, NULL, qb, kb, vb, gb, h1, 1, c.tiled, NULL, 0, B, T2, H, G, K, V, 16);
        em = fmax(rerr(ob, rb, B * T2 * H * V), rerr(h2, href, p.ns));
        snprintf(name, sizeof name, "fwd_chunk from h0 = the prefill's ht continues the sequence (%s)", gname[gm]);
        check(rc == 0 && em <= 1e-10, name, "rc %d rel err %.3g", rc, em);
        double *df[] = {oref, href, S, qt, kt, vt, gt, ot, rt, qa, ka, va, ga, oa, ra, qb, kb, vb, gb, ob, rb, h1, h2};
        for (size_t i = 0; i < sizeof df / sizeof *df; i++) free(df[i]);
        free(Sf), free(otf), free_prob(&p);
    }
}

/* ---- packed documents ---- */

/* Problem of document n of a packed problem p: its rows and states. */
static prob_t doc_prob(const prob_t *p, int64_t n) {
    const cfg_t *c = &p->c;
    const int64_t s0 = c->cu[n], len = c->cu[n + 1] - c->cu[n], S = c->H * c->K * c->V;
    cfg_t d = *c;
    d.cu = NULL, d.N = 0, d.B = 1, d.T = len;
    prob_t e = make_prob(d);
    memcpy(e.q, p->q + s0 * c->G * c->K, (size_t)(e.nq) * sizeof(double));
    memcpy(e.k, p->k + s0 * c->G * c->K, (size_t)(e.nq) * sizeof(double));
    memcpy(e.v, p->v + s0 * c->H * c->V, (size_t)(e.nv) * sizeof(double));
    memcpy(e.w, p->w + s0 * c->H * c->V, (size_t)(e.nv) * sizeof(double));
    memcpy(e.g, p->g + s0 * c->H, (size_t)(e.ng) * sizeof(double));
    if (e.h0) memcpy(e.h0, p->h0 + n * S, (size_t)S * sizeof(double));
    if (e.wh) memcpy(e.wh, p->wh + n * S, (size_t)S * sizeof(double));
    free(e.fq), free(e.fk), free(e.fv), free(e.fg), free(e.fw), free(e.fh0), free(e.fwh);
    e.fq = to_f(e.q, e.nq), e.fk = to_f(e.k, e.nq), e.fv = to_f(e.v, e.nv), e.fg = to_f(e.g, e.ng);
    e.fw = to_f(e.w, e.nv), e.fh0 = to_f(e.h0, e.ns), e.fwh = to_f(e.wh, e.ns);
    return e;
}

/* Max rel error of the packed results vs the documents run one by one (f64 or f32 chunk, or ref). */
static double packed_vs_docs(const prob_t *p, int64_t chunk, int f32, int *rc) {
    const cfg_t *c = &p->c;
    int64_t n[NRES];
    res_sizes(p, n);
    res_t all = res_new(p), sep = res_new(p);
    resf_t allf = resf_new(p);
    if (f32) {
        *rc |= run32(p, chunk, 1, &allf);
        for (int i = 0; i < NRES; i++)
            for (int64_t j = 0; j < n[i]; j++) all.x[i][j] = allf.x[i][j];
    } else {
        *rc |= run64(p, chunk, 1, &all);
    }
    for (int64_t d = 0; d < c->N; d++) { /* scatter each document's results into packed layout */
        prob_t e = doc_prob(p, d);
        res_t r = res_new(&e);
        resf_t rf = resf_new(&e);
        int64_t m[NRES];
        res_sizes(&e, m);
        if (f32) {
            *rc |= run32(&e, chunk, 0, &rf);
            for (int i = 0; i < NRES; i++)
                for (int64_t j = 0; j < m[i]; j++) r.x[i][j] = rf.x[i][j];
        } else {
            *rc |= run64(&e, chunk, 0, &r);
        }
        const int64_t s0 = c->cu[d], S = c->H * c->K * c->V;
        const int64_t off[NRES] = {s0 * c->H * c->V, d * S, s0 * c->G * c->K, s0 * c->G * c->K,
                                   s0 * c->H * c->V, s0 * c->H, d * S};
        for (int i = 0; i < NRES; i++) memcpy(sep.x[i] + off[i], r.x[i], (size_t)m[i] * sizeof(double));
        res_free(&r), resf_free(&rf), free_prob(&e);
    }
    const char *wn = "";
    const double err = cmp64(p, &all, &sep, 0, NRES, &wn);
    res_free(&all), res_free(&sep), resf_free(&allf);
    return err;
}

static void test_packed(void) {
    static const int64_t cu[] = {0, 1, 64, 128, 193, 393};
    for (int gm = 0; gm < G_NMODES; gm++) {
        cfg_t c = {1, 393, 4, 2, 16, 8, gm, gm % 2, 1, 1, 1.0, cu, 5};
        prob_t p = make_prob(c);
        int rc = 0;
        const double e64 = packed_vs_docs(&p, 64, 0, &rc), e32 = packed_vs_docs(&p, 64, 1, &rc);
        const double er = packed_vs_docs(&p, 0, 0, &rc);
        char name[200];
        snprintf(name, sizeof name, "packed {1,63,64,65,200} == documents run separately: chunk f64, f32, ref "
                 "(o, ht, dq, dk, dv, dg, dh0; %s)", gname[gm]);
        check(rc == 0 && e64 <= 1e-12 && e32 <= 1e-5 && er <= 1e-12, name, "rel err chunk f64 %.3g f32 %.3g ref %.3g",
              e64, e32, er);
        free_prob(&p);
    }
    /* packed gradient check, C = 4 (documents of 1, 5, 8, 11 tokens cross chunk borders) */
    static const int64_t cu2[] = {0, 1, 6, 14, 25};
    test_gradcheck((cfg_t){1, 25, 4, 2, 4, 3, G_MOD, 1, 1, 1, 1.0, cu2, 4}, 4);
    /* a zero-length document keeps its h0 */
    static const int64_t cu3[] = {0, 7, 7, 12};
    cfg_t c = {1, 12, 2, 1, 4, 3, G_MOD, 0, 1, 1, 1.0, cu3, 3};
    prob_t p = make_prob(c);
    int rc = 0;
    const double e = packed_vs_docs(&p, 4, 0, &rc);
    res_t r = res_new(&p);
    rc |= run64(&p, 4, 0, &r);
    const int64_t S = c.H * c.K * c.V;
    int keep = !memcmp(r.x[1] + S, p.h0 + S, (size_t)S * sizeof(double));
    for (int64_t j = 0; j < S; j++) keep &= r.x[6][S + j] == p.wh[S + j];
    check(rc == 0 && e <= 1e-12 && keep, "packed with an empty document: its ht = h0, dh0 = dht, others unchanged",
          "rel err %.3g", e);
    res_free(&r), free_prob(&p);
}

/* ---- thread-count independence ---- */

static void test_threads(void) {
    static const int64_t cu[] = {0, 30, 31, 130, 200};
    cfg_t cs[3] = {{1, 150, 4, 1, 16, 16, G_MIX, 0, 1, 1, 1.0, NULL, 0},   /* head blocks + partial dq, dk */
                   {3, 77, 4, 2, 16, 8, G_MOD, 1, 1, 1, 1.0, NULL, 0},
                   {1, 200, 2, 1, 8, 8, G_MIX, 0, 1, 1, 1.0, cu, 4}};
    for (int ci = 0; ci < 3; ci++) {
        prob_t p = make_prob(cs[ci]);
        int64_t n[NRES];
        res_sizes(&p, n);
        resf_t r[2][2];
        float *so[2], *ss[2];
        int rc = 0;
        for (int t = 0; t < 2; t++) {
            hb_threads_set(t + 1);
            r[t][0] = resf_new(&p), r[t][1] = resf_new(&p);
            rc |= run32(&p, 32, t, &r[t][0]) | run32(&p, 0, 0, &r[t][1]);
            const cfg_t *c = &p.c;
            so[t] = fzeros(c->B * c->H * c->V), ss[t] = to_f(p.h0, c->B * c->H * c->K * c->V);
            if (!c->cu) rc |= ssd_step_f32(so[t], ss[t], p.fq, p.fk, p.fv, p.fg, 1, c->tiled, c->B, c->H, c->G, c->K, c->V);
        }
        int same = 1;
        for (int path = 0; path < 2; path++)
            for (int i = 0; i < NRES; i++) same &= !memcmp(r[0][path].x[i], r[1][path].x[i], (size_t)n[i] * sizeof(float));
        same &= !memcmp(so[0], so[1], (size_t)(p.c.B * p.c.H * p.c.V) * sizeof(float));
        char name[200], s[128];
        cfg_str(s, sizeof s, &p.c);
        snprintf(name, sizeof name, "1 thread == 2 threads bitwise: chunk and ref fwd+bwd, step (%s%s)", s,
                 p.c.cu ? ", packed" : "");
        check(rc == 0 && same, name, "rc %d", rc);
        for (int t = 0; t < 2; t++) resf_free(&r[t][0]), resf_free(&r[t][1]), free(so[t]), free(ss[t]);
        free_prob(&p);
    }
    hb_threads_set(2);
}

/* ---- the mixer descriptor (kernels/mixer.h): what core/mixer_op.c calls ---- */

/* Forward + backward of p through the descriptor's entry points in float32 (f32) or float64: the
 * chunked pair with chunk length C (the forward saving its chunk states in `saved`, NULL = none, the
 * backward reading them) or, for C = 0, the recurrent pair. x as in run64/run32 (dh0 untouched). */
static int desc_run(const hb_mixer_kernels_t *kk, const prob_t *p, int f32, int64_t C, void *const *x, void *saved) {
    const cfg_t *c = &p->c;
    hb_mixer_args_t a;
    memset(&a, 0, sizeof a);
    const int64_t dims[6] = {c->B, c->T, c->H, c->G, c->K, c->V};
    for (int i = 0; i < 6; i++) a.dim[i] = dims[i];
    a.scalar[0] = c->scale, a.scalar[1] = c->tiled, a.chunk = C > 0 ? C : 64;
    const void *in64[4] = {p->q, p->k, p->v, p->g}, *in32[4] = {p->fq, p->fk, p->fv, p->fg};
    for (int i = 0; i < 4; i++) a.in[i] = f32 ? in32[i] : in64[i];
    a.o = x[0], a.ht = x[1], a.saved = saved;
    int rc = C > 0 ? kk->fwd_chunk(&a) : kk->fwd_recurrent(&a);
    a.o = a.ht = NULL, a.dout = f32 ? (const void *)p->fw : (const void *)p->w;
    for (int i = 0; i < 4; i++) a.din[i] = x[2 + i];
    return rc | (C > 0 ? kk->bwd_chunk(&a) : kk->bwd_recurrent(&a));
}

/* hb_mixer_ssd: the descriptor's fields; its five entry points (f32 and f64, blocked and tiled groups)
 * give bit for bit what the kernel functions give (no h0, no dht: the op has neither); saved_numel is
 * the size of hs; the chunked backward without the saved hs (recomputed) agrees with the one reading it. */
static void test_descriptor(void) {
    const hb_mixer_desc_t *m = &hb_mixer_ssd;
    int shape_ok = !strcmp(m->name, "ssd") && !strcmp(m->dims, "B T H G K V") && m->chunk == 64 &&
                   !strcmp(m->in[0].name, "q") && !strcmp(m->in[0].shape, "B T G K") && !strcmp(m->in[1].name, "k") &&
                   !strcmp(m->in[2].shape, "B T H V") && !strcmp(m->in[3].name, "g") && !strcmp(m->in[3].shape, "B T H") &&
                   !m->in[4].name && !strcmp(m->out, "B T H V") && !strcmp(m->state, "B H K V") &&
                   !strcmp(m->multiple[0].dim, "H") && !strcmp(m->multiple[0].of, "G") && m->saved_numel &&
                   !strcmp(m->scalar[0].name, "scale") && m->scalar[0].def == 1.0 && !m->scalar[0].rsqrt_of &&
                   !strcmp(m->scalar[1].name, "tiled_groups") && m->scalar[1].def == 0.0 && !m->scalar[2].name;
    check(shape_ok, "hb_mixer_ssd: dims B T H G K V, q k (B,T,G,K), v (B,T,H,V), g (B,T,H), state (B,H,K,V), "
          "H a multiple of G, scale = 1 and tiled_groups = 0 by default, chunk 64", "dims '%s'", m->dims);
    const int64_t C = 16;
    for (int tiled = 0; tiled < 2; tiled++) {
        cfg_t c = {2, 37, 4, 2, 8, 6, G_MIX, tiled, 0, 0, 0.8, NULL, 0};
        prob_t p = make_prob(c);
        hb_mixer_args_t args;
        memset(&args, 0, sizeof args);
        args.dim[0] = c.B, args.dim[1] = c.T, args.dim[2] = c.H, args.dim[3] = c.G, args.dim[4] = c.K, args.dim[5] = c.V;
        args.chunk = C;
        const int64_t nhs = ssd_chunk_count(NULL, 0, c.B, c.T, C) * c.H * c.K * c.V;
        check(m->saved_numel(&args) == nhs, "hb_mixer_ssd.saved_numel == the chunk states' size B·ceil(T/C)·H·K·V",
              "%lld vs %lld", (long long)m->saved_numel(&args), (long long)nhs);
        int64_t n[NRES];
        res_sizes(&p, n);
        for (int f32 = 0; f32 < 2; f32++) {
            const size_t es = f32 ? sizeof(float) : sizeof(double);
            const hb_mixer_kernels_t *kk = f32 ? &m->f32 : &m->f64;
            int rc = 0, same = 1;
            double erec = 0;
            for (int64_t chunk = C; chunk >= 0; chunk -= C) { /* chunked, then recurrent */
                res_t d = res_new(&p), e = res_new(&p), h = res_new(&p);
                resf_t df = resf_new(&p), ef = resf_new(&p), hf = resf_new(&p);
                void *mine[NRES], *ref[NRES], *nosave[NRES];
                for (int i = 0; i < NRES; i++)
                    mine[i] = f32 ? (void *)df.x[i] : (void *)d.x[i], ref[i] = f32 ? (void *)ef.x[i] : (void *)e.x[i],
                    nosave[i] = f32 ? (void *)hf.x[i] : (void *)h.x[i];
                void *saved = chunk ? calloc((size_t)nhs, es) : NULL;
                rc |= desc_run(kk, &p, f32, chunk, mine, saved);
                rc |= f32 ? run32(&p, chunk, 1, &ef) : run64(&p, chunk, 1, &e);
                for (int i = 0; i < 6; i++) same &= !memcmp(mine[i], ref[i], (size_t)n[i] * es);
                if (chunk) {
                    rc |= desc_run(kk, &p, f32, chunk, nosave, NULL);
                    for (int i = 0; i < 6; i++)
                        for (int64_t j = 0; j < n[i]; j++) {
                            const double u = f32 ? hf.x[i][j] : h.x[i][j], v = f32 ? df.x[i][j] : d.x[i][j];
                            erec = fmax(erec, fabs(u - v) / (1 + fabs(v)));
                        }
                }
                free(saved);
                res_free(&d), res_free(&e), res_free(&h), resf_free(&df), resf_free(&ef), resf_free(&hf);
            }
            /* one decode step from a state: token 0 of every input (its first rows are (B, ...) inputs) */
            const int64_t ns = c.B * c.H * c.K * c.V, no = c.B * c.H * c.V;
            void *s1 = calloc((size_t)ns, es), *s2 = calloc((size_t)ns, es), *o1 = calloc((size_t)no, es),
                 *o2 = calloc((size_t)no, es);
            for (int64_t j = 0; j < ns; j++) {
                const double v = 0.3 * urand();
                if (f32) ((float *)s1)[j] = ((float *)s2)[j] = (float)v;
                else ((double *)s1)[j] = ((double *)s2)[j] = v;
            }
            hb_mixer_args_t a = args;
            a.dim[1] = 1, a.scalar[0] = c.scale, a.scalar[1] = tiled;
            const void *in64[4] = {p.q, p.k, p.v, p.g}, *in32[4] = {p.fq, p.fk, p.fv, p.fg};
            for (int i = 0; i < 4; i++) a.in[i] = f32 ? in32[i] : in64[i];
            a.o = o1, a.state = s1;
            rc |= kk->step(&a);
            rc |= f32 ? ssd_step_f32(o2, s2, p.fq, p.fk, p.fv, p.fg, (float)c.scale, tiled, c.B, c.H, c.G, c.K, c.V)
                      : ssd_step_f64(o2, s2, p.q, p.k, p.v, p.g, c.scale, tiled, c.B, c.H, c.G, c.K, c.V);
            same &= !memcmp(o1, o2, (size_t)no * es) && !memcmp(s1, s2, (size_t)ns * es);
            free(s1), free(s2), free(o1), free(o2);
            char name[200];
            snprintf(name, sizeof name, "hb_mixer_ssd.%s: the five entry points == the kernel functions (T=%d, C=%d, "
                     "H=4, G=2 %s); backward without the saved hs == with it", f32 ? "f32" : "f64", (int)c.T, (int)C,
                     tiled ? "tiled" : "blocked");
            check(rc == 0 && same && erec <= (f32 ? 1e-5 : 1e-12), name,
                  "rc %d, bit-identical %d, recomputed vs saved hs: max |diff|/(1+|x|) %.3g", rc, same, erec);
        }
        free_prob(&p);
    }
    /* tiled_groups is a flag: any nonzero value selects the tiled mapping */
    cfg_t c = {1, 9, 4, 2, 4, 3, G_MOD, 1, 0, 0, 1.0, NULL, 0};
    prob_t p = make_prob(c);
    res_t r1 = res_new(&p), r2 = res_new(&p);
    hb_mixer_args_t a;
    memset(&a, 0, sizeof a);
    a.dim[0] = c.B, a.dim[1] = c.T, a.dim[2] = c.H, a.dim[3] = c.G, a.dim[4] = c.K, a.dim[5] = c.V;
    a.scalar[0] = 1, a.scalar[1] = 7, a.chunk = 4;
    a.in[0] = p.q, a.in[1] = p.k, a.in[2] = p.v, a.in[3] = p.g, a.o = r1.x[0], a.ht = r1.x[1];
    int rc = m->f64.fwd_chunk(&a);
    rc |= ssd_fwd_chunk_f64(r2.x[0], r2.x[1], NULL, p.q, p.k, p.v, p.g, NULL, 1, 1, NULL, 0, c.B, c.T, c.H, c.G, c.K,
                            c.V, 4);
    check(rc == 0 && !memcmp(r1.x[0], r2.x[0], (size_t)p.nv * sizeof(double)),
          "hb_mixer_ssd: tiled_groups = 7 is read as 1 (a flag)", "rc %d", rc);
    res_free(&r1), res_free(&r2);
    free_prob(&p);
}

/* ---- bad arguments ---- */

static void test_bad_args(void) {
    float x[256] = {0}, h0[24], ht[24];
    const int64_t bad_end[] = {0, 3, 5}, bad_order[] = {0, 4, 2, 6}, good[] = {0, 2, 6};
    int ok = ssd_fwd_ref_f32(x, NULL, x, x, x, x, NULL, 1, 0, NULL, 0, 1, 2, 3, 2, 2, 2) == -1 &&    /* H % G */
             ssd_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, 1, 0, NULL, 0, 1, 2, 2, 1, 2, 2, 0) == -1 && /* C = 0 */
             ssd_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, 1, 2, NULL, 0, 1, 2, 2, 1, 2, 2, 4) == -1 && /* tiled = 2 */
             ssd_bwd_chunk_f32(x, x, x, x, NULL, NULL, NULL, x, x, x, x, NULL, NULL, 1, 0, NULL, 0, 1, 2, 2, 1, 2, 2,
                               16) == -1 && /* NULL do */
             ssd_bwd_ref_f32(NULL, NULL, NULL, NULL, NULL, x, NULL, x, x, x, x, NULL, 1, 0, NULL, 0, -1, 2, 1, 1, 2,
                             2) == -1 && /* B < 0 */
             ssd_step_f32(x, x, x, x, x, x, 1, 0, 1, 1, 1, 0, 2) == -1 &&                               /* K = 0 */
             ssd_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, 1, 0, NULL, 0, 1, 2, 2, 1, 2, 2, 4) == 0;
    check(ok, "bad dimensions (H % G, C = 0, tiled = 2, NULL do, B < 0, K = 0) return -1", "a call returned 0");
    ok = ssd_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, 1, 0, bad_end, 2, 1, 6, 2, 1, 2, 2, 4) == -1 &&
         ssd_fwd_ref_f32(x, NULL, x, x, x, x, NULL, 1, 0, bad_order, 3, 1, 6, 2, 1, 2, 2) == -1 &&
         ssd_bwd_chunk_f32(x, x, x, x, NULL, x, NULL, x, x, x, x, NULL, NULL, 1, 0, good, 2, 2, 6, 2, 1, 2, 2, 4) == -1 &&
         ssd_bwd_ref_f32(x, x, x, x, NULL, x, NULL, x, x, x, x, NULL, 1, 0, good, 0, 1, 6, 2, 1, 2, 2) == -1 &&
         ssd_fwd_chunk_f32(x, NULL, NULL, x, x, x, x, NULL, 1, 0, good, 2, 1, 6, 2, 1, 2, 2, 4) == 0;
    check(ok, "bad cu_seqlens (cu[N] != T, decreasing, B != 1, N = 0) return -1", "a call returned 0");
    for (int i = 0; i < 24; i++) h0[i] = (float)(i + 1), ht[i] = 0;
    int rc = ssd_fwd_chunk_f32(x, ht, NULL, x, x, x, x, h0, 1, 0, NULL, 0, 1, 0, 3, 1, 2, 4, 64);
    check(rc == 0 && !memcmp(h0, ht, sizeof h0), "T = 0: fwd_chunk returns ht = h0", "rc %d", rc);
}

/* every allocation of the chunked paths and the reference, made to fail in turn: -1 (chunk offsets,
 * partial dq/dk buffers and scratch in the chunked backward; scratch in the others) */
static void test_alloc_fail(void) {
    static const int64_t cu[] = {0, 50};
    cfg_t c = {1, 50, 4, 1, 8, 6, G_MOD, 0, 1, 1, 1.0, cu, 1}; /* packed, one (document, group): head blocks + partials */
    prob_t p = make_prob(c);
    int good = 1, fails = 0;
    for (int f = 0; f < 4; f++)
        for (int64_t n = 0; n < 6; n++) {
            res_t r = res_new(&p);
            const int64_t before = hb_alloc_injected();
            hb_alloc_fail_after(n);
            double **x = r.x;
            int rc;
            if (f == 0) rc = ssd_fwd_chunk_f64(x[0], x[1], NULL, p.q, p.k, p.v, p.g, p.h0, 1, 0, cu, 1, 1, 50, 4, 1, 8, 6, 16);
            else if (f == 1) rc = ssd_bwd_chunk_f64(x[2], x[3], x[4], x[5], x[6], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0, NULL, 1, 0,
                                                    cu, 1, 1, 50, 4, 1, 8, 6, 16);
            else if (f == 2) rc = ssd_fwd_ref_f64(x[0], x[1], p.q, p.k, p.v, p.g, p.h0, 1, 0, cu, 1, 1, 50, 4, 1, 8, 6);
            else rc = ssd_bwd_ref_f64(x[2], x[3], x[4], x[5], x[6], p.w, p.wh, p.q, p.k, p.v, p.g, p.h0, 1, 0, cu, 1, 1, 50, 4,
                                      1, 8, 6);
            hb_alloc_fail_after(-1);
            const int injected = hb_alloc_injected() > before;
            fails += injected;
            good &= injected ? rc == -1 : rc == 0;
            res_free(&r);
        }
    check(good && fails == 7, "each of the 7 allocations failing in turn returns -1 (fwd/bwd, chunk/ref, packed)", "injected %d", fails);
    free_prob(&p);
}

int main(void) {
    test_chunk_vs_ref();
    test_odd_chunks();
    test_groups();
    /* gradient checks: T = 21 with C = 8 (two full chunks and a tail), T = 13 with C = 16 (one partial) */
    test_gradcheck((cfg_t){2, 21, 2, 1, 5, 4, G_NEAR0, 0, 1, 1, 1.0, NULL, 0}, 8);
    test_gradcheck((cfg_t){2, 21, 4, 2, 5, 4, G_MOD, 1, 1, 1, 0.7, NULL, 0}, 8);
    test_gradcheck((cfg_t){1, 21, 4, 2, 5, 4, G_M20, 0, 1, 1, 1.0, NULL, 0}, 8);
    test_gradcheck((cfg_t){1, 21, 4, 1, 4, 5, G_MIX, 0, 0, 1, 1.0, NULL, 0}, 8);
    test_gradcheck((cfg_t){2, 13, 2, 2, 4, 5, G_MIX, 0, 1, 0, 1.0, NULL, 0}, 16);
    test_hs_null_accum();
    test_decode();
    test_packed();
    test_threads();
    test_descriptor();
    test_bad_args();
    test_alloc_fail();
    return tap_done();
}
