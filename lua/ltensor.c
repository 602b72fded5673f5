/* ltensor.c — the Lua binding of hb tensors: userdata "hyblua.Tensor", its methods and metamethods,
 * and the tensor-creating functions of the module table.
 *
 * Index convention (decided once, documented in docs/lua-api.md): dims and positions are 1-based like
 * every Lua API; negative dims count from the end (-1 = last). Token ids are values, not positions,
 * and stay 0-based. Conversion happens only in this file (ldim/lpos).
 *
 * Every C tensor returned to Lua is owned by exactly one userdata; __gc and __close share one
 * idempotent release. Since the Lua GC cannot see tensor storage, push_tensor() runs a full collection
 * whenever live tensor bytes exceed a soft limit that adapts to the live size after the last collection.
 * Errors: arguments are checked before any allocation; a failed core call raises a Lua error with the
 * core message (which names the op and the shapes), after releasing whatever this function holds.
 */
#include "lhyblua.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TENSOR_MT "hyblua.Tensor"

typedef struct {
    hb_tensor_t *t;
} ltensor_t;

/* Lua's collector sees a tensor as its 8-byte userdata, so garbage tensors are collected here, by soft limits
 * on tensor memory. Live bytes: a full collection at twice what was live after the last one, at least
 * 256 MiB (large activations). Small storages (< 1 MiB, core/tensor.c's small tier): a young collection
 * after every SMALL_GC_YOUNG bytes of them and a full one after every SMALL_GC_FULL. The collector runs in
 * generational mode (set by lhb_open_tensor), where a young collection visits only the objects made since
 * the last one, so it stays cheap however large the Lua heap is (a full one traverses all of it: ~0.2 ms for
 * a 340M model's, its lines evicted by every decode step's weights). A decode step's temporaries (norms,
 * gates, one-token projections) are young when they die: their blocks come back to the tier while still in
 * L2. The full collections free the small tensors that died old. Measured against the rule before (a full
 * collection every 16 MiB), one Zen 5 core: d 256 decode steps 1.2-1.4x faster (the first 16 after a
 * prefill, which frees blocks of other sizes, 2x), small ops 0.4-0.7 instead of 0.7-1.7 us; a 340M decode
 * step spends 0.9 ms per step collecting, 1.1 ms before, 2.3 ms with full collections every Lua heap's worth
 * (tests/bench/results/small_gc_ab.md). A script that switches the collector to incremental mode makes the
 * young collections incremental steps; the full ones still bound the garbage. */
#define SMALL_GC_YOUNG (512LL << 10)
#define SMALL_GC_FULL (16LL << 20)
static int64_t gc_threshold = 256LL << 20, small_young_at = SMALL_GC_YOUNG, small_full_at = SMALL_GC_FULL;

/* a full collection, then the next soft limits */
static void collect_tensors(lua_State *L) {
    lua_gc(L, LUA_GCCOLLECT);
    int64_t live = hb_alloc_bytes(), small = hb_small_alloc_bytes();
    gc_threshold = live * 2 > (256LL << 20) ? live * 2 : (256LL << 20);
    small_young_at = small + SMALL_GC_YOUNG;
    small_full_at = small + SMALL_GC_FULL;
}

/* the tensors made since the last collection that are garbage now: one step of a generational collector */
static void collect_young(lua_State *L) {
    lua_gc(L, LUA_GCSTEP, 0);
    small_young_at = hb_small_alloc_bytes() + SMALL_GC_YOUNG;
}

void lhb_push_tensor(lua_State *L, hb_tensor_t *t) {
    if (!t) {
        luaL_error(L, "%s", hb_errmsg());
        return;
    }
    int64_t small = hb_small_alloc_bytes();
    if (hb_alloc_bytes() > gc_threshold || small >= small_full_at) collect_tensors(L);
    else if (small >= small_young_at) collect_young(L);
    ltensor_t *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->t = t;
    luaL_setmetatable(L, TENSOR_MT);
}

/* Push the result of a core call, raising the core error if it failed. */
static int ret(lua_State *L, hb_tensor_t *t) {
    if (!t) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, t);
    return 1;
}

hb_tensor_t *lhb_check_tensor(lua_State *L, int i) {
    ltensor_t *u = luaL_checkudata(L, i, TENSOR_MT);
    if (!u->t) luaL_argerror(L, i, "tensor has been released (closed)");
    return u->t;
}

hb_tensor_t *lhb_test_tensor(lua_State *L, int i) {
    ltensor_t *u = luaL_testudata(L, i, TENSOR_MT);
    return u ? u->t : NULL;
}

static int t_release(lua_State *L) {
    ltensor_t *u = luaL_checkudata(L, 1, TENSOR_MT);
    if (u->t) {
        hb_tensor_free(u->t);
        u->t = NULL;
    }
    return 0;
}

/* ---- dims, shapes, dtypes ------------------------------------------------------------------------- */
/* 1-based (negative from end) Lua dim → 0-based C dim; raises on out of range. */
int lhb_dim(lua_State *L, int arg, int ndim) {
    lua_Integer d = luaL_checkinteger(L, arg);
    if (d > 0 && d <= ndim) return (int)d - 1;
    if (d < 0 && d >= -ndim) return (int)(ndim + d);
    return luaL_error(L, "bad argument #%d: dim %I out of range for a %d-d tensor (dims are 1..%d or -1..-%d)", arg,
                      (LUAI_UACINT)d, ndim, ndim, ndim);
}

