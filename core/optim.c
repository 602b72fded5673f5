/* optim.c — fused AdamW update and the squared norm used for gradient clipping. */
#include "optim.h"
#include <math.h>

int hb_adamw_update(hb_tensor_t *p, hb_tensor_t *g, hb_tensor_t *m, hb_tensor_t *v, double lr, double b1, double b2,
                    double eps, double wd, int64_t t) {
    if (!hb_same_shape(p, g) || !hb_same_shape(p, m) || !hb_same_shape(p, v) || p->dtype != g->dtype ||
        p->dtype != m->dtype || p->dtype != v->dtype) {
        char a[64], b[64];
        hb_seterr("adamw: parameter %s and gradient %s differ in shape or dtype", hb_shape_str(p, a, sizeof a),
                  hb_shape_str(g, b, sizeof b));
        return -1;
    }
    if (!hb_is_contiguous(p) || !hb_is_contiguous(m) || !hb_is_contiguous(v) || !hb_dtype_is_float(p->dtype) || t < 1) {
        hb_seterr("adamw: parameter and state must be contiguous float tensors and step >= 1");
        return -1;
    }
    hb_tensor_t *gc = hb_contiguous(g);
    if (!gc) return -1;
    int64_t n = hb_numel(p);
    double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);
    double step = lr / bc1, sbc2 = sqrt(bc2), decay = 1 - lr * wd;
    if (p->dtype == HB_F32) {
        float *pp = hb_data(p), *pm = hb_data(m), *pv = hb_data(v);
        const float *pg = hb_data(gc);
        for (int64_t i = 0; i < n; i++) {
            float gi = pg[i];
            pp[i] = (float)(pp[i] * decay);
            pm[i] = (float)(b1 * pm[i] + (1 - b1) * gi);
            pv[i] = (float)(b2 * pv[i] + (1 - b2) * (double)gi * gi);
            pp[i] = (float)(pp[i] - step * pm[i] / (sqrt((double)pv[i]) / sbc2 + eps));
        }
    } else {
        double *pp = hb_data(p), *pm = hb_data(m), *pv = hb_data(v);
        const double *pg = hb_data(gc);
        for (int64_t i = 0; i < n; i++) {
            pp[i] *= decay;
            pm[i] = b1 * pm[i] + (1 - b1) * pg[i];
            pv[i] = b2 * pv[i] + (1 - b2) * pg[i] * pg[i];
            pp[i] -= step * pm[i] / (sqrt(pv[i]) / sbc2 + eps);
        }
    }
    hb_tensor_free(gc);
    return 0;
}

double hb_sumsq(hb_tensor_t *t) {
    hb_tensor_t *c = hb_contiguous(t);
    if (!c) return NAN;
    int64_t n = hb_numel(c);
    double s = 0;
    if (c->dtype == HB_F32) {
        const float *x = hb_data(c);
        for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    } else if (c->dtype == HB_F64) {
        const double *x = hb_data(c);
        for (int64_t i = 0; i < n; i++) s += x[i] * x[i];
    }
    hb_tensor_free(c);
    return s;
}
