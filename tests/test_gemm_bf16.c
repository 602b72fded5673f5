/* test_gemm_bf16.c — TAP tests for kernels/gemm_bf16.c (bf16-input, float32-accumulate matmul).
 *
 * Checks, for the AVX512_BF16 kernel (when the CPU has it; skipped otherwise) and for the portable
 * fallback (always): the product against gemm_bf16_ref on sizes that are not multiples of the blocking
 * (1, 0, odd K, K beyond one k-block, N beyond one column block, M beyond one row block), all four
 * transposes, beta 0 / 1 / 0.5 and padded leading dimensions; NaN and inf propagation and beta = 0
 * ignoring NaNs already in C; the rounding (round to nearest even, NaN quiet, subnormals → 0, overflow
 * → inf) seen through 1×1×1 products; results identical for 1 and 2 threads; argument errors and an
 * injected allocation failure (C untouched), and that the kept buffers are reused and released.
 *
 * Tolerances (u = 2^-24, r() the bf16 rounding, S = Σ_k |r(a_ik)|·|r(b_kj)| + |beta·c_ij|):
 *   fast vs reference (same rounded inputs, float32 vs double sums):   |Δ| ≤ (K + 4)·u·S
 *   fast vs the exact float64 product of the UNROUNDED inputs: each input is off by at most 2^-8
 *   relative, so each product by 2^-7 + 2^-16:                          |Δ| ≤ (2^-7 + 2^-16 + (K + 4)·u)·S'
 *   with S' = Σ_k |a_ik|·|b_kj|·(1 + 2^-7) + |beta·c_ij|. The measured worst ratios and the relative
 *   Frobenius error of all products (~2·10^-3 on uniform ±1 data) are printed as diagnostics.
 */
#include "../kernels/gemm_bf16.h"
#include "../kernels/parallel.h"
#include "../kernels/alloc.h"
#include "../io/half.h"
#include "ktest.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

