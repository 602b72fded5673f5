/* autograd.c — the tape: nodes, grad mode, and the backward engine.
 *
 * Built on tensor.h alone (no op of ops.c): gradients are accumulated with the raw hb_add_, so the
 * engine sits below every differentiable op (docs/architecture.md, "Who includes whom").
 *
 * hb_backward does an iterative depth-first search from the root to order every tensor that has a
 * grad_fn (post-order = inputs before outputs), seeds root->bgrad, then walks the order backwards:
 * each tensor's accumulated bgrad is handed to its node, and the returned input gradients are added to
 * the inputs' bgrad (non-leaves) or grad (leaves that require grad). A per-call mark distinguishes
 * visited tensors without a hash set.
 */
#include "autograd.h"
#include "../kernels/alloc.h"
#include "../kernels/parallel.h"
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local int grad_disabled = 0;

/* Backward profile (HYBLUA_PROFILE=1): wall seconds and calls per node name (plus the gradient
 * accumulation), printed to stderr at exit, largest first — to see which backward ops stop scaling
 * with threads (docs/performance.md, "Threads"). Names are the ops' string literals; compared by
 * content so that two copies of a literal share a row. */
#define PROF_MAX 160
static struct { const char *name; double s, reg, sim; int64_t n; } prof[PROF_MAX];
static int prof_n = 0, prof_on = -1;
typedef struct { double t, reg, sim; } prof_mark_t;
static prof_mark_t prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    hb_pool_stats_t st;
    hb_pool_stats(&st);
    return (prof_mark_t){(double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec, st.region_s, st.sim_s};
}
static void prof_print(void) {
    double total = 0;
    for (int i = 0; i < prof_n; i++) total += prof[i].s;
    for (int i = 1; i < prof_n; i++) /* insertion sort, largest first */
        for (int j = i; j > 0 && prof[j].s > prof[j - 1].s; j--) {
            __typeof__(prof[0]) t = prof[j]; prof[j] = prof[j - 1]; prof[j - 1] = t;
        }
    fprintf(stderr, "hb-profile backward: %.4f s in %d node kinds (wall, in pool regions, outside them;"
                    " with HYBLUA_POOL_SIM=1 also the regions' simulated time)\n", total, prof_n);
    for (int i = 0; i < prof_n; i++)
        fprintf(stderr, "hb-profile %-28s %9.4f s %5.1f%% %8lld calls  region %8.4f  serial %8.4f  sim %8.4f\n",
                prof[i].name, prof[i].s, total > 0 ? 100.0 * prof[i].s / total : 0.0, (long long)prof[i].n,
                prof[i].reg, prof[i].s - prof[i].reg, prof[i].sim);
}
static int prof_enabled(void) {
    if (prof_on < 0) {
        const char *e = getenv("HYBLUA_PROFILE");
        prof_on = e && *e && strcmp(e, "0") != 0;
        if (prof_on) atexit(prof_print);
    }
    return prof_on;
}
static void prof_add(const char *name, prof_mark_t a, prof_mark_t b) {
    int i = 0;
    while (i < prof_n && prof[i].name != name && strcmp(prof[i].name, name) != 0) i++;
    if (i == prof_n) {
        if (prof_n == PROF_MAX) return;
        prof[prof_n++].name = name;
    }
    prof[i].s += b.t - a.t;
    prof[i].reg += b.reg - a.reg;
    prof[i].sim += b.sim - a.sim;
    prof[i].n++;
}
int hb_grad_enabled(void) { return !grad_disabled; }
int hb_grad_set(int enabled) {
    int prev = !grad_disabled;
    grad_disabled = !enabled;
    return prev;
}

int hb_needs_grad(int n, hb_tensor_t **in) {
    if (grad_disabled) return 0;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad) return 1;
    return 0;
}

/* Out of memory for a node: the output gets this shared node instead, so that the forward result is
 * still usable but a backward through it fails with a clear message rather than silently missing
 * gradients. It holds nothing and is never freed. */
static int bw_lost(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    (void)n; (void)g; (void)gin;
    hb_seterr("out of memory recording the autograd graph during the forward pass (its gradient is lost)");
    return -1;
}
static hb_node_t lost_node = {.refcount = 1, .name = "out-of-memory", .backward = bw_lost};

