/* lnn.c — neural-network functions for Lua (hb.linear, hb.rmsnorm, ...) and the sequence ops that are
 * not hybrid mixers, called with keyword tables: hb.attention{...}, hb.attention_step{...},
 * hb.conv1d{...}, hb.conv1d_step{...}. The recurrent mixers (hb.gla{...}, ...) come from lmixer.c.
 * Step functions update a cache in place and return the step's output. Shapes follow fla: (B, T, H, D).
 */
#include "../core/mixers.h"
#include "../core/optim.h"
#include "lhyblua.h"
#include <math.h>
#include <string.h>

static int ret(lua_State *L, hb_tensor_t *t) {
    if (!t) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, t);
    return 1;
}
static hb_tensor_t *opt_tensor(lua_State *L, int i) { return lua_isnoneornil(L, i) ? NULL : lhb_check_tensor(L, i); }

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

/* hb.attention{q =, k =, v =, scale = D^-1/2, window = 0, cu_seqlens = nil} (packed documents: block-diagonal) */
static int l_attention(lua_State *L) {
    static const char *const keys[] = {"q", "k", "v", "scale", "window", "cu_seqlens", NULL};
    const char *fn = "hb.attention";
    lhb_kw_check(L, fn, keys);
    hb_tensor_t *q = lhb_kw_tensor(L, fn, "q", 1), *k = lhb_kw_tensor(L, fn, "k", 1), *v = lhb_kw_tensor(L, fn, "v", 1);
    double scale = q->ndim ? 1.0 / sqrt((double)q->size[q->ndim - 1]) : 1.0;
    int64_t window = 0;
    lhb_kw_number(L, fn, "scale", &scale);
    lhb_kw_integer(L, fn, "window", &window);
    hb_tensor_t *cu = lhb_kw_seqlens(L, fn, "cu_seqlens");
    return ret(L, hb_attention_packed(q, k, v, scale, window, cu));
}
/* hb.attention_step{q = (B,H,D), k_cache =, v_cache =, scale = D^-1/2, window = 0, pos =} (0-based pos) */
static int l_attention_step(lua_State *L) {
    static const char *const keys[] = {"q", "k_cache", "v_cache", "scale", "window", "pos", NULL};
    const char *fn = "hb.attention_step";
    lhb_kw_check(L, fn, keys);
    hb_tensor_t *q = lhb_kw_tensor(L, fn, "q", 1), *kc = lhb_kw_tensor(L, fn, "k_cache", 1);
    hb_tensor_t *vc = lhb_kw_tensor(L, fn, "v_cache", 1);
    double scale = q->ndim ? 1.0 / sqrt((double)q->size[q->ndim - 1]) : 1.0;
    int64_t window = 0, pos = 0;
    lhb_kw_number(L, fn, "scale", &scale);
    lhb_kw_integer(L, fn, "window", &window);
    if (!lhb_kw_integer(L, fn, "pos", &pos)) return luaL_error(L, "%s: missing argument 'pos'", fn);
    return ret(L, hb_attention_step(q, kc, vc, scale, window, pos));
}
/* hb.rope(x, theta [, pos0 [, cu_seqlens]]) — pos0 is a 0-based absolute position; with cu_seqlens (packed
 * documents) positions restart at every document */
static int l_rope(lua_State *L) {
    hb_tensor_t *x = lhb_check_tensor(L, 1);
    double theta = luaL_checknumber(L, 2);
    lua_Integer pos0 = luaL_optinteger(L, 3, 0);
    hb_tensor_t *cu = lua_isnoneornil(L, 4) ? NULL : lhb_seqlens_at(L, 4, "hb.rope", "cu_seqlens");
    return ret(L, hb_rope_packed(x, theta, pos0, cu));
}
/* act = nil | "silu" → 0 | 1 */
static int conv_act(lua_State *L, const char *fn) {
    const char *act = lhb_kw_string(L, fn, "act");
    if (act && strcmp(act, "silu")) return luaL_error(L, "%s: act must be nil or 'silu', got '%s'", fn, act);
    return act != NULL;
}
/* hb.conv1d{x =, w =, bias = nil, act = nil | "silu", cache = false, cu_seqlens = nil} → y [, cache]; packed
 * documents: no tap crosses a boundary, the cache is [N, W-1, D] */
static int l_conv1d(lua_State *L) {
    static const char *const keys[] = {"x", "w", "bias", "act", "cache", "cu_seqlens", NULL};
    const char *fn = "hb.conv1d";
    lhb_kw_check(L, fn, keys);
    hb_tensor_t *x = lhb_kw_tensor(L, fn, "x", 1), *w = lhb_kw_tensor(L, fn, "w", 1), *bias = lhb_kw_tensor(L, fn, "bias", 0);
    int act = conv_act(L, fn), want_cache = lhb_kw_bool(L, fn, "cache");
    hb_tensor_t *cu = lhb_kw_seqlens(L, fn, "cu_seqlens"), *cache = NULL;
    hb_tensor_t *y = hb_conv1d_packed(x, w, bias, act, cu, want_cache ? &cache : NULL);
    if (!y) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, y);
    if (!want_cache) return 1;
    lhb_push_tensor(L, cache);
    return 2;
}
/* hb.conv1d_step{cache = (B,W-1,D) updated in place, x = (B,D), w =, bias = nil, act = nil} → y */
static int l_conv1d_step(lua_State *L) {
    static const char *const keys[] = {"cache", "x", "w", "bias", "act", NULL};
    const char *fn = "hb.conv1d_step";
    lhb_kw_check(L, fn, keys);
    hb_tensor_t *cache = lhb_kw_tensor(L, fn, "cache", 1), *x = lhb_kw_tensor(L, fn, "x", 1);
    hb_tensor_t *w = lhb_kw_tensor(L, fn, "w", 1), *bias = lhb_kw_tensor(L, fn, "bias", 0);
    return ret(L, hb_conv1d_step(cache, x, w, bias, conv_act(L, fn)));
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
    {"conv1d", l_conv1d}, {"conv1d_step", l_conv1d_step}, {NULL, NULL}};

void lhb_open_nn(lua_State *L) { luaL_setfuncs(L, nn_funcs, 0); }
