/* ldata.c — hb.data's C half: token shards (io/data.h) as userdata "hyblua.Shard".
 *
 * hb.data.write_shard(path, ids [, vocab_size]) → count
 *   ids: an integer tensor (any shape, read in order) or a list of them (concatenated). With
 *   vocab_size the header records it and every id is checked against it; without, the vocabulary is
 *   "unknown" and the token width follows the largest id. Atomic.
 * hb.data.open(path) → shard   (a missing file suggests `make data`)
 * shard:len() (also #shard)   shard:vocab_size() (nil when unknown)   shard:token_bytes()   shard:path()
 * shard:batch(B, T, seed, k) → int64 [B, T+1]: batch k of the run seeded with seed (data.h defines it;
 *   it depends on nothing else, so batch k is the same whether or not batches before it were drawn)
 * shard:window(pos, n) → int64 [n]: tokens pos..pos+n-1 (1-based positions, like every Lua index here;
 *   the ids themselves are values and stay 0-based). shard:read is the same function. This is the
 *   random-access reader hb.eval.lm slides its windows over.
 * shard:num_windows(T) and `for i, w in shard:windows(T) do ... end`: the fixed validation windows of
 *   data.h, w = int64 [1, n] with n = T+1 (the last window may be shorter): window i holds tokens
 *   (i-1)*T+1 .. (i-1)*T+T+1, so consecutive windows share one token and every token but the first is
 *   a target exactly once.
 * shard:close() — also __gc/__close; tensors returned earlier are copies and stay valid.
 * hb.data.list_dir(path) → sorted names of the entries of a directory (no "." or "..").
 * hb.data.mkdir(path) — creates path and missing parents (like mkdir -p); fine if it exists.
 * hb.data.is_dir(path) → boolean
 * hb.data.remove_checkpoint(path) — removes a checkpoint directory that hb.train has moved out of the
 *   ckpt-N namespace (its last component is ckpt-<digits>.tmp or ckpt-<digits>.del; any other path is
 *   refused, so a stray call can delete nothing else) with everything in it, like rm -rf but without a
 *   shell: symbolic links are removed, never followed; a missing path is fine; any other failure raises
 *   "hb.data.remove_checkpoint: <path>: <reason>" naming the entry that could not be removed.
 */
#include "../io/data.h"
#include "lhyblua.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SHARD_MT "hyblua.Shard"

typedef struct {
    hb_shard_t *s;
} lshard_t;

static hb_shard_t *check_shard(lua_State *L, int i) {
    lshard_t *u = luaL_checkudata(L, i, SHARD_MT);
    if (!u->s) luaL_argerror(L, i, "shard has been closed");
    return u->s;
}

static int s_release(lua_State *L) {
    lshard_t *u = luaL_checkudata(L, 1, SHARD_MT);
    if (u->s) {
        hb_shard_close(u->s);
        u->s = NULL;
    }
    return 0;
}

/* ---- writing ---------------------------------------------------------------------------------------- */
/* The integer tensor at stack index idx (element `what` for messages). */
static hb_tensor_t *ids_tensor(lua_State *L, int idx, const char *what) {
    hb_tensor_t *t = lhb_test_tensor(L, idx);
    if (!t) luaL_error(L, "hb.data.write_shard: %s is a %s, expected an integer tensor", what, luaL_typename(L, idx));
    else if (t->dtype != HB_I64 && t->dtype != HB_I32)
        luaL_error(L, "hb.data.write_shard: %s is a %s tensor, expected int64 or int32 ids", what, hb_dtype_name(t->dtype));
    return t;
}

/* Append tensor t to w (through an int64 copy when needed). Returns 0 or -1 with err. */
static int append_tensor(hb_shard_writer_t *w, hb_tensor_t *t, char *err, size_t errlen) {
    hb_tensor_t *c = t->dtype == HB_I64 ? hb_contiguous(t) : hb_to_dtype(t, HB_I64);
    hb_tensor_t *cc = c ? hb_contiguous(c) : NULL;
    hb_tensor_free(c);
    if (!cc) {
        snprintf(err, errlen, "%s", hb_errmsg());
        return -1;
    }
    int rc = hb_shard_writer_append(w, hb_data(cc), (size_t)hb_numel(cc), err, errlen);
    hb_tensor_free(cc);
    return rc;
}

