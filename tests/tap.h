/* tap.h — a tiny TAP producer for the C tests (run by `prove` from `make test`).
 * ok(cond, fmt, ...) prints "ok N - desc" or "not ok N - desc"; tap_done() prints the plan and returns
 * the exit status (non-zero if anything failed). Header-only; every function is static. */
#ifndef HB_TAP_H
#define HB_TAP_H
#include <stdarg.h>
#include <stdio.h>

static int tap_n = 0, tap_fail = 0;

__attribute__((format(printf, 2, 3), unused)) static int ok(int cond, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (!cond) tap_fail++;
    return cond;
}

__attribute__((format(printf, 1, 2), unused)) static void diag(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

__attribute__((unused)) static int tap_done(void) {
    printf("1..%d\n", tap_n);
    return tap_fail ? 1 : 0;
}
#endif
