/* test_retention.c — TAP tests for kernels/retention.c.
 *
 * Checks: chunked forward (and the f32 reference) against the float64 reference for several shapes,
 * chunk sizes and decays (RetNet's, near 0, near 1), with initial/final states; float64
 * central-difference gradient checks of both backward paths w.r.t. q, k, v; f32 chunked backward vs
 * float64 reference backward; backward accumulates and tolerates NULL gradients; step-by-step decode
 * reproduces the reference outputs and final state; prefill (chunked, ht) + decode / + second chunked
 * call (h0) reproduces the full sequence; results are bit-identical for 1 and 2 threads. Packed
 * sequences (cu_seqlens): documents {1, 63, 64, 65, 200} in one row give each document's own outputs,
 * final states and gradients (f32, rel ≤ 1e-5) in both forms, float64 finite differences through the
 * packed kernels (with an empty document), and bad layouts return −1. The chunked backward from the
 * states the chunked forward saved (hs) passes the same finite differences and packed checks, and equals
 * the recomputing backward without h0.
 */
#include "../kernels/parallel.h"
#include "../kernels/retention.h"
#include "ktest.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Log decays: RetNet's log(1 − 2^(−5−h)), except head 1 near 0 and head 2 near 1 when kind = 1. */
static void make_lg(double *lg, int64_t H, int kind) {
    for (int64_t h = 0; h < H; h++) lg[h] = log(1.0 - pow(2.0, -5.0 - (double)h));
    if (kind == 1) {
        if (H > 1) lg[1] = log(1e-3);          /* γ = 0.001 */
        if (H > 2) lg[2] = log1p(-1e-6);       /* γ = 0.999999 */
        if (H > 3) lg[3] = -50.0;              /* γ ≈ 2e-22 */
    }
}

/* Copy time steps [t0, t1) of a (B,T,R) tensor (R = H·D) into a (B,t1−t0,R) tensor. */
static void slice_time(double *dst, const double *src, int64_t B, int64_t T, int64_t R, int64_t t0, int64_t t1) {
    for (int64_t b = 0; b < B; b++)
        memcpy(dst + b * (t1 - t0) * R, src + (b * T + t0) * R, (size_t)((t1 - t0) * R) * sizeof(double));
}

/* ------------------------------------------------------------------------------------------ */

static void test_forward(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int kind, int with_h0) {
    const int64_t nq = B * T * H * K, nv = B * T * H * V, ns = B * H * K * V;
    double *q = drand_vec(nq, 1), *k = drand_vec(nq, 1), *v = drand_vec(nv, 1);
    double *h0 = with_h0 ? drand_vec(ns, 1) : NULL, lg[16];
    const double scale = 1.0 / sqrt((double)K);
    make_lg(lg, H, kind);
    double *o_ref = dzeros(nv), *ht_ref = dzeros(ns), *o64 = dzeros(nv), *ht64 = dzeros(ns);
    retention_fwd_ref_f64(o_ref, ht_ref, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V);
    retention_fwd_chunk_f64(o64, ht64, NULL, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V, C);
    float *qf = to_f(q, nq), *kf = to_f(k, nq), *vf = to_f(v, nv), *h0f = to_f(h0, ns);
    float lgf[16];
    for (int64_t h = 0; h < H; h++) lgf[h] = (float)lg[h];
    float *o32 = fzeros(nv), *ht32 = fzeros(ns), *or32 = fzeros(nv), *htr32 = fzeros(ns);
    retention_fwd_chunk_f32(o32, ht32, NULL, qf, kf, vf, h0f, lgf, (float)scale, NULL, 0, B, T, H, K, V, C);
    retention_fwd_ref_f32(or32, htr32, qf, kf, vf, h0f, lgf, (float)scale, NULL, 0, B, T, H, K, V);
    double e64 = fmax(rel_err_dd(o64, o_ref, nv), rel_err_dd(ht64, ht_ref, ns));
    double e32 = fmax(rel_err_fd(o32, o_ref, nv), rel_err_fd(ht32, ht_ref, ns));
    double er32 = fmax(rel_err_fd(or32, o_ref, nv), rel_err_fd(htr32, ht_ref, ns));
    char name[200];
    snprintf(name, sizeof name, "fwd chunk f64 == ref (B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld decay=%s h0=%d)",
             (long)B, (long)T, (long)H, (long)K, (long)V, (long)C, kind ? "extreme" : "retnet", with_h0);
    check(e64 <= 1e-10, name, "rel err %.3e", e64);
    snprintf(name, sizeof name, "fwd chunk f32 == ref (B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld decay=%s h0=%d)",
             (long)B, (long)T, (long)H, (long)K, (long)V, (long)C, kind ? "extreme" : "retnet", with_h0);
    check(e32 <= 1e-4 && er32 <= 1e-4, name, "rel err chunk %.3e, ref f32 %.3e", e32, er32);
    free(q), free(k), free(v), free(h0), free(o_ref), free(ht_ref), free(o64), free(ht64);
    free(qf), free(kf), free(vf), free(h0f), free(o32), free(ht32), free(or32), free(htr32);
}

