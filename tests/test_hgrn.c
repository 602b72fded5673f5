/* test_hgrn.c — TAP tests for kernels/hgrn.c.
 *
 * Checks: chunked forward (and the f32 reference) against the float64 reference for several shapes
 * and chunk sizes, with random gates and with channels whose forget gate is near 0 (g ≈ −25) or
 * near 1 (g ≈ −1e−6), with and without h0, several channel blocks, and the one-chunk path; float64
 * central-difference gradient checks of both backward paths w.r.t. x and g; f32 chunked backward vs
 * the float64 reference backward; accumulation and NULL gradients; decode steps reproduce the
 * reference and its final state; prefill + decode and prefill + chunked continuation; results are
 * bit-identical for 1 and 2 threads. Packed sequences (cu_seqlens): documents {1, 63, 64, 65, 200} packed
 * in one row give each document's own outputs, final states and gradients (f32, rel ≤ 1e-5) in both
 * forms and for several chunk lengths, an empty document keeps its h0, float64 finite differences
 * through the packed kernels, and bad layouts are refused with −1.
 */
#include "../kernels/hgrn.h"
#include "../kernels/parallel.h"
#include "ktest.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Log forget gates (B,T,D): logsigmoid(3u); with extreme = 1, channel c%3==0 gets g ≈ −25 (gate ≈ 1e−11)
 * and c%3==1 gets g ≈ −1e−6 (gate ≈ 1). */
static double *make_g(int64_t B, int64_t T, int64_t D, int extreme) {
    double *g = dzeros(B * T * D);
    for (int64_t i = 0; i < B * T * D; i++) {
        const double z = 3 * urand();
        g[i] = fmin(z, 0) - log1p(exp(-fabs(z)));
        if (extreme && i % D % 3 == 0) g[i] = -25 + urand();
        if (extreme && i % D % 3 == 1) g[i] = -1e-6 * (1.5 + urand());
    }
    return g;
}

static void slice_time(double *dst, const double *src, int64_t B, int64_t T, int64_t D, int64_t t0, int64_t t1) {
    for (int64_t b = 0; b < B; b++)
        memcpy(dst + b * (t1 - t0) * D, src + (b * T + t0) * D, (size_t)((t1 - t0) * D) * sizeof(double));
}

static void test_forward(int64_t B, int64_t T, int64_t D, int64_t C, int extreme, int with_h0) {
    const int64_t n = B * T * D;
    double *x = drand_vec(n, 1), *g = make_g(B, T, D, extreme), *h0 = with_h0 ? drand_vec(B * D, 2) : NULL;
    double *o_ref = dzeros(n), *ht_ref = dzeros(B * D), *o64 = dzeros(n), *ht64 = dzeros(B * D);
    hgrn_fwd_ref_f64(o_ref, ht_ref, x, g, h0, NULL, 0, B, T, D);
    hgrn_fwd_chunk_f64(o64, ht64, x, g, h0, NULL, 0, B, T, D, C);
    float *xf = to_f(x, n), *gf = to_f(g, n), *h0f = to_f(h0, B * D);
    float *o32 = fzeros(n), *ht32 = fzeros(B * D), *or32 = fzeros(n), *htr32 = fzeros(B * D);
    hgrn_fwd_chunk_f32(o32, ht32, xf, gf, h0f, NULL, 0, B, T, D, C);
    hgrn_fwd_ref_f32(or32, htr32, xf, gf, h0f, NULL, 0, B, T, D);
    double e64 = fmax(rel_err_dd(o64, o_ref, n), rel_err_dd(ht64, ht_ref, B * D));
    double e32 = fmax(rel_err_fd(o32, o_ref, n), rel_err_fd(ht32, ht_ref, B * D));
    double er32 = fmax(rel_err_fd(or32, o_ref, n), rel_err_fd(htr32, ht_ref, B * D));
    char name[200];
    snprintf(name, sizeof name, "fwd chunk f64 == ref (B=%ld T=%ld D=%ld C=%ld gates=%s h0=%d)", (long)B, (long)T,
             (long)D, (long)C, extreme ? "extreme" : "random", with_h0);
    check(e64 <= 1e-10, name, "rel err %.3e", e64);
    snprintf(name, sizeof name, "fwd chunk f32 == ref (B=%ld T=%ld D=%ld C=%ld gates=%s h0=%d)", (long)B, (long)T,
             (long)D, (long)C, extreme ? "extreme" : "random", with_h0);
    check(e32 <= 1e-4 && er32 <= 1e-4, name, "rel err chunk %.3e, ref f32 %.3e", e32, er32);
    free(x), free(g), free(h0), free(o_ref), free(ht_ref), free(o64), free(ht64);
    free(xf), free(gf), free(h0f), free(o32), free(ht32), free(or32), free(htr32);
}

