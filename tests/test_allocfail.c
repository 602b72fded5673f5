/* test_allocfail.c — every allocation of representative core operations, made to fail one at a time.
 *
 * For each operation (a function that does the whole job — create inputs, compute, check, release —
 * and returns 0 with a numeric signature of its result, or -1 with a message), the test first runs it
 * cleanly for the reference signature, then for N = 0, 1, 2, ... makes the N-th allocation fail
 * (hb_alloc_fail_after, kernels/alloc.h) until a run no longer reaches an N-th allocation. Every run that
 * met an injected failure must either fail with a message mentioning memory or succeed with exactly
 * the reference signature (a failure that was absorbed, e.g. by the block cache, must not change the
 * result); every run must leave the live tensor bytes (hb_alloc_bytes) where they were and no
 * temporary file behind. Leaks of non-tensor memory on these error paths are found by running this
 * program under valgrind or ASan/LSan (see docs/reliability.md). Pure C: links libhbcore.a only.
 */
#include "../kernels/alloc.h"
#include "../core/autograd.h"
#include "../core/linalg.h"
#include "../io/data.h"
#include "../io/jsonfile.h"
#include "../core/mixers.h"
#include "../core/ops.h"
#include "../core/optim.h"
#include "../io/safetensors.h"
#include "../core/tensor.h"
#include "../core/views.h"
#include "../io/tokenizer.h"
#include "../io/yamlconf.h"
#include "tap.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char emsg[1024];     /* the failing operation's message */
static char dir[256];       /* scratch folder for the I/O operations */

/* ---- helpers ---------------------------------------------------------------------------------------- */
typedef struct { hb_tensor_t *t[96]; int n; } pool_t;
static hb_tensor_t *keep(pool_t *p, hb_tensor_t *t) { if (p->n < 96) p->t[p->n++] = t; return t; }
static void drop(pool_t *p) { for (int i = 0; i < p->n; i++) hb_tensor_free(p->t[i]); p->n = 0; }
/* x = expr, released with the pool; a NULL result fails the operation with hb_errmsg() */
#define K(x, expr) do { if (!((x) = keep(PP, (expr)))) goto fail; } while (0)
#define CHECK(cond) do { if (!(cond)) goto fail; } while (0)

static int tensor_fail(pool_t *P) {
    snprintf(emsg, sizeof emsg, "%s", hb_errmsg());
    drop(P);
    return -1;
}

/* sum of w_i · x_i over the elements (row-major), w_i = 1 + i mod 7: a cheap fingerprint, no allocation */
static double fp(const hb_tensor_t *t) {
    if (!t) return NAN;
    int64_t n = hb_numel(t), idx[HB_MAXDIM] = {0};
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)(1 + i % 7) * hb_get(t, idx);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->size[d]) break;
            idx[d] = 0;
        }
    }
    return s;
}

static hb_rng_t R;
static hb_tensor_t *leaf(int nd, const int64_t *s, double lo, double hi) {
    hb_tensor_t *t = hb_rand(&R, HB_F64, nd, s, lo, hi);
    if (t) hb_set_requires_grad(t, 1);
    return t;
}

/* loss = Σ fp-weights · out, then backward; sig = loss + fingerprints of the grads of the leaves */
static int backward_sig(pool_t *PP, hb_tensor_t *out, int nl, hb_tensor_t **leaves, double *sig) {
    hb_tensor_t *w, *prod, *loss;
    K(w, hb_tensor_empty(out->dtype, out->ndim, out->size));
    int64_t n = hb_numel(w);
    for (int64_t i = 0; i < n; i++) ((double *)hb_data(w))[i] = (double)(1 + i % 5) / 5;
    K(prod, hb_mul(out, w));
    K(loss, hb_reduce_all(HB_R_SUM, prod));
    if (hb_backward(loss, NULL, 0)) goto fail;
    double s = fp(loss);
    for (int i = 0; i < nl; i++) {
        if (!leaves[i]->grad) { hb_seterr("gradient of input %d missing", i); goto fail; }
        s += (i + 1) * fp(leaves[i]->grad);
    }
    *sig = s;
    return 0;
fail:
    return -1;
}

