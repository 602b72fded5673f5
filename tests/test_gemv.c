/* test_gemv.c — TAP tests for kernels/gemv.c (Y = X · Wᵀ for M ≤ 8 rows: the decode products).
 *
 * For hb_gemv_nt_f32 and hb_gemv_nt_bf16 (W as bfloat16 bits from gemm_bf16_round_bits, X float32):
 *   - every M in 1..8 against a float64 reference on sizes that are not multiples of the vector width or
 *     of the row blocking (N 1, 3, 5, 17, 67; K 0, 1, 7, 15, 16, 17, 33, 100, 257), padded leading
 *     dimensions, beta 0 (Y filled with NaN first: it must not leak) and beta 0.5;
 *     |Δ| ≤ (K + 4)·u·S with u = 2^-24 and S = Σ_k |w_nk|·|x_mk| + |beta·y_mn| (float32 sums of K terms);
 *     for bf16 the reference uses the rounded weights and the unrounded activations (that is the kernel's
 *     contract: bf16 × fp32 products);
 *   - the padding of Y (columns N..ldy) is never written;
 *   - a split of the N columns into parts (as threads split them) gives the same bits as one call;
 *   - NaN in X poisons its row only, inf in W gives ±inf or NaN in its column only.
 */
#include "../kernels/gemv.h"
#include "../kernels/gemm_bf16.h"
#include "ktest.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

static float bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* one product through the kernel under test: bf16 != 0 rounds W to Wb first */
static void run(int bf16, int64_t M, int64_t N, int64_t K, const float *X, int64_t ldx, const float *W,
                const uint16_t *Wb, int64_t ldw, float beta, float *Y, int64_t ldy) {
    if (bf16) hb_gemv_nt_bf16(M, N, K, X, ldx, Wb, ldw, beta, Y, ldy);
    else hb_gemv_nt_f32(M, N, K, X, ldx, W, ldw, beta, Y, ldy);
}

/* worst |Δ| / bound over Y against the float64 reference (Y0: Y before the call) */
static double worst_ratio(int bf16, int64_t M, int64_t N, int64_t K, const float *X, int64_t ldx, const float *W,
                          const uint16_t *Wb, int64_t ldw, float beta, const float *Y0, const float *Y, int64_t ldy) {
    double worst = 0, u = ldexp(1.0, -24);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0, S = 0;
            for (int64_t k = 0; k < K; k++) {
                double w = bf16 ? bf16_value(Wb[n * ldw + k]) : W[n * ldw + k];
                s += w * X[m * ldx + k];
                S += fabs(w * X[m * ldx + k]);
            }
            if (beta != 0) {
                s += (double)beta * Y0[m * ldy + n];
                S += fabs((double)beta * Y0[m * ldy + n]);
            }
            double d = fabs(Y[m * ldy + n] - s), bound = (double)(K + 4) * u * S + 1e-30;
            double r = d / bound;
            if (!(r <= worst)) worst = r; /* NaN-propagating */
        }
    return worst;
}

