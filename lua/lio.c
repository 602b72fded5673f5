/* lio.c — hb.io: safetensors and JSON files from Lua.
 *
 * hb.io.load_safetensors(path | dir) → tensors (name → tensor), metadata (key → string)
 *   F32/F64/I64/I32 load as themselves, BF16/F16 widen to float32, I16/I8/U8/BOOL widen to int32.
 *   A directory or a *.index.json path opens a sharded checkpoint.
 * hb.io.save_safetensors(path, tensors, metadata [, {dtype = "bf16" | "f16" | "f32"}]) — atomic write;
 *   float tensors may be narrowed on the way out.
 * hb.io.file_kind(path) → "file" | "directory" | "named pipe" | "socket" | "device" | nil (absent).
 * hb.io.read_json(path) → Lua value (JSON null → hb.io.null);  hb.io.write_json(path, value) — atomic,
 *   keys sorted; a Lua sequence becomes an array, hb.io.null becomes null, an empty table {} an object
 *   unless it is hb.io.empty_array.
 */
#include "../io/half.h"
#include "../io/jsonfile.h"
#include "../io/safetensors.h"
#include "lhyblua.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int null_sentinel, empty_array_sentinel;

static hb_tensor_t *tensor_from_st(hb_safetensors_t *st, int i, char *err, size_t errlen) {
    hb_st_dtype dt = hb_safetensors_dtype(st, i);
    int nd = hb_safetensors_ndim(st, i);
    const int64_t *shape = hb_safetensors_shape(st, i);
    if (nd > HB_MAXDIM) {
        snprintf(err, errlen, "tensor '%s' has %d dims (hyblua supports %d)", hb_safetensors_name(st, i), nd, HB_MAXDIM);
        return NULL;
    }
    const void *src = hb_safetensors_data(st, i);
    int64_t n = hb_safetensors_numel(st, i);
    hb_tensor_t *t = NULL;
    switch (dt) {
    case HB_ST_F32: t = hb_tensor_empty(HB_F32, nd, shape); if (t) memcpy(hb_data(t), src, (size_t)n * 4); break;
    case HB_ST_F64: t = hb_tensor_empty(HB_F64, nd, shape); if (t) memcpy(hb_data(t), src, (size_t)n * 8); break;
    case HB_ST_I64: t = hb_tensor_empty(HB_I64, nd, shape); if (t) memcpy(hb_data(t), src, (size_t)n * 8); break;
    case HB_ST_I32: t = hb_tensor_empty(HB_I32, nd, shape); if (t) memcpy(hb_data(t), src, (size_t)n * 4); break;
    case HB_ST_BF16:
    case HB_ST_F16: {
        t = hb_tensor_empty(HB_F32, nd, shape);
        if (!t) break;
        /* the mapping may be unaligned for 16-bit access: copy first */
        uint16_t *tmp = malloc((size_t)n * 2 + 2);
        if (!tmp) { hb_tensor_free(t); t = NULL; break; }
        memcpy(tmp, src, (size_t)n * 2);
        if (dt == HB_ST_BF16) hb_bf16_to_f32(hb_data(t), tmp, (size_t)n);
        else hb_f16_to_f32(hb_data(t), tmp, (size_t)n);
        free(tmp);
        break;
    }
    default: {
        t = hb_tensor_empty(HB_I32, nd, shape);
        if (!t) break;
        const unsigned char *b = src;
        int32_t *d = hb_data(t);
        for (int64_t k = 0; k < n; k++) {
            if (dt == HB_ST_I16) { int16_t v; memcpy(&v, b + 2 * k, 2); d[k] = v; }
            else if (dt == HB_ST_I8) d[k] = (int8_t)b[k];
            else d[k] = b[k];
        }
    }
    }
    if (!t) snprintf(err, errlen, "tensor '%s': %s", hb_safetensors_name(st, i), hb_errmsg());
    return t;
}

