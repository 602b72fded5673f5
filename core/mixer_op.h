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
/* One decode step: state (pattern d->state, contiguous, the dtype of the inputs) is updated in place;
 * inputs have their patterns without T. Returns the step's output (d->out without T). */
hb_tensor_t *hb_mixer_step(const hb_mixer_desc_t *d, hb_tensor_t *state, hb_tensor_t *const *in, const double *scalar);

/* Number of inputs / scalars of d (its lists end at the first NULL name). */
int hb_mixer_nin(const hb_mixer_desc_t *d);
int hb_mixer_nscalar(const hb_mixer_desc_t *d);
/* 0 if d is well formed (names, patterns over its dims, every output/state dim bound by a required
 * input, all entry points present), else -1 with a message naming the fault. */
int hb_mixer_desc_check(const hb_mixer_desc_t *d);

#endif
