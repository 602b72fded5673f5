/* ssd.h — Mamba-2's state space duality (SSD) scan: linear attention with one scalar decay per
 * (token, head) ("simple GLA"), q/k shared by groups of heads.
 *
 * Per head h of group γ(h), state S ∈ R^{K×V}, S_{−1} = h0 (or 0), g_t ≤ 0 the log decay:
 *   S_t = e^{g_t} · S_{t−1} + k_t v_tᵀ
 *   o_t = S_tᵀ (scale · q_t)
 * Mamba-2 (fla's Mamba2 layer) in these terms: q = C, k = B (the input-dependent SSM matrices of the
 * group), v = Δ ⊙ x, g = Δ · A with Δ = softplus(dt + dt_bias) (clamped to dt_limit) and
 * A = −exp(A_log), scale = 1; the D skip (y = o + D ⊙ x) and everything else is the caller's.
 *
 * Shape letters: B batch, T time, H heads, G q/k groups (H a multiple of G, R = H/G heads per group),
 * K state size (Mamba's N, `state_size`), V head dim (Mamba's P, `head_dim`), C chunk length,
 * N number of packed documents (kernels/seqs.h), NS the number of sequences (B, or N when packed).
 * Layouts (contiguous, row-major): q, k (B,T,G,K); v, o (B,T,H,V); g (B,T,H);
 * states h0, ht, dh0, dht (NS,H,K,V) — S[i][j] couples state channel i (k, q) with value channel j:
 * fla's Mamba-2 `recurrent_state` / ssm_state (NS,H,V,K) is its transpose;
 * chunk states hs (NCH,H,K,V), NCH = ssd_chunk_count(...) (below): chunk c of sequence n is row
 * n·ceil(T/C) + c (padded), or Σ_{m<n} ceil(len_m/C) + c (packed).
 * Group of head h (tiled_groups): 0 → h / R (mamba_ssm's kernels, fla's decode path, published Mamba-2
 * checkpoints); 1 → h mod G (fla v0.5.2's torch_forward prefill, which tiles B and C with .repeat).
 * Packed sequences: cu_seqlens (N+1) [IN][OPTIONAL] as in kernels/seqs.h (B = 1; states per document).
 *
 * Every function exists as _f32 and _f64 (compiled from kernels/ssd.c). All return 0 on success, −1 on
 * a bad argument (checked before any work) or when scratch memory could not be allocated.
 * Dimensions: B, T ≥ 0; H, G, K, V, C ≥ 1; H % G == 0. Results do not depend on the thread count.
 * Backward functions ACCUMULATE (+=) into dq, dk, dv, dg, dh0; any of them may be NULL (skipped).
 *
 * FLOPs of the chunked form per sequence, R = H/G, 2 per multiply-add, the causal half of C×C blocks
 * counted as T·(C+1)·D, element-wise work not counted:
 *   forward   H·(4·T·K·V + T·(C+1)·V) + G·T·(C+1)·K          (Q·S and Kᵀ·V per head, (QKᵀ⊙L)·V per
 *                                                              head, QKᵀ once per group)
 *   backward  H·(8·T·K·V + 2·T·(C+1)·V) + 3·G·T·(C+1)·K      (hs given; +2·T·K·V per head without it)
 */
#ifndef HB_KERNELS_SSD_H
#define HB_KERNELS_SSD_H
#include "mixer.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of chunk states (rows of hs) for chunk length C: B·ceil(T/C), or Σ_n ceil(len_n/C) when
 * packed. 0 for bad arguments. */
static inline int64_t ssd_chunk_count(const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                                      int64_t C) {
    if (C < 1 || B < 0 || T < 0) return 0;
    if (!cu_seqlens) return B * ((T + C - 1) / C);
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++) n += (cu_seqlens[i + 1] - cu_seqlens[i] + C - 1) / C;
    return n;
}

/* Reference forward: the per-timestep recurrence. Parallel over (sequence, head).
 * o (B,T,H,V) [OUT]; ht (NS,H,K,V) [OUT][OPTIONAL] final states;
 * q, k (B,T,G,K) [IN]; v (B,T,H,V) [IN]; g (B,T,H) [IN] log decays (≤ 0);
 * h0 (NS,H,K,V) [IN][OPTIONAL] initial states (NULL = 0). */
int ssd_fwd_ref_f32(float *o, float *ht, const float *q, const float *k, const float *v,
                    const float *g, const float *h0, float scale, int tiled_groups,
                    const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                    int64_t G, int64_t K, int64_t V);
int ssd_fwd_ref_f64(double *o, double *ht, const double *q, const double *k, const double *v,
                    const double *g, const double *h0, double scale, int tiled_groups,
                    const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                    int64_t G, int64_t K, int64_t V);

/* Reference backward: backprop through time, states checkpointed every ~sqrt(T) steps and recomputed
 * segment by segment. Parallel over (sequence, group): the heads of a group are walked inside, so the
 * shared dq, dk accumulate race-free and in a fixed order.
 * dq, dk (B,T,G,K) [OUT][OPTIONAL] +=; dv (B,T,H,V) [OUT][OPTIONAL] +=; dg (B,T,H) [OUT][OPTIONAL] +=;
 * dh0 (NS,H,K,V) [OUT][OPTIONAL] += dL/dh0;
 * do_ (B,T,H,V) [IN] dL/do; dht (NS,H,K,V) [IN][OPTIONAL] dL/dht (NULL = 0);
 * the other inputs as in the forward. */
