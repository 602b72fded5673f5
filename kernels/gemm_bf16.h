/* gemm_bf16.h — the mixed-precision matrix product behind hb_set_matmul_precision(HB_MM_BF16).
 *
 *   C (M,N) = op(A) (M,K) · op(B) (K,N) + beta · C        op(X) = X or Xᵀ (trans_a / trans_b)
 *
 * A and B are float32 in memory; every element is rounded to bfloat16 (round to nearest even, NaN kept
 * as a quiet NaN, values below 2^-126 in magnitude flushed to ±0 — what AVX512_BF16's vcvtne2ps2bf16
 * does) and the products of the rounded values are summed in float32. Layouts follow row-major BLAS:
 * op(A)[i,k] = A[i·lda + k] (trans_a = 0) or A[k·lda + i] (trans_a = 1), likewise B with ldb, and
 * C[i,j] = C[i·ldc + j]. beta = 0 overwrites C without reading it (NaNs already in C do not leak), as
 * BLAS does. C must not overlap A or B.
 *
 * gemm_bf16 uses a cache-blocked AVX512_BF16 kernel (vdpbf16ps) when the CPU has it, spread over the
 * thread pool like core/linalg.c's sgemm (results do not depend on the thread count); on other CPUs it
 * runs cblas_sgemm on bf16-rounded copies of A and B (the same rounding, slower than plain sgemm).
 * float64 has no bf16 path: callers keep float64 products in dgemm.
 * Functions return 0 on success, −1 on a bad argument (checked before any work) or when packing memory
 * could not be allocated (C untouched). gemm_bf16 keeps its packing buffers between calls (one set,
 * reused by one call at a time; a concurrent call allocates its own): see gemm_bf16_release_buffers.
 * M, N, K ≥ 0; lda, ldb, ldc at least the row length they index.
 */
#ifndef HB_KERNELS_GEMM_BF16_H
#define HB_KERNELS_GEMM_BF16_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The fast product (see above). C [OUT] (or IN/OUT when beta ≠ 0); A, B [IN]. */
int gemm_bf16(float *C, const float *A, const float *B, int trans_a, int trans_b, float beta,
              int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc);

/* The reference: a triple loop over the bf16-rounded values with a double accumulator, rounded to
 * float once at the end (C = float(Σ_k a·b + beta·C)). Same arguments and contract as gemm_bf16. */
int gemm_bf16_ref(float *C, const float *A, const float *B, int trans_a, int trans_b, float beta,
                  int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc);

/* x rounded to bfloat16 as the product sees it, returned as the float it stands for (exact). */
float gemm_bf16_round(float x);

/* dst[i] = the bfloat16 bits of src[i] rounded as gemm_bf16_round rounds it (the weights that decode's
 * bf16 matrix-vector products read: kernels/gemv.h). */
void gemm_bf16_round_bits(uint16_t *dst, const float *src, size_t n);

/* 1 when gemm_bf16 runs the AVX512_BF16 kernel (the CPU has avx512f/bw/vl/bf16 and it is allowed),
 * 0 when it runs the portable fallback. */
int gemm_bf16_native(void);

/* Free the packing buffers gemm_bf16 keeps between calls (up to ~6 MiB per thread for the largest
 * products; reallocated on the next call). A no-op while a product is running. */
void gemm_bf16_release_buffers(void);

/* Tests: allow (1, the default) or forbid (0) the AVX512_BF16 kernel, to exercise the fallback on any
 * CPU. Returns the previous setting. Not thread-safe against products running concurrently. */
int gemm_bf16_allow_native(int allow);

#ifdef __cplusplus
}
#endif
#endif
