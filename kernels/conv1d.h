/* conv1d.h — fla's ShortConvolution: a causal depthwise 1-D convolution with optional SiLU.
 *
 *   z[t,c] = b[c] + Σ_{i=0}^{W−1} w[c,i] · x[t−(W−1)+i, c]      (tap W−1 multiplies the current token)
 *   y[t,c] = act(z[t,c]),   act = identity (act = 0) or silu (act = 1)
 *
 * x[τ < 0] is 0, or row W−1+τ of the optional cache (NS,W−1,D) that holds the W−1 inputs before the
 * sequence, oldest first. Shapes (contiguous, row-major): x, y (B,T,D); w (D,W) (the [D,1,W]
 * parameter flattened); b (D) optional; caches (NS,W−1,D).
 * Sequences (kernels/seqs.h): the B rows (NS = B), or, with cu_seqlens (N+1) [IN][OPTIONAL] != NULL,
 * N documents packed back to back in one row (B = 1, NS = N): τ counts from each document's first
 * token, so no tap reaches across a boundary (the taps before a document read its cache row, or 0).
 * cu_seqlens == NULL ignores N. The decode step has no packed form.
 * Every function exists as _f32 (float) and _f64 (double); see kernels/kreal.h.
 * Functions return 0 on success, −1 on allocation failure or a bad argument (W < 1, negative sizes,
 * bad cu_seqlens).
 */
#ifndef HB_KERNELS_CONV1D_H
#define HB_KERNELS_CONV1D_H
#include <stdint.h>

/* Forward over the sequences.
 * y (B,T,D) [OUT]; x (B,T,D) [IN]; w (D,W) [IN]; b (D) [IN][OPTIONAL] (NULL = no bias);
 * act 0 = none, 1 = silu; cache_in (NS,W−1,D) [IN][OPTIONAL] inputs before t = 0 (NULL = zeros);
 * cu_seqlens (N+1) [IN][OPTIONAL] packed document boundaries, N documents. */
int conv1d_fwd_f32(float *y, const float *x, const float *w, const float *b, int act, const float *cache_in,
                   const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D, int64_t W);
int conv1d_fwd_f64(double *y, const double *x, const double *w, const double *b, int act, const double *cache_in,
                   const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t D, int64_t W);

/* Backward: recomputes the pre-activation from the inputs.
 * dx (B,T,D) [OUT][OPTIONAL], dw (D,W) [OUT][OPTIONAL], db (D) [OUT][OPTIONAL]: all ACCUMULATED (+=);
 * dw and db are reduced over the sequences in a fixed order (deterministic, thread-count independent);
 * dy (B,T,D) [IN] gradient w.r.t. y; the rest as in conv1d_fwd. No gradient for cache_in. */
int conv1d_bwd_f32(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                   const float *b, int act, const float *cache_in, const int64_t *cu_seqlens, int64_t N,
                   int64_t B, int64_t T, int64_t D, int64_t W);
int conv1d_bwd_f64(double *dx, double *dw, double *db, const double *dy, const double *x, const double *w,
                   const double *b, int act, const double *cache_in, const int64_t *cu_seqlens, int64_t N,
                   int64_t B, int64_t T, int64_t D, int64_t W);

/* One decode step: y = act(b + Σ_{i<W−1} w[:,i] cache[i] + w[:,W−1] x), then the cache shifts by
 * one row and its last row becomes x.
 * y (B,D) [OUT]; cache (B,W−1,D) [IN/OUT] the last W−1 inputs, oldest first, updated in place;
 * x (B,D) [IN]; w (D,W) [IN]; b (D) [IN][OPTIONAL]. */
int conv1d_step_f32(float *y, float *cache, const float *x, const float *w, const float *b, int act,
                    int64_t B, int64_t D, int64_t W);
int conv1d_step_f64(double *y, double *cache, const double *x, const double *w, const double *b, int act,
                    int64_t B, int64_t D, int64_t W);

/* The decode cache after a prefilled sequence: cache[b,j] = x[b, len_b−(W−1)+j] of sequence b, zeros
 * where that index is < 0 (len_b < W−1; a prefill that itself continued a cache should then use
 * conv1d_step instead). cache (NS,W−1,D) [OUT]; x (B,T,D) [IN]; cu_seqlens, N as in conv1d_fwd. */
int conv1d_cache_from_seq_f32(float *cache, const float *x, const int64_t *cu_seqlens, int64_t N, int64_t B,
                              int64_t T, int64_t D, int64_t W);
int conv1d_cache_from_seq_f64(double *cache, const double *x, const int64_t *cu_seqlens, int64_t N, int64_t B,
                              int64_t T, int64_t D, int64_t W);

#endif
