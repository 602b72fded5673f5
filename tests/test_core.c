/* test_core.c — tensors, views, broadcasting, autograd and float64 gradient checks of every op.
 * Pure C: links libhbcore.a only (no Lua).
 *
 * One case per op or property (ggml's test-backend-ops habit): a short function in the table `cases`
 * at the bottom, run in the table's order. The random tensors come from one library generator R
 * (hb_rng, seeded 1234 once) drawn in that order, so adding a case at the end leaves the others' data
 * as it is; a case that needs no particular values builds its tensors without R.
 */
#include "../kernels/alloc.h"
#include "../core/autograd.h"
#include "../core/linalg.h"
#include "../core/mixers.h"
#include "../core/ops.h"
#include "../core/optim.h"
#include "../core/tensor.h"
#include "../core/views.h"
#include "gradcheck.h"
#include "tap.h"
#include <math.h>
#include <string.h>

static hb_rng_t R;

static hb_tensor_t *rnd(int nd, int64_t a, int64_t b, int64_t c) {
    int64_t s[3] = {a, b, c};
    return hb_randn(&R, HB_F64, nd, s, 0, 1);
}
static hb_tensor_t *rndpos(int nd, int64_t a, int64_t b, int64_t c) {
    int64_t s[3] = {a, b, c};
    return hb_rand(&R, HB_F64, nd, s, 0.5, 2.0);
}

/* ---- op wrappers for gradcheck -------------------------------------------------------------------- */
static hb_tensor_t *f_bin(void *c, hb_tensor_t **in) { return hb_binary(*(hb_binop_t *)c, in[0], in[1]); }
static hb_tensor_t *f_un(void *c, hb_tensor_t **in) { return hb_unary(*(hb_unop_t *)c, in[0]); }
static hb_tensor_t *f_pows(void *c, hb_tensor_t **in) { (void)c; return hb_binary_scalar(HB_OP_POW, in[0], 2.5, 0); }
static hb_tensor_t *f_rsub(void *c, hb_tensor_t **in) { (void)c; return hb_binary_scalar(HB_OP_SUB, in[0], 3.0, 1); }
static hb_tensor_t *f_rdiv(void *c, hb_tensor_t **in) { (void)c; return hb_binary_scalar(HB_OP_DIV, in[0], 3.0, 1); }
static hb_tensor_t *f_red(void *c, hb_tensor_t **in) { int *p = c; return hb_reduce((hb_redop_t)p[0], in[0], p[1], p[2]); }
static hb_tensor_t *f_redall(void *c, hb_tensor_t **in) { return hb_reduce_all(*(hb_redop_t *)c, in[0]); }
static hb_tensor_t *f_matmul(void *c, hb_tensor_t **in) { (void)c; return hb_matmul(in[0], in[1]); }
static hb_tensor_t *f_matmul_tb(void *c, hb_tensor_t **in) {
    (void)c;
    hb_tensor_t *t = hb_transpose(in[1], -1, -2), *o = hb_matmul(in[0], t);
    hb_tensor_free(t);
    return o;
}
static hb_tensor_t *f_linear(void *c, hb_tensor_t **in) { (void)c; return hb_linear(in[0], in[1], in[2]); }
static hb_tensor_t *f_softmax(void *c, hb_tensor_t **in) { return hb_softmax(in[0], *(int *)c); }
static hb_tensor_t *f_logsoftmax(void *c, hb_tensor_t **in) { return hb_log_softmax(in[0], *(int *)c); }
static hb_tensor_t *f_ce(void *c, hb_tensor_t **in) { return hb_cross_entropy(in[0], (hb_tensor_t *)c, -100); }
static hb_tensor_t *f_emb(void *c, hb_tensor_t **in) { return hb_embedding(in[0], (hb_tensor_t *)c); }
static hb_tensor_t *f_rms(void *c, hb_tensor_t **in) { (void)c; return hb_rmsnorm(in[0], in[1], 1e-5); }
static hb_tensor_t *f_cat(void *c, hb_tensor_t **in) { return hb_cat(2, in, *(int *)c); }
static hb_tensor_t *f_gather(void *c, hb_tensor_t **in) { return hb_gather(in[0], 1, (hb_tensor_t *)c); }
static hb_tensor_t *f_isel(void *c, hb_tensor_t **in) { return hb_index_select(in[0], 0, (hb_tensor_t *)c); }
static hb_tensor_t *f_tril(void *c, hb_tensor_t **in) { (void)c; return hb_tril(in[0], 0); }
static hb_tensor_t *f_triu(void *c, hb_tensor_t **in) { (void)c; return hb_triu(in[0], 1); }
static hb_tensor_t *f_mfill(void *c, hb_tensor_t **in) { return hb_masked_fill(in[0], (hb_tensor_t *)c, -2.0); }
static hb_tensor_t *f_where(void *c, hb_tensor_t **in) { return hb_where((hb_tensor_t *)c, in[0], in[1]); }
static hb_tensor_t *f_cumsum(void *c, hb_tensor_t **in) { int *p = c; return hb_cumsum(in[0], p[0], p[1]); }
static hb_tensor_t *f_clamp(void *c, hb_tensor_t **in) { (void)c; return hb_clamp(in[0], -0.5, 0.7); }
static hb_tensor_t *f_views(void *c, hb_tensor_t **in) {
    (void)c; /* narrow → transpose → view → expand → contiguous, then multiply to make it non-linear */
    hb_tensor_t *a = hb_narrow(in[0], 1, 1, 4);          /* [3,4,2] */
    hb_tensor_t *b = hb_transpose(a, 0, 2);              /* [2,4,3] */
    int64_t vs[2] = {8, 3};
    hb_tensor_t *v = hb_view(b, 2, vs);                  /* copy (non-contiguous) then view */
    int64_t es[3] = {2, 8, 3};
    hb_tensor_t *e = hb_expand(v, 3, es);
    hb_tensor_t *o = hb_mul(e, e);
    hb_tensor_free(a); hb_tensor_free(b); hb_tensor_free(v); hb_tensor_free(e);
    return o;
}
static hb_tensor_t *f_permute(void *c, hb_tensor_t **in) {
    (void)c;
    int p[3] = {2, 0, 1};
    hb_tensor_t *a = hb_permute(in[0], p), *s = hb_select(a, 2, 2), *o = hb_mul(s, s);
    hb_tensor_free(a); hb_tensor_free(s);
    return o;
}
static hb_tensor_t *f_repeat(void *c, hb_tensor_t **in) { (void)c; return hb_repeat_interleave(in[0], 1, 3); }

