/* gradcheck.h — float64 finite-difference gradient checks for ops built on hb tensors.
 *
 * gradcheck(fn, ctx, n, inputs) evaluates out = fn(ctx, inputs), forms loss = Σ out ⊙ w with a fixed
 * random w, backpropagates, and compares every input's .grad with central differences (step 1e-6).
 * Returns the max relative error: max|analytic − numeric| / max(1e-3, max|numeric|) over all inputs.
 * Inputs must be float64 leaves; they get requires_grad set here. Header-only (static functions).
 */
#ifndef HB_GRADCHECK_H
#define HB_GRADCHECK_H
#include "../core/autograd.h"
#include "../core/ops.h"
#include "../core/tensor.h"
#include "../core/views.h"
#include <math.h>
#include <stdio.h>

typedef hb_tensor_t *(*gc_fn)(void *ctx, hb_tensor_t **in);

static double gc_loss(gc_fn fn, void *ctx, hb_tensor_t **in, hb_tensor_t *w) {
    int g = hb_grad_set(0);
    hb_tensor_t *o = fn(ctx, in);
    hb_grad_set(g);
    if (!o) return NAN;
    hb_tensor_t *oc = hb_contiguous(o);
    double s = 0;
    int64_t n = hb_numel(oc);
    for (int64_t i = 0; i < n; i++) s += ((double *)hb_data(oc))[i] * ((double *)hb_data(w))[i];
    hb_tensor_free(oc);
    hb_tensor_free(o);
    return s;
}

__attribute__((unused)) static double gradcheck(gc_fn fn, void *ctx, int n, hb_tensor_t **in) {
    for (int k = 0; k < n; k++) {
        hb_set_requires_grad(in[k], 1);
        hb_tensor_free(in[k]->grad);
        in[k]->grad = NULL;
    }
    hb_tensor_t *o = fn(ctx, in);
    if (!o) { printf("# gradcheck: forward failed: %s\n", hb_errmsg()); return INFINITY; }
    hb_rng_t r;
    hb_rng_seed(&r, 99);
    hb_tensor_t *w = hb_randn(&r, HB_F64, o->ndim, o->size, 0, 1);
    hb_tensor_t *l = hb_mul(o, w);
    hb_tensor_t *s = hb_reduce_all(HB_R_SUM, l);
    if (!s || hb_backward(s, NULL, 0)) { printf("# gradcheck: backward failed: %s\n", hb_errmsg()); return INFINITY; }
    hb_tensor_free(s);
    hb_tensor_free(l);
    hb_tensor_free(o);
    double maxerr = 0, maxnum = 0, maxdiff = 0;
    const double h = 1e-6;
    for (int k = 0; k < n; k++) {
        hb_tensor_t *x = in[k];
        int64_t m = hb_numel(x);
        double *p = hb_data(x);
        for (int64_t i = 0; i < m; i++) {
            double v = p[i];
            p[i] = v + h;
            double lp = gc_loss(fn, ctx, in, w);
            p[i] = v - h;
            double lm = gc_loss(fn, ctx, in, w);
            p[i] = v;
            double num = (lp - lm) / (2 * h);
            double ana = x->grad ? ((double *)hb_data(x->grad))[i] : 0;
            if (fabs(num) > maxnum) maxnum = fabs(num);
            if (fabs(num - ana) > maxdiff || isnan(ana)) maxdiff = isnan(ana) ? INFINITY : fabs(num - ana);
        }
    }
    maxerr = maxdiff / (maxnum > 1e-3 ? maxnum : 1e-3);
    hb_tensor_free(w);
    return maxerr;
}
#endif