/* loss = Σ o·w computed with the float64 reference forward. */
static const int64_t *CU; /* cu_seqlens of the packed gradient checks (NULL: B rows) */
static int64_t CU_N;

static double loss_of(const double *q, const double *k, const double *v, const double *h0, const double *lg,
                      double scale, const double *w, double *o, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    retention_fwd_ref_f64(o, NULL, q, k, v, h0, lg, scale, CU, CU_N, B, T, H, K, V);
    double s = 0;
    for (int64_t i = 0; i < B * T * H * V; i++) s += o[i] * w[i];
    return s;
}

/* Central-difference gradient of the loss w.r.t. x (perturbed in place), compared to g. */
static double fd_err(double *x, int64_t n, const double *g, const double *q, const double *k, const double *v,
                     const double *h0, const double *lg, double scale, const double *w, double *o,
                     int64_t B, int64_t T, int64_t H, int64_t K, int64_t V) {
    const double eps = 1e-6;
    double maxdiff = 0, maxnum = 0;
    for (int64_t i = 0; i < n; i++) {
        const double x0 = x[i];
        x[i] = x0 + eps;
        double lp = loss_of(q, k, v, h0, lg, scale, w, o, B, T, H, K, V);
        x[i] = x0 - eps;
        double lm = loss_of(q, k, v, h0, lg, scale, w, o, B, T, H, K, V);
        x[i] = x0;
        const double num = (lp - lm) / (2 * eps);
        maxdiff = fmax(maxdiff, fabs(num - g[i]));
        maxnum = fmax(maxnum, fabs(num));
    }
    return maxdiff / fmax(1e-3, maxnum);
}

static void test_gradients(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int kind) {
    const int64_t nq = B * T * H * K, nv = B * T * H * V, ns = B * H * K * V;
    double *q = drand_vec(nq, 1), *k = drand_vec(nq, 1), *v = drand_vec(nv, 1), *h0 = drand_vec(ns, 1);
    double *w = drand_vec(nv, 1), *o = dzeros(nv), lg[16];
    const double scale = 1.0 / sqrt((double)K);
    make_lg(lg, H, kind);
    double *hs = dzeros(retention_chunk_count(NULL, 0, B, T, C) * H * K * V), *ht = dzeros(ns);
    retention_fwd_chunk_f64(o, ht, hs, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V, C);
    for (int path = 0; path < 3; path++) { /* 2: the chunked backward from the chunked forward's saved states */
        double *dq = dzeros(nq), *dk = dzeros(nq), *dv = dzeros(nv);
        if (path == 0) retention_bwd_ref_f64(dq, dk, dv, w, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V);
        else retention_bwd_chunk_f64(dq, dk, dv, w, q, k, v, h0, path == 2 ? hs : NULL, lg, scale, NULL, 0, B, T, H, K,
                                     V, C);
        double eq = fd_err(q, nq, dq, q, k, v, h0, lg, scale, w, o, B, T, H, K, V);
        double ek = fd_err(k, nq, dk, q, k, v, h0, lg, scale, w, o, B, T, H, K, V);
        double ev = fd_err(v, nv, dv, q, k, v, h0, lg, scale, w, o, B, T, H, K, V);
        char name[200];
        snprintf(name, sizeof name, "gradcheck f64 %s (B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld decay=%s): dq dk dv",
                 path == 2 ? "bwd_chunk from saved states" : path ? "bwd_chunk" : "bwd_ref", (long)B, (long)T, (long)H, (long)K, (long)V, (long)C,
                 kind ? "extreme" : "retnet");
        check(eq <= 1e-6 && ek <= 1e-6 && ev <= 1e-6, name, "rel err dq %.3e dk %.3e dv %.3e", eq, ek, ev);
        free(dq), free(dk), free(dv);
    }
    /* without h0: the first chunk's saved state is zero; saved path == recomputing path */
    double *a[3], *z[3];
    const int64_t len[3] = {nq, nq, nv};
    for (int i = 0; i < 3; i++) a[i] = dzeros(len[i]), z[i] = dzeros(len[i]);
    int rc = retention_fwd_chunk_f64(o, ht, hs, q, k, v, NULL, lg, scale, NULL, 0, B, T, H, K, V, C);
    rc |= retention_bwd_chunk_f64(a[0], a[1], a[2], w, q, k, v, NULL, hs, lg, scale, NULL, 0, B, T, H, K, V, C);
    rc |= retention_bwd_chunk_f64(z[0], z[1], z[2], w, q, k, v, NULL, NULL, lg, scale, NULL, 0, B, T, H, K, V, C);
    double e = 0;
    for (int i = 0; i < 3; i++) e = fmax(e, rel_err_dd(a[i], z[i], len[i]));
    char name[200];
    snprintf(name, sizeof name, "bwd_chunk f64 from saved states == recomputing, no h0 (B=%ld T=%ld H=%ld C=%ld)",
             (long)B, (long)T, (long)H, (long)C);
    check(rc == 0 && e <= 1e-12, name, "rc %d rel err %.3e", rc, e);
    for (int i = 0; i < 3; i++) free(a[i]), free(z[i]);
    free(hs), free(ht);
    free(q), free(k), free(v), free(h0), free(w), free(o);
}

