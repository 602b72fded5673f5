/* test_kgemm.c — TAP tests for kernels/kgemm.c (the float32 block product of the kernels, kgemm.h).
 *
 *   - hb_transpose_f32: every rows × cols in 1..40 and 64, 65 with padded leading dimensions gives the
 *     exact transpose and never writes dst's padding (the 16×16 register tiles, their edges and the
 *     element-wise rows below the last whole tile);
 *   - hb_kgemm_f32, on OpenBLAS and on the own small-product kernel (hb_kgemm_force), against a float64
 *     reference for the four transposition cases, on shapes inside the
 *     transposed A·Bᵀ path (M, N, K up to 64, N·K ≤ 16384) and outside it (K 300, N·K > 16384), padded
 *     leading dimensions, alpha 1 / −0.5 and beta 0 (C filled with NaN first: it must not leak) / 1;
 *     |Δ| ≤ (K + 4)·u·S with u = 2^-24 and S = Σ|α a b| + |β c|; C's padding columns never written;
 *   - A·Bᵀ through the transposed path is the same product as cblas_sgemm's within that bound, and the
 *     same bits on every call (the per-thread buffer holds nothing between calls), from another thread too;
 *   - NaN in B's row j poisons C's column j only;
 *   - the small-product path sums each element the same way wherever it falls: NN, NT, TN and TT products
 *     (M, N, K ≤ 200, odd sizes for the masked column and short row blocks) equal, bit for bit, the same
 *     products computed as sub-products of other row and column blocks; K = 0 gives C = beta·C;
 *   - mode 2 (AVX2 builds' default): products up to 64³ on the own kernel, larger ones on OpenBLAS (bitwise).
 */
#include "../kernels/kgemm.h"
#include "ktest.h"
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

static double worst_ratio(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
                          int lda, const float *B, int ldb, float beta, const float *C0, const float *C, int ldc) {
    double worst = 0, u = ldexp(1.0, -24);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0, S = 0;
            for (int k = 0; k < K; k++) {
                double a = ta == CblasTrans ? A[k * lda + m] : A[m * lda + k];
                double b = tb == CblasTrans ? B[n * ldb + k] : B[k * ldb + n];
                s += alpha * a * b;
                S += fabs(alpha * a * b);
            }
            if (beta != 0) s += (double)beta * C0[m * ldc + n], S += fabs((double)beta * C0[m * ldc + n]);
            double r = fabs(C[m * ldc + n] - s) / ((K + 4) * u * S + 1e-30);
            if (!(r <= worst)) worst = r; /* NaN-propagating */
        }
    return worst;
}

typedef struct {
    const float *A, *B;
    float *C;
    int M, N, K;
} job_t;
static void *nt_job(void *p) {
    job_t *j = p;
    hb_kgemm_f32(CblasRowMajor, CblasNoTrans, CblasTrans, j->M, j->N, j->K, 1, j->A, j->K, j->B, j->K, 0, j->C, j->N);
    return NULL;
}

