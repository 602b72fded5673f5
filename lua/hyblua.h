/* hyblua.h — the Lua module's entry point and the version string the executable reports. */
#ifndef HYBLUA_H
#define HYBLUA_H
#include <lua.h>

#define HB_VERSION "0.1.0"

/* Open the hyblua module: pushes the module table (what `require "hyblua"` returns). */
int luaopen_hyblua(lua_State *L);

#endif
