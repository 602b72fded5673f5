/* test_conv1d.c — TAP tests for kernels/conv1d.c (fla's ShortConvolution).
 *
 * Checks: the forward (f64 and f32) against an independent naive loop written here, for several
 * shapes (T < W−1, T = 1, D not a multiple of the channel block, W = 1…4), with/without bias, silu
 * and an input cache; float64 central-difference gradient checks of dx, dw, db with and without silu
 * and cache; f32 backward vs f64 backward; accumulation and NULL gradients; decode steps reproduce
 * the forward (from zeros and from a cache) and leave the cache conv1d_cache_from_seq computes;
 * cache continuation (forward on [0,t) then on [t,T) with the cache = forward on [0,T)); results are
 * bit-identical for 1 and 2 threads. Packed sequences (cu_seqlens): documents {1, 63, 64, 65, 200} in
 * one row give each document's own outputs, per-document caches and gradients (dw, db summed over the
 * documents; f32 rel ≤ 1e-5), with and without per-document input caches, so no tap crosses a boundary;
 * float64 finite differences through the packed kernel (an empty document included); bad layouts −1.
 */
#include "../kernels/conv1d.h"
#include "../kernels/parallel.h"
#include "ktest.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The spec's formula, element by element (independent of the kernel's loop structure). */
static void naive_conv(double *y, const double *x, const double *w, const double *b, int act, const double *cache,
                       int64_t B, int64_t T, int64_t D, int64_t W) {
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = 0; c < D; c++) {
                double z = b ? b[c] : 0;
                for (int64_t i = 0; i < W; i++) {
                    const int64_t tau = t - (W - 1) + i;
                    double xv = 0;
                    if (tau >= 0) xv = x[(bb * T + tau) * D + c];
                    else if (cache) xv = cache[(bb * (W - 1) + (W - 1) + tau) * D + c];
                    z += w[c * W + i] * xv;
                }
                y[(bb * T + t) * D + c] = act ? z / (1 + exp(-z)) : z;
            }
}

static void test_forward(int64_t B, int64_t T, int64_t D, int64_t W, int act, int with_b, int with_cache) {
    const int64_t n = B * T * D, nc = B * (W - 1) * D;
    double *x = drand_vec(n, 2), *w = drand_vec(D * W, 1), *b = with_b ? drand_vec(D, 1) : NULL;
    double *cache = with_cache ? drand_vec(nc, 2) : NULL, *y_ref = dzeros(n), *y64 = dzeros(n);
    naive_conv(y_ref, x, w, b, act, cache, B, T, D, W);
    int rc = conv1d_fwd_f64(y64, x, w, b, act, cache, NULL, 0, B, T, D, W);
    float *xf = to_f(x, n), *wf = to_f(w, D * W), *bf = to_f(b, D), *cf = to_f(cache, nc), *y32 = fzeros(n);
    rc |= conv1d_fwd_f32(y32, xf, wf, bf, act, cf, NULL, 0, B, T, D, W);
    const double e64 = rel_err_dd(y64, y_ref, n), e32 = rel_err_fd(y32, y_ref, n);
    char name[200];
    snprintf(name, sizeof name, "fwd f64/f32 == naive loop (B=%ld T=%ld D=%ld W=%ld act=%d bias=%d cache=%d)", (long)B,
             (long)T, (long)D, (long)W, act, with_b, with_cache);
    check(rc == 0 && e64 <= 1e-12 && e32 <= 1e-5, name, "rel err f64 %.3e f32 %.3e", e64, e32);
    free(x), free(w), free(b), free(cache), free(y_ref), free(y64), free(xf), free(wf), free(bf), free(cf), free(y32);
}

typedef struct {
    double *x, *w, *b, *cache, *wl, *y;
    int act;
    int64_t B, T, D, W;
} prob_t;

static double loss_of(const prob_t *p) {
    conv1d_fwd_f64(p->y, p->x, p->w, p->b, p->act, p->cache, NULL, 0, p->B, p->T, p->D, p->W);
    double s = 0;
    for (int64_t i = 0; i < p->B * p->T * p->D; i++) s += p->y[i] * p->wl[i];
    return s;
}

static double fd_err(const prob_t *p, double *v, int64_t n, const double *grad) {
    const double eps = 1e-6;
    double maxdiff = 0, maxnum = 0;
    for (int64_t i = 0; i < n; i++) {
        const double v0 = v[i];
        v[i] = v0 + eps;
        const double lp = loss_of(p);
        v[i] = v0 - eps;
        const double lm = loss_of(p);
        v[i] = v0;
        const double num = (lp - lm) / (2 * eps);
        maxdiff = fmax(maxdiff, fabs(num - grad[i]));
        maxnum = fmax(maxnum, fabs(num));
    }
    return maxdiff / fmax(1e-3, maxnum);
}

