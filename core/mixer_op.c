/* mixer_op.c — the generic differentiable token-mixer op (mixer_op.h) over kernel descriptors.
 *
 * One path for every mixer: bind the dimension names of the descriptor's shape patterns from the inputs
 * (checking each input against the sizes bound before it), check dtypes, divisibility and contiguity,
 * fill the argument block of kernels/mixer.h, call the float or double entry point (an explicit switch
 * on the dtype), and record an autograd node whose context, mixer_ctx, names what the backward reads:
 * the mode, chunk length, scalars and sizes, the contiguous inputs, the forward output when the mixer's
 * backward reads it, the buffer the chunked forward saved, and the packed documents' cu_seqlens. Nothing
 * here knows a particular mixer.
 */
#include "mixer_op.h"
#include "autograd.h"
#include "views.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- descriptor helpers ---------------------------------------------------------------------------- */
int hb_mixer_nin(const hb_mixer_desc_t *d) {
    int n = 0;
    while (n < HB_MIXER_MAXIN && d->in[n].name) n++;
    return n;
}
int hb_mixer_nscalar(const hb_mixer_desc_t *d) {
    int n = 0;
    while (n < HB_MIXER_MAXSCALAR && d->scalar[n].name) n++;
    return n;
}

/* The dimension names of d and their sizes as they get bound (-1 = not yet). */
typedef struct {
    const hb_mixer_desc_t *d;
    const char *op;                 /* "gla" or "gla_step", the prefix of every message */
    int ndim;
    char name[HB_MIXER_MAXDIM][8];
    int64_t size[HB_MIXER_MAXDIM];
    const char *by[HB_MIXER_MAXDIM]; /* the argument that bound each size */
} dims_t;

/* Split d->dims into names; -1 with a message if there are too many or one is too long. */
static int dims_init(dims_t *s, const hb_mixer_desc_t *d, const char *op) {
    memset(s, 0, sizeof *s);
    s->d = d;
    s->op = op;
    for (const char *p = d->dims ? d->dims : ""; *p;) {
        while (*p == ' ') p++;
        size_t len = strcspn(p, " ");
        if (!len) break;
        if (s->ndim == HB_MIXER_MAXDIM || len >= sizeof s->name[0]) {
            hb_seterr("%s: descriptor dims \"%s\" has too many or too long names", op, d->dims);
            return -1;
        }
        memcpy(s->name[s->ndim], p, len);
        s->size[s->ndim++] = -1;
        p += len;
    }
    return 0;
}

/* The dim indices of pattern pat into idx (T dropped when step); returns their count, or -1 with a
 * message when a name is not one of d's dims. */
static int pattern(const dims_t *s, const char *pat, int step, int *idx) {
    int n = 0;
    for (const char *p = pat ? pat : ""; *p;) {
        while (*p == ' ') p++;
        size_t len = strcspn(p, " ");
        if (!len) break;
        int j = 0;
        while (j < s->ndim && !(strlen(s->name[j]) == len && !strncmp(s->name[j], p, len))) j++;
        if (j == s->ndim || n == HB_MAXDIM) {
            hb_seterr("%s: descriptor pattern \"%s\" names an unknown dimension (dims \"%s\")", s->op, pat, s->d->dims);
            return -1;
        }
        if (!(step && !strcmp(s->name[j], "T"))) idx[n++] = j;
        p += len;
    }
    return n;
}

static int dim_index(const dims_t *s, const char *name) {
    for (int j = 0; j < s->ndim; j++)
        if (name && !strcmp(s->name[j], name)) return j;
    return -1;
}

