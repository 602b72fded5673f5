/* ltokenizer.c — hb.tokenizer: the Lua binding of io/tokenizer.h (userdata "hyblua.Tokenizer").
 *
 * hb.tokenizer.byte()                              ids 0..255 = bytes
 * hb.tokenizer.gpt2(encoder_json, vocab_bpe)       OpenAI GPT-2 files
 * hb.tokenizer.load(tokenizer_json)                a Hugging Face tokenizer.json (BPE)
 * hb.tokenizer.train_bpe(files, vocab_size)        byte-level BPE trained on a file or a list of files
 * tok:encode(str) → int64 tensor [n]       tok:encode_table(str) → {id, ...}
 * tok:decode(ids) → string                 ids: an integer tensor (any shape, read in order) or a list
 * tok:vocab_size()  tok:kind()  tok:bos_id()  tok:eos_id()  (nil when absent)
 * tok:id_to_token(id) → string | nil       tok:token_to_id(str) → id | nil
 * tok:save(path)  (tokenizer.json)         tok:set_parse_special(bool)   tok:close()
 *
 * Token ids are values, not positions: they stay 0-based as everywhere in hyblua. Errors raise the
 * core's message (which names the file) prefixed with the function; arguments are checked before any
 * allocation. __gc and __close share one idempotent release.
 */
#include "../io/tokenizer.h"
#include "lhyblua.h"
#include <stdlib.h>
#include <string.h>

#define TOKENIZER_MT "hyblua.Tokenizer"

typedef struct {
    hb_tokenizer_t *tok;
} ltok_t;

/* The core message without the core function's own prefix ("hb_tokenizer_decode: ", "train_bpe: ",
 * "tokenizer: "), which the Lua-side prefix replaces. */
static const char *msg(const char *err) {
    static const char *const prefixes[] = {"train_bpe: ", "tokenizer: ", NULL};
    if (!strncmp(err, "hb_tokenizer_", 13)) {
        const char *c = strstr(err, ": ");
        if (c) return c + 2;
    }
    for (int i = 0; prefixes[i]; i++)
        if (!strncmp(err, prefixes[i], strlen(prefixes[i]))) return err + strlen(prefixes[i]);
    return *err ? err : "out of memory";
}

static hb_tokenizer_t *check_tok(lua_State *L, int i) {
    ltok_t *u = luaL_checkudata(L, i, TOKENIZER_MT);
    if (!u->tok) luaL_argerror(L, i, "tokenizer has been released (closed)");
    return u->tok;
}

/* Push a new userdata owning tok (a NULL tok raises "fn: err"). */
static int push_tok(lua_State *L, hb_tokenizer_t *tok, const char *fn, const char *err) {
    if (!tok) return luaL_error(L, "%s: %s", fn, msg(err ? err : ""));
    ltok_t *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->tok = tok;
    luaL_setmetatable(L, TOKENIZER_MT);
    return 1;
}

static int t_release(lua_State *L) {
    ltok_t *u = luaL_checkudata(L, 1, TOKENIZER_MT);
    if (u->tok) {
        hb_tokenizer_free(u->tok);
        u->tok = NULL;
    }
    return 0;
}

/* ---- constructors ----------------------------------------------------------------------------------- */
static int l_byte(lua_State *L) { return push_tok(L, hb_tokenizer_byte(), "hb.tokenizer.byte", NULL); }

static int l_gpt2(lua_State *L) {
    const char *enc = luaL_checkstring(L, 1), *bpe = luaL_checkstring(L, 2);
    char err[512] = "";
    /* reserve the userdata first: pushing it cannot fail after the tokenizer exists */
    ltok_t *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->tok = NULL;
    luaL_setmetatable(L, TOKENIZER_MT);
    u->tok = hb_tokenizer_load_gpt2(enc, bpe, err, sizeof err);
    if (!u->tok) return luaL_error(L, "hb.tokenizer.gpt2: %s", msg(err));
    return 1;
}

static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char err[512] = "";
    ltok_t *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->tok = NULL;
    luaL_setmetatable(L, TOKENIZER_MT);
    u->tok = hb_tokenizer_load_hf(path, err, sizeof err);
    if (!u->tok) return luaL_error(L, "hb.tokenizer.load: %s", msg(err));
    return 1;
}

