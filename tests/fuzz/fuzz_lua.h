/* fuzz_lua.h — running a Lua harness inside a fuzz target, for parsers whose real path goes through the
 * Lua library (config.json → model, meta.json + shards → data). Header-only; see fuzz.h for the rest.
 *
 * fz_lua_run(source, dir) creates one Lua state on the first call (standard libraries, `require "hyblua"`
 * from the module linked in — luaopen_hyblua in package.preload, the library's Lua files from the source
 * tree through HB_LUADIR), runs `source` once (a chunk that returns the harness function), and calls
 * the harness with dir on every input. Outcomes:
 *   - the harness returns: the input was accepted and its properties held;
 *   - it raises an error: the input was rejected — fine, as long as the message is a real one. A Lua
 *     runtime error from library code ("x.lua:12: attempt to index a nil value", "bad argument #1 to
 *     'for iterator'", "stack overflow") means some value went unchecked, so it aborts like a crash;
 *   - the harness itself calls fz_fail(msg) for a broken property: abort.
 * Lua's own memory is capped (FZ_LUA_MEM) so a hostile input gets "not enough memory", not an OOM kill.
 * A full collection runs after every input, so C memory owned by userdata is released (and a leak of
 * it is seen by LeakSanitizer at the end of the input).
 */
#ifndef HB_FUZZ_LUA_H
#define HB_FUZZ_LUA_H
#include "../../lua/hyblua.h"
#include "fuzz.h"
#include <lauxlib.h>
#include <lualib.h>

#define FZ_LUA_MEM ((size_t)512 << 20)

static lua_State *fz_L;
static size_t fz_lua_bytes;

static void *fz_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        free(ptr);
        fz_lua_bytes -= osize;
        return NULL;
    }
    if (nsize > osize && fz_lua_bytes + (nsize - osize) > FZ_LUA_MEM) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) fz_lua_bytes += nsize - osize;
    return p;
}

/* fz_fail(message): a broken property — print it and abort. */
static int fz_lua_fail(lua_State *L) {
    fprintf(stderr, "fuzz property failed: %s\n", luaL_tolstring(L, 1, NULL));
    abort();
}

static int fz_lua_traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

__attribute__((unused)) static void fz_lua_run(const char *source, const char *dir) {
    static int harness = LUA_NOREF;
    lua_State *L = fz_L;
    if (!L) {
        L = fz_L = lua_newstate(fz_lua_alloc, NULL);
        FZ_CHECK(L, "cannot create a Lua state");
        luaL_openlibs(L);
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
        lua_pushcfunction(L, luaopen_hyblua);
        lua_setfield(L, -2, "hyblua");
        lua_pop(L, 1);
        lua_pushcfunction(L, fz_lua_fail);
        lua_setglobal(L, "fz_fail");
        lua_pushcfunction(L, fz_lua_traceback);
        if (luaL_loadstring(L, source) != LUA_OK || lua_pcall(L, 0, 1, -2) != LUA_OK) {
            fprintf(stderr, "fuzz harness failed to start: %s\n", lua_tostring(L, -1));
            abort();
        }
        FZ_CHECK(lua_isfunction(L, -1), "the harness chunk must return a function");
        harness = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_pop(L, 1);
    }
    lua_pushcfunction(L, fz_lua_traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, harness);
    lua_pushstring(L, dir);
    if (lua_pcall(L, 1, 0, -3) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (!msg) msg = "(error object is not a string)";
        /* the first line is the message; the traceback follows. A Lua runtime error reads
         * "<chunk>:<line>: attempt to ..." — the words right after the position, never text from the
         * input (which may well contain "attempt to") */
        size_t first = strcspn(msg, "\n");
        const char *p = msg;
        if (*p == '[') p += strcspn(p, "]\n");
        p += strcspn(p, ":\n");
        if (*p == ':' && p[1] >= '0' && p[1] <= '9') {
            p++;
            while (*p >= '0' && *p <= '9') p++;
            p = *p == ':' && p[1] == ' ' ? p + 2 : msg;
        } else p = msg;
        int internal = 0;
        static const char *const runtime[] = {"attempt to ", "bad argument #", "stack overflow", "C stack overflow",
                                              NULL};
        for (int i = 0; runtime[i]; i++)
            if (!strncmp(p, runtime[i], strlen(runtime[i]))) internal = 1;
        if (internal) {
            fprintf(stderr, "fuzz: a Lua runtime error instead of a message naming the problem:\n%s\n", msg);
            abort();
        }
        if (getenv("HB_FUZZ_VERBOSE")) fprintf(stderr, "rejected: %.*s\n", (int)first, msg);
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
}

#endif