static hb_dtype_t parse_dtype(lua_State *L, const char *s, int arg) {
    if (!strcmp(s, "float32") || !strcmp(s, "float")) return HB_F32;
    if (!strcmp(s, "float64") || !strcmp(s, "double")) return HB_F64;
    if (!strcmp(s, "int64") || !strcmp(s, "long")) return HB_I64;
    if (!strcmp(s, "int32") || !strcmp(s, "int")) return HB_I32;
    luaL_argerror(L, arg, lua_pushfstring(L, "unknown dtype '%s' (float32, float64, int64, int32)", s));
    return HB_F32;
}

/* Read a shape given either as a table {a, b, ...} at arg or as integers arg..top (stopping at a
 * non-number, e.g. a trailing dtype string). Returns ndim; *next = first unused arg. */
int lhb_shape(lua_State *L, int arg, int64_t *size, int *next) {
    int n = 0;
    if (lua_istable(L, arg)) {
        n = (int)luaL_len(L, arg);
        if (n > HB_MAXDIM) luaL_argerror(L, arg, "too many dims");
        for (int i = 0; i < n; i++) {
            lua_geti(L, arg, i + 1);
            if (!lua_isinteger(L, -1)) luaL_argerror(L, arg, "shape entries must be integers");
            size[i] = lua_tointeger(L, -1);
            if (size[i] < -1) luaL_argerror(L, arg, "shape entries must be >= 0 (or -1 in view)");
            lua_pop(L, 1);
        }
        if (next) *next = arg + 1;
        return n;
    }
    int top = lua_gettop(L);
    for (int i = arg; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
        if (n == HB_MAXDIM) luaL_argerror(L, i, "too many dims");
        if (!lua_isinteger(L, i)) luaL_argerror(L, i, "size must be an integer");
        size[n] = lua_tointeger(L, i);
        if (size[n] < -1) luaL_argerror(L, i, "size must be >= 0 (or -1 in view)");
        n++;
    }
    if (next) *next = arg + n;
    return n;
}

static hb_dtype_t opt_dtype(lua_State *L, int arg, hb_dtype_t def) {
    if (lua_isnoneornil(L, arg)) return def;
    if (lua_istable(L, arg)) { /* options table {dtype=...} */
        lua_getfield(L, arg, "dtype");
        hb_dtype_t d = lua_isnil(L, -1) ? def : parse_dtype(L, luaL_checkstring(L, -1), arg);
        lua_pop(L, 1);
        return d;
    }
    return parse_dtype(L, luaL_checkstring(L, arg), arg);
}

/* ---- creation ---------------------------------------------------------------------------------------- */
/* Infer the shape of a nested table; errors on ragged input. */
static int nested_shape(lua_State *L, int idx, int depth, int64_t *size, int *ndim) {
    if (depth >= HB_MAXDIM) return luaL_error(L, "hb.tensor: nesting deeper than %d", HB_MAXDIM);
    lua_Integer n = luaL_len(L, idx);
    size[depth] = n;
    if (depth + 1 > *ndim) *ndim = depth + 1;
    if (n > 0) {
        lua_geti(L, idx, 1);
        if (lua_istable(L, -1)) nested_shape(L, lua_gettop(L), depth + 1, size, ndim);
        lua_pop(L, 1);
    }
    return 0;
}

/* A value stored into an int64/int32 tensor must be an integer within the type's range: a fraction would
 * be truncated silently and NaN, inf or 1e300 have no integer value at all (and a C cast of them is
 * undefined behaviour). Raises "<what> is 1.5, not an integer ..." naming the tensor's dtype. */
static void check_int_value(lua_State *L, hb_dtype_t dt, int idx, const char *what) {
    if (dt != HB_I64 && dt != HB_I32) return;
    int ok;
    if (lua_isinteger(L, idx)) {
        lua_Integer x = lua_tointeger(L, idx);
        ok = dt == HB_I64 || (x >= INT32_MIN && x <= INT32_MAX);
    } else {
        double v = lua_tonumber(L, idx);
        /* the range test first: the cast that checks for a fraction is only defined inside it */
        ok = v >= -9223372036854775808.0 && v < 9223372036854775808.0 && v == (double)(int64_t)v &&
             (dt == HB_I64 || (v >= INT32_MIN && v <= INT32_MAX));
    }
    if (!ok)
        luaL_error(L, "%s is %s, not an integer that fits %s", what, lua_tostring(L, idx), hb_dtype_name(dt));
}