static double loss_of(const double *x, const double *g, const double *h0, const double *w, double *o,
                      int64_t B, int64_t T, int64_t D) {
    hgrn_fwd_ref_f64(o, NULL, x, g, h0, NULL, 0, B, T, D);
    double s = 0;
    for (int64_t i = 0; i < B * T * D; i++) s += o[i] * w[i];
    return s;
}

static double fd_err(double *p, const double *grad, const double *x, const double *g, const double *h0,
                     const double *w, double *o, int64_t B, int64_t T, int64_t D) {
    const double eps = 1e-6;
    double maxdiff = 0, maxnum = 0;
    for (int64_t i = 0; i < B * T * D; i++) {
        const double p0 = p[i];
        p[i] = p0 + eps;
        const double lp = loss_of(x, g, h0, w, o, B, T, D);
        p[i] = p0 - eps;
        const double lm = loss_of(x, g, h0, w, o, B, T, D);
        p[i] = p0;
        const double num = (lp - lm) / (2 * eps);
        maxdiff = fmax(maxdiff, fabs(num - grad[i]));
        maxnum = fmax(maxnum, fabs(num));
    }
    return maxdiff / fmax(1e-3, maxnum);
}

static void test_gradients(int64_t B, int64_t T, int64_t D, int64_t C, int extreme, int with_h0) {
    const int64_t n = B * T * D;
    double *x = drand_vec(n, 1), *g = make_g(B, T, D, extreme), *h0 = with_h0 ? drand_vec(B * D, 2) : NULL;
    double *w = drand_vec(n, 1), *o = dzeros(n);
    hgrn_fwd_ref_f64(o, NULL, x, g, h0, NULL, 0, B, T, D);
    for (int path = 0; path < 2; path++) {
        double *dx = dzeros(n), *dg = dzeros(n), *otmp = dzeros(n);
        if (path == 0) hgrn_bwd_ref_f64(dx, dg, w, g, o, h0, NULL, 0, B, T, D);
        else hgrn_bwd_chunk_f64(dx, dg, w, g, o, h0, NULL, 0, B, T, D, C);
        const double ex = fd_err(x, dx, x, g, h0, w, otmp, B, T, D);
        const double eg = fd_err(g, dg, x, g, h0, w, otmp, B, T, D);
        char name[200];
        snprintf(name, sizeof name, "gradcheck f64 %s (B=%ld T=%ld D=%ld C=%ld gates=%s h0=%d): dx dg",
                 path ? "bwd_chunk" : "bwd_ref", (long)B, (long)T, (long)D, (long)C, extreme ? "extreme" : "random",
                 with_h0);
        check(ex <= 1e-6 && eg <= 1e-6, name, "rel err dx %.3e dg %.3e", ex, eg);
        free(dx), free(dg), free(otmp);
    }
    free(x), free(g), free(h0), free(w), free(o);
}

