/* main.c — the hyblua executable: script runner and interactive REPL (modelled on Lua 5.4's lua.c).
 *
 *   hyblua script.lua args...   run a script; global `arg` as in lua.c (arg[0] the script, arg[1..]
 *                               its arguments, negative indices the interpreter and its options)
 *   hyblua -e 'code' ...        run strings (repeatable), in order, before any script
 *   hyblua -i [script.lua]      run the script (if any), then the REPL in the same Lua state
 *   hyblua                      REPL on a terminal; otherwise (or with `-`) run stdin as a script
 *   hyblua plot FILE.jsonl...   plot training curves (hb.plot.main: `hyblua plot --help`); a script
 *                               file named "plot" runs as ./plot
 *   hyblua --traceback ...      tracebacks for user errors too (also HYBLUA_TRACEBACK=1)
 *
 * The module comes from luaopen_hyblua (lua/hyblua.h), registered in package.preload, so scripts say
 * `local hb = require "hyblua"`. For convenience the REPL and -e chunks also get a global
 * `hb = require "hyblua"`; plain scripts do not (modules and scripts set no globals they rely on).
 *
 * REPL. Each chunk is tried first as an expression (`return <text>`), then as statements; while
 * either form fails only because the input ended early (the syntax error ends at "<eof>"), another
 * line is read with the ">> " prompt. Results go through the global `print` (so tensors show their
 * __tostring); a trailing ';' suppresses printing. Errors print a traceback and return to the
 * prompt. On a terminal, lines are edited with libedit (readline API) and every complete chunk is one
 * history entry (multi-line chunks joined with newlines), saved to ~/.hyblua_history after each chunk
 * (HYBLUA_HISTORY overrides the path; set it empty for no history file). When stdin is not a
 * terminal (`... | hyblua -i`) lines are read plainly and no prompts are shown.
 *
 * Errors. A user error (raised by hb.user_error: a bad argument, an unknown key, a missing file; see
 * lua/hyblua/errors.lua) is printed as its message alone; every other error — a bug — with a
 * traceback. The message handler tells them apart by the registry table "hyblua.user_errors"
 * (message → true) that hb.user_error fills; it is cleared before each chunk.
 *
 * Exit status: 0 on success, 1 after an error, 130 (128 + SIGINT, as a shell reports a process killed
 * by Ctrl-C) when a script run was interrupted — also when the script caught the interrupt and ended
 * normally (hb.train stops at a step boundary, saves and returns), since the interrupt flag stays
 * raised until the next chunk.
 *
 * Ctrl-C. While a chunk runs, SIGINT raises the hb_interrupted() flag (core/interrupt.h), which C
 * kernels and training loops poll, and sets a Lua hook (lua.c's technique) that stops pure Lua code
 * at its next step with the error "interrupted!" (without a position; an "interrupted!" from a binding
 * is shown the same way, without its position or a traceback). The flag is cleared before each chunk. In a script
 * run a second Ctrl-C kills the process as usual; in an interactive session (REPL or -i) it only
 * re-raises the request, so a slow C operation that polls late does not end the session (Ctrl-\
 * still does). At the prompt, Ctrl-C abandons the line (and any unfinished chunk) and shows a fresh
 * prompt. Limits: the hook is set on the main Lua thread only, so a pure-Lua loop running inside a
 * coroutine is not stopped by it (C operations it calls still see the flag); a C function that
 * never polls is only interrupted when it returns.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <editline/readline.h>

#include "../core/interrupt.h"
#include "hyblua.h"

#define PROMPT "> "
#define PROMPT2 ">> "
#define HISTORY_FILE ".hyblua_history"
#define HISTORY_MAX 1000

/* Chunk-reading outcomes besides the lua_load status codes. */
#define CHUNK_EOF (-1)
#define CHUNK_CANCELLED (-2)

static const char *progname = "hyblua"; /* prefix of error messages; NULL inside the REPL */
static lua_State *globalL = NULL;       /* the state the SIGINT handler sets its hook on */
static pthread_t main_thread;
static volatile sig_atomic_t interactive = 0; /* REPL or -i: a second Ctrl-C must not kill */

