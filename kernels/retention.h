/* retention.h — RetNet retention (multi-scale retention with a constant per-head decay).
 *
 *   S_t = γ_h S_{t−1} + k_t v_tᵀ        S ∈ R^{K×V} per (batch, head), S_{−1} = h0 (or 0)
 *   o_t = S_tᵀ (scale · q_t)            γ_h = exp(lg[h]) (RetNet: lg[h] = log(1 − 2^(−5−h)))
 *
 * Shapes (contiguous, row-major): q, k (B,T,H,K); v, o (B,T,H,V); states h0, ht (NS,H,K,V);
 * lg (H). The decay is a constant, not learned: backward gives dq, dk, dv only.
 * Sequences (kernels/seqs.h): the B rows (NS = B), or, with cu_seqlens (N+1) [IN][OPTIONAL] != NULL,
 * N documents packed back to back in one row (B = 1, NS = N): each starts from its own h0 (or 0), its
 * chunks are counted from its first token and nothing crosses its boundaries. NULL ignores N.
 * Every function exists as _f32 (float) and _f64 (double); see kernels/kreal.h.
 * All functions return 0 on success, −1 on a bad argument (negative sizes, bad cu_seqlens: checked
 * before any work) or if scratch memory could not be allocated.
 * Backward functions ACCUMULATE (+=) into dq/dk/dv; any of them may be NULL (not computed).
 * Gradients with respect to h0 are not computed; ht receives no gradient.
 */
#ifndef HB_KERNELS_RETENTION_H
#define HB_KERNELS_RETENTION_H
#include "mixer.h"
#include "seqs.h"
#include <stdint.h>

/* Reference forward: the per-timestep recurrence.
 * o  (B,T,H,V) [OUT]; ht (NS,H,K,V) [OUT][OPTIONAL] final states;
 * q, k (B,T,H,K) [IN]; v (B,T,H,V) [IN]; h0 (NS,H,K,V) [IN][OPTIONAL] initial states (NULL = 0);
 * lg (H) [IN] log decay per head (≤ 0); scale: the query scale (usually K^−1/2);
 * cu_seqlens (N+1) [IN][OPTIONAL] packed document boundaries, N documents. */
int retention_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                          const float *h0, const float *lg, float scale, const int64_t *cu_seqlens, int64_t N,
                          int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);
int retention_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                          const double *h0, const double *lg, double scale, const int64_t *cu_seqlens, int64_t N,
                          int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);

/* Reference backward: backprop through time over the recurrence (recomputes the states).
 * dq, dk (B,T,H,K) [OUT][OPTIONAL] accumulated; dv (B,T,H,V) [OUT][OPTIONAL] accumulated;
 * do_ (B,T,H,V) [IN] gradient of the loss w.r.t. o; the other inputs as in the forward. */
int retention_bwd_ref_f32(float *dq, float *dk, float *dv, const float *do_,
                          const float *q, const float *k, const float *v, const float *h0,
                          const float *lg, float scale, const int64_t *cu_seqlens, int64_t N,
                          int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);
int retention_bwd_ref_f64(double *dq, double *dk, double *dv, const double *do_,
                          const double *q, const double *k, const double *v, const double *h0,
                          const double *lg, double scale, const int64_t *cu_seqlens, int64_t N,
                          int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);

/* Chunked forward (chunk length C ≥ 1, callers use 64, counted from each sequence's first token; the
 * lengths need not be multiples of C).
 * Same arguments and results as retention_fwd_ref, plus hs [OUT][OPTIONAL] the state entering every chunk,
 * for retention_bwd_chunk: (NT,H,K,V), NT = retention_chunk_count(...); chunk j of sequence n is row
 * (Σ_{m<n} ceil(len_m/C)) + j — for a padded batch (B, ceil(T/C), H, K, V). */
static inline int64_t retention_chunk_count(const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t C) {
    return hb_seq_chunks(cu_seqlens, N, B, T, C);
}
int retention_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k, const float *v,
                            const float *h0, const float *lg, float scale, const int64_t *cu_seqlens, int64_t N,
                            int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);
int retention_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k, const double *v,
                            const double *h0, const double *lg, double scale, const int64_t *cu_seqlens, int64_t N,
                            int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);

/* Chunked backward. With hs [IN][OPTIONAL] (what retention_fwd_chunk saved for the same inputs, h0 and C):
 * one sweep backward over the chunks for dq, dk and dv. With hs NULL: one sweep forward for dq
 * (recomputing the states from h0, k, v), one backward for dk, dv. Scratch O(K·V + C²) per head.
 * Same arguments and results as retention_bwd_ref, plus hs and the chunk length C. */
int retention_bwd_chunk_f32(float *dq, float *dk, float *dv, const float *do_,
                            const float *q, const float *k, const float *v, const float *h0, const float *hs,
                            const float *lg, float scale, const int64_t *cu_seqlens, int64_t N,
                            int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);
int retention_bwd_chunk_f64(double *dq, double *dk, double *dv, const double *do_,
                            const double *q, const double *k, const double *v, const double *h0, const double *hs,
                            const double *lg, double scale, const int64_t *cu_seqlens, int64_t N,
                            int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);

/* One decode step: state ← γ_h state + k vᵀ, o = stateᵀ (scale q).
 * o (B,H,V) [OUT]; state (B,H,K,V) [IN/OUT] updated in place;
 * q, k (B,H,K) [IN]; v (B,H,V) [IN]; lg (H) [IN]. */
int retention_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                       const float *lg, float scale, int64_t B, int64_t H, int64_t K, int64_t V);
int retention_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                       const double *lg, double scale, int64_t B, int64_t H, int64_t K, int64_t V);

/* The mixer descriptor (kernels/mixer.h) and its entry points, adapters over the functions above. */
extern const hb_mixer_desc_t hb_mixer_retention;
int retention_mixer_fwd_chunk_f32(const hb_mixer_args_t *a);
int retention_mixer_bwd_chunk_f32(const hb_mixer_args_t *a);
int retention_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a);
int retention_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a);
int retention_mixer_step_f32(const hb_mixer_args_t *a);
int retention_mixer_fwd_chunk_f64(const hb_mixer_args_t *a);
int retention_mixer_bwd_chunk_f64(const hb_mixer_args_t *a);
int retention_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a);
int retention_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a);
int retention_mixer_step_f64(const hb_mixer_args_t *a);

#endif