static void test_backward_f32(int64_t B, int64_t T, int64_t D, int64_t C) {
    const int64_t n = B * T * D;
    double *x = drand_vec(n, 1), *g = make_g(B, T, D, 1), *h0 = drand_vec(B * D, 2), *w = drand_vec(n, 1);
    double *o = dzeros(n), *dx = dzeros(n), *dg = dzeros(n);
    hgrn_fwd_ref_f64(o, NULL, x, g, h0, NULL, 0, B, T, D);
    hgrn_bwd_ref_f64(dx, dg, w, g, o, h0, NULL, 0, B, T, D);
    float *xf = to_f(x, n), *gf = to_f(g, n), *h0f = to_f(h0, B * D), *wf = to_f(w, n), *of = fzeros(n);
    float *dxf = fzeros(n), *dgf = fzeros(n), *rxf = fzeros(n), *rgf = fzeros(n);
    hgrn_fwd_chunk_f32(of, NULL, xf, gf, h0f, NULL, 0, B, T, D, C);
    hgrn_bwd_chunk_f32(dxf, dgf, wf, gf, of, h0f, NULL, 0, B, T, D, C);
    hgrn_bwd_ref_f32(rxf, rgf, wf, gf, of, h0f, NULL, 0, B, T, D);
    const double e = fmax(rel_err_fd(dxf, dx, n), rel_err_fd(dgf, dg, n));
    const double er = fmax(rel_err_fd(rxf, dx, n), rel_err_fd(rgf, dg, n));
    char name[200];
    snprintf(name, sizeof name, "bwd chunk f32 / bwd ref f32 == bwd ref f64 (B=%ld T=%ld D=%ld C=%ld)", (long)B,
             (long)T, (long)D, (long)C);
    check(e <= 1e-4 && er <= 1e-4, name, "rel err chunk %.3e ref %.3e", e, er);

    /* accumulation and NULL gradients, both paths, f64 */
    int acc_ok = 1, null_ok = 1;
    double *ax = dzeros(n), *ag = dzeros(n), *zx = dzeros(n), *zg = dzeros(n), *nx = dzeros(n), *ng = dzeros(n);
    for (int path = 0; path < 2; path++) {
        for (int64_t i = 0; i < n; i++) ax[i] = ag[i] = 1.0, zx[i] = zg[i] = nx[i] = ng[i] = 0;
        if (path == 0) {
            hgrn_bwd_ref_f64(ax, ag, w, g, o, h0, NULL, 0, B, T, D);
            hgrn_bwd_ref_f64(zx, zg, w, g, o, h0, NULL, 0, B, T, D);
            hgrn_bwd_ref_f64(nx, NULL, w, g, o, h0, NULL, 0, B, T, D);
            hgrn_bwd_ref_f64(NULL, ng, w, g, o, h0, NULL, 0, B, T, D);
            null_ok &= hgrn_bwd_ref_f64(NULL, NULL, w, g, o, h0, NULL, 0, B, T, D) == 0;
        } else {
            hgrn_bwd_chunk_f64(ax, ag, w, g, o, h0, NULL, 0, B, T, D, C);
            hgrn_bwd_chunk_f64(zx, zg, w, g, o, h0, NULL, 0, B, T, D, C);
            hgrn_bwd_chunk_f64(nx, NULL, w, g, o, h0, NULL, 0, B, T, D, C);
            hgrn_bwd_chunk_f64(NULL, ng, w, g, o, h0, NULL, 0, B, T, D, C);
            null_ok &= hgrn_bwd_chunk_f64(NULL, NULL, w, g, o, h0, NULL, 0, B, T, D, C) == 0;
        }
        for (int64_t i = 0; i < n; i++) {
            acc_ok &= fabs(ax[i] - 1.0 - zx[i]) <= 1e-12 * (1 + fabs(zx[i]));
            acc_ok &= fabs(ag[i] - 1.0 - zg[i]) <= 1e-12 * (1 + fabs(zg[i]));
            null_ok &= nx[i] == zx[i] && ng[i] == zg[i];
        }
    }
    check(acc_ok, "backward accumulates into gradient buffers (ref and chunk)", acc_ok ? "exact" : "mismatch");
    check(null_ok, "backward with a NULL gradient pointer computes the other unchanged", null_ok ? "same" : "mismatch");
    free(x), free(g), free(h0), free(w), free(o), free(dx), free(dg), free(xf), free(gf), free(h0f), free(wf), free(of);
    free(dxf), free(dgf), free(rxf), free(rgf), free(ax), free(ag), free(zx), free(zg), free(nx), free(ng);
}