/* f32 chunked backward vs f64 reference backward on a longer sequence; accumulation; NULL grads. */
static void test_backward_f32(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C) {
    const int64_t nq = B * T * H * K, nv = B * T * H * V, ns = B * H * K * V;
    double *q = drand_vec(nq, 1), *k = drand_vec(nq, 1), *v = drand_vec(nv, 1), *h0 = drand_vec(ns, 1);
    double *w = drand_vec(nv, 1), lg[16];
    const double scale = 1.0 / sqrt((double)K);
    make_lg(lg, H, 1);
    double *dq = dzeros(nq), *dk = dzeros(nq), *dv = dzeros(nv);
    retention_bwd_ref_f64(dq, dk, dv, w, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V);
    float *qf = to_f(q, nq), *kf = to_f(k, nq), *vf = to_f(v, nv), *h0f = to_f(h0, ns), *wf = to_f(w, nv);
    float lgf[16];
    for (int64_t h = 0; h < H; h++) lgf[h] = (float)lg[h];
    float *dqf = fzeros(nq), *dkf = fzeros(nq), *dvf = fzeros(nv);
    retention_bwd_chunk_f32(dqf, dkf, dvf, wf, qf, kf, vf, h0f, NULL, lgf, (float)scale, NULL, 0, B, T, H, K, V, C);
    double e = fmax(rel_err_fd(dqf, dq, nq), fmax(rel_err_fd(dkf, dk, nq), rel_err_fd(dvf, dv, nv)));
    float *rq = fzeros(nq), *rk = fzeros(nq), *rv = fzeros(nv);
    retention_bwd_ref_f32(rq, rk, rv, wf, qf, kf, vf, h0f, lgf, (float)scale, NULL, 0, B, T, H, K, V);
    double er = fmax(rel_err_fd(rq, dq, nq), fmax(rel_err_fd(rk, dk, nq), rel_err_fd(rv, dv, nv)));
    char name[200];
    snprintf(name, sizeof name, "bwd chunk f32 / bwd ref f32 == bwd ref f64 (B=%ld T=%ld H=%ld K=%ld V=%ld C=%ld)",
             (long)B, (long)T, (long)H, (long)K, (long)V, (long)C);
    check(e <= 1e-4 && er <= 1e-4, name, "rel err chunk %.3e ref %.3e", e, er);

    /* accumulation: starting from dq = 1 etc. adds exactly the same gradient (f64) */
    double *aq = dzeros(nq), *ak = dzeros(nq), *av = dzeros(nv), *zq = dzeros(nq), *zk = dzeros(nq), *zv = dzeros(nv);
    for (int64_t i = 0; i < nq; i++) aq[i] = ak[i] = 1.0;
    for (int64_t i = 0; i < nv; i++) av[i] = 1.0;
    int acc_ok = 1;
    for (int path = 0; path < 2; path++) {
        memset(zq, 0, (size_t)nq * sizeof(double)), memset(zk, 0, (size_t)nq * sizeof(double));
        memset(zv, 0, (size_t)nv * sizeof(double));
        for (int64_t i = 0; i < nq; i++) aq[i] = ak[i] = 1.0;
        for (int64_t i = 0; i < nv; i++) av[i] = 1.0;
        if (path == 0) {
            retention_bwd_ref_f64(aq, ak, av, w, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V);
            retention_bwd_ref_f64(zq, zk, zv, w, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V);
        } else {
            retention_bwd_chunk_f64(aq, ak, av, w, q, k, v, h0, NULL, lg, scale, NULL, 0, B, T, H, K, V, C);
            retention_bwd_chunk_f64(zq, zk, zv, w, q, k, v, h0, NULL, lg, scale, NULL, 0, B, T, H, K, V, C);
        }
        for (int64_t i = 0; i < nq; i++) acc_ok &= fabs(aq[i] - 1.0 - zq[i]) <= 1e-12 * (1 + fabs(zq[i]));
        for (int64_t i = 0; i < nq; i++) acc_ok &= fabs(ak[i] - 1.0 - zk[i]) <= 1e-12 * (1 + fabs(zk[i]));
        for (int64_t i = 0; i < nv; i++) acc_ok &= fabs(av[i] - 1.0 - zv[i]) <= 1e-12 * (1 + fabs(zv[i]));
    }
    check(acc_ok, "backward accumulates into gradient buffers (ref and chunk)", acc_ok ? "exact" : "mismatch");

    /* NULL gradients: each alone equals the full computation (path 2: the chunked backward from saved states) */
    int null_ok = 1;
    double *hs = dzeros(retention_chunk_count(NULL, 0, B, T, C) * H * K * V), *os = dzeros(nv);
    retention_fwd_chunk_f64(os, NULL, hs, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V, C);
    for (int path = 0; path < 3; path++) {
        for (int which = 0; which < 3; which++) {
            double *g = dzeros(which == 2 ? nv : nq);
            double *gq = which == 0 ? g : NULL, *gk = which == 1 ? g : NULL, *gv = which == 2 ? g : NULL;
            if (path == 0) retention_bwd_ref_f64(gq, gk, gv, w, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V);
            else retention_bwd_chunk_f64(gq, gk, gv, w, q, k, v, h0, path == 2 ? hs : NULL, lg, scale, NULL, 0, B, T, H,
                                         K, V, C);
            const double *full = which == 0 ? zq : which == 1 ? zk : zv;
            if (path == 0) full = which == 0 ? dq : which == 1 ? dk : dv;
            null_ok &= rel_err_dd(g, full, which == 2 ? nv : nq) <= 1e-12;
            free(g);
        }
    }
    null_ok &= retention_bwd_chunk_f64(NULL, NULL, NULL, w, q, k, v, h0, NULL, lg, scale, NULL, 0, B, T, H, K, V, C) == 0;
    check(null_ok, "backward with NULL gradient pointers computes the others unchanged (ref, chunk, chunk from saved states)", null_ok ? "same" : "mismatch");

    free(q), free(k), free(v), free(h0), free(w), free(dq), free(dk), free(dv);
    free(qf), free(kf), free(vf), free(h0f), free(wf), free(dqf), free(dkf), free(dvf), free(rq), free(rk), free(rv);
    free(aq), free(ak), free(av), free(zq), free(zk), free(zv), free(hs), free(os);
}