/* "[1, 4, H, 8]": bound sizes as numbers, the others by name */
static char *expected_str(const dims_t *s, const int *idx, int n, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && k < cap; i++) {
        int j = idx[i];
        if (s->size[j] >= 0) k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)s->size[j]);
        else k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", s->name[j]);
    }
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* Check t (argument `arg`) against pattern pat and bind its unbound names. */
static int bind(dims_t *s, const char *arg, const hb_tensor_t *t, const char *pat, int step) {
    int idx[HB_MAXDIM];
    int n = pattern(s, pat, step, idx);
    if (n < 0) return -1;
    char have[96], want[96];
    if (t->ndim != n) {
        hb_seterr("%s: %s must have %d dims (%s), got shape %s", s->op, arg, n, expected_str(s, idx, n, want, sizeof want),
                  hb_shape_str(t, have, sizeof have));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int64_t want_i = s->size[idx[i]];
        if (want_i >= 0 && want_i != t->size[i]) {
            hb_seterr("%s: %s has shape %s, expected %s", s->op, arg, hb_shape_str(t, have, sizeof have),
                      expected_str(s, idx, n, want, sizeof want));
            return -1;
        }
    }
    for (int i = 0; i < n; i++) /* a name repeated within one pattern must match itself too */
        if (s->size[idx[i]] < 0) { s->size[idx[i]] = t->size[i]; s->by[idx[i]] = arg; }
        else if (s->size[idx[i]] != t->size[i]) {
            hb_seterr("%s: %s has shape %s, expected %s", s->op, arg, hb_shape_str(t, have, sizeof have),
                      expected_str(s, idx, n, want, sizeof want));
            return -1;
        }
    return 0;
}

/* The descriptor's divisibility constraints over the bound sizes. */
static int check_multiples(const dims_t *s) {
    for (int c = 0; c < 2 && s->d->multiple[c].dim; c++) {
        int a = dim_index(s, s->d->multiple[c].dim), b = dim_index(s, s->d->multiple[c].of);
        if (a < 0 || b < 0 || s->size[a] < 0 || s->size[b] < 0) continue;
        if (s->size[b] < 1 || s->size[a] % s->size[b]) {
            hb_seterr("%s: %s = %lld (from %s) is not a multiple of %s = %lld (from %s)", s->op, s->name[a],
                      (long long)s->size[a], s->by[a], s->name[b], (long long)s->size[b], s->by[b]);
            return -1;
        }
    }
    return 0;
}

/* A new tensor of pattern pat over the bound sizes. */
static hb_tensor_t *alloc_pattern(const dims_t *s, hb_dtype_t dt, const char *pat, int step) {
    int idx[HB_MAXDIM];
    int n = pattern(s, pat, step, idx);
    if (n < 0) return NULL;
    int64_t size[HB_MAXDIM];
    for (int i = 0; i < n; i++) size[i] = s->size[idx[i]];
    return hb_tensor_empty(dt, n, size);
}

/* The float and double entry points of d for dtype dt. */
static const hb_mixer_kernels_t *kernels_for(const hb_mixer_desc_t *d, hb_dtype_t dt) {
    switch (dt) {
    case HB_F32: return &d->f32;
    case HB_F64: return &d->f64;
    default: return NULL;
    }
}

/* Check every input: presence, float dtype, one compute dtype (that of `first`, or of each other
 * non-cast input), shapes. dtype_ref names what the dtype is compared with ("the state" or NULL). */
static int check_inputs(dims_t *s, hb_tensor_t *const *in, int step, hb_dtype_t dt, const char *dtype_ref) {
    const hb_mixer_desc_t *d = s->d;
    int nin = hb_mixer_nin(d);
    for (int i = 0; i < nin; i++) {
        const hb_mixer_input_t *x = &d->in[i];
        hb_tensor_t *t = in[i];
        if (!t) {
            if (x->flags & HB_IN_OPTIONAL) continue;
            hb_seterr("%s: %s is missing", s->op, x->name);
            return -1;
        }
        if (!hb_dtype_is_float(t->dtype)) {
            hb_seterr("%s: %s must be float32 or float64 (got %s)", s->op, x->name, hb_dtype_name(t->dtype));
            return -1;
        }
        if (!(x->flags & HB_IN_CAST) && t->dtype != dt) {
            if (dtype_ref)
                hb_seterr("%s: %s is %s but %s is %s", s->op, x->name, hb_dtype_name(t->dtype), dtype_ref, hb_dtype_name(dt));
            else
                hb_seterr("%s: all inputs must share one dtype (%s vs %s)", s->op, hb_dtype_name(dt), hb_dtype_name(t->dtype));
            return -1;
        }
        if (!(x->flags & HB_IN_GRAD) && t->requires_grad && hb_grad_enabled()) {
            hb_seterr("%s: %s is a constant of this mixer (no gradient flows to it) but requires grad; pass it detached",
                      s->op, x->name);
            return -1;
        }
        if (bind(s, x->name, t, x->shape, step)) return -1;
    }
    return check_multiples(s);
}

