/* test_attention.c — TAP tests for kernels/attention.c (tiled flash attention, naive reference,
 * decode step, RoPE).
 *
 * Checks: tiled forward (o, lse) and tiled backward vs the naive reference in f32 and f64 for T up
 * to 300 with tiles 64 and 16, GQA and sliding windows; float64 central finite-difference checks
 * of both backward paths (dq, dk, dv) and of rope_bwd; window >= T equals no window; decode steps
 * from a KV cache reproduce the full forward row by row (also after a prefill, and from a ring of the last
 * positions under a sliding window); thread-count
 * independence (bit-identical); += accumulation and NULL gradient pointers; RoPE properties;
 * argument errors. Packed sequences (cu_seqlens): documents {1, 63, 64, 65, 200} in one row give each
 * document's own o, lse and gradients (f32 rel ≤ 1e-5; tiled and reference; GQA; full causal and sliding
 * windows that restart per document), RoPE positions restart per document (forward and backward),
 * float64 finite differences through the packed kernels (an empty document included), bad layouts −1.
 */
#include "../kernels/attention.h"
#include "../kernels/parallel.h"
#include "ktest.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* max|a-b| / max(max|b|, floor) */
static double rel_d(const double *a, const double *b, int64_t n, double floor_) {
    double e = 0, m = floor_;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= e)) e = d; /* NaN-propagating */
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return e / m;
}
static double rel_f(const float *a, const float *b, int64_t n, double floor_) {
    double e = 0, m = floor_;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= e)) e = d;
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
    }
    return e / m;
}

typedef struct {
    int64_t B, T, H, Hkv, D, window, tile;
} shape_t;

static const char *shape_name(const char *what, shape_t s) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s B=%lld T=%lld H=%lld Hkv=%lld D=%lld w=%lld tile=%lld", what,
             (long long)s.B, (long long)s.T, (long long)s.H, (long long)s.Hkv, (long long)s.D,
             (long long)s.window, (long long)s.tile);
    return buf;
}

/* ---- tiled vs naive, forward and backward, f64 and f32 ---- */
static void check_vs_ref(shape_t s, double qamp) {
    int64_t nq = s.B * s.T * s.H * s.D, nk = s.B * s.T * s.Hkv * s.D, nl = s.B * s.H * s.T;
    double scale = 1.0 / sqrt((double)s.D);
    double *q = drand_vec(nq, qamp), *k = drand_vec(nk, 1), *v = drand_vec(nk, 1);
    double *dout = drand_vec(nq, 1);
    /* f64 */
    double *o_r = dzeros(nq), *l_r = dzeros(nl), *o_t = dzeros(nq), *l_t = dzeros(nl);
    int rc = attn_fwd_ref_f64(o_r, l_r, q, k, v, scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D);
    rc |= attn_fwd_f64(o_t, l_t, q, k, v, scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D, s.tile);
    double eo = rel_d(o_t, o_r, nq, 1e-30), el = rel_d(l_t, l_r, nl, 1e-30);
    check(rc == 0 && eo <= 1e-10 && el <= 1e-10, shape_name("f64 fwd tiled == ref (o, lse)", s),
       "o err %.3g lse err %.3g", eo, el);
    double *gq_r = dzeros(nq), *gk_r = dzeros(nk), *gv_r = dzeros(nk);
    double *gq_t = dzeros(nq), *gk_t = dzeros(nk), *gv_t = dzeros(nk);
    rc = attn_bwd_ref_f64(gq_r, gk_r, gv_r, q, k, v, dout, scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv,
                          s.D);
    rc |= attn_bwd_f64(gq_t, gk_t, gv_t, q, k, v, o_t, l_t, dout, scale, s.window, NULL, 0, s.B, s.T, s.H,
                       s.Hkv, s.D, s.tile);
    /* floor 1e-3 on the scale: with T = 1 the exact dq is 0 (o = v) */
    double e1 = rel_d(gq_t, gq_r, nq, 1e-3), e2 = rel_d(gk_t, gk_r, nk, 1e-3),
           e3 = rel_d(gv_t, gv_r, nk, 1e-3);
    double e = fmax(e1, fmax(e2, e3));
    check(rc == 0 && e <= 1e-10, shape_name("f64 bwd tiled == ref (dq, dk, dv)", s),
       "max err %.3g (dq %.3g)", e, e1);
    /* f32 */
    float *qf = to_f(q, nq), *kf = to_f(k, nk), *vf = to_f(v, nk), *df = to_f(dout, nq);
    float *fo_r = fzeros(nq), *fl_r = fzeros(nl), *fo_t = fzeros(nq), *fl_t = fzeros(nl);
    rc = attn_fwd_ref_f32(fo_r, fl_r, qf, kf, vf, (float)scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv,
                          s.D);
    rc |= attn_fwd_f32(fo_t, fl_t, qf, kf, vf, (float)scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D,
                       s.tile);
    eo = rel_f(fo_t, fo_r, nq, 1e-30);
    el = rel_f(fl_t, fl_r, nl, 1e-30);
    check(rc == 0 && eo <= 1e-4 && el <= 1e-4, shape_name("f32 fwd tiled == ref (o, lse)", s),
       "o err %.3g lse err %.3g", eo, el);
    float *fq_r = fzeros(nq), *fk_r = fzeros(nk), *fv_r = fzeros(nk);
    float *fq_t = fzeros(nq), *fk_t = fzeros(nk), *fv_t = fzeros(nk);
    rc = attn_bwd_ref_f32(fq_r, fk_r, fv_r, qf, kf, vf, df, (float)scale, s.window, NULL, 0, s.B, s.T, s.H,
                          s.Hkv, s.D);
    rc |= attn_bwd_f32(fq_t, fk_t, fv_t, qf, kf, vf, fo_t, fl_t, df, (float)scale, s.window, NULL, 0, s.B,
                       s.T, s.H, s.Hkv, s.D, s.tile);
    e1 = rel_f(fq_t, fq_r, nq, 1e-3);
    e2 = rel_f(fk_t, fk_r, nk, 1e-3);
    e3 = rel_f(fv_t, fv_r, nk, 1e-3);
    e = fmax(e1, fmax(e2, e3));
    check(rc == 0 && e <= 1e-4, shape_name("f32 bwd tiled == ref (dq, dk, dv)", s),
       "max err %.3g (dq %.3g)", e, e1);
    free(q), free(k), free(v), free(dout), free(o_r), free(l_r), free(o_t), free(l_t);
    free(gq_r), free(gk_r), free(gv_r), free(gq_t), free(gk_t), free(gv_t);
    free(qf), free(kf), free(vf), free(df), free(fo_r), free(fl_r), free(fo_t), free(fl_t);
    free(fq_r), free(fk_r), free(fv_r), free(fq_t), free(fk_t), free(fv_t);
}

