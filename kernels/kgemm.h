/* kgemm.h — the float32 block product every kernel calls (kreal.h maps kgemm to it).
 *
 * hb_kgemm_f32 has cblas_sgemm's signature and result (row-major or column-major, any transposition, alpha,
 * beta; beta = 0 never reads C). Row-major products of the kernels' block sizes (M·N·K ≤ 2^22; with op(B) = Bᵀ
 * also N·K ≤ 16384) run on its own register-blocked kernel (kgemm.c: 8 rows × 32 columns of C in AVX-512
 * registers, 6 × 16 with AVX2), op(B) = Bᵀ first transposed into a per-thread buffer. Two reasons:
 *   - threads: OpenBLAS takes a lock around the work buffer of every sgemm call (blas_memory_alloc), and a chunked
 *     kernel on 16 threads makes tens of thousands of 64×64 products a second; with it the delta-rule backward's
 *     12 (batch, head) items ran 2.75× slower each at 16 threads than alone (docs/performance.md);
 *   - speed: the blocks of one delta-rule chunk ran at 177–204 GFLOP/s on one Zen 5 core against 85–90 for
 *     OpenBLAS's Haswell kernels and 168–190 for its AVX-512 small-matrix kernels.
 * Every element is summed the same way — acc = fma(a_ik, b_kj, acc) for k = 0..K−1, then C = fma(beta, C,
 * alpha·acc) — whatever block it falls in, so a product cut into sub-products gives the same bits, and the
 * result does not depend on the thread count or call site. Without AVX2 + FMA, and for larger or column-major
 * products, it calls cblas_sgemm (A·Bᵀ of small sizes as transpose + NoTrans × NoTrans: OpenBLAS's NT form of
 * them was slower on its SkylakeX kernels). */
#ifndef HB_KGEMM_H
#define HB_KGEMM_H
#include <cblas.h>
#include <stdint.h>

void hb_kgemm_f32(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* 1 when small products run on kgemm.c's own kernel, 0 when on OpenBLAS (decided once: HYBLUA_KGEMM=own|blas,
 * else own unless OpenBLAS runs AVX-512 kernels) */
int hb_kgemm_own(void);
/* set that choice (tests and benchmarks; 1 has no effect where the kernel is not compiled: no AVX2 + FMA) */
void hb_kgemm_force(int own);

/* dst (cols × rows, row stride ldd) = the transpose of src (rows × cols, row stride lds). 16×16 tiles
 * in registers where AVX-512 is compiled in, element by element otherwise and at the edges. */
void hb_transpose_f32(float *restrict dst, int64_t ldd, const float *restrict src, int64_t lds, int64_t rows,
                      int64_t cols);

#endif