/* Contiguous copies of the inputs in the compute dtype (NULL stays NULL); -1 after freeing on failure. */
static int contiguous_inputs(const hb_mixer_desc_t *d, hb_tensor_t *const *in, hb_dtype_t dt, hb_tensor_t **c) {
    int nin = hb_mixer_nin(d);
    for (int i = 0; i < HB_MIXER_MAXIN; i++) c[i] = NULL;
    for (int i = 0; i < nin; i++) {
        if (!in[i]) continue;
        hb_tensor_t *t = in[i]->dtype == dt ? hb_tensor_ref(in[i]) : hb_to_dtype(in[i], dt);
        c[i] = t ? hb_contiguous(t) : NULL;
        hb_tensor_free(t);
        if (!c[i]) {
            for (int j = 0; j < i; j++) hb_tensor_free(c[j]);
            return -1;
        }
    }
    return 0;
}

static void free_inputs(hb_tensor_t **c) {
    for (int i = 0; i < HB_MIXER_MAXIN; i++) hb_tensor_free(c[i]);
}

static void *data_or_null(hb_tensor_t *t) { return t ? hb_data(t) : NULL; }

/* Fill the scalars (defaults for NULL/NAN), sizes and chunk of an argument block. */
static void fill_params(hb_mixer_args_t *a, const dims_t *s, const double *scalar, int64_t chunk) {
    const hb_mixer_desc_t *d = s->d;
    for (int i = 0; i < hb_mixer_nscalar(d); i++) {
        double v = scalar ? scalar[i] : NAN;
        if (isnan(v)) {
            int j = dim_index(s, d->scalar[i].rsqrt_of);
            v = j >= 0 ? 1.0 / sqrt((double)s->size[j]) : d->scalar[i].def;
        }
        a->scalar[i] = v;
    }
    for (int j = 0; j < s->ndim; j++) a->dim[j] = s->size[j] < 0 ? 1 : s->size[j];
    a->chunk = chunk > 0 ? chunk : d->chunk;
}

static int kernel_failed(const char *op) {
    hb_seterr("%s: kernel failed (out of memory)", op);
    return -1;
}