/* Decode: steps reproduce the reference; prefill (chunked) + steps and prefill + chunked continuation. */
static void test_decode(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C, int64_t tp) {
    const int64_t R = H * K, RV = H * V, ns = B * H * K * V;
    double *q = drand_vec(B * T * R, 1), *k = drand_vec(B * T * R, 1), *v = drand_vec(B * T * RV, 1);
    double *h0 = drand_vec(ns, 1), lg[16];
    const double scale = 1.0 / sqrt((double)K);
    make_lg(lg, H, 1);
    double *o_ref = dzeros(B * T * RV), *ht_ref = dzeros(ns);
    retention_fwd_ref_f64(o_ref, ht_ref, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V);

    /* plain decode from h0 */
    double *st = dzeros(ns), *o = dzeros(B * T * RV), *qt = dzeros(B * R), *kt = dzeros(B * R), *vt = dzeros(B * RV);
    double *ot = dzeros(B * RV);
    memcpy(st, h0, (size_t)ns * sizeof(double));
    for (int64_t t = 0; t < T; t++) {
        slice_time(qt, q, B, T, R, t, t + 1), slice_time(kt, k, B, T, R, t, t + 1), slice_time(vt, v, B, T, RV, t, t + 1);
        retention_step_f64(ot, st, qt, kt, vt, lg, scale, B, H, K, V);
        for (int64_t b = 0; b < B; b++) memcpy(o + (b * T + t) * RV, ot + b * RV, (size_t)RV * sizeof(double));
    }
    double e = fmax(rel_err_dd(o, o_ref, B * T * RV), rel_err_dd(st, ht_ref, ns));
    check(e <= 1e-12, "decode steps f64 reproduce reference outputs and final state", "rel err %.3e", e);

    /* f32 decode */
    float *qf = to_f(q, B * T * R), *kf = to_f(k, B * T * R), *vf = to_f(v, B * T * RV), *stf = to_f(h0, ns);
    float *otf = fzeros(B * RV), *qtf = fzeros(B * R), *ktf = fzeros(B * R), *vtf = fzeros(B * RV), lgf[16];
    float *of = fzeros(B * T * RV);
    for (int64_t h = 0; h < H; h++) lgf[h] = (float)lg[h];
    for (int64_t t = 0; t < T; t++) {
        for (int64_t b = 0; b < B; b++) {
            memcpy(qtf + b * R, qf + (b * T + t) * R, (size_t)R * sizeof(float));
            memcpy(ktf + b * R, kf + (b * T + t) * R, (size_t)R * sizeof(float));
            memcpy(vtf + b * RV, vf + (b * T + t) * RV, (size_t)RV * sizeof(float));
        }
        retention_step_f32(otf, stf, qtf, ktf, vtf, lgf, (float)scale, B, H, K, V);
        for (int64_t b = 0; b < B; b++) memcpy(of + (b * T + t) * RV, otf + b * RV, (size_t)RV * sizeof(float));
    }
    e = fmax(rel_err_fd(of, o_ref, B * T * RV), rel_err_fd(stf, ht_ref, ns));
    check(e <= 1e-4, "decode steps f32 reproduce reference outputs and final state", "rel err %.3e", e);

    /* prefill [0, tp) with the chunked forward (ht), then decode [tp, T) */
    double *qa = dzeros(B * tp * R), *ka = dzeros(B * tp * R), *va = dzeros(B * tp * RV), *oa = dzeros(B * tp * RV);
    slice_time(qa, q, B, T, R, 0, tp), slice_time(ka, k, B, T, R, 0, tp), slice_time(va, v, B, T, RV, 0, tp);
    retention_fwd_chunk_f64(oa, st, NULL, qa, ka, va, h0, lg, scale, NULL, 0, B, tp, H, K, V, C);
    for (int64_t b = 0; b < B; b++) memcpy(o + b * T * RV, oa + b * tp * RV, (size_t)(tp * RV) * sizeof(double));
    for (int64_t t = tp; t < T; t++) {
        slice_time(qt, q, B, T, R, t, t + 1), slice_time(kt, k, B, T, R, t, t + 1), slice_time(vt, v, B, T, RV, t, t + 1);
        retention_step_f64(ot, st, qt, kt, vt, lg, scale, B, H, K, V);
        for (int64_t b = 0; b < B; b++) memcpy(o + (b * T + t) * RV, ot + b * RV, (size_t)RV * sizeof(double));
    }
    e = fmax(rel_err_dd(o, o_ref, B * T * RV), rel_err_dd(st, ht_ref, ns));
    check(e <= 1e-10, "chunked prefill (ht) + decode steps == full reference", "rel err %.3e", e);

    /* prefill [0, tp) then a second chunked call on [tp, T) starting from its ht */
    const int64_t tb = T - tp;
    double *qb = dzeros(B * tb * R), *kb = dzeros(B * tb * R), *vb = dzeros(B * tb * RV), *ob = dzeros(B * tb * RV);
    double *mid = dzeros(ns), *fin = dzeros(ns), *ob_ref = dzeros(B * tb * RV);
    slice_time(qb, q, B, T, R, tp, T), slice_time(kb, k, B, T, R, tp, T), slice_time(vb, v, B, T, RV, tp, T);
    slice_time(ob_ref, o_ref, B, T, RV, tp, T);
    retention_fwd_chunk_f64(oa, mid, NULL, qa, ka, va, h0, lg, scale, NULL, 0, B, tp, H, K, V, C);
    retention_fwd_chunk_f64(ob, fin, NULL, qb, kb, vb, mid, lg, scale, NULL, 0, B, tb, H, K, V, C);
    e = fmax(rel_err_dd(ob, ob_ref, B * tb * RV), rel_err_dd(fin, ht_ref, ns));
    check(e <= 1e-10, "chunked [0,t) then chunked [t,T) from its state == full reference", "rel err %.3e", e);

    free(q), free(k), free(v), free(h0), free(o_ref), free(ht_ref), free(st), free(o), free(qt), free(kt), free(vt);
    free(ot), free(qf), free(kf), free(vf), free(stf), free(otf), free(qtf), free(ktf), free(vtf), free(of);
    free(qa), free(ka), free(va), free(oa), free(qb), free(kb), free(vb), free(ob), free(mid), free(fin), free(ob_ref);
}

