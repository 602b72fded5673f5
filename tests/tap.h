/* tap.h — the one harness of the C tests: TAP output for `prove` (run by `make test`) and the one seeded
 * random generator. Header-only; every function is static and marked unused, so a test uses what it
 * needs. Helpers for kernel tests (buffers, relative errors, check() with measured numbers) are in
 * ktest.h, which includes this file.
 *
 * TAP
 *   ok(cond, fmt, ...)      prints "ok N - desc" or "not ok N - desc"; returns cond. After a failure it
 *                           calls tap_on_fail when a test has set it (to print what it last saw).
 *   diag(fmt, ...)          a "# ..." diagnostic line
 *   diag_text(label, text)  "# label:" then text as "# " lines, control characters escaped
 *   skip(fmt, ...)          "ok N # SKIP why": a test that cannot run here (passes, says why)
 *   plan(n)                 prints "1..n" before the tests; tap_done() then fails if another number ran.
 *                           Without plan(), tap_done() prints the plan after the last test.
 *   skip_all(fmt, ...)      "1..0 # SKIP why" when nothing can run here; returns 0: `return skip_all(...)`
 *   bail_out(fmt, ...)      "Bail out! why" when the test cannot go on; returns 1: `return bail_out(...)`
 *   tap_done()              the exit status: 0 when every test passed or was skipped (and the plan, if
 *                           any, was kept), 1 otherwise: `return tap_done();`
 *
 * Random numbers: xorshift64 (Marsaglia's 13/7/17), one stream per test program. It starts at
 * 0x9E3779B97F4A7C15; a test that wants its own data calls rng_seed(s) (s ≠ 0) at the top of main(), and
 * may call it again to restart a stream (test_tokenizer.c does, for its corpus).
 *   rng_u64()   the next 64-bit state
 *   urand01()   uniform in [0, 1) (53 bits)
 *   urand()     uniform in [-1, 1): 2·urand01() − 1
 *   nrand()     standard normal (Box–Muller over two urand01())
 */
#ifndef HB_TAP_H
#define HB_TAP_H
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

static int tap_n = 0, tap_fail = 0, tap_plan = -1;
static void (*tap_on_fail)(void) = NULL;

__attribute__((format(printf, 2, 3), unused)) static int ok(int cond, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!cond) {
        tap_fail++;
        if (tap_on_fail) tap_on_fail();
    }
    fflush(stdout);
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

/* text (NULL prints nothing) as diagnostics: newlines shown as \n and a new "# " line, other control
 * characters as \xNN */
__attribute__((unused)) static void diag_text(const char *label, const char *text) {
    printf("# %s:\n# ", label);
    for (; text && *text; text++) {
        if (*text == '\n') printf("\\n\n# ");
        else if ((unsigned char)*text < 0x20) printf("\\x%02x", (unsigned char)*text);
        else putchar(*text);
    }
    printf("\n");
}

__attribute__((format(printf, 1, 2), unused)) static void skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("ok %d # SKIP ", ++tap_n);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

__attribute__((unused)) static void plan(int n) {
    tap_plan = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

__attribute__((format(printf, 1, 2), unused)) static int skip_all(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("1..0 # SKIP ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return 0;
}

__attribute__((format(printf, 1, 2), unused)) static int bail_out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("Bail out! ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return 1;
}

__attribute__((unused)) static int tap_done(void) {
    if (tap_plan < 0) printf("1..%d\n", tap_n);
    else if (tap_n != tap_plan) {
        printf("# planned %d tests, ran %d\n", tap_plan, tap_n);
        return 1;
    }
    return tap_fail ? 1 : 0;
}

/* ---- the seeded random generator ---- */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
__attribute__((unused)) static void rng_seed(uint64_t s) { rng_state = s ? s : 0x9E3779B97F4A7C15ull; }
__attribute__((unused)) static uint64_t rng_u64(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
__attribute__((unused)) static double urand01(void) { return (double)(rng_u64() >> 11) / 9007199254740992.0; }
__attribute__((unused)) static double urand(void) { return urand01() * 2.0 - 1.0; }
__attribute__((unused)) static double nrand(void) {
    double u = urand01(), w = urand01();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * w);
}
#endif