/* ---- float64 finite-difference gradient check of both backward paths ---- */
static double loss_of(int tiled, const double *q, const double *k, const double *v,
                      const double *w, double *o, shape_t s, double scale) {
    int64_t nq = s.B * s.T * s.H * s.D;
    if (tiled)
        attn_fwd_f64(o, NULL, q, k, v, scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D, s.tile);
    else
        attn_fwd_ref_f64(o, NULL, q, k, v, scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D);
    double L = 0;
    for (int64_t i = 0; i < nq; i++) L += o[i] * w[i];
    return L;
}

static void gradcheck(shape_t s) {
    int64_t nq = s.B * s.T * s.H * s.D, nk = s.B * s.T * s.Hkv * s.D, nl = s.B * s.H * s.T;
    double scale = 1.0 / sqrt((double)s.D), h = 1e-6;
    double *q = drand_vec(nq, 1.5), *k = drand_vec(nk, 1.5), *v = drand_vec(nk, 1);
    double *w = drand_vec(nq, 1), *o = dzeros(nq), *lse = dzeros(nl);
    for (int tiled = 0; tiled < 2; tiled++) {
        double *g[3] = {dzeros(nq), dzeros(nk), dzeros(nk)};
        int rc;
        if (tiled) {
            rc = attn_fwd_f64(o, lse, q, k, v, scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D, s.tile);
            rc |= attn_bwd_f64(g[0], g[1], g[2], q, k, v, o, lse, w, scale, s.window, NULL, 0, s.B, s.T,
                               s.H, s.Hkv, s.D, s.tile);
        } else {
            rc = attn_bwd_ref_f64(g[0], g[1], g[2], q, k, v, w, scale, s.window, NULL, 0, s.B, s.T, s.H,
                                  s.Hkv, s.D);
        }
        double *x[3] = {q, k, v};
        int64_t n[3] = {nq, nk, nk};
        const char *nm[3] = {"dq", "dk", "dv"};
        for (int a = 0; a < 3; a++) {
            double maxdiff = 0, maxnum = 1e-3;
            for (int64_t i = 0; i < n[a]; i++) {
                double x0 = x[a][i];
                x[a][i] = x0 + h;
                double lp = loss_of(tiled, q, k, v, w, o, s, scale);
                x[a][i] = x0 - h;
                double lm = loss_of(tiled, q, k, v, w, o, s, scale);
                x[a][i] = x0;
                double num = (lp - lm) / (2 * h);
                if (fabs(num) > maxnum) maxnum = fabs(num);
                double d = fabs(num - g[a][i]);
                if (!(d <= maxdiff)) maxdiff = d;
            }
            char name[300];
            snprintf(name, sizeof name, "%s %s", tiled ? "gradcheck attn_bwd" : "gradcheck attn_bwd_ref",
                     shape_name(nm[a], s));
            check(rc == 0 && maxdiff / maxnum <= 1e-6, name, "rel err %.3g (max |num| %.3g)",
               maxdiff / maxnum, maxnum);
        }
        free(g[0]), free(g[1]), free(g[2]);
    }
    free(q), free(k), free(v), free(w), free(o), free(lse);
}

/* ---- window >= T is exactly no window ---- */
static void check_window_ge_T(shape_t s) {
    int64_t nq = s.B * s.T * s.H * s.D, nk = s.B * s.T * s.Hkv * s.D, nl = s.B * s.H * s.T;
    float scale = 1.0f / sqrtf((float)s.D);
    double *qd = drand_vec(nq, 1), *kd = drand_vec(nk, 1), *vd = drand_vec(nk, 1),
           *dd = drand_vec(nq, 1);
    float *q = to_f(qd, nq), *k = to_f(kd, nk), *v = to_f(vd, nk), *dout = to_f(dd, nq);
    int64_t wins[3] = {0, s.T, s.T + 50};
    float *o[3], *l[3], *g[3][3];
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        o[i] = fzeros(nq), l[i] = fzeros(nl);
        g[i][0] = fzeros(nq), g[i][1] = fzeros(nk), g[i][2] = fzeros(nk);
        rc |= attn_fwd_f32(o[i], l[i], q, k, v, scale, wins[i], NULL, 0, s.B, s.T, s.H, s.Hkv, s.D, s.tile);
        rc |= attn_bwd_f32(g[i][0], g[i][1], g[i][2], q, k, v, o[i], l[i], dout, scale, wins[i], NULL, 0,
                           s.B, s.T, s.H, s.Hkv, s.D, s.tile);
    }
    int same = 1;
    for (int i = 1; i < 3; i++) {
        same &= !memcmp(o[i], o[0], (size_t)nq * sizeof(float));
        same &= !memcmp(l[i], l[0], (size_t)nl * sizeof(float));
        same &= !memcmp(g[i][0], g[0][0], (size_t)nq * sizeof(float));
        same &= !memcmp(g[i][1], g[0][1], (size_t)nk * sizeof(float));
        same &= !memcmp(g[i][2], g[0][2], (size_t)nk * sizeof(float));
    }
    /* and the reference agrees with itself too */
    float *or0 = fzeros(nq), *or1 = fzeros(nq);
    rc |= attn_fwd_ref_f32(or0, NULL, q, k, v, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D);
    rc |= attn_fwd_ref_f32(or1, NULL, q, k, v, scale, s.T, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D);
    same &= !memcmp(or0, or1, (size_t)nq * sizeof(float));
    check(rc == 0 && same, shape_name("window T and T+50 == no window (bit-identical fwd+bwd)", s),
       "rc %g same %g", (double)rc, (double)same);
    for (int i = 0; i < 3; i++) free(o[i]), free(l[i]), free(g[i][0]), free(g[i][1]), free(g[i][2]);
    free(qd), free(kd), free(vd), free(dd), free(q), free(k), free(v), free(dout), free(or0),
        free(or1);
}

