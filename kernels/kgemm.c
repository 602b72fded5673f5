/* kgemm.c — see kgemm.h. */
#include "kgemm.h"
#ifdef __AVX512F__
#include "tr16.h"
#endif

#define NT_MAX_BK 16384      /* the largest B (N·K floats) transposed: 64 KiB of buffer per thread */
#define NT_MAX_MNK 1000000.0 /* above this OpenBLAS leaves its small-matrix kernels for packed ones */

#ifdef __AVX512F__
/* One 16×16 tile: rows of src (lds apart) → columns of dst (ldd apart), through hb_tr16 (tr16.h). */
static void tile16(float *restrict dst, int64_t ldd, const float *restrict src, int64_t lds) {
    __m512i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_castps_si512(_mm512_loadu_ps(src + i * lds));
    hb_tr16(r);
    for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + i * ldd, _mm512_castsi512_ps(r[i]));
}
#endif

void hb_transpose_f32(float *restrict dst, int64_t ldd, const float *restrict src, int64_t lds, int64_t rows,
                      int64_t cols) {
    int64_t r0 = 0;
#ifdef __AVX512F__
    for (; r0 + 16 <= rows; r0 += 16) {
        int64_t c0 = 0;
        for (; c0 + 16 <= cols; c0 += 16) tile16(dst + c0 * ldd + r0, ldd, src + r0 * lds + c0, lds);
        for (; c0 < cols; c0++)
            for (int64_t i = r0; i < r0 + 16; i++) dst[c0 * ldd + i] = src[i * lds + c0];
    }
#endif
    for (int64_t i = r0; i < rows; i++)
        for (int64_t c = 0; c < cols; c++) dst[c * ldd + i] = src[i * lds + c];
}

void hb_kgemm_f32(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    static _Thread_local float bt[NT_MAX_BK] __attribute__((aligned(64)));
    if (order == CblasRowMajor && ta == CblasNoTrans && tb == CblasTrans && M > 0 && N > 0 && K > 0 &&
        (int64_t)N * K <= NT_MAX_BK && (double)M * N * K <= NT_MAX_MNK) {
        hb_transpose_f32(bt, N, B, ldb, N, K); /* B is N×K: bt (K×N) = Bᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, alpha, A, lda, bt, N, beta, C, ldc);
        return;
    }
    cblas_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
