/* test_mixer_op.c — the generic mixer op (core/mixer_op.c) over every registered descriptor
 * (kernels/mixer_registry.c): descriptors well formed, shape-pattern / dtype / constraint errors with
 * their exact messages, and, for each mixer in float64: the finite-difference gradient check through
 * the op in both modes, chunk == recurrent (output and final state), and T decode steps == the forward.
 * Packed sequences (cu_seqlens): for every mixer whose descriptor says `packed`, the finite-difference
 * gradient check through hb_mixer_packed in both modes (documents {2, 0, 3, 5}: an empty one, one
 * shorter than the chunk, one spanning two) and packed == each document alone (outputs and the N final
 * states); a mixer without it is refused with a message; cu_seqlens errors with their exact messages.
 * Pure C: links libhbcore.a only. A new mixer is covered by registering it (input value ranges below).
 */
#include "../core/autograd.h"
#include "../core/mixer_op.h"
#include "../core/mixers.h"
#include "../core/ops.h"
#include "../core/tensor.h"
#include "../core/views.h"
#include "../kernels/mixer_registry.h"
#include "gradcheck.h"
#include "tap.h"
#include <math.h>
#include <string.h>

static hb_rng_t R;

/* Test sizes of the dimension names (anything else: 3); T spans a partial second chunk of CHUNK. */
#define CHUNK 4
static int64_t PACKED_T; /* > 0 while building packed inputs: B = 1 and T = PACKED_T */
static int64_t dim_size(const char *name) {
    static const struct { const char *n; int64_t v; } sz[] = {
        {"B", 2}, {"T", 7}, {"H", 2}, {"HV", 4}, {"G", 1}, {"K", 4}, {"V", 3}, {"D", 5}};
    if (PACKED_T > 0 && !strcmp(name, "B")) return 1;
    if (PACKED_T > 0 && !strcmp(name, "T")) return PACKED_T;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++)
        if (!strcmp(sz[i].n, name)) return sz[i].v;
    return 3;
}

/* Shape of a pattern at the test sizes (T dropped for the decode step). */
static int shape_of(const char *pat, int step, int64_t *size) {
    int n = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", pat);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " "))
        if (!(step && !strcmp(tok, "T"))) size[n++] = dim_size(tok);
    return n;
}

/* A float64 input in the range its role needs: log decays ≤ 0, beta in (0, 1), the rest N(0, 0.5). */
static hb_tensor_t *make_input(const hb_mixer_input_t *x, int step) {
    int64_t size[HB_MAXDIM];
    int n = shape_of(x->shape, step, size);
    if (!strcmp(x->name, "g") || !strcmp(x->name, "gk") || !strcmp(x->name, "decay")) return hb_rand(&R, HB_F64, n, size, -1.0, -0.05);
    if (!strcmp(x->name, "beta")) return hb_rand(&R, HB_F64, n, size, 0.1, 0.9);
    return hb_randn(&R, HB_F64, n, size, 0, 0.5);
}

/* ---- gradient check through the generic op ----------------------------------------------------------- */
typedef struct {
    const hb_mixer_desc_t *d;
    hb_mode_t mode;
    hb_tensor_t *all[HB_MIXER_MAXIN]; /* every input; the gradient-checked ones are replaced per call */
    int grad_index[HB_MIXER_MAXIN];   /* descriptor index of gradcheck input j */
    int ngrad;
} gc_ctx;

static hb_tensor_t *f_mixer(void *p, hb_tensor_t **in) {
    gc_ctx *c = p;
    hb_tensor_t *all[HB_MIXER_MAXIN];
    memcpy(all, c->all, sizeof all);
    for (int j = 0; j < c->ngrad; j++) all[c->grad_index[j]] = in[j];
    return hb_mixer(c->d, all, NULL, c->mode, CHUNK, NULL);
}