static void nested_fill(lua_State *L, int idx, int depth, int ndim, const int64_t *size, hb_tensor_t *t, int64_t *pos,
                        int64_t *k) {
    lua_Integer n = luaL_len(L, idx);
    if (n != size[depth])
        luaL_error(L, "hb.tensor: ragged nested table (expected %d elements at depth %d, got %d)", (int)size[depth],
                   depth + 1, (int)n);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        if (depth + 1 < ndim) {
            if (!lua_istable(L, -1)) luaL_error(L, "hb.tensor: expected a table at depth %d", depth + 2);
            nested_fill(L, lua_gettop(L), depth + 1, ndim, size, t, pos, k);
        } else {
            int isnum;
            lua_Number v = lua_tonumberx(L, -1, &isnum);
            if (!isnum) {
                const char *tn = luaL_typename(L, -1);
                luaL_error(L, "hb.tensor: element %d is a %s, expected a number", (int)(*k + 1), tn);
            }
            int64_t off = *k;
            if (t->dtype == HB_I64 || t->dtype == HB_I32) {
                char what[64];
                snprintf(what, sizeof what, "hb.tensor: element %lld", (long long)(*k + 1));
                check_int_value(L, t->dtype, -1, what);
            }
            switch (t->dtype) {
            case HB_F32: ((float *)hb_data(t))[off] = (float)v; break;
            case HB_F64: ((double *)hb_data(t))[off] = v; break;
            case HB_I64: ((int64_t *)hb_data(t))[off] = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : hb_double_to_i64(v); break;
            case HB_I32: ((int32_t *)hb_data(t))[off] = hb_double_to_i32(v); break;
            }
            (*k)++;
        }
        lua_pop(L, 1);
    }
    (void)pos;
}

/* hb.tensor(table | number [, dtype]) */
static int l_tensor(lua_State *L) {
    hb_dtype_t dt = opt_dtype(L, 2, HB_F32);
    if (lua_type(L, 1) == LUA_TNUMBER) {
        hb_tensor_t *t = hb_tensor_full(dt, 0, NULL, lua_tonumber(L, 1));
        return ret(L, t);
    }
    if (lhb_test_tensor(L, 1)) return ret(L, hb_to_dtype(lhb_test_tensor(L, 1), lua_isnoneornil(L, 2) ? lhb_test_tensor(L, 1)->dtype : dt));
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t size[HB_MAXDIM] = {0}, pos[HB_MAXDIM] = {0}, k = 0;
    int ndim = 0;
    nested_shape(L, 1, 0, size, &ndim);
    /* allocate through a userdata first so a Lua error during fill cannot leak the tensor */
    hb_tensor_t *t = hb_tensor_zeros(dt, ndim, size);
    if (!t) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, t);
    nested_fill(L, 1, 0, ndim, size, t, pos, &k);
    return 1;
}

static int fill_ctor(lua_State *L, double v, int use_arg_value) {
    int64_t size[HB_MAXDIM];
    int next;
    int start = use_arg_value ? 2 : 1;
    if (use_arg_value) v = luaL_checknumber(L, 1);
    int nd = lhb_shape(L, start, size, &next);
    hb_dtype_t dt = opt_dtype(L, next, HB_F32);
    if (use_arg_value) check_int_value(L, dt, 1, "hb.full: the value");
    return ret(L, hb_tensor_full(dt, nd, size, v));
}
static int l_zeros(lua_State *L) { return fill_ctor(L, 0, 0); }
static int l_ones(lua_State *L) { return fill_ctor(L, 1, 0); }
static int l_full(lua_State *L) { return fill_ctor(L, 0, 1); } /* hb.full(value, shape..., dtype) */
static int l_empty(lua_State *L) {
    int64_t size[HB_MAXDIM];
    int next, nd = lhb_shape(L, 1, size, &next);
    return ret(L, hb_tensor_zeros(opt_dtype(L, next, HB_F32), nd, size));
}

static int l_randn(lua_State *L) {
    int64_t size[HB_MAXDIM];
    int next, nd = lhb_shape(L, 1, size, &next);
    return ret(L, hb_randn(hb_rng_global(), opt_dtype(L, next, HB_F32), nd, size, 0, 1));
}
static int l_rand(lua_State *L) {
    int64_t size[HB_MAXDIM];
    int next, nd = lhb_shape(L, 1, size, &next);
    return ret(L, hb_rand(hb_rng_global(), opt_dtype(L, next, HB_F32), nd, size, 0, 1));
}
/* hb.randint(lo, hi, shape..., dtype) — values in [lo, hi) */
static int l_randint(lua_State *L) {
    lua_Integer lo = luaL_checkinteger(L, 1), hi = luaL_checkinteger(L, 2);
    int64_t size[HB_MAXDIM];
    int next, nd = lhb_shape(L, 3, size, &next);
    return ret(L, hb_randint(hb_rng_global(), opt_dtype(L, next, HB_I64), nd, size, lo, hi));
}
/* hb.arange(end) | hb.arange(start, end [, step]) [, dtype]: like torch, int64 for integer args */
static int l_arange(lua_State *L) {
    int n = 0;
    double a[3];
    int all_int = 1;
    while (n < 3 && lua_type(L, n + 1) == LUA_TNUMBER) {
        all_int &= lua_isinteger(L, n + 1);
        a[n] = lua_tonumber(L, n + 1);
        n++;
    }
    if (n == 0) return luaL_error(L, "hb.arange: expected (end) or (start, end [, step])");
    double start = n >= 2 ? a[0] : 0, end = n >= 2 ? a[1] : a[0], step = n == 3 ? a[2] : 1;
    hb_dtype_t dt = opt_dtype(L, n + 1, all_int ? HB_I64 : HB_F32);
    return ret(L, hb_tensor_arange(dt, start, end, step));
}

static int l_manual_seed(lua_State *L) {
    hb_rng_seed(hb_rng_global(), (uint64_t)luaL_checkinteger(L, 1));
    return 0;
}

