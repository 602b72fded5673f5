/* lmixer.c — hb.<name>{...} and hb.<name>_step{...} for every registered token mixer.
 *
 * One binding for all mixers: the names of the keyword arguments come from the kernel descriptor
 * (kernels/mixer.h) — its tensor inputs and scalars — plus, for the full-sequence call, `mode`
 * ("chunk" | "recurrent"), `chunk` (only for mixers with a chunk length), `state` (true: also return
 * the final recurrent state, to prefill a decode cache) and `cu_seqlens` (packed documents, fla's
 * convention: an int64 tensor or a list of integers [N+1] over the T tokens of a batch of one row; the
 * states are then [N, ...]). The step call takes `state` (the decode state, updated in place) and returns
 * the step's output. Shapes, dtypes and defaults are checked by core/mixer_op.c; this file only turns a
 * table into its arguments.
 *
 *   hb.gla{q = q, k = k, v = v, g = g, scale = K ^ -0.5, mode = "chunk", chunk = 64, state = false,
 *          cu_seqlens = nil} → o [, S]
 *   hb.gla_step{state = S, q = q1, k = k1, v = v1, g = g1, scale = K ^ -0.5} → o1
 */
#include "../core/mixer_op.h"
#include "../kernels/mixer_registry.h"
#include "lhyblua.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAXKEYS (HB_MIXER_MAXIN + HB_MIXER_MAXSCALAR + 5)

/* The keyword names of d's full-sequence call (step = 0) or of its step (step = 1), NULL-terminated. */
static void keys_of(const hb_mixer_desc_t *d, int step, const char **keys) {
    int n = 0;
    if (step) keys[n++] = "state";
    for (int i = 0; i < hb_mixer_nin(d); i++) keys[n++] = d->in[i].name;
    for (int i = 0; i < hb_mixer_nscalar(d); i++) keys[n++] = d->scalar[i].name;
    if (!step) {
        keys[n++] = "mode";
        if (d->chunk > 0) keys[n++] = "chunk";
        keys[n++] = "state";
        keys[n++] = "cu_seqlens";
    }
    keys[n] = NULL;
}

/* Inputs and scalars of d from the table at 1 (scalars not given: NAN, the descriptor's default). */
static void read_inputs(lua_State *L, const char *fn, const hb_mixer_desc_t *d, hb_tensor_t **in, double *scalar) {
    for (int i = 0; i < HB_MIXER_MAXIN; i++) in[i] = NULL;
    for (int i = 0; i < hb_mixer_nin(d); i++) in[i] = lhb_kw_tensor(L, fn, d->in[i].name, !(d->in[i].flags & HB_IN_OPTIONAL));
    for (int i = 0; i < HB_MIXER_MAXSCALAR; i++) scalar[i] = NAN;
    for (int i = 0; i < hb_mixer_nscalar(d); i++) lhb_kw_number(L, fn, d->scalar[i].name, &scalar[i]);
}

static int l_mixer(lua_State *L) {
    const hb_mixer_desc_t *d = lua_touserdata(L, lua_upvalueindex(1));
    char fn[64];
    snprintf(fn, sizeof fn, "hb.%s", d->name);
    const char *keys[MAXKEYS];
    keys_of(d, 0, keys);
    lhb_kw_check(L, fn, keys);
    hb_tensor_t *in[HB_MIXER_MAXIN];
    double scalar[HB_MIXER_MAXSCALAR];
    read_inputs(L, fn, d, in, scalar);
    const char *m = lhb_kw_string(L, fn, "mode");
    hb_mode_t mode = HB_MODE_CHUNK;
    if (m && !strcmp(m, "recurrent")) mode = HB_MODE_RECURRENT;
    else if (m && strcmp(m, "chunk")) return luaL_error(L, "%s: mode must be 'chunk' or 'recurrent', got '%s'", fn, m);
    int64_t chunk = 0;
    if (d->chunk > 0 && lhb_kw_integer(L, fn, "chunk", &chunk) && chunk < 1)
        return luaL_error(L, "%s: chunk must be a positive integer, got %I", fn, (lua_Integer)chunk);
    int want_state = lhb_kw_bool(L, fn, "state");
    hb_tensor_t *cu = lhb_kw_seqlens(L, fn, "cu_seqlens"), *ht = NULL;
    hb_tensor_t *o = hb_mixer_packed(d, in, scalar, mode, chunk, cu, want_state ? &ht : NULL);
    if (!o) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, o);
    if (!want_state) return 1;
    lhb_push_tensor(L, ht);
    return 2;
}

static int l_mixer_step(lua_State *L) {
    const hb_mixer_desc_t *d = lua_touserdata(L, lua_upvalueindex(1));
    char fn[64];
    snprintf(fn, sizeof fn, "hb.%s_step", d->name);
    const char *keys[MAXKEYS];
    keys_of(d, 1, keys);
    lhb_kw_check(L, fn, keys);
    hb_tensor_t *state = lhb_kw_tensor(L, fn, "state", 1), *in[HB_MIXER_MAXIN];
    double scalar[HB_MIXER_MAXSCALAR];
    read_inputs(L, fn, d, in, scalar);
    hb_tensor_t *o = hb_mixer_step(d, state, in, scalar);
    if (!o) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, o);
    return 1;
}

void lhb_open_mixers(lua_State *L) {
    for (int i = 0; hb_mixer_registry[i]; i++) {
        const hb_mixer_desc_t *d = hb_mixer_registry[i];
        char name[64];
        lua_pushlightuserdata(L, (void *)d);
        lua_pushcclosure(L, l_mixer, 1);
        lua_setfield(L, -2, d->name);
        snprintf(name, sizeof name, "%s_step", d->name);
        lua_pushlightuserdata(L, (void *)d);
        lua_pushcclosure(L, l_mixer_step, 1);
        lua_setfield(L, -2, name);
    }
}
