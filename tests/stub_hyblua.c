/* stub_hyblua.c — a stand-in for the real hyblua module, for building and testing the executable
 * (lua/main.c) before and apart from the bindings. Test builds only; never linked into hyblua.
 *
 * The table it returns has `version` (HB_VERSION) and `busy(n)`, a C-side long operation: it spins
 * n iterations, polling hb_interrupted() the way kernels and training loops do, and raises
 * "interrupted!" when Ctrl-C arrives. It returns the number of iterations done.
 */
#include "../lua/hyblua.h"
#include "../core/interrupt.h"
#include <lauxlib.h>
#include <stdint.h>

static int stub_busy(lua_State *L) {
    lua_Number n = luaL_checknumber(L, 1);
    int64_t i;
    for (i = 0; (lua_Number)i < n; i++)
        if (hb_interrupted()) return luaL_error(L, "interrupted!");
    lua_pushinteger(L, (lua_Integer)i);
    return 1;
}

const char *hyblua_blas_coretype_hint(void) { return NULL; } /* no BLAS in the stub */

int luaopen_hyblua(lua_State *L) {
    static const luaL_Reg funcs[] = {{"busy", stub_busy}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    lua_pushliteral(L, HB_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