static void check_gradients(const hb_mixer_desc_t *d) {
    for (int mode = 0; mode < 2; mode++) {
        gc_ctx c = {.d = d, .mode = (hb_mode_t)mode};
        hb_tensor_t *g[HB_MIXER_MAXIN];
        for (int i = 0; i < hb_mixer_nin(d); i++) {
            c.all[i] = make_input(&d->in[i], 0);
            if (d->in[i].flags & HB_IN_GRAD) { c.grad_index[c.ngrad] = i; g[c.ngrad++] = c.all[i]; }
        }
        double err = gradcheck(f_mixer, &c, c.ngrad, g);
        ok(err < 1e-6, "%s: float64 gradients through hb_mixer match finite differences (%s mode; rel err %.2e)", d->name,
           mode == HB_MODE_CHUNK ? "chunk" : "recurrent", err);
        for (int i = 0; i < hb_mixer_nin(d); i++) hb_tensor_free(c.all[i]);
    }
}

static double max_abs_diff(hb_tensor_t *a, hb_tensor_t *b) {
    if (!a || !b || !hb_same_shape(a, b)) return INFINITY;
    hb_tensor_t *ac = hb_contiguous(a), *bc = hb_contiguous(b);
    double m = 0;
    for (int64_t i = 0; i < hb_numel(ac); i++) {
        double e = fabs(((double *)hb_data(ac))[i] - ((double *)hb_data(bc))[i]);
        if (e > m || isnan(e)) m = isnan(e) ? INFINITY : e;
    }
    hb_tensor_free(ac);
    hb_tensor_free(bc);
    return m;
}

/* chunk == recurrent, and T decode steps from a zero state == the forward and its final state */
static void check_forms(const hb_mixer_desc_t *d) {
    hb_tensor_t *in[HB_MIXER_MAXIN] = {0};
    for (int i = 0; i < hb_mixer_nin(d); i++) in[i] = make_input(&d->in[i], 0);
    hb_tensor_t *hc = NULL, *hr = NULL;
    hb_tensor_t *oc = hb_mixer(d, in, NULL, HB_MODE_CHUNK, CHUNK, &hc);
    hb_tensor_t *orr = hb_mixer(d, in, NULL, HB_MODE_RECURRENT, 0, &hr);
    double e1 = max_abs_diff(oc, orr), e2 = max_abs_diff(hc, hr);
    ok(e1 < 1e-10 && e2 < 1e-10, "%s: chunk == recurrent (output %.1e, final state %.1e)", d->name, e1, e2);

    int64_t ss[HB_MAXDIM];
    int sn = shape_of(d->state, 0, ss);
    hb_tensor_t *state = hb_tensor_zeros(HB_F64, sn, ss);
    double e3 = 0;
    int T = (int)dim_size("T");
    for (int t = 0; t < T && e3 < INFINITY; t++) {
        hb_tensor_t *x[HB_MIXER_MAXIN] = {0};
        for (int i = 0; i < hb_mixer_nin(d); i++) /* token t of every input that has a T axis */
            x[i] = !in[i] ? NULL : strstr(d->in[i].shape, "T") ? hb_select(in[i], 1, t) : hb_tensor_ref(in[i]);
        hb_tensor_t *ot = hb_mixer_step(d, state, x, NULL), *ref = hb_select(oc, 1, t);
        if (!ot) diag("%s", hb_errmsg());
        double e = max_abs_diff(ot, ref);
        e3 = e > e3 ? e : e3;
        hb_tensor_free(ot);
        hb_tensor_free(ref);
        for (int i = 0; i < HB_MIXER_MAXIN; i++) hb_tensor_free(x[i]);
    }
    double e4 = max_abs_diff(state, hc);
    ok(e3 < 1e-10 && e4 < 1e-10, "%s: %d decode steps == the forward (outputs %.1e, state %.1e)", d->name, T, e3, e4);
    hb_tensor_free(state);
    hb_tensor_free(oc); hb_tensor_free(orr); hb_tensor_free(hc); hb_tensor_free(hr);
    for (int i = 0; i < HB_MIXER_MAXIN; i++) hb_tensor_free(in[i]);
}

/* ---- packed sequences ----------------------------------------------------------------------------------- */
static const int64_t PLENS[] = {2, 0, 3, 5}; /* an empty document, one shorter than CHUNK, one spanning two */
#define PN 4

typedef struct {
    gc_ctx g;
    hb_tensor_t *cu;
} pk_ctx;