/* ---- decode from a KV cache reproduces the full forward; prefill P rows then decode ---- */
static void check_decode(shape_t s, int64_t P) {
    int64_t nq = s.B * s.T * s.H * s.D, nk = s.B * s.T * s.Hkv * s.D, Tmax = s.T + 3;
    int64_t HD = s.H * s.D, KD = s.Hkv * s.D;
    double scale = 1.0 / sqrt((double)s.D);
    double *q = drand_vec(nq, 1.5), *k = drand_vec(nk, 1.5), *v = drand_vec(nk, 1);
    double *o_full = dzeros(nq), *o_dec = dzeros(nq);
    double *kc = dzeros(s.B * Tmax * KD), *vc = dzeros(s.B * Tmax * KD);
    double *qt = dzeros(s.B * HD), *ot = dzeros(s.B * HD);
    float *qf = to_f(q, nq), *kf = to_f(k, nk), *vf = to_f(v, nk);
    float *fo_full = fzeros(nq), *fo_dec = fzeros(nq);
    float *fkc = fzeros(s.B * Tmax * KD), *fvc = fzeros(s.B * Tmax * KD);
    float *fqt = fzeros(s.B * HD), *fot = fzeros(s.B * HD);
    int rc = attn_fwd_f64(o_full, NULL, q, k, v, scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D, s.tile);
    rc |= attn_fwd_f32(fo_full, NULL, qf, kf, vf, (float)scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv,
                       s.D, s.tile);
    /* prefill: forward over the first P rows (a separate call with T = P), cache their k, v */
    if (P > 0) {
        double *qp = dzeros(s.B * P * HD), *kp = dzeros(s.B * P * KD), *vp = dzeros(s.B * P * KD);
        double *op = dzeros(s.B * P * HD);
        for (int64_t b = 0; b < s.B; b++) {
            memcpy(qp + b * P * HD, q + b * s.T * HD, (size_t)(P * HD) * sizeof(double));
            memcpy(kp + b * P * KD, k + b * s.T * KD, (size_t)(P * KD) * sizeof(double));
            memcpy(vp + b * P * KD, v + b * s.T * KD, (size_t)(P * KD) * sizeof(double));
        }
        float *fqp = to_f(qp, s.B * P * HD), *fkp = to_f(kp, s.B * P * KD),
              *fvp = to_f(vp, s.B * P * KD), *fop = fzeros(s.B * P * HD);
        rc |= attn_fwd_f64(op, NULL, qp, kp, vp, scale, s.window, NULL, 0, s.B, P, s.H, s.Hkv, s.D, s.tile);
        rc |= attn_fwd_f32(fop, NULL, fqp, fkp, fvp, (float)scale, s.window, NULL, 0, s.B, P, s.H, s.Hkv,
                           s.D, s.tile);
        for (int64_t b = 0; b < s.B; b++) {
            memcpy(o_dec + b * s.T * HD, op + b * P * HD, (size_t)(P * HD) * sizeof(double));
            memcpy(fo_dec + b * s.T * HD, fop + b * P * HD, (size_t)(P * HD) * sizeof(float));
            memcpy(kc + b * Tmax * KD, kp + b * P * KD, (size_t)(P * KD) * sizeof(double));
            memcpy(vc + b * Tmax * KD, vp + b * P * KD, (size_t)(P * KD) * sizeof(double));
            memcpy(fkc + b * Tmax * KD, fkp + b * P * KD, (size_t)(P * KD) * sizeof(float));
            memcpy(fvc + b * Tmax * KD, fvp + b * P * KD, (size_t)(P * KD) * sizeof(float));
        }
        free(qp), free(kp), free(vp), free(op), free(fqp), free(fkp), free(fvp), free(fop);
    }
    for (int64_t t = P; t < s.T; t++) {
        for (int64_t b = 0; b < s.B; b++) { /* append k, v at index t, gather q row */
            memcpy(kc + (b * Tmax + t) * KD, k + (b * s.T + t) * KD, (size_t)KD * sizeof(double));
            memcpy(vc + (b * Tmax + t) * KD, v + (b * s.T + t) * KD, (size_t)KD * sizeof(double));
            memcpy(fkc + (b * Tmax + t) * KD, kf + (b * s.T + t) * KD, (size_t)KD * sizeof(float));
            memcpy(fvc + (b * Tmax + t) * KD, vf + (b * s.T + t) * KD, (size_t)KD * sizeof(float));
            memcpy(qt + b * HD, q + (b * s.T + t) * HD, (size_t)HD * sizeof(double));
            memcpy(fqt + b * HD, qf + (b * s.T + t) * HD, (size_t)HD * sizeof(float));
        }
        rc |= attn_decode_step_f64(ot, qt, kc, vc, scale, s.window, t, s.B, Tmax, s.H, s.Hkv, s.D);
        rc |= attn_decode_step_f32(fot, fqt, fkc, fvc, (float)scale, s.window, t, s.B, Tmax, s.H,
                                   s.Hkv, s.D);
        for (int64_t b = 0; b < s.B; b++) {
            memcpy(o_dec + (b * s.T + t) * HD, ot + b * HD, (size_t)HD * sizeof(double));
            memcpy(fo_dec + (b * s.T + t) * HD, fot + b * HD, (size_t)HD * sizeof(float));
        }
    }
    double e64 = rel_d(o_dec, o_full, nq, 1e-30), e32 = rel_f(fo_dec, fo_full, nq, 1e-30);
    char name[300];
    snprintf(name, sizeof name, "%s prefill=%lld", shape_name("decode == full forward", s),
             (long long)P);
    check(rc == 0 && e64 <= 1e-10 && e32 <= 1e-5, name, "f64 err %.3g f32 err %.3g", e64, e32);
    free(q), free(k), free(v), free(o_full), free(o_dec), free(kc), free(vc), free(qt), free(ot);
    free(qf), free(kf), free(vf), free(fo_full), free(fo_dec), free(fkc), free(fvc), free(fqt),
        free(fot);
}

/* ---- a sliding window decodes from a ring of the last Tmax = C >= window positions (slot t mod C),
 * both runs of the ring in position order: every row matches the full forward (issue 17, item 15) ---- */
