/* test_repl.c — TAP test of the hyblua executable (lua/main.c): options, `arg`, scripts, the REPL
 * and Ctrl-C.
 *
 * Usage: test_repl [path/to/hyblua]   (else $HYBLUA, else ./hyblua)
 *
 * Built against tests/stub_hyblua.c, whose module has `version` and `busy(n)`, a C loop that polls
 * hb_interrupted(). The REPL is driven through a pseudo-terminal (forkpty) with HOME set to a fresh
 * temporary directory, so libedit, the history file and terminal-generated SIGINT are all real.
 * Other cases run the executable with files for stdin/stdout/stderr. Every read and every wait has
 * a deadline: a hung child fails its test and is killed, it never hangs the suite.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tap.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 4000 /* per expectation; normal runs need a few ms */

static const char *hyblua;
static char tmpdir[] = "/tmp/test_repl.XXXXXX";

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait up to timeout_ms for pid; kill it if it is still running. Returns the exit status, 128+signal
 * if it was killed by a signal, or -1 on timeout. */
static int wait_child(pid_t pid, int timeout_ms) {
    long deadline = now_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 || now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(5);
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* ------------------------------------------------------------ a session on a pseudo-terminal */

typedef struct {
    pid_t pid;
    int fd;      /* pty master */
    char *buf;   /* everything the child wrote, '\r' removed */
    size_t len, cap;
    size_t mark; /* expectations search from here */
} session;

static int session_start(session *s, char *const argv[], const char *home) {
    struct winsize ws = {40, 200, 0, 0}; /* wide: no line wrapping */
    memset(s, 0, sizeof *s);
    s->pid = forkpty(&s->fd, NULL, NULL, &ws);
    if (s->pid < 0) return 0;
    if (s->pid == 0) {
        setenv("HOME", home, 1);
        setenv("TERM", "dumb", 1);
        unsetenv("HYBLUA_HISTORY");
        execv(hyblua, argv);
        _exit(127);
    }
    fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
    return 1;
}

/* Read whatever the child writes within timeout_ms. Returns 0 once the child has closed the pty. */
static int session_read(session *s, int timeout_ms) {
    struct pollfd p = {s->fd, POLLIN, 0};
    char chunk[4096];
    ssize_t n, i;
    if (poll(&p, 1, timeout_ms) <= 0) return 1;
    n = read(s->fd, chunk, sizeof chunk);
    if (n <= 0) return n < 0 && (errno == EAGAIN || errno == EINTR);
    if (s->len + (size_t)n + 1 > s->cap) {
        s->cap = (s->len + (size_t)n + 1) * 2;
        s->buf = realloc(s->buf, s->cap);
    }
    for (i = 0; i < n; i++)
        if (chunk[i] != '\r') s->buf[s->len++] = chunk[i];
    s->buf[s->len] = '\0';
    return 1;
}

/* Find needle at or after the mark; with line_start, only where it begins a line. */
static char *find(session *s, const char *needle, int line_start) {
    char *hit = s->buf ? strstr(s->buf + s->mark, needle) : NULL;
    while (hit && line_start && hit > s->buf && hit[-1] != '\n') hit = strstr(hit + 1, needle);
    return hit;
}

/* Wait until `needle` appears after the mark; move the mark past it. Returns 0 on timeout/EOF. */
static int expect_at(session *s, const char *needle, int line_start) {
    long deadline = now_ms() + TIMEOUT_MS;
    for (;;) {
        char *hit = find(s, needle, line_start);
        long left = deadline - now_ms();
        if (hit) {
            s->mark = (size_t)(hit - s->buf) + strlen(needle);
            return 1;
        }
        if (left <= 0 || !session_read(s, (int)left)) {
            diag_text("expected", needle);
            diag_text("got", s->buf ? s->buf + s->mark : "");
            return 0;
        }
    }
}

static int expect(session *s, const char *needle) { return expect_at(s, needle, 0); }

/* libedit may show the prompt a moment before it puts the terminal in raw mode; keys sent in that
 * window are cooked by the terminal (a ^D there is lost). Wait until the terminal is raw. */
static int wait_raw(session *s) {
    long deadline = now_ms() + TIMEOUT_MS;
    struct termios t;
    while (tcgetattr(s->fd, &t) == 0 && (t.c_lflag & ICANON)) {
        if (now_ms() > deadline) {
            diag_text("timeout", "the terminal never left canonical mode");
            return 0;
        }
        sleep_ms(1);
    }
    return 1;
}

/* The prompts, at the start of a line ("> " is not the tail of ">> "), ready for input. */
static int prompt(session *s) { return expect_at(s, "> ", 1) && wait_raw(s); }
static int prompt2(session *s) { return expect_at(s, ">> ", 1) && wait_raw(s); }

static void send_str(session *s, const char *str) {
    size_t len = strlen(str);
    while (len > 0) {
        ssize_t n = write(s->fd, str, len);
        if (n < 0 && errno == EAGAIN) {
            sleep_ms(1);
            continue;
        }
        if (n <= 0) return;
        str += n;
        len -= (size_t)n;
    }
}

/* Send a line at the prompt and wait for the next prompt. */
static int send_line(session *s, const char *line, const char *expected) {
    send_str(s, line);
    send_str(s, "\n");
    return (expected == NULL || expect(s, expected)) && prompt(s);
}

static int session_end(session *s, int timeout_ms) {
    long deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline && session_read(s, 50)) {} /* drain until the child closes the pty */
    if (getenv("TEST_REPL_DEBUG")) diag_text("session output", s->buf);
    close(s->fd);
    free(s->buf);
    return wait_child(s->pid, timeout_ms);
}

