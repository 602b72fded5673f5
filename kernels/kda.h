/* kda.h — Kimi Delta Attention (KDA): the gated delta rule with a per-key-channel decay
 * (fla's fla/ops/kda at v0.5.2: naive_recurrent_kda / chunk_kda / fused_recurrent_kda).
 *
 * Per sequence and value head j (q/k head h = j / (HV/H)), state S ∈ R^{K×V}, S_{−1} = h0 (or 0):
 *   S'_t = diag(exp(g_t)) S_{t−1}                g_t ∈ R^K, g ≤ 0: log decay of each key channel
 *   u_t  = β_t (v_t − S'_tᵀ k_t)
 *   S_t  = S'_t + k_t u_tᵀ
 *   o_t  = S_tᵀ (scale · q_t)
 *
 * Shape letters: B batch rows, T tokens per row, H q/k heads, HV value heads (a multiple of H: GVA,
 * value head j reads q/k head j / (HV/H); HV == H is the usual case), K key dim, V value dim, C chunk
 * length, N packed documents. Layouts (contiguous, row-major):
 *   q, k (B,T,H,K)   v, o (B,T,HV,V)   g (B,T,HV,K)   beta (B,T,HV)   states (NS,HV,K,V)
 * with NS = B rows, or NS = N documents when packed. g and beta belong to the VALUE head (fla: "g and
 * v are at value-head dimension"); q and k are shared by the HV/H value heads of their group, as in
 * fla's kernels (no repeat is needed in the caller).
 *
 * What the caller does (fla's layer does it around chunk_kda): q and k are l2-normalised
 * (x / sqrt(Σx² + 1e−6)), g is already the log decay (−exp(A_log)·softplus(f + dt_bias), or
 * lower_bound·sigmoid(...)), beta is already sigmoid(b) (× 2 with allow_neg_eigval). The kernel
 * normalises, activates and clamps nothing. Callers pass scale = K^−1/2.
 *
 * Packed sequences (fla's cu_seqlens, kernels/seqs.h): with cu_seqlens != NULL, B must be 1 and the
 * (1,T,...) tensors hold N documents back to back; h0/ht/dh0/dht are then (N,HV,K,V) and nothing
 * crosses a document boundary (chunks are counted from each document's first token).
 *
 * Chunk states hs: the state entering every chunk, (NCT,HV,K,V) where NCT = kda_chunk_count(...):
 * the chunks of sequence 0, then those of sequence 1, ... (fla's h layout [B,NT,HV,K,V]).
 *
 * Cost (useful matrix-product FLOPs per token and value head; triangular products count half):
 *   forward   6KV + 2CV + 2CK + C²/3
 *   backward 14KV + 5CV + 6CK + C²/3   (with hs from the forward; + 4KV + CV + 2CK + C²/3 without)
 *
 * Every function exists as _f32 (float) and _f64 (double); see kernels/kreal.h. All return 0 on
 * success, −1 on a bad argument (checked before any work: negative or zero sizes, HV % H != 0,
 * C < 1, bad cu_seqlens, a required pointer NULL) or when scratch memory could not be allocated.
 * Backward functions ACCUMULATE (+=) into dq, dk, dv, dg, dbeta, dh0; each may be NULL (skipped).
 */
#ifndef HB_KERNELS_KDA_H
#define HB_KERNELS_KDA_H
#include "mixer.h"
#include "seqs.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of chunk states a chunked forward writes to hs: B·ceil(T/C), or Σ_n ceil(len_n/C) when
 * packed (cu_seqlens as below, already valid). C ≥ 1. */
static inline int64_t kda_chunk_count(const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                                      int64_t C) {
    return hb_seq_chunks(cu_seqlens, N, B, T, C);
}

/* Reference forward: the per-timestep recurrence above (fla's naive_recurrent_kda). Parallel over
 * (sequence, value head) pairs.
 * o (B,T,HV,V) [OUT]; ht (NS,HV,K,V) [OUT][OPTIONAL] final states;
 * q, k (B,T,H,K) [IN]; v (B,T,HV,V) [IN]; g (B,T,HV,K) [IN] log decays (≤ 0); beta (B,T,HV) [IN];
 * h0 (NS,HV,K,V) [IN][OPTIONAL] initial states (NULL = 0); scale: the query scale;
 * cu_seqlens (N+1) [IN][OPTIONAL] packed document boundaries (kernels/seqs.h), N documents. */
int kda_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                    const float *g, const float *beta, const float *h0, float scale,
                    const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V);
int kda_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                    const double *g, const double *beta, const double *h0, double scale,
                    const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V);