static void test_decode(int64_t B, int64_t T, int64_t D, int64_t C, int64_t tp) {
    const int64_t n = B * T * D;
    double *x = drand_vec(n, 1), *g = make_g(B, T, D, 1), *h0 = drand_vec(B * D, 2);
    double *o_ref = dzeros(n), *ht_ref = dzeros(B * D);
    hgrn_fwd_ref_f64(o_ref, ht_ref, x, g, h0, NULL, 0, B, T, D);
    double *st = dzeros(B * D), *o = dzeros(n), *xt = dzeros(B * D), *gt = dzeros(B * D), *ot = dzeros(B * D);
    memcpy(st, h0, (size_t)(B * D) * sizeof(double));
    for (int64_t t = 0; t < T; t++) {
        slice_time(xt, x, B, T, D, t, t + 1), slice_time(gt, g, B, T, D, t, t + 1);
        hgrn_step_f64(ot, st, xt, gt, B, D);
        for (int64_t b = 0; b < B; b++) memcpy(o + (b * T + t) * D, ot + b * D, (size_t)D * sizeof(double));
    }
    double e = fmax(rel_err_dd(o, o_ref, n), rel_err_dd(st, ht_ref, B * D));
    check(e <= 1e-12, "decode steps f64 reproduce reference outputs and final state", "rel err %.3e", e);

    float *stf = to_f(h0, B * D), *xtf = fzeros(B * D), *gtf = fzeros(B * D), *otf = fzeros(B * D), *of = fzeros(n);
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < B * D; i++) {
            const int64_t b = i / D, c = i % D;
            xtf[i] = (float)x[(b * T + t) * D + c], gtf[i] = (float)g[(b * T + t) * D + c];
        }
        hgrn_step_f32(otf, stf, xtf, gtf, B, D);
        for (int64_t b = 0; b < B; b++) memcpy(of + (b * T + t) * D, otf + b * D, (size_t)D * sizeof(float));
    }
    e = fmax(rel_err_fd(of, o_ref, n), rel_err_fd(stf, ht_ref, B * D));
    check(e <= 1e-4, "decode steps f32 reproduce reference outputs and final state", "rel err %.3e", e);

    /* chunked prefill of [0, tp) (ht), then decode */
    double *xa = dzeros(B * tp * D), *ga = dzeros(B * tp * D), *oa = dzeros(B * tp * D);
    slice_time(xa, x, B, T, D, 0, tp), slice_time(ga, g, B, T, D, 0, tp);
    hgrn_fwd_chunk_f64(oa, st, xa, ga, h0, NULL, 0, B, tp, D, C);
    for (int64_t b = 0; b < B; b++) memcpy(o + b * T * D, oa + b * tp * D, (size_t)(tp * D) * sizeof(double));
    for (int64_t t = tp; t < T; t++) {
        slice_time(xt, x, B, T, D, t, t + 1), slice_time(gt, g, B, T, D, t, t + 1);
        hgrn_step_f64(ot, st, xt, gt, B, D);
        for (int64_t b = 0; b < B; b++) memcpy(o + (b * T + t) * D, ot + b * D, (size_t)D * sizeof(double));
    }
    e = fmax(rel_err_dd(o, o_ref, n), rel_err_dd(st, ht_ref, B * D));
    check(e <= 1e-10, "chunked prefill (ht) + decode steps == full reference", "rel err %.3e", e);

    /* chunked [0, tp) then chunked [tp, T) from its state */
    const int64_t tb = T - tp;
    double *xb = dzeros(B * tb * D), *gb = dzeros(B * tb * D), *ob = dzeros(B * tb * D), *ob_ref = dzeros(B * tb * D);
    double *mid = dzeros(B * D), *fin = dzeros(B * D);
    slice_time(xb, x, B, T, D, tp, T), slice_time(gb, g, B, T, D, tp, T), slice_time(ob_ref, o_ref, B, T, D, tp, T);
    hgrn_fwd_chunk_f64(oa, mid, xa, ga, h0, NULL, 0, B, tp, D, C);
    hgrn_fwd_chunk_f64(ob, fin, xb, gb, mid, NULL, 0, B, tb, D, C);
    e = fmax(rel_err_dd(ob, ob_ref, B * tb * D), rel_err_dd(fin, ht_ref, B * D));
    check(e <= 1e-10, "chunked [0,t) then chunked [t,T) from its state == full reference", "rel err %.3e", e);

    free(x), free(g), free(h0), free(o_ref), free(ht_ref), free(st), free(o), free(xt), free(gt), free(ot);
    free(stf), free(xtf), free(gtf), free(otf), free(of), free(xa), free(ga), free(oa);
    free(xb), free(gb), free(ob), free(ob_ref), free(mid), free(fin);
}