/* ---- packed sequences ---------------------------------------------------------------------------------- */
hb_tensor_t *hb_seqlens_check(hb_tensor_t *cu, int64_t B, int64_t T, const char *op, int64_t *N) {
    char sh[64];
    if (!cu || (cu->dtype != HB_I64 && cu->dtype != HB_I32) || cu->ndim != 1) {
        if (!cu) hb_seterr("%s: cu_seqlens is missing", op);
        else hb_seterr("%s: cu_seqlens must be a 1-D int64 or int32 tensor [N+1] of document starts, got %s %s", op,
                       hb_dtype_name(cu->dtype), hb_shape_str(cu, sh, sizeof sh));
        return NULL;
    }
    if (cu->size[0] < 2) {
        hb_seterr("%s: cu_seqlens needs N+1 >= 2 entries (0, the document ends, the total length), got %s", op,
                  hb_shape_str(cu, sh, sizeof sh));
        return NULL;
    }
    if (B != 1) {
        hb_seterr("%s: packed sequences (cu_seqlens) need B = 1, the documents back to back in one row; got B = %lld",
                  op, (long long)B);
        return NULL;
    }
    hb_tensor_t *c = cu->dtype == HB_I64 ? hb_contiguous(cu) : hb_to_dtype(cu, HB_I64);
    hb_tensor_t *cc = c ? hb_contiguous(c) : NULL;
    hb_tensor_free(c);
    if (!cc) return NULL;
    const int64_t *v = hb_data(cc), n = cc->size[0] - 1;
    const char *bad = NULL;
    char msg[160];
    if (v[0] != 0) {
        snprintf(msg, sizeof msg, "cu_seqlens[0] must be 0, got %lld", (long long)v[0]);
        bad = msg;
    }
    for (int64_t i = 1; !bad && i <= n; i++)
        if (v[i] < v[i - 1]) {
            snprintf(msg, sizeof msg, "cu_seqlens must be non-decreasing (cu_seqlens[%lld] = %lld < cu_seqlens[%lld] = %lld)",
                     (long long)i, (long long)v[i], (long long)(i - 1), (long long)v[i - 1]);
            bad = msg;
        }
    if (!bad && v[n] != T) {
        snprintf(msg, sizeof msg, "cu_seqlens must end at T = %lld (the packed length), got %lld", (long long)T,
                 (long long)v[n]);
        bad = msg;
    }
    if (bad) {
        hb_seterr("%s: %s", op, bad);
        hb_tensor_free(cc);
        return NULL;
    }
    *N = n;
    return cc;
}

/* the node watches the context's inputs, output and cu_seqlens for in-place changes */
_Static_assert(HB_MIXER_MAXIN + 2 <= HB_NODE_MAXWATCH, "mixer_ctx keeps more tensors than a node can watch");

/* ---- the autograd node ------------------------------------------------------------------------------ */
typedef struct {
    const hb_mixer_desc_t *desc;
    hb_mode_t mode;
    hb_mixer_args_t args;              /* scalars, sizes, chunk and N of the forward */
    hb_tensor_t *in[HB_MIXER_MAXIN];   /* contiguous inputs, descriptor order (NULL: absent or HB_IN_UNSAVED) */
    hb_tensor_t *out;                  /* detached forward output, when the backward reads it */
    hb_tensor_t *saved;                /* what the chunked forward saved for its backward, or NULL */
    hb_tensor_t *cu;                   /* contiguous int64 cu_seqlens of a packed forward, or NULL */
    int node_in[HB_MIXER_MAXIN];       /* descriptor index of the node's j-th input */
} mixer_ctx;

static void mixer_ctx_release(void *p) {
    mixer_ctx *c = p;
    free_inputs(c->in);
    hb_tensor_free(c->out);
    hb_tensor_free(c->saved);
    hb_tensor_free(c->cu);
}

static int bw_mixer(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    const mixer_ctx *c = n->ctx;
    const hb_mixer_desc_t *d = c->desc;
    const hb_mixer_kernels_t *k = kernels_for(d, g->dtype);
    hb_tensor_t *gc = hb_contiguous(g), *din[HB_MIXER_MAXIN] = {0};
    int ok = gc != NULL;
    for (int j = 0; ok && j < n->nin; j++) {
        hb_tensor_t *x = n->in[j];
        din[c->node_in[j]] = hb_tensor_zeros(g->dtype, x->ndim, x->size);
        ok = din[c->node_in[j]] != NULL;
    }
    if (!ok) { hb_tensor_free(gc); free_inputs(din); return -1; }
    hb_mixer_args_t a = c->args;
    for (int i = 0; i < HB_MIXER_MAXIN; i++) {
        a.in[i] = data_or_null(c->in[i]);
        a.din[i] = data_or_null(din[i]);
    }
    a.dout = hb_data(gc);
    a.out = data_or_null(c->out);
    a.saved = data_or_null(c->saved);
    a.cu_seqlens = data_or_null(c->cu);
    int rc = c->mode == HB_MODE_CHUNK ? k->bwd_chunk(&a) : k->bwd_recurrent(&a);
    hb_tensor_free(gc);
    if (rc) {
        free_inputs(din);
        char op[64];
        snprintf(op, sizeof op, "%s backward", d->name);
        return kernel_failed(op);
    }
    for (int j = 0; j < n->nin; j++) {
        gin[j] = din[c->node_in[j]];
        din[c->node_in[j]] = NULL;
    }
    return 0;
}

