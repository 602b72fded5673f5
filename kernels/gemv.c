/* gemv.c — Y = X · Wᵀ for a few rows of X (kernels/gemv.h).
 *
 * W is streamed once, row after row (one ascending stream, which the hardware prefetcher follows: blocks of
 * four rows read side by side streamed bf16 weights at 5.8 GB/s on one core, this order at 8.2; software
 * prefetch ahead of the loads was slower still). Each row
 * of W meets all M rows of X (from cache) in vectors of VW floats, into 2·M accumulators held in registers;
 * M is a compile-time constant in each instantiation (an always-inline body under a switch on M), so the
 * compiler unrolls the m loop. A sum's order depends on K only: two chains over alternate vectors, added,
 * the lanes in order, then the K mod VW tail — the same for any M, any split of the columns, any thread.
 */
#include "gemv.h"
#include <string.h>
#if defined(__AVX512F__) || defined(__FMA__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif

typedef float vf __attribute__((vector_size(VW * 4)));
typedef float vfu __attribute__((vector_size(VW * 4), aligned(4), may_alias));
typedef uint16_t vhu __attribute__((vector_size(VW * 2), aligned(2), may_alias));
typedef uint32_t vu __attribute__((vector_size(VW * 4)));

static inline vf ld_f32(const float *p) { return *(const vfu *)p; }
/* VW bfloat16 values widened to float32 (zero-extend, shift into the upper half): one vpmovzxwd + vpslld
   (the generic form let GCC split the widening into halves) */
static inline vf ld_bf16(const uint16_t *p) {
#if VW == 16
    return (vf)_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16);
#elif VW == 8 && defined(__AVX2__)
    return (vf)_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
#else
    return (vf)(__builtin_convertvector(*(const vhu *)p, vu) << 16);