static void test_threads(int64_t B, int64_t T, int64_t D, int64_t C) {
    const int64_t n = B * T * D;
    double *xd = drand_vec(n, 1), *gd = make_g(B, T, D, 1), *hd = drand_vec(B * D, 1), *wd = drand_vec(n, 1);
    float *x = to_f(xd, n), *g = to_f(gd, n), *h0 = to_f(hd, B * D), *w = to_f(wd, n);
    float *out[2][5];
    for (int run = 0; run < 2; run++) {
        hb_threads_set(run + 1);
        float **r = out[run];
        r[0] = fzeros(n), r[1] = fzeros(B * D), r[2] = fzeros(n), r[3] = fzeros(n), r[4] = fzeros(n);
        hgrn_fwd_chunk_f32(r[0], r[1], x, g, h0, NULL, 0, B, T, D, C);
        hgrn_bwd_chunk_f32(r[2], r[3], w, g, r[0], h0, NULL, 0, B, T, D, C);
        hgrn_fwd_ref_f32(r[4], NULL, x, g, h0, NULL, 0, B, T, D);
    }
    const int64_t sz[5] = {n, B * D, n, n, n};
    int same = 1;
    for (int i = 0; i < 5; i++) same &= memcmp(out[0][i], out[1][i], (size_t)sz[i] * sizeof(float)) == 0;
    char name[160];
    snprintf(name, sizeof name, "1 thread and 2 threads give bit-identical results (B=%ld T=%ld D=%ld C=%ld)", (long)B,
             (long)T, (long)D, (long)C);
    check(same, name, same ? "identical" : "results differ");
    for (int run = 0; run < 2; run++)
        for (int i = 0; i < 5; i++) free(out[run][i]);
    free(xd), free(gd), free(hd), free(wd), free(x), free(g), free(h0), free(w);
    hb_threads_set(2);
}

/* ---- packed sequences ---------------------------------------------------------------------------------- */
/* The packed kernels (form 0 reference, 1 chunked with C) against each document run alone, in f32. */
static void test_packed(int64_t D, int64_t C, int form) {
    int64_t cu[PACK_N + 1];
    const int64_t T = pack_cu(cu, PACK_LENS, PACK_N), n = T * D, N = PACK_N;
    double *xd = drand_vec(n, 1), *gd = make_g(1, T, D, 1), *hd = drand_vec(N * D, 2), *wd = drand_vec(n, 1);
    float *x = to_f(xd, n), *g = to_f(gd, n), *h0 = to_f(hd, N * D), *w = to_f(wd, n);
    float *o[2], *ht[2], *dx[2], *dg[2];
    for (int r = 0; r < 2; r++) o[r] = fzeros(n), ht[r] = fzeros(N * D), dx[r] = fzeros(n), dg[r] = fzeros(n);
    int rc = form ? hgrn_fwd_chunk_f32(o[0], ht[0], x, g, h0, cu, N, 1, T, D, C)
                  : hgrn_fwd_ref_f32(o[0], ht[0], x, g, h0, cu, N, 1, T, D);
    rc |= form ? hgrn_bwd_chunk_f32(dx[0], dg[0], w, g, o[0], h0, cu, N, 1, T, D, C)
               : hgrn_bwd_ref_f32(dx[0], dg[0], w, g, o[0], h0, cu, N, 1, T, D);
    for (int64_t d = 0; d < N; d++) { /* document d alone: its rows as a batch of one */
        const int64_t s = cu[d] * D, L = cu[d + 1] - cu[d];
        rc |= form ? hgrn_fwd_chunk_f32(o[1] + s, ht[1] + d * D, x + s, g + s, h0 + d * D, NULL, 0, 1, L, D, C)
                   : hgrn_fwd_ref_f32(o[1] + s, ht[1] + d * D, x + s, g + s, h0 + d * D, NULL, 0, 1, L, D);
        rc |= form ? hgrn_bwd_chunk_f32(dx[1] + s, dg[1] + s, w + s, g + s, o[1] + s, h0 + d * D, NULL, 0, 1, L, D, C)
                   : hgrn_bwd_ref_f32(dx[1] + s, dg[1] + s, w + s, g + s, o[1] + s, h0 + d * D, NULL, 0, 1, L, D);
    }
    double *ref[4];
    float *got[4] = {o[0], ht[0], dx[0], dg[0]}, *alone[4] = {o[1], ht[1], dx[1], dg[1]};
    const int64_t sz[4] = {n, N * D, n, n};
    double e = 0;
    for (int i = 0; i < 4; i++) {
        ref[i] = dzeros(sz[i]);
        for (int64_t j = 0; j < sz[i]; j++) ref[i][j] = alone[i][j];
        e = fmax(e, rel_err_fd(got[i], ref[i], sz[i]));
        free(ref[i]);
    }
    char name[200];
    snprintf(name, sizeof name, "packed {1,63,64,65,200} == each document alone, f32 %s (D=%ld C=%ld): o, ht, dx, dg",
             form ? "chunk" : "ref", (long)D, (long)C);
    check(rc == 0 && e <= 1e-5, name, "rc %d, max rel err %.3e", rc, e);
    for (int r = 0; r < 2; r++) free(o[r]), free(ht[r]), free(dx[r]), free(dg[r]);
    free(xd), free(gd), free(hd), free(wd), free(x), free(g), free(h0), free(w);
}