static void test_threads(void) {
    const int64_t B = 2, T = 150, H = 3, K = 16, V = 24, C = 32;
    const int64_t nq = B * T * H * K, nv = B * T * H * V, ns = B * H * K * V;
    double *qd = drand_vec(nq, 1), *kd = drand_vec(nq, 1), *vd = drand_vec(nv, 1), *hd = drand_vec(ns, 1);
    double *wd = drand_vec(nv, 1);
    float *q = to_f(qd, nq), *k = to_f(kd, nq), *v = to_f(vd, nv), *h0 = to_f(hd, ns), *w = to_f(wd, nv);
    float lg[3] = {logf(1 - 1.0f / 32), logf(1e-3f), logf(1 - 1.0f / 128)}, scale = 0.25f;
    float *out[2][9];
    for (int run = 0; run < 2; run++) {
        hb_threads_set(run + 1);
        float **r = out[run];
        r[0] = fzeros(nv), r[1] = fzeros(ns), r[2] = fzeros(nv);
        r[3] = fzeros(nq), r[4] = fzeros(nq), r[5] = fzeros(nv);
        r[6] = fzeros(nq), r[7] = fzeros(nq), r[8] = fzeros(nv);
        retention_fwd_chunk_f32(r[0], r[1], NULL, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V, C);
        retention_fwd_ref_f32(r[2], NULL, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V);
        retention_bwd_chunk_f32(r[3], r[4], r[5], w, q, k, v, h0, NULL, lg, scale, NULL, 0, B, T, H, K, V, C);
        retention_bwd_ref_f32(r[6], r[7], r[8], w, q, k, v, h0, lg, scale, NULL, 0, B, T, H, K, V);
    }
    const int64_t sz[9] = {nv, ns, nv, nq, nq, nv, nq, nq, nv};
    int same = 1;
    for (int i = 0; i < 9; i++) same &= memcmp(out[0][i], out[1][i], (size_t)sz[i] * sizeof(float)) == 0;
    check(same, "1 thread and 2 threads give bit-identical results (fwd/bwd, ref/chunk, f32)", same ? "identical" : "results differ");
    for (int run = 0; run < 2; run++)
        for (int i = 0; i < 9; i++) free(out[run][i]);
    free(qd), free(kd), free(vd), free(hd), free(wd), free(q), free(k), free(v), free(h0), free(w);
}