static int64_t max_id(hb_tensor_t *t) {
    int64_t m = -1, n = hb_numel(t);
    if (n == 0) return -1;
    hb_tensor_t *c = hb_to_dtype(t, HB_I64), *cc = c ? hb_contiguous(c) : NULL;
    hb_tensor_free(c);
    if (!cc) return INT64_MAX; /* out of memory: makes the width 4, append reports any real problem */
    const int64_t *p = hb_data(cc);
    for (int64_t i = 0; i < n; i++)
        if (p[i] > m) m = p[i];
    hb_tensor_free(cc);
    return m;
}

static int l_write_shard(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    int list = lua_istable(L, 2) && !lhb_test_tensor(L, 2);
    int n = list ? (int)luaL_len(L, 2) : 1;
    lua_Integer vocab = luaL_optinteger(L, 3, 0);
    if (vocab < 0) return luaL_argerror(L, 3, "vocab_size must be positive");
    /* check every argument before creating the file */
    int64_t maxv = -1;
    for (int i = 1; i <= n; i++) {
        char what[32];
        if (list) {
            lua_geti(L, 2, i);
            snprintf(what, sizeof what, "ids[%d]", i);
        } else {
            lua_pushvalue(L, 2);
            snprintf(what, sizeof what, "ids");
        }
        hb_tensor_t *t = ids_tensor(L, -1, what);
        if (!vocab) {
            int64_t m = max_id(t);
            if (m > maxv) maxv = m;
        }
        lua_pop(L, 1);
    }
    char err[512];
    int width = vocab ? 0 : maxv < 65536 ? 2 : 4;
    hb_shard_writer_t *w = hb_shard_writer_open(path, vocab, width, err, sizeof err);
    if (!w) return luaL_error(L, "hb.data.write_shard: %s", err);
    for (int i = 1; i <= n; i++) {
        if (list) lua_geti(L, 2, i);
        else lua_pushvalue(L, 2);
        hb_tensor_t *t = lhb_test_tensor(L, -1); /* checked above; a list cannot change meanwhile */
        int rc = t ? append_tensor(w, t, err, sizeof err) : (snprintf(err, sizeof err, "ids changed"), -1);
        lua_pop(L, 1);
        if (rc) {
            hb_shard_writer_abort(w);
            return luaL_error(L, "hb.data.write_shard: %s", err);
        }
    }
    int64_t count = hb_shard_writer_count(w);
    if (hb_shard_writer_close(w, err, sizeof err)) return luaL_error(L, "hb.data.write_shard: %s", err);
    lua_pushinteger(L, count);
    return 1;
}

/* ---- reading ----------------------------------------------------------------------------------------- */
static int l_open(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return luaL_error(L, "hb.data.open: %s: no such file; run `make data` to download and prepare the data "
                             "(tests/data/sample holds a small sample)", path);
    lshard_t *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->s = NULL;
    luaL_setmetatable(L, SHARD_MT);
    char err[512];
    u->s = hb_shard_open(path, err, sizeof err);
    if (!u->s) return luaL_error(L, "hb.data.open: %s", err);
    return 1;
}

static int m_len(lua_State *L) {
    lua_pushinteger(L, hb_shard_len(check_shard(L, 1)));
    return 1;
}
static int m_vocab_size(lua_State *L) {
    int64_t v = hb_shard_vocab_size(check_shard(L, 1));
    if (v > 0) lua_pushinteger(L, v);
    else lua_pushnil(L);
    return 1;
}
static int m_token_bytes(lua_State *L) {
    lua_pushinteger(L, hb_shard_token_bytes(check_shard(L, 1)));
    return 1;
}
static int m_path(lua_State *L) {
    lua_pushstring(L, hb_shard_path(check_shard(L, 1)));
    return 1;
}

static lua_Integer check_positive(lua_State *L, int arg, const char *name) {
    lua_Integer v = luaL_checkinteger(L, arg);
    if (v < 1) luaL_error(L, "bad argument #%d: %s must be >= 1, got %I", arg - 1, name, v);
    return v;
}