int ssd_bwd_ref_f32(float *dq, float *dk, float *dv, float *dg, float *dh0, const float *do_,
                    const float *dht, const float *q, const float *k, const float *v,
                    const float *g, const float *h0, float scale, int tiled_groups,
                    const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                    int64_t G, int64_t K, int64_t V);
int ssd_bwd_ref_f64(double *dq, double *dk, double *dv, double *dg, double *dh0,
                    const double *do_, const double *dht, const double *q, const double *k,
                    const double *v, const double *g, const double *h0, double scale,
                    int tiled_groups, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T,
                    int64_t H, int64_t G, int64_t K, int64_t V);

/* Chunked forward (SSD chunked scan, chunk length C, 64 by default; T and the documents need not be
 * multiples of C). Same arguments and results as ssd_fwd_ref, plus
 * hs (NCH,H,K,V) [OUT][OPTIONAL]: the state entering every chunk, for ssd_bwd_chunk with the same C. */
int ssd_fwd_chunk_f32(float *o, float *ht, float *hs, const float *q, const float *k,
                      const float *v, const float *g, const float *h0, float scale,
                      int tiled_groups, const int64_t *cu_seqlens, int64_t N, int64_t B,
                      int64_t T, int64_t H, int64_t G, int64_t K, int64_t V, int64_t C);
int ssd_fwd_chunk_f64(double *o, double *ht, double *hs, const double *q, const double *k,
                      const double *v, const double *g, const double *h0, double scale,
                      int tiled_groups, const int64_t *cu_seqlens, int64_t N, int64_t B,
                      int64_t T, int64_t H, int64_t G, int64_t K, int64_t V, int64_t C);

/* Chunked backward: walks the chunks of each sequence in reverse. Same arguments and results as
 * ssd_bwd_ref, plus hs (NCH,H,K,V) [IN][OPTIONAL] the chunk states written by ssd_fwd_chunk with the
 * same C, h0 and inputs (NULL = recomputed here), and C. */
int ssd_bwd_chunk_f32(float *dq, float *dk, float *dv, float *dg, float *dh0, const float *do_,
                      const float *dht, const float *q, const float *k, const float *v,
                      const float *g, const float *h0, const float *hs, float scale,
                      int tiled_groups, const int64_t *cu_seqlens, int64_t N, int64_t B,
                      int64_t T, int64_t H, int64_t G, int64_t K, int64_t V, int64_t C);
int ssd_bwd_chunk_f64(double *dq, double *dk, double *dv, double *dg, double *dh0,
                      const double *do_, const double *dht, const double *q, const double *k,
                      const double *v, const double *g, const double *h0, const double *hs,
                      double scale, int tiled_groups, const int64_t *cu_seqlens, int64_t N,
                      int64_t B, int64_t T, int64_t H, int64_t G, int64_t K, int64_t V, int64_t C);

/* One decode step for every (batch, head): S ← e^{g} S + k vᵀ, o = Sᵀ (scale q).
 * o (B,H,V) [OUT]; state (B,H,K,V) [IN/OUT] updated in place;
 * q, k (B,G,K) [IN]; v (B,H,V) [IN]; g (B,H) [IN]. */
int ssd_step_f32(float *o, float *state, const float *q, const float *k, const float *v,
                 const float *g, float scale, int tiled_groups, int64_t B, int64_t H, int64_t G,
                 int64_t K, int64_t V);
int ssd_step_f64(double *o, double *state, const double *q, const double *k, const double *v,
                 const double *g, double scale, int tiled_groups, int64_t B, int64_t H, int64_t G,
                 int64_t K, int64_t V);

/* The mixer descriptor (kernels/mixer.h; hb.ssd{q, k, v, g, scale = 1, tiled_groups = 0} and
 * hb.ssd_step{state, ...}) and its entry points, adapters over the functions above: dims
 * "B T H G K V", state (B,H,K,V), chunk 64, the chunk states saved for the chunked backward;
 * tiled_groups is read as a flag (nonzero = 1). */
extern const hb_mixer_desc_t hb_mixer_ssd;
int ssd_mixer_fwd_chunk_f32(const hb_mixer_args_t *a);
int ssd_mixer_bwd_chunk_f32(const hb_mixer_args_t *a);
int ssd_mixer_fwd_recurrent_f32(const hb_mixer_args_t *a);
int ssd_mixer_bwd_recurrent_f32(const hb_mixer_args_t *a);
int ssd_mixer_step_f32(const hb_mixer_args_t *a);
int ssd_mixer_fwd_chunk_f64(const hb_mixer_args_t *a);
int ssd_mixer_bwd_chunk_f64(const hb_mixer_args_t *a);
int ssd_mixer_fwd_recurrent_f64(const hb_mixer_args_t *a);
int ssd_mixer_bwd_recurrent_f64(const hb_mixer_args_t *a);
int ssd_mixer_step_f64(const hb_mixer_args_t *a);

#ifdef __cplusplus
}
#endif
#endif