static float bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static float *frand(int64_t n, double amp) {
    float *x = fzeros(n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(amp * urand());
    return x;
}

/* op(X)[i,k] for a row-major X with leading dimension ld. */
static float at(const float *X, int tr, int64_t ld, int64_t i, int64_t k) { return tr ? X[k * ld + i] : X[i * ld + k]; }

typedef struct { double worst_ref, worst_exact, sq_err, sq_exact; } errs_t;

/* One product: fast vs reference and vs the exact product; returns 1 when within the bounds. */
static int one_case(int ta, int tb, float beta, int64_t M, int64_t N, int64_t K, int pad, errs_t *e) {
    int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    int64_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb, nc = M * ldc;
    float *A = frand(na, 1.0), *B = frand(nb, 1.0), *C0 = frand(nc, 1.0);
    float *C = fzeros(nc), *R = fzeros(nc);
    memcpy(C, C0, (size_t)nc * sizeof(float));
    memcpy(R, C0, (size_t)nc * sizeof(float));
    int rc1 = gemm_bf16(C, A, B, ta, tb, beta, M, N, K, lda, ldb, ldc);
    int rc2 = gemm_bf16_ref(R, A, B, ta, tb, beta, M, N, K, lda, ldb, ldc);
    int good = rc1 == 0 && rc2 == 0;
    const double u = ldexp(1.0, -24);
    for (int64_t i = 0; i < M && good; i++)
        for (int64_t j = 0; j < ldc; j++) {
            if (j >= N) { /* padding columns untouched */
                if (f_bits(C[i * ldc + j]) != f_bits(C0[i * ldc + j])) good = 0;
                continue;
            }
            double s = 0, s1 = 0, exact = 0;
            for (int64_t k = 0; k < K; k++) {
                double a = at(A, ta, lda, i, k), b = at(B, tb, ldb, k, j);
                s += fabs((double)gemm_bf16_round((float)a) * gemm_bf16_round((float)b));
                s1 += fabs(a * b);
                exact += a * b;
            }
            double bc = beta == 0 ? 0 : (double)beta * C0[i * ldc + j];
            exact += bc;
            s += fabs(bc);
            s1 = s1 * (1 + ldexp(1.0, -7)) + fabs(bc);
            double c = C[i * ldc + j], dref = fabs(c - R[i * ldc + j]), dex = fabs(c - exact);
            double bref = (double)(K + 4) * u * s, bex = (ldexp(1.0, -7) + ldexp(1.0, -16) + (double)(K + 4) * u) * s1;
            if (!(dref <= bref) || !(dex <= bex)) good = 0;
            if (s > 0 && dref / s > e->worst_ref) e->worst_ref = dref / s;
            if (s1 > 0 && dex / s1 > e->worst_exact) e->worst_exact = dex / s1;
            e->sq_err += dex * dex;
            e->sq_exact += exact * exact;
        }
    free(A); free(B); free(C0); free(C); free(R);
    return good;
}

static void products(const char *path) {
    static const int64_t shapes[][3] = {
        {1, 1, 1}, {1, 1, 2}, {3, 5, 7}, {17, 33, 19}, {37, 50, 1}, {8, 32, 64}, {16, 48, 33},
        {200, 15, 40},    /* M beyond one row block (96) */
        {9, 70, 1537},    /* K beyond two k-blocks (768), odd */
        {5, 2100, 9},     /* N beyond one column block (2048) */
        {130, 130, 770},  /* all edges at once */
    };
    static const float betas[] = {0.0f, 1.0f, 0.5f};
    int nshape = (int)(sizeof shapes / sizeof shapes[0]);
    for (int t = 0; t < 4; t++) {
        int ta = t >> 1, tb = t & 1, good = 1, count = 0;
        errs_t e = {0, 0, 0, 0};
        for (int s = 0; s < nshape; s++)
            for (int bi = 0; bi < 3; bi++) {
                int pad = (s + bi) % 3 == 0 ? 3 : 0;
                if (!one_case(ta, tb, betas[bi], shapes[s][0], shapes[s][1], shapes[s][2], pad, &e)) {
                    if (good) diag("first failure: %s%s M %lld N %lld K %lld beta %g pad %d", ta ? "T" : "N",
                                   tb ? "T" : "N", (long long)shapes[s][0], (long long)shapes[s][1],
                                   (long long)shapes[s][2], betas[bi], pad);
                    good = 0;
                }
                count++;
            }
        char name[64];
        snprintf(name, sizeof name, "%s %s%s: products within the bounds", path, ta ? "T" : "N", tb ? "T" : "N");
        check(good, name, "%d products; max |fast−ref|/S = %.2e (bound (K+4)·2^-24); max |fast−exact|/S' = %.2e "
              "(bound 2^-7 + …); ‖fast−exact‖/‖exact‖ = %.2e over all of them", count, e.worst_ref, e.worst_exact,
              sqrt(e.sq_err / e.sq_exact));
    }
}

static void empty_and_degenerate(const char *path) {
    float C[6] = {1, 2, 3, 4, 5, 6}, A[6] = {0}, B[6] = {0};
    int rc = gemm_bf16(C, A, B, 0, 0, 0.0f, 0, 3, 2, 2, 3, 3);
    ok(rc == 0 && C[0] == 1, "%s: M = 0 is a no-op", path);
    rc = gemm_bf16(C, A, B, 0, 0, 0.0f, 2, 0, 2, 2, 1, 1);
    ok(rc == 0 && C[0] == 1, "%s: N = 0 is a no-op", path);
    rc = gemm_bf16(C, NULL, NULL, 0, 0, 0.5f, 2, 3, 0, 1, 3, 3);
    ok(rc == 0 && C[0] == 0.5f && C[5] == 3.0f, "%s: K = 0 gives beta·C", path);
    C[0] = NAN;
    rc = gemm_bf16(C, NULL, NULL, 0, 0, 0.0f, 2, 3, 0, 1, 3, 3);
    ok(rc == 0 && C[0] == 0 && C[5] == 0, "%s: K = 0 with beta 0 gives zeros (NaN in C ignored)", path);
}

static void specials(const char *path) {
    enum { M = 20, N = 40, K = 37 };
    float *A = fzeros(M * K), *B = fzeros(K * N), *C = fzeros(M * N);
    for (int i = 0; i < M * K; i++) A[i] = 0.25f + 0.5f * (float)fabs(urand());
    for (int i = 0; i < K * N; i++) B[i] = 0.25f + 0.5f * (float)fabs(urand());
    for (int i = 0; i < M * N; i++) C[i] = NAN; /* beta = 0 must not read C */
    A[3 * K + 5] = NAN;   /* row 3 of C: NaN */
    B[7 * N + 11] = INFINITY; /* column 11: +inf (all other terms positive and finite) */
    A[9 * K + 2] = -INFINITY; /* row 9: -inf, except column 11 (-inf + inf = NaN) */
    int rc = gemm_bf16(C, A, B, 0, 0, 0.0f, M, N, K, K, N, N);
    int good = rc == 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float c = C[i * N + j];
            int want_nan = i == 3 || (i == 9 && j == 11);
            if (want_nan) good &= isnan(c);
            else if (i == 9) good &= isinf(c) && c < 0;
            else if (j == 11) good &= isinf(c) && c > 0;
            else good &= isfinite(c);
        }
    ok(good, "%s: NaN and ±inf propagate as in float arithmetic; beta = 0 ignores NaNs in C", path);
    free(A); free(B); free(C);
}