static void check(const char *name, gc_fn fn, void *ctx, int n, hb_tensor_t **in) {
    double e = gradcheck(fn, ctx, n, in);
    ok(e <= 1e-6, "gradcheck %s (max rel err %.2e)", name, e);
    for (int k = 0; k < n; k++) hb_tensor_free(in[k]);
}

/* ---- views, broadcasting, autograd mechanics ------------------------------------------------------ */
static void case_views(void) {
    int64_t s[2] = {3, 4};
    hb_tensor_t *a = hb_tensor_arange(HB_F32, 0, 12, 1);
    hb_tensor_t *m = hb_view(a, 2, s);
    hb_tensor_t *t = hb_transpose(m, 0, 1);
    int64_t idx[2] = {3, 2};
    ok(hb_get(t, idx) == 11, "transpose is a view with swapped strides");
    ok(!hb_is_contiguous(t) && t->storage == a->storage, "transpose shares storage, not contiguous");
    hb_tensor_t *n = hb_narrow(m, 1, 1, 2);
    int64_t j[2] = {2, 1};
    hb_set(n, j, 100);
    int64_t k[1] = {10};
    ok(hb_get(a, k) == 100, "write through a narrow view reaches the base");
    hb_tensor_t *c = hb_contiguous(t);
    int64_t ci[2] = {1, 2};
    ok(hb_is_contiguous(c) && c->storage != a->storage && hb_get(c, ci) == 9, "contiguous copies a transposed view");
    int64_t es[3] = {5, 3, 4};
    hb_tensor_t *e = hb_expand(m, 3, es);
    ok(e && e->stride[0] == 0 && e->storage == a->storage, "expand adds a stride-0 dim");
    int64_t bad[2] = {5, 3};
    hb_tensor_t *v = hb_view(a, 2, bad);
    ok(!v && strstr(hb_errmsg(), "cannot be viewed as 15 elements"), "bad view errors: %s", hb_errmsg());
    hb_tensor_free(a); hb_tensor_free(m); hb_tensor_free(t); hb_tensor_free(n); hb_tensor_free(c); hb_tensor_free(e);
}

static void case_broadcast(void) {
    hb_tensor_t *a = rnd(3, 2, 3, 4), *b = rnd(2, 1, 4, 0);
    hb_tensor_t *c = hb_add(a, b);
    int64_t i[3] = {1, 2, 3}, j[2] = {0, 3};
    ok(c && c->ndim == 3 && fabs(hb_get(c, i) - (hb_get(a, i) + hb_get(b, j))) < 1e-12, "broadcast add [2,3,4]+[1,4]");
    hb_tensor_t *d = rnd(2, 3, 5, 0);
    hb_tensor_t *e = hb_add(a, d);
    ok(!e && strstr(hb_errmsg(), "cannot be broadcast"), "incompatible broadcast errors: %s", hb_errmsg());
    hb_tensor_free(a); hb_tensor_free(b); hb_tensor_free(c); hb_tensor_free(d);
}

/* .grad accumulates over passes, over uses of one tensor, and in topological order */
static void case_backward_accumulates(void) {
    hb_tensor_t *x = rnd(1, 4, 0, 0);
    hb_set_requires_grad(x, 1);
    for (int rep = 0; rep < 2; rep++) {
        hb_tensor_t *y = hb_mul(x, x), *s = hb_reduce_all(HB_R_SUM, y);
        hb_backward(s, NULL, 0);
        hb_tensor_free(y); hb_tensor_free(s);
    }
    int64_t i0 = 2;
    ok(fabs(hb_get(x->grad, &i0) - 4 * hb_get(x, &i0)) < 1e-12, "two backward passes accumulate into .grad (4x)");
    /* a tensor used twice in one graph */
    hb_tensor_free(x->grad);
    x->grad = NULL;
    hb_tensor_t *y = hb_add(x, x), *z = hb_mul(y, x), *s = hb_reduce_all(HB_R_SUM, z);
    hb_backward(s, NULL, 0);
    ok(fabs(hb_get(x->grad, &i0) - 4 * hb_get(x, &i0)) < 1e-12, "diamond graph: d(2x·x)/dx = 4x");
    hb_tensor_free(y); hb_tensor_free(z); hb_tensor_free(s);
    /* topological order: r = f(b, a) with a = g(b); b must receive a's contribution before its
       own backward runs, whatever the order the inputs were recorded in */
    hb_tensor_free(x->grad);
    x->grad = NULL;
    hb_tensor_t *b = hb_mul(x, x);                 /* b = x²      */
    hb_tensor_t *a = hb_binary_scalar(HB_OP_MUL, b, 3.0, 0); /* a = 3x² */
    hb_tensor_t *r = hb_mul(b, a);                 /* r = 3x⁴, inputs (b, a) */
    hb_tensor_t *rs = hb_reduce_all(HB_R_SUM, r);
    hb_backward(rs, NULL, 0);
    double xv = hb_get(x, &i0);
    ok(fabs(hb_get(x->grad, &i0) - 12 * xv * xv * xv) < 1e-9, "backward order: shared input gets all contributions (12x^3)");
    hb_tensor_free(a); hb_tensor_free(b); hb_tensor_free(r); hb_tensor_free(rs); hb_tensor_free(x);
}