static hb_tensor_t *f_packed(void *p, hb_tensor_t **in) {
    pk_ctx *c = p;
    hb_tensor_t *all[HB_MIXER_MAXIN];
    memcpy(all, c->g.all, sizeof all);
    for (int j = 0; j < c->g.ngrad; j++) all[c->g.grad_index[j]] = in[j];
    return hb_mixer_packed(c->g.d, all, NULL, c->g.mode, CHUNK, c->cu, NULL);
}

static hb_tensor_t *seqlens(const int64_t *lens, int n) {
    int64_t v[16] = {0}, sz = n + 1;
    for (int i = 0; i < n; i++) v[i + 1] = v[i] + lens[i];
    return hb_tensor_from_data(HB_I64, 1, &sz, v);
}

/* rows [t0, t0 + n) of x along its T axis (dim 1) when its pattern has one, else x itself */
static hb_tensor_t *rows(hb_tensor_t *x, const char *pat, int64_t t0, int64_t n) {
    if (!x) return NULL;
    if (!strstr(pat, "T")) return hb_tensor_ref(x);
    hb_tensor_t *v = hb_narrow(x, 1, t0, n), *c = v ? hb_contiguous(v) : NULL;
    hb_tensor_free(v);
    return c;
}

static void check_packed(const hb_mixer_desc_t *d) {
    int64_t T = 0;
    for (int i = 0; i < PN; i++) T += PLENS[i];
    PACKED_T = T;
    hb_tensor_t *cu = seqlens(PLENS, PN);
    for (int mode = 0; mode < 2; mode++) {
        pk_ctx c = {.g = {.d = d, .mode = (hb_mode_t)mode}, .cu = cu};
        hb_tensor_t *g[HB_MIXER_MAXIN];
        for (int i = 0; i < hb_mixer_nin(d); i++) {
            c.g.all[i] = make_input(&d->in[i], 0);
            if (d->in[i].flags & HB_IN_GRAD) { c.g.grad_index[c.g.ngrad] = i; g[c.g.ngrad++] = c.g.all[i]; }
        }
        double err = gradcheck(f_packed, &c, c.g.ngrad, g);
        ok(err < 1e-6, "%s: float64 gradients through hb_mixer_packed match finite differences (%s mode, documents "
           "{2,0,3,5}; rel err %.2e)", d->name, mode == HB_MODE_CHUNK ? "chunk" : "recurrent", err);
        /* packed == each document alone: outputs and final states */
        hb_tensor_t *ht = NULL, *o = hb_mixer_packed(d, c.g.all, NULL, (hb_mode_t)mode, CHUNK, cu, &ht);
        double e = o && ht ? 0 : INFINITY;
        for (int n = 0, t0 = 0; n < PN && e < INFINITY; t0 += (int)PLENS[n], n++) {
            hb_tensor_t *x[HB_MIXER_MAXIN] = {0}, *hn = NULL;
            for (int i = 0; i < hb_mixer_nin(d); i++) x[i] = rows(c.g.all[i], d->in[i].shape, t0, PLENS[n]);
            hb_tensor_t *on = hb_mixer(d, x, NULL, (hb_mode_t)mode, CHUNK, &hn);
            hb_tensor_t *op = hb_narrow(o, 1, t0, PLENS[n]), *hp = hb_narrow(ht, 0, n, 1);
            double e1 = max_abs_diff(on, op), e2 = max_abs_diff(hn, hp);
            e = fmax(e, fmax(e1, e2));
            hb_tensor_free(on); hb_tensor_free(hn); hb_tensor_free(op); hb_tensor_free(hp);
            for (int i = 0; i < HB_MIXER_MAXIN; i++) hb_tensor_free(x[i]);
        }
        ok(e < 1e-12, "%s: packed == each document alone through the op (%s mode; outputs and the %d final states; "
           "max diff %.1e)", d->name, mode == HB_MODE_CHUNK ? "chunk" : "recurrent", PN, e);
        hb_tensor_free(o); hb_tensor_free(ht);
        for (int i = 0; i < hb_mixer_nin(d); i++) hb_tensor_free(c.g.all[i]);
    }
    PACKED_T = 0;
    hb_tensor_free(cu);
}

static void expect_error(hb_tensor_t *r, const char *want, const char *desc);