static void test_gradients(int64_t B, int64_t T, int64_t D, int64_t W, int act, int with_cache) {
    const int64_t n = B * T * D;
    prob_t p = {drand_vec(n, 2), drand_vec(D * W, 1), drand_vec(D, 1), with_cache ? drand_vec(B * (W - 1) * D, 2) : NULL,
                drand_vec(n, 1), dzeros(n), act, B, T, D, W};
    double *dx = dzeros(n), *dw = dzeros(D * W), *db = dzeros(D);
    conv1d_bwd_f64(dx, dw, db, p.wl, p.x, p.w, p.b, act, p.cache, NULL, 0, B, T, D, W);
    const double ex = fd_err(&p, p.x, n, dx), ew = fd_err(&p, p.w, D * W, dw), eb = fd_err(&p, p.b, D, db);
    char name[200];
    snprintf(name, sizeof name, "gradcheck f64 (B=%ld T=%ld D=%ld W=%ld act=%s cache=%d): dx dw db", (long)B, (long)T,
             (long)D, (long)W, act ? "silu" : "none", with_cache);
    check(ex <= 1e-6 && ew <= 1e-6 && eb <= 1e-6, name, "rel err dx %.3e dw %.3e db %.3e", ex, ew, eb);
    free(p.x), free(p.w), free(p.b), free(p.cache), free(p.wl), free(p.y), free(dx), free(dw), free(db);
}

static void test_backward_f32(int64_t B, int64_t T, int64_t D, int64_t W, int act) {
    const int64_t n = B * T * D, nc = B * (W - 1) * D;
    double *x = drand_vec(n, 2), *w = drand_vec(D * W, 1), *b = drand_vec(D, 1), *cache = drand_vec(nc, 2);
    double *dy = drand_vec(n, 1), *dx = dzeros(n), *dw = dzeros(D * W), *db = dzeros(D);
    conv1d_bwd_f64(dx, dw, db, dy, x, w, b, act, cache, NULL, 0, B, T, D, W);
    float *xf = to_f(x, n), *wf = to_f(w, D * W), *bf = to_f(b, D), *cf = to_f(cache, nc), *dyf = to_f(dy, n);
    float *dxf = fzeros(n), *dwf = fzeros(D * W), *dbf = fzeros(D);
    conv1d_bwd_f32(dxf, dwf, dbf, dyf, xf, wf, bf, act, cf, NULL, 0, B, T, D, W);
    const double e = fmax(rel_err_fd(dxf, dx, n), fmax(rel_err_fd(dwf, dw, D * W), rel_err_fd(dbf, db, D)));
    char name[200];
    snprintf(name, sizeof name, "bwd f32 == bwd f64 (B=%ld T=%ld D=%ld W=%ld act=%d)", (long)B, (long)T, (long)D,
             (long)W, act);
    check(e <= 1e-4, name, "rel err %.3e", e);

    /* accumulation: start from 1; NULL pointers: each gradient alone */
    double *ax = dzeros(n), *aw = dzeros(D * W), *ab = dzeros(D), *nx = dzeros(n), *nw = dzeros(D * W), *nb = dzeros(D);
    for (int64_t i = 0; i < n; i++) ax[i] = 1;
    for (int64_t i = 0; i < D * W; i++) aw[i] = 1;
    for (int64_t i = 0; i < D; i++) ab[i] = 1;
    conv1d_bwd_f64(ax, aw, ab, dy, x, w, b, act, cache, NULL, 0, B, T, D, W);
    int acc_ok = 1, null_ok = 1;
    for (int64_t i = 0; i < n; i++) acc_ok &= fabs(ax[i] - 1 - dx[i]) <= 1e-12 * (1 + fabs(dx[i]));
    for (int64_t i = 0; i < D * W; i++) acc_ok &= fabs(aw[i] - 1 - dw[i]) <= 1e-12 * (1 + fabs(dw[i]));
    for (int64_t i = 0; i < D; i++) acc_ok &= fabs(ab[i] - 1 - db[i]) <= 1e-12 * (1 + fabs(db[i]));
    conv1d_bwd_f64(nx, NULL, NULL, dy, x, w, b, act, cache, NULL, 0, B, T, D, W);
    conv1d_bwd_f64(NULL, nw, NULL, dy, x, w, b, act, cache, NULL, 0, B, T, D, W);
    conv1d_bwd_f64(NULL, NULL, nb, dy, x, w, b, act, cache, NULL, 0, B, T, D, W);
    null_ok &= conv1d_bwd_f64(NULL, NULL, NULL, dy, x, w, b, act, cache, NULL, 0, B, T, D, W) == 0;
    null_ok &= memcmp(nx, dx, (size_t)n * sizeof(double)) == 0 && memcmp(nw, dw, (size_t)(D * W) * sizeof(double)) == 0 &&
               memcmp(nb, db, (size_t)D * sizeof(double)) == 0;
    check(acc_ok, "backward accumulates into dx, dw, db", acc_ok ? "exact" : "mismatch");
    check(null_ok, "backward with NULL gradient pointers computes the others unchanged", null_ok ? "same" : "mismatch");
    free(x), free(w), free(b), free(cache), free(dy), free(dx), free(dw), free(db), free(xf), free(wf), free(bf);
    free(cf), free(dyf), free(dxf), free(dwf), free(dbf), free(ax), free(aw), free(ab), free(nx), free(nw), free(nb);
}