/* ---- packed sequences ---------------------------------------------------------------------------------- */
static void test_packed(int64_t H, int64_t K, int64_t V, int64_t C, int form) {
    int64_t cu[PACK_N + 1];
    const int64_t T = pack_cu(cu, PACK_LENS, PACK_N), N = PACK_N, nq = T * H * K, nv = T * H * V, ns = N * H * K * V;
    double lgd[16];
    make_lg(lgd, H, 1);
    float lg[16], scale = 1.0f / sqrtf((float)K);
    for (int64_t h = 0; h < H; h++) lg[h] = (float)lgd[h];
    double *qd = drand_vec(nq, 1), *kd = drand_vec(nq, 1), *vd = drand_vec(nv, 1), *hd = drand_vec(ns, 1);
    double *wd = drand_vec(nv, 1);
    float *q = to_f(qd, nq), *k = to_f(kd, nq), *v = to_f(vd, nv), *h0 = to_f(hd, ns), *w = to_f(wd, nv);
    float *r[2][5];
    const int64_t sz[5] = {nv, ns, nq, nq, nv};
    for (int x = 0; x < 2; x++)
        for (int i = 0; i < 5; i++) r[x][i] = fzeros(sz[i]);
    float *hs = form ? fzeros(retention_chunk_count(cu, N, 1, T, C) * H * K * V) : NULL; /* saved states, packed */
    int rc = form ? retention_fwd_chunk_f32(r[0][0], r[0][1], hs, q, k, v, h0, lg, scale, cu, N, 1, T, H, K, V, C)
                  : retention_fwd_ref_f32(r[0][0], r[0][1], q, k, v, h0, lg, scale, cu, N, 1, T, H, K, V);
    rc |= form ? retention_bwd_chunk_f32(r[0][2], r[0][3], r[0][4], w, q, k, v, h0, hs, lg, scale, cu, N, 1, T, H, K, V, C)
               : retention_bwd_ref_f32(r[0][2], r[0][3], r[0][4], w, q, k, v, h0, lg, scale, cu, N, 1, T, H, K, V);
    for (int64_t d = 0; d < N; d++) { /* document d alone */
        const int64_t L = cu[d + 1] - cu[d], oq = cu[d] * H * K, ov = cu[d] * H * V, os = d * H * K * V;
        rc |= form ? retention_fwd_chunk_f32(r[1][0] + ov, r[1][1] + os, NULL, q + oq, k + oq, v + ov, h0 + os, lg, scale,
                                             NULL, 0, 1, L, H, K, V, C)
                   : retention_fwd_ref_f32(r[1][0] + ov, r[1][1] + os, q + oq, k + oq, v + ov, h0 + os, lg, scale,
                                           NULL, 0, 1, L, H, K, V);
        rc |= form ? retention_bwd_chunk_f32(r[1][2] + oq, r[1][3] + oq, r[1][4] + ov, w + ov, q + oq, k + oq, v + ov,
                                             h0 + os, NULL, lg, scale, NULL, 0, 1, L, H, K, V, C)
                   : retention_bwd_ref_f32(r[1][2] + oq, r[1][3] + oq, r[1][4] + ov, w + ov, q + oq, k + oq, v + ov,
                                           h0 + os, lg, scale, NULL, 0, 1, L, H, K, V);
    }
    double e = 0;
    for (int i = 0; i < 5; i++) {
        double *ref = dzeros(sz[i]);
        for (int64_t j = 0; j < sz[i]; j++) ref[j] = r[1][i][j];
        e = fmax(e, rel_err_fd(r[0][i], ref, sz[i]));
        free(ref);
    }
    char name[200];
    snprintf(name, sizeof name, "packed {1,63,64,65,200} == each document alone, f32 %s (H=%ld K=%ld V=%ld C=%ld): "
             "o, ht, dq, dk, dv", form ? "chunk, saved states" : "ref", (long)H, (long)K, (long)V, (long)C);
    check(rc == 0 && e <= 1e-5, name, "rc %d, max rel err %.3e", rc, e);
    for (int x = 0; x < 2; x++)
        for (int i = 0; i < 5; i++) free(r[x][i]);
    free(qd), free(kd), free(vd), free(hd), free(wd), free(q), free(k), free(v), free(h0), free(w), free(hs);
}

