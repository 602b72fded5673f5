/* hyblua.h — the Lua module's entry point and the version string the executable reports. */
#ifndef HYBLUA_H
#define HYBLUA_H
#include <lua.h>

#define HB_VERSION "0.1.0"

/* Open the hyblua module: pushes the module table (what `require "hyblua"` returns). */
int luaopen_hyblua(lua_State *L);
/* The OpenBLAS kernels main() should re-execute itself with (OPENBLAS_CORETYPE), or NULL: see
   hb_blas_coretype_hint in kernels/parallel.h. */
const char *hyblua_blas_coretype_hint(void);

#endif
