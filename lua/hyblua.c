/* hyblua.c — luaopen_hyblua: builds the module table from the C binding files, then runs the Lua part
 * of the library (lua/hyblua/init.lua) which adds nn, models, schedules, training and evaluation.
 *
 * The Lua library is found on package.path; the executable prepends the source tree's lua/ directory
 * (HB_LUADIR, fixed at build time) and HYBLUA_PATH if set, so `require "hyblua"` works from any
 * directory without installation.
 */
#include "hyblua.h"
#include "../kernels/parallel.h"
#include "lhyblua.h"
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

static int l_set_num_threads(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > 256) return luaL_argerror(L, 1, "thread count must be in 1..256");
    hb_threads_set((int)n);
    return 0;
}
static int l_get_num_threads(lua_State *L) {
    lua_pushinteger(L, hb_threads_get());
    return 1;
}
static int l_cat(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)luaL_len(L, 1);
    if (n < 1 || n > 4096) return luaL_argerror(L, 1, "expected a list of 1..4096 tensors");
    hb_tensor_t *ts[4096];
    for (int i = 0; i < n; i++) {
        lua_geti(L, 1, i + 1);
        ts[i] = lhb_test_tensor(L, -1);
        if (!ts[i]) return luaL_error(L, "hb.cat: element %d is a %s, expected a tensor", i + 1, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    int d = lua_isnoneornil(L, 2) ? 0 : lhb_dim(L, 2, ts[0]->ndim);
    hb_tensor_t *r = hb_cat(n, ts, d);
    if (!r) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, r);
    return 1;
}
static int l_where(lua_State *L) {
    hb_tensor_t *r = hb_where(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3));
    if (!r) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, r);
    return 1;
}
static int l_mem(lua_State *L) {
    lua_pushinteger(L, hb_alloc_bytes());
    return 1;
}

static const luaL_Reg funcs[] = {{"set_num_threads", l_set_num_threads}, {"get_num_threads", l_get_num_threads},
                                 {"cat", l_cat}, {"where", l_where}, {"tensor_bytes", l_mem}, {NULL, NULL}};

#ifndef HB_LUADIR
#define HB_LUADIR "lua"
#endif

/* Prepend $HYBLUA_PATH (if set) and the build-time HB_LUADIR to package.path, once. */
static void setup_path(lua_State *L) {
    const char *env = getenv("HYBLUA_PATH");
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *old = lua_tostring(L, -1);
    if (!old || !strstr(old, HB_LUADIR "/?.lua")) {
        lua_pushfstring(L, "%s%s" HB_LUADIR "/?.lua;" HB_LUADIR "/?/init.lua;%s", env ? env : "", env ? ";" : "",
                        old ? old : "");
        lua_setfield(L, -3, "path");
    }
    lua_pop(L, 2);
}

int luaopen_hyblua(lua_State *L) {
    setup_path(L);
    lua_newtable(L);
    lhb_open_tensor(L);
    luaL_setfuncs(L, funcs, 0);
    lhb_open_nn(L);
    lhb_open_io(L);
    lua_pushstring(L, HB_VERSION);
    lua_setfield(L, -2, "version");
    /* hand the table to the Lua half: require("hyblua.init")(hb) */
    int hb = lua_gettop(L);
    lua_pushvalue(L, hb);
    lua_setfield(L, LUA_REGISTRYINDEX, "hyblua.module");
    lua_getglobal(L, "require");
    lua_pushstring(L, "hyblua.init");
    lua_call(L, 1, 1);
    if (lua_isfunction(L, -1)) {
        lua_pushvalue(L, hb);
        lua_call(L, 1, 0);
    } else lua_pop(L, 1);
    lua_settop(L, hb);
    return 1;
}