/* The rounding as the kernel sees it: C = r(a)·1 for a 1×1×1 product, over special and random bit
   patterns; gemm_bf16_round must agree with io/half.c's rounding except that subnormals go to 0. */
static void rounding(const char *path) {
    static const uint32_t special[] = {
        0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x00800000, 0x3f808000, 0x3f818000, 0x3f80c000,
        0x3f807fff, 0x7f7fffff, 0xff7f8000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffa00001,
        0x3f800000, 0x40490fdb, 0x007fffff};
    int good_hw = 1, good_half = 1, n = 0;
    for (int i = 0; i < 20000; i++) {
        uint32_t u = i < (int)(sizeof special / sizeof special[0]) ? special[i]
                                                                   : (uint32_t)((urand() + 1.0) * 2147483648.0);
        float a = bits_f(u), one = 1.0f, c = 0;
        float r = gemm_bf16_round(a);
        if (gemm_bf16(&c, &a, &one, 0, 0, 0.0f, 1, 1, 1, 1, 1, 1) != 0) good_hw = 0;
        /* the product r(a)·1 is r(a) exactly (any NaN for a NaN; ±0 compare equal) */
        if (isnan(r) ? !isnan(c) : c != r) good_hw = 0;
        uint16_t h;
        hb_f32_to_bf16(&h, &a, 1);
        if ((u & 0x7f800000u) != 0) {
            n++;
            if (((uint32_t)h << 16) != f_bits(r)) good_half = 0;
        } else if (r != 0) {
            good_half = 0; /* zero and subnormal inputs round to ±0 */
        }
    }
    ok(good_hw, "%s: 1×1×1 products equal gemm_bf16_round (RNE, quiet NaN, subnormal → 0, overflow → inf)", path);
    ok(good_half, "%s: gemm_bf16_round agrees with hb_f32_to_bf16 on %d normal/inf/NaN inputs", path, n);
}