/* Attach the node: inputs with gradients, and a context holding what the backward reads. */
static void record(hb_tensor_t *o, const hb_mixer_desc_t *d, hb_tensor_t *const *in, hb_tensor_t **c, hb_mode_t mode,
                   const hb_mixer_args_t *a, hb_tensor_t *saved, hb_tensor_t *cu) {
    hb_tensor_t *gin[HB_MIXER_MAXIN];
    int node_in[HB_MIXER_MAXIN], nin = 0;
    for (int i = 0; i < hb_mixer_nin(d); i++)
        if (in[i] && (d->in[i].flags & HB_IN_GRAD)) { node_in[nin] = i; gin[nin++] = in[i]; }
    hb_node_t *n = hb_node_attach(o, d->name, bw_mixer, nin, gin, sizeof(mixer_ctx));
    if (!n) return;
    mixer_ctx *x = n->ctx;
    x->desc = d;
    x->mode = mode;
    x->args = *a;
    memcpy(x->node_in, node_in, sizeof node_in);
    for (int i = 0; i < HB_MIXER_MAXIN; i++)
        x->in[i] = c[i] && !(d->in[i].flags & HB_IN_UNSAVED) ? hb_tensor_ref(c[i]) : NULL;
    x->saved = hb_tensor_ref(saved);
    x->cu = cu ? hb_tensor_ref(cu) : NULL;
    n->ctx_release = mixer_ctx_release;
    n->reads_in = 0;   /* the backward reads the context's copies: watch those for in-place changes */
    for (int i = 0; i < HB_MIXER_MAXIN; i++) hb_node_watch(n, x->in[i]);
    hb_node_watch(n, x->cu);
    if (d->saves_output) {
        x->out = hb_detach(o);
        if (!x->out) { hb_node_lost(o); return; }
        hb_node_watch(n, x->out);
    }
}

/* ---- the op ------------------------------------------------------------------------------------------ */
hb_tensor_t *hb_mixer(const hb_mixer_desc_t *d, hb_tensor_t *const *in, const double *scalar, hb_mode_t mode,
                      int64_t chunk, hb_tensor_t **ht) {
    return hb_mixer_packed(d, in, scalar, mode, chunk, NULL, ht);
}