int main(void) {
    rng_seed(11);
    static const int64_t Ns[] = {1, 3, 5, 17, 67};
    static const int64_t Ks[] = {0, 1, 7, 15, 16, 17, 33, 100, 257};
    const int64_t NN = sizeof Ns / sizeof Ns[0], NK = sizeof Ks / sizeof Ks[0];
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        const char *name = bf16 ? "bf16" : "f32";
        for (float beta = 0; beta <= 0.5f; beta += 0.5f) {
            double worst = 0;
            int pad_ok = 1, nan_ok = 1, cases = 0;
            for (int64_t M = 1; M <= HB_GEMV_MAX_M; M++)
                for (int64_t in = 0; in < NN; in++)
                    for (int64_t ik = 0; ik < NK; ik++) {
                        int64_t N = Ns[in], K = Ks[ik], ldx = K + 3, ldw = K + 5, ldy = N + 2;
                        float *X = fzeros(M * ldx), *W = fzeros(N * ldw), *Y = fzeros(M * ldy),
                              *Y0 = fzeros(M * ldy);
                        uint16_t *Wb = calloc((size_t)(N * ldw + 1), sizeof(uint16_t));
                        for (int64_t i = 0; i < M * ldx; i++) X[i] = (float)urand();
                        for (int64_t i = 0; i < N * ldw; i++) W[i] = (float)urand();
                        gemm_bf16_round_bits(Wb, W, (size_t)(N * ldw));
                        for (int64_t i = 0; i < M * ldy; i++) Y0[i] = beta == 0 ? NAN : (float)urand();
                        memcpy(Y, Y0, (size_t)(M * ldy) * sizeof(float));
                        run(bf16, M, N, K, X, ldx, W, Wb, ldw, beta, Y, ldy);
                        double r = worst_ratio(bf16, M, N, K, X, ldx, W, Wb, ldw, beta, Y0, Y, ldy);
                        if (!(r <= worst)) worst = r;
                        for (int64_t m = 0; m < M; m++)
                            for (int64_t n = N; n < ldy; n++)
                                if (memcmp(&Y[m * ldy + n], &Y0[m * ldy + n], sizeof(float))) pad_ok = 0;
                        if (beta == 0)
                            for (int64_t m = 0; m < M; m++)
                                for (int64_t n = 0; n < N; n++)
                                    if (isnan(Y[m * ldy + n])) nan_ok = 0;
                        cases++;
                        free(X), free(W), free(Y), free(Y0), free(Wb);
                    }
            ok(worst <= 1.0, "%s beta %g: %d shapes (M 1..8) within (K+4)·u·S of float64 (worst ratio %.3g)",
                  name, beta, cases, worst);
            ok(pad_ok, "%s beta %g: Y's padding columns are never written", name, beta);
            if (beta == 0) ok(nan_ok, "%s beta 0: NaN already in Y does not leak into the result", name);
        }

        /* the same bits when the columns are split into parts, as the threads of core/linalg.c split them */
        {
            int64_t M = 8, N = 101, K = 300;
            float *X = fzeros(M * K), *W = fzeros(N * K), *Y1 = fzeros(M * N), *Y2 = fzeros(M * N);
            uint16_t *Wb = calloc((size_t)(N * K), sizeof(uint16_t));
            for (int64_t i = 0; i < M * K; i++) X[i] = (float)urand();
            for (int64_t i = 0; i < N * K; i++) W[i] = (float)urand();
            gemm_bf16_round_bits(Wb, W, (size_t)(N * K));
            int same = 1;
            for (int64_t m = 1; m <= M; m++) {
                run(bf16, m, N, K, X, K, W, Wb, K, 0, Y1, N);
                static const int64_t cuts[] = {0, 1, 4, 37, 38, 99, 101};
                for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++)
                    if (bf16)
                        hb_gemv_nt_bf16(m, cuts[c + 1] - cuts[c], K, X, K, Wb + cuts[c] * K, K, 0, Y2 + cuts[c], N);
                    else
                        hb_gemv_nt_f32(m, cuts[c + 1] - cuts[c], K, X, K, W + cuts[c] * K, K, 0, Y2 + cuts[c], N);
                if (memcmp(Y1, Y2, (size_t)(m * N) * sizeof(float))) same = 0;
                /* a row's result does not depend on the other rows of X (M 1 vs row 0 of M) */
                float y0[101];
                run(bf16, 1, N, K, X, K, W, Wb, K, 0, y0, N);
                if (memcmp(y0, Y1, (size_t)N * sizeof(float))) same = 0;
            }
            ok(same, "%s: column splits and row counts give bit-identical results (M 1..8, N 101, K 300)", name);

            /* NaN in X row 2 → that row all NaN, others finite; inf in W row 5 → column 5 inf or NaN only */
            X[2 * K + 7] = NAN;
            W[5 * K + 3] = INFINITY;
            gemm_bf16_round_bits(Wb, W, (size_t)(N * K));
            run(bf16, 4, N, K, X, K, W, Wb, K, 0, Y1, N);
            int prop = 1;
            for (int64_t m = 0; m < 4; m++)
                for (int64_t n = 0; n < N; n++) {
                    float y = Y1[m * N + n];
                    if (m == 2 && !isnan(y)) prop = 0;
                    if (m != 2 && n == 5 && isfinite(y)) prop = 0;
                    if (m != 2 && n != 5 && !isfinite(y)) prop = 0;
                }
            ok(prop, "%s: NaN in X poisons its row only, inf in W its column only", name);
            free(X), free(W), free(Y1), free(Y2), free(Wb);
        }
    }
    return tap_done();
}