/* cu_seqlens errors, and a mixer whose kernels do not take it */
static void check_packed_errors(void) {
    const hb_mixer_desc_t *gla = hb_mixer_find("gla");
    int64_t s5[4] = {1, 5, 2, 4}, s2[4] = {2, 5, 2, 4};
    hb_tensor_t *q = hb_tensor_full(HB_F32, 4, s5, 0.5), *q2 = hb_tensor_full(HB_F32, 4, s2, 0.5);
    hb_tensor_t *in[HB_MIXER_MAXIN] = {q, q, q, q}, *in2[HB_MIXER_MAXIN] = {q2, q2, q2, q2};
    const int64_t ok_l[2] = {2, 3}, end_l[2] = {2, 2}, two[1] = {5};
    hb_tensor_t *good = seqlens(ok_l, 2), *short_ = seqlens(end_l, 2), *one = seqlens(two, 0);
    int64_t v0[3] = {1, 2, 5}, vd[3] = {0, 3, 2}, n3 = 3;
    hb_tensor_t *start1 = hb_tensor_from_data(HB_I64, 1, &n3, v0), *down = hb_tensor_from_data(HB_I64, 1, &n3, vd);
    hb_tensor_t *flt = hb_to_dtype(good, HB_F32), *i32 = hb_to_dtype(good, HB_I32);
    expect_error(hb_mixer_packed(gla, in2, NULL, HB_MODE_CHUNK, 0, good, NULL),
                 "gla: packed sequences (cu_seqlens) need B = 1, the documents back to back in one row; got B = 2",
                 "packed: B must be 1");
    expect_error(hb_mixer_packed(gla, in, NULL, HB_MODE_CHUNK, 0, flt, NULL),
                 "gla: cu_seqlens must be a 1-D int64 or int32 tensor [N+1] of document starts, got float32 [3]",
                 "packed: cu_seqlens must be an integer tensor");
    expect_error(hb_mixer_packed(gla, in, NULL, HB_MODE_CHUNK, 0, one, NULL),
                 "gla: cu_seqlens needs N+1 >= 2 entries (0, the document ends, the total length), got [1]",
                 "packed: at least one document");
    expect_error(hb_mixer_packed(gla, in, NULL, HB_MODE_CHUNK, 0, start1, NULL), "gla: cu_seqlens[0] must be 0, got 1",
                 "packed: cu_seqlens starts at 0");
    expect_error(hb_mixer_packed(gla, in, NULL, HB_MODE_CHUNK, 0, down, NULL),
                 "gla: cu_seqlens must be non-decreasing (cu_seqlens[2] = 2 < cu_seqlens[1] = 3)",
                 "packed: cu_seqlens is non-decreasing");
    expect_error(hb_mixer_packed(gla, in, NULL, HB_MODE_CHUNK, 0, short_, NULL),
                 "gla: cu_seqlens must end at T = 5 (the packed length), got 4", "packed: cu_seqlens ends at T");
    hb_tensor_t *ht = NULL, *o = hb_mixer_packed(gla, in, NULL, HB_MODE_RECURRENT, 0, i32, &ht);
    int64_t want[4] = {2, 2, 4, 4};
    ok(o && ht && ht->ndim == 4 && !memcmp(ht->size, want, sizeof want),
       "packed: an int32 cu_seqlens is accepted; the final states are [N, H, K, V] = [2, 2, 4, 4]");
    hb_tensor_free(o); hb_tensor_free(ht);
    hb_mixer_desc_t plain = *gla;
    plain.packed = 0;
    expect_error(hb_mixer_packed(&plain, in, NULL, HB_MODE_CHUNK, 0, good, NULL),
                 "gla: packed sequences (cu_seqlens) are not supported by this mixer's kernels",
                 "packed: a descriptor without `packed` refuses cu_seqlens");
    o = hb_mixer_packed(&plain, in, NULL, HB_MODE_CHUNK, 0, NULL, NULL);
    ok(o != NULL, "... and runs without it");
    hb_tensor_free(o);
    hb_mixer_desc_t nob = *gla;
    nob.state = "H K V";
    ok(hb_mixer_desc_check(&nob) != 0 && strstr(hb_errmsg(), "needs the batch dimension B"),
       "a packed descriptor whose state has no B is caught (%s)", hb_errmsg());
    hb_tensor_t *all[] = {q, q2, good, short_, one, start1, down, flt, i32};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) hb_tensor_free(all[i]);
}