hb_tensor_t *hb_mixer_packed(const hb_mixer_desc_t *d, hb_tensor_t *const *in, const double *scalar, hb_mode_t mode,
                             int64_t chunk, hb_tensor_t *cu_seqlens, hb_tensor_t **ht) {
    dims_t s;
    if (ht) *ht = NULL;
    if (dims_init(&s, d, d->name)) return NULL;
    if (mode != HB_MODE_CHUNK && mode != HB_MODE_RECURRENT) { hb_seterr("%s: unknown mode %d", d->name, (int)mode); return NULL; }
    int nin = hb_mixer_nin(d), first = 0;
    while (first < nin && !in[first]) first++;
    if (first == nin || !hb_dtype_is_float(in[first]->dtype)) {
        if (first < nin) hb_seterr("%s: %s must be float32 or float64 (got %s)", d->name, d->in[first].name, hb_dtype_name(in[first]->dtype));
        else hb_seterr("%s: %s is missing", d->name, nin ? d->in[0].name : "an input");
        return NULL;
    }
    hb_dtype_t dt = in[first]->dtype;
    if (check_inputs(&s, in, 0, dt, NULL)) return NULL;
    hb_mixer_args_t a = {0};
    fill_params(&a, &s, scalar, chunk);
    /* packed documents: checked against the bound B and T; the final states are (N, ...) */
    hb_tensor_t *cu = NULL;
    dims_t sh = s; /* the sizes of the state: B → N when packed */
    if (cu_seqlens) {
        if (!d->packed) {
            hb_seterr("%s: packed sequences (cu_seqlens) are not supported by this mixer's kernels", d->name);
            return NULL;
        }
        int iB = dim_index(&s, "B"), iT = dim_index(&s, "T");
        cu = hb_seqlens_check(cu_seqlens, iB >= 0 ? a.dim[iB] : 1, iT >= 0 ? a.dim[iT] : 0, d->name, &a.N);
        if (!cu) return NULL;
        a.cu_seqlens = hb_data(cu);
        if (iB >= 0) sh.size[iB] = a.N;
    }
    int need = hb_needs_grad(nin, (hb_tensor_t **)in);
    hb_tensor_t *c[HB_MIXER_MAXIN];
    if (contiguous_inputs(d, in, dt, c)) { hb_tensor_free(cu); return NULL; }
    hb_tensor_t *o = alloc_pattern(&s, dt, d->out, 0), *h = ht ? alloc_pattern(&sh, dt, d->state, 0) : NULL, *saved = NULL;
    if (o && (h || !ht) && need && mode == HB_MODE_CHUNK && d->saved_numel) {
        int64_t m = d->saved_numel(&a);
        saved = hb_tensor_empty(dt, 1, &m);
    }
    int failed = !o || (ht && !h) || (need && mode == HB_MODE_CHUNK && d->saved_numel && !saved);
    if (!failed) {
        const hb_mixer_kernels_t *k = kernels_for(d, dt);
        a.o = hb_data(o);
        a.ht = data_or_null(h);
        a.saved = data_or_null(saved);
        for (int i = 0; i < HB_MIXER_MAXIN; i++) a.in[i] = data_or_null(c[i]);
        if ((mode == HB_MODE_CHUNK ? k->fwd_chunk(&a) : k->fwd_recurrent(&a)) != 0) {
            kernel_failed(d->name);
            failed = 1;
        }
    }
    if (failed) {
        free_inputs(c); hb_tensor_free(o); hb_tensor_free(h); hb_tensor_free(saved); hb_tensor_free(cu);
        return NULL;
    }
    a.o = a.ht = a.saved = NULL; /* the node keeps sizes, scalars and N only; pointers are refilled */
    a.cu_seqlens = NULL;
    for (int i = 0; i < HB_MIXER_MAXIN; i++) a.in[i] = NULL;
    if (need) record(o, d, in, c, mode, &a, saved, cu);
    free_inputs(c);
    hb_tensor_free(saved);
    hb_tensor_free(cu);
    if (ht) *ht = h;
    return o;
}

hb_tensor_t *hb_mixer_step(const hb_mixer_desc_t *d, hb_tensor_t *state, hb_tensor_t *const *in, const double *scalar) {
    char op[64];
    snprintf(op, sizeof op, "%s_step", d->name);
    dims_t s;
    if (dims_init(&s, d, op)) return NULL;
    if (!state) { hb_seterr("%s: state is missing", op); return NULL; }
    if (!hb_dtype_is_float(state->dtype)) {
        hb_seterr("%s: state must be float32 or float64 (got %s)", op, hb_dtype_name(state->dtype));
        return NULL;
    }
    if (bind(&s, "state", state, d->state, 1) || check_inputs(&s, in, 1, state->dtype, "the state")) return NULL;
    if (!hb_is_contiguous(state)) { hb_seterr("%s: the state must be contiguous", op); return NULL; }
    hb_mixer_args_t a = {0};
    fill_params(&a, &s, scalar, 0);
    hb_tensor_t *c[HB_MIXER_MAXIN];
    if (contiguous_inputs(d, in, state->dtype, c)) return NULL;
    hb_tensor_t *o = alloc_pattern(&s, state->dtype, d->out, 1);
    if (o) {
        a.o = hb_data(o);
        a.state = hb_data(state);
        hb_tensor_bump_version(state);
        for (int i = 0; i < HB_MIXER_MAXIN; i++) a.in[i] = data_or_null(c[i]);
        if (kernels_for(d, state->dtype)->step(&a)) {
            hb_tensor_free(o);
            o = NULL;
            kernel_failed(op);
        }
    }
    free_inputs(c);
    return o;
}