/* ------------------------------------------------------------ plain runs with files */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    char *text;
    long n;
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc((size_t)n + 1, 1);
    if (fread(text, 1, (size_t)n, f) != (size_t)n) text[0] = '\0';
    fclose(f);
    return text;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Run hyblua with argv (argv[0] is replaced by the executable) and `input` as stdin; stdout and
 * stderr come back in *out and *err (caller frees). Returns the exit status as wait_child. */
static int run(char **argv, const char *input, char **out, char **err) {
    char in_path[512], out_path[512], err_path[512];
    pid_t pid;
    int status;
    snprintf(in_path, sizeof in_path, "%s/stdin", tmpdir);
    snprintf(out_path, sizeof out_path, "%s/stdout", tmpdir);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmpdir);
    write_file(in_path, input ? input : "");
    argv[0] = (char *)hyblua;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        int in = open(in_path, O_RDONLY);
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || o < 0 || e < 0) _exit(126);
        dup2(in, 0);
        dup2(o, 1);
        dup2(e, 2);
        setenv("HOME", tmpdir, 1);
        execv(hyblua, argv);
        _exit(127);
    }
    status = pid < 0 ? -1 : wait_child(pid, TIMEOUT_MS);
    *out = slurp(out_path);
    *err = slurp(err_path);
    return status;
}

/* ------------------------------------------------------------ history file */

/* libedit stores one entry per line, with blanks, newlines and backslashes vis(3)-encoded as
 * \ooo octal or "\\"; the first line is a "_HiStOrY_V2_" cookie. Decode one line in place. */
static void unvis_line(char *s) {
    char *w = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
            s[3] <= '7') {
            *w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else if (s[0] == '\\' && s[1] == '\\') {
            *w++ = '\\';
            s += 2;
        } else {
            *w++ = *s++;
        }
    }
    *w = '\0';
}

/* Does the history file hold exactly this entry? */
static int history_has(const char *path, const char *entry) {
    char *text = slurp(path), *line, *save = NULL;
    int found = 0;
    for (line = strtok_r(text, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save)) {
        unvis_line(line);
        found = strcmp(line, entry) == 0;
    }
    free(text);
    return found;
}

/* ------------------------------------------------------------ the tests */