/* train_bpe(file | {file, ...}, vocab_size) */
static int l_train_bpe(lua_State *L) {
    lua_Integer vs = luaL_checkinteger(L, 2);
    if (vs < 257 || vs > (1 << 24))
        return luaL_error(L, "hb.tokenizer.train_bpe: vocab_size must be in 257..%d, got %I", 1 << 24, vs);
    int n;
    if (lua_type(L, 1) == LUA_TSTRING) n = 1;
    else if (lua_istable(L, 1)) n = (int)luaL_len(L, 1);
    else return luaL_argerror(L, 1, "expected a file name or a list of file names");
    if (n < 1) return luaL_argerror(L, 1, "no files given");
    /* the names are kept alive by the table (or arg 1) for the duration of the call */
    const char **files = lua_newuserdatauv(L, sizeof(char *) * (size_t)n, 0);
    if (lua_type(L, 1) == LUA_TSTRING) files[0] = lua_tostring(L, 1);
    else
        for (int i = 0; i < n; i++) {
            lua_geti(L, 1, i + 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "hb.tokenizer.train_bpe: files[%d] is a %s, expected a file name", i + 1,
                                  luaL_typename(L, -1));
            files[i] = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
    char err[512] = "";
    ltok_t *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->tok = NULL;
    luaL_setmetatable(L, TOKENIZER_MT);
    u->tok = hb_tokenizer_train_bpe(files, n, (int)vs, err, sizeof err);
    if (!u->tok) return luaL_error(L, "hb.tokenizer.train_bpe: %s", msg(err));
    return 1;
}

/* ---- methods ------------------------------------------------------------------------------------------ */

/* Encode arg 2; pushes the holder of the ids and returns them; raises on failure. */
static int64_t *encode(lua_State *L, size_t *n) {
    hb_tokenizer_t *tok = check_tok(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    void **b = lhb_guard(L, free);
    int64_t *ids = NULL;
    char err[512] = "";
    int rc = hb_tokenizer_encode(tok, s, len, &ids, n, err, sizeof err);
    *b = ids;
    if (rc) luaL_error(L, "encode: %s", msg(err));
    return ids;
}

static int m_encode(lua_State *L) {
    size_t n;
    int64_t *ids = encode(L, &n);
    int64_t size[1] = {(int64_t)n};
    lhb_push_tensor(L, hb_tensor_from_data(HB_I64, 1, size, ids ? (const void *)ids : (const void *)size));
    return 1; /* the holder frees ids when collected */
}

static int m_encode_table(lua_State *L) {
    size_t n;
    int64_t *ids = encode(L, &n);
    lua_createtable(L, n > 0x7fffffff ? 0x7fffffff : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_seti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int m_decode(lua_State *L) {
    hb_tokenizer_t *tok = check_tok(L, 1);
    int64_t *ids;
    size_t n;
    hb_tensor_t *t = lhb_test_tensor(L, 2);
    if (t) {
        if (t->dtype != HB_I64 && t->dtype != HB_I32)
            return luaL_error(L, "decode: ids must be an int64 or int32 tensor, got %s", hb_dtype_name(t->dtype));
        n = (size_t)hb_numel(t);
        ids = lua_newuserdatauv(L, (n ? n : 1) * sizeof *ids, 0);
        hb_tensor_t *c = hb_contiguous(t);
        if (!c) return luaL_error(L, "decode: %s", hb_errmsg());
        if (t->dtype == HB_I64) memcpy(ids, hb_data(c), n * sizeof *ids);
        else
            for (size_t i = 0; i < n; i++) ids[i] = ((const int32_t *)hb_data(c))[i];
        hb_tensor_free(c);
    } else if (lua_istable(L, 2)) {
        n = (size_t)luaL_len(L, 2);
        ids = lua_newuserdatauv(L, (n ? n : 1) * sizeof *ids, 0);
        for (size_t i = 0; i < n; i++) {
            lua_geti(L, 2, (lua_Integer)i + 1);
            int isint;
            ids[i] = lua_tointegerx(L, -1, &isint);
            if (!isint)
                return luaL_error(L, "decode: element %d is %s, expected an integer id", (int)i + 1,
                                  lua_type(L, -1) == LUA_TNUMBER ? "a non-integer number" : luaL_typename(L, -1));
            lua_pop(L, 1);
        }
    } else {
        return luaL_argerror(L, 2, lua_pushfstring(L, "expected an integer tensor or a list of ids, got %s",
                                                   luaL_typename(L, 2)));
    }
    char *text = NULL, err[512] = "";
    size_t len = 0;
    void **b = lhb_guard(L, free);
    int rc = hb_tokenizer_decode(tok, ids, n, &text, &len, err, sizeof err);
    *b = text;
    if (rc) return luaL_error(L, "decode: %s", msg(err));
    lua_pushlstring(L, text, len);
    return 1;
}

static int m_vocab_size(lua_State *L) {
    lua_pushinteger(L, hb_tokenizer_vocab_size(check_tok(L, 1)));
    return 1;
}
static int m_kind(lua_State *L) {
    lua_pushstring(L, hb_tokenizer_kind(check_tok(L, 1)));
    return 1;
}
static int push_id(lua_State *L, int64_t id) {
    if (id < 0) lua_pushnil(L);
    else lua_pushinteger(L, id);
    return 1;
}
static int m_bos_id(lua_State *L) { return push_id(L, hb_tokenizer_bos_id(check_tok(L, 1))); }
static int m_eos_id(lua_State *L) { return push_id(L, hb_tokenizer_eos_id(check_tok(L, 1))); }
static int m_id_to_token(lua_State *L) {
    hb_tokenizer_t *tok = check_tok(L, 1);
    const char *s = hb_tokenizer_id_to_token(tok, luaL_checkinteger(L, 2));
    if (s) lua_pushstring(L, s);
    else lua_pushnil(L);
    return 1;
}
static int m_token_to_id(lua_State *L) {
    hb_tokenizer_t *tok = check_tok(L, 1);
    return push_id(L, hb_tokenizer_token_to_id(tok, luaL_checkstring(L, 2)));
}
static int m_save(lua_State *L) {
    hb_tokenizer_t *tok = check_tok(L, 1);
    const char *path = luaL_checkstring(L, 2);
    char err[512] = "";
    if (hb_tokenizer_save(tok, path, err, sizeof err)) return luaL_error(L, "save: %s", msg(err));
    return 0;
}
static int m_set_parse_special(lua_State *L) {
    hb_tokenizer_t *tok = check_tok(L, 1);
    hb_tokenizer_set_parse_special(tok, lua_toboolean(L, 2));
    lua_settop(L, 1);
    return 1;
}
static int m_tostring(lua_State *L) {
    ltok_t *u = luaL_checkudata(L, 1, TOKENIZER_MT);
    if (!u->tok) lua_pushstring(L, "hyblua.Tokenizer (released)");
    else
        lua_pushfstring(L, "hyblua.Tokenizer(%s, vocab %I)", hb_tokenizer_kind(u->tok),
                        (lua_Integer)hb_tokenizer_vocab_size(u->tok));
    return 1;
}

static const luaL_Reg methods[] = {
    {"encode", m_encode}, {"encode_table", m_encode_table}, {"decode", m_decode}, {"vocab_size", m_vocab_size},
    {"kind", m_kind}, {"bos_id", m_bos_id}, {"eos_id", m_eos_id}, {"id_to_token", m_id_to_token},
    {"token_to_id", m_token_to_id}, {"save", m_save}, {"set_parse_special", m_set_parse_special},
    {"close", t_release}, {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", t_release}, {"__close", t_release}, {"__tostring", m_tostring}, {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"byte", l_byte}, {"gpt2", l_gpt2}, {"load", l_load}, {"train_bpe", l_train_bpe}, {NULL, NULL}};

/* hb.tokenizer (expects the module table on top). */
void lhb_open_tokenizer(lua_State *L) {
    luaL_newmetatable(L, TOKENIZER_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, functions);
    lua_setfield(L, -2, "tokenizer");
}
