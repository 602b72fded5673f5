/* deltaproduct.h — Gated DeltaProduct (fla's GatedDeltaProduct): the gated delta rule with NH
 * Householder steps per token (docs/mixers.md#gated-deltaproduct).
 *
 * Per value head j (q/k head h = j / (HV/H)), state S ∈ R^{K×V}, S = h0 (or 0) before the first token.
 * For each token t:
 *   S ← exp(g_t) · S                                        (once; g = NULL: no decay, DeltaProduct)
 *   for i = 0 .. NH−1:  S ← S + β_{t,i} k_{t,i} (v_{t,i} − Sᵀ k_{t,i})ᵀ     (Householder step i)
 *   o_t = Sᵀ (scale · q_t)                                  (after the last step)
 * Each step is (I − β k kᵀ) S + β k vᵀ: with ‖k‖ = 1 and β ∈ (0, 2) the transition is a generalised
 * Householder reflection (eigenvalue 1 − β ∈ (−1, 1): negative eigenvalues for β > 1).
 *
 * Shape letters: B batch, T tokens, NH Householder steps per token, H q/k heads, HV value heads (a
 * multiple of H, GVA), K key dim, V value dim, C chunk length in sub-steps (see below).
 * Shapes (contiguous, row-major):
 *   q (B,T,H,K); k (B,T,NH,H,K); v (B,T,NH,HV,V); beta (B,T,NH,HV); g (B,T,HV); o (B,T,HV,V);
 *   states h0, ht (NS,HV,K,V), NS sequences (below). q and k are l2-normalised by the caller.
 * k, v and beta are exactly fla's interleaved (B, T·NH, ...) tensors: sub-step i of token t is row
 * t·NH + i. The chunked forms run the delta rule (kernels/delta_rule.h) on that sequence of T·NH
 * sub-steps, with q zero except at each token's last sub-step and g zero except at its first, so C
 * counts sub-steps (fla's chunk_gated_delta_product uses 64); hs, the chunk-entry states the chunked
 * forward can save, is the delta rule's for that sequence: (B,HV,NC,K,V), NC = ceil(T·NH/C).
 * Sequences (kernels/seqs.h): the B rows (NS = B), or, with cu_seqlens (N+1) [IN][OPTIONAL] != NULL,
 * N documents packed back to back in one row (B = 1, NS = N): each starts from its own h0 (or 0),
 * nothing crosses its boundaries, its chunks are counted from its first sub-step, and hs holds,
 * document after document, (HV, ceil(len_n·NH/C), K, V) blocks (deltaproduct_chunk_count counts
 * them). cu_seqlens == NULL ignores N.
 * Decode step: q (B,H,K); k (B,NH,H,K); v (B,NH,HV,V); beta (B,NH,HV); g (B,HV); o (B,HV,V);
 * state (B,HV,K,V).
 *
 * Every function exists as _f32 (float) and _f64 (double), both compiled from kernels/deltaproduct.c.
 * All return 0 on success, −1 on a bad argument (checked before any work: negative sizes, NH, H, HV,
 * K, V or C < 1, HV % H != 0, bad cu_seqlens, a required pointer NULL) or when scratch memory could
 * not be allocated. Backward functions ACCUMULATE (+=) into dq/dk/dv/dbeta/dg; any may be NULL (not
 * computed); dg is ignored when g is NULL. No gradient w.r.t. h0; ht receives no gradient.
 */
#ifndef HB_KERNELS_DELTAPRODUCT_H
#define HB_KERNELS_DELTAPRODUCT_H
#include "mixer.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Chunk states per value head that a chunked forward writes to hs: B·ceil(T·NH/C), or
 * Σ_n ceil(len_n·NH/C) when packed (cu_seqlens valid); hs holds HV·K·V times as many reals. C ≥ 1. */
static inline int64_t deltaproduct_chunk_count(const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                                               int64_t NH, int64_t C) {
    if (!cu_seqlens) return B * ((T * NH + C - 1) / C);
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++) n += ((cu_seqlens[i + 1] - cu_seqlens[i]) * NH + C - 1) / C;
    return n;
}

/* Reference forward: the recurrence above, token by token and Householder step by step (parallel over
 * NS·HV). o (B,T,HV,V) [OUT]; ht (NS,HV,K,V) [OUT][OPTIONAL] final states;
 * q (B,T,H,K), k (B,T,NH,H,K), v (B,T,NH,HV,V), beta (B,T,NH,HV) [IN];
 * g (B,T,HV) [IN][OPTIONAL] log decay (≤ 0; NULL = none); h0 (NS,HV,K,V) [IN][OPTIONAL] (NULL = 0);
 * scale: the query scale (fla: K^−1/2); cu_seqlens (N+1) [IN][OPTIONAL], N documents. */
