/* delta_rule.h — the (gated) delta rule of DeltaNet and GatedDeltaNet
 * (docs/mixers.md#deltanet, docs/mixers.md#gated-deltanet, docs/mixers.md#chunked-forms).
 *
 * Per value head j (q/k head h = j / (HV/H)), state S ∈ R^{K×V}, S_{−1} = h0 (or 0):
 *   S'_t = exp(g_t) · S_{t−1}                    (decay first; g = NULL means no decay: DeltaNet)
 *   u_t  = β_t · (v_t − S'_tᵀ k_t)
 *   S_t  = S'_t + k_t u_tᵀ
 *   o_t  = S_tᵀ (scale · q_t)
 *
 * Shapes (contiguous, row-major): q, k (B,T,H,K) — already l2-normalised by the caller, the kernel
 * does not normalise; v, o (B,T,HV,V); beta, g (B,T,HV); states h0, ht (NS,HV,K,V); chunk states
 * hs (B,HV,NC,K,V) with NC = ceil(T/C). HV must be a multiple of H (GVA; HV == H is the usual
 * case).
 * Sequences (kernels/seqs.h): the B rows (NS = B), or, with cu_seqlens (N+1) [IN][OPTIONAL] != NULL,
 * N documents packed back to back in one row (B = 1, NS = N): each starts from its own h0 (or 0), its
 * chunks are counted from its first token and nothing crosses its boundaries; hs then holds, document
 * after document, (HV, ceil(len_n/C), K, V) blocks (delta_rule_chunk_count below counts them).
 * cu_seqlens == NULL ignores N and keeps every result exactly as before packing existed.
 * Decode: q, k (B,H,K); v, o (B,HV,V); beta, g (B,HV); state (B,HV,K,V).
 * Every function exists as _f32 (float) and _f64 (double); see kernels/kreal.h.
 * All functions return 0 on success, −1 on a bad argument (checked before any work) or when scratch
 * memory could not be allocated (bad arguments: negative sizes, HV % H != 0, C < 1, bad cu_seqlens, a
 * required pointer NULL). Backward functions ACCUMULATE (+=) into dq/dk/dv/dbeta/dg; any of
 * them may be NULL (not computed). Gradients w.r.t. h0 are not computed; ht receives no gradient.
 */
#ifndef HB_KERNELS_DELTA_RULE_H
#define HB_KERNELS_DELTA_RULE_H
#include "mixer.h"
#include "seqs.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Chunk states a chunked forward writes to hs per value head: B·ceil(T/C), or Σ_n ceil(len_n/C) when
 * packed (cu_seqlens already valid); hs has HV·K·V times as many reals. C ≥ 1. */
static inline int64_t delta_rule_chunk_count(const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                                             int64_t C) {
    return hb_seq_chunks(cu_seqlens, N, B, T, C);
}

/* Reference forward: the per-timestep recurrence. Parallel over NS·HV.
 * o (B,T,HV,V) [OUT]; ht (NS,HV,K,V) [OUT][OPTIONAL] final states;
 * q, k (B,T,H,K) [IN]; v (B,T,HV,V) [IN]; beta (B,T,HV) [IN];
 * g (B,T,HV) [IN][OPTIONAL] log decay (≤ 0; NULL = no decay);
 * h0 (NS,HV,K,V) [IN][OPTIONAL] initial states (NULL = 0);
 * scale: the query scale (usually K^−1/2);
 * cu_seqlens (N+1) [IN][OPTIONAL] packed document boundaries (kernels/seqs.h), N documents. */
int delta_rule_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                           const float *beta, const float *g, const float *h0, float scale,
                           const int64_t *cu_seqlens, int64_t N,
                           int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V);
int delta_rule_fwd_ref_f64(double *o, double *ht, const double *q, const double *k,
                           const double *v, const double *beta, const double *g,
                           const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                           int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V);

/* Reference backward: backprop through time over the recurrence (states are checkpointed every
 * 64 steps and recomputed segment by segment). Parallel over NS·H (each item loops over the value
 * heads of its group, so the shared dq/dk are accumulated race-free).
 * dq, dk (B,T,H,K) [OUT][OPTIONAL] +=; dv (B,T,HV,V) [OUT][OPTIONAL] +=;
 * dbeta (B,T,HV) [OUT][OPTIONAL] +=; dg (B,T,HV) [OUT][OPTIONAL] += (ignored when g is NULL);
 * do_ (B,T,HV,V) [IN] gradient of the loss w.r.t. o; the other inputs as in the forward. */
