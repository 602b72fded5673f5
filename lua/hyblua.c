/* hyblua.c — luaopen_hyblua: builds the module table from the C binding files, then runs the Lua part
 * of the library (lua/hyblua/init.lua), which adds models, mixers, schedules, training and evaluation.
 *
 * The Lua library is found on package.path; the executable prepends the source tree's lua/ directory
 * (HB_LUADIR, fixed at build time) and HYBLUA_PATH if set, so `require "hyblua"` works from any
 * directory without installation.
 */
#include "hyblua.h"
#include "../kernels/alloc.h"
#include "../kernels/kgemm.h"
#include "../kernels/parallel.h"
#include "lhyblua.h"
#include "../core/interrupt.h"
#include <fcntl.h>
#include <time.h>
#include <stdio.h>
#include <unistd.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

static int l_set_num_threads(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > 256) return luaL_argerror(L, 1, "thread count must be in 1..256");
    hb_threads_set((int)n);
    return 0;
}
static int l_get_num_threads(lua_State *L) {
    lua_pushinteger(L, hb_threads_get());
    return 1;
}
/* hb.blas_corename() → OpenBLAS's kernels ("SkylakeX", "Haswell", …): benchmarks print it */
static int l_blas_corename(lua_State *L) {
    lua_pushstring(L, hb_blas_corename());
    return 1;
}
/* hb.kgemm_path() → "own" | "own-small" | "blas", and the own kernel compiled in ("avx512" | "avx2" | "none"):
 * where the mixer kernels' small block products run (kernels/kgemm.h; "own-small": products up to 64³ on the
 * own kernel, larger ones on OpenBLAS) */
static int l_kgemm_path(lua_State *L) {
    const int own = hb_kgemm_own();
    lua_pushstring(L, own == 2 ? "own-small" : own ? "own" : "blas");
    lua_pushstring(L, hb_kgemm_isa());
    return 2;
}
const char *hyblua_blas_coretype_hint(void) { return hb_blas_coretype_hint(); }

/* hb.pool_stats() → {regions, region_s, sim_s, items_s, simulated, threads}: kernels/parallel.h's accounting
   of the thread pool's regions since the start (the bench's scaling section diffs two readings) */