static int full_traceback = 0;          /* --traceback / HYBLUA_TRACEBACK: tracebacks for user errors */
static int editing = 0;                 /* libedit is reading the lines */
static char *history_file = NULL;       /* NULL: no persistent history */
static int prompt_cancelled = 0;        /* Ctrl-C seen while reading a line */


/* ---------------------------------------------------------------- messages */

static void l_message(const char *pname, const char *msg) {
    fflush(stdout); /* keep printed output and the error in order */
    if (pname) fprintf(stderr, "%s: ", pname);
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
}

/* A module may set registry["hyblua.on_fatal"] to a function(msg) that must run when an error ends a
 * non-interactive run: ./hyblua-mpi (lua/lmpi.c) uses it to MPI_Abort the job rather than leave the
 * other ranks blocked in a collective. Errors inside the hook are ignored. */
static void fatal_hook(lua_State *L, const char *msg) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, "hyblua.on_fatal") != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return;
    }
    lua_pushstring(L, msg);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
}

/* Print the error message on the stack top (if status is an error) and pop it. */
static int report(lua_State *L, int status) {
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (msg == NULL) msg = "(error object is not a string)";
        l_message(progname, msg);
        if (!interactive) fatal_hook(L, msg);
        lua_pop(L, 1);
    }
    return status;
}

static void print_version(void) {
    printf("hyblua %s (%s)\n", HB_VERSION, LUA_RELEASE);
    fflush(stdout);
}

static void print_help(FILE *f) {
    fprintf(f,
        "usage: hyblua [options] [script [args]]\n"
        "Runs a Lua script with the hyblua module available, or starts the REPL.\n"
        "Options:\n"
        "  -e stat        execute string 'stat' (the global hb = require \"hyblua\" is preset)\n"
        "  -i             enter the REPL after running 'script' and -e strings\n"
        "  -l name        require library 'name' into global 'name'\n"
        "  -v, --version  show version information\n"
        "  -W             turn warnings on\n"
        "  --traceback    print a traceback for user errors too (HYBLUA_TRACEBACK=1 does the same)\n"
        "  -h, --help     show this help\n"
        "  --             stop handling options\n"
        "  -              stop handling options and execute stdin\n"
        "  hyblua plot run/metrics.jsonl...   plot training curves to SVG/PNG (hyblua plot --help)\n"
        "Scripts load the module themselves: local hb = require \"hyblua\"\n"
        "Recipes answer --help with their keys: hyblua recipes/gdn_3to1.lua --help\n"
        "Exit status: 0 success, 1 error, 130 interrupted (Ctrl-C).\n"
        "REPL: the global 'hb' is preset; a trailing ';' suppresses printing; Ctrl-C interrupts the\n"
        "running chunk or clears the line; Ctrl-D exits. History is kept in ~/" HISTORY_FILE "\n"
        "(HYBLUA_HISTORY overrides the path; empty disables it).\n");
}

static void print_usage(const char *badoption) {
    if (badoption[1] == 'e' || badoption[1] == 'l')
        fprintf(stderr, "hyblua: '%s' needs argument\n", badoption);
    else
        fprintf(stderr, "hyblua: unrecognized option '%s'\n", badoption);
    fprintf(stderr, "usage: hyblua [options] [script [args]]  (hyblua -h for help)\n");
}


/* ---------------------------------------------------------------- Ctrl-C */

/* The hook the SIGINT handler installs: stop the Lua code at its next step. Calls into and returns
 * from C functions are let through (the hook stays armed): a C function either returns soon or polls
 * hb_interrupted() itself, and an error already on its way ("interrupted!" from a binding) must not
 * be cut short inside the message handler or a C __close. */
static void lstop(lua_State *L, lua_Debug *ar) {
    if (lua_getinfo(L, "S", ar) && strcmp(ar->what, "C") == 0) return;
    lua_sethook(L, NULL, 0, 0);
    if (hb_interrupt_deferred()) return; /* a training loop polls the flag at its next step boundary */
    lua_pushliteral(L, "interrupted!"); /* no position: it is not an error of the line that ran */
    lua_error(L);
}