/* Decode steps (f64 and f32) reproduce the forward, from zero history and from a cache, and leave the
 * cache that conv1d_cache_from_seq computes from the whole sequence. */
static void test_decode(int64_t B, int64_t T, int64_t D, int64_t W, int act, int with_cache) {
    const int64_t n = B * T * D, nc = B * (W - 1) * D;
    double *x = drand_vec(n, 2), *w = drand_vec(D * W, 1), *b = drand_vec(D, 1);
    double *cache0 = with_cache ? drand_vec(nc, 2) : NULL, *y_ref = dzeros(n), *y = dzeros(n);
    double *cache = dzeros(nc), *xt = dzeros(B * D), *yt = dzeros(B * D), *cfin = dzeros(nc);
    conv1d_fwd_f64(y_ref, x, w, b, act, cache0, NULL, 0, B, T, D, W);
    if (cache0) memcpy(cache, cache0, (size_t)nc * sizeof(double));
    float *xf = to_f(x, n), *wf = to_f(w, D * W), *bf = to_f(b, D), *c0f = to_f(cache0, nc), *yrf = fzeros(n);
    float *cachef = fzeros(nc), *xtf = fzeros(B * D), *ytf = fzeros(B * D), *yf = fzeros(n);
    conv1d_fwd_f32(yrf, xf, wf, bf, act, c0f, NULL, 0, B, T, D, W);
    if (c0f) memcpy(cachef, c0f, (size_t)nc * sizeof(float));
    for (int64_t t = 0; t < T; t++) {
        for (int64_t bb = 0; bb < B; bb++) {
            memcpy(xt + bb * D, x + (bb * T + t) * D, (size_t)D * sizeof(double));
            memcpy(xtf + bb * D, xf + (bb * T + t) * D, (size_t)D * sizeof(float));
        }
        conv1d_step_f64(yt, cache, xt, w, b, act, B, D, W);
        conv1d_step_f32(ytf, cachef, xtf, wf, bf, act, B, D, W);
        for (int64_t bb = 0; bb < B; bb++) {
            memcpy(y + (bb * T + t) * D, yt + bb * D, (size_t)D * sizeof(double));
            memcpy(yf + (bb * T + t) * D, ytf + bb * D, (size_t)D * sizeof(float));
        }
    }
    const double e = rel_err_dd(y, y_ref, n);
    double ef = 0;
    for (int64_t i = 0; i < n; i++) ef = fmax(ef, fabs((double)yf[i] - yrf[i]));
    /* expected final cache: the last W−1 rows of [cache0; x] */
    int cache_ok = 1;
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t j = 0; j < W - 1; j++)
            for (int64_t c = 0; c < D; c++) {
                const int64_t tau = T - (W - 1) + j;
                const double want = tau >= 0 ? x[(bb * T + tau) * D + c]
                                    : cache0 ? cache0[(bb * (W - 1) + (W - 1) + tau) * D + c] : 0;
                cache_ok &= cache[(bb * (W - 1) + j) * D + c] == want;
            }
    if (T >= W - 1 || !with_cache) { /* cache_from_seq assumes zero history before the sequence */
        conv1d_cache_from_seq_f64(cfin, x, NULL, 0, B, T, D, W);
        cache_ok &= memcmp(cfin, cache, (size_t)nc * sizeof(double)) == 0;
    }
    char name[200];
    snprintf(name, sizeof name, "decode steps == forward, final cache == last W-1 inputs (= cache_from_seq) (B=%ld T=%ld D=%ld W=%ld act=%d cache=%d)",
             (long)B, (long)T, (long)D, (long)W, act, with_cache);
    check(e <= 1e-14 && ef <= 1e-6 && cache_ok, name, "rel err f64 %.3e, max abs f32 %.3e, cache %s", e, ef,
          cache_ok ? "same" : "differs");
    free(x), free(w), free(b), free(cache0), free(y_ref), free(y), free(cache), free(xt), free(yt), free(cfin);
    free(xf), free(wf), free(bf), free(c0f), free(yrf), free(cachef), free(xtf), free(ytf), free(yf);
}