static int l_load_safetensors(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char err[512];
    size_t n = strlen(path);
    /* a directory (sharded if it has an index, else its model.safetensors) or an index go through
       open_index; stat never blocks, where probing with fopen would wait forever on a named pipe */
    struct stat sb;
    int index = (n > 11 && !strcmp(path + n - 11, ".index.json")) || (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
    hb_safetensors_t *st = index ? hb_safetensors_open_index(path, err, sizeof err) : hb_safetensors_open(path, err, sizeof err);
    if (!st) return luaL_error(L, "hb.io.load_safetensors: %s", err);
    int cnt = hb_safetensors_count(st);
    lua_createtable(L, 0, cnt);
    for (int i = 0; i < cnt; i++) {
        hb_tensor_t *t = tensor_from_st(st, i, err, sizeof err);
        if (!t) {
            hb_safetensors_close(st);
            return luaL_error(L, "hb.io.load_safetensors: %s", err);
        }
        lhb_push_tensor(L, t);
        lua_setfield(L, -2, hb_safetensors_name(st, i));
    }
    int nm = hb_safetensors_meta_count(st);
    lua_createtable(L, 0, nm);
    for (int i = 0; i < nm; i++) {
        lua_pushstring(L, hb_safetensors_meta_value(st, i));
        lua_setfield(L, -2, hb_safetensors_meta_key(st, i));
    }
    /* also report each tensor's stored dtype (so callers can tell bf16 checkpoints) */
    lua_createtable(L, 0, cnt);
    for (int i = 0; i < cnt; i++) {
        lua_pushstring(L, hb_st_dtype_name(hb_safetensors_dtype(st, i)));
        lua_setfield(L, -2, hb_safetensors_name(st, i));
    }
    hb_safetensors_close(st);
    return 3;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* save_safetensors(path, tensors, metadata, opts) */
static int l_save_safetensors(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int has_meta = lua_istable(L, 3);
    hb_st_dtype narrow = HB_ST_F32;
    int do_narrow = 0;
    if (lua_istable(L, 4)) {
        lua_getfield(L, 4, "dtype");
        if (!lua_isnil(L, -1)) {
            const char *d = luaL_checkstring(L, -1);
            if (!strcmp(d, "bf16") || !strcmp(d, "bfloat16") || !strcmp(d, "BF16")) { narrow = HB_ST_BF16; do_narrow = 1; }
            else if (!strcmp(d, "f16") || !strcmp(d, "float16") || !strcmp(d, "F16")) { narrow = HB_ST_F16; do_narrow = 1; }
            else if (strcmp(d, "f32") && strcmp(d, "float32") && strcmp(d, "F32"))
                return luaL_error(L, "hb.io.save_safetensors: unknown dtype '%s' (bf16, f16, f32)", d);
        }
        lua_pop(L, 1);
    }
    /* collect names (sorted, for a deterministic file) */
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "hb.io.save_safetensors: tensor names must be strings");
        if (!lhb_test_tensor(L, -1))
            return luaL_error(L, "hb.io.save_safetensors: '%s' is a %s, expected a tensor", lua_tostring(L, -2), luaL_typename(L, -1));
        n++;
        lua_pop(L, 1);
    }
    const char **names = calloc((size_t)n + 1, sizeof *names);
    hb_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    hb_tensor_t **keep = calloc((size_t)n + 1, sizeof *keep);
    void **bufs = calloc((size_t)n + 1, sizeof *bufs);
    int nmeta = 0;
    const char **mk = NULL, **mv = NULL;
    char err[512] = "out of memory";
    int rc = -1;
    if (!names || !e || !keep || !bufs) goto out;
    int k = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        names[k++] = lua_tostring(L, -2); /* strings stay alive: keys of the table */
        lua_pop(L, 1);
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        lua_getfield(L, 2, names[i]);
        hb_tensor_t *t = lhb_test_tensor(L, -1);
        lua_pop(L, 1);
        keep[i] = hb_contiguous(t);
        if (!keep[i]) goto out;
        e[i].name = names[i];
        e[i].ndim = t->ndim;
        e[i].shape = keep[i]->size;
        e[i].data = hb_data(keep[i]);
        switch (t->dtype) {
        case HB_F32: e[i].dtype = HB_ST_F32; break;
        case HB_F64: e[i].dtype = HB_ST_F64; break;
        case HB_I64: e[i].dtype = HB_ST_I64; break;
        case HB_I32: e[i].dtype = HB_ST_I32; break;
        }
        if (do_narrow && t->dtype == HB_F32) {
            int64_t cnt = hb_numel(t);
            bufs[i] = malloc((size_t)cnt * 2 + 2);
            if (!bufs[i]) goto out;
            if (narrow == HB_ST_BF16) hb_f32_to_bf16(bufs[i], hb_data(keep[i]), (size_t)cnt);
            else hb_f32_to_f16(bufs[i], hb_data(keep[i]), (size_t)cnt);
            e[i].dtype = narrow;
            e[i].data = bufs[i];
        }
    }
    if (has_meta) {
        lua_pushnil(L);
        while (lua_next(L, 3)) { nmeta++; lua_pop(L, 1); }
        mk = calloc((size_t)nmeta + 1, sizeof *mk);
        mv = calloc((size_t)nmeta + 1, sizeof *mv);
        if (!mk || !mv) goto out;
        int j = 0;
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (lua_type(L, -2) != LUA_TSTRING || (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)) {
                snprintf(err, sizeof err, "metadata keys and values must be strings");
                lua_pop(L, 2);
                goto out;
            }
            mk[j] = lua_tostring(L, -2);
            lua_pushvalue(L, -1);
            mv[j] = lua_tostring(L, -1); /* converted copy stays referenced below */
            lua_rawsetp(L, LUA_REGISTRYINDEX, mv[j]);
            j++;
            lua_pop(L, 1);
        }
    }
    rc = hb_safetensors_write(path, n, e, nmeta, mk, mv, err, sizeof err);
    for (int j = 0; j < nmeta; j++) { lua_pushnil(L); lua_rawsetp(L, LUA_REGISTRYINDEX, mv[j]); }