static void threads(const char *path) {
    enum { M = 300, N = 260, K = 900 };
    int good = 1;
    for (int t = 0; t < 4; t++) {
        int ta = t >> 1, tb = t & 1;
        float *A = frand(M * K, 1), *B = frand(K * N, 1), *C1 = fzeros(M * N), *C2 = fzeros(M * N);
        hb_threads_set(1);
        gemm_bf16(C1, A, B, ta, tb, 0.0f, M, N, K, ta ? M : K, tb ? K : N, N);
        hb_threads_set(2);
        gemm_bf16(C2, A, B, ta, tb, 0.0f, M, N, K, ta ? M : K, tb ? K : N, N);
        good &= memcmp(C1, C2, sizeof(float) * M * N) == 0;
        /* the column split (N > M) too */
        gemm_bf16(C2, B, A, !tb, !ta, 0.0f, N, M, K, tb ? K : N, ta ? M : K, M);
        hb_threads_set(1);
        gemm_bf16(C1, B, A, !tb, !ta, 0.0f, N, M, K, tb ? K : N, ta ? M : K, M);
        good &= memcmp(C1, C2, sizeof(float) * M * N) == 0;
        free(A); free(B); free(C1); free(C2);
    }
    hb_threads_set(2);
    ok(good, "%s: results bit-identical for 1 and 2 threads (row and column splits)", path);
}

static void errors(const char *path) {
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 2, 3, 4}, C[4] = {9, 9, 9, 9};
    ok(gemm_bf16(C, A, B, 0, 0, 0, -1, 2, 2, 2, 2, 2) == -1, "%s: negative M → -1", path);
    ok(gemm_bf16(C, A, B, 0, 0, 0, 2, 2, 2, 1, 2, 2) == -1, "%s: lda < K → -1", path);
    ok(gemm_bf16(C, A, B, 0, 1, 0, 2, 2, 2, 2, 1, 2) == -1, "%s: ldb < K (transposed B) → -1", path);
    ok(gemm_bf16(C, A, B, 0, 0, 0, 2, 2, 2, 2, 2, 1) == -1, "%s: ldc < N → -1", path);
    ok(gemm_bf16(C, NULL, B, 0, 0, 0, 2, 2, 2, 2, 2, 2) == -1 && C[0] == 9, "%s: NULL A → -1, C untouched", path);
    gemm_bf16_release_buffers(); /* so that the next product must allocate */
    hb_alloc_fail_after(0);
    int rc = gemm_bf16(C, A, B, 0, 0, 0, 2, 2, 2, 2, 2, 2);
    hb_alloc_fail_after(-1);
    ok(rc == -1 && C[0] == 9 && C[3] == 9, "%s: allocation failure → -1, C untouched", path);
}

/* The AVX512_BF16 path keeps its packing buffers: a second product of the same size allocates nothing,
   one after gemm_bf16_release_buffers allocates once. */
static void kept_buffers(void) {
    enum { M = 64, N = 80, K = 50 };
    float *A = frand(M * K, 1), *B = frand(K * N, 1), *C = fzeros(M * N);
    gemm_bf16(C, A, B, 0, 0, 0.0f, M, N, K, K, N, N);
    int64_t n0 = hb_alloc_count();
    gemm_bf16(C, A, B, 0, 0, 0.0f, M, N, K, K, N, N);
    int64_t n1 = hb_alloc_count();
    gemm_bf16_release_buffers();
    gemm_bf16(C, A, B, 0, 0, 0.0f, M, N, K, K, N, N);
    int64_t n2 = hb_alloc_count();
    ok(n1 == n0 && n2 == n1 + 1, "avx512_bf16: packing buffers are kept between calls and released on request "
       "(allocations %lld, %lld)", (long long)(n1 - n0), (long long)(n2 - n1));
    free(A); free(B); free(C);
}

int main(void) {
    rng_seed(0x9E3779B97F4A7C15ull);
    hb_threads_set(2);
    for (int native = 1; native >= 0; native--) {
        gemm_bf16_allow_native(native);
        if (native && !gemm_bf16_native()) {
            skip("the CPU has no AVX512_BF16: only the portable path is tested");
            continue;
        }
        const char *path = native ? "avx512_bf16" : "portable";
        products(path);
        empty_and_degenerate(path);
        specials(path);
        rounding(path);
        threads(path);
        errors(path);
        if (native) kept_buffers();
    }
    gemm_bf16_allow_native(1);
    return tap_done();
}