/* ---- inspection ---------------------------------------------------------------------------------------- */
static int m_shape(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->size[i]);
        lua_seti(L, -2, i + 1);
    }
    return 1;
}
static int m_size(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) return m_shape(L);
    lua_pushinteger(L, t->size[lhb_dim(L, 2, t->ndim)]);
    return 1;
}
static int m_dim(lua_State *L) { lua_pushinteger(L, lhb_check_tensor(L, 1)->ndim); return 1; }
static int m_numel(lua_State *L) { lua_pushinteger(L, hb_numel(lhb_check_tensor(L, 1))); return 1; }
static int m_dtype(lua_State *L) { lua_pushstring(L, hb_dtype_name(lhb_check_tensor(L, 1)->dtype)); return 1; }
static int m_nbytes(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    lua_pushinteger(L, hb_numel(t) * (lua_Integer)hb_dtype_size(t->dtype));
    return 1;
}
static int m_is_contiguous(lua_State *L) { lua_pushboolean(L, hb_is_contiguous(lhb_check_tensor(L, 1))); return 1; }

/* An element of an integer tensor, exactly (through a double, int64 values beyond 2^53 would round, and
 * 2^63 − 1 would round to 2^63, which no int64 holds). */
static int64_t get_int(const hb_tensor_t *t, const int64_t *idx) {
    int64_t o = t->offset;
    for (int i = 0; i < t->ndim; i++) o += idx[i] * t->stride[i];
    return t->dtype == HB_I64 ? ((const int64_t *)t->storage->data)[o] : ((const int32_t *)t->storage->data)[o];
}
static void push_elem(lua_State *L, const hb_tensor_t *t, const int64_t *idx) {
    if (hb_dtype_is_float(t->dtype)) lua_pushnumber(L, hb_get(t, idx));
    else lua_pushinteger(L, (lua_Integer)get_int(t, idx));
}

static int m_item(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    if (hb_numel(t) != 1) {
        char b[64];
        return luaL_error(L, "item: tensor of shape %s has %d elements, expected 1", hb_shape_str(t, b, sizeof b),
                          (int)hb_numel(t));
    }
    int64_t idx[HB_MAXDIM] = {0};
    push_elem(L, t, idx);
    return 1;
}

static void tolist_rec(lua_State *L, const hb_tensor_t *t, int d, int64_t *idx) {
    if (d == t->ndim) {
        push_elem(L, t, idx);
        return;
    }
    lua_createtable(L, (int)t->size[d], 0);
    for (int64_t i = 0; i < t->size[d]; i++) {
        idx[d] = i;
        tolist_rec(L, t, d + 1, idx);
        lua_seti(L, -2, i + 1);
    }
}
static int m_tolist(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    int64_t idx[HB_MAXDIM] = {0};
    tolist_rec(L, t, 0, idx);
    return 1;
}

/* t:get(i, j, ...) / t:set(v, i, j, ...) — 1-based element access */
static void read_pos(lua_State *L, hb_tensor_t *t, int arg, int64_t *idx) {
    int n = lua_gettop(L) - arg + 1;
    if (n != t->ndim) luaL_error(L, "expected %d indices for a %d-d tensor, got %d", t->ndim, t->ndim, n);
    for (int i = 0; i < t->ndim; i++) {
        lua_Integer p = luaL_checkinteger(L, arg + i);
        if (p < 0) p += t->size[i] + 1;
        if (p < 1 || p > t->size[i])
            luaL_error(L, "index %d out of range 1..%d at dim %d", (int)p, (int)t->size[i], i + 1);
        idx[i] = p - 1;
    }
}
static int m_get(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    int64_t idx[HB_MAXDIM];
    read_pos(L, t, 2, idx);
    push_elem(L, t, idx);
    return 1;
}
static int m_set(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    double v = luaL_checknumber(L, 2);
    check_int_value(L, t->dtype, 2, "set: the value");
    int64_t idx[HB_MAXDIM];
    read_pos(L, t, 3, idx);
    hb_set(t, idx, v);
    return 0;
}

/* ---- printing ---------------------------------------------------------------------------------------- */
static void fmt_rec(luaL_Buffer *b, const hb_tensor_t *t, int d, int64_t *idx, int indent) {
    const int64_t edge = 3;
    if (t->ndim == 0) {
        char s[64];
        double v = hb_get(t, idx);
        if (hb_dtype_is_float(t->dtype)) snprintf(s, sizeof s, "%.6g", v);
        else snprintf(s, sizeof s, "%lld", (long long)get_int(t, idx));
        luaL_addstring(b, s);
        return;
    }
    luaL_addchar(b, '[');
    int64_t n = t->size[d];
    for (int64_t i = 0; i < n; i++) {
        if (n > 2 * edge && i == edge) {
            luaL_addstring(b, d == t->ndim - 1 ? "..., " : "...,\n");
            if (d < t->ndim - 1) for (int k = 0; k <= indent; k++) luaL_addchar(b, ' ');
            i = n - edge;
        }
        idx[d] = i;
        if (d == t->ndim - 1) {
            char s[64];
            double v = hb_get(t, idx);
            if (hb_dtype_is_float(t->dtype)) snprintf(s, sizeof s, "%.4g", v);
            else snprintf(s, sizeof s, "%lld", (long long)get_int(t, idx));
            luaL_addstring(b, s);
        } else {
            fmt_rec(b, t, d + 1, idx, indent + 1);
        }
        if (i < n - 1) {
            luaL_addchar(b, ',');
            if (d == t->ndim - 1) luaL_addchar(b, ' ');
            else {
                luaL_addchar(b, '\n');
                for (int k = 0; k <= indent; k++) luaL_addchar(b, ' ');
            }
        }
    }
    luaL_addchar(b, ']');
}