out:
    for (int i = 0; i < n && keep; i++) { hb_tensor_free(keep[i]); if (bufs) free(bufs[i]); }
    free(names); free(e); free(keep); free(bufs); free(mk); free(mv);
    if (rc) return luaL_error(L, "hb.io.save_safetensors: %s", err);
    return 0;
}

/* ---- JSON ---------------------------------------------------------------------------------------- */
static void json_release(void *p) { cJSON_Delete(p); }

static void push_json(lua_State *L, const cJSON *j) {
    luaL_checkstack(L, 4, "JSON nesting too deep");
    if (cJSON_IsNull(j)) lua_pushlightuserdata(L, &null_sentinel);
    else if (cJSON_IsBool(j)) lua_pushboolean(L, cJSON_IsTrue(j));
    else if (cJSON_IsNumber(j)) {
        double v = j->valuedouble;
        /* integral values up to 2^53 (exact in the double cJSON keeps) become Lua integers; the range
         * test comes first, as converting a double outside lua_Integer's range is undefined */
        if (v >= -9007199254740992.0 && v <= 9007199254740992.0 && v == (double)(lua_Integer)v)
            lua_pushinteger(L, (lua_Integer)v);
        else lua_pushnumber(L, v);
    } else if (cJSON_IsString(j)) lua_pushstring(L, j->valuestring);
    else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        int i = 1;
        for (const cJSON *c = j->child; c; c = c->next) {
            push_json(L, c);
            lua_seti(L, -2, i++);
        }
    } else if (cJSON_IsObject(j)) {
        lua_newtable(L);
        for (const cJSON *c = j->child; c; c = c->next) {
            push_json(L, c);
            lua_setfield(L, -2, c->string);
        }
    } else lua_pushnil(L);
}

static int l_read_json(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char err[512];
    cJSON *j = hb_json_read_file(path, err, sizeof err);
    if (!j) return luaL_error(L, "%s", err);
    void **h = lhb_guard(L, json_release);     /* push_json may raise (too deep, out of memory) */
    *h = j;
    push_json(L, j);
    cJSON_Delete(j);
    *h = NULL;
    return 1;
}

static int l_decode_json(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    cJSON *j = cJSON_ParseWithLength(s, n);
    if (!j) return luaL_error(L, "hb.io.decode_json: invalid JSON near byte %d", (int)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - s : 0));
    long nul = hb_json_find_nul(s, n);
    if (nul >= 0) {
        cJSON_Delete(j);
        return luaL_error(L, "hb.io.decode_json: a string holds a NUL character (\\u0000) at byte %d", (int)nul);
    }
    void **h = lhb_guard(L, json_release);
    *h = j;
    push_json(L, j);
    cJSON_Delete(j);
    *h = NULL;
    return 1;
}

/* Convert the value at idx into a new cJSON item attached to parent (to an array when key is NULL, else
 * to an object under key). Items are attached as soon as they exist, so everything allocated stays
 * reachable from the root, which a guard userdata owns: a Lua error half-way (a cycle, a function, a
 * non-string key, out of memory) unwinds without leaking the partial tree. */
