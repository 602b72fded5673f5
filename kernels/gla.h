/* gla.h — gated linear attention with a per-key-channel decay (GLA, docs/mixers.md#gla;
 * HGRN-2 docs/mixers.md#hgrn-2).
 *
 *   S_t = diag(exp(gk_t)) S_{t−1} + k_t v_tᵀ     S ∈ R^{K×V} per (batch, head), S_{−1} = h0 (or 0)
 *   o_t = S_tᵀ (scale · q_t)                     gk_t ≤ 0 (finite) is the log decay of each key channel
 *
 * Shapes (contiguous, row-major): q, k, gk (B,T,H,K); v, o (B,T,H,V); states h0, ht (NS,H,K,V).
 * All heads are equal (GQA repeats are done by the caller). Callers pass scale = K^−1/2.
 * Sequences (kernels/seqs.h): the B rows (NS = B), or, with cu_seqlens (N+1) [IN][OPTIONAL] != NULL,
 * N documents packed back to back in one row (B = 1, NS = N): each starts from its own h0 (or 0),
 * its chunks are counted from its first token, nothing crosses its boundaries, and dh0/dht are (N,...)
 * too. cu_seqlens == NULL ignores N.
 * Every function exists as _f32 (float) and _f64 (double), both compiled from kernels/gla.c.
 * All functions return 0 on success, −1 on a bad argument (checked before any work) or when scratch
 * memory could not be allocated. Dimensions: B, T, H ≥ 0; K, V, C ≥ 1; cu_seqlens valid (seqs.h).
 * Backward functions ACCUMULATE (+=) into dq, dk, dv, dgk, dh0; any of them may be NULL (skipped).
 */
#ifndef HB_KERNELS_GLA_H
#define HB_KERNELS_GLA_H
#include "mixer.h"
#include "seqs.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reference forward: the per-timestep recurrence (parallel over NS·H).
 * o  (B,T,H,V) [OUT]; ht (NS,H,K,V) [OUT][OPTIONAL] final states;
 * q, k, gk (B,T,H,K) [IN]; v (B,T,H,V) [IN]; h0 (NS,H,K,V) [IN][OPTIONAL] initial states (NULL = 0);
 * cu_seqlens (N+1) [IN][OPTIONAL] packed document boundaries, N documents. */
int gla_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                    const float *gk, const float *h0, float scale, const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);
int gla_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                    const double *gk, const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);

/* Reference backward: backprop through time over the recurrence. The states are recomputed from
 * checkpoints every ~sqrt(T) steps (T the longest sequence; scratch O(sqrt(T)·K·V) per item).
 * dq, dk, dgk (B,T,H,K) [OUT][OPTIONAL] +=; dv (B,T,H,V) [OUT][OPTIONAL] +=;
 * dh0 (NS,H,K,V) [OUT][OPTIONAL] += gradient w.r.t. the initial states;
 * do_ (B,T,H,V) [IN] dL/do; dht (NS,H,K,V) [IN][OPTIONAL] dL/dht (NULL = 0);
 * q, k, v, gk, h0, scale, cu_seqlens, N as in the forward. */
int gla_bwd_ref_f32(float *dq, float *dk, float *dv, float *dgk, float *dh0,
                    const float *do_, const float *dht,
                    const float *q, const float *k, const float *v, const float *gk,
                    const float *h0, float scale, const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);
int gla_bwd_ref_f64(double *dq, double *dk, double *dv, double *dgk, double *dh0,
                    const double *do_, const double *dht,
                    const double *q, const double *k, const double *v, const double *gk,
                    const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);

/* Chunked forward (chunk length C, callers use 64, counted from each sequence's first token; the
 * lengths need not be multiples of C), with secondary
 * 16-row sub-blocks for the intra-chunk scores; safe for any gk ≤ 0 (no e^{+G} is ever formed).
 * Scratch O(C·K + C² + K·V) per (b,h). Same arguments and results as gla_fwd_ref, plus
 * hs [OUT][OPTIONAL] the state entering every chunk, for gla_bwd_chunk: (NT,H,K,V) with
 * NT = gla_chunk_count(...); chunk j of sequence n is row (Σ_{m<n} ceil(len_m/C)) + j — for a padded
 * batch (B, ceil(T/C), H, K, V). */
static inline int64_t gla_chunk_count(const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t C) {
    return hb_seq_chunks(cu_seqlens, N, B, T, C);
}
int gla_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k, const float *v,
                      const float *gk, const float *h0, float scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);
int gla_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k, const double *v,
                      const double *gk, const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);

/* Chunked backward: takes the chunk-entry states from hs [IN][OPTIONAL] (what gla_fwd_chunk saved for
 * the same inputs, h0 and C), or, with hs NULL, recomputes them from the inputs (scratch (T/C+1)·K·V
 * per (b,h)); then walks the chunks backwards. dgk comes from the identity
 * dgk_t = Σ_{u≥t} (q_u ⊙ dq_u − k_u ⊙ dk_u) + Σ_v dht ⊙ ht (see gla.c; with hs and dht, ht is the last
 * chunk's state update from its saved entry state).
 * Same arguments and results as gla_bwd_ref, plus hs and the chunk length C. */
int gla_bwd_chunk_f32(float *dq, float *dk, float *dv, float *dgk, float *dh0,
                      const float *do_, const float *dht,
                      const float *q, const float *k, const float *v, const float *gk,
                      const float *h0, const float *hs, float scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);
int gla_bwd_chunk_f64(double *dq, double *dk, double *dv, double *dgk, double *dh0,
                      const double *do_, const double *dht,
                      const double *q, const double *k, const double *v, const double *gk,
                      const double *h0, const double *hs, double scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);

/* One decode step: state ← diag(exp(gk)) state + k vᵀ, o = stateᵀ (scale q).
 * o (B,H,V) [OUT]; state (B,H,K,V) [IN/OUT] updated in place;
 * q, k, gk (B,H,K) [IN]; v (B,H,V) [IN]. */
int gla_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                 const float *gk, float scale, int64_t B, int64_t H, int64_t K, int64_t V);
int gla_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                 const double *gk, double scale, int64_t B, int64_t H, int64_t K, int64_t V);

/* The mixer descriptor (kernels/mixer.h) and its entry points, adapters over the functions above. */
extern const hb_mixer_desc_t hb_mixer_gla;
int gla_mixer_fwd_chunk_f32(const hb_mixer_args_t *a);
int gla_mixer_bwd_chunk_f32(const hb_mixer_args_t *a);
int gla_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a);
int gla_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a);
int gla_mixer_step_f32(const hb_mixer_args_t *a);
int gla_mixer_fwd_chunk_f64(const hb_mixer_args_t *a);
int gla_mixer_bwd_chunk_f64(const hb_mixer_args_t *a);
int gla_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a);
int gla_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a);
int gla_mixer_step_f64(const hb_mixer_args_t *a);

#ifdef __cplusplus
}
#endif

#endif
