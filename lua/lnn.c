/* lnn.c — neural-network functions and token-mixer kernels for Lua (hb.linear, hb.attention, ...).
 *
 * Mixer functions take a mode string ("chunk" | "recurrent") and, when `want_state` is true, return the
 * final recurrent state as a second value (used to prefill a decode cache). Step functions update a
 * state tensor in place and return the step's output. Shapes follow fla: (B, T, H, D).
 */
#include "../core/mixers.h"
#include "../core/optim.h"
#include "lhyblua.h"
#include <string.h>

static int ret(lua_State *L, hb_tensor_t *t) {
    if (!t) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, t);
    return 1;
}
static int ret2(lua_State *L, hb_tensor_t *t, hb_tensor_t *s) {
    if (!t) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, t);
    if (s) lhb_push_tensor(L, s);
    else lua_pushnil(L);
    return 2;
}
static hb_tensor_t *opt_tensor(lua_State *L, int i) { return lua_isnoneornil(L, i) ? NULL : lhb_check_tensor(L, i); }
static hb_mode_t check_mode(lua_State *L, int i) {
    const char *m = luaL_optstring(L, i, "chunk");
    if (!strcmp(m, "chunk")) return HB_MODE_CHUNK;
    if (!strcmp(m, "recurrent")) return HB_MODE_RECURRENT;
    luaL_argerror(L, i, lua_pushfstring(L, "mode must be 'chunk' or 'recurrent', got '%s'", m));
    return HB_MODE_CHUNK;
}

static int l_linear(lua_State *L) {
    return ret(L, hb_linear(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), opt_tensor(L, 3)));
}
static int l_rmsnorm(lua_State *L) {
    return ret(L, hb_rmsnorm(lhb_check_tensor(L, 1), opt_tensor(L, 2), luaL_optnumber(L, 3, 1e-6)));
}
static int l_embedding(lua_State *L) { return ret(L, hb_embedding(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2))); }
static int l_cross_entropy(lua_State *L) {
    return ret(L, hb_cross_entropy(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), luaL_optinteger(L, 3, -100)));
}

