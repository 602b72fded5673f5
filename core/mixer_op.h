/* mixer_op.h — every registered token mixer (kernels/mixer_registry.h) as one differentiable tensor op.
 *
 * hb_mixer runs a mixer described by a kernel descriptor (kernels/mixer.h) over float32 or float64
 * tensors in fla's (B,T,H,D) layout: it checks every input against the descriptor's shape patterns
 * ("gla: k has shape [1, 5, 2, 8], expected [1, 4, 2, 8]"), dtypes and divisibility constraints, makes
 * the inputs contiguous, calls the _f32 or _f64 entry point, and records an autograd node whose named
 * context (mixer_ctx in mixer_op.c) keeps what the backward needs. hb_mixer_step advances a decode state
 * in place and records no history. Results are new references; NULL on error with hb_errmsg() set.
 */
#ifndef HB_MIXER_OP_H
#define HB_MIXER_OP_H
#include "../kernels/mixer.h"
#include "tensor.h"

/* HB_MODE_CHUNK: the chunked form (matrix products; training default). HB_MODE_RECURRENT: the naive
 * per-timestep reference and its backprop through time. */
typedef enum { HB_MODE_CHUNK = 0, HB_MODE_RECURRENT = 1 } hb_mode_t;

/* Full-sequence forward of mixer d.
 * in: d's inputs in descriptor order (NULL only for optional ones); scalar: d's scalars in order, NULL or
 * NAN entries taking the descriptor's default (scale = K^-1/2); chunk ≤ 0 takes d->chunk;
 * ht (optional, may be NULL) receives a new tensor with the final recurrent state (pattern d->state),
 * to decode after a prefill. */
hb_tensor_t *hb_mixer(const hb_mixer_desc_t *d, hb_tensor_t *const *in, const double *scalar, hb_mode_t mode,
                      int64_t chunk, hb_tensor_t **ht);
/* hb_mixer over packed sequences (fla's cu_seqlens, kernels/seqs.h): cu_seqlens (may be NULL: then exactly
 * hb_mixer) is an int64 or int32 tensor [N+1] of document starts, 0 = cu[0] ≤ ... ≤ cu[N] = T, and the
 * inputs' B must be 1. Each document is run as if alone (state reset at its first token, its own chunks);
 * ht receives the N final states (d->state with B replaced by N). Refused ("gla: packed sequences
 * (cu_seqlens) are not supported by this mixer's kernels") unless d->packed. */
hb_tensor_t *hb_mixer_packed(const hb_mixer_desc_t *d, hb_tensor_t *const *in, const double *scalar, hb_mode_t mode,
                             int64_t chunk, hb_tensor_t *cu_seqlens, hb_tensor_t **ht);
/* Check a cu_seqlens tensor for op `op` against a batch of B rows of T tokens: a 1-D int64/int32 tensor of
 * N+1 ≥ 2 entries, B == 1, starting at 0, ending at T, non-decreasing. Returns a new reference to a
 * contiguous int64 copy (or to cu itself when it already is one) and *N, or NULL with a message naming
 * the fault ("attention: cu_seqlens must end at T = 10 (the packed length), got 9"). */
hb_tensor_t *hb_seqlens_check(hb_tensor_t *cu, int64_t B, int64_t T, const char *op, int64_t *N);
/* One decode step: state (pattern d->state, contiguous, the dtype of the inputs) is updated in place;
 * inputs have their patterns without T. Returns the step's output (d->out without T). */
hb_tensor_t *hb_mixer_step(const hb_mixer_desc_t *d, hb_tensor_t *state, hb_tensor_t *const *in, const double *scalar);

/* Number of inputs / scalars of d (its lists end at the first NULL name). */
int hb_mixer_nin(const hb_mixer_desc_t *d);
int hb_mixer_nscalar(const hb_mixer_desc_t *d);
/* 0 if d is well formed (names, patterns over its dims, every output/state dim bound by a required
 * input, all entry points present; a packed mixer has dims B and T and a state over B), else -1 with a
 * message naming the fault. */
int hb_mixer_desc_check(const hb_mixer_desc_t *d);

#endif
