/* dplr.h — the generalised delta rule with a diagonal-plus-low-rank transition (DPLR): RWKV-7's
 * time mixing, fla's chunk_dplr_delta_rule / fused_recurrent_dplr_delta_rule.
 *
 * Per (sequence, head), state S ∈ R^{K×V} (key rows, value columns; fla's orientation), S_{−1} = h0 or 0:
 *   S_t = (diag(e^{gk_t}) + b_t a_tᵀ) S_{t−1} + k_t v_tᵀ
 *       = diag(e^{gk_t}) S_{t−1} + b_t (a_tᵀ S_{t−1}) + k_t v_tᵀ
 *   o_t = S_tᵀ (scale · q_t)
 * The low-rank term multiplies the state from the left (key side) and reads the PREVIOUS state, before
 * the decay (fla's naive dplr_recurrence: kv = k vᵀ + β (αᵀ S), then S ← S ⊙ e^{gk} + kv, with α = a,
 * β = b). In RWKV-7's own orientation (state V×K, S' = Sᵀ) this reads S'_t = S'_{t−1} (diag(e^{gk_t}) +
 * a_t b_tᵀ) + v_t k_tᵀ, i.e. the paper's S'_t = S'_{t−1} (diag(w_t) − κ̂_t (â_t ⊙ κ̂_t)ᵀ) + v_t k_tᵀ.
 * gk_t ≤ 0 is the log decay of each key channel (any value ≤ 0 is safe, −inf included: the chunked
 * form clamps the cumulative sums at −1000 per step, where e^{gk} is 0 in both precisions anyway).
 *
 * RWKV-7 (fla v0.5.2 layers/rwkv7.py) calls it with q = r, gk = w = −0.6065306597126334·σ(w_lora(x_w)),
 * a = −kk, b = kk ⊙ σ(a_lora(x_a)) (kk = l2norm(k ⊙ k_k) per head, taken BEFORE k's update), scale = 1:
 * every pre-processing step (token shift, LoRAs, l2norm, sigmoids, the k update) is the caller's.
 *
 * Shape letters: B batch, T time, H heads, K key dim, V value dim, C chunk length.
 * Shapes (contiguous, row-major): q, k, a, b, gk (B,T,H,K); v, o (B,T,H,V); states h0, ht (B,H,K,V).
 * Packed sequences (kernels/seqs.h): with cu_seqlens (N+1) non-NULL, B = 1 and the (1,T,...) tensors hold
 * N documents back to back; h0, ht, dh0, dht are then (N,H,K,V), and nothing crosses a document.
 * Chunk states hs: (NT,H,K,V), NT = dplr_chunk_count(...) = Σ over sequences of ceil(len/C); chunk j of
 * sequence n is row (Σ_{m<n} ceil(len_m/C)) + j — for a padded batch that is (B, ceil(T/C), H, K, V).
 * Every function exists as _f32 (float) and _f64 (double), both compiled from kernels/dplr.c.
 * All return 0, or −1 on a bad argument (checked before any work: B, T ≥ 0, H, K, V, C ≥ 1, a bad
 * cu_seqlens, a missing required pointer) or when scratch memory could not be allocated.
 * Backward functions ACCUMULATE (+=) into dq, dk, dv, da, db, dgk, dh0; any of them may be NULL (skipped).
 *
 * FLOPs per (sequence, head) of T tokens (2 per multiply-add, causal halves of the C×C score blocks,
 * element-wise work not counted), as the timing programs count them:
 *   forward  8·T·K·V (Q̂·S, Ã·S, K̄ᵀ·V, B̄ᵀ·U) + 2·T·(C+1)·K + 2·T·(C−1)·K (the score matrices q·kᵀ,
 *            q·bᵀ (s ≤ r) and a·kᵀ, a·bᵀ (s < r)) + 2·T·(C−1)·V (Mak·V, T·Y) + 2·T·(C+1)·V ([Mqk Mqb]·[V; U])
 *            + T·C²/3 (the unit triangular inverse)
 *   backward 16·T·K·V (dU/dV from dS, d[q;a] and d[k;b] through the states, dS) + 4·T·(C+1)·(K+V)
 *            + 4·T·(C−1)·(K+V) (the score gradients and their products with k, b, q, a; Mᵀ·dO, Tᵀ·dU,
 *            Makᵀ·X); the recomputation of the forward's scores, Ã·S, Mak·V, T·Y and T is not counted.
 */
#ifndef HB_KERNELS_DPLR_H
#define HB_KERNELS_DPLR_H
#include "mixer.h"
#include "seqs.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of chunk states hs holds per head: Σ over the sequences of ceil(len/C) (0 on bad arguments).
 * cu_seqlens (N+1) [IN][OPTIONAL]; without it, B sequences of length T. */
static inline int64_t dplr_chunk_count(const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                                       int64_t C) {
    if (C < 1) return 0;
    return hb_seq_chunks(cu_seqlens, N, B, T, C);
}