/* Forward on [0,t), cache_from_seq, forward on [t,T) with the cache == forward on [0,T). */
static void test_continuation(int64_t B, int64_t T, int64_t D, int64_t W, int act, int64_t tp) {
    const int64_t n = B * T * D, nc = B * (W - 1) * D, tb = T - tp;
    double *x = drand_vec(n, 2), *w = drand_vec(D * W, 1), *b = drand_vec(D, 1), *y_ref = dzeros(n);
    conv1d_fwd_f64(y_ref, x, w, b, act, NULL, NULL, 0, B, T, D, W);
    double *xa = dzeros(B * tp * D), *xb = dzeros(B * tb * D), *ya = dzeros(B * tp * D), *yb = dzeros(B * tb * D);
    double *cache = dzeros(nc);
    for (int64_t bb = 0; bb < B; bb++) {
        memcpy(xa + bb * tp * D, x + bb * T * D, (size_t)(tp * D) * sizeof(double));
        memcpy(xb + bb * tb * D, x + (bb * T + tp) * D, (size_t)(tb * D) * sizeof(double));
    }
    conv1d_fwd_f64(ya, xa, w, b, act, NULL, NULL, 0, B, tp, D, W);
    conv1d_cache_from_seq_f64(cache, xa, NULL, 0, B, tp, D, W);
    conv1d_fwd_f64(yb, xb, w, b, act, cache, NULL, 0, B, tb, D, W);
    int same = 1;
    for (int64_t bb = 0; bb < B; bb++) {
        same &= memcmp(ya + bb * tp * D, y_ref + bb * T * D, (size_t)(tp * D) * sizeof(double)) == 0;
        same &= memcmp(yb + bb * tb * D, y_ref + (bb * T + tp) * D, (size_t)(tb * D) * sizeof(double)) == 0;
    }
    char name[200];
    snprintf(name, sizeof name, "cache continuation: fwd [0,%ld) + cache + fwd [%ld,%ld) == fwd [0,%ld) (B=%ld D=%ld W=%ld act=%d)",
             (long)tp, (long)tp, (long)T, (long)T, (long)B, (long)D, (long)W, act);
    check(same, name, same ? "bit-identical" : "differs");
    free(x), free(w), free(b), free(y_ref), free(xa), free(xb), free(ya), free(yb), free(cache);
}

static void test_threads(int64_t B, int64_t T, int64_t D, int64_t W) {
    const int64_t n = B * T * D, nc = B * (W - 1) * D;
    double *xd = drand_vec(n, 2), *wd = drand_vec(D * W, 1), *bd = drand_vec(D, 1), *cd = drand_vec(nc, 2);
    double *dyd = drand_vec(n, 1);
    float *x = to_f(xd, n), *w = to_f(wd, D * W), *b = to_f(bd, D), *cache = to_f(cd, nc), *dy = to_f(dyd, n);
    float *out[2][4];
    for (int run = 0; run < 2; run++) {
        hb_threads_set(run + 1);
        float **r = out[run];
        r[0] = fzeros(n), r[1] = fzeros(n), r[2] = fzeros(D * W), r[3] = fzeros(D);
        conv1d_fwd_f32(r[0], x, w, b, 1, cache, NULL, 0, B, T, D, W);
        conv1d_bwd_f32(r[1], r[2], r[3], dy, x, w, b, 1, cache, NULL, 0, B, T, D, W);
    }
    const int64_t sz[4] = {n, n, D * W, D};
    int same = 1;
    for (int i = 0; i < 4; i++) same &= memcmp(out[0][i], out[1][i], (size_t)sz[i] * sizeof(float)) == 0;
    check(same, "1 thread and 2 threads give bit-identical results (fwd, bwd dx dw db)", same ? "identical" : "differ");
    for (int run = 0; run < 2; run++)
        for (int i = 0; i < 4; i++) free(out[run][i]);
    free(xd), free(wd), free(bd), free(cd), free(dyd), free(x), free(w), free(b), free(cache), free(dy);
    hb_threads_set(2);
}

