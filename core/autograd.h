/* autograd.h — reverse-mode automatic differentiation on hb tensors.
 *
 * An op whose inputs require grad (and grad mode is on) creates a node holding references to its
 * inputs and whatever it saved, and attaches it to its output as grad_fn. hb_backward(root) orders the
 * graph topologically and calls each node's backward with the gradient of its output; the node returns
 * one gradient per input (NULL where not needed). Gradients of leaves that require grad are
 * accumulated (+=) into leaf->grad. Backward runs with grad mode off (no higher-order gradients).
 * Unless retain_graph is set, the graph is released afterwards (non-leaf grad_fn cleared).
 *
 * Saved tensors must never be the node's own output (that would be a reference cycle): save a
 * hb_detach() alias instead (hb_node_save_output).
 *
 * Versions (tensor.h): a node records the version of every tensor its backward reads — its inputs at
 * attach time (unless the op clears their bits in reads_in), what it saves (hb_node_save), and what its
 * context keeps (hb_node_watch). Before running a node's backward, hb_backward compares them with the
 * current versions and fails with "<op>: a tensor needed for backward was modified in place (...)"
 * instead of computing a wrong gradient from changed values.
 */
#ifndef HB_AUTOGRAD_H
#define HB_AUTOGRAD_H
#include "tensor.h"

#define HB_NODE_MAXIN 8
#define HB_NODE_MAXSAVED 8
#define HB_NODE_MAXWATCH 12

typedef struct hb_node hb_node_t;
/* Compute gin[i] (new references, or NULL) for each input from gout. Return 0, or -1 with hb_seterr. */
typedef int (*hb_backward_fn)(hb_node_t *n, hb_tensor_t *gout, hb_tensor_t **gin);

struct hb_node {
    int64_t refcount;
    const char *name;                         /* op name, for error messages */
    hb_backward_fn backward;
    int nin;
    hb_tensor_t *in[HB_NODE_MAXIN];           /* inputs (owned refs) */
    hb_tensor_t *saved[HB_NODE_MAXSAVED];     /* saved tensors (owned refs, may be NULL): fla's saved_tensors */
    /* The op's named context: one struct type per op, e.g. `typedef struct { double scale; int64_t window; }
     * attn_ctx;` (fla's ctx.scale, ctx.chunk_size). ctx_size zeroed bytes allocated with the node and
     * freed with it (NULL when the op asked for none); ctx_release, if an op sets it, releases what the
     * struct itself owns just before. */
    void *ctx;
    void (*ctx_release)(void *ctx);
    /* Versions of what the backward reads, taken when recorded (checked by hb_backward). */
    uint32_t reads_in;                        /* bit i: the backward reads in[i]'s values (all set by attach;
                                                 an op whose backward needs only shapes clears them) */
    uint32_t saved_set;                       /* bit i: saved[i] was recorded by hb_node_save */
    uint64_t in_version[HB_NODE_MAXIN];       /* in[i]'s version at attach */
    uint64_t saved_version[HB_NODE_MAXSAVED]; /* saved[i]'s version at hb_node_save */
    int nwatch;                               /* tensors the context owns, with their versions */
    const hb_tensor_t *watch[HB_NODE_MAXWATCH];
    uint64_t watch_version[HB_NODE_MAXWATCH];
};

/* Grad mode: on by default; per thread. hb_grad_set returns the previous value. */
int hb_grad_enabled(void);
int hb_grad_set(int enabled);

/* Does an op over these inputs need to record a node? */
int hb_needs_grad(int n, hb_tensor_t **in);
/* Create a node over inputs (refs taken) with a zeroed context of ctx_size bytes (n->ctx; 0 = none), and
 * attach it to out (out->requires_grad = 1). Returns the node so the caller can fill its context and
 * save tensors, or NULL when no grad is needed (or when out of memory: see hb_node_lost). */
hb_node_t *hb_node_attach(hb_tensor_t *out, const char *name, hb_backward_fn bw, int nin, hb_tensor_t **in,
                          size_t ctx_size);
/* Keep t (a new reference is taken; NULL is safe) in n->saved[i] for the backward and record its version.
 * Every saved tensor goes through here: the backward refuses a saved[] slot filled otherwise. */
void hb_node_save(hb_node_t *n, int i, hb_tensor_t *t);
/* Save a detached alias of the node's own output (no reference cycle) in n->saved[i]. When out of memory,
 * out's node is replaced as by hb_node_lost, which frees n: returns -1 and n must not be used again. */
int hb_node_save_output(hb_node_t *n, int i, hb_tensor_t *out);
/* Record the version of a tensor that n's context owns (kept alive as long as n), for the same check.
 * At most HB_NODE_MAXWATCH per node: returns -1 with hb_errmsg set beyond that. */
int hb_node_watch(hb_node_t *n, const hb_tensor_t *t);
/* Out of memory while recording (no node could be allocated, or a tensor the node must save could
 * not be made): replace out's node by a shared one whose backward fails with "out of memory recording
 * the autograd graph ...". The forward result stays valid; hb_node_attach does this itself when its
 * own allocation fails (and then returns NULL). */
void hb_node_lost(hb_tensor_t *out);
/* Hand src's node (and so its history) to dst; src becomes a tensor without history. For an op that
 * computes its value one way and records its history as a composition of other ops (hb_where). */
void hb_node_move(hb_tensor_t *dst, hb_tensor_t *src);
void hb_node_free(hb_node_t *n);

/* Run backward from root. gout may be NULL only for a single-element root (gradient 1). */
int hb_backward(hb_tensor_t *root, hb_tensor_t *gout, int retain_graph);
/* Mark a leaf as requiring grad (or not). Non-float tensors cannot require grad. */
int hb_set_requires_grad(hb_tensor_t *t, int on);
/* Accumulate g into *acc (creating it if NULL); no autograd. */
int hb_accumulate(hb_tensor_t **acc, hb_tensor_t *g);

#endif
