/* lkw.c — keyword-table arguments for the binding: hb.gla{q = q, k = k, ...} (see lhyblua.h).
 *
 * A function taking named arguments first calls lhb_kw_check, which raises unless argument 1 is a table
 * whose keys are all among the function's names ("hb.gla: unknown argument 'gk' (did you mean 'g'?)"),
 * then reads each argument with a typed getter that raises a message naming it ("hb.gla: missing
 * argument 'q'", "hb.gla: argument 'scale' must be a number, got string"). Every check runs before the
 * binding allocates anything, so raising leaks nothing. Values stay referenced by the table (argument 1)
 * for the whole call.
 */
#include "lhyblua.h"
#include <string.h>

/* Levenshtein distance of two short names (capped at 31 characters). */
static int distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b), row[32];
    if (la > 31) la = 31;
    if (lb > 31) lb = 31;
    for (int j = 0; j <= lb; j++) row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* The closest name within 2 edits (ties go to a name with the same first letter: 'gk' → 'g'), or a list. */
static void unknown_key(lua_State *L, const char *fn, const char *key, const char *const *keys) {
    const char *best = NULL;
    int bs = 2 * 3;
    for (int i = 0; keys[i]; i++) {
        int d = distance(key, keys[i]), score = 2 * d + (key[0] != keys[i][0]);
        if (d <= 2 && d < (int)strlen(key) && score < bs) { bs = score; best = keys[i]; }
    }
    if (best) luaL_error(L, "%s: unknown argument '%s' (did you mean '%s'?)", fn, key, best);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; keys[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, keys[i]);
    }
    luaL_pushresult(&b);
    luaL_error(L, "%s: unknown argument '%s' (it takes %s)", fn, key, lua_tostring(L, -1));
}

/* "hyblua.Tensor" for tensors, else Lua's type name */
static const char *type_name(lua_State *L, int i) {
    return luaL_testudata(L, i, "hyblua.Tensor") ? "hyblua.Tensor" : luaL_typename(L, i);
}

void lhb_kw_check(lua_State *L, const char *fn, const char *const *keys) {
    if (!lua_istable(L, 1) || lhb_test_tensor(L, 1))
        luaL_error(L, "%s takes a table of named arguments, e.g. %s{%s = ...} (got %s)", fn, fn, keys[0], type_name(L, 1));
    if (lua_gettop(L) > 1) luaL_error(L, "%s takes one table of named arguments (got %d arguments)", fn, lua_gettop(L));
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s takes named arguments only (got a %s key)", fn, type_name(L, -1));
        const char *key = lua_tostring(L, -1);
        int known = 0;
        for (int i = 0; keys[i] && !known; i++) known = !strcmp(key, keys[i]);
        if (!known) unknown_key(L, fn, key, keys);
    }
}

/* Push t[key]; returns 0 (and pops) when it is nil. */
static int field(lua_State *L, const char *key) {
    if (lua_getfield(L, 1, key) == LUA_TNIL) { lua_pop(L, 1); return 0; }
    return 1;
}

hb_tensor_t *lhb_kw_tensor(lua_State *L, const char *fn, const char *key, int required) {
    if (!field(L, key)) {
        if (required) luaL_error(L, "%s: missing argument '%s'", fn, key);
        return NULL;
    }
    hb_tensor_t *t = lhb_test_tensor(L, -1);
    if (!t) {
        if (luaL_testudata(L, -1, "hyblua.Tensor")) luaL_error(L, "%s: argument '%s' is a released (closed) tensor", fn, key);
        luaL_error(L, "%s: argument '%s' must be a hyblua.Tensor, got %s", fn, key, type_name(L, -1));
    }
    lua_pop(L, 1); /* the table keeps it alive */
    return t;
}

int lhb_kw_number(lua_State *L, const char *fn, const char *key, double *v) {
    if (!field(L, key)) return 0;
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "%s: argument '%s' must be a number, got %s", fn, key, type_name(L, -1));
    *v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return 1;
}

int lhb_kw_integer(lua_State *L, const char *fn, const char *key, int64_t *v) {
    if (!field(L, key)) return 0;
    int isint = 0;
    lua_Integer i = lua_tointegerx(L, -1, &isint);
    if (!isint) luaL_error(L, "%s: argument '%s' must be an integer, got %s", fn, key, type_name(L, -1));
    *v = (int64_t)i;
    lua_pop(L, 1);
    return 1;
}

const char *lhb_kw_string(lua_State *L, const char *fn, const char *key) {
    if (!field(L, key)) return NULL;
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: argument '%s' must be a string, got %s", fn, key, type_name(L, -1));
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1); /* the string stays alive in the table */
    return s;
}

hb_tensor_t *lhb_seqlens_at(lua_State *L, int idx, const char *fn, const char *what) {
    idx = lua_absindex(L, idx);
    hb_tensor_t *t = lhb_test_tensor(L, idx);
    if (t) return t;
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "%s: %s must be an int64 tensor or a list of integers (document starts), got %s", fn, what,
                   type_name(L, idx));
    int64_t n = (int64_t)luaL_len(L, idx);
    t = hb_tensor_empty(HB_I64, 1, &n);
    lhb_push_tensor(L, t); /* owned by Lua from here: an error below leaks nothing */
    int64_t *v = hb_data(t);
    for (int64_t i = 0; i < n; i++) {
        lua_geti(L, idx, (lua_Integer)(i + 1));
        int isint = 0;
        lua_Integer x = lua_tointegerx(L, -1, &isint);
        if (!isint) luaL_error(L, "%s: %s[%I] must be an integer, got %s", fn, what, (lua_Integer)(i + 1), type_name(L, -1));
        v[i] = (int64_t)x;
        lua_pop(L, 1);
    }
    return t;
}

hb_tensor_t *lhb_kw_seqlens(lua_State *L, const char *fn, const char *key) {
    if (!field(L, key)) return NULL;
    return lhb_seqlens_at(L, -1, fn, key); /* a converted list stays on the stack above its table for the call */
}

int lhb_kw_bool(lua_State *L, const char *fn, const char *key) {
    if (!field(L, key)) return 0;
    if (!lua_isboolean(L, -1)) luaL_error(L, "%s: argument '%s' must be a boolean, got %s", fn, key, type_name(L, -1));
    int b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}