/* Fail if a temporary file of an atomic write is left in dir. */
static int tmp_left(void) {
    DIR *d = opendir(dir);
    int found = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) if (strstr(e->d_name, ".tmp")) found = 1;
    if (d) closedir(d);
    return found;
}

/* ---- the operations ------------------------------------------------------------------------------------ */
static int op_create(double *sig) {
    pool_t P = {0}, *PP = &P;
    int64_t s[2] = {3, 4}, s3[3] = {2, 1, 3};
    double data[6] = {1, 2, 3, 4, 5, 6};
    hb_rng_t r;
    hb_rng_seed(&r, 1);
    hb_tensor_t *a, *b, *c, *d, *e, *f;
    K(a, hb_tensor_zeros(HB_F32, 2, s));
    K(b, hb_tensor_full(HB_F64, 2, s, 2.5));
    K(c, hb_tensor_arange(HB_I64, 0, 10, 1));
    K(d, hb_tensor_from_data(HB_F64, 3, s3, data));
    K(e, hb_randn(&r, HB_F32, 2, s, 0, 1));
    K(f, hb_randint(&r, HB_I32, 3, s3, 0, 9));
    *sig = fp(a) + fp(b) + fp(c) + fp(d) + fp(e) + fp(f);
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}

static int op_views(double *sig) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 2);
    int64_t s[3] = {3, 5, 2}, vs[2] = {8, 3}, es[3] = {2, 8, 3};
    int perm[3] = {2, 0, 1};
    hb_tensor_t *x, *a, *b, *v, *e, *o, *p, *q, *u, *c, *z;
    K(x, leaf(3, s, -1, 1));
    K(a, hb_narrow(x, 1, 1, 4));          /* [3,4,2] */
    K(b, hb_transpose(a, 0, 2));          /* [2,4,3] */
    K(v, hb_view(b, 2, vs));              /* copies: b is not contiguous */
    K(e, hb_expand(v, 3, es));
    K(p, hb_permute(e, perm));            /* [3,2,8] */
    K(q, hb_select(p, 1, 1));             /* [3,8] */
    K(u, hb_unsqueeze(q, 0));
    K(c, hb_contiguous(u));
    K(z, hb_squeeze(c, 0));
    K(o, hb_mul(z, z));
    if (backward_sig(&P, o, 1, &x, sig)) goto fail;
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}

static int op_broadcast(double *sig) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 3);
    int64_t sa[2] = {3, 1}, sb[3] = {2, 1, 4};
    hb_tensor_t *a, *b, *s, *m, *d, *o, *p;
    K(a, leaf(2, sa, 0.5, 2));
    K(b, leaf(3, sb, 0.5, 2));
    K(s, hb_add(a, b));                   /* [2,3,4] */
    K(m, hb_mul(s, a));
    K(d, hb_div(m, b));
    K(p, hb_binary(HB_OP_POW, d, a));
    K(o, hb_binary_scalar(HB_OP_SUB, p, 1.5, 1));
    hb_tensor_t *leaves[2] = {a, b};
    if (backward_sig(&P, o, 2, leaves, sig)) goto fail;
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}

static int op_matmul(double *sig) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 4);
    int64_t sa[3] = {2, 3, 4}, sb[2] = {4, 5}, sw[2] = {6, 5}, sbias[1] = {6};
    hb_tensor_t *a, *b, *w, *bias, *o, *l;
    K(a, leaf(3, sa, -1, 1));
    K(b, leaf(2, sb, -1, 1));
    K(w, leaf(2, sw, -1, 1));
    K(bias, leaf(1, sbias, -1, 1));
    K(o, hb_matmul(a, b));                /* [2,3,5] */
    K(l, hb_linear(o, w, bias));          /* [2,3,6] */
    hb_tensor_t *leaves[4] = {a, b, w, bias};
    if (backward_sig(&P, l, 4, leaves, sig)) goto fail;
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}

/* mixer sizes: 3 chunks of 2 over T = 5 */
enum { MB = 1, MT = 5, MH = 2, MK = 4, MV = 4, MC = 2 };