int deltaproduct_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                             const float *beta, const float *g, const float *h0, float scale,
                             const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t NH,
                             int64_t H, int64_t HV, int64_t K, int64_t V);
int deltaproduct_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                             const double *beta, const double *g, const double *h0, double scale,
                             const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t NH,
                             int64_t H, int64_t HV, int64_t K, int64_t V);

/* Reference backward: backprop through time over the T·NH sub-steps (delta_rule_bwd_ref on the
 * interleaved sequence; states checkpointed and recomputed). dq (B,T,H,K), dk (B,T,NH,H,K),
 * dv (B,T,NH,HV,V), dbeta (B,T,NH,HV), dg (B,T,HV) [OUT][OPTIONAL] +=; do_ (B,T,HV,V) [IN] dL/do;
 * the rest as in the forward. */
int deltaproduct_bwd_ref_f32(float *dq, float *dk, float *dv, float *dbeta, float *dg, const float *do_,
                             const float *q, const float *k, const float *v, const float *beta,
                             const float *g, const float *h0, float scale, const int64_t *cu_seqlens,
                             int64_t N, int64_t B, int64_t T, int64_t NH, int64_t H, int64_t HV, int64_t K,
                             int64_t V);
int deltaproduct_bwd_ref_f64(double *dq, double *dk, double *dv, double *dbeta, double *dg,
                             const double *do_, const double *q, const double *k, const double *v,
                             const double *beta, const double *g, const double *h0, double scale,
                             const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t NH,
                             int64_t H, int64_t HV, int64_t K, int64_t V);

/* Chunked forward (WY/UT form of the delta rule over the T·NH sub-steps, chunk C sub-steps, T·NH need
 * not be a multiple of C). Same arguments and results as the reference forward, plus
 * hs [OUT][OPTIONAL] the chunk-entry states (layout above; deltaproduct_chunk_count·HV·K·V reals) to
 * hand to deltaproduct_bwd_chunk with the same C. */
int deltaproduct_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k,
                               const float *v, const float *beta, const float *g, const float *h0,
                               float scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                               int64_t NH, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);
int deltaproduct_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k,
                               const double *v, const double *beta, const double *g, const double *h0,
                               double scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                               int64_t NH, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);

/* Chunked backward. Same arguments and results as the reference backward, plus hs [IN][OPTIONAL] what
 * deltaproduct_fwd_chunk wrote with the same inputs, h0 and C (NULL = recompute), and C. */
int deltaproduct_bwd_chunk_f32(float *dq, float *dk, float *dv, float *dbeta, float *dg, const float *do_,
                               const float *q, const float *k, const float *v, const float *beta,
                               const float *g, const float *h0, const float *hs, float scale,
                               const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t NH,
                               int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);
int deltaproduct_bwd_chunk_f64(double *dq, double *dk, double *dv, double *dbeta, double *dg,
                               const double *do_, const double *q, const double *k, const double *v,
                               const double *beta, const double *g, const double *h0, const double *hs,
                               double scale, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                               int64_t NH, int64_t H, int64_t HV, int64_t K, int64_t V, int64_t C);

/* One decode step for every (batch, value head): the recurrence for a single token, state updated in
 * place. o (B,HV,V) [OUT]; state (B,HV,K,V) [IN/OUT]; q (B,H,K), k (B,NH,H,K), v (B,NH,HV,V),
 * beta (B,NH,HV) [IN]; g (B,HV) [IN][OPTIONAL] log decay (NULL = none). */
int deltaproduct_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                          const float *beta, const float *g, float scale, int64_t B, int64_t NH, int64_t H,
                          int64_t HV, int64_t K, int64_t V);
int deltaproduct_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                          const double *beta, const double *g, double scale, int64_t B, int64_t NH,
                          int64_t H, int64_t HV, int64_t K, int64_t V);

/* The mixer descriptor (kernels/mixer.h) and its entry points, adapters over the functions above. */
extern const hb_mixer_desc_t hb_mixer_deltaproduct;
int deltaproduct_mixer_fwd_chunk_f32(const hb_mixer_args_t *a);
int deltaproduct_mixer_bwd_chunk_f32(const hb_mixer_args_t *a);
int deltaproduct_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a);
int deltaproduct_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a);
int deltaproduct_mixer_step_f32(const hb_mixer_args_t *a);
int deltaproduct_mixer_fwd_chunk_f64(const hb_mixer_args_t *a);
int deltaproduct_mixer_bwd_chunk_f64(const hb_mixer_args_t *a);
int deltaproduct_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a);
int deltaproduct_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a);
int deltaproduct_mixer_step_f64(const hb_mixer_args_t *a);

#ifdef __cplusplus
}
#endif
#endif