/* SIGINT while a chunk runs. In a script run the handler was installed with SA_RESETHAND, so the
 * next Ctrl-C kills. The hook is only set from the main thread (the Lua thread); worker threads
 * should block SIGINT, and Linux delivers it to the main thread anyway when it can. */
static void on_sigint_running(int sig) {
    (void)sig;
    hb_interrupt_raise();
    if (pthread_equal(pthread_self(), main_thread))
        lua_sethook(globalL, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

/* SIGINT at the prompt or between chunks: just note it (the line reader looks at the flag). */
static void on_sigint_idle(int sig) {
    (void)sig;
    hb_interrupt_raise();
}

enum sigint_mode { SIGINT_IDLE, SIGINT_PROMPT, SIGINT_RUNNING };

static void set_sigint(enum sigint_mode mode) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    switch (mode) {
    case SIGINT_IDLE: /* between chunks: ignored in a session, default (terminate) in a script run */
        sa.sa_handler = interactive ? on_sigint_idle : SIG_DFL;
        sa.sa_flags = SA_RESTART;
        break;
    case SIGINT_PROMPT: /* no SA_RESTART: the blocked read must return EINTR */
        sa.sa_handler = on_sigint_idle;
        sa.sa_flags = 0;
        break;
    case SIGINT_RUNNING: /* SA_RESTART: a C op writing a file must not see EINTR */
        sa.sa_handler = on_sigint_running;
        sa.sa_flags = SA_RESTART | (interactive ? 0 : SA_RESETHAND);
        break;
    }
    sigaction(SIGINT, &sa, NULL);
}


/* ---------------------------------------------------------------- running chunks */

#define USER_ERRORS "hyblua.user_errors"
#define INTERRUPTED "interrupted!"

/* Was the string at index idx raised by hb.user_error (lua/hyblua/errors.lua)? */
static int is_user_error(lua_State *L, int idx) {
    int yes = 0;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TSTRING) return 0;
    if (lua_getfield(L, LUA_REGISTRYINDEX, USER_ERRORS) == LUA_TTABLE) {
        lua_pushvalue(L, idx);
        yes = lua_rawget(L, -2) == LUA_TBOOLEAN && lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return yes;
}

/* Does msg end with "interrupted!" (the hook's error, or a binding's with its position)? */
static int is_interrupt_message(const char *msg) {
    size_t n = strlen(msg), k = sizeof(INTERRUPTED) - 1;
    return n >= k && strcmp(msg + n - k, INTERRUPTED) == 0;
}

/* Message handler: a user error is its message alone; an interrupt is "interrupted!"; anything else
 * (a bug) gets a traceback. --traceback gives every error its traceback. */
static int msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg != NULL && !full_traceback) {
        if (is_user_error(L, 1)) return 1;
        if (hb_interrupted() && is_interrupt_message(msg)) {
            lua_pushliteral(L, INTERRUPTED);
            return 1;
        }
    }
    if (msg == NULL) { /* error object is not a string */
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1; /* its __tostring is the message */
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Call the function below the narg arguments on the stack top, with a traceback on error and
 * Ctrl-C armed. Same contract as lua_pcall. */
static int docall(lua_State *L, int narg, int nres) {
    int status;
    int base = lua_gettop(L) - narg; /* function index */
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    globalL = L;
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, USER_ERRORS); /* a fresh record of user errors per chunk */
    hb_interrupt_clear();
    set_sigint(SIGINT_RUNNING);
    status = lua_pcall(L, narg, nres, base);
    set_sigint(SIGINT_IDLE);
    if (lua_gethook(L) == lstop) lua_sethook(L, NULL, 0, 0); /* a Ctrl-C that came too late */
    lua_remove(L, base);
    return status;
}

static int dochunk(lua_State *L, int status) {
    if (status == LUA_OK) status = docall(L, 0, 0);
    return report(L, status);
}