/* ---- descriptor check ---------------------------------------------------------------------------------- */
int hb_mixer_desc_check(const hb_mixer_desc_t *d) {
    dims_t s;
    const char *op = d->name ? d->name : "(unnamed mixer)";
    if (!d->name || dims_init(&s, d, op)) { if (!d->name) hb_seterr("mixer descriptor without a name"); return -1; }
    if (dim_index(&s, "T") < 0) { hb_seterr("%s: dims \"%s\" lack the sequence dimension T", op, d->dims); return -1; }
    int idx[HB_MAXDIM], bound[HB_MIXER_MAXDIM] = {0}, nin = hb_mixer_nin(d);
    if (!nin) { hb_seterr("%s: no inputs", op); return -1; }
    for (int i = 0; i < nin; i++) {
        int n = pattern(&s, d->in[i].shape, 0, idx);
        if (n < 0) return -1;
        for (int j = 0; j < n && !(d->in[i].flags & HB_IN_OPTIONAL); j++) bound[idx[j]] = 1;
        for (int k = 0; k < i; k++)
            if (!strcmp(d->in[k].name, d->in[i].name)) { hb_seterr("%s: input '%s' listed twice", op, d->in[i].name); return -1; }
    }
    const char *pats[2] = {d->out, d->state};
    for (int p = 0; p < 2; p++) {
        int n = pattern(&s, pats[p], 0, idx);
        if (n <= 0) { if (!n) hb_seterr("%s: empty %s pattern", op, p ? "state" : "output"); return -1; }
        for (int j = 0; j < n; j++)
            if (!bound[idx[j]]) {
                hb_seterr("%s: %s dimension %s is not given by any required input", op, p ? "state" : "output", s.name[idx[j]]);
                return -1;
            }
    }
    for (int i = 0; i < hb_mixer_nscalar(d); i++)
        if (d->scalar[i].rsqrt_of && dim_index(&s, d->scalar[i].rsqrt_of) < 0) {
            hb_seterr("%s: scalar %s defaults from unknown dimension %s", op, d->scalar[i].name, d->scalar[i].rsqrt_of);
            return -1;
        }
    for (int c = 0; c < 2 && d->multiple[c].dim; c++)
        if (dim_index(&s, d->multiple[c].dim) < 0 || dim_index(&s, d->multiple[c].of) < 0) {
            hb_seterr("%s: constraint %s multiple of %s names an unknown dimension", op, d->multiple[c].dim, d->multiple[c].of);
            return -1;
        }
    if (d->packed) { /* cu_seqlens binds to B and T, and the final states are (N, ...) */
        int n = pattern(&s, d->state, 0, idx), has_b = 0;
        for (int j = 0; j < n; j++) has_b |= !strcmp(s.name[idx[j]], "B");
        if (dim_index(&s, "B") < 0 || !has_b) {
            hb_seterr("%s: a packed mixer needs the batch dimension B in its dims and its state pattern", op);
            return -1;
        }
    }
    const hb_mixer_kernels_t *ks[2] = {&d->f32, &d->f64};
    for (int t = 0; t < 2; t++)
        if (!ks[t]->fwd_chunk || !ks[t]->bwd_chunk || !ks[t]->fwd_recurrent || !ks[t]->bwd_recurrent || !ks[t]->step) {
            hb_seterr("%s: a %s entry point is missing", op, t ? "float64" : "float32");
            return -1;
        }
    return 0;
}