/* float64 finite differences through the packed kernels (documents {1, 3, 0, 4, 5}, C = 2) */
static double packed_loss(const int64_t *cu, int64_t N, const double *x, const double *g, const double *h0,
                          const double *w, double *o, int64_t T, int64_t D) {
    hgrn_fwd_ref_f64(o, NULL, x, g, h0, cu, N, 1, T, D);
    double s = 0;
    for (int64_t i = 0; i < T * D; i++) s += o[i] * w[i];
    return s;
}

static void test_packed_gradcheck(void) {
    const int64_t lens[] = {1, 3, 0, 4, 5}, N = 5, D = 3;
    int64_t cu[6];
    const int64_t T = pack_cu(cu, lens, (int)N), n = T * D;
    double *x = drand_vec(n, 1), *g = make_g(1, T, D, 0), *h0 = drand_vec(N * D, 1), *w = drand_vec(n, 1);
    double *o = dzeros(n), *tmp = dzeros(n);
    hgrn_fwd_chunk_f64(o, NULL, x, g, h0, cu, N, 1, T, D, 2);
    for (int path = 0; path < 2; path++) {
        double *dx = dzeros(n), *dg = dzeros(n), ex = 0, eg = 0;
        int rc = path ? hgrn_bwd_chunk_f64(dx, dg, w, g, o, h0, cu, N, 1, T, D, 2)
                      : hgrn_bwd_ref_f64(dx, dg, w, g, o, h0, cu, N, 1, T, D);
        double *ps[2] = {x, g}, *gs[2] = {dx, dg}, *es[2] = {&ex, &eg};
        for (int k = 0; k < 2; k++) {
            double maxdiff = 0, maxnum = 0;
            for (int64_t i = 0; i < n; i++) {
                const double p0 = ps[k][i];
                ps[k][i] = p0 + 1e-6;
                const double lp = packed_loss(cu, N, x, g, h0, w, tmp, T, D);
                ps[k][i] = p0 - 1e-6;
                const double lm = packed_loss(cu, N, x, g, h0, w, tmp, T, D);
                ps[k][i] = p0;
                const double num = (lp - lm) / 2e-6;
                maxdiff = fmax(maxdiff, fabs(num - gs[k][i]));
                maxnum = fmax(maxnum, fabs(num));
            }
            *es[k] = maxdiff / fmax(1e-3, maxnum);
        }
        check(rc == 0 && ex <= 1e-6 && eg <= 1e-6,
              path ? "packed gradcheck f64 bwd_chunk (C=2, an empty document): dx dg"
                   : "packed gradcheck f64 bwd_ref (an empty document): dx dg",
              "rel err dx %.3e dg %.3e", ex, eg);
        free(dx), free(dg);
    }
    /* the empty document's final state is its h0, in both forms */
    double *ht = dzeros(N * D), *ht2 = dzeros(N * D);
    hgrn_fwd_chunk_f64(o, ht, x, g, h0, cu, N, 1, T, D, 2);
    hgrn_fwd_ref_f64(o, ht2, x, g, h0, cu, N, 1, T, D);
    check(!memcmp(ht + 2 * D, h0 + 2 * D, (size_t)D * sizeof(double)) && !memcmp(ht2 + 2 * D, h0 + 2 * D, (size_t)D * sizeof(double)),
          "packed: an empty document's final state is its h0", "compared %ld values", (long)D);
    free(x), free(g), free(h0), free(w), free(o), free(tmp), free(ht), free(ht2);
}