static int dofile(lua_State *L, const char *name) {
    return dochunk(L, luaL_loadfile(L, name));
}

static int dostring(lua_State *L, const char *s, const char *name) {
    return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* global[globname] = require(modname) */
static int dolibrary(lua_State *L, const char *globname, const char *modname) {
    int status;
    lua_getglobal(L, "require");
    lua_pushstring(L, modname);
    status = docall(L, 1, 1);
    if (status == LUA_OK) lua_setglobal(L, globname);
    return report(L, status);
}

/* The REPL's and -e's convenience global: hb = require "hyblua" (unless hb is already set). */
static void preset_hb(lua_State *L) {
    int t = lua_getglobal(L, "hb");
    lua_pop(L, 1);
    if (t == LUA_TNIL) dolibrary(L, "hb", "hyblua");
}

/* Build the global `arg`: argv[script] at index 0, its arguments after it, the interpreter and its
 * options at negative indices. script == 0 when there is no script. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
    int i;
    lua_createtable(L, argc - (script + 1), script + 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

/* Push arg[1..n] (the script's arguments, also its `...`); returns n. */
static int push_script_args(lua_State *L) {
    int i, n;
    if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
    n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -i); /* the table */
    return n;
}

/* The `hyblua plot ...` subcommand: hb.plot.main(arg[1..]). */
static const char plot_chunk[] = "return require('hyblua').plot.main({...})";

/* Run argv[0] as the script; "-" (not after "--") is stdin; "plot" (not after "--") the plot
 * subcommand. */
static int run_script(lua_State *L, char **argv) {
    const char *fname = argv[0];
    int status;
    int after_dashes = strcmp(argv[-1], "--") == 0;
    if (strcmp(fname, "-") == 0 && !after_dashes) fname = NULL;
    if (strcmp(fname ? fname : "", "plot") == 0 && !after_dashes)
        status = luaL_loadbuffer(L, plot_chunk, sizeof plot_chunk - 1, "=hyblua plot");
    else
        status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
        int n = push_script_args(L);
        status = docall(L, n, LUA_MULTRET);
    }
    return report(L, status);
}


/* ---------------------------------------------------------------- reading lines */

/* libedit's character source (rl_getc_function). Reading ourselves, without SA_RESTART, is what
 * lets Ctrl-C end the line: a raised flag is answered with a newline and prompt_cancelled, and the
 * REPL throws the line away. A byte that arrived together with the Ctrl-C (read() returned it with
 * the signal pending) was typed after it: it is kept for the next line. Multibyte characters are
 * decoded here, since libedit takes the value returned as one wide character. Returns -1 at end of
 * input. */
static int prompt_getc(FILE *in) {
    static int pending = -1; /* a byte read just before a Ctrl-C was noticed */
    mbstate_t mb;
    memset(&mb, 0, sizeof mb);
    for (;;) {
        unsigned char c;
        ssize_t n;
        if (hb_interrupted()) {
            prompt_cancelled = 1;
            return '\n';
        }
        if (pending >= 0) {
            c = (unsigned char)pending;
            pending = -1;
        } else {
            n = read(fileno(in), &c, 1);
            if (n == 0) return -1;
            if (n < 0) {
                if (errno == EINTR) continue;
                return -1;
            }
            if (hb_interrupted()) {
                pending = c;
                continue;
            }
        }
        if (c < 0x80 || MB_CUR_MAX == 1) return c;
        {
            char ch = (char)c;
            wchar_t wc;
            size_t r = mbrtowc(&wc, &ch, 1, &mb);
            if (r == (size_t)-2) continue; /* more bytes to come */
            if (r == (size_t)-1) return c; /* not valid here: pass the byte on */
            return (int)wc;
        }
    }
}