static int m_tostring(lua_State *L) {
    ltensor_t *u = luaL_checkudata(L, 1, TENSOR_MT);
    if (!u->t) {
        lua_pushstring(L, "hyblua.Tensor (released)");
        return 1;
    }
    hb_tensor_t *t = u->t;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "tensor(");
    int64_t idx[HB_MAXDIM] = {0};
    fmt_rec(&b, t, 0, idx, 7);
    char s[160], sh[96];
    snprintf(s, sizeof s, ", shape=%s, dtype=%s%s)", hb_shape_str(t, sh, sizeof sh), hb_dtype_name(t->dtype),
             t->requires_grad ? ", requires_grad" : "");
    luaL_addstring(&b, s);
    luaL_pushresult(&b);
    return 1;
}

/* ---- views and conversions ------------------------------------------------------------------------------ */
static int m_view(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    int64_t size[HB_MAXDIM];
    int nd = lhb_shape(L, 2, size, NULL);
    return ret(L, hb_view(t, nd, size));
}
static int m_transpose(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2) && t->ndim == 2) return ret(L, hb_transpose(t, 0, 1));
    int a = lhb_dim(L, 2, t->ndim), b = lhb_dim(L, 3, t->ndim);
    return ret(L, hb_transpose(t, a, b));
}
static int m_permute(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    int perm[HB_MAXDIM];
    int n = lua_istable(L, 2) ? (int)luaL_len(L, 2) : lua_gettop(L) - 1;
    if (n != t->ndim) return luaL_error(L, "permute: expected %d dims, got %d", t->ndim, n);
    for (int i = 0; i < n; i++) {
        if (lua_istable(L, 2)) {
            lua_geti(L, 2, i + 1);
            lua_Integer d = luaL_checkinteger(L, -1);
            lua_pop(L, 1);
            perm[i] = (int)(d < 0 ? d + n : d - 1);
        } else perm[i] = lhb_dim(L, i + 2, n);
    }
    return ret(L, hb_permute(t, perm));
}
static int m_narrow(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    int d = lhb_dim(L, 2, t->ndim);
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    return ret(L, hb_narrow(t, d, start - 1, len));
}
static int m_select(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    int d = lhb_dim(L, 2, t->ndim);
    lua_Integer i = luaL_checkinteger(L, 3);
    if (i < 0) i += t->size[d] + 1;
    if (i < 1 || i > t->size[d]) return luaL_error(L, "select: index %d out of range 1..%d", (int)i, (int)t->size[d]);
    return ret(L, hb_select(t, d, i - 1));
}
static int m_expand(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    int64_t size[HB_MAXDIM];
    int nd = lhb_shape(L, 2, size, NULL);
    return ret(L, hb_expand(t, nd, size));
}
static int m_unsqueeze(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    lua_Integer d = luaL_checkinteger(L, 2);
    int c = (int)(d < 0 ? d + t->ndim + 1 : d - 1);
    return ret(L, hb_unsqueeze(t, c));
}
static int m_squeeze(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    return ret(L, hb_squeeze(t, lhb_dim(L, 2, t->ndim)));
}
static int m_contiguous(lua_State *L) { return ret(L, hb_contiguous(lhb_check_tensor(L, 1))); }
static int m_clone(lua_State *L) { return ret(L, hb_clone(lhb_check_tensor(L, 1))); }
static int m_detach(lua_State *L) { return ret(L, hb_detach(lhb_check_tensor(L, 1))); }
static int m_to(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    return ret(L, hb_to_dtype(t, parse_dtype(L, luaL_checkstring(L, 2), 2)));
}
static int m_float(lua_State *L) { return ret(L, hb_to_dtype(lhb_check_tensor(L, 1), HB_F32)); }
static int m_double(lua_State *L) { return ret(L, hb_to_dtype(lhb_check_tensor(L, 1), HB_F64)); }
static int m_long(lua_State *L) { return ret(L, hb_to_dtype(lhb_check_tensor(L, 1), HB_I64)); }
static int m_int(lua_State *L) { return ret(L, hb_to_dtype(lhb_check_tensor(L, 1), HB_I32)); }

/* ---- arithmetic ------------------------------------------------------------------------------------------ */
static int arith(lua_State *L, hb_binop_t op) {
    hb_tensor_t *a = lhb_test_tensor(L, 1), *b = lhb_test_tensor(L, 2);
    if (a && b) return ret(L, hb_binary(op, a, b));
    if (a && lua_type(L, 2) == LUA_TNUMBER) return ret(L, hb_binary_scalar(op, a, lua_tonumber(L, 2), 0));
    if (b && lua_type(L, 1) == LUA_TNUMBER) return ret(L, hb_binary_scalar(op, b, lua_tonumber(L, 1), 1));
    return luaL_error(L, "arithmetic on a tensor needs a tensor or a number (got %s and %s)", luaL_typename(L, 1),
                      luaL_typename(L, 2));
}
static int m_add(lua_State *L) { return arith(L, HB_OP_ADD); }
static int m_sub(lua_State *L) { return arith(L, HB_OP_SUB); }
static int m_mul(lua_State *L) { return arith(L, HB_OP_MUL); }
static int m_div(lua_State *L) { return arith(L, HB_OP_DIV); }
static int m_pow(lua_State *L) { return arith(L, HB_OP_POW); }
static int m_maximum(lua_State *L) { return arith(L, HB_OP_MAXIMUM); }
static int m_minimum(lua_State *L) { return arith(L, HB_OP_MINIMUM); }
static int m_unm(lua_State *L) { return ret(L, hb_unary(HB_U_NEG, lhb_check_tensor(L, 1))); }