static int op_attention(double *sig) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 5);
    int64_t sq[4] = {MB, MT, MH, MK}, skv[4] = {MB, MT, 1, MK};
    hb_tensor_t *q, *k, *v, *qr, *kr, *o;
    K(q, leaf(4, sq, -1, 1));
    K(k, leaf(4, skv, -1, 1));
    K(v, leaf(4, skv, -1, 1));
    K(qr, hb_rope(q, 10000, 0));
    K(kr, hb_rope(k, 10000, 0));
    K(o, hb_attention(qr, kr, v, 0.5, 0));
    hb_tensor_t *leaves[3] = {q, k, v};
    if (backward_sig(&P, o, 3, leaves, sig)) goto fail;
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}

static int gla_mode(double *sig, hb_mode_t mode) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 6);
    int64_t sq[4] = {MB, MT, MH, MK}, sv[4] = {MB, MT, MH, MV};
    hb_tensor_t *q, *k, *v, *g, *o, *ht = NULL;
    K(q, leaf(4, sq, -1, 1));
    K(k, leaf(4, sq, -1, 1));
    K(v, leaf(4, sv, -1, 1));
    K(g, leaf(4, sq, -1, -0.05));
    K(o, hb_gla(q, k, v, g, 0.5, mode, MC, &ht));
    keep(PP, ht);
    hb_tensor_t *leaves[4] = {q, k, v, g};
    if (backward_sig(&P, o, 4, leaves, sig)) goto fail;
    *sig += fp(ht);
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}
static int op_gla_chunk(double *sig) { return gla_mode(sig, HB_MODE_CHUNK); }
static int op_gla_rec(double *sig) { return gla_mode(sig, HB_MODE_RECURRENT); }

static int retention_mode(double *sig, hb_mode_t mode) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 7);
    int64_t sq[4] = {MB, MT, MH, MK}, sv[4] = {MB, MT, MH, MV}, sh[1] = {MH};
    double lgd[MH] = {log(0.9), log(0.7)};
    hb_tensor_t *q, *k, *v, *lg, *o;
    K(q, leaf(4, sq, -1, 1));
    K(k, leaf(4, sq, -1, 1));
    K(v, leaf(4, sv, -1, 1));
    K(lg, hb_tensor_from_data(HB_F64, 1, sh, lgd));
    K(o, hb_retention(q, k, v, lg, 0.5, mode, MC, NULL));
    hb_tensor_t *leaves[3] = {q, k, v};
    if (backward_sig(&P, o, 3, leaves, sig)) goto fail;
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}
static int op_retention_chunk(double *sig) { return retention_mode(sig, HB_MODE_CHUNK); }
static int op_retention_rec(double *sig) { return retention_mode(sig, HB_MODE_RECURRENT); }

static int delta_mode(double *sig, hb_mode_t mode, int gated) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 8);
    int64_t sq[4] = {MB, MT, MH, MK}, sv[4] = {MB, MT, MH, MV}, sb[3] = {MB, MT, MH};
    hb_tensor_t *q, *k, *v, *beta, *g = NULL, *o;
    K(q, leaf(4, sq, -0.5, 0.5));
    K(k, leaf(4, sq, -0.5, 0.5));
    K(v, leaf(4, sv, -1, 1));
    K(beta, leaf(3, sb, 0.1, 0.9));
    if (gated) K(g, leaf(3, sb, -1, -0.1));
    K(o, hb_delta_rule(q, k, v, beta, g, 0.5, mode, MC, NULL));
    hb_tensor_t *leaves[5] = {q, k, v, beta, g};
    if (backward_sig(&P, o, gated ? 5 : 4, leaves, sig)) goto fail;
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}
static int op_delta_chunk(double *sig) { return delta_mode(sig, HB_MODE_CHUNK, 0); }
static int op_delta_rec(double *sig) { return delta_mode(sig, HB_MODE_RECURRENT, 0); }
static int op_gdelta_chunk(double *sig) { return delta_mode(sig, HB_MODE_CHUNK, 1); }
static int op_gdelta_rec(double *sig) { return delta_mode(sig, HB_MODE_RECURRENT, 1); }