static void test_packed_gradcheck(void) {
    const int64_t lens[] = {1, 3, 0, 4, 5}, N = 5, H = 2, K = 3, V = 2;
    int64_t cu[6];
    const int64_t T = pack_cu(cu, lens, (int)N), nq = T * H * K, nv = T * H * V, ns = N * H * K * V;
    double *q = drand_vec(nq, 1), *k = drand_vec(nq, 1), *v = drand_vec(nv, 1), *h0 = drand_vec(ns, 1);
    double *w = drand_vec(nv, 1), *o = dzeros(nv), lg[16], scale = 1 / sqrt(3.0);
    make_lg(lg, H, 0);
    CU = cu, CU_N = N;
    for (int path = 0; path < 2; path++) {
        double *dq = dzeros(nq), *dk = dzeros(nq), *dv = dzeros(nv);
        int rc = path ? retention_bwd_chunk_f64(dq, dk, dv, w, q, k, v, h0, NULL, lg, scale, cu, N, 1, T, H, K, V, 2)
                      : retention_bwd_ref_f64(dq, dk, dv, w, q, k, v, h0, lg, scale, cu, N, 1, T, H, K, V);
        double eq = fd_err(q, nq, dq, q, k, v, h0, lg, scale, w, o, 1, T, H, K, V);
        double ek = fd_err(k, nq, dk, q, k, v, h0, lg, scale, w, o, 1, T, H, K, V);
        double ev = fd_err(v, nv, dv, q, k, v, h0, lg, scale, w, o, 1, T, H, K, V);
        check(rc == 0 && eq <= 1e-6 && ek <= 1e-6 && ev <= 1e-6,
              path ? "packed gradcheck f64 bwd_chunk (C=2, an empty document): dq dk dv"
                   : "packed gradcheck f64 bwd_ref (an empty document): dq dk dv",
              "rel err dq %.3e dk %.3e dv %.3e", eq, ek, ev);
        free(dq), free(dk), free(dv);
    }
    CU = NULL, CU_N = 0;
    double *ht = dzeros(ns);
    retention_fwd_chunk_f64(o, ht, NULL, q, k, v, h0, lg, scale, cu, N, 1, T, H, K, V, 2);
    const int64_t st = H * K * V;
    check(!memcmp(ht + 2 * st, h0 + 2 * st, (size_t)st * sizeof(double)), "packed: an empty document's final state is its h0",
          "compared %ld values", (long)st);
    free(q), free(k), free(v), free(h0), free(w), free(o), free(ht);
}