/* Where the history lives: $HYBLUA_HISTORY, else ~/.hyblua_history; NULL for none. */
static char *history_path(void) {
    const char *env = getenv("HYBLUA_HISTORY");
    const char *home;
    char *path;
    if (env != NULL) return env[0] ? strdup(env) : NULL;
    home = getenv("HOME");
    if (home == NULL || home[0] == '\0') return NULL;
    path = malloc(strlen(home) + sizeof("/" HISTORY_FILE));
    if (path) sprintf(path, "%s/%s", home, HISTORY_FILE);
    return path;
}

/* Set up libedit when stdin is a terminal; otherwise lines are read with getline. */
static void init_line_reading(void) {
    if (!isatty(STDIN_FILENO)) return;
    setlocale(LC_CTYPE, ""); /* for multibyte input; LC_NUMERIC stays "C" for Lua */
    rl_readline_name = "hyblua";
    rl_getc_function = prompt_getc;
    rl_catch_signals = 0;      /* our own SIGINT handling, see prompt_getc */
    rl_inhibit_completion = 1; /* Tab inserts a tab */
    if (rl_initialize() != 0) return;
    editing = 1;
    stifle_history(HISTORY_MAX);
    history_file = history_path();
    if (history_file) read_history(history_file);
}

/* Add one complete chunk to the history and save the file. */
static void save_history(const char *text) {
    static int warned = 0;
    if (!editing || text[strspn(text, " \t\n")] == '\0') return;
    add_history(text);
    if (history_file && write_history(history_file) != 0 && !warned) {
        fprintf(stderr, "hyblua: cannot write history file '%s'\n", history_file);
        warned = 1;
    }
}

/* Read one line (without its newline) into a malloc'd string. Returns NULL at end of input or,
 * with *cancelled set, when Ctrl-C was pressed while reading. */
static char *read_line(const char *prompt, int *cancelled) {
    char *line = NULL;
    *cancelled = 0;
    hb_interrupt_clear();
    prompt_cancelled = 0;
    set_sigint(SIGINT_PROMPT);
    if (editing) {
        line = readline(prompt);
        if (prompt_cancelled) {
            free(line);
            line = NULL;
            *cancelled = 1;
        }
    } else {
        size_t cap = 0;
        ssize_t n;
        if (isatty(STDIN_FILENO)) { /* a terminal libedit could not handle */
            fputs(prompt, stdout);
            fflush(stdout);
        }
        n = getline(&line, &cap, stdin);
        if (n < 0) {
            free(line);
            line = NULL;
            if (hb_interrupted()) { /* EINTR from Ctrl-C */
                clearerr(stdin);
                *cancelled = 1;
            }
        } else if (n > 0 && line[n - 1] == '\n') {
            line[n - 1] = '\0';
        }
    }
    set_sigint(SIGINT_IDLE);
    return line;
}


/* ---------------------------------------------------------------- the REPL */

#define EOFMARK "<eof>"
#define EOFMARK_LEN (sizeof(EOFMARK) - 1)

/* Is the load error on the stack top one that more input could fix (message ends at <eof>)? */
static int incomplete(lua_State *L, int status) {
    size_t len;
    const char *msg;
    if (status != LUA_ERRSYNTAX) return 0;
    msg = lua_tolstring(L, -1, &len);
    return len >= EOFMARK_LEN && strcmp(msg + len - EOFMARK_LEN, EOFMARK) == 0;
}

/* Does the chunk end with ';' (trailing blanks aside)? Then its results are not printed. */
static int ends_with_semicolon(const char *text, size_t len) {
    while (len > 0 && strchr(" \t\r\n", text[len - 1]) != NULL) len--;
    return len > 0 && text[len - 1] == ';';
}

/* Read one complete chunk and compile it. On LUA_OK the function is on the stack top; on a load
 * error, its message. Returns CHUNK_EOF at end of input and CHUNK_CANCELLED after Ctrl-C (nothing
 * pushed). *quiet is set when the chunk ends with ';'. */