static void check_decode_ring(shape_t s, int64_t C) {
    int64_t nq = s.B * s.T * s.H * s.D, nk = s.B * s.T * s.Hkv * s.D, HD = s.H * s.D, KD = s.Hkv * s.D;
    double scale = 1.0 / sqrt((double)s.D);
    double *q = drand_vec(nq, 1.5), *k = drand_vec(nk, 1.5), *v = drand_vec(nk, 1);
    double *o_full = dzeros(nq), *o_dec = dzeros(nq), *kc = dzeros(s.B * C * KD), *vc = dzeros(s.B * C * KD);
    double *qt = dzeros(s.B * HD), *ot = dzeros(s.B * HD);
    float *qf = to_f(q, nq), *kf = to_f(k, nk), *vf = to_f(v, nk), *fo_full = fzeros(nq), *fo_dec = fzeros(nq);
    float *fkc = fzeros(s.B * C * KD), *fvc = fzeros(s.B * C * KD), *fqt = fzeros(s.B * HD), *fot = fzeros(s.B * HD);
    int rc = attn_fwd_f64(o_full, NULL, q, k, v, scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D, s.tile);
    rc |= attn_fwd_f32(fo_full, NULL, qf, kf, vf, (float)scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D,
                       s.tile);
    for (int64_t t = 0; t < s.T; t++) {
        int64_t slot = t % C;
        for (int64_t b = 0; b < s.B; b++) {
            memcpy(kc + (b * C + slot) * KD, k + (b * s.T + t) * KD, (size_t)KD * sizeof(double));
            memcpy(vc + (b * C + slot) * KD, v + (b * s.T + t) * KD, (size_t)KD * sizeof(double));
            memcpy(fkc + (b * C + slot) * KD, kf + (b * s.T + t) * KD, (size_t)KD * sizeof(float));
            memcpy(fvc + (b * C + slot) * KD, vf + (b * s.T + t) * KD, (size_t)KD * sizeof(float));
            memcpy(qt + b * HD, q + (b * s.T + t) * HD, (size_t)HD * sizeof(double));
            memcpy(fqt + b * HD, qf + (b * s.T + t) * HD, (size_t)HD * sizeof(float));
        }
        rc |= attn_decode_step_f64(ot, qt, kc, vc, scale, s.window, t, s.B, C, s.H, s.Hkv, s.D);
        rc |= attn_decode_step_f32(fot, fqt, fkc, fvc, (float)scale, s.window, t, s.B, C, s.H, s.Hkv, s.D);
        for (int64_t b = 0; b < s.B; b++) {
            memcpy(o_dec + (b * s.T + t) * HD, ot + b * HD, (size_t)HD * sizeof(double));
            memcpy(fo_dec + (b * s.T + t) * HD, fot + b * HD, (size_t)HD * sizeof(float));
        }
    }
    double e64 = rel_d(o_dec, o_full, nq, 1e-30), e32 = rel_f(fo_dec, fo_full, nq, 1e-30);
    char name[300];
    snprintf(name, sizeof name, "%s ring of %lld slots", shape_name("decode == full forward", s), (long long)C);
    check(rc == 0 && e64 <= 1e-10 && e32 <= 1e-5, name, "f64 err %.3g f32 err %.3g", e64, e32);
    free(q), free(k), free(v), free(o_full), free(o_dec), free(kc), free(vc), free(qt), free(ot);
    free(qf), free(kf), free(vf), free(fo_full), free(fo_dec), free(fkc), free(fvc), free(fqt), free(fot);
}

/* ---- thread-count independence ---- */
static void check_threads(void) {
    shape_t s = {2, 150, 4, 2, 32, 40, 64};
    int64_t nq = s.B * s.T * s.H * s.D, nk = s.B * s.T * s.Hkv * s.D, nl = s.B * s.H * s.T;
    float scale = 1.0f / sqrtf((float)s.D);
    double *qd = drand_vec(nq, 1), *kd = drand_vec(nk, 1), *vd = drand_vec(nk, 1),
           *dd = drand_vec(nq, 1);
    float *q = to_f(qd, nq), *k = to_f(kd, nk), *v = to_f(vd, nk), *dout = to_f(dd, nq);
    float *o[2], *l[2], *g[2][3], *r[2], *dec[2];
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        hb_threads_set(i + 1);
        o[i] = fzeros(nq), l[i] = fzeros(nl), r[i] = fzeros(nq), dec[i] = fzeros(s.B * s.H * s.D);
        g[i][0] = fzeros(nq), g[i][1] = fzeros(nk), g[i][2] = fzeros(nk);
        rc |= attn_fwd_f32(o[i], l[i], q, k, v, scale, s.window, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D, s.tile);
        rc |= attn_bwd_f32(g[i][0], g[i][1], g[i][2], q, k, v, o[i], l[i], dout, scale, s.window, NULL, 0,
                           s.B, s.T, s.H, s.Hkv, s.D, s.tile);
        rc |= rope_fwd_f32(r[i], q, 10000.0, 3, NULL, 0, s.B, s.T, s.H, s.D);
        rc |= rope_bwd_f32(r[i], dout, 10000.0, 3, NULL, 0, s.B, s.T, s.H, s.D);
        /* decode reads k, v as a cache with Tmax = T at the last position */
        rc |= attn_decode_step_f32(dec[i], q, k, v, scale, s.window, s.T - 1, s.B, s.T, s.H,
                                   s.Hkv, s.D);
    }
    hb_threads_set(2);
    int same = !memcmp(o[0], o[1], (size_t)nq * sizeof(float)) &&
               !memcmp(l[0], l[1], (size_t)nl * sizeof(float)) &&
               !memcmp(g[0][0], g[1][0], (size_t)nq * sizeof(float)) &&
               !memcmp(g[0][1], g[1][1], (size_t)nk * sizeof(float)) &&
               !memcmp(g[0][2], g[1][2], (size_t)nk * sizeof(float)) &&
               !memcmp(r[0], r[1], (size_t)nq * sizeof(float)) &&
               !memcmp(dec[0], dec[1], (size_t)(s.B * s.H * s.D) * sizeof(float));
    check(rc == 0 && same, "threads 1 vs 2: fwd, bwd (GQA), decode, rope bit-identical", "rc %g same %g",
       (double)rc, (double)same);
    for (int i = 0; i < 2; i++)
        free(o[i]), free(l[i]), free(r[i]), free(dec[i]), free(g[i][0]), free(g[i][1]),
            free(g[i][2]);
    free(qd), free(kd), free(vd), free(dd), free(q), free(k), free(v), free(dout);
}

