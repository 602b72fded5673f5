/* kgemm.c — see kgemm.h. */
#include "kgemm.h"
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* ---- the small-product path (row-major products of the kernels' block sizes) -----------------------------
 * C (M×N) = alpha·op(A)·op(B) + beta·C with every element summed the same way: acc = fma(a_ik, b_kj, acc) for
 * k = 0, 1, …, K−1 from 0, then C = fma(beta, C, alpha·acc) (C not read when beta = 0). The column blocks are
 * vectors (16 floats with AVX-512, 8 with AVX2; the last one masked) and the row blocks MR rows whose a_ik are
 * broadcast: an element's arithmetic does not depend on where its block starts or how wide it is, so any split
 * of a product into sub-products gives the same bits. op(B) = Bᵀ is transposed first into a per-thread buffer.
 * Full blocks (MR rows × two whole vectors) run on sm_full, without masks: with masked loads in its loop GCC kept
 * one of the two B vectors on the stack and reloaded it for every row (64×64×64 ran at 135 GFLOP/s on a Zen 5 core
 * against OpenBLAS's AVX-512 small kernel's 215; unmasked, 191–210). The masked kernels take the edges.
 * When it runs instead of OpenBLAS, and what it gained, is in kgemm.h. */
#if defined(__AVX512F__)
#define SM_VW 16
#define SM_MR 8
typedef __m512 smv;
typedef __mmask16 smmask;
static inline smmask sm_mask(int64_t n) { return n >= 16 ? (smmask)0xFFFF : n <= 0 ? 0 : (smmask)((1u << n) - 1); }
static inline smv sm_load(const float *p, smmask m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void sm_store(float *p, smv v, smmask m) { _mm512_mask_storeu_ps(p, m, v); }
#define sm_loadu _mm512_loadu_ps
#define sm_storeu _mm512_storeu_ps
#define sm_set1 _mm512_set1_ps
#define sm_fma _mm512_fmadd_ps
#define sm_mul _mm512_mul_ps
#define sm_zero _mm512_setzero_ps
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SM_VW 8
#define SM_MR 6
typedef __m256 smv;
typedef __m256i smmask;
static inline smmask sm_mask(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n >= 8 ? 8 : n)), idx);
}
static inline smv sm_load(const float *p, smmask m) { return _mm256_maskload_ps(p, m); }
static inline void sm_store(float *p, smv v, smmask m) { _mm256_maskstore_ps(p, m, v); }
#define sm_loadu _mm256_loadu_ps
#define sm_storeu _mm256_storeu_ps
#define sm_set1 _mm256_set1_ps
#define sm_fma _mm256_fmadd_ps
#define sm_mul _mm256_mul_ps
#define sm_zero _mm256_setzero_ps
#endif

#ifdef SM_VW
#define SM_MAX_MNK 4194304.0 /* larger products go to OpenBLAS, whose packing pays there */

/* Rows 0..MRX−1 × one block of nv (1 or 2) vectors of C; m0/m1 mask the two vectors' columns. a(i, k) is
 * A[i·ars + k·acs]; op(B) is K×(cols) row-major with row stride ldb. The accumulators are named variables
 * (an array of them GCC keeps in memory, storing every one at every k). */
#define SM_R1(X) X(0)
#define SM_R2(X) X(0) X(1)
#define SM_R4(X) X(0) X(1) X(2) X(3)
#define SM_R6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define SM_R8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define SM_DECL(r) smv p##r = sm_zero(), q##r = sm_zero();
#define SM_FMA2(r)                                                                                             \
    {                                                                                                          \
        const smv ar = sm_set1(a[r * ars]);                                                                    \
        p##r = sm_fma(ar, b0, p##r);                                                                           \
        q##r = sm_fma(ar, b1, q##r);                                                                           \
    }