#define UNARY(fname, op) \
    static int fname(lua_State *L) { return ret(L, hb_unary(op, lhb_check_tensor(L, 1))); }
UNARY(m_neg, HB_U_NEG)
UNARY(m_exp, HB_U_EXP)
UNARY(m_log, HB_U_LOG)
UNARY(m_sqrt, HB_U_SQRT)
UNARY(m_rsqrt, HB_U_RSQRT)
UNARY(m_abs, HB_U_ABS)
UNARY(m_sigmoid, HB_U_SIGMOID)
UNARY(m_logsigmoid, HB_U_LOGSIGMOID)
UNARY(m_silu, HB_U_SILU)
UNARY(m_softplus, HB_U_SOFTPLUS)
UNARY(m_tanh, HB_U_TANH)
UNARY(m_relu, HB_U_RELU)
UNARY(m_elu, HB_U_ELU)
UNARY(m_square, HB_U_SQUARE)
UNARY(m_sin, HB_U_SIN)
UNARY(m_cos, HB_U_COS)
UNARY(m_log1p, HB_U_LOG1P)
UNARY(m_expm1, HB_U_EXPM1)
#undef UNARY

static int reduce(lua_State *L, hb_redop_t op) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2)) return ret(L, hb_reduce_all(op, t));
    int d = lhb_dim(L, 2, t->ndim);
    return ret(L, hb_reduce(op, t, d, lua_toboolean(L, 3)));
}
static int m_sum(lua_State *L) { return reduce(L, HB_R_SUM); }
static int m_mean(lua_State *L) { return reduce(L, HB_R_MEAN); }
static int m_max(lua_State *L) { return reduce(L, HB_R_MAX); }
static int m_min(lua_State *L) { return reduce(L, HB_R_MIN); }
static int m_argmax(lua_State *L) { return reduce(L, HB_R_ARGMAX); }
static int m_argmin(lua_State *L) { return reduce(L, HB_R_ARGMIN); }
static int m_cumsum(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    return ret(L, hb_cumsum(t, lhb_dim(L, 2, t->ndim), lua_toboolean(L, 3)));
}
static int m_matmul(lua_State *L) { return ret(L, hb_matmul(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2))); }
static int m_softmax(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    return ret(L, hb_softmax(t, lua_isnoneornil(L, 2) ? t->ndim - 1 : lhb_dim(L, 2, t->ndim)));
}
static int m_log_softmax(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    return ret(L, hb_log_softmax(t, lua_isnoneornil(L, 2) ? t->ndim - 1 : lhb_dim(L, 2, t->ndim)));
}
static int m_clamp(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    double lo = luaL_optnumber(L, 2, -INFINITY), hi = luaL_optnumber(L, 3, INFINITY);
    return ret(L, hb_clamp(t, lo, hi));
}
static int m_masked_fill(lua_State *L) {
    return ret(L, hb_masked_fill(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), luaL_checknumber(L, 3)));
}
static int m_gather(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    return ret(L, hb_gather(t, lhb_dim(L, 2, t->ndim), lhb_check_tensor(L, 3)));
}
static int m_index_select(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    return ret(L, hb_index_select(t, lhb_dim(L, 2, t->ndim), lhb_check_tensor(L, 3)));
}
static int m_tril(lua_State *L) { return ret(L, hb_tril(lhb_check_tensor(L, 1), luaL_optinteger(L, 2, 0))); }
static int m_triu(lua_State *L) { return ret(L, hb_triu(lhb_check_tensor(L, 1), luaL_optinteger(L, 2, 0))); }
static int m_repeat_interleave(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    lua_Integer g = luaL_checkinteger(L, 2);
    return ret(L, hb_repeat_interleave(t, lhb_dim(L, 3, t->ndim), g));
}

/* ---- in-place (no autograd) ------------------------------------------------------------------------------ */
static void check_inplace(lua_State *L, hb_tensor_t *t, const char *fn) {
    if (t->requires_grad && hb_grad_enabled())
        luaL_error(L, "%s: in-place update of a tensor that requires grad; wrap it in hb.no_grad(function() ... end)", fn);
}
/* An in-place write through an expanded view (a dim of size > 1 with stride 0) would write one memory
 * location several times: copy_ keeps whichever element came last, add_ sums them all into it. */