/* ---- += semantics and NULL gradient pointers ---- */
static void check_accumulate(void) {
    shape_t s = {1, 70, 4, 2, 16, 0, 16};
    int64_t nq = s.B * s.T * s.H * s.D, nk = s.B * s.T * s.Hkv * s.D, nl = s.B * s.H * s.T;
    double scale = 1.0 / sqrt((double)s.D);
    double *q = drand_vec(nq, 1), *k = drand_vec(nk, 1), *v = drand_vec(nk, 1),
           *dout = drand_vec(nq, 1);
    double *o = dzeros(nq), *l = dzeros(nl);
    double *g[3] = {dzeros(nq), dzeros(nk), dzeros(nk)};
    double *a[3] = {drand_vec(nq, 1), drand_vec(nk, 1), drand_vec(nk, 1)};
    double *a0[3] = {dzeros(nq), dzeros(nk), dzeros(nk)};
    double *sep[3] = {dzeros(nq), dzeros(nk), dzeros(nk)};
    int64_t n[3] = {nq, nk, nk};
    for (int i = 0; i < 3; i++) memcpy(a0[i], a[i], (size_t)n[i] * sizeof(double));
    int rc = attn_fwd_f64(o, l, q, k, v, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D, s.tile);
    rc |= attn_bwd_f64(g[0], g[1], g[2], q, k, v, o, l, dout, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D,
                       s.tile);
    rc |= attn_bwd_f64(a[0], a[1], a[2], q, k, v, o, l, dout, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D,
                       s.tile);
    rc |= attn_bwd_f64(sep[0], NULL, NULL, q, k, v, o, l, dout, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv,
                       s.D, s.tile);
    rc |= attn_bwd_f64(NULL, sep[1], NULL, q, k, v, o, l, dout, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv,
                       s.D, s.tile);
    rc |= attn_bwd_f64(NULL, NULL, sep[2], q, k, v, o, l, dout, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv,
                       s.D, s.tile);
    rc |= attn_bwd_f64(NULL, NULL, NULL, q, k, v, o, l, dout, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D,
                       s.tile);
    rc |= attn_bwd_ref_f64(NULL, NULL, NULL, q, k, v, dout, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D);
    double eacc = 0, esep = 0;
    for (int i = 0; i < 3; i++)
        for (int64_t j = 0; j < n[i]; j++) {
            eacc = fmax(eacc, fabs(a[i][j] - (a0[i][j] + g[i][j])));
            esep = fmax(esep, fabs(sep[i][j] - g[i][j]));
        }
    check(rc == 0 && eacc <= 1e-12, "attn_bwd accumulates (+=) into dq, dk, dv", "err %.3g %g", eacc,
       0.0);
    check(rc == 0 && esep == 0, "attn_bwd with NULL gradient pointers gives the same single gradient",
       "err %.3g %g", esep, 0.0);
    /* the reference accumulates too */
    for (int i = 0; i < 3; i++) memcpy(a[i], a0[i], (size_t)n[i] * sizeof(double));
    double *r[3] = {dzeros(nq), dzeros(nk), dzeros(nk)};
    rc = attn_bwd_ref_f64(r[0], r[1], r[2], q, k, v, dout, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D);
    rc |= attn_bwd_ref_f64(a[0], a[1], a[2], q, k, v, dout, scale, 0, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D);
    eacc = 0;
    for (int i = 0; i < 3; i++)
        for (int64_t j = 0; j < n[i]; j++) eacc = fmax(eacc, fabs(a[i][j] - (a0[i][j] + r[i][j])));
    check(rc == 0 && eacc <= 1e-12, "attn_bwd_ref accumulates (+=)", "err %.3g %g", eacc, 0.0);
    for (int i = 0; i < 3; i++) free(g[i]), free(a[i]), free(a0[i]), free(sep[i]), free(r[i]);
    free(q), free(k), free(v), free(dout), free(o), free(l);
}

/* ---- RoPE ---- */
static void check_rope(void) {
    int64_t B = 2, T = 50, H = 3, D = 16, n = B * T * H * D, half = D / 2;
    double theta = 500.0;
    int64_t pos0 = 7;
    double *x = drand_vec(n, 1), *y = dzeros(n);
    int rc = rope_fwd_f64(y, x, theta, pos0, NULL, 0, B, T, H, D);
    /* independent formula */
    double emax = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t j = 0; j < half; j++) {
                    double invf = 1.0 / pow(theta, (double)(2 * j) / (double)D);
                    double ang = (double)(pos0 + t) * invf;
                    int64_t off = ((b * T + t) * H + h) * D;
                    double x1 = x[off + j], x2 = x[off + j + half];
                    emax = fmax(emax, fabs(y[off + j] - (x1 * cos(ang) - x2 * sin(ang))));
                    emax = fmax(emax, fabs(y[off + j + half] - (x1 * sin(ang) + x2 * cos(ang))));
                }
    check(rc == 0 && emax <= 1e-12, "rope_fwd f64 == NeoX rotate-half formula", "err %.3g %g", emax,
       0.0);
    /* f32 vs f64 (fp32 angles lose ~pos*eps) */
    float *xf = to_f(x, n), *yf = fzeros(n);
    rc = rope_fwd_f32(yf, xf, theta, pos0, NULL, 0, B, T, H, D);
    double e32 = 0;
    for (int64_t i = 0; i < n; i++) e32 = fmax(e32, fabs((double)yf[i] - y[i]));
    check(rc == 0 && e32 <= 2e-5, "rope_fwd f32 close to f64", "err %.3g %g", e32, 0.0);
    /* in place == out of place (bit-identical) */
    float *zf = to_f(x, n);
    rc = rope_fwd_f32(zf, zf, theta, pos0, NULL, 0, B, T, H, D);
    check(rc == 0 && !memcmp(zf, yf, (size_t)n * sizeof(float)), "rope_fwd in place == out of place",
       "rc %g %g", (double)rc, 0.0);
    /* offsets: rows [P, T) rotated with pos0 + P match the full call (B = 1 slice) */
    int64_t P = 20, m = (T - P) * H * D;
    float *tail = fzeros(m);
    rc = rope_fwd_f32(tail, xf + P * H * D, theta, pos0 + P, NULL, 0, 1, T - P, H, D);
    check(rc == 0 && !memcmp(tail, yf + P * H * D, (size_t)m * sizeof(float)),
       "rope_fwd with pos0 offset == rows of a longer sequence", "rc %g %g", (double)rc, 0.0);
    /* gradient: rope is linear, so dL/dx for L = sum w . R x is R^T w; check by central FD */
    double *w = drand_vec(n, 1), *gx = drand_vec(n, 1), *g0 = dzeros(n), *tmp = dzeros(n);
    memcpy(g0, gx, (size_t)n * sizeof(double));
    rc = rope_bwd_f64(gx, w, theta, pos0, NULL, 0, B, T, H, D);
    double maxdiff = 0, maxnum = 1e-3, h = 1e-6;
    for (int64_t i = 0; i < n; i++) {
        double x0 = x[i], lp = 0, lm = 0;
        x[i] = x0 + h;
        rope_fwd_f64(tmp, x, theta, pos0, NULL, 0, B, T, H, D);
        for (int64_t j = 0; j < n; j++) lp += w[j] * tmp[j];
        x[i] = x0 - h;
        rope_fwd_f64(tmp, x, theta, pos0, NULL, 0, B, T, H, D);
        for (int64_t j = 0; j < n; j++) lm += w[j] * tmp[j];
        x[i] = x0;
        double num = (lp - lm) / (2 * h);
        maxnum = fmax(maxnum, fabs(num));
        maxdiff = fmax(maxdiff, fabs(gx[i] - g0[i] - num));
    }
    check(rc == 0 && maxdiff / maxnum <= 1e-6, "gradcheck rope_bwd (f64, accumulating)",
       "rel err %.3g (max |num| %.3g)", maxdiff / maxnum, maxnum);
    /* round trip: R^T R x = x */
    double *back = dzeros(n);
    rc = rope_bwd_f64(back, y, theta, pos0, NULL, 0, B, T, H, D);
    check(rc == 0 && rel_d(back, x, n, 1e-30) <= 1e-14, "rope_bwd(rope_fwd(x)) == x", "err %.3g %g",
       rel_d(back, x, n, 1e-30), 0.0);
    free(x), free(y), free(xf), free(yf), free(zf), free(tail), free(w), free(gx), free(g0),
        free(tmp), free(back);
}