/* ---- packed sequences ---- */
static void test_packed(int64_t D, int64_t W, int act, int with_cache) {
    int64_t cu[PACK_N + 1];
    const int64_t T = pack_cu(cu, PACK_LENS, PACK_N), N = PACK_N, n = T * D, nc = N * (W - 1) * D;
    double *xd = drand_vec(n, 2), *wd = drand_vec(D * W, 1), *bd = drand_vec(D, 1), *cd = drand_vec(nc, 2);
    double *dyd = drand_vec(n, 1);
    float *x = to_f(xd, n), *w = to_f(wd, D * W), *b = to_f(bd, D), *cin = with_cache ? to_f(cd, nc) : NULL;
    float *dy = to_f(dyd, n), *r[2][5];
    const int64_t len[5] = {n, nc, n, D * W, D}; /* y, cache out, dx, dw, db */
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 5; i++) r[a][i] = fzeros(len[i]);
    int rc = conv1d_fwd_f32(r[0][0], x, w, b, act, cin, cu, N, 1, T, D, W);
    rc |= conv1d_cache_from_seq_f32(r[0][1], x, cu, N, 1, T, D, W);
    rc |= conv1d_bwd_f32(r[0][2], r[0][3], r[0][4], dy, x, w, b, act, cin, cu, N, 1, T, D, W);
    for (int64_t d = 0; d < N; d++) { /* document d alone (dw, db accumulate over the documents) */
        const int64_t L = cu[d + 1] - cu[d], o = cu[d] * D, oc = d * (W - 1) * D;
        const float *c = cin ? cin + oc : NULL;
        rc |= conv1d_fwd_f32(r[1][0] + o, x + o, w, b, act, c, NULL, 0, 1, L, D, W);
        rc |= conv1d_cache_from_seq_f32(r[1][1] + oc, x + o, NULL, 0, 1, L, D, W);
        rc |= conv1d_bwd_f32(r[1][2] + o, r[1][3], r[1][4], dy + o, x + o, w, b, act, c, NULL, 0, 1, L, D, W);
    }
    double e = 0;
    for (int i = 0; i < 5; i++) {
        double *ref = dzeros(len[i]);
        for (int64_t j = 0; j < len[i]; j++) ref[j] = r[1][i][j];
        e = fmax(e, rel_err_fd(r[0][i], ref, len[i]));
        free(ref);
    }
    char name[200];
    snprintf(name, sizeof name, "packed {1,63,64,65,200} == each document alone, f32 (D=%ld W=%ld act=%d cache=%d): y, "
             "cache, dx, dw, db", (long)D, (long)W, act, with_cache);
    check(rc == 0 && e <= 1e-5, name, "rc %d, max rel err %.3e", rc, e);
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 5; i++) free(r[a][i]);
    free(xd), free(wd), free(bd), free(cd), free(dyd), free(x), free(w), free(b), free(cin), free(dy);
}

static const int64_t *PCU;
static int64_t PN;
static double packed_loss(double *y, const double *x, const double *w, const double *b, const double *c,
                          const double *dy, int act, int64_t T, int64_t D, int64_t W) {
    conv1d_fwd_f64(y, x, w, b, act, c, PCU, PN, 1, T, D, W);
    double L = 0;
    for (int64_t i = 0; i < T * D; i++) L += y[i] * dy[i];
    return L;
}

