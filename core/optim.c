/* optim.c — fused AdamW update and the squared norm used for gradient clipping. */
#include "optim.h"
#include "views.h"
#include "../kernels/parallel.h"
#include <math.h>

#define ADAMW_BLOCK 65536
typedef struct {
    float *p, *m, *v;
    const float *g;
    float b1, b2, eps, step, sbc2, decay;
    int64_t n;
} adamw_ctx_t;

static void adamw_block(void *ctx, int64_t blk) {
    adamw_ctx_t *c = ctx;
    int64_t lo = blk * ADAMW_BLOCK, hi = lo + ADAMW_BLOCK < c->n ? lo + ADAMW_BLOCK : c->n;
    float *pp = c->p, *pm = c->m, *pv = c->v;
    const float *pg = c->g;
    for (int64_t i = lo; i < hi; i++) {
        float gi = pg[i];
        pp[i] *= c->decay;
        pm[i] += (gi - pm[i]) * (1.0f - c->b1);
        pv[i] = pv[i] * c->b2 + (1.0f - c->b2) * gi * gi;
        pp[i] -= c->step * pm[i] / (sqrtf(pv[i]) / c->sbc2 + c->eps);
    }
}

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
    hb_tensor_bump_version(p);
    hb_tensor_bump_version(m);
    hb_tensor_bump_version(v);
    int64_t n = hb_numel(p);
    double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);
    double step = lr / bc1, sbc2 = sqrt(bc2), decay = 1 - lr * wd;
    if (p->dtype == HB_F32) {
        /* float arithmetic in torch's order (mul, lerp, addcmul, sqrt/div/add, addcdiv), on the pool */
        adamw_ctx_t c = {hb_data(p), hb_data(m), hb_data(v), hb_data(gc), (float)b1, (float)b2, (float)eps,
                         (float)step, (float)sbc2, (float)decay, n};
        hb_parallel_for((n + ADAMW_BLOCK - 1) / ADAMW_BLOCK, adamw_block, &c);
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