int delta_rule_bwd_ref_f32(float *dq, float *dk, float *dv, float *dbeta, float *dg,
                           const float *do_, const float *q, const float *k, const float *v,
                           const float *beta, const float *g, const float *h0, float scale,
                           const int64_t *cu_seqlens, int64_t N,
                           int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V);
int delta_rule_bwd_ref_f64(double *dq, double *dk, double *dv, double *dbeta, double *dg,
                           const double *do_, const double *q, const double *k,
                           const double *v, const double *beta, const double *g,
                           const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                           int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V);

/* Chunked forward, WY/UT form (docs/mixers.md#chunked-forms), chunk length C ≥ 1 (callers use 64;
 * counted from each sequence's first token, lengths need not be multiples of C). Parallel over NS·HV.
 * Same arguments and results as delta_rule_fwd_ref, plus hs [OUT][OPTIONAL]
 * (delta_rule_chunk_count(...)·HV·K·V reals, layout above): the state entering each chunk; pass it to
 * delta_rule_bwd_chunk (same C and cu_seqlens) to spare the backward the recomputation of the state
 * pass. */
int delta_rule_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k,
                             const float *v, const float *beta, const float *g,
                             const float *h0, float scale, const int64_t *cu_seqlens, int64_t N,
                             int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);
int delta_rule_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q,
                             const double *k, const double *v, const double *beta,
                             const double *g, const double *h0, double scale, const int64_t *cu_seqlens, int64_t N,
                             int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);

/* Chunked backward: walks the chunks backwards, recomputing the WY quantities of each chunk from
 * the inputs. Parallel over NS·H (value heads of a group looped inside). Same arguments and results
 * as delta_rule_bwd_ref, plus hs [IN][OPTIONAL] the chunk states written by
 * delta_rule_fwd_chunk with the same C, h0 and inputs (NULL = recompute them here), and C.
 * (The mixer entry points of hb_mixer_delta_rule also save each chunk's T = (I + A)^-1 and D after the chunk
 * states — saved_numel counts both — and their backward reads them instead of recomputing: the same bits.) */
int delta_rule_bwd_chunk_f32(float *dq, float *dk, float *dv, float *dbeta, float *dg,
                             const float *do_, const float *q, const float *k, const float *v,
                             const float *beta, const float *g, const float *h0,
                             const float *hs, float scale, const int64_t *cu_seqlens, int64_t N,
                             int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);
int delta_rule_bwd_chunk_f64(double *dq, double *dk, double *dv, double *dbeta, double *dg,
                             const double *do_, const double *q, const double *k,
                             const double *v, const double *beta, const double *g,
                             const double *h0, const double *hs, double scale, const int64_t *cu_seqlens, int64_t N,
                             int64_t B, int64_t T, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);

/* One decode step for every (batch, value head): the recurrence above for a single token.
 * o (B,HV,V) [OUT]; state (B,HV,K,V) [IN/OUT] updated in place;
 * q, k (B,H,K) [IN]; v (B,HV,V) [IN]; beta (B,HV) [IN];
 * g (B,HV) [IN][OPTIONAL] log decay (NULL = no decay). */
int delta_rule_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                        const float *beta, const float *g, float scale,
                        int64_t B, int64_t H, int64_t HV, int64_t K, int64_t V);
int delta_rule_step_f64(double *o, double *state, const double *q, const double *k,
                        const double *v, const double *beta, const double *g, double scale,
                        int64_t B, int64_t H, int64_t HV, int64_t K, int64_t V);

/* The mixer descriptor (kernels/mixer.h) and its entry points, adapters over the functions above. */
extern const hb_mixer_desc_t hb_mixer_delta_rule;
int delta_rule_mixer_fwd_chunk_f32(const hb_mixer_args_t *a);
int delta_rule_mixer_bwd_chunk_f32(const hb_mixer_args_t *a);
int delta_rule_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a);
int delta_rule_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a);
int delta_rule_mixer_step_f32(const hb_mixer_args_t *a);
int delta_rule_mixer_fwd_chunk_f64(const hb_mixer_args_t *a);
int delta_rule_mixer_bwd_chunk_f64(const hb_mixer_args_t *a);
int delta_rule_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a);
int delta_rule_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a);
int delta_rule_mixer_step_f64(const hb_mixer_args_t *a);

#ifdef __cplusplus
}
#endif
#endif
