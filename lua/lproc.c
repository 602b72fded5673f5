/* lproc.c — hb.proc: child processes without a shell, and cell locks (paper_grid's --jobs).
 *
 * hb.proc.spawn(argv [, {stdout = path, stderr = path}]) → pid
 *   fork + execv(argv[1], argv): no shell, so arguments may hold any character but NUL (argv[1] is a
 *   path, not looked up in PATH; elements must be strings). stdout/stderr, when
 *   given, are files the child's output is appended to (created 0644). A program that cannot be
 *   executed makes the child exit with status 127 (wait reports it).
 * hb.proc.wait(pid [, nohang]) → nil (still running, only with nohang) | exit code, or 128 + signal
 * hb.proc.alive(pid) → boolean (kill(pid, 0))
 * hb.proc.kill(pid [, signal = 15]) — sends a signal to one process
 * hb.proc.getpid() → pid        hb.proc.hostname() → string        hb.proc.self_exe() → absolute path
 * hb.proc.lock(path) → lock | nil, holder
 *   An exclusive advisory lock (fcntl F_SETLK, whole file) on path, created if missing. The kernel
 *   releases it when the holder exits or crashes, so a lock left by a dead process is never stale: the
 *   next lock() succeeds. On success the file holds "<host> <pid>" of the holder. When another process
 *   holds it: nil and that holder's "<host> <pid>" text. lock:release() (also __gc/__close) unlocks and
 *   removes the file. The file descriptor is close-on-exec: children do not inherit the lock. Locks are
 *   Linux open-file-description locks (F_OFD_SETLK), so a second lock() of the same path in the same
 *   process fails like one from another process.
 */
#include "lhyblua.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOCK_MT "hyblua.Lock"
#ifdef F_OFD_SETLK
#define HB_SETLK F_OFD_SETLK
#else
#define HB_SETLK F_SETLK /* per process: a second lock() of one path in the same process would succeed */
#endif

