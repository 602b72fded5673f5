/* attention.h — causal softmax attention (flash-attn contract, docs/mixers.md#softmax-attention) and RoPE.
 *
 * Shapes (all contiguous row-major, int64_t dimensions):
 *   q, o, dq, dout : (B,T,H,D)        k, v, dk, dv : (B,T,Hkv,D)        lse : (B,H,T)
 *   decode: q, o : (B,H,D)            kc, vc : (B,Tmax,Hkv,D)
 * GQA: query head h reads kv head h / (H/Hkv) (consecutive groups); H must be a multiple of Hkv.
 * window: 0 = full causal; w > 0 = keys tau with t-(w-1) <= tau <= t (flash-attn window (w-1,0)).
 * scale: callers pass 1/sqrt(D).
 * Sequences (kernels/seqs.h): cu_seqlens (N+1) [IN][OPTIONAL] == NULL attends within each of the B rows;
 * != NULL holds N documents packed back to back in one row (B = 1): a query attends only to the keys
 * of its own document (block-diagonal causal), t and tau counting from the document's first token,
 * so a sliding window restarts at every document; lse keeps its (B,H,T) layout. RoPE positions
 * restart at every document the same way. N is ignored without cu_seqlens; the decode step has no
 * packed form.
 * Every function returns 0 on success, -1 on a bad argument (checked before any work; bad cu_seqlens
 * included) or when a
 * scratch allocation fails. Backward functions ACCUMULATE (+=) into dq/dk/dv/dx; any gradient
 * pointer may be NULL (that gradient is skipped). Each function exists as _f32 (float) and _f64
 * (double); both are compiled from kernels/attention.c.
 */
#ifndef HB_ATTENTION_H
#define HB_ATTENTION_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Naive reference forward (tests only; serial; O(T) scratch per row, O(T^2) time).
 * o   [OUT] (B,T,H,D)          lse [OUT][OPTIONAL] (B,H,T) log-sum-exp of the scaled scores
 * q   [IN]  (B,T,H,D)          k, v [IN] (B,T,Hkv,D) */
int attn_fwd_ref_f32(float *o, float *lse, const float *q, const float *k, const float *v, float scale,
                     int64_t window, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                     int64_t Hkv, int64_t D);
int attn_fwd_ref_f64(double *o, double *lse, const double *q, const double *k, const double *v, double scale,
                     int64_t window, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                     int64_t Hkv, int64_t D);

/* Naive reference backward (tests only; serial), recomputing the softmax row by row.
 * dq [OUT][OPTIONAL] (B,T,H,D) +=     dk, dv [OUT][OPTIONAL] (B,T,Hkv,D) +=
 * q [IN] (B,T,H,D)   k, v [IN] (B,T,Hkv,D)   dout [IN] (B,T,H,D) gradient of the loss w.r.t. o */
int attn_bwd_ref_f32(float *dq, float *dk, float *dv, const float *q, const float *k, const float *v,
                     const float *dout, float scale, int64_t window, const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D);
int attn_bwd_ref_f64(double *dq, double *dk, double *dv, const double *q, const double *k, const double *v,
                     const double *dout, double scale, int64_t window, const int64_t *cu_seqlens, int64_t N,
                     int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D);

/* Tiled flash-attention forward: query tiles x key tiles of size `tile` (callers use 64) with an
 * online softmax; fully masked tiles are never visited. Scratch O(B*H*tile*(tile+D)), never T x T.
 * Parallel over sequences x H.
 * o   [OUT] (B,T,H,D)          lse [OUT][OPTIONAL] (B,H,T) (save it for attn_bwd)
 * q   [IN]  (B,T,H,D)          k, v [IN] (B,T,Hkv,D) */
int attn_fwd_f32(float *o, float *lse, const float *q, const float *k, const float *v, float scale,
                 int64_t window, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                 int64_t Hkv, int64_t D, int64_t tile);