/* no-grad mode and retain_graph; x has fixed values (this case draws nothing from R) */
static void case_grad_modes(void) {
    int64_t n = 4, i0 = 2;
    const double xs[4] = {0.5, -1.25, 0.75, 2.0};
    hb_tensor_t *x = hb_tensor_from_data(HB_F64, 1, &n, xs);
    hb_set_requires_grad(x, 1);
    int prev = hb_grad_set(0);
    hb_tensor_t *w = hb_mul(x, x);
    hb_grad_set(prev);
    ok(w && !w->requires_grad && !w->grad_fn, "no-grad mode records no history");
    hb_tensor_t *s2 = hb_reduce_all(HB_R_SUM, w);
    ok(hb_backward(s2, NULL, 0) != 0 && strstr(hb_errmsg(), "does not require grad"), "backward without history errors");
    hb_tensor_free(w); hb_tensor_free(s2);
    /* retained graph allows a second backward */
    hb_tensor_t *q = hb_mul(x, x), *qs = hb_reduce_all(HB_R_SUM, q);
    int r1 = hb_backward(qs, NULL, 1), r2 = hb_backward(qs, NULL, 0);
    ok(r1 == 0 && r2 == 0 && fabs(hb_get(x->grad, &i0) - 4 * hb_get(x, &i0)) < 1e-12, "retain_graph: second backward works");
    hb_tensor_free(q); hb_tensor_free(qs); hb_tensor_free(x);
}

/* matmul against a naive loop */
static void case_matmul(void) {
    hb_tensor_t *a = rnd(3, 2, 5, 7), *b = rnd(2, 7, 3, 0);
    hb_tensor_t *c = hb_matmul(a, b);
    double maxe = 0;
    for (int64_t i = 0; i < 2; i++)
        for (int64_t m = 0; m < 5; m++)
            for (int64_t n = 0; n < 3; n++) {
                double s = 0;
                for (int64_t k = 0; k < 7; k++) {
                    int64_t ia[3] = {i, m, k}, ib[2] = {k, n};
                    s += hb_get(a, ia) * hb_get(b, ib);
                }
                int64_t ic[3] = {i, m, n};
                maxe = fmax(maxe, fabs(s - hb_get(c, ic)));
            }
    ok(maxe < 1e-12, "batched matmul matches naive loop (err %.1e)", maxe);
    hb_tensor_t *bad = rnd(2, 6, 3, 0), *d = hb_matmul(a, bad);
    ok(!d && strstr(hb_errmsg(), "inner dimensions differ"), "matmul shape error: %s", hb_errmsg());
    hb_tensor_free(a); hb_tensor_free(b); hb_tensor_free(c); hb_tensor_free(bad);
}