static int l_pool_stats(lua_State *L) {
    hb_pool_stats_t st;
    hb_pool_stats(&st);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, st.regions);
    lua_setfield(L, -2, "regions");
    lua_pushnumber(L, st.region_s);
    lua_setfield(L, -2, "region_s");
    lua_pushnumber(L, st.sim_s);
    lua_setfield(L, -2, "sim_s");
    lua_pushnumber(L, st.items_s);
    lua_setfield(L, -2, "items_s");
    lua_pushboolean(L, st.simulated);
    lua_setfield(L, -2, "simulated");
    lua_pushinteger(L, st.threads);
    lua_setfield(L, -2, "threads");
    return 1;
}
/* hb.set_matmul_precision("fp32" | "bf16") / hb.matmul_precision(): core/linalg.h's global setting. */
static const char *const mm_names[] = {"fp32", "bf16", NULL};
static int l_set_matmul_precision(lua_State *L) {
    const char *s = luaL_checkstring(L, 1);
    for (int i = 0; mm_names[i]; i++)
        if (!strcmp(s, mm_names[i])) {
            hb_set_matmul_precision(i == 0 ? HB_MM_FP32 : HB_MM_BF16);
            return 0;
        }
    return luaL_error(L, "set_matmul_precision: unknown precision '%s' (expected \"fp32\" or \"bf16\")", s);
}
static int l_matmul_precision(lua_State *L) {
    lua_pushstring(L, mm_names[hb_matmul_precision() == HB_MM_BF16 ? 1 : 0]);
    return 1;
}
static int l_cat(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)luaL_len(L, 1);
    if (n < 1 || n > 4096) return luaL_argerror(L, 1, "expected a list of 1..4096 tensors");
    hb_tensor_t *ts[4096];
    for (int i = 0; i < n; i++) {
        lua_geti(L, 1, i + 1);
        ts[i] = lhb_test_tensor(L, -1);
        if (!ts[i]) return luaL_error(L, "hb.cat: element %d is a %s, expected a tensor", i + 1, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    int d = lua_isnoneornil(L, 2) ? 0 : lhb_dim(L, 2, ts[0]->ndim);
    hb_tensor_t *r = hb_cat(n, ts, d);
    if (!r) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, r);
    return 1;
}
static int l_where(lua_State *L) {
    hb_tensor_t *r = hb_where(lhb_check_tensor(L, 1), lhb_check_tensor(L, 2), lhb_check_tensor(L, 3));
    if (!r) return luaL_error(L, "%s", hb_errmsg());
    lhb_push_tensor(L, r);
    return 1;
}
static int l_mem(lua_State *L) {
    lua_pushinteger(L, hb_alloc_bytes());
    return 1;
}
static int l_memory_stats(lua_State *L) {
    hb_memory_stats_t m;
    hb_memory_stats(&m);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, m.live); lua_setfield(L, -2, "live");
    lua_pushinteger(L, m.peak); lua_setfield(L, -2, "peak");
    lua_pushinteger(L, m.cached); lua_setfield(L, -2, "cached");
    lua_pushinteger(L, m.cache_limit); lua_setfield(L, -2, "cache_limit");
    lua_pushinteger(L, m.cache_hits); lua_setfield(L, -2, "cache_hits");
    lua_pushinteger(L, m.cache_misses); lua_setfield(L, -2, "cache_misses");
    lua_pushinteger(L, m.cached_small); lua_setfield(L, -2, "cached_small");
    return 1;
}
static int l_release_cache(lua_State *L) {
    lua_pushinteger(L, hb_block_cache_release());
    return 1;
}
/* hb.set_cache_limit(MiB) / hb.set_cache_limit(nil): the default */
static int l_set_cache_limit(lua_State *L) {
    if (lua_isnoneornil(L, 1)) {
        hb_block_cache_set_limit(-1);
        return 0;
    }
    lua_Integer mb = luaL_checkinteger(L, 1);
    luaL_argcheck(L, mb >= 0 && mb <= ((lua_Integer)1 << 40), 1, "the block cache limit in MiB must be between 0 and 2^40");
    hb_block_cache_set_limit((int64_t)mb << 20);
    return 0;
}

typedef struct {
    void *p;
    void (*release)(void *);
} guard_t;

static int guard_gc(lua_State *L) {
    guard_t *g = lua_touserdata(L, 1);
    if (g->p && g->release) g->release(g->p);
    g->p = NULL;
    return 0;
}

void **lhb_guard(lua_State *L, void (*release)(void *)) {
    guard_t *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->p = NULL;
    g->release = release;
    if (luaL_newmetatable(L, "hyblua.Guard")) {
        lua_pushcfunction(L, guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return &g->p;
}

/* hb.interrupted() — has Ctrl-C been pressed (and not yet handled)? */
static int l_interrupted(lua_State *L) {
    lua_pushboolean(L, hb_interrupted());
    return 1;
}
/* hb.defer_interrupts(on) → previous: while on, Ctrl-C only sets hb.interrupted() */
static int l_defer_interrupts(lua_State *L) {
    lua_pushboolean(L, hb_interrupt_defer(lua_toboolean(L, 1)));
    return 1;
}
/* hb.now() — monotonic wall-clock seconds (for timing; never for anything that affects results) */
static int l_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
    return 1;
}
/* hb.thread_time() — CPU seconds used by the calling thread (CLOCK_THREAD_CPUTIME_ID): on a loaded machine,
   the time a single-threaded run (e.g. the pool's simulation mode) took, without the time it waited */
static int l_thread_time(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
    return 1;
}
/* hb.sleep(seconds) — unlike os.execute("sleep"), keeps Ctrl-C deliverable to this process */
static int l_sleep(lua_State *L) {
    double s = luaL_checknumber(L, 1);
    if (s > 0) {
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return 0;
}
/* hb.isatty(fd) — 0 stdin, 1 stdout, 2 stderr */
static int l_isatty(lua_State *L) {
    lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 2)));
    return 1;
}
/* hb.get_rng_state() → hex string; hb.set_rng_state(s) — the global generator behind randn etc. */
static int l_get_rng_state(lua_State *L) {
    hb_rng_t *r = hb_rng_global();
    char buf[128];
    snprintf(buf, sizeof buf, "%016llx%016llx%016llx%016llx%d%a", (unsigned long long)r->s[0], (unsigned long long)r->s[1],
             (unsigned long long)r->s[2], (unsigned long long)r->s[3], r->has_spare, r->spare);
    lua_pushstring(L, buf);
    return 1;
}
static int l_set_rng_state(lua_State *L) {
    const char *s = luaL_checkstring(L, 1);
    hb_rng_t r;
    unsigned long long a[4];
    int spare;
    double sv;
    if (strlen(s) < 65 || sscanf(s, "%16llx%16llx%16llx%16llx%1d%la", &a[0], &a[1], &a[2], &a[3], &spare, &sv) != 6)
        return luaL_error(L, "set_rng_state: malformed state string");
    for (int i = 0; i < 4; i++) r.s[i] = a[i];
    r.has_spare = spare;
    r.spare = sv;
    *hb_rng_global() = r;
    return 0;
}
/* hb.fsync(path) — flush a file or directory to disk (atomic checkpoint directories) */
static int l_fsync(lua_State *L) {
    const char *p = luaL_checkstring(L, 1);
    int fd = open(p, O_RDONLY);
    if (fd < 0) return luaL_error(L, "fsync: cannot open %s", p);
    int rc = fsync(fd);
    close(fd);
    if (rc) return luaL_error(L, "fsync: %s failed", p);
    return 0;
}

