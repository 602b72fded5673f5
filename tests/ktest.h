/* ktest.h — helpers shared by the kernel tests (test_hgrn.c, test_conv1d.c, test_retention.c,
 * test_attention.c, test_gemm_bf16.c, test_gla.c, test_delta_rule.c). Includes tap.h (TAP output and the
 * seeded generator urand01/urand/nrand). Header-only; every function is static and marked unused, so a
 * test may use only some of them.
 *
 *   drand_vec(n, amp)        n doubles amp·urand(), malloc'ed (at least one element)
 *   dzeros(n), fzeros(n)     n zeroed doubles / floats, calloc'ed (at least one element)
 *   to_f(x, n)               a float copy of n doubles (NULL for NULL)
 *   rel_err_fd, rel_err_dd   max|a − b| / max|b| for a float or double a (b the reference; divided by 1
 *                            when b is all zero); a NaN anywhere in a or b gives NaN, which fails any
 *                            `err <= tol` test
 *   check(cond, name, fmt, ...)  tap.h's ok() for name with the measured numbers as a diagnostic line
 *                            under it
 * Packed sequences (kernels/seqs.h):
 *   PACK_LENS, PACK_N        the document lengths every kernel test packs: {1, 63, 64, 65, 200}
 *   pack_cu(cu, lens, n)     cu_seqlens (n+1) of documents of these lengths; returns the total
 *   bad_packs(T, out)        the invalid layouts (cu_seqlens, N, B) of a packed row of T ≥ 4 tokens that
 *                            every kernel must refuse with −1; returns their count (≤ 8)
 */
#ifndef HB_KTEST_H
#define HB_KTEST_H
#include "tap.h"
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((unused)) static double *drand_vec(int64_t n, double amp) {
    double *x = malloc((size_t)(n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) x[i] = amp * urand();
    return x;
}
__attribute__((unused)) static double *dzeros(int64_t n) { return calloc((size_t)(n ? n : 1), sizeof(double)); }
__attribute__((unused)) static float *fzeros(int64_t n) { return calloc((size_t)(n ? n : 1), sizeof(float)); }
__attribute__((unused)) static float *to_f(const double *x, int64_t n) {
    if (!x) return NULL;
    float *y = fzeros(n);
    for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

/* max|a − b| / max|b| (b the reference). */
__attribute__((unused)) static double rel_err_fd(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= num)) num = d; /* NaN-propagating, unlike fmax */
        if (!(fabs(b[i]) <= den)) den = fabs(b[i]);
    }
    return num / (den > 0 ? den : 1);
}
__attribute__((unused)) static double rel_err_dd(const double *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= num)) num = d;
        if (!(fabs(b[i]) <= den)) den = fabs(b[i]);
    }
    return num / (den > 0 ? den : 1);
}

/* ok() from tap.h with the measured numbers as a diagnostic line under it. */
__attribute__((format(printf, 3, 4), unused)) static void check(int cond, const char *name, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ok(cond, "%s", name);
    diag("%s", buf);
}

static const int64_t PACK_LENS[] = {1, 63, 64, 65, 200};
#define PACK_N 5

__attribute__((unused)) static int64_t pack_cu(int64_t *cu, const int64_t *lens, int n) {
    cu[0] = 0;
    for (int i = 0; i < n; i++) cu[i + 1] = cu[i] + lens[i];
    return cu[n];
}

typedef struct {
    int64_t cu[4], N, B;
    const char *what;
} bad_pack_t;

__attribute__((unused)) static int bad_packs(int64_t T, bad_pack_t *out) {
    const bad_pack_t b[] = {
        {{1, 2, T}, 2, 1, "cu_seqlens[0] != 0"},
        {{0, 2, T - 1}, 2, 1, "cu_seqlens[N] != T"},
        {{0, 3, 2, T}, 3, 1, "decreasing cu_seqlens"},
        {{0, 2, T}, 2, 2, "B != 1"},
        {{0, T}, 0, 1, "N = 0"},
        {{0, -1, T}, 2, 1, "a negative boundary"},
    };
    int n = (int)(sizeof b / sizeof b[0]);
    for (int i = 0; i < n; i++) out[i] = b[i];
    return n;
}
#endif