/* ---- special values: window 1 (o = v), large logits ---- */
static void check_special(void) {
    shape_t s = {2, 45, 4, 2, 8, 1, 16};
    int64_t nq = s.B * s.T * s.H * s.D, nk = s.B * s.T * s.Hkv * s.D;
    double *q = drand_vec(nq, 1), *k = drand_vec(nk, 1), *v = drand_vec(nk, 1), *o = dzeros(nq);
    int rc = attn_fwd_f64(o, NULL, q, k, v, 0.3, 1, NULL, 0, s.B, s.T, s.H, s.Hkv, s.D, s.tile);
    double e = 0;
    for (int64_t b = 0; b < s.B; b++)
        for (int64_t t = 0; t < s.T; t++)
            for (int64_t h = 0; h < s.H; h++)
                for (int64_t d = 0; d < s.D; d++)
                    e = fmax(e, fabs(o[((b * s.T + t) * s.H + h) * s.D + d] -
                                     v[((b * s.T + t) * s.Hkv + h / 2) * s.D + d]));
    check(rc == 0 && e <= 1e-15, "window 1: o equals v of the kv head", "err %.3g %g", e, 0.0);
    free(q), free(k), free(v), free(o);
    /* large logits (|s| up to ~100): online softmax stays finite and matches the reference */
    shape_t L = {1, 130, 2, 1, 16, 0, 16};
    check_vs_ref(L, 25.0);
}

/* ---- argument errors ---- */
static void check_errors(void) {
    double x[64] = {0}, o[64], l[8];
    int bad = 0;
    bad += attn_fwd_f64(o, l, x, x, x, 1, 0, NULL, 0, 1, 2, 3, 2, 4, 64) == -1;      /* H % Hkv */
    bad += attn_fwd_f64(o, l, x, x, x, 1, 0, NULL, 0, 1, 2, 2, 1, 4, 0) == -1;       /* tile 0 */
    bad += attn_fwd_f64(o, l, x, x, x, 1, -1, NULL, 0, 1, 2, 2, 1, 4, 64) == -1;     /* window < 0 */
    bad += attn_fwd_ref_f64(o, l, x, x, x, 1, 0, NULL, 0, 1, 2, 3, 2, 4) == -1;      /* H % Hkv */
    bad += attn_bwd_f64(o, o, o, x, x, x, x, NULL, x, 1, 0, NULL, 0, 1, 2, 2, 1, 4, 64) == -1; /* no lse */
    bad += attn_decode_step_f64(o, x, x, x, 1, 0, 2, 1, 2, 2, 1, 4) == -1;  /* pos >= Tmax */
    bad += attn_decode_step_f64(o, x, x, x, 1, 3, 2, 1, 2, 2, 1, 4) == -1;  /* ... with a window > Tmax */
    bad += rope_fwd_f64(o, x, 10000.0, 0, NULL, 0, 1, 2, 2, 5) == -1;                /* odd D */
    bad += rope_fwd_f64(o, x, 0.0, 0, NULL, 0, 1, 2, 2, 4) == -1;                    /* theta <= 0 */
    check(bad == 9, "bad arguments return -1", "%g of %g rejected", (double)bad, 9.0);
    int good = attn_fwd_f64(o, l, x, x, x, 1, 0, NULL, 0, 0, 0, 2, 1, 4, 64) == 0 &&
               attn_bwd_f64(o, o, o, x, x, x, x, l, x, 1, 0, NULL, 0, 1, 0, 2, 1, 4, 64) == 0;
    check(good, "empty B or T is a no-op returning 0", "%g %g", (double)good, 0.0);
}