static const luaL_Reg funcs[] = {{"interrupted", l_interrupted}, {"now", l_now}, {"thread_time", l_thread_time}, {"sleep", l_sleep}, {"defer_interrupts", l_defer_interrupts},
                                 {"isatty", l_isatty}, {"get_rng_state", l_get_rng_state},
                                 {"set_rng_state", l_set_rng_state}, {"fsync", l_fsync},{"set_num_threads", l_set_num_threads}, {"get_num_threads", l_get_num_threads}, {"pool_stats", l_pool_stats}, {"blas_corename", l_blas_corename}, {"kgemm_path", l_kgemm_path},
                                 {"set_matmul_precision", l_set_matmul_precision}, {"matmul_precision", l_matmul_precision},
                                 {"cat", l_cat}, {"where", l_where}, {"tensor_bytes", l_mem},
                                 {"memory_stats", l_memory_stats}, {"release_cache", l_release_cache},
                                 {"set_cache_limit", l_set_cache_limit}, {NULL, NULL}};

#ifndef HB_LUADIR
#define HB_LUADIR "lua"
#endif

/* Prepend $HYBLUA_PATH (if set) and the build-time HB_LUADIR to package.path, once. */
static void setup_path(lua_State *L) {
    const char *env = getenv("HYBLUA_PATH");
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *old = lua_tostring(L, -1);
    if (!old || !strstr(old, HB_LUADIR "/?.lua")) {
        lua_pushfstring(L, "%s%s" HB_LUADIR "/?.lua;" HB_LUADIR "/?/init.lua;%s", env ? env : "", env ? ";" : "",
                        old ? old : "");
        lua_setfield(L, -3, "path");
    }
    lua_pop(L, 2);
}

int luaopen_hyblua(lua_State *L) {
    hb_malloc_policy(); /* large buffers recycled on the heap (kernels/alloc.h) */
    setup_path(L);
    lua_newtable(L);
    lhb_open_tensor(L);
    luaL_setfuncs(L, funcs, 0);
    lhb_open_nn(L);
    lhb_open_mixers(L);
    lhb_open_io(L);
    lhb_open_config(L);
    lhb_open_tokenizer(L);
    lhb_open_data(L);
    lhb_open_proc(L);
#ifdef HB_MPI
    lhb_open_mpi(L); /* hb.mpi, only in ./hyblua-mpi (make MPI=1) */
#endif
    lua_pushstring(L, HB_VERSION);
    lua_setfield(L, -2, "version");
    /* hand the table to the Lua half: the Lua modules `require "hyblua.binding"` to reach it (it is
     * not yet package.loaded["hyblua"]), and lua/hyblua/init.lua adds their tables to it. A module that
     * is missing or fails to load raises here, so `require "hyblua"` fails with its message. */
    int hb = lua_gettop(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, hb);
    lua_setfield(L, -2, "hyblua.binding");
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushstring(L, "hyblua.init");
    lua_call(L, 1, 0);
    lua_settop(L, hb);
    return 1;
}