static int load_chunk(lua_State *L, int *quiet) {
    int cancelled, status;
    size_t len;
    const char *text;
    char *line = read_line(PROMPT, &cancelled);
    if (line == NULL) return cancelled ? CHUNK_CANCELLED : CHUNK_EOF;
    lua_pushstring(L, line); /* the chunk's text, grown line by line */
    free(line);
    for (;;) {
        int more;
        text = lua_tolstring(L, -1, &len);
        /* as an expression */
        lua_pushliteral(L, "return ");
        lua_pushvalue(L, -2);
        lua_concat(L, 2);
        status = luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=stdin");
        lua_remove(L, -2); /* the "return ..." text */
        if (status == LUA_OK) break;
        more = incomplete(L, status);
        lua_pop(L, 1);
        /* as statements */
        status = luaL_loadbuffer(L, text, len, "=stdin");
        if (status == LUA_OK || !(more || incomplete(L, status))) break;
        /* unfinished: read another line */
        line = read_line(PROMPT2, &cancelled);
        if (line == NULL) {
            if (!cancelled) break; /* end of input: report the error */
            lua_pop(L, 2);
            return CHUNK_CANCELLED;
        }
        lua_pop(L, 1); /* the error */
        lua_pushliteral(L, "\n");
        lua_pushstring(L, line);
        free(line);
        lua_concat(L, 3);
    }
    text = lua_tolstring(L, -2, &len);
    save_history(text);
    *quiet = ends_with_semicolon(text, len);
    lua_remove(L, -2); /* the text */
    return status;
}

/* Print the values on the stack through the global `print`. */
static void print_results(lua_State *L) {
    int n = lua_gettop(L);
    if (n == 0) return;
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    report(L, docall(L, n, 0));
}

static void run_repl(lua_State *L) {
    const char *oldprogname = progname;
    interactive = 1;
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "hyblua.interactive");
    progname = NULL; /* no "hyblua:" prefix on errors in the REPL */
    init_line_reading();
    for (;;) {
        int quiet = 0, status;
        lua_settop(L, 0);
        status = load_chunk(L, &quiet);
        if (status == CHUNK_EOF) break;
        if (status == CHUNK_CANCELLED) continue;
        if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
        if (status != LUA_OK) {
            if (hb_interrupted() && isatty(STDIN_FILENO)) fputs("\n", stderr); /* past the echoed ^C */
            report(L, status);
        }
        else if (!quiet)
            print_results(L);
    }
    lua_settop(L, 0);
    if (isatty(STDIN_FILENO)) fputs("\n", stdout);
    fflush(stdout);
    progname = oldprogname;
}


/* ---------------------------------------------------------------- options and main */

enum { HAS_ERROR = 1, HAS_I = 2, HAS_V = 4, HAS_E = 8, HAS_H = 16, HAS_W = 32 };

/* Scan the options. Sets *first to the index of the script (0 if none) or, on error, of the bad
 * option. Returns a set of HAS_ flags. */
static int collect_args(char **argv, int *first) {
    int args = 0, i;
    *first = 0;
    if (argv[0] == NULL) return 0;
    for (i = 1; argv[i] != NULL; i++) {
        *first = i;
        if (argv[i][0] != '-') return args; /* the script */
        if (strcmp(argv[i], "--version") == 0) { args |= HAS_V; continue; }
        if (strcmp(argv[i], "--help") == 0) { args |= HAS_H; continue; }
        if (strcmp(argv[i], "--traceback") == 0) { full_traceback = 1; continue; }
        switch (argv[i][1]) {
        case '-': /* "--" */
            if (argv[i][2] != '\0') return HAS_ERROR;
            *first = argv[i + 1] != NULL ? i + 1 : 0;
            return args;
        case '\0': /* "-": the script is stdin */
            return args;
        case 'i': case 'v': case 'h': case 'W':
            if (argv[i][2] != '\0') return HAS_ERROR;
            args |= argv[i][1] == 'i' ? HAS_I : argv[i][1] == 'v' ? HAS_V
                  : argv[i][1] == 'h' ? HAS_H : HAS_W;
            break;
        case 'e':
            args |= HAS_E;
            /* fallthrough */
        case 'l': /* both take an argument */
            if (argv[i][2] == '\0') {
                i++;
                if (argv[i] == NULL || argv[i][0] == '-') return HAS_ERROR;
            }
            break;
        default:
            return HAS_ERROR;
        }
    }
    *first = 0;
    return args;
}

