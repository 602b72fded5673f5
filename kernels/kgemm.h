/* kgemm.h — the float32 block product every kernel calls (kreal.h maps kgemm to it).
 *
 * hb_kgemm_f32 has cblas_sgemm's signature and result. It differs in one case: a row-major product
 * A·Bᵀ (NoTrans, Trans) small enough for OpenBLAS's small-matrix kernels (M·N·K ≤ 10⁶, N·K ≤ 16384)
 * first transposes B into a per-thread buffer and runs A·(Bᵀ) as NoTrans × NoTrans. The kernels' block
 * products are such shapes (C×C, C×D and D×D blocks with C = 64 and D ≤ 128), and on OpenBLAS's
 * SkylakeX kernels (AVX-512) the NoTrans × Trans form of them ran at 72–110 GFLOP/s against 133–158 for
 * transpose + NoTrans × NoTrans, the transposition included (64×64×64: 5.48 → 3.52 µs; one thread,
 * docs/performance.md, "Why some kernels are below 50% of sgemm"); on the Haswell (AVX2) kernels both forms ran alike. The
 * result is the same product summed in another order (not bit-identical to cblas_sgemm's NT kernel),
 * and the same for every thread count and call site. Every other case goes to cblas_sgemm unchanged. */
#ifndef HB_KGEMM_H
#define HB_KGEMM_H
#include <cblas.h>
#include <stdint.h>

void hb_kgemm_f32(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* dst (cols × rows, row stride ldd) = the transpose of src (rows × cols, row stride lds). 16×16 tiles
 * in registers where AVX-512 is compiled in, element by element otherwise and at the edges. */
void hb_transpose_f32(float *restrict dst, int64_t ldd, const float *restrict src, int64_t lds, int64_t rows,
                      int64_t cols);

#endif