/* Reference forward: the per-timestep recurrence. Parallel over (sequence, head).
 * o (B,T,H,V) [OUT]; ht (B|N,H,K,V) [OUT][OPTIONAL] final state;
 * q, k, a, b, gk (B,T,H,K) [IN]; v (B,T,H,V) [IN]; h0 (B|N,H,K,V) [IN][OPTIONAL] (NULL = 0);
 * scale: the query scale (RWKV-7: 1); cu_seqlens (N+1) [IN][OPTIONAL] packed documents. */
int dplr_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                     const float *a, const float *b, const float *gk, const float *h0, float scale,
                     const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);
int dplr_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                     const double *a, const double *b, const double *gk, const double *h0,
                     double scale, const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);

/* Reference backward: backprop through time (states checkpointed every ~sqrt(T) steps and recomputed
 * segment by segment). Parallel over (sequence, head).
 * dq, dk, da, db, dgk (B,T,H,K) [OUT][OPTIONAL] +=; dv (B,T,H,V) [OUT][OPTIONAL] +=;
 * dh0 (B|N,H,K,V) [OUT][OPTIONAL] += gradient w.r.t. the initial state;
 * do_ (B,T,H,V) [IN] dL/do; dht (B|N,H,K,V) [IN][OPTIONAL] dL/dht (NULL = 0);
 * the other inputs as in the forward. */
int dplr_bwd_ref_f32(float *dq, float *dk, float *dv, float *da, float *db, float *dgk, float *dh0,
                     const float *do_, const float *dht, const float *q, const float *k,
                     const float *v, const float *a, const float *b, const float *gk,
                     const float *h0, float scale, const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);
int dplr_bwd_ref_f64(double *dq, double *dk, double *dv, double *da, double *db, double *dgk,
                     double *dh0, const double *do_, const double *dht, const double *q,
                     const double *k, const double *v, const double *a, const double *b,
                     const double *gk, const double *h0, double scale,
                     const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t K, int64_t V);

/* Chunked forward (fla's chunk DPLR algorithm; see dplr.c): chunk length C (64 by default; T need not
 * be a multiple), 16-row secondary sub-blocks inside a chunk for the decayed score matrices. Parallel
 * over (sequence, head). Same arguments and results as dplr_fwd_ref, plus
 * hs (NT,H,K,V) [OUT][OPTIONAL]: the state entering every chunk (see above), for dplr_bwd_chunk. */
int dplr_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k,
                       const float *v, const float *a, const float *b, const float *gk,
                       const float *h0, float scale, const int64_t *cu_seqlens, int64_t N,
                       int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);
int dplr_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k,
                       const double *v, const double *a, const double *b, const double *gk,
                       const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                       int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);

/* Chunked backward: walks the chunks of each (sequence, head) in reverse, recomputing each chunk's
 * scores and WY quantities from the inputs; dgk by the reverse-cumsum identity (dplr.c). Same arguments
 * and results as dplr_bwd_ref, plus hs (NT,H,K,V) [IN][OPTIONAL]: the chunk states written by
 * dplr_fwd_chunk with the same C, h0 and inputs (NULL = the backward reruns the state pass), and C. */
int dplr_bwd_chunk_f32(float *dq, float *dk, float *dv, float *da, float *db, float *dgk,
                       float *dh0, const float *do_, const float *dht, const float *q,
                       const float *k, const float *v, const float *a, const float *b,
                       const float *gk, const float *h0, const float *hs, float scale,
                       const int64_t *cu_seqlens, int64_t N,
                       int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);
int dplr_bwd_chunk_f64(double *dq, double *dk, double *dv, double *da, double *db, double *dgk,
                       double *dh0, const double *do_, const double *dht, const double *q,
                       const double *k, const double *v, const double *a, const double *b,
                       const double *gk, const double *h0, const double *hs, double scale,
                       const int64_t *cu_seqlens, int64_t N,
                       int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int64_t C);

/* One decode step for every (batch, head): the recurrence above for a single token.
 * o (B,H,V) [OUT]; state (B,H,K,V) [IN/OUT] updated in place;
 * q, k, a, b, gk (B,H,K) [IN]; v (B,H,V) [IN]. */
int dplr_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                  const float *a, const float *b, const float *gk, float scale,
                  int64_t B, int64_t H, int64_t K, int64_t V);
int dplr_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                  const double *a, const double *b, const double *gk, double scale,
                  int64_t B, int64_t H, int64_t K, int64_t V);

/* The mixer descriptor (kernels/mixer.h) and its entry points, adapters over the functions above:
 * hb.dplr{q, k, v, a, b, gk, scale} / hb.dplr_step{...} (scale defaults to K^−1/2, fla's default; RWKV-7
 * passes 1). */
extern const hb_mixer_desc_t hb_mixer_dplr;
int dplr_mixer_fwd_chunk_f32(const hb_mixer_args_t *a);
int dplr_mixer_bwd_chunk_f32(const hb_mixer_args_t *a);
int dplr_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a);
int dplr_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a);
int dplr_mixer_step_f32(const hb_mixer_args_t *a);
int dplr_mixer_fwd_chunk_f64(const hb_mixer_args_t *a);
int dplr_mixer_bwd_chunk_f64(const hb_mixer_args_t *a);
int dplr_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a);
int dplr_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a);
int dplr_mixer_step_f64(const hb_mixer_args_t *a);

#ifdef __cplusplus
}
#endif
#endif