/* Make n (an owned reference, or NULL) t's node, dropping the one it had. */
static void set_grad_fn(hb_tensor_t *t, hb_node_t *n) {
    hb_node_t *old = t->grad_fn;
    t->grad_fn = n;
    t->grad_fn_release = n ? hb_node_free : NULL;
    if (old) hb_node_free(old);
}

void hb_node_lost(hb_tensor_t *out) {
    set_grad_fn(out, &lost_node);
    out->requires_grad = 1;
}

void hb_node_move(hb_tensor_t *dst, hb_tensor_t *src) {
    hb_node_t *n = src->grad_fn;
    src->grad_fn = NULL;
    src->grad_fn_release = NULL;
    set_grad_fn(dst, n);
    dst->requires_grad = n != NULL;
}

/* the context lives right after the node, in the same block, at an offset aligned for any type */
#define CTX_OFFSET ((sizeof(hb_node_t) + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) * _Alignof(max_align_t))

hb_node_t *hb_node_attach(hb_tensor_t *out, const char *name, hb_backward_fn bw, int nin, hb_tensor_t **in,
                          size_t ctx_size) {
    if (!out || !hb_needs_grad(nin, in)) return NULL;
    hb_node_t *n = hb_calloc(1, CTX_OFFSET + ctx_size);
    if (!n) {
        hb_node_lost(out);
        return NULL;
    }
    n->ctx = ctx_size ? (char *)n + CTX_OFFSET : NULL;
    n->refcount = 1;
    n->name = name;
    n->backward = bw;
    n->nin = nin;
    for (int i = 0; i < nin; i++) {
        n->in[i] = hb_tensor_ref(in[i]);
        if (in[i]) n->in_version[i] = hb_tensor_version(in[i]);
    }
    n->reads_in = (1u << nin) - 1;
    set_grad_fn(out, n);
    out->requires_grad = 1;
    return n;
}

void hb_node_save(hb_node_t *n, int i, hb_tensor_t *t) {
    hb_tensor_free(n->saved[i]);
    n->saved[i] = hb_tensor_ref(t);
    n->saved_version[i] = t ? hb_tensor_version(t) : 0;
    n->saved_set |= 1u << i;
}

int hb_node_save_output(hb_node_t *n, int i, hb_tensor_t *out) {
    hb_tensor_t *alias = hb_detach(out);
    if (!alias) { hb_node_lost(out); return -1; }
    hb_node_save(n, i, alias);
    hb_tensor_free(alias);
    return 0;
}

int hb_node_watch(hb_node_t *n, const hb_tensor_t *t) {
    if (!t) return 0;
    if (n->nwatch == HB_NODE_MAXWATCH) {
        hb_seterr("%s: more than %d tensors to watch for in-place changes", n->name, HB_NODE_MAXWATCH);
        return -1;
    }
    n->watch[n->nwatch] = t;
    n->watch_version[n->nwatch++] = hb_tensor_version(t);
    return 0;
}

/* 0 if every tensor n's backward reads still has the version it had when recorded, else -1 with a
 * message naming the op, which tensor, and both versions. */
static int modified(const hb_node_t *n, int input, const hb_tensor_t *t, uint64_t v) {
    char b[64], what[32] = "a saved tensor";
    if (input) snprintf(what, sizeof what, "its input %d", input);
    hb_seterr("%s: a tensor needed for backward was modified in place (%s, of shape %s, is at version %llu; "
              "the forward saw version %llu): change a clone() instead, or run the forward again after the change",
              n->name, what, hb_shape_str(t, b, sizeof b), (unsigned long long)hb_tensor_version(t),
              (unsigned long long)v);
    return -1;
}
static int check_versions(const hb_node_t *n) {
    for (int i = 0; i < n->nin; i++)
        if ((n->reads_in >> i & 1) && n->in[i] && hb_tensor_version(n->in[i]) != n->in_version[i])
            return modified(n, i + 1, n->in[i], n->in_version[i]);
    for (int i = 0; i < HB_NODE_MAXSAVED; i++) {
        if (!n->saved[i]) continue;
        if (!(n->saved_set >> i & 1)) {
            hb_seterr("%s: saved tensor %d was not recorded with hb_node_save (an internal error)", n->name, i + 1);
            return -1;
        }
        if (hb_tensor_version(n->saved[i]) != n->saved_version[i])
            return modified(n, 0, n->saved[i], n->saved_version[i]);
    }
    for (int i = 0; i < n->nwatch; i++)
        if (hb_tensor_version(n->watch[i]) != n->watch_version[i])
            return modified(n, 0, n->watch[i], n->watch_version[i]);
    return 0;
}