static void test_packed_bad(void) {
    const int64_t T = 8, D = 3;
    float *x = fzeros(2 * T * D), *o = fzeros(2 * T * D), *ht = fzeros(4 * D);
    bad_pack_t bad[8];
    int nb = bad_packs(T, bad), all = 1;
    for (int i = 0; i < nb; i++) {
        const int64_t *cu = bad[i].cu, N = bad[i].N, B = bad[i].B;
        int r[4] = {hgrn_fwd_ref_f32(o, ht, x, x, NULL, cu, N, B, T, D), hgrn_fwd_chunk_f32(o, ht, x, x, NULL, cu, N, B, T, D, 4),
                    hgrn_bwd_ref_f32(o, o, x, x, x, NULL, cu, N, B, T, D),
                    hgrn_bwd_chunk_f32(o, o, x, x, x, NULL, cu, N, B, T, D, 4)};
        int good = r[0] == -1 && r[1] == -1 && r[2] == -1 && r[3] == -1;
        if (!good) diag("not refused: %s", bad[i].what);
        all &= good;
    }
    check(all, "packed: bad cu_seqlens (start, end, order, B != 1, N = 0) return -1 from every function", "%d layouts", nb);
    free(x), free(o), free(ht);
}

int main(void) {
    rng_seed(0x2545F4914F6CDD1Dull);
    hb_threads_set(2);
    static const int64_t shapes[][4] = {
        /* B, T, D, C */
        {1, 1, 5, 64},   {2, 1, 9, 16},   {2, 37, 7, 64},  {3, 37, 70, 16}, {1, 100, 3, 64},
        {2, 100, 65, 16}, {2, 130, 130, 64}, {1, 130, 33, 16}, {2, 128, 8, 16}, {1, 300, 2048, 64},
        {2, 100, 1100, 16}, {3, 70, 1030, 0} /* C = 0: one chunk, the plain scan */,
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t *s = shapes[i];
        test_forward(s[0], s[1], s[2], s[3], (int)(i % 2), 1);
        test_forward(s[0], s[1], s[2], s[3], (int)((i + 1) % 2), 0);
    }
    test_gradients(2, 23, 5, 8, 1, 1);
    test_gradients(2, 23, 5, 8, 0, 0);
    test_gradients(1, 40, 3, 16, 1, 0);
    test_gradients(3, 9, 4, 64, 0, 1);
    test_backward_f32(2, 130, 70, 64);
    test_backward_f32(3, 37, 9, 16);
    test_backward_f32(1, 100, 2048, 64);
    test_backward_f32(2, 100, 1100, 0); /* one chunk: the plain scan */
    test_backward_f32(2, 100, 1100, hgrn_chunk_hint(2, 100, 1100));
    test_backward_f32(1, 100, 300, hgrn_chunk_hint(1, 100, 300));
    test_decode(2, 45, 7, 16, 20);
    test_decode(1, 70, 130, 64, 67);
    test_threads(2, 150, 100, 32);
    test_threads(1, 200, 2048, 64);
    test_threads(2, 130, 1100, 16);
    for (int form = 0; form < 2; form++) {
        test_packed(7, 64, form);
        test_packed(1030, 16, form);
    }
    test_packed(9, 0, 1); /* one chunk per document */
    test_packed(9, 1, 1); /* every token a chunk */
    test_packed_gradcheck();
    test_packed_bad();
    return tap_done();
}