/* ---- float64 gradient checks: every differentiable op ---------------------------------------------- */
static void case_grad_binary(void) {
    hb_binop_t bops[] = {HB_OP_ADD, HB_OP_SUB, HB_OP_MUL, HB_OP_DIV, HB_OP_POW, HB_OP_MAXIMUM, HB_OP_MINIMUM};
    const char *bnames[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"};
    for (int i = 0; i < 7; i++) {
        hb_tensor_t *in[2] = {rndpos(3, 2, 3, 4), rndpos(2, 3, 1, 0)};
        char nm[64];
        snprintf(nm, sizeof nm, "%s (broadcast [2,3,4] x [3,1])", bnames[i]);
        check(nm, f_bin, &bops[i], 2, in);
    }
}

static void case_grad_unary(void) {
    for (int u = 0; u < HB_U__COUNT; u++) {
        hb_unop_t op = (hb_unop_t)u;
        int pos = op == HB_U_LOG || op == HB_U_SQRT || op == HB_U_RSQRT || op == HB_U_LOG1P;
        hb_tensor_t *in[1] = {pos ? rndpos(2, 3, 5, 0) : rnd(2, 3, 5, 0)};
        if (op == HB_U_ABS || op == HB_U_RELU || op == HB_U_ELU) { /* keep away from the kink */
            double *p = hb_data(in[0]);
            for (int k = 0; k < 15; k++) if (fabs(p[k]) < 0.05) p[k] = 0.3;
        }
        check(hb_unop_name(op), f_un, &op, 1, in);
    }
}

static void case_grad_scalar(void) {
    { hb_tensor_t *in[1] = {rndpos(2, 3, 4, 0)}; check("pow scalar", f_pows, NULL, 1, in); }
    { hb_tensor_t *in[1] = {rnd(2, 3, 4, 0)}; check("scalar - x", f_rsub, NULL, 1, in); }
    { hb_tensor_t *in[1] = {rndpos(2, 3, 4, 0)}; check("scalar / x", f_rdiv, NULL, 1, in); }
}

static void case_grad_reduce(void) {
    hb_redop_t ops[] = {HB_R_SUM, HB_R_MEAN, HB_R_MAX, HB_R_MIN};
    const char *nm[] = {"sum", "mean", "max", "min"};
    for (int i = 0; i < 4; i++)
        for (int keep = 0; keep < 2; keep++) {
            int c[3] = {ops[i], 1, keep};
            hb_tensor_t *in[1] = {rnd(3, 2, 5, 3)};
            char name[64];
            snprintf(name, sizeof name, "%s(dim=1, keepdim=%d)", nm[i], keep);
            check(name, f_red, c, 1, in);
        }
    for (int i = 0; i < 4; i++) {
        hb_tensor_t *in[1] = {rnd(2, 4, 3, 0)};
        char name[64];
        snprintf(name, sizeof name, "%s(all)", nm[i]);
        check(name, f_redall, &ops[i], 1, in);
    }
}

static void case_grad_matmul(void) {
    { hb_tensor_t *in[2] = {rnd(3, 2, 4, 5), rnd(2, 5, 3, 0)}; check("matmul [2,4,5]@[5,3]", f_matmul, NULL, 2, in); }
    { hb_tensor_t *in[2] = {rnd(3, 2, 4, 5), rnd(3, 2, 5, 3)}; check("bmm [2,4,5]@[2,5,3]", f_matmul, NULL, 2, in); }
    { hb_tensor_t *in[2] = {rnd(3, 2, 4, 5), rnd(3, 1, 3, 5)}; check("bmm broadcast @ transposed view", f_matmul_tb, NULL, 2, in); }
    { hb_tensor_t *in[3] = {rnd(3, 2, 3, 5), rnd(2, 4, 5, 0), rnd(1, 4, 0, 0)}; check("linear with bias", f_linear, NULL, 3, in); }
}

static void case_grad_softmax(void) {
    for (int d = 0; d < 2; d++) {
        hb_tensor_t *in[1] = {rnd(2, 3, 6, 0)};
        check(d ? "softmax(dim=1)" : "softmax(dim=0)", f_softmax, &d, 1, in);
        hb_tensor_t *in2[1] = {rnd(2, 3, 6, 0)};
        check(d ? "log_softmax(dim=1)" : "log_softmax(dim=0)", f_logsoftmax, &d, 1, in2);
    }
}

static void case_cross_entropy(void) {
    int64_t n = 5;
    hb_tensor_t *tg = hb_tensor_zeros(HB_I64, 1, &n);
    int64_t vals[5] = {1, -100, 3, 0, 5};
    memcpy(hb_data(tg), vals, sizeof vals);
    hb_tensor_t *in[1] = {rnd(2, 5, 6, 0)};
    check("cross_entropy with ignore_index", f_ce, tg, 1, in);
    /* value check against a hand computation: uniform logits → log C */
    int64_t s[2] = {5, 6};
    hb_tensor_t *z = hb_tensor_zeros(HB_F64, 2, s), *l = hb_cross_entropy(z, tg, -100);
    int okv;
    ok(fabs(hb_item(l, &okv) - log(6.0)) < 1e-12, "cross_entropy of uniform logits = log C");
    vals[0] = 7;
    memcpy(hb_data(tg), vals, sizeof vals);
    hb_tensor_t *l2 = hb_cross_entropy(z, tg, -100);
    ok(!l2 && strstr(hb_errmsg(), "target 7 at row 0 is out of range [0, 6)"), "cross_entropy bad target: %s", hb_errmsg());
    hb_tensor_free(z); hb_tensor_free(l); hb_tensor_free(tg);
}

static void case_embedding(void) {
    int64_t s[2] = {2, 3};
    hb_tensor_t *ids = hb_tensor_zeros(HB_I64, 2, s);
    int64_t v[6] = {0, 3, 3, 1, 4, 0};
    memcpy(hb_data(ids), v, sizeof v);
    hb_tensor_t *in[1] = {rnd(2, 5, 4, 0)};
    check("embedding (repeated ids)", f_emb, ids, 1, in);
    v[2] = 9;
    memcpy(hb_data(ids), v, sizeof v);
    hb_tensor_t *w = rnd(2, 5, 4, 0), *e = hb_embedding(w, ids);
    ok(!e && strstr(hb_errmsg(), "token id 9 at position 2 is out of range [0, 5)"), "embedding bad id: %s", hb_errmsg());
    hb_tensor_free(w); hb_tensor_free(ids);
}

static void case_grad_rmsnorm_cat(void) {
    { hb_tensor_t *in[2] = {rnd(3, 2, 3, 6), rndpos(1, 6, 0, 0)}; check("rmsnorm", f_rms, NULL, 2, in); }
    { int d = 1; hb_tensor_t *in[2] = {rnd(2, 3, 2, 0), rnd(2, 3, 4, 0)}; check("cat(dim=1)", f_cat, &d, 2, in); }
}

static void case_grad_gather(void) {
    int64_t s[2] = {3, 2};
    hb_tensor_t *idx = hb_tensor_zeros(HB_I64, 2, s);
    int64_t v[6] = {0, 2, 1, 1, 3, 0};
    memcpy(hb_data(idx), v, sizeof v);
    hb_tensor_t *in[1] = {rnd(2, 3, 4, 0)};
    check("gather(dim=1)", f_gather, idx, 1, in);
    hb_tensor_free(idx);
    int64_t n = 4;
    hb_tensor_t *ix = hb_tensor_zeros(HB_I64, 1, &n);
    int64_t w[4] = {2, 0, 2, 1};
    memcpy(hb_data(ix), w, sizeof w);
    hb_tensor_t *in2[1] = {rnd(2, 3, 4, 0)};
    check("index_select(dim=0, repeated)", f_isel, ix, 1, in2);
    hb_tensor_free(ix);
}

static void case_grad_masks(void) {
    { hb_tensor_t *in[1] = {rnd(3, 2, 4, 4)}; check("tril", f_tril, NULL, 1, in); }
    { hb_tensor_t *in[1] = {rnd(2, 4, 5, 0)}; check("triu(k=1)", f_triu, NULL, 1, in); }
    hb_tensor_t *m = hb_tensor_zeros(HB_I64, 1, (int64_t[]){4});
    ((int64_t *)hb_data(m))[1] = 1;
    ((int64_t *)hb_data(m))[3] = 1;
    hb_tensor_t *in[1] = {rnd(2, 3, 4, 0)};
    check("masked_fill (broadcast mask)", f_mfill, m, 1, in);
    hb_tensor_t *in2[2] = {rnd(2, 3, 4, 0), rnd(2, 3, 4, 0)};
    check("where", f_where, m, 2, in2);
    hb_tensor_free(m);
}

static void case_grad_cumsum_clamp(void) {
    int c[2] = {1, 0};
    hb_tensor_t *in[1] = {rnd(2, 3, 5, 0)};
    check("cumsum", f_cumsum, c, 1, in);
    int c2[2] = {0, 1};
    hb_tensor_t *in2[1] = {rnd(2, 3, 5, 0)};
    check("reverse cumsum", f_cumsum, c2, 1, in2);
    hb_tensor_t *in3[1] = {rnd(2, 4, 5, 0)};
    check("clamp", f_clamp, NULL, 1, in3);
}

static void case_grad_views(void) {
    { hb_tensor_t *in[1] = {rnd(3, 3, 6, 2)}; check("narrow/transpose/view/expand chain", f_views, NULL, 1, in); }
    { hb_tensor_t *in[1] = {rnd(3, 2, 3, 4)}; check("permute/select", f_permute, NULL, 1, in); }
    { hb_tensor_t *in[1] = {rnd(3, 2, 2, 3)}; check("repeat_interleave (GQA)", f_repeat, NULL, 1, in); }
}

/* float32 round-off makes finite differences meaningless here: check the exact gradient instead */
static void case_to_dtype_backward(void) {
    hb_tensor_t *x = rnd(2, 2, 3, 0);
    hb_set_requires_grad(x, 1);
    hb_tensor_t *f = hb_to_dtype(x, HB_F32), *y = hb_binary_scalar(HB_OP_MUL, f, 2.0, 0), *s = hb_reduce_all(HB_R_SUM, y);
    int bw = hb_backward(s, NULL, 0);
    int64_t i0[2] = {1, 2};
    ok(bw == 0 && x->grad && x->grad->dtype == HB_F64 && hb_get(x->grad, i0) == 2.0, "to_dtype backward casts the gradient back");
    hb_tensor_free(f); hb_tensor_free(y); hb_tensor_free(s); hb_tensor_free(x);
}

/* ---- the library's RNG, float fast paths ------------------------------------------------------------ */
static void case_rng(void) {
    hb_rng_t a, b;
    hb_rng_seed(&a, 42);
    hb_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= hb_rng_normal(&a) == hb_rng_normal(&b);
    ok(same, "seeded RNG is reproducible");
    hb_rng_seed(&a, 42);
    hb_rng_seed(&b, 43);
    ok(hb_rng_next(&a) != hb_rng_next(&b), "different seeds give different streams");
}

/* the float fast path of one element-wise op against the float64 path, values and gradients */
static void float_unary_matches(hb_unop_t op, int with_inf) {
    enum { NG = 2001, NE = 4 };
    int64_t n = NG + NE;
    hb_tensor_t *x32 = hb_tensor_empty(HB_F32, 1, &n);
    float *px = hb_data(x32);
    for (int i = 0; i < NG; i++) px[i] = -30.0f + 60.0f * (float)i / (NG - 1);
    px[NG] = NAN; px[NG + 1] = with_inf ? INFINITY : 0.5f; px[NG + 2] = with_inf ? -INFINITY : -0.5f;
    px[NG + 3] = 0.0f;
    hb_tensor_t *x64 = hb_to_dtype(x32, HB_F64);
    hb_set_requires_grad(x32, 1); hb_set_requires_grad(x64, 1);
    hb_tensor_t *y32 = hb_unary(op, x32), *y64 = hb_unary(op, x64);
    hb_tensor_t *g32 = hb_tensor_full(HB_F32, 1, &n, 0.75), *g64 = hb_tensor_full(HB_F64, 1, &n, 0.75);
    int okb = hb_backward(y32, g32, 0) == 0 && hb_backward(y64, g64, 0) == 0;
    double worst = 0, worstg = 0;
    int nan_ok = 1;
    const float *a = hb_data(y32), *ga = hb_data(x32->grad);
    const double *b = hb_data(y64), *gb = hb_data(x64->grad);
    for (int64_t i = 0; i < n; i++) {
        if (isnan(b[i]) || isnan(a[i])) { nan_ok &= isnan(b[i]) && isnan(a[i]); continue; }
        if (isinf(b[i]) || isinf(a[i])) { nan_ok &= a[i] == b[i]; continue; }
        double e = fabs(a[i] - b[i]) / (fabs(b[i]) + 1e-30);
        if (fabs(a[i] - b[i]) > 1e-36 && e > worst) worst = e;
        if (isnan(gb[i]) || isnan(ga[i])) { nan_ok &= isnan(gb[i]) && isnan(ga[i]); continue; }
        if (isinf(gb[i]) || isinf(ga[i])) { nan_ok &= ga[i] == gb[i]; continue; }
        e = fabs(ga[i] - gb[i]) / (fabs(gb[i]) + 1e-30);
        if (fabs(ga[i] - gb[i]) > 1e-36 && e > worstg) worstg = e;
    }
    ok(okb && nan_ok && worst < 2e-6 && worstg < 2e-6,
       "float %s matches float64 on [-30, 30] and NaN/inf (value rel err %.1e, grad %.1e)",
       hb_unop_name(op), worst, worstg);
    hb_tensor_free(x32); hb_tensor_free(x64); hb_tensor_free(y32); hb_tensor_free(y64);
    hb_tensor_free(g32); hb_tensor_free(g64);
}

static void case_float_unary(void) {
    const hb_unop_t fops[] = {HB_U_EXP, HB_U_SIGMOID, HB_U_LOGSIGMOID, HB_U_SOFTPLUS, HB_U_SILU, HB_U_SQUARE, HB_U_NEG};
    const int with_inf[] = {1, 1, 1, 1, 0, 1, 1}; /* silu(-inf): float gives -inf, double -inf·0 = NaN */
    for (int u = 0; u < (int)(sizeof fops / sizeof *fops); u++) float_unary_matches(fops[u], with_inf[u]);
}

/* cross-entropy's float log-sum-exp (hand-vectorised lanes) vs float64, odd vocabulary */
static void case_float_cross_entropy(void) {
    int64_t sz[2] = {7, 3001}, nt = 7;
    hb_tensor_t *l32 = hb_tensor_empty(HB_F32, 2, sz), *tg = hb_tensor_zeros(HB_I64, 1, &nt);
    float *pl = hb_data(l32);
    for (int64_t i = 0; i < sz[0] * sz[1]; i++) pl[i] = (float)(8.0 * sin(0.37 * (double)i));
    for (int64_t r = 0; r < nt; r++) ((int64_t *)hb_data(tg))[r] = (r * 997) % sz[1];
    hb_tensor_t *l64 = hb_to_dtype(l32, HB_F64);
    hb_tensor_t *c32 = hb_cross_entropy(l32, tg, -100), *c64 = hb_cross_entropy(l64, tg, -100);
    int okk1, okk2;
    double v32 = hb_item(c32, &okk1), v64 = hb_item(c64, &okk2);
    ok(fabs(v32 - v64) < 1e-6 * fabs(v64), "float cross-entropy matches float64 over a 3001-word vocabulary (%.9g vs %.9g)", v32, v64);
    pl[5 * sz[1] + 17] = NAN;
    hb_tensor_t *cn = hb_cross_entropy(l32, tg, -100);
    ok(isnan(hb_item(cn, &okk1)), "a NaN logit gives a NaN cross-entropy");
    hb_tensor_free(l32); hb_tensor_free(l64); hb_tensor_free(tg); hb_tensor_free(c32); hb_tensor_free(c64); hb_tensor_free(cn);
}

/* ---- version counters (issue 17): in-place writes are counted per storage, backward refuses changed inputs */
static int bw_none(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) { (void)n; gin[0] = hb_tensor_ref(g); return 0; }

static void case_versions(void) {
    int64_t s3 = 3, s4[4] = {1, 1, 2, 2};
    hb_tensor_t *a = hb_tensor_zeros(HB_F32, 1, &s3), *b = hb_tensor_full(HB_F32, 1, &s3, 2.0);
    uint64_t v0 = hb_tensor_version(a);
    hb_fill_(a, 1);
    hb_copy_(a, b);
    hb_add_(a, b, 1.0);
    int64_t i1 = 1;
    hb_set(a, &i1, 5);
    ok(v0 == 0 && hb_tensor_version(a) == 4, "fill_, copy_, add_, set each bump the version (0 -> %llu)",
       (unsigned long long)hb_tensor_version(a));
    hb_tensor_t *v = hb_narrow(a, 0, 1, 2);
    hb_fill_(v, 0);
    ok(hb_tensor_version(a) == 5 && hb_tensor_version(v) == 5, "a write through a view bumps its source's version");
    hb_tensor_t *g = hb_tensor_full(HB_F32, 1, &s3, 1.0), *m = hb_tensor_zeros(HB_F32, 1, &s3),
                *vv = hb_tensor_zeros(HB_F32, 1, &s3);
    uint64_t gv = hb_tensor_version(g);
    hb_adamw_update(a, g, m, vv, 0.1, 0.9, 0.999, 1e-8, 0.0, 1);
    ok(hb_tensor_version(a) == 6 && hb_tensor_version(m) == 1 && hb_tensor_version(vv) == 1 && hb_tensor_version(g) == gv,
       "an AdamW step bumps the parameter and both moments, not the gradient");
    hb_tensor_t *st = hb_tensor_zeros(HB_F32, 4, s4), *q = hb_tensor_full(HB_F32, 3, s4, 0.5);
    hb_tensor_t *o = hb_gla_step(st, q, q, q, q, 1.0);
    ok(o && hb_tensor_version(st) == 1, "a decode step bumps its state's version");
    hb_tensor_free(o); hb_tensor_free(st); hb_tensor_free(q);
    hb_tensor_free(v); hb_tensor_free(g); hb_tensor_free(m); hb_tensor_free(vv);

    /* x * c, then c changed: the backward is refused before any gradient is written, the graph kept */
    hb_tensor_t *x = hb_tensor_full(HB_F64, 1, &s3, 1.0), *c = hb_tensor_full(HB_F64, 1, &s3, 3.0);
    hb_set_requires_grad(x, 1);
    hb_tensor_t *y = hb_mul(x, c), *sum = hb_reduce_all(HB_R_SUM, y);
    hb_fill_(c, 10);
    int rc = hb_backward(sum, NULL, 0);
    ok(rc == -1 && strstr(hb_errmsg(), "mul: a tensor needed for backward was modified in place (its input 2") &&
       !x->grad && y->grad_fn, "mul after its input changed: refused, no .grad written, graph kept: %s", hb_errmsg());
    hb_tensor_free(sum);
    hb_tensor_t *y2 = hb_add(x, c), *sum2 = hb_reduce_all(HB_R_SUM, y2);
    hb_fill_(c, 11);
    ok(hb_backward(sum2, NULL, 0) == 0 && x->grad && hb_get(x->grad, &i1) == 1.0,
       "add reads no values: a change of its input does not stop the backward");
    hb_tensor_free(y); hb_tensor_free(y2); hb_tensor_free(sum2);

    /* a saved tensor must go through hb_node_save; the watch list is bounded */
    hb_tensor_t *z = hb_tensor_zeros(HB_F64, 1, &s3), *in[1] = {x};
    hb_node_t *n = hb_node_attach(z, "custom", bw_none, 1, in, 0);
    n->saved[0] = hb_tensor_ref(c);
    ok(hb_backward(z, c, 0) == -1 && strstr(hb_errmsg(), "custom: saved tensor 1 was not recorded with hb_node_save"),
       "a saved[] slot filled directly is refused: %s", hb_errmsg());
    hb_tensor_free(n->saved[0]);
    n->saved[0] = NULL;
    hb_node_save(n, 0, c);
    int wrc = 0;
    for (int i = 0; i <= HB_NODE_MAXWATCH; i++) wrc = hb_node_watch(n, c);
    ok(wrc == -1 && strstr(hb_errmsg(), "more than 12 tensors"), "hb_node_watch refuses the 13th tensor");
    hb_fill_(c, 1);
    ok(hb_backward(z, c, 0) == -1 && strstr(hb_errmsg(), "custom: a tensor needed for backward was modified in place (a saved tensor"),
       "a saved tensor changed: refused: %s", hb_errmsg());
    hb_tensor_free(z); hb_tensor_free(x); hb_tensor_free(c); hb_tensor_free(a); hb_tensor_free(b);
}


/* the block cache of core/tensor.c: exact sizes, most recent first, a byte limit with the oldest dropped
 * first, a failed allocation retried after releasing it */
static hb_tensor_t *mib(double m) { /* a float32 tensor of m MiB */
    int64_t n = (int64_t)(m * 262144);
    return hb_tensor_zeros(HB_F32, 1, &n);
}
static void case_small_blocks(void);
static void case_headers(void);
static void case_block_cache(void) {
    hb_block_cache_set_limit(-1);
    hb_block_cache_release();
    hb_memory_stats_t m0, m;
    hb_memory_stats(&m0);
    ok(m0.cached == 0 && m0.cache_limit >= ((int64_t)1 << 30), "released: nothing cached, default limit >= 1 GiB (%lld)",
       (long long)m0.cache_limit);
    hb_tensor_t *a = mib(2);
    void *pa = a->storage->data;
    hb_tensor_free(a);
    hb_memory_stats(&m0);
    ok(m0.cached == (2 << 20), "a freed 2 MiB block is kept (%lld bytes cached)", (long long)m0.cached);
    hb_tensor_t *b = mib(2), *c = mib(2.25);
    hb_memory_stats(&m);
    ok(b->storage->data == pa && c->storage->data != pa && m.cache_hits == m0.cache_hits + 1 &&
           m.cache_misses == m0.cache_misses + 1 && m.cached == 0,
       "the same size gets the block back (a hit), another size does not (a miss)");
    ok(m.peak >= m.live && m.live >= (int64_t)(4.25 * (1 << 20)), "peak >= live >= the two tensors (%lld, %lld)",
       (long long)m.peak, (long long)m.live);
    hb_tensor_free(b);
    hb_tensor_free(c);
    ok(hb_block_cache_release() == (int64_t)(4.25 * (1 << 20)), "release frees what was cached");

    /* limit 3 MiB: four 1 MiB blocks freed in order a0..a3 keep a1..a3 (a0 dropped, the oldest) */
    hb_block_cache_set_limit(3 << 20);
    hb_tensor_t *t[4];
    void *pt[4];
    for (int i = 0; i < 4; i++) { t[i] = mib(1); pt[i] = t[i]->storage->data; }
    for (int i = 0; i < 4; i++) hb_tensor_free(t[i]);
    hb_memory_stats(&m);
    ok(m.cached == (3 << 20), "limit 3 MiB: 3 of 4 freed 1 MiB blocks kept (%lld bytes)", (long long)m.cached);
    hb_tensor_t *u[3];
    for (int i = 0; i < 3; i++) u[i] = mib(1);
    ok(u[0]->storage->data == pt[3] && u[1]->storage->data == pt[2] && u[2]->storage->data == pt[1],
       "handed back newest first (a3, a2, a1): the oldest (a0) was the one dropped");
    for (int i = 0; i < 3; i++) hb_tensor_free(u[i]);
    hb_tensor_t *big = mib(4);
    hb_tensor_free(big);
    hb_memory_stats(&m);
    ok(m.cached == (3 << 20), "a block larger than the limit is not kept");
    hb_block_cache_set_limit(1 << 20);
    hb_memory_stats(&m);
    ok(m.cached == 0 && m.cache_limit == (1 << 20), "lowering the limit below what is cached releases it");
    hb_block_cache_set_limit(0);
    a = mib(2);
    hb_tensor_free(a);
    hb_memory_stats(&m);
    ok(m.cached == 0, "limit 0: nothing is kept");

    /* a failing allocation releases the cache and tries again */
    hb_block_cache_set_limit(-1);
    int64_t c0 = hb_alloc_count();
    a = mib(2);
    int64_t per = hb_alloc_count() - c0; /* allocations of one tensor; the data block is the last */
    hb_tensor_free(a);
    hb_alloc_fail_after(per - 1);
    b = mib(3); /* a miss: its data allocation fails once, the cache (2 MiB) is released, the retry succeeds */
    hb_alloc_fail_after(-1);
    hb_memory_stats(&m);
    ok(b && m.cached == 0 && hb_alloc_injected() > 0, "an allocation that fails with blocks cached succeeds after releasing them");
    hb_tensor_free(b);
    hb_alloc_fail_after(per - 1);
    b = mib(5); /* nothing useful cached beyond b's 3 MiB: release it, retry succeeds */
    hb_alloc_fail_after(-1);
    ok(b != NULL, "and again with the block of the last tensor cached");
    hb_tensor_free(b);
    hb_block_cache_release();
    hb_alloc_fail_after(per - 1);
    b = mib(6); /* nothing cached: the failure is an error */
    hb_alloc_fail_after(-1);
    ok(!b && strstr(hb_errmsg(), "out of memory allocating"), "with nothing cached the failure stands: %s", hb_errmsg());
}

/* ---- the cases, in the order they run (and draw from R) ------------------------------------------- */
static const struct {
    const char *name;
    void (*run)(void);
} cases[] = {
    {"views", case_views},
    {"broadcast", case_broadcast},
    {"backward accumulates", case_backward_accumulates},
    {"no-grad and retain_graph", case_grad_modes},
    {"matmul", case_matmul},
    {"gradcheck binary ops", case_grad_binary},
    {"gradcheck unary ops", case_grad_unary},
    {"gradcheck scalar ops", case_grad_scalar},
    {"gradcheck reductions", case_grad_reduce},
    {"gradcheck matmul and linear", case_grad_matmul},
    {"gradcheck softmax", case_grad_softmax},
    {"cross_entropy", case_cross_entropy},
    {"embedding", case_embedding},
    {"gradcheck rmsnorm and cat", case_grad_rmsnorm_cat},
    {"gradcheck gather and index_select", case_grad_gather},
    {"gradcheck tril, triu, masked_fill, where", case_grad_masks},
    {"gradcheck cumsum and clamp", case_grad_cumsum_clamp},
    {"gradcheck view chains", case_grad_views},
    {"to_dtype backward", case_to_dtype_backward},
    {"library RNG", case_rng},
    {"float unary fast paths", case_float_unary},
    {"float cross-entropy", case_float_cross_entropy},
    {"version counters", case_versions},
    {"block cache", case_block_cache},
    {"block cache: blocks below 1 MiB", case_small_blocks},
    {"reused tensor headers", case_headers},
};

/* core/tensor.c keeps freed tensor and storage headers for reuse (not under AddressSanitizer): a reused one
   must come back as a fresh one would, every field zero but what its constructor sets */
static void case_headers(void) {
    int64_t n4 = 4, sz[2] = {3, 5};
    hb_tensor_t *a = hb_tensor_full(HB_F32, 1, &n4, 1.0);
    a->requires_grad = 1;
    a->retain_grad = 1;
    a->graph_released = 1;
    a->mark = 77;
    a->storage->version = 9;
    a->grad = hb_tensor_full(HB_F32, 1, &n4, 1.0);
    hb_tensor_t *v = hb_detach(a);
    hb_tensor_free(a); /* v keeps the storage; a's header and its grad go */
    hb_tensor_t *b = hb_tensor_zeros(HB_F64, 2, sz), *c = hb_detach(b);
    int fresh = 1;
    for (hb_tensor_t *t = b; t; t = t == b ? c : NULL)
        fresh &= t->requires_grad == 0 && t->retain_grad == 0 && t->graph_released == 0 && t->mark == 0 &&
                 t->grad == NULL && t->grad_fn == NULL && t->bgrad == NULL && t->offset == 0 && t->refcount == 1;
    ok(fresh, "headers made after others were freed have every field fresh");
    ok(b->storage->version == 0 && b->storage->refcount == 2 && b->storage->bf16 == NULL && !b->storage->external &&
       b->ndim == 2 && b->size[0] == 3 && b->size[1] == 5 && b->stride[0] == 5 && b->stride[1] == 1,
       "a new storage's header is fresh too, and the shape is its own");
    ok(((float *)hb_data(v))[3] == 1.0f && v->storage->refcount == 1,
       "a view outlives the tensor whose header was reused");
    hb_tensor_free(c); hb_tensor_free(b); hb_tensor_free(v);
    /* the failure hook still reaches a header served from the freed ones */
    hb_tensor_free(hb_tensor_empty(HB_F32, 1, &n4));
    hb_alloc_fail_after(0);
    hb_tensor_t *f = hb_tensor_empty(HB_F32, 1, &n4);
    hb_alloc_fail_after(-1);
    ok(f == NULL && strstr(hb_errmsg(), "out of memory"),
       "an injected failure of the header's allocation fails cleanly (%s)", hb_errmsg());
    hb_tensor_free(f);
}

/* the small tier: exact sizes (multiples of 64 bytes), newest first, at most 64 MiB or the limit */
static void case_small_blocks(void) {
    hb_block_cache_set_limit(-1);
    hb_block_cache_release();
    hb_memory_stats_t m0, m;
    int64_t n100 = 100, n1000 = 1000;
    hb_tensor_t *a = hb_tensor_empty(HB_F32, 1, &n100), *b = hb_tensor_empty(HB_F32, 1, &n100);
    void *pa = a->storage->data, *pb = b->storage->data;
    hb_tensor_free(a);
    hb_tensor_free(b);
    hb_memory_stats(&m0);
    ok(m0.cached_small == 2 * 448 && m0.cached == m0.cached_small,
       "two freed 400-byte blocks are kept at their 64-byte-rounded size (%lld bytes)", (long long)m0.cached_small);
    hb_tensor_t *c = hb_tensor_empty(HB_F32, 1, &n1000), *d = hb_tensor_empty(HB_F32, 1, &n100),
                *e = hb_tensor_empty(HB_F32, 1, &n100), *f = hb_tensor_empty(HB_F32, 1, &n100);
    hb_memory_stats(&m);
    ok(c->storage->data != pa && c->storage->data != pb, "another size does not get them");
    ok(d->storage->data == pb && e->storage->data == pa && f->storage->data != pa && f->storage->data != pb,
       "the same size gets them back newest first (b, a), then a fresh block");
    ok(m.cache_hits == m0.cache_hits + 2 && m.cache_misses == m0.cache_misses + 2 && m.cached_small == 0,
       "two hits, two misses, nothing left cached");
    float *w = d->storage->data;
    for (int i = 0; i < 100; i++) w[i] = (float)i; /* the whole reused block is the tensor's */
    ok(w[99] == 99.0f, "a reused block is writable to its end");
    hb_tensor_free(c); hb_tensor_free(d); hb_tensor_free(e); hb_tensor_free(f);
    hb_memory_stats(&m);
    ok(m.cached_small == 3 * 448 + 4032, "freed again: all four kept (%lld bytes)", (long long)m.cached_small);
    ok(hb_block_cache_release() == 3 * 448 + 4032, "release frees the small tier too");
    hb_memory_stats(&m);
    ok(m.cached == 0 && m.cached_small == 0, "nothing cached after release");

    hb_block_cache_set_limit(1000); /* the small tier keeps at most the limit; full, it is emptied first */
    a = hb_tensor_empty(HB_F32, 1, &n100); b = hb_tensor_empty(HB_F32, 1, &n100);
    c = hb_tensor_empty(HB_F32, 1, &n100);
    void *pc = c->storage->data;
    hb_tensor_free(a); hb_tensor_free(b);
    hb_memory_stats(&m);
    ok(m.cached_small == 2 * 448, "limit 1000 bytes: two freed 448-byte blocks kept (%lld)", (long long)m.cached_small);
    hb_tensor_free(c);
    hb_memory_stats(&m);
    ok(m.cached_small == 448, "a third that would not fit empties the tier and is kept alone (%lld)", (long long)m.cached_small);
    a = hb_tensor_empty(HB_F32, 1, &n100);
    ok(a->storage->data == pc, "the block kept is the last freed");
    hb_tensor_free(a);
    /* dead sizes (a growing cache: one new size per step) cannot fill the tier for good */
    hb_block_cache_release();
    for (int64_t k = 1; k <= 8; k++) {
        int64_t nk = 16 * k;
        hb_tensor_t *g = hb_tensor_empty(HB_F32, 1, &nk);
        hb_tensor_free(g);
    }
    b = hb_tensor_empty(HB_F32, 1, &n100);
    void *pb2 = b->storage->data;
    hb_tensor_free(b);
    hb_memory_stats(&m0);
    c = hb_tensor_empty(HB_F32, 1, &n100);
    hb_memory_stats(&m);
    ok(c->storage->data == pb2 && m.cache_hits == m0.cache_hits + 1,
       "after eight sizes freed once each, a size in use is still kept and reused (a hit)");
    hb_tensor_free(c);
    hb_block_cache_set_limit(0);
    hb_memory_stats(&m);
    ok(m.cached == 0, "limit 0 releases the small tier");
    a = hb_tensor_empty(HB_F32, 1, &n100);
    hb_tensor_free(a);
    hb_memory_stats(&m);
    ok(m.cached_small == 0, "limit 0: no small block kept");
    hb_block_cache_set_limit(-1);
}

int main(void) {
    hb_rng_seed(&R, 1234);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        diag("case: %s", cases[i].name);
        cases[i].run();
    }
    return tap_done();
}