int attn_fwd_f64(double *o, double *lse, const double *q, const double *k, const double *v, double scale,
                 int64_t window, const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H,
                 int64_t Hkv, int64_t D, int64_t tile);

/* Tiled FlashAttention-2 backward. Recomputes P = exp(scale*q.k - lse) tile by tile.
 * Parallel over sequences x Hkv: each work item owns one kv head and loops over its group's query heads,
 * so GQA gradients are race-free and identical for any thread count.
 * dq [OUT][OPTIONAL] (B,T,H,D) +=     dk, dv [OUT][OPTIONAL] (B,T,Hkv,D) +=
 * q [IN] (B,T,H,D)   k, v [IN] (B,T,Hkv,D)   o [IN] (B,T,H,D) forward output
 * lse [IN] (B,H,T) from attn_fwd (same scale/window)   dout [IN] (B,T,H,D) */
int attn_bwd_f32(float *dq, float *dk, float *dv, const float *q, const float *k, const float *v,
                 const float *o, const float *lse, const float *dout, float scale, int64_t window,
                 const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                 int64_t D, int64_t tile);
int attn_bwd_f64(double *dq, double *dk, double *dv, const double *q, const double *k, const double *v,
                 const double *o, const double *lse, const double *dout, double scale, int64_t window,
                 const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                 int64_t D, int64_t tile);

/* One decode step: the new token of every batch row is at position `pos` (0-based) and the caller
 * has already written its k, v into the cache; keys 0..pos (within the window) are attended.
 * Position p is at slot p mod Tmax: a cache of Tmax > pos slots holds every position, and with a
 * window 0 < window <= Tmax the cache may be a ring of the last Tmax positions (pos >= Tmax allowed).
 * Returns -1 for pos >= Tmax without such a window. Parallel over B*Hkv.
 * o [OUT] (B,H,D)   q [IN] (B,H,D)   kc, vc [IN] (B,Tmax,Hkv,D) */
int attn_decode_step_f32(float *o, const float *q, const float *kc, const float *vc, float scale,
                         int64_t window, int64_t pos, int64_t B, int64_t Tmax, int64_t H,
                         int64_t Hkv, int64_t D);
int attn_decode_step_f64(double *o, const double *q, const double *kc, const double *vc,
                         double scale, int64_t window, int64_t pos, int64_t B, int64_t Tmax,
                         int64_t H, int64_t Hkv, int64_t D);

/* RoPE, GPT-NeoX rotate-half over the full head dim D (even), positions pos0 + t
 * (docs/mixers.md#softmax-attention), t counted from the first token of the token's row, or of its
 * document with cu_seqlens (N+1) [OPTIONAL]:
 * inv_freq[j] = 1/theta^(2j/D), ang = pos*inv_freq[j], all in the kernel's real type.
 * out [OUT] (B,T,H,D), may equal x (in place)   x [IN] (B,T,H,D)   theta: rope base (e.g. 10000) */
int rope_fwd_f32(float *out, const float *x, double theta, int64_t pos0, const int64_t *cu_seqlens, int64_t N,
                 int64_t B, int64_t T, int64_t H, int64_t D);
int rope_fwd_f64(double *out, const double *x, double theta, int64_t pos0, const int64_t *cu_seqlens, int64_t N,
                 int64_t B, int64_t T, int64_t H, int64_t D);

/* RoPE backward (the transpose rotation): dx += R^T dout.
 * dx [OUT] (B,T,H,D) +=   dout [IN] (B,T,H,D); must not alias dx. */
int rope_bwd_f32(float *dx, const float *dout, double theta, int64_t pos0, const int64_t *cu_seqlens, int64_t N,
                 int64_t B, int64_t T, int64_t H, int64_t D);
int rope_bwd_f64(double *dx, const double *dout, double theta, int64_t pos0, const int64_t *cu_seqlens, int64_t N,
                 int64_t B, int64_t T, int64_t H, int64_t D);

#ifdef __cplusplus
}
#endif
#endif