static int m_batch(lua_State *L) {
    hb_shard_t *s = check_shard(L, 1);
    lua_Integer B = check_positive(L, 2, "B"), T = check_positive(L, 3, "T");
    lua_Integer seed = luaL_checkinteger(L, 4), k = luaL_checkinteger(L, 5);
    if (k < 0) return luaL_error(L, "batch: step k must be >= 0, got %I", k);
    if (B > (1 << 24) || T > ((lua_Integer)1 << 40) / B) return luaL_error(L, "batch: B*T is too large");
    char err[512];
    if (hb_shard_len(s) < T + 1)
        return luaL_error(L, "batch: %s: %I tokens are too few for a sequence of T+1 = %I", hb_shard_path(s),
                          (lua_Integer)hb_shard_len(s), T + 1);
    int64_t size[2] = {B, T + 1};
    hb_tensor_t *t = hb_tensor_empty(HB_I64, 2, size);
    if (!t) return luaL_error(L, "batch: %s", hb_errmsg());
    if (hb_shard_batch(s, B, T, (uint64_t)seed, (uint64_t)k, hb_data(t), err, sizeof err)) {
        hb_tensor_free(t);
        return luaL_error(L, "batch: %s", err);
    }
    lhb_push_tensor(L, t);
    return 1;
}

static int m_num_windows(lua_State *L) {
    hb_shard_t *s = check_shard(L, 1);
    lua_pushinteger(L, hb_shard_num_windows(s, check_positive(L, 2, "T")));
    return 1;
}

/* fixed window i (1-based) of T → [1, n] */
static int push_window(lua_State *L, hb_shard_t *s, lua_Integer i, lua_Integer T) {
    int64_t nw = hb_shard_num_windows(s, T);
    if (i < 1 || i > nw)
        return luaL_error(L, "windows: index %I out of range 1..%I (%s has %I windows of T=%I)", i, (lua_Integer)nw,
                          hb_shard_path(s), (lua_Integer)nw, T);
    int64_t size[2] = {1, T + 1}, n;
    hb_tensor_t *t = hb_tensor_empty(HB_I64, 2, size);
    char err[512];
    if (!t) return luaL_error(L, "windows: %s", hb_errmsg());
    if (hb_shard_window(s, i - 1, T, hb_data(t), &n, err, sizeof err)) {
        hb_tensor_free(t);
        return luaL_error(L, "windows: %s", err);
    }
    if (n < T + 1) { /* the last, shorter window */
        hb_tensor_t *v = hb_narrow(t, 1, 0, n), *c = v ? hb_contiguous(v) : NULL;
        hb_tensor_free(v);
        hb_tensor_free(t);
        if (!c) return luaL_error(L, "windows: %s", hb_errmsg());
        t = c;
    }
    lhb_push_tensor(L, t);
    return 1;
}

/* iterator: upvalues shard, T; control = previous index */
static int windows_next(lua_State *L) {
    hb_shard_t *s = check_shard(L, lua_upvalueindex(1));
    lua_Integer T = lua_tointeger(L, lua_upvalueindex(2));
    lua_Integer i = luaL_optinteger(L, 2, 0) + 1;
    if (i > hb_shard_num_windows(s, T)) return 0;
    lua_pushinteger(L, i);
    push_window(L, s, i, T);
    return 2;
}

static int m_windows(lua_State *L) {
    check_shard(L, 1);
    check_positive(L, 2, "T");
    lua_settop(L, 2);
    lua_pushcclosure(L, windows_next, 2);
    lua_pushnil(L);
    lua_pushinteger(L, 0);
    return 3;
}

static int m_read(lua_State *L) {
    hb_shard_t *s = check_shard(L, 1);
    lua_Integer pos = luaL_checkinteger(L, 2), n = luaL_checkinteger(L, 3);
    if (pos < 1 || n < 0 || pos - 1 > hb_shard_len(s) || n > hb_shard_len(s) - (pos - 1))
        return luaL_error(L, "window: tokens %I..%I are outside 1..%I of %s", pos, pos + n - 1,
                          (lua_Integer)hb_shard_len(s), hb_shard_path(s));
    int64_t size[1] = {n};
    hb_tensor_t *t = hb_tensor_empty(HB_I64, 1, size);
    char err[512];
    if (!t) return luaL_error(L, "window: %s", hb_errmsg());
    if (hb_shard_read(s, pos - 1, n, hb_data(t), err, sizeof err)) {
        hb_tensor_free(t);
        return luaL_error(L, "window: %s", err);
    }
    lhb_push_tensor(L, t);
    return 1;
}