static int hgrn_mode(double *sig, hb_mode_t mode) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 9);
    int64_t sx[3] = {MB, MT, 6};
    hb_tensor_t *x, *g, *o;
    K(x, leaf(3, sx, -1, 1));
    K(g, leaf(3, sx, -1, -0.05));
    K(o, hb_hgrn(x, g, mode, NULL));
    hb_tensor_t *leaves[2] = {x, g};
    if (backward_sig(&P, o, 2, leaves, sig)) goto fail;
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}
static int op_hgrn_chunk(double *sig) { return hgrn_mode(sig, HB_MODE_CHUNK); }
static int op_hgrn_rec(double *sig) { return hgrn_mode(sig, HB_MODE_RECURRENT); }

static int op_conv1d(double *sig) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 10);
    int64_t sx[3] = {MB, MT, 6}, sw[3] = {6, 1, 3}, sb[1] = {6};
    hb_tensor_t *x, *w, *b, *o, *cache = NULL;
    K(x, leaf(3, sx, -1, 1));
    K(w, leaf(3, sw, -1, 1));
    K(b, leaf(1, sb, -1, 1));
    K(o, hb_conv1d(x, w, b, 1, &cache));
    keep(PP, cache);
    hb_tensor_t *leaves[3] = {x, w, b};
    if (backward_sig(&P, o, 3, leaves, sig)) goto fail;
    *sig += fp(cache);
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}

/* the decode steps of every mixer, on states/caches made here */
static int op_steps(double *sig) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 11);
    int64_t s3[3] = {MB, MH, MK}, st[4] = {MB, MH, MK, MV}, sh[1] = {MH}, sb[2] = {MB, MH};
    int64_t kc[4] = {MB, 4, MH, MK}, cs[3] = {MB, 2, 6}, xs[2] = {MB, 6}, ws[3] = {6, 1, 3}, hs[2] = {MB, 6};
    double lgd[MH] = {log(0.9), log(0.7)};
    hb_tensor_t *q, *k, *v, *g, *S, *lg, *beta, *gb, *kcache, *vcache, *cc, *x, *w, *hst, *o1, *o2, *o3, *o4, *o5, *o6;
    K(q, hb_rand(&R, HB_F32, 3, s3, -0.5, 0.5));
    K(k, hb_rand(&R, HB_F32, 3, s3, -0.5, 0.5));
    K(v, hb_rand(&R, HB_F32, 3, s3, -1, 1));
    K(g, hb_rand(&R, HB_F32, 3, s3, -1, -0.1));
    K(S, hb_tensor_zeros(HB_F32, 4, st));
    K(lg, hb_tensor_from_data(HB_F64, 1, sh, lgd));
    K(beta, hb_rand(&R, HB_F32, 2, sb, 0.1, 0.9));
    K(gb, hb_rand(&R, HB_F32, 2, sb, -1, -0.1));
    K(kcache, hb_rand(&R, HB_F32, 4, kc, -1, 1));
    K(vcache, hb_rand(&R, HB_F32, 4, kc, -1, 1));
    K(cc, hb_rand(&R, HB_F32, 3, cs, -1, 1));
    K(x, hb_rand(&R, HB_F32, 2, xs, -1, 1));
    K(w, hb_rand(&R, HB_F32, 3, ws, -1, 1));
    K(hst, hb_tensor_zeros(HB_F32, 2, hs));
    K(o1, hb_gla_step(S, q, k, v, g, 0.5));
    K(o2, hb_retention_step(S, q, k, v, lg, 0.5));
    K(o3, hb_delta_rule_step(S, q, k, v, beta, gb, 0.5));
    K(o4, hb_attention_step(q, kcache, vcache, 0.5, 0, 2));
    K(o5, hb_conv1d_step(cc, x, w, NULL, 1));
    K(o6, hb_hgrn_step(hst, x, x));
    *sig = fp(o1) + fp(o2) + fp(o3) + fp(o4) + fp(o5) + fp(o6) + fp(S) + fp(cc) + fp(hst);
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}

/* a tiny language model step: embedding → rmsnorm → linear → cross-entropy, the other nn ops on the
 * side, backward, then one AdamW update of every parameter */