static void test_repl_session(void) {
    session s;
    char *argv[] = {(char *)"hyblua", NULL};
    char hist[600];
    size_t from;
    int rc;

    if (!ok(session_start(&s, argv, tmpdir), "REPL starts on a pseudo-terminal")) return;
    ok(expect(&s, "hyblua 0.1.0 (Lua 5.4") && prompt(&s), "banner and prompt");
    ok(send_line(&s, "1+1", "\n2\n"), "1+1 prints 2");
    ok(send_line(&s, "x = = 1", "stdin:1:"), "a syntax error is reported");
    ok(send_line(&s, "2+3", "\n5\n"), "still alive after the syntax error: 2+3 prints 5");
    ok(send_line(&s, "error('oops')", "oops") && strstr(s.buf, "stack traceback") != NULL,
       "a runtime error prints a traceback and returns to the prompt");

    send_str(&s, "function f(a)\n");
    ok(prompt2(&s), "an unfinished chunk asks for more with '>> '");
    send_str(&s, " return a+1\n");
    ok(prompt2(&s), "still unfinished after the second line");
    ok(send_line(&s, "end", NULL), "the chunk completes with 'end'");
    ok(send_line(&s, "f(41)", "\n42\n"), "the multi-line function is defined: f(41) prints 42");

    from = s.mark;
    ok(send_line(&s, "x = 3;", NULL) && send_line(&s, "x*11;", NULL) &&
       send_line(&s, "'done'..x", "\ndone3\n"), "x = 3; and x*11; run");
    {
        char *seg = strndup(s.buf + from, s.mark - from);
        ok(strstr(seg, "\n3\n") == NULL && strstr(seg, "\n33\n") == NULL,
           "a trailing ';' suppresses printing");
        free(seg);
    }
    ok(send_line(&s, "hb.version", "\n0.1.0\n"), "the global hb is preset in the REPL");
    send_str(&s, "{1,\n");
    ok(prompt2(&s), "an open table constructor asks for more");
    ok(send_line(&s, "2} == nil", "\nfalse\n"), "a multi-line expression prints its value");

    /* Ctrl-C at the prompt drops the line, and an unfinished chunk */
    send_str(&s, "abc");
    ok(expect(&s, "abc"), "typed text is echoed");
    send_str(&s, "\x03");
    ok(prompt(&s), "Ctrl-C at the prompt gives a fresh prompt");
    ok(send_line(&s, "1+2", "\n3\n"), "the cancelled text is gone: 1+2 prints 3");
    send_str(&s, "function g()\n");
    ok(prompt2(&s), "continuation prompt");
    send_str(&s, "\x03");
    ok(prompt(&s) && send_line(&s, "7*6", "\n42\n"), "Ctrl-C drops an unfinished chunk");

    /* Ctrl-C while pure Lua code runs */
    send_str(&s, "print('looping') while true do end\n");
    ok(expect(&s, "\nlooping\n"), "an endless Lua loop starts");
    sleep_ms(150);
    send_str(&s, "\x03");
    ok(expect(&s, "interrupted!") && prompt(&s), "Ctrl-C stops it: 'interrupted!' and a prompt");
    ok(send_line(&s, "print('alive')", "\nalive\n"), "print('alive') works afterwards");

    /* Ctrl-C while a C operation runs (it polls hb_interrupted) */
    send_str(&s, "print('busy') hb.busy(1e15)\n");
    ok(expect(&s, "\nbusy\n"), "a long C operation starts");
    sleep_ms(150);
    send_str(&s, "\x03");
    ok(expect(&s, "interrupted!") && prompt(&s), "Ctrl-C stops the C operation");
    ok(send_line(&s, "print('alive2')", "\nalive2\n"), "the REPL is alive after it");

    /* In the REPL a second Ctrl-C does not kill the session */
    send_str(&s, "print('loop2') while true do end\n");
    ok(expect(&s, "\nloop2\n"), "another endless loop");
    sleep_ms(100);
    send_str(&s, "\x03");
    sleep_ms(20);
    send_str(&s, "\x03");
    ok(expect(&s, "interrupted!") && prompt(&s), "two quick Ctrl-C: interrupted, not killed");
    ok(send_line(&s, "print('alive3')", "\nalive3\n"), "the REPL is alive after two Ctrl-C");

    send_str(&s, "\x04");
    rc = session_end(&s, TIMEOUT_MS);
    ok(rc == 0, "Ctrl-D ends the REPL with status 0 (got %d)", rc);

    snprintf(hist, sizeof hist, "%s/.hyblua_history", tmpdir);
    ok(history_has(hist, "1+1") && history_has(hist, "f(41)") && history_has(hist, "x = 3;"),
       "history file has the single-line entries");
    ok(history_has(hist, "function f(a)\n return a+1\nend"), "a multi-line chunk is one entry");
    ok(history_has(hist, "{1,\n2} == nil"), "a multi-line expression is one entry");
    ok(!history_has(hist, "abc") && !history_has(hist, "function g()"),
       "cancelled input is not in the history");
    if (tap_fail) diag_text("history file", slurp(hist));

    /* a new session reads the history back: Ctrl-P recalls the last chunk */
    if (!ok(session_start(&s, argv, tmpdir), "second REPL starts")) return;
    ok(prompt(&s), "prompt");
    send_str(&s, "\x10\n");
    ok(expect(&s, "\nalive3\n") && prompt(&s), "history persists: Ctrl-P recalls print('alive3')");
    send_str(&s, "\x04");
    rc = session_end(&s, TIMEOUT_MS);
    ok(rc == 0, "second REPL ends with status 0 (got %d)", rc);
}