/* ---- packed sequences ---- */
static void check_packed(int64_t H, int64_t Hkv, int64_t D, int64_t window, int64_t tile, int tiled) {
    int64_t cu[PACK_N + 1];
    const int64_t T = pack_cu(cu, PACK_LENS, PACK_N), N = PACK_N, nq = T * H * D, nk = T * Hkv * D, nl = H * T;
    double *qd = drand_vec(nq, 1.5), *kd = drand_vec(nk, 1.5), *vd = drand_vec(nk, 1), *wd = drand_vec(nq, 1);
    float *q = to_f(qd, nq), *k = to_f(kd, nk), *v = to_f(vd, nk), *w = to_f(wd, nq), scale = 1.0f / sqrtf((float)D);
    float *r[2][5];
    const int64_t len[5] = {nq, nl, nq, nk, nk}; /* o lse dq dk dv */
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 5; i++) r[a][i] = fzeros(len[i]);
    float **p = r[0], *lse1 = fzeros(nl);
    int rc = tiled ? attn_fwd_f32(p[0], p[1], q, k, v, scale, window, cu, N, 1, T, H, Hkv, D, tile)
                   : attn_fwd_ref_f32(p[0], p[1], q, k, v, scale, window, cu, N, 1, T, H, Hkv, D);
    rc |= tiled ? attn_bwd_f32(p[2], p[3], p[4], q, k, v, p[0], p[1], w, scale, window, cu, N, 1, T, H, Hkv, D, tile)
                : attn_bwd_ref_f32(p[2], p[3], p[4], q, k, v, w, scale, window, cu, N, 1, T, H, Hkv, D);
    for (int64_t d = 0; d < N; d++) { /* document d alone */
        const int64_t L = cu[d + 1] - cu[d], oq = cu[d] * H * D, ok_ = cu[d] * Hkv * D;
        float **a = r[1];
        rc |= tiled ? attn_fwd_f32(a[0] + oq, lse1, q + oq, k + ok_, v + ok_, scale, window, NULL, 0, 1, L, H, Hkv, D, tile)
                    : attn_fwd_ref_f32(a[0] + oq, lse1, q + oq, k + ok_, v + ok_, scale, window, NULL, 0, 1, L, H, Hkv, D);
        for (int64_t h = 0; h < H; h++) /* lse (1,H,L) of the document → its columns of (1,H,T) */
            for (int64_t t = 0; t < L; t++) a[1][h * T + cu[d] + t] = lse1[h * L + t];
        rc |= tiled ? attn_bwd_f32(a[2] + oq, a[3] + ok_, a[4] + ok_, q + oq, k + ok_, v + ok_, a[0] + oq, lse1, w + oq,
                                   scale, window, NULL, 0, 1, L, H, Hkv, D, tile)
                    : attn_bwd_ref_f32(a[2] + oq, a[3] + ok_, a[4] + ok_, q + oq, k + ok_, v + ok_, w + oq, scale, window,
                                       NULL, 0, 1, L, H, Hkv, D);
    }
    double e = 0;
    for (int i = 0; i < 5; i++) e = fmax(e, rel_f(r[0][i], r[1][i], len[i], 1e-30));
    char name[200];
    snprintf(name, sizeof name, "packed {1,63,64,65,200} == each document alone, f32 %s (H=%ld Hkv=%ld D=%ld window=%ld "
             "tile=%ld): o, lse, dq, dk, dv", tiled ? "tiled" : "ref", (long)H, (long)Hkv, (long)D, (long)window,
             (long)tile);
    check(rc == 0 && e <= 1e-5, name, "rc %d, max rel err %.3e", rc, e);
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 5; i++) free(r[a][i]);
    free(qd), free(kd), free(vd), free(wd), free(q), free(k), free(v), free(w), free(lse1);
}

static const int64_t *PCU;
static int64_t PN;
static double packed_loss(int tiled, const double *q, const double *k, const double *v, const double *w, double *o,
                          shape_t s, double scale) {
    if (tiled) attn_fwd_f64(o, NULL, q, k, v, scale, s.window, PCU, PN, 1, s.T, s.H, s.Hkv, s.D, s.tile);
    else attn_fwd_ref_f64(o, NULL, q, k, v, scale, s.window, PCU, PN, 1, s.T, s.H, s.Hkv, s.D);
    double L = 0;
    for (int64_t i = 0; i < s.T * s.H * s.D; i++) L += o[i] * w[i];
    return L;
}

static void check_packed_gradcheck(int64_t window) {
    const int64_t lens[] = {1, 3, 0, 4, 6}, N = 5;
    int64_t cu[6];
    shape_t s = {1, pack_cu(cu, lens, (int)N), 2, 1, 4, window, 2};
    const int64_t nq = s.T * s.H * s.D, nk = s.T * s.Hkv * s.D;
    double scale = 0.5, *q = drand_vec(nq, 1.5), *k = drand_vec(nk, 1.5), *v = drand_vec(nk, 1), *w = drand_vec(nq, 1);
    double *o = dzeros(nq), *lse = dzeros(s.H * s.T), worst[2] = {0, 0};
    PCU = cu, PN = N;
    int rc = 0;
    for (int tiled = 0; tiled < 2; tiled++) {
        double *g[3] = {dzeros(nq), dzeros(nk), dzeros(nk)}, *x[3] = {q, k, v};
        if (tiled) {
            rc |= attn_fwd_f64(o, lse, q, k, v, scale, window, cu, N, 1, s.T, s.H, s.Hkv, s.D, s.tile);
            rc |= attn_bwd_f64(g[0], g[1], g[2], q, k, v, o, lse, w, scale, window, cu, N, 1, s.T, s.H, s.Hkv, s.D, s.tile);
        } else {
            rc |= attn_bwd_ref_f64(g[0], g[1], g[2], q, k, v, w, scale, window, cu, N, 1, s.T, s.H, s.Hkv, s.D);
        }
        const int64_t n[3] = {nq, nk, nk};
        for (int a = 0; a < 3; a++) {
            double maxdiff = 0, maxnum = 1e-3;
            for (int64_t i = 0; i < n[a]; i++) {
                double x0 = x[a][i];
                x[a][i] = x0 + 1e-6;
                double lp = packed_loss(tiled, q, k, v, w, o, s, scale);
                x[a][i] = x0 - 1e-6;
                double lm = packed_loss(tiled, q, k, v, w, o, s, scale);
                x[a][i] = x0;
                double num = (lp - lm) / 2e-6;
                maxnum = fmax(maxnum, fabs(num));
                maxdiff = fmax(maxdiff, fabs(num - g[a][i]));
            }
            worst[tiled] = fmax(worst[tiled], maxdiff / maxnum);
        }
        free(g[0]), free(g[1]), free(g[2]);
    }
    char name[160];
    snprintf(name, sizeof name, "packed gradcheck f64 (documents {1,3,0,4,6}, window %ld, tile 2): attn_bwd_ref and "
             "attn_bwd dq dk dv", (long)window);
    check(rc == 0 && worst[0] <= 1e-6 && worst[1] <= 1e-6, name, "rel err ref %.3g tiled %.3g", worst[0], worst[1]);
    PCU = NULL, PN = 0;
    free(q), free(k), free(v), free(w), free(o), free(lse);
}