/* hb.attention(q, k, v, scale [, window]) */
static int l_attention(lua_State *L) {
    return ret(L, hb_attention(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3),
                               luaL_checknumber(L, 4), luaL_optinteger(L, 5, 0)));
}
/* hb.rope(x, theta [, pos0]) — pos0 is a 0-based absolute position */
static int l_rope(lua_State *L) {
    return ret(L, hb_rope(lhb_check_tensor(L, 1), luaL_checknumber(L, 2), luaL_optinteger(L, 3, 0)));
}
/* hb.attention_step(q (B,H,D), kcache, vcache, scale, window, pos) */
static int l_attention_step(lua_State *L) {
    return ret(L, hb_attention_step(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3),
                                    luaL_checknumber(L, 4), luaL_optinteger(L, 5, 0), luaL_checkinteger(L, 6)));
}
/* hb.gla(q, k, v, gk, scale, mode, chunk, want_state) */
static int l_gla(lua_State *L) {
    hb_tensor_t *ht = NULL;
    hb_tensor_t *o = hb_gla(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3), lhb_check_tensor(L, 4),
                            luaL_checknumber(L, 5), check_mode(L, 6), luaL_optinteger(L, 7, 64), lua_toboolean(L, 8) ? &ht : NULL);
    return ret2(L, o, ht);
}
static int l_gla_step(lua_State *L) {
    return ret(L, hb_gla_step(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3), lhb_check_tensor(L, 4),
                              lhb_check_tensor(L, 5), luaL_checknumber(L, 6)));
}
/* hb.retention(q, k, v, log_decay[H], scale, mode, chunk, want_state) */
static int l_retention(lua_State *L) {
    hb_tensor_t *ht = NULL;
    hb_tensor_t *o = hb_retention(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3),
                                  lhb_check_tensor(L, 4), luaL_checknumber(L, 5), check_mode(L, 6), luaL_optinteger(L, 7, 64),
                                  lua_toboolean(L, 8) ? &ht : NULL);
    return ret2(L, o, ht);
}
static int l_retention_step(lua_State *L) {
    return ret(L, hb_retention_step(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3),
                                    lhb_check_tensor(L, 4), lhb_check_tensor(L, 5), luaL_checknumber(L, 6)));
}
/* hb.delta_rule(q, k, v, beta, g|nil, scale, mode, chunk, want_state) */
static int l_delta_rule(lua_State *L) {
    hb_tensor_t *ht = NULL;
    hb_tensor_t *o = hb_delta_rule(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3),
                                   lhb_check_tensor(L, 4), opt_tensor(L, 5), luaL_checknumber(L, 6), check_mode(L, 7),
                                   luaL_optinteger(L, 8, 64), lua_toboolean(L, 9) ? &ht : NULL);
    return ret2(L, o, ht);
}
static int l_delta_rule_step(lua_State *L) {
    return ret(L, hb_delta_rule_step(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3),
                                     lhb_check_tensor(L, 4), lhb_check_tensor(L, 5), opt_tensor(L, 6), luaL_checknumber(L, 7)));
}
/* hb.hgrn(x, g, mode, chunk, want_state) */
static int l_hgrn(lua_State *L) {
    hb_tensor_t *ht = NULL;
    hb_tensor_t *o = hb_hgrn(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), check_mode(L, 3),
                             lua_toboolean(L, 5) ? &ht : NULL);
    return ret2(L, o, ht);
}
static int l_hgrn_step(lua_State *L) {
    return ret(L, hb_hgrn_step(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3)));
}
/* hb.conv1d(x, w, bias|nil, act ("silu"|nil), want_cache) */
static int l_conv1d(lua_State *L) {
    hb_tensor_t *cache = NULL;
    int act = !lua_isnoneornil(L, 4) && !strcmp(luaL_checkstring(L, 4), "silu");
    hb_tensor_t *y = hb_conv1d(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), opt_tensor(L, 3), act,
                               lua_toboolean(L, 5) ? &cache : NULL);
    return ret2(L, y, cache);
}
/* hb.conv1d_step(cache, x (B,D), w, bias|nil, act) */
static int l_conv1d_step(lua_State *L) {
    int act = !lua_isnoneornil(L, 5) && !strcmp(luaL_checkstring(L, 5), "silu");
    return ret(L, hb_conv1d_step(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3), opt_tensor(L, 4), act));
}

/* hb.adamw_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step) — in place */
static int l_adamw_update(lua_State *L) {
    if (hb_adamw_update(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3), lhb_check_tensor(L, 4),
                        luaL_checknumber(L, 5), luaL_checknumber(L, 6), luaL_checknumber(L, 7), luaL_checknumber(L, 8),
                        luaL_checknumber(L, 9), luaL_checkinteger(L, 10)))
        return luaL_error(L, "%s", hb_errmsg());
    return 0;
}
/* hb.sumsq(t) → Σ t² as a Lua number (double accumulation) */
static int l_sumsq(lua_State *L) {
    lua_pushnumber(L, hb_sumsq(lhb_check_tensor(L, 1)));
    return 1;
}

static const luaL_Reg nn_funcs[] = {
    {"adamw_update", l_adamw_update}, {"sumsq", l_sumsq},
    {"linear", l_linear}, {"rmsnorm", l_rmsnorm}, {"embedding", l_embedding}, {"cross_entropy", l_cross_entropy},
    {"attention", l_attention}, {"rope", l_rope}, {"attention_step", l_attention_step},
    {"gla", l_gla}, {"gla_step", l_gla_step}, {"retention", l_retention}, {"retention_step", l_retention_step},
    {"delta_rule", l_delta_rule}, {"delta_rule_step", l_delta_rule_step}, {"hgrn", l_hgrn}, {"hgrn_step", l_hgrn_step},
    {"conv1d", l_conv1d}, {"conv1d_step", l_conv1d_step}, {NULL, NULL}};

void lhb_open_nn(lua_State *L) { luaL_setfuncs(L, nn_funcs, 0); }