static void test_script_interrupt(void) {
    session s;
    char *argv[] = {(char *)"hyblua", (char *)"-e", (char *)"print('spin') while true do end", NULL};
    int rc;
    if (!ok(session_start(&s, argv, tmpdir), "script run on a pseudo-terminal")) return;
    ok(expect(&s, "spin"), "the script's loop starts");
    sleep_ms(100);
    send_str(&s, "\x03");
    ok(expect(&s, "interrupted!"), "Ctrl-C interrupts a script run");
    {
        long deadline = now_ms() + TIMEOUT_MS; /* the whole output, before session_end frees it */
        int clean;
        while (now_ms() < deadline && session_read(&s, 50)) {}
        clean = strstr(s.buf, "stack traceback") == NULL && strstr(s.buf, "(command line):1: interrupted") == NULL;
        ok(clean, "an interrupt is reported without a position or a traceback");
        if (!clean) diag("output", s.buf);
    }
    rc = session_end(&s, TIMEOUT_MS);
    ok(rc == 130, "an interrupted script exits with status 130 (got %d)", rc);
}

static void test_plain_runs(void) {
    char *out, *err;
    int rc;
    char script[600], script2[600];

    {
        char *argv[] = {NULL, (char *)"-i", NULL};
        rc = run(argv, "x = {1,2,3}\n#x*2\nfunction f(a)\n return a+1\nend\nf(41)\nx;\n", &out, &err);
        ok(rc == 0 && strcmp(out, "6\n42\n") == 0, "piped -i: expressions print, multi-line chunks continue");
        if (strcmp(out, "6\n42\n") != 0) diag_text("stdout", out), diag_text("stderr", err);
        free(out), free(err);
    }
    {
        char *argv[] = {NULL, (char *)"-i", NULL};
        rc = run(argv, "error('bad')\n1+1\nfunction h(\n", &out, &err);
        ok(rc == 0 && strcmp(out, "2\n") == 0 && strstr(err, "bad") && strstr(err, "<eof>"),
           "piped -i: errors go to stderr and the REPL goes on; an unfinished chunk at EOF is reported");
        free(out), free(err);
    }
    {
        char *argv[] = {NULL, (char *)"-e", (char *)"print(hb.version)", (char *)"-e", (char *)"print(1+1)", NULL};
        rc = run(argv, NULL, &out, &err);
        ok(rc == 0 && strcmp(out, "0.1.0\n2\n") == 0, "-e is repeatable and sees the global hb");
        free(out), free(err);
    }

    snprintf(script, sizeof script, "%s/args.lua", tmpdir);
    {
        char text[2000];
        char *argv[] = {NULL, (char *)"-W", script, (char *)"a", (char *)"b c", NULL};
        const char *want = "true\ta\tb c\t-W\ttrue\tnil\t2\t2\ta\tb c\n";
        snprintf(text, sizeof text,
                 "print(arg[0] == '%s', arg[1], arg[2], arg[-1], arg[-2] == '%s', arg[-3], #arg,\n"
                 "      select('#', ...), ...)\n", script, hyblua);
        write_file(script, text);
        rc = run(argv, NULL, &out, &err);
        ok(rc == 0 && strcmp(out, want) == 0, "script args: arg[0] the script, arg[1..], negative indices, ...");
        if (rc != 0 || strcmp(out, want) != 0) diag_text("stdout", out), diag_text("stderr", err);
        free(out), free(err);
    }
    snprintf(script2, sizeof script2, "%s/plain.lua", tmpdir);
    write_file(script2, "print(arg[0] ~= nil, arg[1], #arg, type(hb), require('hyblua').version, ...)\n");
    {
        char *argv[] = {NULL, script2, (char *)"x", NULL};
        rc = run(argv, NULL, &out, &err);
        ok(rc == 0 && strcmp(out, "true\tx\t1\tnil\t0.1.0\tx\n") == 0,
           "a plain script gets no global hb but can require \"hyblua\"");
        if (rc != 0) diag_text("stderr", err);
        free(out), free(err);
    }
    {
        char *argv[] = {NULL, (char *)"--version", NULL};
        rc = run(argv, NULL, &out, &err);
        ok(rc == 0 && strncmp(out, "hyblua 0.1.0 (Lua 5.4.", 22) == 0 && strchr(out, ')'), "--version: %.40s", out);
        free(out), free(err);
    }
    {
        char *argv[] = {NULL, (char *)"-v", NULL};
        rc = run(argv, NULL, &out, &err);
        ok(rc == 0 && strncmp(out, "hyblua 0.1.0 (Lua 5.4.", 22) == 0, "-v prints the version");
        free(out), free(err);
    }
    {
        char *argv[] = {NULL, (char *)"-h", NULL};
        rc = run(argv, NULL, &out, &err);
        ok(rc == 0 && strstr(out, "usage: hyblua") != NULL, "-h prints help");
        free(out), free(err);
    }
    snprintf(script, sizeof script, "%s/boom.lua", tmpdir);
    write_file(script, "local function inner() error('boom') end\ninner()\nprint('not reached')\n");
    {
        char *argv[] = {NULL, script, NULL};
        rc = run(argv, NULL, &out, &err);
        ok(rc == 1 && strstr(err, "boom.lua:1: boom") && strstr(err, "stack traceback") &&
           strstr(err, "inner") && out[0] == '\0', "a script error: message and traceback on stderr, status 1");
        free(out), free(err);
    }
    {
        char *argv[] = {NULL, (char *)"-e", (char *)"error('e-boom')", NULL};
        rc = run(argv, NULL, &out, &err);
        ok(rc == 1 && strstr(err, "e-boom"), "an -e error gives status 1");
        free(out), free(err);
    }
    {
        char *argv[] = {NULL, NULL};
        rc = run(argv, "print(1+2)\n", &out, &err);
        ok(rc == 0 && strcmp(out, "3\n") == 0, "stdin that is not a terminal runs as a script");
        free(out), free(err);
    }
    {
        char *argv[] = {NULL, (char *)"-", (char *)"q", NULL};
        rc = run(argv, "print(arg[0], ...)\n", &out, &err);
        ok(rc == 0 && strcmp(out, "-\tq\n") == 0, "'-' runs stdin as the script, with args");
        free(out), free(err);
    }
    snprintf(script, sizeof script, "%s/seven.lua", tmpdir);
    write_file(script, "y = 7\n");
    {
        char *argv[] = {NULL, (char *)"-i", script, NULL};
        rc = run(argv, "y*6\n", &out, &err);
        ok(rc == 0 && strcmp(out, "42\n") == 0, "-i script.lua runs the script, then the REPL in the same state");
        free(out), free(err);
    }
    {
        char *argv[] = {NULL, (char *)"-x", NULL};
        rc = run(argv, NULL, &out, &err);
        ok(rc == 1 && strstr(err, "unrecognized option '-x'"), "a bad option gives status 1");
        free(out), free(err);
    }
    /* user errors (recorded in registry["hyblua.user_errors"], as hb.user_error does) print without a
     * traceback; other errors keep theirs; --traceback and HYBLUA_TRACEBACK=1 give every error one */
    {
        static char user[] = "local r = debug.getregistry(); r['hyblua.user_errors'] = {['bad key x'] = true}; error('bad key x', 0)";
        char *argv[] = {NULL, (char *)"-e", user, NULL};
        rc = run(argv, NULL, &out, &err);
        ok(rc == 1 && strcmp(err, "hyblua: bad key x\n") == 0, "a user error is its message alone, status 1");
        if (strcmp(err, "hyblua: bad key x\n") != 0) diag("stderr", err);
        free(out), free(err);
        char *argv2[] = {NULL, (char *)"--traceback", (char *)"-e", user, NULL};
        rc = run(argv2, NULL, &out, &err);
        ok(rc == 1 && strstr(err, "bad key x") && strstr(err, "stack traceback"), "--traceback: a user error with its traceback");
        free(out), free(err);
        setenv("HYBLUA_TRACEBACK", "1", 1);
        rc = run(argv, NULL, &out, &err);
        unsetenv("HYBLUA_TRACEBACK");
        ok(rc == 1 && strstr(err, "stack traceback"), "HYBLUA_TRACEBACK=1: the same");
        free(out), free(err);
    }
    {
        char *argv[] = {NULL, (char *)"-e", (char *)"local t = nil; return t.x", NULL};
        rc = run(argv, NULL, &out, &err);
        ok(rc == 1 && strstr(err, "attempt to index") && strstr(err, "stack traceback"), "a bug keeps its traceback");
        free(out), free(err);
    }
}

int main(int argc, char **argv) {
    char cmd[600];
    hyblua = argc > 1 ? argv[1] : getenv("HYBLUA") ? getenv("HYBLUA") : "./hyblua";
    signal(SIGPIPE, SIG_IGN);
    if (access(hyblua, X_OK) != 0) return skip_all("no executable at %s", hyblua);
    if (mkdtemp(tmpdir) == NULL) return bail_out("cannot create a temporary directory");
    test_repl_session();
    test_script_interrupt();
    test_plain_runs();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) diag("could not remove %s", tmpdir);
    return tap_done();
}