/* Run -e and -l in order, up to argv[optlim]. Outside a session the first failure stops. */
static int run_args(lua_State *L, char **argv, int optlim) {
    int i;
    for (i = 1; i < optlim; i++) {
        int option = argv[i][1], status;
        const char *extra;
        if (argv[i][0] != '-' || (option != 'e' && option != 'l')) continue;
        extra = argv[i] + 2;
        if (*extra == '\0') extra = argv[++i];
        if (option == 'e') {
            preset_hb(L);
            status = dostring(L, extra, "=(command line)");
        } else {
            status = dolibrary(L, extra, extra);
        }
        if (status != LUA_OK && !interactive) return 0;
    }
    return 1;
}

static int pmain(lua_State *L) {
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int script;
    int args = collect_args(argv, &script);
    int optlim = script > 0 ? script : argc; /* first argv that is not an option */
    luaL_checkversion(L);
    if (args == HAS_ERROR) {
        print_usage(argv[script]);
        return 0;
    }
    if (args & HAS_H) {
        print_help(stdout);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (args & HAS_V) print_version();
    interactive = (args & HAS_I) != 0;

    luaL_openlibs(L);
    /* registry["hyblua.interactive"]: true in a session that must not end on a library's request
     * (hb.config.parse_args's --help exits only when it is false) */
    lua_pushboolean(L, interactive);
    lua_setfield(L, LUA_REGISTRYINDEX, "hyblua.interactive");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_hyblua);
    lua_setfield(L, -2, "hyblua");
    lua_pop(L, 1);
    create_arg_table(L, argv, argc, script);
    if (args & HAS_W) lua_warning(L, "@on", 0);

    /* With -i, errors before the REPL are reported and the REPL still starts (python -i). */
    if (!run_args(L, argv, optlim)) return 0;
    if (script > 0 && run_script(L, argv + script) != LUA_OK && !interactive) return 0;
    lua_settop(L, 0);

    if (args & HAS_I) {
        preset_hb(L);
        if (isatty(STDIN_FILENO) && !(args & HAS_V)) print_version();
        run_repl(L);
    } else if (script == 0 && !(args & (HAS_E | HAS_V))) {
        if (isatty(STDIN_FILENO)) {
            preset_hb(L);
            print_version();
            run_repl(L);
        } else if (dofile(L, NULL) != LUA_OK) { /* stdin as a script */
            return 0;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

#define EXIT_INTERRUPTED 130 /* 128 + SIGINT, what a shell reports for a process ended by Ctrl-C */

int main(int argc, char **argv) {
    int status, result;
    /* OpenBLAS fell back to pre-AVX2 kernels on a CPU it does not know (kernels/parallel.h): run again
       with OPENBLAS_CORETYPE set, which it reads only when it loads. Once: the variable is set then. */
    const char *coretype = hyblua_blas_coretype_hint();
    if (coretype && setenv("OPENBLAS_CORETYPE", coretype, 1) == 0) {
        execv("/proc/self/exe", argv);
        fprintf(stderr, "hyblua: warning: OpenBLAS chose slow kernels for this CPU and re-running with "
                        "OPENBLAS_CORETYPE=%s failed (%s); set it yourself\n", coretype, strerror(errno));
    }
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        l_message("hyblua", "cannot create state: not enough memory");
        return EXIT_FAILURE;
    }
    main_thread = pthread_self();
    {
        const char *tb = getenv("HYBLUA_TRACEBACK");
        if (tb != NULL && tb[0] != '\0' && strcmp(tb, "0") != 0) full_traceback = 1;
    }
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    status = lua_pcall(L, 2, 1, 0);
    result = lua_toboolean(L, -1);
    report(L, status);
    lua_close(L);
    free(history_file);
    if (!interactive && hb_interrupted()) return EXIT_INTERRUPTED; /* Ctrl-C ended the run */
    return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