/* ---- errors ------------------------------------------------------------------------------------------- */
static hb_tensor_t *ones(int n, int64_t a, int64_t b, int64_t c, int64_t e) {
    int64_t s[4] = {a, b, c, e};
    return hb_tensor_full(HB_F32, n, s, 1.0);
}

/* the op fails (NULL) with exactly `want` */
static void expect_error(hb_tensor_t *r, const char *want, const char *desc) {
    int good = !r && !strcmp(hb_errmsg(), want);
    ok(good, "%s", desc);
    if (!good) diag("got %s: '%s', expected '%s'", r ? "a result" : "error", r ? "" : hb_errmsg(), want);
    hb_tensor_free(r);
}

static void check_errors(void) {
    const hb_mixer_desc_t *gla = hb_mixer_find("gla"), *dr = hb_mixer_find("delta_rule"), *ret = hb_mixer_find("retention");
    ok(gla && dr && ret && hb_mixer_find("hgrn") && !hb_mixer_find("nope"), "hb_mixer_find finds the registered mixers only");
    if (!gla || !dr || !ret) return;
    hb_tensor_t *q = ones(4, 1, 4, 2, 8), *k5 = ones(4, 1, 5, 2, 8), *q3 = ones(3, 1, 4, 2, 0);
    hb_tensor_t *in[HB_MIXER_MAXIN] = {q, k5, q, q};
    expect_error(hb_mixer(gla, in, NULL, HB_MODE_CHUNK, 0, NULL), "gla: k has shape [1, 5, 2, 8], expected [1, 4, 2, 8]",
                 "a size bound by an earlier input is checked (T of k)");
    in[1] = q; in[3] = k5;
    expect_error(hb_mixer(gla, in, NULL, HB_MODE_CHUNK, 0, NULL), "gla: g has shape [1, 5, 2, 8], expected [1, 4, 2, 8]",
                 "... by name of the input (g)");
    in[3] = q3;
    expect_error(hb_mixer(gla, in, NULL, HB_MODE_CHUNK, 0, NULL),
                 "gla: g must have 4 dims ([1, 4, 2, 8]), got shape [1, 4, 2]", "a wrong rank names the pattern");
    in[0] = q3;
    expect_error(hb_mixer(gla, in, NULL, HB_MODE_CHUNK, 0, NULL), "gla: q must have 4 dims ([B, T, H, K]), got shape [1, 4, 2]",
                 "... with the dimension names when nothing is bound yet");
    in[0] = q; in[3] = NULL;
    expect_error(hb_mixer(gla, in, NULL, HB_MODE_CHUNK, 0, NULL), "gla: g is missing", "a missing required input is named");
    hb_tensor_t *qd = hb_to_dtype(q, HB_F64);
    in[3] = qd;
    expect_error(hb_mixer(gla, in, NULL, HB_MODE_CHUNK, 0, NULL), "gla: all inputs must share one dtype (float32 vs float64)",
                 "one dtype for all inputs");
    int64_t is[4] = {1, 4, 2, 8};
    hb_tensor_t *qi = hb_tensor_zeros(HB_I64, 4, is);
    in[3] = qi;
    expect_error(hb_mixer(gla, in, NULL, HB_MODE_CHUNK, 0, NULL), "gla: g must be float32 or float64 (got int64)",
                 "integer inputs are refused");

    /* grouped value heads: HV a multiple of H */
    hb_tensor_t *v3 = ones(4, 1, 4, 3, 8), *b3 = ones(3, 1, 4, 3, 0);
    hb_tensor_t *din[HB_MIXER_MAXIN] = {q, q, v3, b3, NULL};
    expect_error(hb_mixer(dr, din, NULL, HB_MODE_CHUNK, 0, NULL),
                 "delta_rule: HV = 3 (from v) is not a multiple of H = 2 (from q)", "divisibility constraint (GVA)");
    hb_tensor_t *v4 = ones(4, 1, 4, 4, 8), *b4 = ones(3, 1, 4, 4, 0);
    din[2] = v4; din[3] = b4;
    hb_tensor_t *o = hb_mixer(dr, din, NULL, HB_MODE_CHUNK, 0, NULL);
    int64_t want[4] = {1, 4, 4, 8};
    ok(o && o->ndim == 4 && !memcmp(o->size, want, sizeof want), "delta_rule: 4 value heads over 2 q/k heads → [1, 4, 4, 8]");
    hb_tensor_free(o);

    /* a constant input (retention's decay) of another dtype is converted; requiring grad is an error */
    int64_t hs = 2;
    hb_tensor_t *lg = hb_tensor_full(HB_F64, 1, &hs, -0.1);
    hb_tensor_t *rin[HB_MIXER_MAXIN] = {q, q, q, lg};
    o = hb_mixer(ret, rin, NULL, HB_MODE_RECURRENT, 0, NULL);
    ok(o != NULL, "retention: a float64 decay with float32 inputs is converted");
    hb_tensor_free(o);
    hb_set_requires_grad(lg, 1);
    expect_error(hb_mixer(ret, rin, NULL, HB_MODE_CHUNK, 0, NULL),
                 "retention: decay is a constant of this mixer (no gradient flows to it) but requires grad; pass it detached",
                 "a constant input that requires grad is refused");

    /* decode step: the state binds first and must be contiguous */
    hb_tensor_t *st3 = ones(3, 1, 2, 3, 0), *q2 = ones(3, 1, 2, 8, 0), *st = ones(4, 1, 2, 8, 8);
    hb_tensor_t *sin[HB_MIXER_MAXIN] = {q2, q2, q2, q2};
    expect_error(hb_mixer_step(gla, st3, sin, NULL), "gla_step: state must have 4 dims ([B, H, K, V]), got shape [1, 2, 3]",
                 "step: a state of the wrong rank");
    hb_tensor_t *v2 = ones(3, 1, 2, 4, 0);
    sin[2] = v2;
    expect_error(hb_mixer_step(gla, st, sin, NULL), "gla_step: v has shape [1, 2, 4], expected [1, 2, 8]",
                 "step: inputs are checked against the state");
    sin[2] = q2;
    hb_tensor_t *stt = hb_transpose(st, 2, 3);
    expect_error(hb_mixer_step(gla, stt, sin, NULL), "gla_step: the state must be contiguous", "step: a strided state");
    hb_tensor_t *qd2 = hb_to_dtype(q2, HB_F64);
    sin[0] = qd2;
    expect_error(hb_mixer_step(gla, st, sin, NULL), "gla_step: q is float64 but the state is float32", "step: dtypes");

    hb_tensor_t *all[] = {q, k5, q3, qd, qi, v3, b3, v4, b4, lg, st3, q2, st, v2, stt, qd2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) hb_tensor_free(all[i]);
}