static void add_json(lua_State *L, int idx, int depth, cJSON *parent, const char *key) {
    if (depth > 64) luaL_error(L, "write_json: nesting deeper than 64 (a cycle?)");
    luaL_checkstack(L, 4, "write_json: nesting too deep");
    idx = lua_absindex(L, idx);
    cJSON *item = NULL;
    lua_Integer n = 0;
    int count = 0, kind = 0;                     /* kind: 1 array, 2 object */
    switch (lua_type(L, idx)) {
    case LUA_TNIL: item = cJSON_CreateNull(); break;
    case LUA_TBOOLEAN: item = cJSON_CreateBool(lua_toboolean(L, idx)); break;
    case LUA_TNUMBER: {
        if (lua_isinteger(L, idx)) { item = cJSON_CreateNumber((double)lua_tointeger(L, idx)); break; }
        double v = lua_tonumber(L, idx);
        if (v != v || v == 1.0 / 0.0 || v == -1.0 / 0.0) item = cJSON_CreateNull();
        else if (v > -1e15 && v < 1e15 && v == (double)(long long)v) {   /* range first: the cast needs it */
            /* keep floats looking like floats (10000.0), as Python's json writes them */
            char buf[64];
            snprintf(buf, sizeof buf, "%.1f", v);
            item = cJSON_CreateRaw(buf);
        } else item = cJSON_CreateNumber(v);
        break;
    }
    case LUA_TSTRING: item = cJSON_CreateString(lua_tostring(L, idx)); break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == &null_sentinel) item = cJSON_CreateNull();
        else if (lua_touserdata(L, idx) == &empty_array_sentinel) item = cJSON_CreateArray();
        else luaL_error(L, "write_json: cannot encode a %s", luaL_typename(L, idx));
        break;
    case LUA_TTABLE:
        n = luaL_len(L, idx);
        lua_pushnil(L);
        while (lua_next(L, idx)) { count++; lua_pop(L, 1); }
        kind = n > 0 && count == n ? 1 : 2;
        item = kind == 1 ? cJSON_CreateArray() : cJSON_CreateObject();
        break;
    default: luaL_error(L, "write_json: cannot encode a %s", luaL_typename(L, idx));
    }
    if (!item || !(key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item))) {
        cJSON_Delete(item);
        luaL_error(L, "write_json: out of memory");
    }
    if (kind == 1) {
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, idx, i);
            add_json(L, -1, depth + 1, item, NULL);
            lua_pop(L, 1);
        }
    } else if (kind == 2) {
        /* keys sorted; the array is a userdata (collected on error), the strings live in the table */
        const char **keys = lua_newuserdatauv(L, sizeof(char *) * (size_t)(count + 1), 0);
        int k = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "write_json: object keys must be strings");
            keys[k++] = lua_tostring(L, -2);
            lua_pop(L, 1);
        }
        qsort(keys, (size_t)k, sizeof *keys, cmp_str);
        for (int i = 0; i < k; i++) {
            lua_getfield(L, idx, keys[i]);
            add_json(L, -1, depth + 1, item, keys[i]);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

/* The value at idx as a cJSON item; its tree is owned by a guard left on the stack, whose handle goes
 * to *h (release early with cJSON_Delete(*h), *h = NULL). */
static cJSON *to_json(lua_State *L, int idx, void ***h) {
    idx = lua_absindex(L, idx);
    *h = lhb_guard(L, json_release);
    cJSON *holder = cJSON_CreateArray();
    if (!holder) luaL_error(L, "write_json: out of memory");
    **h = holder;
    add_json(L, idx, 0, holder, NULL);
    return holder->child;
}

static int l_write_json(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    void **h;
    cJSON *j = to_json(L, 2, &h);
    char err[512];
    int rc = hb_json_write_file(path, j, err, sizeof err);
    cJSON_Delete(*h);
    *h = NULL;
    if (rc) return luaL_error(L, "%s", err);
    return 0;
}

static int l_encode_json(lua_State *L) {
    int pretty = lua_toboolean(L, 2);
    lua_settop(L, 1);                           /* the guard goes above the value */
    void **h;
    cJSON *j = to_json(L, 1, &h);
    char *s = pretty ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
    cJSON_Delete(*h);
    *h = NULL;
    if (!s) return luaL_error(L, "encode_json: out of memory");
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* hb.io.file_kind(path) → "file" | "directory" | "named pipe" | "socket" | "device", or nil when nothing is
 * there (symbolic links followed). A stat: it never opens, so it never blocks. */
static int l_file_kind(lua_State *L) {
    struct stat sb;
    if (stat(luaL_checkstring(L, 1), &sb) != 0) { lua_pushnil(L); return 1; }
    lua_pushstring(L, S_ISREG(sb.st_mode) ? "file" : S_ISDIR(sb.st_mode) ? "directory" : S_ISFIFO(sb.st_mode) ? "named pipe"
                      : S_ISSOCK(sb.st_mode) ? "socket" : "device");
    return 1;
}

static const luaL_Reg io_funcs[] = {{"file_kind", l_file_kind},{"load_safetensors", l_load_safetensors}, {"save_safetensors", l_save_safetensors},
                                    {"read_json", l_read_json}, {"write_json", l_write_json},
                                    {"decode_json", l_decode_json}, {"encode_json", l_encode_json}, {NULL, NULL}};

void lhb_open_io(lua_State *L) {
    luaL_newlib(L, io_funcs);
    lua_pushlightuserdata(L, &null_sentinel);
    lua_setfield(L, -2, "null");
    lua_pushlightuserdata(L, &empty_array_sentinel);
    lua_setfield(L, -2, "empty_array");
    lua_setfield(L, -2, "io");
}
