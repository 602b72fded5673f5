/* gemv.h — products of a few rows with a large weight matrix (decode: one token per sequence).
 *
 *   Y[m, n] = Σ_k X[m, k] · W[n, k]  (+ beta · Y[m, n])      m < M ≤ HB_GEMV_MAX_M, n < N, k < K
 *
 * W is N x K with rows contiguous (row n at W + n·ldw): the nn.Linear layout, Y = X · Wᵀ. Every row of W is
 * read once for all M rows of X (a batch-8 decode step streams the weights once, not 8 times), in vectors
 * of the machine's width (-march=native), with 2·M accumulators in registers. The sum over k runs in
 * float32 in a fixed order that depends on K only (two chains over alternate vectors, added, the lanes in
 * order, then the tail), so a product gives the same bits however its columns are split over threads and
 * whatever M (a row's result does not depend on the other rows).
 *
 * hb_gemv_nt_f32: W float32. hb_gemv_nt_bf16: W bfloat16 (the upper 16 bits of a float32; see
 * gemm_bf16_round_bits in gemm_bf16.h), X float32 — bf16 × fp32 products summed in float32, so a decode
 * step reads half the weight bytes. beta = 0 overwrites Y without reading it (a NaN already in Y does not
 * leak). X and W must not overlap Y. M in [1, HB_GEMV_MAX_M] (another M does nothing), N, K ≥ 0; ldx ≥ K,
 * ldw ≥ K, ldy ≥ N (not checked: callers in core/linalg.c pass shapes they checked).
 */
#ifndef HB_KERNELS_GEMV_H
#define HB_KERNELS_GEMV_H
#include <stddef.h>
#include <stdint.h>

#define HB_GEMV_MAX_M 8

void hb_gemv_nt_f32(int64_t M, int64_t N, int64_t K, const float *X, int64_t ldx, const float *W, int64_t ldw,
                    float beta, float *Y, int64_t ldy);
void hb_gemv_nt_bf16(int64_t M, int64_t N, int64_t K, const float *X, int64_t ldx, const uint16_t *W, int64_t ldw,
                     float beta, float *Y, int64_t ldy);

#endif