/* Reference backward: backprop through time over the recurrence (states checkpointed every 64 steps
 * and recomputed segment by segment). Parallel over (sequence, q/k head) pairs; each loops over the
 * value heads of its group, so the shared dq, dk are accumulated race-free.
 * dq, dk (B,T,H,K) [OUT][OPTIONAL] +=; dv (B,T,HV,V) [OUT][OPTIONAL] +=;
 * dg (B,T,HV,K) [OUT][OPTIONAL] +=; dbeta (B,T,HV) [OUT][OPTIONAL] +=;
 * dh0 (NS,HV,K,V) [OUT][OPTIONAL] += gradient w.r.t. h0;
 * do_ (B,T,HV,V) [IN] ∂L/∂o; dht (NS,HV,K,V) [IN][OPTIONAL] ∂L/∂ht (NULL = 0);
 * the other inputs as in the forward. */
int kda_bwd_ref_f32(float *dq, float *dk, float *dv, float *dg, float *dbeta, float *dh0,
                    const float *do_, const float *dht, const float *q, const float *k,
                    const float *v, const float *g, const float *beta, const float *h0,
                    float scale, const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V);
int kda_bwd_ref_f64(double *dq, double *dk, double *dv, double *dg, double *dbeta, double *dh0,
                    const double *do_, const double *dht, const double *q, const double *k,
                    const double *v, const double *g, const double *beta, const double *h0,
                    double scale, const int64_t *cu_seqlens, int64_t N,
                    int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V);

/* Chunked forward (fla's chunk_kda algorithm: WY/UT form with the per-channel decay inside, see
 * kda.c), chunk length C ≥ 1 (callers use 64; T and the documents need not be multiples of C); safe
 * for any g ≤ 0 and beta in [0, 2]. Parallel over (sequence, value head) pairs. Same arguments and
 * results as kda_fwd_ref, plus
 * hs (NCT,HV,K,V) [OUT][OPTIONAL]: the state entering each chunk (NCT = kda_chunk_count(...)), for
 * kda_bwd_chunk with the same C, inputs and h0. */
int kda_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k,
                      const float *v, const float *g, const float *beta, const float *h0,
                      float scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);
int kda_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k,
                      const double *v, const double *g, const double *beta, const double *h0,
                      double scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);

/* Chunked backward: walks each sequence's chunks backwards, recomputing the chunk's WY quantities
 * from the inputs. Parallel over (sequence, q/k head) pairs (value heads of a group looped inside).
 * Same arguments and results as kda_bwd_ref, plus hs (NCT,HV,K,V) [IN][OPTIONAL] the chunk states
 * written by kda_fwd_chunk with the same C (NULL = recompute them here), and C. */
int kda_bwd_chunk_f32(float *dq, float *dk, float *dv, float *dg, float *dbeta, float *dh0,
                      const float *do_, const float *dht, const float *q, const float *k,
                      const float *v, const float *g, const float *beta, const float *h0,
                      const float *hs, float scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);
int kda_bwd_chunk_f64(double *dq, double *dk, double *dv, double *dg, double *dbeta, double *dh0,
                      const double *do_, const double *dht, const double *q, const double *k,
                      const double *v, const double *g, const double *beta, const double *h0,
                      const double *hs, double scale, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);

/* One decode step for every (batch row, value head): the recurrence above for a single token.
 * o (B,HV,V) [OUT]; state (B,HV,K,V) [IN/OUT] updated in place;
 * q, k (B,H,K) [IN]; v (B,HV,V) [IN]; g (B,HV,K) [IN]; beta (B,HV) [IN]. */
int kda_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                 const float *g, const float *beta, float scale,
                 int64_t B, int64_t H, int64_t HV, int64_t K, int64_t V);
int kda_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                 const double *g, const double *beta, double scale,
                 int64_t B, int64_t H, int64_t HV, int64_t K, int64_t V);

/* The mixer descriptor (kernels/mixer.h) and its entry points, adapters over the functions above:
 * hb.kda{q, k, v, g, beta [, scale, cu_seqlens]} / hb.kda_step{...} (packed sequences through the op;
 * no h0). */
extern const hb_mixer_desc_t hb_mixer_kda;
int kda_mixer_fwd_chunk_f32(const hb_mixer_args_t *a);
int kda_mixer_bwd_chunk_f32(const hb_mixer_args_t *a);
int kda_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a);
int kda_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a);
int kda_mixer_step_f32(const hb_mixer_args_t *a);
int kda_mixer_fwd_chunk_f64(const hb_mixer_args_t *a);
int kda_mixer_bwd_chunk_f64(const hb_mixer_args_t *a);
int kda_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a);
int kda_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a);
int kda_mixer_step_f64(const hb_mixer_args_t *a);

#ifdef __cplusplus
}
#endif
#endif