static int op_model_adamw(double *sig) {
    pool_t P = {0}, *PP = &P;
    hb_rng_seed(&R, 12);
    enum { V = 7, D = 6, N = 5 };
    int64_t se[2] = {V, D}, sd[1] = {D}, sn[1] = {N}, s2[2] = {N, V}, s3[1] = {3}, sel_d[3] = {4, 0, 2};
    int64_t ids_d[N] = {1, 3, 5, 0, 6}, tgt_d[N] = {3, 5, 0, 6, -100}, gi_d[N * 2] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 0};
    int64_t sg[2] = {N, 2};
    hb_tensor_t *E, *Wn, *Wo, *ids, *tgt, *sel, *h, *hn, *lg, *ce, *sm, *lsm, *cat, *ga, *gidx, *isel, *tri, *mask, *wh, *cs,
        *cl, *ex, *aux, *auxs, *loss;
    K(E, leaf(2, se, -1, 1));
    K(Wn, leaf(1, sd, 0.5, 1.5));
    K(Wo, leaf(2, se, -1, 1));
    K(ids, hb_tensor_from_data(HB_I64, 1, sn, ids_d));
    K(tgt, hb_tensor_from_data(HB_I64, 1, sn, tgt_d));
    K(gidx, hb_tensor_from_data(HB_I64, 2, sg, gi_d));
    K(sel, hb_tensor_from_data(HB_I64, 1, s3, sel_d));
    K(h, hb_embedding(E, ids));                      /* [N, D] */
    K(hn, hb_rmsnorm(h, Wn, 1e-5));
    K(lg, hb_linear(hn, Wo, NULL));                  /* [N, V] */
    K(ce, hb_cross_entropy(lg, tgt, -100));
    K(sm, hb_softmax(lg, -1));
    K(lsm, hb_log_softmax(lg, 0));
    hb_tensor_t *two[2] = {sm, lsm};
    K(cat, hb_cat(2, two, 1));                       /* [N, 2V] */
    K(ga, hb_gather(cat, 1, gidx));                  /* [N, 2] */
    K(isel, hb_index_select(hn, 0, sel));            /* [3, D] */
    K(tri, hb_tril(isel, 0));
    K(mask, hb_tensor_full(HB_F64, 2, s2, 0));
    for (int i = 0; i < N; i++) ((double *)hb_data(mask))[i * V + i] = 1;
    K(wh, hb_where(mask, lg, sm));
    K(cs, hb_cumsum(tri, 1, 0));
    K(cl, hb_clamp(cs, -1, 1));
    K(ex, hb_unary(HB_U_SILU, cl));
    hb_tensor_t *r1, *r2, *r3, *r4;
    K(r1, hb_reduce_all(HB_R_SUM, ga));
    K(r2, hb_reduce(HB_R_MEAN, ex, 1, 0));
    K(r3, hb_reduce_all(HB_R_SUM, r2));
    K(r4, hb_reduce_all(HB_R_MAX, wh));
    K(aux, hb_add(r1, r3));
    K(auxs, hb_add(aux, r4));
    hb_tensor_t *sc;
    K(sc, hb_binary_scalar(HB_OP_MUL, auxs, 0.01, 0));
    K(loss, hb_add(ce, sc));
    if (hb_backward(loss, NULL, 0)) goto fail;
    double s = fp(loss);
    hb_tensor_t *params[3] = {E, Wn, Wo};
    for (int i = 0; i < 3; i++) {
        hb_tensor_t *p = params[i], *m, *v;
        if (!p->grad) { hb_seterr("gradient of parameter %d missing", i); goto fail; }
        K(m, hb_tensor_zeros(p->dtype, p->ndim, p->size));
        K(v, hb_tensor_zeros(p->dtype, p->ndim, p->size));
        if (hb_adamw_update(p, p->grad, m, v, 1e-2, 0.9, 0.95, 1e-8, 0.1, 1)) goto fail;
        s += (i + 1) * fp(p) + hb_sumsq(p->grad);
    }
    *sig = s;
    drop(&P);
    return 0;
fail:
    return tensor_fail(&P);
}