void hb_node_free(hb_node_t *n) {
    if (!n || n == &lost_node || --n->refcount > 0) return;
    for (int i = 0; i < n->nin; i++) hb_tensor_free(n->in[i]);
    for (int i = 0; i < HB_NODE_MAXSAVED; i++) hb_tensor_free(n->saved[i]);
    if (n->ctx_release) n->ctx_release(n->ctx);
    free(n);
}

int hb_set_requires_grad(hb_tensor_t *t, int on) {
    if (on && !hb_dtype_is_float(t->dtype)) {
        hb_seterr("requires_grad: only float tensors can require grad (got %s)", hb_dtype_name(t->dtype));
        return -1;
    }
    if (!on && t->grad_fn) {
        hb_seterr("requires_grad(false): tensor is not a leaf (it was produced by '%s'); use detach()",
                  t->grad_fn->name);
        return -1;
    }
    t->requires_grad = on;
    return 0;
}

int hb_accumulate(hb_tensor_t **acc, hb_tensor_t *g) {
    if (!*acc) {
        /* take g itself when nobody else can see its memory (the common case: a fresh gradient);
           otherwise own a contiguous private copy so later in-place adds never touch shared data */
        if (g->refcount == 1 && g->storage->refcount == 1 && !g->storage->external && hb_is_contiguous(g) &&
            !g->grad_fn && g->offset == 0) {
            *acc = hb_tensor_ref(g);
            return 0;
        }
        hb_tensor_t *c = hb_tensor_empty(g->dtype, g->ndim, g->size);
        if (!c || hb_copy_(c, g)) { hb_tensor_free(c); return -1; }
        *acc = c;
        return 0;
    }
    if (!hb_same_shape(*acc, g)) {
        char a[64], b[64];
        hb_seterr("gradient shape %s does not match accumulated %s", hb_shape_str(g, a, sizeof a),
                  hb_shape_str(*acc, b, sizeof b));
        return -1;
    }
    return hb_add_(*acc, g, 1.0);
}

static uint64_t mark_counter = 0;

typedef struct {
    hb_tensor_t **v;
    int64_t n, cap;
} vec_t;
static int vec_push(vec_t *a, hb_tensor_t *t) {
    if (a->n == a->cap) {
        int64_t c = a->cap ? a->cap * 2 : 256;
        hb_tensor_t **nv = hb_realloc(a->v, (size_t)c * sizeof *nv);
        if (!nv) { hb_seterr("backward: out of memory"); return -1; }
        a->v = nv;
        a->cap = c;
    }
    a->v[a->n++] = t;
    return 0;
}

