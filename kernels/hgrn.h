/* hgrn.h — HGRN's element-wise gated linear recurrence (one "head" per channel).
 *
 *   h_t = e^{g_t} ⊙ h_{t−1} + x_t,   h_{−1} = h0 (or 0),   o_t = h_t
 *
 * Shapes (contiguous, row-major): x, g, o (B,T,D); h0, ht (NS,D). g is the log forget gate (≤ 0).
 * Sequences (kernels/seqs.h): the B rows (NS = B), or, with cu_seqlens (N+1) [IN][OPTIONAL] != NULL,
 * the N documents packed back to back in one row (B = 1, NS = N): each starts from its own h0 row (or 0)
 * and its scan, chunks and gradients stop at its boundaries. cu_seqlens == NULL ignores N.
 * Every function exists as _f32 (float) and _f64 (double); see kernels/kreal.h.
 * All functions return 0 on success, −1 on a bad argument (negative sizes, bad cu_seqlens: checked
 * before any work) or if scratch memory could not be allocated.
 * Backward functions ACCUMULATE (+=) into dx/dg; either may be NULL (not computed). They take the
 * forward output o (= the hidden states) instead of x, as fla does. No gradient for h0; ht receives
 * no gradient.
 */
#ifndef HB_KERNELS_HGRN_H
#define HB_KERNELS_HGRN_H
#include "mixer.h"
#include <stdint.h>

/* Reference forward: the per-timestep scan.
 * o (B,T,D) [OUT]; ht (NS,D) [OUT][OPTIONAL] final states;
 * x, g (B,T,D) [IN]; h0 (NS,D) [IN][OPTIONAL] initial states (NULL = 0);
 * cu_seqlens (N+1) [IN][OPTIONAL] packed document boundaries (kernels/seqs.h), N documents. */
int hgrn_fwd_ref_f32(float *o, float *ht, const float *x, const float *g, const float *h0,
                     const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D);
int hgrn_fwd_ref_f64(double *o, double *ht, const double *x, const double *g, const double *h0,
                     const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D);

/* Reference backward (reverse scan, backprop through time):
 *   dh_t = do_t + e^{g_{t+1}} dh_{t+1},   dx_t += dh_t,   dg_t += dh_t e^{g_t} h_{t−1}.
 * dx, dg (B,T,D) [OUT][OPTIONAL] accumulated; do_ (B,T,D) [IN] gradient w.r.t. o;
 * g (B,T,D) [IN]; o (B,T,D) [IN] the forward output; h0 (NS,D) [IN][OPTIONAL], cu_seqlens, N as in
 * the forward. */
int hgrn_bwd_ref_f32(float *dx, float *dg, const float *do_, const float *g, const float *o,
                     const float *h0, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D);
int hgrn_bwd_ref_f64(double *dx, double *dg, const double *do_, const double *g, const double *o,
                     const double *h0, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D);

/* Chunked forward: per-chunk local scans, a carry pass over the chunks, then the chunks rescanned
 * from their carries in parallel (chunk length C, e.g. 64, counted from each sequence's first token;
 * lengths need not be multiples of C). C ≤ 0 or C ≥ the longest sequence means one chunk per
 * sequence: the plain scan, parallel over sequences × blocks of 1024 channels only. Chunking costs
 * about twice the work of the plain scan, so it only pays when sequences × channel blocks cannot keep
 * the threads busy: callers should pass hgrn_chunk_hint(NS, longest length, D) (below) unless testing.
 * Same arguments and results as hgrn_fwd_ref. */
int hgrn_fwd_chunk_f32(float *o, float *ht, const float *x, const float *g, const float *h0,
                       const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D, int64_t C);
int hgrn_fwd_chunk_f64(double *o, double *ht, const double *x, const double *g, const double *h0,
                       const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D, int64_t C);

/* Chunked backward: the same three phases over the reverse scan. Same arguments as hgrn_bwd_ref. */
int hgrn_bwd_chunk_f32(float *dx, float *dg, const float *do_, const float *g, const float *o,
                       const float *h0, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D,
                       int64_t C);
int hgrn_bwd_chunk_f64(double *dx, double *dg, const double *do_, const double *g, const double *o,
                       const double *h0, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D,
                       int64_t C);

/* The chunk length to pass to hgrn_fwd_chunk / hgrn_bwd_chunk for B sequences of at most T tokens: 64
 * when a single sequence of at most 1024 channels offers too little parallelism for two threads, else T
 * (the plain scan). Depends on the shapes only, so results never depend on the thread count. */
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