static void check_no_alias(lua_State *L, const hb_tensor_t *t, const char *fn) {
    for (int d = 0; d < t->ndim; d++)
        if (t->size[d] > 1 && t->stride[d] == 0)
            luaL_error(L, "%s: the destination is an expanded view (dim %d of size %I has stride 0), so several of its "
                          "elements share one memory location; write into a contiguous copy (t:contiguous()) instead",
                       fn, d + 1, (lua_Integer)t->size[d]);
}
static int m_fill_(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    check_inplace(L, t, "fill_");
    luaL_checknumber(L, 2);
    check_int_value(L, t->dtype, 2, "fill_: the value");
    hb_fill_(t, lua_tonumber(L, 2));
    lua_settop(L, 1);
    return 1;
}
static int m_zero_(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    check_inplace(L, t, "zero_");
    hb_fill_(t, 0);
    lua_settop(L, 1);
    return 1;
}
static int m_copy_(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1), *s = lhb_check_tensor(L, 2);
    check_inplace(L, t, "copy_");
    check_no_alias(L, t, "copy_");
    if (!hb_same_shape(t, s)) {
        char a[64], b[64];
        return luaL_error(L, "copy_: shapes differ (%s vs %s)", hb_shape_str(t, a, sizeof a), hb_shape_str(s, b, sizeof b));
    }
    if (hb_copy_(t, s)) return luaL_error(L, "%s", hb_errmsg());
    lua_settop(L, 1);
    return 1;
}
static int m_add_(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1), *s = lhb_check_tensor(L, 2);
    check_inplace(L, t, "add_");
    check_no_alias(L, t, "add_");
    if (hb_add_(t, s, luaL_optnumber(L, 3, 1.0))) return luaL_error(L, "%s", hb_errmsg());
    lua_settop(L, 1);
    return 1;
}
static int m_mul_(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    check_inplace(L, t, "mul_");
    double s = luaL_checknumber(L, 2);
    int g = hb_grad_set(0);
    hb_tensor_t *r = hb_binary_scalar(HB_OP_MUL, t, s, 0);
    hb_grad_set(g);
    if (!r) return luaL_error(L, "%s", hb_errmsg());
    hb_copy_(t, r);
    hb_tensor_free(r);
    lua_settop(L, 1);
    return 1;
}

/* ---- autograd ------------------------------------------------------------------------------------------------ */
static int m_requires_grad(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    if (lua_isnone(L, 2)) {
        lua_pushboolean(L, t->requires_grad);
        return 1;
    }
    if (hb_set_requires_grad(t, lua_toboolean(L, 2))) return luaL_error(L, "%s", hb_errmsg());
    lua_settop(L, 1);
    return 1;
}
static int m_backward(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    hb_tensor_t *g = lua_isnoneornil(L, 2) ? NULL : lhb_check_tensor(L, 2);
    int retain = lua_toboolean(L, 3);
    if (hb_backward(t, g, retain)) return luaL_error(L, "%s", hb_errmsg());
    /* The released graph was what kept the forward's activations alive; now only their dead Lua
     * userdata do, and the next forward would allocate beside them (peak ≈ 2× a step's activations,
     * depending on when the soft limit happens to trigger). Collect them now: a full collection of the
     * Lua heap costs well under a millisecond next to a training step. */
    if (!retain && hb_alloc_bytes() > (64LL << 20)) collect_tensors(L);
    return 0;
}
static int m_retain_grad(lua_State *L) {
    lhb_check_tensor(L, 1)->retain_grad = 1;
    lua_settop(L, 1);
    return 1;
}
static int m_zero_grad(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    hb_tensor_free(t->grad);
    t->grad = NULL;
    return 0;
}
static int m_is_leaf(lua_State *L) { lua_pushboolean(L, lhb_check_tensor(L, 1)->grad_fn == NULL); return 1; }
static int m_grad_fn(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    if (t->grad_fn) lua_pushstring(L, t->grad_fn->name);
    else lua_pushnil(L);
    return 1;
}

static int l_no_grad(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int prev = hb_grad_set(0);
    int n = lua_gettop(L);
    int rc = lua_pcall(L, n - 1, LUA_MULTRET, 0);
    hb_grad_set(prev);
    if (rc != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}
static int l_set_grad_enabled(lua_State *L) {
    lua_pushboolean(L, hb_grad_set(lua_toboolean(L, 1)));
    return 1;
}
static int l_is_grad_enabled(lua_State *L) { lua_pushboolean(L, hb_grad_enabled()); return 1; }

/* __index: methods first, then the properties .grad, .requires_grad_, .shape via methods */
static int m_index(lua_State *L) {
    luaL_checkudata(L, 1, TENSOR_MT);           /* also when __index is called directly with anything */
    luaL_getmetatable(L, TENSOR_MT);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1)) return 1;
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *k = lua_tostring(L, 2);
        hb_tensor_t *t = lhb_check_tensor(L, 1);
        if (!strcmp(k, "grad")) {
            if (t->grad) lhb_push_tensor(L, hb_tensor_ref(t->grad));
            else lua_pushnil(L);
            return 1;
        }
        if (!strcmp(k, "ndim")) { lua_pushinteger(L, t->ndim); return 1; }
        return luaL_error(L, "hyblua.Tensor has no method or field '%s'", k);
    }
    return luaL_error(L, "hyblua.Tensor cannot be indexed with a %s; use t:get(i, ...) or t:select(dim, i)",
                      luaL_typename(L, 2));
}
static int m_newindex(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "grad")) {
        hb_tensor_t *g = lua_isnil(L, 3) ? NULL : lhb_check_tensor(L, 3);
        if (g && (!hb_same_shape(g, t) || g->dtype != t->dtype))
            return luaL_error(L, "grad must have the tensor's shape and dtype");
        /* .grad owns its storage: backward accumulates into it in place, which must never write into the
           assigned tensor (an expanded view would take every addition several times) */
        hb_tensor_t *c = NULL;
        if (g) {
            c = hb_tensor_empty(g->dtype, g->ndim, g->size);
            if (!c || hb_copy_(c, g)) { hb_tensor_free(c); return luaL_error(L, "grad: %s", hb_errmsg()); }
        }
        hb_tensor_free(t->grad);
        t->grad = c;
        return 0;
    }
    return luaL_error(L, "cannot set field '%s' of a hyblua.Tensor", k);
}
static int m_len(lua_State *L) {
    hb_tensor_t *t = lhb_check_tensor(L, 1);
    lua_pushinteger(L, t->ndim ? t->size[0] : 0);
    return 1;
}
static int m_eq(lua_State *L) {
    lua_pushboolean(L, lhb_check_tensor(L, 1) == lhb_check_tensor(L, 2));
    return 1;
}