#define SM_FMA1(r) p##r = sm_fma(sm_set1(a[r * ars]), b0, p##r);
#define SM_OUT(r)                                                                                              \
    {                                                                                                          \
        float *c = C + r * ldc;                                                                                \
        smv x0 = sm_mul(va, p##r);                                                                             \
        if (beta != 0) x0 = sm_fma(vb, sm_load(c, m0), x0);                                                    \
        sm_store(c, x0, m0);                                                                                   \
        if (nv == 2) {                                                                                         \
            smv x1 = sm_mul(va, q##r);                                                                         \
            if (beta != 0) x1 = sm_fma(vb, sm_load(c + SM_VW, m1), x1);                                        \
            sm_store(c + SM_VW, x1, m1);                                                                       \
        }                                                                                                      \
    }
#define SM_KERNEL(NAME, ROWS)                                                                                  \
    static void NAME(int64_t K, const float *A, int64_t ars, int64_t acs, const float *B, int64_t ldb,         \
                     float alpha, float beta, float *C, int64_t ldc, int nv, smmask m0, smmask m1) {           \
        ROWS(SM_DECL)                                                                                          \
        if (nv == 2) {                                                                                         \
            for (int64_t k = 0; k < K; k++) {                                                                  \
                const smv b0 = sm_load(B + k * ldb, m0), b1 = sm_load(B + k * ldb + SM_VW, m1);                \
                const float *a = A + k * acs;                                                                  \
                ROWS(SM_FMA2)                                                                                  \
            }                                                                                                  \
        } else {                                                                                               \
            for (int64_t k = 0; k < K; k++) {                                                                  \
                const smv b0 = sm_load(B + k * ldb, m0);                                                       \
                const float *a = A + k * acs;                                                                  \
                ROWS(SM_FMA1)                                                                                  \
            }                                                                                                  \
        }                                                                                                      \
        const smv va = sm_set1(alpha), vb = sm_set1(beta);                                                     \
        ROWS(SM_OUT)                                                                                           \
    }
#if SM_MR == 8
SM_KERNEL(sm_kern_mr, SM_R8)
#define SM_RMR SM_R8
#else
SM_KERNEL(sm_kern_mr, SM_R6)
#define SM_RMR SM_R6
#endif
SM_KERNEL(sm_kern4, SM_R4)
SM_KERNEL(sm_kern2, SM_R2)
SM_KERNEL(sm_kern1, SM_R1)

/* The common case at full speed: SM_MR rows × 2 full vectors of C, no masks, a(i, k) at A[i·ars + k·acs]. The
 * same arithmetic per element as SM_KERNEL (acc = fma(a_ik, b_kj, acc) from 0, then alpha·acc, then beta·c added
 * by fma). Two instances: sm_kern_full for ars = 1 (op(A) = Aᵀ: the broadcasts are constant offsets from one
 * pointer) and sm_kern_full_s for any ars (op(A) = A: one pointer per row; as fast here, 191–204 GFLOP/s). */
#define SM_FMAF(r)                                                                                             \
    {                                                                                                          \
        const smv ar = sm_set1(a[r * ars]);                                                                    \
        p##r = sm_fma(ar, b0, p##r);                                                                           \
        q##r = sm_fma(ar, b1, q##r);                                                                           \
    }
#define SM_OUTF(r)                                                                                             \
    {                                                                                                          \
        float *c = C + r * ldc;                                                                                \
        smv x0 = sm_mul(va, p##r), x1 = sm_mul(va, q##r);                                                      \
        if (beta != 0) x0 = sm_fma(vb, sm_loadu(c), x0), x1 = sm_fma(vb, sm_loadu(c + SM_VW), x1);             \
        sm_storeu(c, x0);                                                                                      \
        sm_storeu(c + SM_VW, x1);                                                                              \
    }
static inline __attribute__((always_inline)) void sm_full(int64_t K, const float *restrict A, int64_t ars, int64_t acs,
                         const float *restrict B, int64_t ldb, float alpha, float beta, float *restrict C, int64_t ldc) {
    SM_RMR(SM_DECL)
    for (int64_t k = 0; k < K; k++) {
        const smv b0 = sm_loadu(B + k * ldb), b1 = sm_loadu(B + k * ldb + SM_VW);
        const float *a = A + k * acs;
        SM_RMR(SM_FMAF)
    }
    const smv va = sm_set1(alpha), vb = sm_set1(beta);
    SM_RMR(SM_OUTF)
}
static void sm_kern_full(int64_t K, const float *A, int64_t acs, const float *B, int64_t ldb, float alpha, float beta,
                         float *C, int64_t ldc) {
    sm_full(K, A, 1, acs, B, ldb, alpha, beta, C, ldc);
}
static void sm_kern_full_s(int64_t K, const float *A, int64_t ars, int64_t acs, const float *B, int64_t ldb, float alpha,
                           float beta, float *C, int64_t ldc) {
    sm_full(K, A, ars, acs, B, ldb, alpha, beta, C, ldc);
}

static void sm_gemm(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t ars, int64_t acs,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t j0 = 0; j0 < N; j0 += 2 * SM_VW) {
        const int64_t w = N - j0 < 2 * SM_VW ? N - j0 : 2 * SM_VW;
        const int nv = w > SM_VW ? 2 : 1;
        const smmask m0 = sm_mask(w), m1 = sm_mask(w - SM_VW);
        const float *Bj = B + j0;
        float *Cj = C + j0;
        int64_t i0 = 0;
        if (ars == 1 && w == 2 * SM_VW)
            for (; i0 + SM_MR <= M; i0 += SM_MR) sm_kern_full(K, A + i0, acs, Bj, ldb, alpha, beta, Cj + i0 * ldc, ldc);
        if (w == 2 * SM_VW)
            for (; i0 + SM_MR <= M; i0 += SM_MR)
                sm_kern_full_s(K, A + i0 * ars, ars, acs, Bj, ldb, alpha, beta, Cj + i0 * ldc, ldc);
        for (; i0 + SM_MR <= M; i0 += SM_MR)
            sm_kern_mr(K, A + i0 * ars, ars, acs, Bj, ldb, alpha, beta, Cj + i0 * ldc, ldc, nv, m0, m1);
        for (; i0 + 4 <= M; i0 += 4)
            sm_kern4(K, A + i0 * ars, ars, acs, Bj, ldb, alpha, beta, Cj + i0 * ldc, ldc, nv, m0, m1);
        for (; i0 + 2 <= M; i0 += 2)
            sm_kern2(K, A + i0 * ars, ars, acs, Bj, ldb, alpha, beta, Cj + i0 * ldc, ldc, nv, m0, m1);
        for (; i0 < M; i0++)
            sm_kern1(K, A + i0 * ars, ars, acs, Bj, ldb, alpha, beta, Cj + i0 * ldc, ldc, nv, m0, m1);
    }
}
#endif

extern char *openblas_get_corename(void);

/* 1: small products on the kernel above, 0: on OpenBLAS, 2: those of at most AVX2_OWN_MNK on the kernel, larger
 * ones on OpenBLAS. HYBLUA_KGEMM=own|blas chooses 1 or 0; by default OpenBLAS (0) where it runs AVX-512 kernels,
 * else the AVX-512 kernel (1), or 2 in AVX2 builds (kgemm.h has the measurements). Decided once per process and by
 * the shape of each product, so every call and thread sums the same way. */
static atomic_int choice = -1;
#define AVX2_OWN_MNK (64.0 * 64 * 64)

void hb_kgemm_force(int mode) {
#ifdef SM_VW
    atomic_store(&choice, mode == 2 ? 2 : mode ? 1 : 0);
#else
    (void)mode;
    atomic_store(&choice, 0);
#endif
}

const char *hb_kgemm_isa(void) {
#if defined(__AVX512F__)
    return "avx512";
#elif defined(SM_VW)
    return "avx2";
#else
    return "none";
#endif
}

int hb_kgemm_own(void) {
    int c = atomic_load_explicit(&choice, memory_order_relaxed);
    if (c >= 0) return c;
    const char *e = getenv("HYBLUA_KGEMM");
    if (e && !strcmp(e, "own")) {
#ifdef SM_VW
        c = 1;
#else
        fprintf(stderr, "hyblua: HYBLUA_KGEMM=own, but this build has no own kernel (compiled without AVX2 + FMA: "
                        "build with -march=native); using OpenBLAS\n");
        c = 0;
#endif
    } else if (e && !strcmp(e, "blas")) {
        c = 0;
    } else {
        if (e && *e) fprintf(stderr, "hyblua: HYBLUA_KGEMM must be own or blas (got '%s'); using the default\n", e);
#if defined(SM_VW)
        const char *n = openblas_get_corename();
        const int blas512 =
            n && (!strcasecmp(n, "skylakex") || !strcasecmp(n, "cooperlake") || !strcasecmp(n, "sapphirerapids"));
#if defined(__AVX512F__)
        c = blas512 ? 0 : 1;
#else
        /* AVX2 builds: the kernel wins up to 64³ products, OpenBLAS's AVX2 kernels above (kgemm.h) */
        c = blas512 ? 0 : 2;
#endif
#else
        c = 0;
#endif
    }
    int expect = -1;
    if (!atomic_compare_exchange_strong(&choice, &expect, c)) c = expect;
    return c;
}

void hb_kgemm_f32(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    static _Thread_local float bt[NT_MAX_BK] __attribute__((aligned(64)));
    const int rowmajor = order == CblasRowMajor && M > 0 && N > 0;
    const double mnk = (double)M * N * K;
    int own = 0;
#ifdef SM_VW
    const int path = rowmajor && K >= 0 && mnk <= SM_MAX_MNK ? hb_kgemm_own() : 0;
    own = (path == 1 || (path == 2 && mnk <= AVX2_OWN_MNK)) && (tb == CblasNoTrans || (int64_t)N * K <= NT_MAX_BK);
    if (own && alpha == 0) K = 0; /* C = beta·C, A and B not read (as BLAS) */
#endif
    /* op(B) = Bᵀ on the own kernel, or a small A·Bᵀ on OpenBLAS: B (N×K) transposed into bt (K×N) first */
    if (own ? tb != CblasNoTrans
            : rowmajor && ta == CblasNoTrans && tb == CblasTrans && K > 0 && (int64_t)N * K <= NT_MAX_BK &&
                  mnk <= NT_MAX_MNK) {
        hb_transpose_f32(bt, N, B, ldb, N, K);
        B = bt, ldb = N, tb = CblasNoTrans;
    }
#ifdef SM_VW
    if (own) {
        const int nt = ta == CblasNoTrans;
        sm_gemm(M, N, K, alpha, A, nt ? lda : 1, nt ? 1 : lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    cblas_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