int hb_backward(hb_tensor_t *root, hb_tensor_t *gout, int retain_graph) {
    if (root->graph_released && !root->grad_fn) {
        hb_seterr("backward: the graph of this tensor was released by an earlier backward "
                  "(pass retain_graph = true to the first backward to run it twice)");
        return -1;
    }
    if (!root->requires_grad) {
        hb_seterr("backward: tensor does not require grad (no parameter in its history requires grad)");
        return -1;
    }
    if (!gout && hb_numel(root) != 1) {
        char b[64];
        hb_seterr("backward: implicit gradient only for single-element tensors (got %s); pass a gradient",
                  hb_shape_str(root, b, sizeof b));
        return -1;
    }
    if (gout && !hb_same_shape(gout, root)) {
        char a[64], b[64];
        hb_seterr("backward: gradient shape %s does not match tensor %s", hb_shape_str(gout, a, sizeof a),
                  hb_shape_str(root, b, sizeof b));
        return -1;
    }
    uint64_t mark = ++mark_counter;
    /* iterative DFS producing post-order */
    vec_t order = {0}, stack = {0};
    vec_t expanded = {0};
    int rc = -1;
    /* iterative DFS producing a post-order: a tensor is marked when it is EXPANDED (not when pushed),
       so one reached again through a longer path is pushed again above its parent and finishes first */
    if (vec_push(&stack, root) || vec_push(&expanded, NULL)) goto out;
    while (stack.n) {
        hb_tensor_t *t = stack.v[stack.n - 1];
        if (expanded.v[stack.n - 1] == NULL) {
            if (t->mark == mark) { stack.n--; expanded.n--; continue; } /* finished via another path */
            t->mark = mark;
            expanded.v[stack.n - 1] = t;
            if (t->grad_fn)
                for (int i = 0; i < t->grad_fn->nin; i++) {
                    hb_tensor_t *c = t->grad_fn->in[i];
                    if (!c || !c->requires_grad || c->mark == mark) continue;
                    if (vec_push(&stack, c) || vec_push(&expanded, NULL)) goto out;
                }
        } else {
            stack.n--;
            expanded.n--;
            if (vec_push(&order, t)) goto out;
        }
    }
    /* every node's saved values must be as the forward left them: checked before anything runs, so a
       refused backward changes no .grad and keeps the graph */
    for (int64_t k = order.n - 1; k >= 0; k--)
        if (order.v[k]->grad_fn && check_versions(order.v[k]->grad_fn)) goto out;
    int prev = hb_grad_set(0);
    hb_tensor_t *seed = gout ? hb_tensor_ref(gout) : hb_tensor_full(root->dtype, root->ndim, root->size, 1.0);
    if (!seed) { hb_grad_set(prev); goto out; }
    if (root->grad_fn) {
        root->bgrad = seed;
    } else {
        int e = hb_accumulate(&root->grad, seed);
        hb_tensor_free(seed);
        hb_grad_set(prev);
        rc = e;
        goto out;
    }
    for (int64_t k = order.n - 1; k >= 0; k--) {
        hb_tensor_t *t = order.v[k];
        if (!t->grad_fn || !t->bgrad) continue;
        hb_node_t *n = t->grad_fn;
        hb_tensor_t *gin[HB_NODE_MAXIN] = {0};
        int prof = prof_enabled();
        prof_mark_t p0 = {0}, p1 = {0};
        if (prof) p0 = prof_now();
        int brc = n->backward(n, t->bgrad, gin);
        if (prof) { p1 = prof_now(); prof_add(n->name ? n->name : "?", p0, p1); }
        if (brc) {
            char msg[1024];
            strncpy(msg, hb_errmsg(), sizeof msg - 1);
            msg[sizeof msg - 1] = 0;
            hb_seterr("backward of '%s': %s", n->name, msg);
            for (int i = 0; i < n->nin; i++) hb_tensor_free(gin[i]);
            hb_grad_set(prev);
            goto cleanup;
        }
        if (t->retain_grad) hb_accumulate(&t->grad, t->bgrad);
        hb_tensor_free(t->bgrad);
        t->bgrad = NULL;
        for (int i = 0; i < n->nin; i++) {
            hb_tensor_t *c = n->in[i];
            if (!gin[i]) continue;
            if (c && c->requires_grad) {
                int e = c->grad_fn ? hb_accumulate(&c->bgrad, gin[i]) : hb_accumulate(&c->grad, gin[i]);
                if (e) {
                    for (int j = i; j < n->nin; j++) hb_tensor_free(gin[j]);
                    hb_grad_set(prev);
                    goto cleanup;
                }
            }
            hb_tensor_free(gin[i]);
        }
        if (prof) prof_add("(accumulate, free)", p1, prof_now());
    }
    hb_grad_set(prev);
    rc = 0;
cleanup:
    for (int64_t k = 0; k < order.n; k++) {
        hb_tensor_t *t = order.v[k];
        hb_tensor_free(t->bgrad);
        t->bgrad = NULL;
    }
    if (!retain_graph) {
        /* release the graph: drop every node (children stay alive while the order holds them) */
        for (int64_t k = 0; k < order.n; k++) {
            hb_tensor_t *t = order.v[k];
            if (t->grad_fn) { set_grad_fn(t, NULL); t->graph_released = 1; }
        }
    }
out:
    free(order.v);
    free(stack.v);
    free(expanded.v);
    return rc;
}