static int m_tostring(lua_State *L) {
    lshard_t *u = luaL_checkudata(L, 1, SHARD_MT);
    if (!u->s) {
        lua_pushstring(L, "hyblua.Shard (closed)");
        return 1;
    }
    int64_t v = hb_shard_vocab_size(u->s);
    lua_pushfstring(L, "hyblua.Shard(%s, %I tokens, uint%d", hb_shard_path(u->s), (lua_Integer)hb_shard_len(u->s),
                    8 * hb_shard_token_bytes(u->s));
    if (v > 0) lua_pushfstring(L, ", vocab %I)", (lua_Integer)v);
    else lua_pushstring(L, ", vocab unknown)");
    lua_concat(L, 2);
    return 1;
}

/* ---- directories --------------------------------------------------------------------------------------- */
static int l_list_dir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (!d) return luaL_error(L, "hb.data.list_dir: %s: %s", path, strerror(errno));
    /* collect into a Lua table, then sort it with table.sort */
    lua_newtable(L);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        lua_pushstring(L, e->d_name);
        lua_seti(L, -2, ++n);
    }
    closedir(d);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return 1;
}

static int l_mkdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t n = strlen(path);
    char *p = lua_newuserdatauv(L, n + 1, 0); /* a scratch copy Lua frees */
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char c = p[i];
        p[i] = 0;
        struct stat st;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return luaL_error(L, "hb.data.mkdir: %s: %s", p, strerror(errno));
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            return luaL_error(L, "hb.data.mkdir: %s exists and is not a directory", p);
        p[i] = c;
    }
    return 0;
}

/* Remove name (relative to the directory fd dir) and, if it is a directory, what it holds. Never follows
 * a symbolic link. Returns 0, or -1 with "<path>: <reason>" in err (path = shown + name). */
static int remove_at(int dir, const char *name, const char *shown, int depth, char *err, size_t errlen) {
    struct stat st;
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "%s%s: %s", shown, name, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dir, name, 0) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "%s%s: %s", shown, name, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (depth > 256) {
        snprintf(err, errlen, "%s%s: directories nested deeper than 256 levels", shown, name);
        return -1;
    }
    int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        snprintf(err, errlen, "%s%s: %s", shown, name, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    size_t n = strlen(shown) + strlen(name) + 2;
    char *sub = malloc(n);
    int rc = sub ? 0 : -1;
    if (!sub) snprintf(err, errlen, "%s%s: out of memory", shown, name);
    else snprintf(sub, n, "%s%s/", shown, name);
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) rc = remove_at(fd, e->d_name, sub, depth + 1, err, errlen);
    free(sub);
    closedir(d);
    if (rc == 0 && unlinkat(dir, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "%s%s: %s", shown, name, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* Is the last component of path "ckpt-<digits>.tmp" or "ckpt-<digits>.del"? */
static int is_checkpoint_trash(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    if (strncmp(b, "ckpt-", 5)) return 0;
    const char *p = b + 5, *d = p;
    while (*p >= '0' && *p <= '9') p++;
    return p > d && (!strcmp(p, ".tmp") || !strcmp(p, ".del"));
}

static int l_remove_checkpoint(lua_State *L) {
    size_t n;
    const char *path = luaL_checklstring(L, 1, &n);
    if (strlen(path) != n) return luaL_argerror(L, 1, "path contains a NUL byte");
    if (!is_checkpoint_trash(path))
        return luaL_error(L, "hb.data.remove_checkpoint: %s is not a ckpt-N.tmp or ckpt-N.del directory", path);
    char err[1024];
    if (remove_at(AT_FDCWD, path, "", 0, err, sizeof err)) return luaL_error(L, "hb.data.remove_checkpoint: %s", err);
    return 0;
}

static int l_is_dir(lua_State *L) {
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0 && S_ISDIR(st.st_mode));
    return 1;
}

static const luaL_Reg methods[] = {
    {"len", m_len}, {"vocab_size", m_vocab_size}, {"token_bytes", m_token_bytes}, {"path", m_path},
    {"batch", m_batch}, {"num_windows", m_num_windows}, {"window", m_read}, {"windows", m_windows},
    {"read", m_read}, {"close", s_release}, {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", s_release}, {"__close", s_release}, {"__len", m_len}, {"__tostring", m_tostring}, {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"write_shard", l_write_shard}, {"open", l_open}, {"list_dir", l_list_dir}, {"mkdir", l_mkdir},
    {"is_dir", l_is_dir}, {"remove_checkpoint", l_remove_checkpoint}, {NULL, NULL}};

/* hb.data (expects the module table on top). */
void lhb_open_data(lua_State *L) {
    luaL_newmetatable(L, SHARD_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, functions);
    lua_setfield(L, -2, "data");
}
