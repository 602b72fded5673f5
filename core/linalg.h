/* linalg.h — matrix products on hb tensors through BLAS (and the bf16 product of kernels/gemm_bf16.h).
 *
 * Differentiable (records autograd nodes like ops.h); results are new references, NULL on error.
 */
#ifndef HB_LINALG_H
#define HB_LINALG_H
#include "tensor.h"

/* a [..., M, K] @ b [..., K, N] (batch dims broadcast; a 2-D b is shared by every batch). */
hb_tensor_t *hb_matmul(hb_tensor_t *a, hb_tensor_t *b);
/* x [..., in] · W [out, in]ᵀ (+ bias [out]): the linear layer, no copy of W. bias may be NULL. */
hb_tensor_t *hb_linear(hb_tensor_t *x, hb_tensor_t *w, hb_tensor_t *bias);
/* Precision of float32 matrix products (hb_matmul, hb_linear, and their backward products):
 * HB_MM_FP32 (default) calls sgemm; HB_MM_BF16 rounds both operands to bfloat16 and sums in float32
 * (kernels/gemm_bf16.h: AVX512_BF16 when the CPU has it, else an emulation). Exception, decode: a
 * product of at most 8 rows with a weight W used as Wᵀ (hb_linear; W's storage ≥ 2^16 floats) multiplies
 * a bfloat16 copy of W — kept with W's storage, made on first use and remade after any in-place write —
 * with the float32 activations unrounded (kernels/gemv.h), so a decode step reads 2 bytes per weight; the
 * copy costs half of W's bytes again in memory. Process-wide; float64 products always use dgemm, and the
 * mixer kernels and attention keep float32. set returns 0, or -1 (error set, setting unchanged) for a
 * value outside the enum. */
typedef enum { HB_MM_FP32 = 0, HB_MM_BF16 = 1 } hb_mm_precision_t;
int hb_set_matmul_precision(hb_mm_precision_t p);
hb_mm_precision_t hb_matmul_precision(void);

#endif