static int op_safetensors(double *sig) {
    char path[512], idx[600], sh1[600], sh2[600];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    float f[6] = {1, 2, 3, 4, 5, 6};
    int64_t l[4] = {7, 8, 9, 10};
    uint16_t bf[2] = {0x3f80, 0x4000};
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s2[1] = {2};
    hb_st_entry e[3] = {{"w.weight", HB_ST_F32, 2, s23, f}, {"ids", HB_ST_I64, 1, s4, l}, {"h", HB_ST_BF16, 1, s2, bf}};
    const char *mk[2] = {"format", "step"}, *mv[2] = {"pt", "12"};
    if (hb_safetensors_write(path, 3, e, 2, mk, mv, emsg, sizeof emsg)) return -1;
    hb_safetensors_t *st = hb_safetensors_open(path, emsg, sizeof emsg);
    if (!st) return -1;
    double s = 0;
    int i = hb_safetensors_find(st, "w.weight");
    const float *pf = i >= 0 ? hb_safetensors_data(st, i) : NULL;
    for (int j = 0; pf && j < 6; j++) s += (j + 1) * pf[j];
    s += hb_safetensors_count(st) + atof(hb_safetensors_meta_get(st, "step") ? hb_safetensors_meta_get(st, "step") : "0");
    hb_safetensors_close(st);
    /* a sharded checkpoint: two shards and an index */
    snprintf(sh1, sizeof sh1, "%s/m-1.safetensors", dir);
    snprintf(sh2, sizeof sh2, "%s/m-2.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/m.safetensors.index.json", dir);
    if (hb_safetensors_write(sh1, 1, &e[0], 0, NULL, NULL, emsg, sizeof emsg)) return -1;
    if (hb_safetensors_write(sh2, 2, &e[1], 1, mk, mv, emsg, sizeof emsg)) return -1;
    FILE *fi = fopen(idx, "w");
    if (!fi) { snprintf(emsg, sizeof emsg, "cannot write %s", idx); return -1; }
    fprintf(fi, "{\"weight_map\": {\"w.weight\": \"m-1.safetensors\", \"ids\": \"m-2.safetensors\", "
                "\"h\": \"m-2.safetensors\"}}\n");
    fclose(fi);
    st = hb_safetensors_open_index(idx, emsg, sizeof emsg);
    if (!st) return -1;
    i = hb_safetensors_find(st, "ids");
    const int64_t *pl = i >= 0 ? hb_safetensors_data(st, i) : NULL;
    for (int j = 0; pl && j < 4; j++) s += (j + 1) * (double)pl[j];
    s += 100 * hb_safetensors_count(st);
    hb_safetensors_close(st);
    *sig = s;
    return 0;
}

static int op_json(double *sig) {
    char path[512];
    snprintf(path, sizeof path, "%s/c.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\"model_type\": \"gla\", \"hidden_size\": 32, \"attn\": {\"layers\": [1, 3]}}\n");
    fclose(f);
    cJSON *j = hb_json_read_file(path, emsg, sizeof emsg);
    if (!j) return -1;
    char out[512];
    snprintf(out, sizeof out, "%s/d.json", dir);
    int rc = hb_json_write_file(out, j, emsg, sizeof emsg);
    cJSON_Delete(j);
    if (rc) return -1;
    j = hb_json_read_file(out, emsg, sizeof emsg);
    if (!j) return -1;
    *sig = cJSON_GetObjectItem(j, "hidden_size")->valuedouble;
    cJSON_Delete(j);
    return 0;
}

static int op_yaml(double *sig) {
    static const char *doc =
        "model: &m\n  type: gated_deltanet\n  hidden: 64\n  layers: [0, 1, 2, 3]\n"
        "train:\n  lr: 3.0e-4\n  steps: 1_000\n  name: \"quoted \\t text\"\n  flags: {a: true, b: null}\n"
        "copy: *m\n"
        "list:\n  - x: 1\n  - y: [2, 3]\n  - !!str 5\n";
    hb_yaml_t *y = hb_yaml_load_string("test.yaml", doc, strlen(doc), emsg, sizeof emsg);
    if (!y) return -1;
    const hb_yaml_t *h = hb_yaml_path(y, "copy.hidden"), *st = hb_yaml_path(y, "train.steps");
    const hb_yaml_t *lr = hb_yaml_path(y, "train.lr"), *nm = hb_yaml_path(y, "train.name");
    *sig = (h ? (double)h->integer : -1) + (st ? (double)st->integer : -1) + (double)y->n +
           (lr && lr->kind == HB_YAML_FLOAT ? 1e4 * lr->number : -1) + (nm ? (double)nm->len + 10 * nm->kind : -1);
    hb_yaml_free(y);
    return 0;
}

