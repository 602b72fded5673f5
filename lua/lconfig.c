/* lconfig.c — the C half of hb.config: YAML to Lua values (core/yamlconf) and atomic text files.
 * The Lua half (lua/hyblua/config.lua) adds parse_args, dump and save on top.
 *
 * hb.config.load(path) → value, positions
 *   value: a YAML mapping becomes a table with string keys, a sequence a list, integers Lua integers,
 *   floats Lua floats, null hb.io.null; an empty file (or one that is just null) gives {}. positions maps each dotted key path
 *   ("train.lr", "groups.2.name": sequence items are 1-based) to "path:line:column" of the key, so
 *   callers can point at the line that holds a bad key.
 * hb.config.decode(text [, name]) → value, positions   (the same from a string; name for messages)
 * hb.config.write_text(path, text) — atomic replacement (io/jsonfile.h's protocol)
 * Errors are raised with the core message: "config.yaml:3:5: mapping values are not allowed in this
 * context".
 */
#include "../io/jsonfile.h"
#include "../io/yamlconf.h"
#include "lhyblua.h"
#include <stdlib.h>
#include <string.h>

/* Push y as a Lua value and record "name:line:col" of each key path under prefix into the table at pos.
 * upvalue 1 is hb.io.null. Raises only on Lua errors (memory, stack); the caller holds y in a userdata
 * with a __gc, so such an error does not leak it. */
static void push_yaml(lua_State *L, const hb_yaml_t *y, int pos, const char *name, const char *prefix) {
    luaL_checkstack(L, 6, "YAML nesting too deep");
    switch (y->kind) {
    case HB_YAML_NULL: lua_pushvalue(L, lua_upvalueindex(1)); break;
    case HB_YAML_BOOL: lua_pushboolean(L, y->boolean); break;
    case HB_YAML_INT: lua_pushinteger(L, (lua_Integer)y->integer); break;
    case HB_YAML_FLOAT: lua_pushnumber(L, y->number); break;
    case HB_YAML_STR: lua_pushlstring(L, y->text, y->len); break;
    case HB_YAML_SEQ:
    case HB_YAML_MAP: {
        int map = y->kind == HB_YAML_MAP;
        lua_createtable(L, map ? 0 : (int)y->n, map ? (int)y->n : 0);
        for (size_t i = 0; i < y->n; i++) {
            /* the key path of this child, kept on the stack while the child is built */
            if (map) lua_pushfstring(L, "%s%s%s", prefix, *prefix ? "." : "", y->keys[i]);
            else lua_pushfstring(L, "%s%s%d", prefix, *prefix ? "." : "", (int)i + 1);
            const char *path = lua_tostring(L, -1);
            if (pos) {
                lua_pushfstring(L, "%s:%d:%d", name, y->items[i]->line, y->items[i]->column);
                lua_setfield(L, pos, path);
            }
            push_yaml(L, y->items[i], pos, name, path);
            if (map) lua_setfield(L, -3, y->keys[i]);
            else lua_seti(L, -3, (lua_Integer)i + 1);
            lua_pop(L, 1); /* the path */
        }
        break;
    }
    }
}

/* The tree is owned by a guard userdata (lhb_guard) while it is converted, so a Lua error (out of
 * memory) during conversion cannot leak it. */
static void yaml_release(void *p) { hb_yaml_free(p); }

/* Convert the held tree: pushes value, positions. */
static int push_result(lua_State *L, void **h, const char *name) {
    lua_newtable(L);
    int pos = lua_gettop(L);
    if (((hb_yaml_t *)*h)->kind == HB_YAML_NULL) lua_newtable(L); /* an empty file: an empty configuration */
    else push_yaml(L, ((hb_yaml_t *)*h), pos, name, "");
    hb_yaml_free(*h);
    *h = NULL;
    lua_insert(L, pos); /* value, positions */
    return 2;
}

static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char err[512];
    void **h = lhb_guard(L, yaml_release);
    *h = hb_yaml_load_file(path, err, sizeof err);
    if (!((hb_yaml_t *)*h)) return luaL_error(L, "%s", err);
    return push_result(L, h, path);
}

static int l_decode(lua_State *L) {
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    const char *name = luaL_optstring(L, 2, "<string>");
    char err[512];
    void **h = lhb_guard(L, yaml_release);
    *h = hb_yaml_load_string(name, text, n, err, sizeof err);
    if (!((hb_yaml_t *)*h)) return luaL_error(L, "%s", err);
    if (((hb_yaml_t *)*h)->kind == HB_YAML_NULL) { /* "" and "~" are both null here: a value, not a document */
        hb_yaml_free(*h);
        *h = NULL;
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_newtable(L);
        return 2;
    }
    return push_result(L, h, name);
}

static int l_write_text(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *text = luaL_checklstring(L, 2, &n);
    char err[512], *tmp;
    FILE *f = hb_atomic_open(path, &tmp, err, sizeof err);
    if (!f) return luaL_error(L, "%s", err);
    if (fwrite(text, 1, n, f) != n) {
        hb_atomic_abort(f, tmp);
        return luaL_error(L, "%s: write failed", path);
    }
    if (hb_atomic_commit(f, tmp, path, err, sizeof err)) return luaL_error(L, "%s", err);
    return 0;
}

static const luaL_Reg config_funcs[] = {
    {"load", l_load}, {"decode", l_decode}, {"write_text", l_write_text}, {NULL, NULL}};

/* hb.config (expects the module table on top, with hb.io already opened for hb.io.null). */
void lhb_open_config(lua_State *L) {
    lua_newtable(L);
    lua_getfield(L, -2, "io");
    if (lua_istable(L, -1)) lua_getfield(L, -1, "null");
    else lua_pushnil(L);
    lua_remove(L, -2);
    luaL_setfuncs(L, config_funcs, 1);
    lua_setfield(L, -2, "config");
}