#endif
}
static inline float sc_f32(const float *p) { return *p; }
static inline float sc_bf16(const uint16_t *p) {
    uint32_t u = (uint32_t)*p << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* a·b + c, fused where the target has FMA (ISO C mode does not contract a*b+c) */
static inline vf vfma(vf a, vf b, vf c) {
#if VW == 16
    return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif VW == 8 && defined(__FMA__)
    return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}

/* One row w of W against G (a constant after inlining) rows of X: two chains of accumulators per row of X
   (vectors k ≡ 0 and ≡ 1 mod 2·VW), so that even G = 1 keeps two FMAs in flight; then chain 0 + chain 1,
   its lanes in order, and the K mod VW tail. W is read as one ascending stream (row after row), which the
   hardware prefetcher follows; rows of X come from cache. */
#define ROW(NAME, WT, LDW, SCW)                                                                                 \
    static inline __attribute__((always_inline)) void NAME(const int G, int64_t K, const float *X, int64_t ldx,  \
                                                           const WT *w, float beta, float *y, int64_t ldy) {     \
        vf a0[HB_GEMV_MAX_M], a1[HB_GEMV_MAX_M];                                                                \
        for (int m = 0; m < G; m++) a0[m] = a1[m] = (vf){0};                                                    \
        int64_t k = 0;                                                                                          \
        for (; k + 2 * VW <= K; k += 2 * VW) {                                                                  \
            vf w0 = LDW(w + k), w1 = LDW(w + k + VW);                                                           \
            for (int m = 0; m < G; m++) {                                                                       \
                a0[m] = vfma(w0, ld_f32(X + m * ldx + k), a0[m]);                                               \
                a1[m] = vfma(w1, ld_f32(X + m * ldx + k + VW), a1[m]);                                          \
            }                                                                                                   \
        }                                                                                                       \
        if (k + VW <= K) {                                                                                      \
            vf w0 = LDW(w + k);                                                                                 \
            for (int m = 0; m < G; m++) a0[m] = vfma(w0, ld_f32(X + m * ldx + k), a0[m]);                       \
            k += VW;                                                                                            \
        }                                                                                                       \
        for (int m = 0; m < G; m++) {                                                                           \
            vf a = a0[m] + a1[m];                                                                               \
            float s = 0;                                                                                        \
            for (int l = 0; l < VW; l++) s += a[l];                                                             \
            for (int64_t j = k; j < K; j++) s += SCW(w + j) * X[m * ldx + j];                                   \
            float *o = y + m * ldy;                                                                             \
            *o = beta == 0 ? s : s + beta * *o;                                                                 \
        }                                                                                                       \
    }

ROW(row_f32, float, ld_f32, sc_f32)
ROW(row_bf16, uint16_t, ld_bf16, sc_bf16)

/* the rows of X in groups whose 2·G accumulators fit the registers: all 8 with 32 vector registers
   (AVX-512), at most 4 with 16; the grouping changes which rows share a pass over w, never a sum's order */
#if VW == 16
#define GMAX 8
#else
#define GMAX 4
#endif

#define ROWS(NAME, ROWFN, WT)                                                                                   \
    static void NAME(int64_t M, int64_t N, int64_t K, const float *X, int64_t ldx, const WT *W, int64_t ldw,    \
                     float beta, float *Y, int64_t ldy) {                                                       \
        for (int64_t n = 0; n < N; n++) {                                                                       \
            const WT *w = W + n * ldw;                                                                          \
            float *y = Y + n;                                                                                   \
            switch (M) {                                                                                        \
            case 1: ROWFN(1, K, X, ldx, w, beta, y, ldy); break;                                                \
            case 2: ROWFN(2, K, X, ldx, w, beta, y, ldy); break;                                                \
            case 3: ROWFN(3, K, X, ldx, w, beta, y, ldy); break;                                                \
            case 4: ROWFN(4, K, X, ldx, w, beta, y, ldy); break;                                                \
            default:                                                                                            \
                if (GMAX == 8) {                                                                                \
                    if (M == 5) ROWFN(5, K, X, ldx, w, beta, y, ldy);                                           \
                    else if (M == 6) ROWFN(6, K, X, ldx, w, beta, y, ldy);                                      \
                    else if (M == 7) ROWFN(7, K, X, ldx, w, beta, y, ldy);                                      \
                    else ROWFN(8, K, X, ldx, w, beta, y, ldy);                                                  \
                } else {                                                                                        \
                    ROWFN(4, K, X, ldx, w, beta, y, ldy);                                                       \
                    const float *X4 = X + 4 * ldx;                                                              \
                    float *y4 = y + 4 * ldy;                                                                    \
                    if (M == 5) ROWFN(1, K, X4, ldx, w, beta, y4, ldy);                                         \
                    else if (M == 6) ROWFN(2, K, X4, ldx, w, beta, y4, ldy);                                    \
                    else if (M == 7) ROWFN(3, K, X4, ldx, w, beta, y4, ldy);                                    \
                    else ROWFN(4, K, X4, ldx, w, beta, y4, ldy);                                                \
                }                                                                                               \
            }                                                                                                   \
        }                                                                                                       \
    }

ROWS(rows_f32, row_f32, float)
ROWS(rows_bf16, row_bf16, uint16_t)

void hb_gemv_nt_f32(int64_t M, int64_t N, int64_t K, const float *X, int64_t ldx, const float *W, int64_t ldw,
                    float beta, float *Y, int64_t ldy) {
    if (M >= 1 && M <= HB_GEMV_MAX_M) rows_f32(M, N, K, X, ldx, W, ldw, beta, Y, ldy);
}

void hb_gemv_nt_bf16(int64_t M, int64_t N, int64_t K, const float *X, int64_t ldx, const uint16_t *W, int64_t ldw,
                     float beta, float *Y, int64_t ldy) {
    if (M >= 1 && M <= HB_GEMV_MAX_M) rows_bf16(M, N, K, X, ldx, W, ldw, beta, Y, ldy);
}