int main(void) {
    hb_rng_seed(&R, 12);
    int n = 0;
    for (int i = 0; hb_mixer_registry[i]; i++, n++) {
        int rc = hb_mixer_desc_check(hb_mixer_registry[i]);
        ok(rc == 0, "descriptor %s is well formed%s%s", hb_mixer_registry[i]->name, rc ? ": " : "", rc ? hb_errmsg() : "");
    }
    ok(n >= 4, "%d mixers registered", n);
    hb_mixer_desc_t bad = *hb_mixer_registry[0];
    bad.out = "B T Q";
    ok(hb_mixer_desc_check(&bad) != 0 && strstr(hb_errmsg(), "unknown dimension"), "a pattern over an unknown dimension is caught (%s)", hb_errmsg());
    check_errors();
    check_packed_errors();
    for (int i = 0; hb_mixer_registry[i]; i++) {
        check_gradients(hb_mixer_registry[i]);
        check_forms(hb_mixer_registry[i]);
        if (hb_mixer_registry[i]->packed) check_packed(hb_mixer_registry[i]);
        else /* every mixer trains on packed documents: wiring one is `.packed = 1` and a->cu_seqlens, a->N */
            ok(0, "%s: its descriptor does not declare packed sequences (set .packed = 1 and pass a->cu_seqlens, "
               "a->N from its adapters to its kernels; kernels/mixer.h)", hb_mixer_registry[i]->name);
    }
    return tap_done();
}
