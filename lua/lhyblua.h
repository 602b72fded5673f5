/* lhyblua.h — internal interface between the binding files of lua/ (the only C that sees lua_State). */
#ifndef HB_LHYBLUA_H
#define HB_LHYBLUA_H
#include "../core/autograd.h"
#include "../core/linalg.h"
#include "../core/ops.h"
#include "../core/tensor.h"
#include "../core/views.h"
#include <lauxlib.h>
#include <lua.h>

/* Push t as a new userdata that owns the reference (raises the core error if t is NULL). */
void lhb_push_tensor(lua_State *L, hb_tensor_t *t);
/* The tensor at arg i (raises "hyblua.Tensor expected"); lhb_test_tensor returns NULL instead. */
hb_tensor_t *lhb_check_tensor(lua_State *L, int i);
hb_tensor_t *lhb_test_tensor(lua_State *L, int i);
/* 1-based / negative Lua dim at arg → 0-based C dim (raises when out of range). */
int lhb_dim(lua_State *L, int arg, int ndim);
/* Shape from a table or from integer args; returns ndim, *next = first unused arg (may be NULL). */
int lhb_shape(lua_State *L, int arg, int64_t *size, int *next);

/* Push a userdata that owns a C pointer until it is collected: *slot (returned) starts NULL; store the
 * pointer there and release(ptr) runs from __gc unless the slot was cleared first. Lets a binding keep
 * a malloc'd result safe from a Lua error raised while it builds the Lua value. */
void **lhb_guard(lua_State *L, void (*release)(void *));

/* Keyword-table arguments (lkw.c): hb.f{a = ..., b = ...}. fn names the function in messages ("hb.gla").
 * lhb_kw_check raises unless argument 1 is the only argument, a table, with string keys all in `keys`
 * (NULL-terminated): "hb.gla: unknown argument 'gk' (did you mean 'g'?)". The getters read one key:
 * absent (nil) → NULL / 0 (a required tensor raises "hb.gla: missing argument 'q'"), wrong type raises
 * "hb.gla: argument 'scale' must be a number, got string"; number/integer store into *v and return 1
 * when present. Strings and tensors stay owned by the table (argument 1) for the call. */
void lhb_kw_check(lua_State *L, const char *fn, const char *const *keys);
hb_tensor_t *lhb_kw_tensor(lua_State *L, const char *fn, const char *key, int required);
int lhb_kw_number(lua_State *L, const char *fn, const char *key, double *v);
int lhb_kw_integer(lua_State *L, const char *fn, const char *key, int64_t *v);
const char *lhb_kw_string(lua_State *L, const char *fn, const char *key);
int lhb_kw_bool(lua_State *L, const char *fn, const char *key);
/* Packed sequences' cu_seqlens (fla's convention): a hyblua.Tensor (returned as is; the core op checks its
 * dtype and values) or a Lua list of integers, converted to a new int64 tensor left on the stack for the
 * call. lhb_seqlens_at reads stack index idx (`what` names it in messages); lhb_kw_seqlens reads key of
 * the keyword table (NULL when absent). */
hb_tensor_t *lhb_seqlens_at(lua_State *L, int idx, const char *fn, const char *what);
hb_tensor_t *lhb_kw_seqlens(lua_State *L, const char *fn, const char *key);

void lhb_open_tensor(lua_State *L);  /* tensors: metatable + functions into the table on top */
void lhb_open_nn(lua_State *L);      /* nn functions, attention, conv1d (lnn.c) */
void lhb_open_mixers(lua_State *L);  /* hb.<mixer>{...} / hb.<mixer>_step{...} per registered mixer (lmixer.c) */
void lhb_open_io(lua_State *L);      /* hb.io: safetensors, json (lio.c) */
void lhb_open_config(lua_State *L);  /* hb.config: YAML load/decode, atomic text (lconfig.c; after io) */
void lhb_open_tokenizer(lua_State *L); /* hb.tokenizer: byte, GPT-2, HF BPE, BPE training (ltokenizer.c) */
void lhb_open_data(lua_State *L);    /* hb.data: token shards, batches, validation windows (ldata.c) */
void lhb_open_proc(lua_State *L);    /* hb.proc: child processes without a shell, cell locks (lproc.c) */
void lhb_open_mpi(lua_State *L);     /* hb.mpi (lmpi.c): compiled only with make MPI=1, under HB_MPI */
#endif
