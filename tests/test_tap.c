/* test_tap.c — the C tests' harness (tests/tap.h) checked from outside, TAP.
 *
 * Run with an argument, this program is a small test using tap.h one way (a pass, a failure, skips, a
 * plan kept or broken, skip_all, bail_out). Run without one, it runs itself in each mode and checks the
 * exact output and the exit status: 0 when everything passed or was skipped, 1 otherwise. It also checks
 * the seeded generator: the same seed gives the same stream, urand01/urand/nrand stay in range, and
 * the first values from the default seed are the ones the kernel tests' data were made from.
 */
#include "tap.h"
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static void show_last(void) { diag("hook after a failure"); }

static int child(const char *mode) {
    if (!strcmp(mode, "pass")) { ok(1, "a"); ok(2 > 1, "b %d", 2); return tap_done(); }
    if (!strcmp(mode, "fail")) { ok(1, "a"); ok(0, "b"); ok(1, "c"); return tap_done(); }
    if (!strcmp(mode, "hook")) { tap_on_fail = show_last; ok(1, "a"); ok(0, "b"); return tap_done(); }
    if (!strcmp(mode, "skip")) { ok(1, "a"); skip("no %s here", "device"); return tap_done(); }
    if (!strcmp(mode, "plan")) { plan(2); ok(1, "a"); ok(1, "b"); return tap_done(); }
    if (!strcmp(mode, "short")) { plan(3); ok(1, "a"); ok(1, "b"); return tap_done(); }
    if (!strcmp(mode, "skip_all")) return skip_all("nothing to test: %s", "no data");
    if (!strcmp(mode, "bail")) { ok(1, "a"); return bail_out("cannot go on"); }
    if (!strcmp(mode, "text")) { diag_text("got", "a\nb\tc"); return tap_done(); }
    return 2;
}

/* runs `self mode`, returns its output (malloc'ed) and exit status */
static char *run(const char *self, const char *mode, int *status) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "'%s' %s", self, mode);
    FILE *p = popen(cmd, "r");
    char *buf = calloc(4096, 1);
    size_t n = p ? fread(buf, 1, 4095, p) : 0;
    buf[n] = 0;
    int st = p ? pclose(p) : -1;
    *status = st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return buf;
}

static void expect(const char *self, const char *mode, int want_status, const char *want) {
    int st;
    char *out = run(self, mode, &st);
    ok(st == want_status && !strcmp(out, want), "tap.h %s: exit status %d and the expected output", mode, want_status);
    if (st != want_status || strcmp(out, want)) diag("exit %d", st), diag_text("output", out), diag_text("expected", want);
    free(out);
}

int main(int argc, char **argv) {
    if (argc > 1) return child(argv[1]);
    if (strlen(argv[0]) > 1000) return bail_out("path too long");
    expect(argv[0], "pass", 0, "ok 1 - a\nok 2 - b 2\n1..2\n");
    expect(argv[0], "fail", 1, "ok 1 - a\nnot ok 2 - b\nok 3 - c\n1..3\n");
    expect(argv[0], "hook", 1, "ok 1 - a\nnot ok 2 - b\n# hook after a failure\n1..2\n");
    expect(argv[0], "skip", 0, "ok 1 - a\nok 2 # SKIP no device here\n1..2\n");
    expect(argv[0], "plan", 0, "1..2\nok 1 - a\nok 2 - b\n");
    expect(argv[0], "short", 1, "1..3\nok 1 - a\nok 2 - b\n# planned 3 tests, ran 2\n");
    expect(argv[0], "skip_all", 0, "1..0 # SKIP nothing to test: no data\n");
    expect(argv[0], "bail", 1, "ok 1 - a\nBail out! cannot go on\n");
    expect(argv[0], "text", 0, "# got:\n# a\\n\n# b\\x09c\n1..0\n");

    /* the generator: xorshift64 13/7/17 from 0x9E3779B97F4A7C15 */
    uint64_t first = rng_u64(), x = 0x9E3779B97F4A7C15ull;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    ok(first == x, "rng_u64: xorshift64 (13, 7, 17) from the default seed");
    rng_seed(12345);
    double a[1000], lo = 1, hi = -1, s = 0, s2 = 0;
    int in01 = 1, in11 = 1;
    for (int i = 0; i < 1000; i++) a[i] = urand01(), in01 &= a[i] >= 0 && a[i] < 1;
    for (int i = 0; i < 1000; i++) { double u = urand(); in11 &= u >= -1 && u < 1; lo = u < lo ? u : lo; hi = u > hi ? u : hi; }
    for (int i = 0; i < 20000; i++) { double z = nrand(); s += z, s2 += z * z; }
    rng_seed(12345);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= urand01() == a[i];
    ok(same, "rng_seed: the same seed gives the same stream");
    ok(in01 && in11 && lo < -0.9 && hi > 0.9, "urand01 in [0, 1), urand in [-1, 1) and spread over it");
    ok(fabs(s / 20000) < 0.05 && fabs(s2 / 20000 - 1) < 0.05, "nrand: mean %.3f, variance %.3f (0 and 1)",
       s / 20000, s2 / 20000);
    return tap_done();
}