static int tok_one(const char *file, double *sig) {
    hb_tokenizer_t *t = hb_tokenizer_load_hf(file, emsg, sizeof emsg);
    if (!t) return -1;
    static const char *text = "hello world, the quick brown fox <s> jumps\n over 12 lazy dogs </s>";
    int64_t *ids = NULL;
    size_t n = 0, len = 0;
    char *back = NULL;
    int rc = hb_tokenizer_encode(t, text, strlen(text), &ids, &n, emsg, sizeof emsg);
    if (!rc) rc = hb_tokenizer_decode(t, ids, n, &back, &len, emsg, sizeof emsg);
    if (!rc) {
        double s = (double)n;
        for (size_t i = 0; i < n; i++) s += (double)((i % 7) + 1) * (double)ids[i];
        for (size_t i = 0; i < len; i++) s += (unsigned char)back[i];
        *sig += s;
    }
    free(ids);
    free(back);
    hb_tokenizer_free(t);
    return rc;
}

static int op_tokenizer(double *sig) {
    *sig = 0;
    if (tok_one("tests/data/tok/bytelevel_tiny.json", sig) || tok_one("tests/data/tok/sp_tiny.json", sig)) return -1;
    hb_tokenizer_t *b = hb_tokenizer_byte();
    if (!b) { snprintf(emsg, sizeof emsg, "byte tokenizer: out of memory"); return -1; }
    char out[512];
    snprintf(out, sizeof out, "%s/tok.json", dir);
    int rc = hb_tokenizer_save(b, out, emsg, sizeof emsg);
    hb_tokenizer_free(b);
    return rc;
}

static int op_train_bpe(double *sig) {
    char txt[512];
    snprintf(txt, sizeof txt, "%s/corpus.txt", dir);
    FILE *f = fopen(txt, "w");
    if (!f) return -1;
    for (int i = 0; i < 20; i++) fprintf(f, "the cat sat on the mat; the dog sat on the log %d\n", i % 3);
    fclose(f);
    const char *files[1] = {txt};
    hb_tokenizer_t *t = hb_tokenizer_train_bpe(files, 1, 270, emsg, sizeof emsg);
    if (!t) return -1;
    *sig = (double)hb_tokenizer_vocab_size(t) + (double)hb_tokenizer_token_to_id(t, "Ġthe");
    hb_tokenizer_free(t);
    return 0;
}

static int op_shard(double *sig) {
    char path[512];
    snprintf(path, sizeof path, "%s/train.bin", dir);
    int64_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = (i * 37) % 50;
    if (hb_shard_write(path, ids, 64, 50, 0, emsg, sizeof emsg)) return -1;
    hb_shard_t *s = hb_shard_open(path, emsg, sizeof emsg);
    if (!s) return -1;
    int64_t out[3 * 9], win[9], nw = 0;
    int rc = hb_shard_batch(s, 3, 8, 7, 2, out, emsg, sizeof emsg);
    if (!rc) rc = hb_shard_window(s, 2, 8, win, &nw, emsg, sizeof emsg);
    if (!rc) {
        double x = (double)hb_shard_len(s);
        for (int i = 0; i < 27; i++) x += (double)((i % 5) + 1) * (double)out[i];
        for (int i = 0; i < nw; i++) x += (double)win[i];
        *sig = x;
    }
    hb_shard_close(s);
    return rc;
}

/* ---- the driver ------------------------------------------------------------------------------------------- */
typedef struct { const char *name; int (*fn)(double *); } op_t;

static int64_t only_at = -1;     /* debugging: inject at this allocation only (argv[2]) */