static void test_packed_bad(void) {
    const int64_t T = 8, H = 2, K = 3, V = 2;
    float *x = fzeros(2 * T * H * 4), *o = fzeros(2 * T * H * 4), lg[2] = {-0.1f, -0.2f};
    bad_pack_t bad[8];
    int nb = bad_packs(T, bad), all = 1;
    for (int i = 0; i < nb; i++) {
        const int64_t *cu = bad[i].cu, N = bad[i].N, B = bad[i].B;
        int r[4] = {retention_fwd_ref_f32(o, NULL, x, x, x, NULL, lg, 1, cu, N, B, T, H, K, V),
                    retention_fwd_chunk_f32(o, NULL, NULL, x, x, x, NULL, lg, 1, cu, N, B, T, H, K, V, 4),
                    retention_bwd_ref_f32(o, o, o, x, x, x, x, NULL, lg, 1, cu, N, B, T, H, K, V),
                    retention_bwd_chunk_f32(o, o, o, x, x, x, x, NULL, NULL, lg, 1, cu, N, B, T, H, K, V, 4)};
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
    static const int64_t shapes[][6] = {
        /* B, T, H, K, V, C */
        {1, 1, 1, 8, 8, 64},   {1, 1, 2, 8, 4, 16},   {2, 37, 3, 16, 8, 64}, {2, 37, 4, 8, 16, 16},
        {1, 100, 2, 16, 16, 64}, {2, 100, 4, 8, 8, 16}, {2, 130, 3, 32, 16, 64}, {1, 130, 4, 16, 32, 16},
        {2, 64, 2, 8, 8, 64},  {1, 128, 2, 8, 8, 16},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t *s = shapes[i];
        test_forward(s[0], s[1], s[2], s[3], s[4], s[5], (int)(i % 2), 1);
        test_forward(s[0], s[1], s[2], s[3], s[4], s[5], (int)((i + 1) % 2), 0);
    }
    test_gradients(2, 21, 4, 4, 3, 8, 1);
    test_gradients(1, 17, 2, 3, 5, 16, 0);
    test_gradients(1, 5, 3, 2, 2, 64, 1);
    test_backward_f32(2, 130, 4, 16, 8, 64);
    test_backward_f32(1, 37, 3, 8, 16, 16);
    test_decode(2, 45, 3, 8, 6, 16, 20);
    test_decode(1, 70, 4, 4, 4, 64, 67);
    test_threads();
    for (int form = 0; form < 2; form++) {
        test_packed(3, 8, 16, 64, form);
        test_packed(2, 16, 8, 16, form);
    }
    test_packed(2, 4, 4, 1, 1);
    test_packed_gradcheck();
    test_packed_bad();
    return tap_done();
}