static int l_spawn(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    if (n < 1) return luaL_error(L, "hb.proc.spawn: argv must be a non-empty list of strings");
    if (n > 4096) return luaL_error(L, "hb.proc.spawn: argv has %d entries (at most 4096)", (int)n);
    const char *out = NULL, *err = NULL;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "stdout");
        if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "hb.proc.spawn: stdout must be a path (string), got %s", luaL_typename(L, -1));
        out = lua_tostring(L, -1);
        lua_getfield(L, 2, "stderr");
        if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "hb.proc.spawn: stderr must be a path (string), got %s", luaL_typename(L, -1));
        err = lua_tostring(L, -1);
        /* both strings stay referenced on the stack until return */
        if ((out && strlen(out) != lua_rawlen(L, -2)) || (err && strlen(err) != lua_rawlen(L, -1)))
            return luaL_error(L, "hb.proc.spawn: an output path contains a NUL byte");
    }
    /* the argument vector is built before fork: the child only calls async-signal-safe functions.
     * Every element stays on the Lua stack until return, so its string cannot be collected. */
    luaL_checkstack(L, (int)n + 4, "hb.proc.spawn: argv too long");
    const char **argv = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(char *), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "hb.proc.spawn: argv[%d] is a %s (strings expected)", (int)i, luaL_typename(L, -1));
        size_t len;
        argv[i - 1] = lua_tolstring(L, -1, &len);
        if (strlen(argv[i - 1]) != len)
            return luaL_error(L, "hb.proc.spawn: argv[%d] contains a NUL byte", (int)i);
    }
    argv[n] = NULL;
    int ofd = -1, efd = -1;
    if (out && (ofd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
        return luaL_error(L, "hb.proc.spawn: cannot open %s: %s", out, strerror(errno));
    if (err && (efd = open(err, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        int e = errno;
        if (ofd >= 0) close(ofd);
        return luaL_error(L, "hb.proc.spawn: cannot open %s: %s", err, strerror(e));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        if (ofd >= 0) close(ofd);
        if (efd >= 0) close(efd);
        return luaL_error(L, "hb.proc.spawn: fork failed: %s", strerror(e));
    }
    if (pid == 0) {
        /* dup2 onto itself (fd 1 or 2 was closed, so open() returned it) keeps close-on-exec: clear it */
        if (ofd == 1) fcntl(1, F_SETFD, 0);
        else if (ofd >= 0 && dup2(ofd, 1) < 0) _exit(127);
        if (efd == 2) fcntl(2, F_SETFD, 0);
        else if (efd >= 0 && dup2(efd, 2) < 0) _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (ofd >= 0) close(ofd);
    if (efd >= 0) close(efd);
    lua_pushinteger(L, pid);
    return 1;
}

/* a pid argument: a positive integer that fits pid_t (never 0 or negative: those name process groups) */
static pid_t check_pid(lua_State *L, int arg, const char *fn) {
    lua_Integer p = luaL_checkinteger(L, arg);
    if (p <= 0 || p > INT_MAX) luaL_error(L, "hb.proc.%s: pid must be a positive process id, got %I", fn, p);
    return (pid_t)p;
}

static int l_wait(lua_State *L) {
    pid_t pid = check_pid(L, 1, "wait");
    int nohang = lua_toboolean(L, 2), st = 0;
    pid_t r;
    do r = waitpid(pid, &st, nohang ? WNOHANG : 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) return luaL_error(L, "hb.proc.wait: pid %d: %s (not a child of this process?)", (int)pid, strerror(errno));
    if (r == 0) { lua_pushnil(L); return 1; }
    lua_pushinteger(L, WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 255);
    return 1;
}

static int l_alive(lua_State *L) {
    pid_t pid = check_pid(L, 1, "alive");
    lua_pushboolean(L, kill(pid, 0) == 0 || errno == EPERM);
    return 1;
}

static int l_kill(lua_State *L) {
    pid_t pid = check_pid(L, 1, "kill");
    lua_Integer sig = luaL_optinteger(L, 2, SIGTERM);
    if (sig < 0 || sig > 64) return luaL_error(L, "hb.proc.kill: signal must be in 0..64, got %I", sig);
    lua_pushboolean(L, kill(pid, (int)sig) == 0);
    return 1;
}

static int l_getpid(lua_State *L) {
    lua_pushinteger(L, getpid());
    return 1;
}

static int l_hostname(lua_State *L) {
    char h[256];
    if (gethostname(h, sizeof h - 1) != 0) strcpy(h, "localhost");
    h[sizeof h - 1] = 0;
    lua_pushstring(L, h);
    return 1;
}

static int l_self_exe(lua_State *L) {
    char p[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", p, sizeof p - 1);
    if (n <= 0) return luaL_error(L, "hb.proc.self_exe: /proc/self/exe cannot be read: %s", strerror(errno));
    p[n] = 0;
    lua_pushstring(L, p);
    return 1;
}

typedef struct {
    int fd;
    char path[];
} lock_t;

static int lock_release(lua_State *L) {
    lock_t *k = luaL_checkudata(L, 1, LOCK_MT);
    if (k->fd >= 0) {
        unlink(k->path); /* while still holding it: a waiter that opened the old file retries (below) */
        close(k->fd);
        k->fd = -1;
    }
    return 0;
}

static int l_lock(lua_State *L) {
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    if (len == 0 || strlen(path) != len) return luaL_error(L, "hb.proc.lock: path must be a non-empty string without NUL bytes");
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return luaL_error(L, "hb.proc.lock: cannot open %s: %s", path, strerror(errno));
        /* open-file-description locks: unlike classic POSIX locks they conflict within one process too
         * (two lock() calls on one path from the same process: the second fails) and closing another
         * descriptor of the file does not drop them */
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0, .l_pid = 0};
        if (fcntl(fd, HB_SETLK, &fl) != 0) {
            int e = errno;
            if (e != EACCES && e != EAGAIN) {
                close(fd);
                return luaL_error(L, "hb.proc.lock: %s: %s", path, strerror(e));
            }
            char buf[300];
            ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
            close(fd);
            buf[n > 0 ? n : 0] = 0;
            if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
            lua_pushnil(L);
            lua_pushstring(L, buf[0] ? buf : "another process");
            return 2;
        }
        /* locked; but the holder before us may have unlinked the file after we opened it: then the
         * path names a new file (or none) and our lock protects nothing — start again */
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            close(fd);
            continue;
        }
        char host[256], buf[320];
        if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "localhost");
        host[sizeof host - 1] = 0;
        int m = snprintf(buf, sizeof buf, "%s %ld\n", host, (long)getpid());
        if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)m, 0) != m) {
            int e = errno;
            close(fd);
            return luaL_error(L, "hb.proc.lock: cannot write %s: %s", path, strerror(e));
        }
        lock_t *k = lua_newuserdatauv(L, sizeof(lock_t) + len + 1, 0);
        k->fd = fd;
        memcpy(k->path, path, len + 1);
        luaL_setmetatable(L, LOCK_MT);
        return 1;
    }
    return luaL_error(L, "hb.proc.lock: %s keeps being replaced", path);
}

static const luaL_Reg procf[] = {{"spawn", l_spawn}, {"wait", l_wait}, {"alive", l_alive}, {"kill", l_kill},
                                 {"getpid", l_getpid}, {"hostname", l_hostname}, {"self_exe", l_self_exe},
                                 {"lock", l_lock}, {NULL, NULL}};

void lhb_open_proc(lua_State *L) {
    if (luaL_newmetatable(L, LOCK_MT)) {
        lua_pushcfunction(L, lock_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, lock_release);
        lua_setfield(L, -2, "__close");
        lua_newtable(L);
        lua_pushcfunction(L, lock_release);
        lua_setfield(L, -2, "release");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    luaL_setfuncs(L, procf, 0);
    lua_setfield(L, -2, "proc");
}
