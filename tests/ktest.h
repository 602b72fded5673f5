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
#endif
