/* hgrn.h — HGRN's element-wise gated linear recurrence (one "head" per channel).
 *
 *   h_t = e^{g_t} ⊙ h_{t−1} + x_t,   h_{−1} = h0 (or 0),   o_t = h_t
 *
 * Shapes (contiguous, row-major): x, g, o (B,T,D); h0, ht (B,D). g is the log forget gate (≤ 0).
 * Every function exists as _f32 (float) and _f64 (double); see kernels/kreal.h.
 * All functions return 0 on success, −1 if scratch memory could not be allocated.
 * Backward functions ACCUMULATE (+=) into dx/dg; either may be NULL (not computed). They take the
 * forward output o (= the hidden states) instead of x, as fla does. No gradient for h0; ht receives
 * no gradient.
 */
#ifndef HB_KERNELS_HGRN_H
#define HB_KERNELS_HGRN_H
#include "mixer.h"
#include <stdint.h>

/* Reference forward: the per-timestep scan.
 * o (B,T,D) [OUT]; ht (B,D) [OUT][OPTIONAL] final state;
 * x, g (B,T,D) [IN]; h0 (B,D) [IN][OPTIONAL] initial state (NULL = 0). */
int hgrn_fwd_ref_f32(float *o, float *ht, const float *x, const float *g, const float *h0,
                     int64_t B, int64_t T, int64_t D);
int hgrn_fwd_ref_f64(double *o, double *ht, const double *x, const double *g, const double *h0,
                     int64_t B, int64_t T, int64_t D);

/* Reference backward (reverse scan, backprop through time):
 *   dh_t = do_t + e^{g_{t+1}} dh_{t+1},   dx_t += dh_t,   dg_t += dh_t e^{g_t} h_{t−1}.
 * dx, dg (B,T,D) [OUT][OPTIONAL] accumulated; do_ (B,T,D) [IN] gradient w.r.t. o;
 * g (B,T,D) [IN]; o (B,T,D) [IN] the forward output; h0 (B,D) [IN][OPTIONAL] as in the forward. */
int hgrn_bwd_ref_f32(float *dx, float *dg, const float *do_, const float *g, const float *o,
                     const float *h0, int64_t B, int64_t T, int64_t D);
int hgrn_bwd_ref_f64(double *dx, double *dg, const double *do_, const double *g, const double *o,
                     const double *h0, int64_t B, int64_t T, int64_t D);

/* Chunked forward: per-chunk local scans, a carry pass over the chunks, then the chunks rescanned
 * from their carries in parallel (chunk length C, e.g. 64; T need not be a multiple of C). C ≤ 0 or
 * C ≥ T means one chunk: the plain scan, parallel over B × blocks of 1024 channels only. Chunking
 * costs about twice the work of the plain scan, so it only pays when B × channel blocks cannot keep
 * the threads busy: callers should pass hgrn_chunk_hint(B, T, D) (below) unless testing.
 * Same arguments and results as hgrn_fwd_ref. */
int hgrn_fwd_chunk_f32(float *o, float *ht, const float *x, const float *g, const float *h0,
                       int64_t B, int64_t T, int64_t D, int64_t C);
int hgrn_fwd_chunk_f64(double *o, double *ht, const double *x, const double *g, const double *h0,
                       int64_t B, int64_t T, int64_t D, int64_t C);

/* Chunked backward: the same three phases over the reverse scan. Same arguments as hgrn_bwd_ref. */
int hgrn_bwd_chunk_f32(float *dx, float *dg, const float *do_, const float *g, const float *o,
                       const float *h0, int64_t B, int64_t T, int64_t D, int64_t C);
int hgrn_bwd_chunk_f64(double *dx, double *dg, const double *do_, const double *g, const double *o,
                       const double *h0, int64_t B, int64_t T, int64_t D, int64_t C);

/* The chunk length to pass to hgrn_fwd_chunk / hgrn_bwd_chunk: 64 when a single sequence of at most
 * 1024 channels offers too little parallelism for two threads, else T (the plain scan). Depends on
 * the shapes only, so results never depend on the thread count. */
static inline int64_t hgrn_chunk_hint(int64_t B, int64_t T, int64_t D) {
    return B * ((D + 1023) / 1024) >= 2 || T <= 64 ? T : 64;
}

/* One decode step: state ← e^{g} ⊙ state + x, o = state.
 * o (B,D) [OUT]; state (B,D) [IN/OUT] updated in place; x, g (B,D) [IN]. */
int hgrn_step_f32(float *o, float *state, const float *x, const float *g, int64_t B, int64_t D);
int hgrn_step_f64(double *o, double *state, const double *x, const double *g, int64_t B, int64_t D);

/* The mixer descriptor (kernels/mixer.h) and its entry points, adapters over the functions above. */
extern const hb_mixer_desc_t hb_mixer_hgrn;
int hgrn_mixer_fwd_chunk_f32(const hb_mixer_args_t *a);
int hgrn_mixer_bwd_chunk_f32(const hb_mixer_args_t *a);
int hgrn_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a);
int hgrn_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a);
int hgrn_mixer_step_f32(const hb_mixer_args_t *a);
int hgrn_mixer_fwd_chunk_f64(const hb_mixer_args_t *a);
int hgrn_mixer_bwd_chunk_f64(const hb_mixer_args_t *a);
int hgrn_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a);
int hgrn_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a);
int hgrn_mixer_step_f64(const hb_mixer_args_t *a);

#endif