int main(void) {
    rng_seed(5);
    { /* transpose */
        int exact = 1, pad = 1, cases = 0;
        int sizes[42];
        for (int i = 0; i < 40; i++) sizes[i] = i + 1;
        sizes[40] = 64, sizes[41] = 65;
        for (int ir = 0; ir < 42; ir++)
            for (int ic = 0; ic < 42; ic++) {
                int64_t rows = sizes[ir], cols = sizes[ic], lds = cols + 3, ldd = rows + 2;
                float *src = fzeros(rows * lds), *dst = fzeros(cols * ldd);
                for (int64_t i = 0; i < rows * lds; i++) src[i] = (float)urand();
                for (int64_t i = 0; i < cols * ldd; i++) dst[i] = -7.0f;
                hb_transpose_f32(dst, ldd, src, lds, rows, cols);
                for (int64_t c = 0; c < cols; c++) {
                    for (int64_t r = 0; r < rows; r++)
                        if (memcmp(&dst[c * ldd + r], &src[r * lds + c], sizeof(float))) exact = 0;
                    for (int64_t r = rows; r < ldd; r++)
                        if (dst[c * ldd + r] != -7.0f) pad = 0;
                }
                cases++;
                free(src), free(dst);
            }
        ok(exact, "hb_transpose_f32: %d shapes (rows, cols in 1..40, 64, 65) transposed exactly", cases);
        ok(pad, "hb_transpose_f32: dst's padding is never written");
    }

    static const int shapes[][3] = {{1, 1, 1}, {16, 16, 64}, {16, 64, 64}, {64, 64, 64}, {17, 33, 5},
                                    {64, 1, 64}, {3, 64, 128}, {64, 128, 128}, {7, 9, 300}, {65, 70, 64}};
    const int NS = sizeof shapes / sizeof shapes[0];
    static const CBLAS_TRANSPOSE tr[2] = {CblasNoTrans, CblasTrans};
    for (int own = 0; own < 2; own++) {
    hb_kgemm_force(own);
    const char *path = hb_kgemm_own() ? "own kernel" : "OpenBLAS";
    for (int it = 0; it < 4; it++) {
        CBLAS_TRANSPOSE ta = tr[it >> 1], tb = tr[it & 1];
        for (int ib = 0; ib < 2; ib++) {
            float beta = ib ? 1.0f : 0.0f, alpha = ib ? -0.5f : 1.0f;
            double worst = 0;
            int padok = 1, nanok = 1;
            for (int s = 0; s < NS; s++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                int lda = (ta == CblasTrans ? M : K) + 2, ldb = (tb == CblasTrans ? K : N) + 3, ldc = N + 1;
                int ra = ta == CblasTrans ? K : M, rb = tb == CblasTrans ? N : K;
                float *A = fzeros((int64_t)ra * lda), *B = fzeros((int64_t)rb * ldb), *C = fzeros((int64_t)M * ldc),
                      *C0 = fzeros((int64_t)M * ldc);
                for (int64_t i = 0; i < (int64_t)ra * lda; i++) A[i] = (float)urand();
                for (int64_t i = 0; i < (int64_t)rb * ldb; i++) B[i] = (float)urand();
                for (int64_t i = 0; i < (int64_t)M * ldc; i++) C0[i] = beta == 0 ? NAN : (float)urand();
                for (int m = 0; m < M; m++) C0[m * ldc + N] = 3.0f; /* padding */
                memcpy(C, C0, (size_t)M * ldc * sizeof(float));
                hb_kgemm_f32(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
                double r = worst_ratio(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C0, C, ldc);
                if (!(r <= worst)) worst = r;
                for (int m = 0; m < M; m++) {
                    if (C[m * ldc + N] != 3.0f) padok = 0;
                    for (int n = 0; n < N; n++)
                        if (isnan(C[m * ldc + n])) nanok = 0;
                }
                free(A), free(B), free(C), free(C0);
            }
            ok(worst <= 1.0, "%s: %s%s alpha %g beta %g: %d shapes within (K+4)·u·S of float64 (worst ratio %.3g)",
               path, ta == CblasTrans ? "T" : "N", tb == CblasTrans ? "T" : "N", alpha, beta, NS, worst);
            ok(padok, "%s: %s%s beta %g: C's padding is never written", path, ta == CblasTrans ? "T" : "N",
               tb == CblasTrans ? "T" : "N", beta);
            if (beta == 0)
                ok(nanok, "%s: %s%s beta 0: NaN already in C does not leak into the result", path,
                   ta == CblasTrans ? "T" : "N", tb == CblasTrans ? "T" : "N");
        }
    }
    }
    hb_kgemm_force(0);

    { /* the transposed path: repeatable, the same from another thread, NaN confined to its column */
        int M = 64, N = 64, K = 64;
        float *A = fzeros(M * K), *B = fzeros(N * K), *C1 = fzeros(M * N), *C2 = fzeros(M * N), *C3 = fzeros(M * N);
        float *B2 = fzeros(N * K);
        for (int i = 0; i < M * K; i++) A[i] = (float)urand();
        for (int i = 0; i < N * K; i++) B[i] = (float)urand(), B2[i] = (float)urand();
        hb_kgemm_f32(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C1, N);
        hb_kgemm_f32(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B2, K, 0, C3, N); /* other B between */
        hb_kgemm_f32(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C2, N);
        int same = !memcmp(C1, C2, (size_t)(M * N) * sizeof(float));
        job_t j = {A, B, C3, M, N, K};
        pthread_t th;
        pthread_create(&th, NULL, nt_job, &j);
        pthread_join(th, NULL);
        same = same && !memcmp(C1, C3, (size_t)(M * N) * sizeof(float));
        ok(same, "A·Bᵀ (64×64×64): the same bits on every call and from another thread");
        B[5 * K + 11] = NAN;
        hb_kgemm_f32(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C1, N);
        int prop = 1;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
                if ((n == 5) != !!isnan(C1[m * N + n])) prop = 0;
        ok(prop, "A·Bᵀ: NaN in B's row 5 poisons C's column 5 only");
        free(A), free(B), free(B2), free(C1), free(C2), free(C3);
    }
    hb_kgemm_force(1);
    if (!hb_kgemm_own()) {
        ok(1, "# skip: the own small-product kernel is not compiled here (no AVX2 + FMA)");
        ok(1, "# skip: K = 0 on the own kernel");
    } else { /* the own kernel sums every element the same way: sub-products give the same bits */
        int same = 1, cases = 0;
        static const int sp[][3] = {{64, 64, 64}, {64, 128, 64}, {37, 53, 29}, {8, 200, 16}};
        for (int s = 0; s < 4; s++)
            for (int it = 0; it < 4; it++) {
                CBLAS_TRANSPOSE ta = tr[it >> 1], tb = tr[it & 1];
                int M = sp[s][0], N = sp[s][1], K = sp[s][2];
                if (tb == CblasTrans && N * K > 16384) continue;
                int lda = ta == CblasTrans ? M : K, ldb = tb == CblasTrans ? K : N;
                float *A = fzeros((int64_t)M * K), *B = fzeros((int64_t)N * K), *C1 = fzeros((int64_t)M * N),
                      *C2 = fzeros((int64_t)M * N);
                for (int64_t i = 0; i < (int64_t)M * K; i++) A[i] = (float)urand();
                for (int64_t i = 0; i < (int64_t)N * K; i++) B[i] = (float)urand();
                for (int64_t i = 0; i < (int64_t)M * N; i++) C1[i] = C2[i] = (float)urand();
                hb_kgemm_f32(CblasRowMajor, ta, tb, M, N, K, -1, A, lda, B, ldb, 1, C1, N);
                /* rows in pieces of 5, 3, …; columns split at 7 and 23 */
                int cuts[] = {0, 7, 23, N};
                for (int r0 = 0, step = 5; r0 < M; r0 += step, step = step == 5 ? 3 : 5) {
                    int rn = M - r0 < step ? M - r0 : step;
                    for (int c = 0; c < 3; c++) {
                        int c0 = cuts[c] < N ? cuts[c] : N, c1 = cuts[c + 1] < N ? cuts[c + 1] : N;
                        if (c1 <= c0) continue;
                        const float *Ab = ta == CblasTrans ? A + r0 : A + (int64_t)r0 * lda;
                        const float *Bb = tb == CblasTrans ? B + (int64_t)c0 * ldb : B + c0;
                        hb_kgemm_f32(CblasRowMajor, ta, tb, rn, c1 - c0, K, -1, Ab, lda, Bb, ldb, 1,
                                     C2 + (int64_t)r0 * N + c0, N);
                    }
                }
                if (memcmp(C1, C2, (size_t)M * N * sizeof(float))) same = 0;
                cases++;
                free(A), free(B), free(C1), free(C2);
            }
        ok(same, "%d products (NN, NT, TN, TT; M, N, K ≤ 200) and the same products cut into row and column "
                 "blocks of other sizes: the same bits", cases);
        float A = 2, B = 3, C[2] = {5, 7};
        hb_kgemm_f32(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 2, 0, 1, &A, 1, &B, 2, 0.5f, C, 2);
        ok(C[0] == 2.5f && C[1] == 3.5f, "K = 0: C = beta·C (%g, %g)", C[0], C[1]);
        /* mode 2 (AVX2 builds' default): up to 64³ the own kernel's bits, above OpenBLAS's */
        static const int sz[2][3] = {{64, 64, 64}, {64, 128, 64}};
        int split_ok = 1;
        for (int s = 0; s < 2; s++) {
            int M = sz[s][0], N = sz[s][1], K = sz[s][2];
            float *A2 = fzeros((int64_t)M * K), *B2 = fzeros((int64_t)K * N), *Cm[3];
            for (int64_t i = 0; i < (int64_t)M * K; i++) A2[i] = (float)urand();
            for (int64_t i = 0; i < (int64_t)K * N; i++) B2[i] = (float)urand();
            for (int mode = 0; mode < 3; mode++) {
                Cm[mode] = fzeros((int64_t)M * N);
                hb_kgemm_force(mode);
                hb_kgemm_f32(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, A2, K, B2, N, 0, Cm[mode], N);
            }
            split_ok &= !memcmp(Cm[2], Cm[s == 0 ? 1 : 0], (size_t)M * N * sizeof(float));
            if (s == 0) split_ok &= hb_kgemm_own() == 2;
            free(A2), free(B2), free(Cm[0]), free(Cm[1]), free(Cm[2]);
        }
        hb_kgemm_force(1);
        ok(split_ok, "mode 2: a 64×64×64 product has the own kernel's bits, a 64×128×64 one OpenBLAS's");
    }
    return tap_done();
}