static void run_op(const op_t *op) {
    double ref = 0;
    emsg[0] = '\0';
    hb_seterr("%s", "");
    int64_t bytes0 = hb_alloc_bytes(), c0 = hb_alloc_count();
    int rc = op->fn(&ref);
    int64_t total = hb_alloc_count() - c0;
    if (!ok(rc == 0 && hb_alloc_bytes() == bytes0, "%s: runs cleanly (%lld allocations)", op->name, (long long)total)) {
        diag("%s", emsg);
        return;
    }
    int64_t n = only_at >= 0 ? only_at : 0, failed = 0, absorbed = 0, bad = 0;
    for (;; n++) {
        if (only_at >= 0 && n > only_at) break;
        double sig = 0;
        emsg[0] = '\0';
        hb_seterr("%s", "");
        int64_t inj0 = hb_alloc_injected();
        bytes0 = hb_alloc_bytes();
        hb_alloc_fail_after(n);
        rc = op->fn(&sig);
        hb_alloc_fail_after(-1);
        int injected = hb_alloc_injected() > inj0;
        if (!injected) {
            if (rc != 0 || sig != ref) { bad++; diag("%s: run %lld without an injected failure: rc %d, %s", op->name, (long long)n, rc, emsg); }
            break;
        }
        if (rc == 0) {
            absorbed++;
            if (sig != ref) { bad++; diag("%s: allocation %lld failed silently: result %.17g instead of %.17g", op->name, (long long)n, sig, ref); }
        } else {
            failed++;
            if (!strstr(emsg, "memory")) { bad++; diag("%s: allocation %lld: message does not mention memory: '%s'", op->name, (long long)n, emsg); }
        }
        if (hb_alloc_bytes() != bytes0) {
            bad++;
            diag("%s: allocation %lld: %lld tensor bytes leaked", op->name, (long long)n, (long long)(hb_alloc_bytes() - bytes0));
        }
        if (tmp_left()) { bad++; diag("%s: allocation %lld: a temporary file was left behind", op->name, (long long)n); }
        if (n > 200000) { bad++; diag("%s: never finished", op->name); break; }
    }
    ok(bad == 0, "%s: %lld injection points: %lld reported out of memory, %lld absorbed with the same result",
       op->name, (long long)n, (long long)failed, (long long)absorbed);
}

int main(int argc, char **argv) {
    static const op_t ops[] = {
        {"tensor creation", op_create},       {"views + backward", op_views},
        {"broadcast binary ops", op_broadcast}, {"matmul + linear", op_matmul},
        {"attention + rope", op_attention},   {"gla chunk", op_gla_chunk},
        {"gla recurrent", op_gla_rec},        {"retention chunk", op_retention_chunk},
        {"retention recurrent", op_retention_rec}, {"delta rule chunk", op_delta_chunk},
        {"delta rule recurrent", op_delta_rec}, {"gated delta rule chunk", op_gdelta_chunk},
        {"gated delta rule recurrent", op_gdelta_rec}, {"hgrn chunk", op_hgrn_chunk},
        {"hgrn recurrent", op_hgrn_rec},      {"conv1d", op_conv1d},
        {"decode steps", op_steps},           {"tiny model + AdamW", op_model_adamw},
        {"safetensors write + read", op_safetensors}, {"JSON read + write", op_json},
        {"YAML load", op_yaml},               {"tokenizer load + encode", op_tokenizer},
        {"BPE training", op_train_bpe},       {"data shard", op_shard},
    };
    snprintf(dir, sizeof dir, "/tmp/hb_allocfail_XXXXXX");
    if (!mkdtemp(dir)) return bail_out("cannot create a temporary folder %s", dir);
    /* debugging: test_allocfail [NAME [N]] runs the operations whose name contains NAME, injecting at
     * allocation N only when given (break on hb_alloc_injected's increment in kernels/alloc.c) */
    const char *only = argc > 1 ? argv[1] : NULL;
    if (argc > 2) only_at = atoll(argv[2]);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (!only || strstr(ops[i].name, only)) run_op(&ops[i]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) diag("could not remove %s", dir);
    return tap_done();
}