/* RoPE positions restart at every document: packed == each document alone, forward and backward */
static void check_packed_rope(void) {
    int64_t cu[PACK_N + 1];
    const int64_t T = pack_cu(cu, PACK_LENS, PACK_N), H = 3, D = 8, n = T * H * D;
    double *x = drand_vec(n, 1), *y[2] = {dzeros(n), dzeros(n)}, *g[2] = {dzeros(n), dzeros(n)};
    int rc = rope_fwd_f64(y[0], x, 500.0, 3, cu, PACK_N, 1, T, H, D);
    rc |= rope_bwd_f64(g[0], x, 500.0, 3, cu, PACK_N, 1, T, H, D);
    for (int64_t d = 0; d < PACK_N; d++) {
        const int64_t o = cu[d] * H * D, L = cu[d + 1] - cu[d];
        rc |= rope_fwd_f64(y[1] + o, x + o, 500.0, 3, NULL, 0, 1, L, H, D);
        rc |= rope_bwd_f64(g[1] + o, x + o, 500.0, 3, NULL, 0, 1, L, H, D);
    }
    double e = fmax(rel_d(y[0], y[1], n, 1e-30), rel_d(g[0], g[1], n, 1e-30));
    check(rc == 0 && e == 0, "packed rope: positions restart at every document (fwd and bwd == each document alone)",
          "rc %d err %.3g", rc, e);
    free(x), free(y[0]), free(y[1]), free(g[0]), free(g[1]);
}

static void check_packed_bad(void) {
    const int64_t T = 8, H = 2, Hkv = 1, D = 4;
    float *x = fzeros(2 * T * H * D), *o = fzeros(2 * T * H * D), *l = fzeros(2 * H * T);
    bad_pack_t bad[8];
    int nb = bad_packs(T, bad), all = 1;
    for (int i = 0; i < nb; i++) {
        const int64_t *cu = bad[i].cu, N = bad[i].N, B = bad[i].B;
        int r[6] = {attn_fwd_ref_f32(o, l, x, x, x, 1, 0, cu, N, B, T, H, Hkv, D),
                    attn_fwd_f32(o, l, x, x, x, 1, 0, cu, N, B, T, H, Hkv, D, 4),
                    attn_bwd_ref_f32(o, o, o, x, x, x, x, 1, 0, cu, N, B, T, H, Hkv, D),
                    attn_bwd_f32(o, o, o, x, x, x, x, l, x, 1, 0, cu, N, B, T, H, Hkv, D, 4),
                    rope_fwd_f32(o, x, 100.0, 0, cu, N, B, T, H, D), rope_bwd_f32(o, x, 100.0, 0, cu, N, B, T, H, D)};
        int good = 1;
        for (int j = 0; j < 6; j++) good &= r[j] == -1;
        if (!good) diag("not refused: %s", bad[i].what);
        all &= good;
    }
    check(all, "packed: bad cu_seqlens (start, end, order, B != 1, N = 0) return -1 from every function", "%d layouts", nb);
    free(x), free(o), free(l);
}

int main(void) {
    rng_seed(0x9e3779b97f4a7c15ull);
    hb_threads_set(2);
    shape_t vs[] = {
        {1, 1, 1, 1, 8, 0, 64},     {1, 1, 2, 1, 8, 3, 16},    {2, 37, 4, 2, 16, 0, 64},
        {2, 37, 4, 2, 16, 0, 16},   {1, 100, 2, 1, 32, 0, 64}, {2, 130, 3, 3, 8, 0, 16},
        {1, 130, 4, 4, 64, 0, 64},  {1, 300, 4, 1, 16, 0, 64}, {1, 300, 4, 2, 16, 0, 16},
        {2, 130, 4, 2, 16, 17, 16}, {1, 300, 2, 2, 8, 64, 64}, {1, 300, 4, 1, 8, 100, 16},
        {1, 300, 2, 1, 8, 5, 64},   {1, 300, 6, 2, 8, 70, 64}, {1, 100, 2, 1, 8, 0, 512},
    };
    int nvs = (int)(sizeof vs / sizeof vs[0]);
    int64_t ntest_vs = 4 * (nvs + 1), ntest_grad = 6 * 4, ntest_win = 3, ntest_dec = 6 + 3;
    /* ... + 10 packed: 6 equalities, 2 gradchecks, rope, bad layouts */
    plan((int)(ntest_vs + ntest_grad + ntest_win + ntest_dec + 1 + 3 + 6 + 1 + 2 + 10));
    for (int i = 0; i < nvs; i++) check_vs_ref(vs[i], 1.0);

    shape_t gc[] = {
        {2, 37, 4, 2, 8, 0, 16}, {1, 40, 2, 1, 8, 7, 16}, {1, 20, 2, 2, 4, 0, 64},
        {1, 33, 3, 1, 4, 12, 8},
    };
    for (int i = 0; i < 4; i++) gradcheck(gc[i]);

    shape_t wt[] = {{2, 130, 4, 2, 16, 0, 64}, {1, 300, 2, 1, 8, 0, 16}, {1, 37, 2, 2, 8, 0, 64}};
    for (int i = 0; i < 3; i++) check_window_ge_T(wt[i]);

    check_decode((shape_t){2, 100, 4, 2, 16, 0, 64}, 0);
    check_decode((shape_t){2, 100, 4, 2, 16, 0, 64}, 37);
    check_decode((shape_t){1, 150, 4, 1, 16, 20, 16}, 0);
    check_decode((shape_t){1, 150, 4, 1, 16, 20, 16}, 64);
    check_decode((shape_t){2, 70, 3, 3, 8, 1, 16}, 5);
    check_decode((shape_t){1, 130, 2, 1, 32, 200, 64}, 100);
    check_decode_ring((shape_t){2, 150, 4, 2, 16, 20, 16}, 20);
    check_decode_ring((shape_t){1, 150, 4, 1, 16, 20, 16}, 27);
    check_decode_ring((shape_t){1, 90, 3, 3, 8, 1, 16}, 1);

    check_threads();
    check_accumulate();
    check_rope();
    check_special();
    check_errors();
    for (int tiled = 0; tiled < 2; tiled++) {
        check_packed(4, 2, 16, 0, 64, tiled);
        check_packed(2, 1, 8, 20, 16, tiled);
    }
    check_packed(3, 3, 8, 64, 64, 1);
    check_packed(2, 2, 8, 1, 16, 1);
    check_packed_gradcheck(0);
    check_packed_gradcheck(2);
    check_packed_rope();
    check_packed_bad();
    return tap_done();
}