static void test_packed_gradcheck(int act) {
    const int64_t lens[] = {1, 3, 0, 4, 6}, N = 5, D = 3, W = 4;
    int64_t cu[6];
    const int64_t T = pack_cu(cu, lens, (int)N), n = T * D;
    double *x = drand_vec(n, 2), *w = drand_vec(D * W, 1), *b = drand_vec(D, 1), *c = drand_vec(N * (W - 1) * D, 2);
    double *dy = drand_vec(n, 1), *y = dzeros(n), *g[3] = {dzeros(n), dzeros(D * W), dzeros(D)};
    PCU = cu, PN = N;
    int rc = conv1d_bwd_f64(g[0], g[1], g[2], dy, x, w, b, act, c, cu, N, 1, T, D, W);
    double *ps[3] = {x, w, b}, worst = 0;
    const int64_t ln[3] = {n, D * W, D};
    for (int k = 0; k < 3; k++) {
        double m = 1e-3, e = 0;
        for (int64_t j = 0; j < ln[k]; j++) {
            const double p0 = ps[k][j];
            ps[k][j] = p0 + 1e-6;
            const double lp = packed_loss(y, x, w, b, c, dy, act, T, D, W);
            ps[k][j] = p0 - 1e-6;
            const double lm = packed_loss(y, x, w, b, c, dy, act, T, D, W);
            ps[k][j] = p0;
            const double num = (lp - lm) / 2e-6;
            m = fmax(m, fabs(num));
            e = fmax(e, fabs(num - g[k][j]));
        }
        worst = fmax(worst, e / m);
    }
    char name[160];
    snprintf(name, sizeof name, "packed gradcheck f64 (documents {1,3,0,4,6}, per-document caches, act=%d): dx dw db", act);
    check(rc == 0 && worst <= 1e-6, name, "rc %d rel err %.3e", rc, worst);
    PCU = NULL, PN = 0;
    free(x), free(w), free(b), free(c), free(dy), free(y), free(g[0]), free(g[1]), free(g[2]);
}

static void test_packed_bad(void) {
    const int64_t T = 8, D = 2, W = 3;
    float *x = fzeros(2 * T * D), *o = fzeros(2 * T * D), *w = fzeros(D * W);
    bad_pack_t bad[8];
    int nb = bad_packs(T, bad), all = 1;
    for (int i = 0; i < nb; i++) {
        const int64_t *cu = bad[i].cu, N = bad[i].N, B = bad[i].B;
        int r[3] = {conv1d_fwd_f32(o, x, w, NULL, 0, NULL, cu, N, B, T, D, W),
                    conv1d_bwd_f32(o, w, NULL, x, x, w, NULL, 0, NULL, cu, N, B, T, D, W),
                    conv1d_cache_from_seq_f32(o, x, cu, N, B, T, D, W)};
        int good = r[0] == -1 && r[1] == -1 && r[2] == -1;
        if (!good) diag("not refused: %s", bad[i].what);
        all &= good;
    }
    check(all, "packed: bad cu_seqlens (start, end, order, B != 1, N = 0) return -1 from every function", "%d layouts", nb);
    free(x), free(o), free(w);
}

int main(void) {
    rng_seed(0xD1B54A32D192ED03ull);
    hb_threads_set(2);
    static const int64_t shapes[][4] = {
        /* B, T, D, W */
        {1, 1, 5, 4}, {2, 2, 7, 4}, {2, 37, 70, 4}, {1, 100, 130, 3}, {3, 130, 16, 1}, {2, 150, 65, 2}, {1, 64, 64, 4},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t *s = shapes[i];
        for (int variant = 0; variant < 4; variant++)
            test_forward(s[0], s[1], s[2], s[3], variant & 1, (variant >> 1) & 1, (int)((i + (size_t)variant) % 2));
    }
    for (int act = 0; act < 2; act++) {
        test_gradients(2, 13, 5, 4, act, 0);
        test_gradients(2, 13, 5, 4, act, 1);
        test_gradients(1, 2, 3, 4, act, 1); /* T < W − 1: the cache feeds every tap */
        test_gradients(2, 9, 70, 3, act, 1);
        test_gradients(1, 6, 4, 1, act, 0);
    }
    test_backward_f32(2, 130, 70, 4, 1);
    test_backward_f32(3, 50, 130, 4, 0);
    for (int act = 0; act < 2; act++) {
        test_decode(2, 40, 70, 4, act, 0);
        test_decode(2, 40, 70, 4, act, 1);
        test_decode(1, 2, 9, 4, act, 1);
        test_decode(2, 10, 9, 1, act, 0);
    }
    test_continuation(2, 100, 70, 4, 1, 37);
    test_continuation(2, 100, 70, 4, 0, 1);
    test_continuation(1, 50, 33, 4, 1, 2);
    test_continuation(1, 80, 33, 3, 1, 50);
    test_continuation(2, 20, 8, 1, 1, 7);
    test_threads(2, 300, 300, 4);
    for (int act = 0; act < 2; act++) {
        test_packed(70, 4, act, act);
        test_packed(300, 3, act, 1 - act);
        test_packed_gradcheck(act);
    }
    test_packed(9, 1, 1, 0);
    test_packed_bad();
    return tap_done();
}