static const luaL_Reg methods[] = {
    {"shape", m_shape}, {"size", m_size}, {"dim", m_dim}, {"numel", m_numel}, {"dtype", m_dtype},
    {"nbytes", m_nbytes}, {"is_contiguous", m_is_contiguous}, {"item", m_item}, {"tolist", m_tolist},
    {"get", m_get}, {"set", m_set},
    {"view", m_view}, {"reshape", m_view}, {"transpose", m_transpose}, {"t", m_transpose}, {"permute", m_permute},
    {"narrow", m_narrow}, {"select", m_select}, {"expand", m_expand}, {"unsqueeze", m_unsqueeze},
    {"squeeze", m_squeeze}, {"contiguous", m_contiguous}, {"clone", m_clone}, {"detach", m_detach}, {"to", m_to},
    {"float", m_float}, {"double", m_double}, {"long", m_long}, {"int", m_int},
    {"add", m_add}, {"sub", m_sub}, {"mul", m_mul}, {"div", m_div}, {"pow", m_pow}, {"maximum", m_maximum},
    {"minimum", m_minimum}, {"neg", m_neg}, {"exp", m_exp}, {"log", m_log}, {"sqrt", m_sqrt}, {"rsqrt", m_rsqrt},
    {"abs", m_abs}, {"sigmoid", m_sigmoid}, {"logsigmoid", m_logsigmoid}, {"silu", m_silu}, {"softplus", m_softplus},
    {"tanh", m_tanh}, {"relu", m_relu}, {"elu", m_elu}, {"square", m_square}, {"sin", m_sin}, {"cos", m_cos},
    {"log1p", m_log1p}, {"expm1", m_expm1},
    {"sum", m_sum}, {"mean", m_mean}, {"max", m_max}, {"min", m_min}, {"argmax", m_argmax}, {"argmin", m_argmin},
    {"cumsum", m_cumsum}, {"matmul", m_matmul}, {"softmax", m_softmax}, {"log_softmax", m_log_softmax},
    {"clamp", m_clamp}, {"masked_fill", m_masked_fill}, {"gather", m_gather}, {"index_select", m_index_select},
    {"tril", m_tril}, {"triu", m_triu}, {"repeat_interleave", m_repeat_interleave},
    {"fill_", m_fill_}, {"zero_", m_zero_}, {"copy_", m_copy_}, {"add_", m_add_}, {"mul_", m_mul_},
    {"requires_grad", m_requires_grad}, {"backward", m_backward}, {"retain_grad", m_retain_grad},
    {"zero_grad", m_zero_grad}, {"is_leaf", m_is_leaf}, {"grad_fn", m_grad_fn}, {"close", t_release},
    {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", t_release}, {"__close", t_release}, {"__tostring", m_tostring}, {"__index", m_index},
    {"__newindex", m_newindex}, {"__add", m_add}, {"__sub", m_sub}, {"__mul", m_mul}, {"__div", m_div},
    {"__pow", m_pow}, {"__unm", m_unm}, {"__len", m_len}, {"__eq", m_eq}, {NULL, NULL}};

/* hb.physical_memory() → bytes of RAM (sysconf), or nil when unknown. What hb.models and hb.train compare a
 * model's size with before allocating it. */
static int l_physical_memory(lua_State *L) {
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psize <= 0) lua_pushnil(L);
    else lua_pushinteger(L, (lua_Integer)pages * (lua_Integer)psize);
    return 1;
}

static const luaL_Reg functions[] = {{"physical_memory", l_physical_memory},
    {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full}, {"empty", l_empty},
    {"randn", l_randn}, {"rand", l_rand}, {"randint", l_randint}, {"arange", l_arange},
    {"manual_seed", l_manual_seed}, {"no_grad", l_no_grad}, {"set_grad_enabled", l_set_grad_enabled},
    {"is_grad_enabled", l_is_grad_enabled}, {NULL, NULL}};

/* Register the metatable and add tensor functions + every method as a module function
 * (hb.exp(t) == t:exp()). Expects the module table on top of the stack. */
void lhb_open_tensor(lua_State *L) {
    lua_gc(L, LUA_GCGEN, 0, 0); /* generational: cheap young collections (collect_young), Lua's default parameters */
    luaL_newmetatable(L, TENSOR_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    luaL_setfuncs(L, functions, 0);
    for (const luaL_Reg *r = methods; r->name; r++) {
        lua_getfield(L, -1, r->name);
        int exists = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!exists) {
            lua_pushcfunction(L, r->func);
            lua_setfield(L, -2, r->name);
        }
    }
}
