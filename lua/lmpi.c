/* lmpi.c — hb.mpi: the message-passing primitives behind data-parallel training (docs/distributed.md).
 *
 * Compiled only by `make MPI=1` into ./hyblua-mpi (objects in build-mpi/); the default ./hyblua never
 * includes mpi.h nor links libmpi, and there hb.mpi is nil. The Lua side (lua/hyblua/dist.lua, train.lua)
 * turns that into "this hyblua was built without MPI; rebuild with make MPI=1".
 *
 * Design:
 *  - MPI is initialised on demand by hb.mpi.init() (MPI_THREAD_FUNNELED: only the Lua thread calls MPI;
 *    the core's thread pool never does), on a duplicate of MPI_COMM_WORLD with MPI_ERRORS_ARE_FATAL, so
 *    a failed collective ends the job instead of returning an error code nobody checks.
 *  - A Lua error that ends the script on one rank must not leave the others blocked in a collective:
 *    init registers registry["hyblua.on_fatal"], which lua/main.c calls with the message before it exits,
 *    and which calls MPI_Abort. MPI_Finalize runs when the Lua state closes (a sentinel's __gc). init
 *    also wraps os.exit, which skips both: a failing status aborts the job, a successful one finalises.
 *  - Gradients are averaged by hb.mpi.allreduce_grads: the float32 .grad of every parameter, flattened
 *    in list order into buckets of bucket_bytes, one blocking MPI_Allreduce per bucket (in place on a
 *    staging buffer), unpacked and scaled by 1/N. No overlap with the backward pass: hb_backward is one C
 *    call with no per-parameter hook, and Open MPI's shared-memory and TCP transports progress a
 *    non-blocking collective only inside MPI calls, so there is nothing to overlap it with.
 *  - Weights are compared across ranks by an exact 64-bit hash of their bits (hb.mpi.checksum) which
 *    hb.mpi.allgather_int collects; any differing bit shows.
 * Every function checks its arguments before allocating and releases what it allocated before raising.
 */
#include "lhyblua.h"
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static MPI_Comm comm = MPI_COMM_NULL; /* our duplicate of MPI_COMM_WORLD; NULL until init */
static int mpi_rank = 0, mpi_size = 1, local_rank = 0, local_size = 1;
static int we_initialised = 0;       /* MPI_Init was ours, so MPI_Finalize is ours too */

#define CHUNK (1 << 28)              /* elements per MPI call: counts are ints */

static void need_init(lua_State *L, const char *fn) {
    if (comm == MPI_COMM_NULL) luaL_error(L, "hb.mpi.%s: MPI is not initialised; call hb.mpi.init() first", fn);
}

static MPI_Datatype mpi_type(hb_dtype_t dt) {
    switch (dt) {
    case HB_F32: return MPI_FLOAT;
    case HB_F64: return MPI_DOUBLE;
    case HB_I64: return MPI_INT64_T;
    default: return MPI_INT32_T;
    }
}

/* "sum" | "avg" | "max" | "min" at arg → MPI op; *avg = 1 for "avg" (a sum scaled by 1/N afterwards) */
static MPI_Op check_op(lua_State *L, int arg, const char *def, int *avg) {
    static const char *const names[] = {"sum", "avg", "max", "min", NULL};
    int i = luaL_checkoption(L, arg, def, names);
    *avg = i == 1;
    return i == 2 ? MPI_MAX : i == 3 ? MPI_MIN : MPI_SUM;
}

/* ---- life cycle ----------------------------------------------------------------------------------- */
static void finalize_once(void) {
    if (comm == MPI_COMM_NULL) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) {
        MPI_Comm_free(&comm);
        if (we_initialised) MPI_Finalize();
    }
    comm = MPI_COMM_NULL;
}

static int sentinel_gc(lua_State *L) {
    (void)L;
    finalize_once();
    return 0;
}

/* registry["hyblua.on_fatal"](msg): lua/main.c calls it when an error ends a non-interactive run */
static int on_fatal(lua_State *L) {
    (void)L;
    if (comm == MPI_COMM_NULL) return 0;
    fprintf(stderr, "hyblua-mpi: rank %d of %d stopped on the error above; aborting all ranks\n", mpi_rank, mpi_size);
    fflush(stderr);
    MPI_Abort(comm, 1);
    return 0;
}

/* os.exit([code [, close]]) once MPI is up: exit(1) on one rank while the others wait in a collective
 * would hang them (and MPI_Finalize is collective), so a failing code aborts; success finalises first */
static int wrapped_exit(lua_State *L) {
    int ok = lua_isnoneornil(L, 1) || (lua_isboolean(L, 1) ? lua_toboolean(L, 1) : lua_tointeger(L, 1) == 0);
    if (comm != MPI_COMM_NULL && !ok) {
        fprintf(stderr, "hyblua-mpi: rank %d of %d called os.exit with a failure status; aborting all ranks\n",
                mpi_rank, mpi_size);
        fflush(stderr);
        MPI_Abort(comm, lua_isboolean(L, 1) ? 1 : (int)lua_tointeger(L, 1));
    }
    finalize_once();
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 0);
    return 0;
}

static void push_info(lua_State *L) {
    char host[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(host, &len);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, mpi_rank), lua_setfield(L, -2, "rank");
    lua_pushinteger(L, mpi_size), lua_setfield(L, -2, "size");
    lua_pushinteger(L, local_rank), lua_setfield(L, -2, "local_rank");
    lua_pushinteger(L, local_size), lua_setfield(L, -2, "local_size");
    lua_pushlstring(L, host, (size_t)len), lua_setfield(L, -2, "host");
}

/* hb.mpi.init() → {rank=, size=, local_rank=, local_size=, host=}; idempotent */
static int l_init(lua_State *L) {
    if (comm != MPI_COMM_NULL) {
        push_info(L);
        return 1;
    }
    int flag = 0, fin = 0;
    MPI_Finalized(&fin);
    if (fin) return luaL_error(L, "hb.mpi.init: MPI was already finalised in this process");
    MPI_Initialized(&flag);
    if (!flag) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return luaL_error(L, "hb.mpi.init: MPI_Init_thread failed");
        we_initialised = 1;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(comm, &mpi_rank);
    MPI_Comm_size(comm, &mpi_size);
    MPI_Comm node;
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, mpi_rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_size(node, &local_size);
    MPI_Comm_free(&node);
    /* finalise when the Lua state closes; abort the job when an error ends the script */
    lua_newuserdatauv(L, 1, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, sentinel_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "hyblua.mpi_sentinel");
    lua_pushcfunction(L, on_fatal);
    lua_setfield(L, LUA_REGISTRYINDEX, "hyblua.on_fatal");
    if (lua_getglobal(L, "os") == LUA_TTABLE) {
        if (lua_getfield(L, -1, "exit") == LUA_TFUNCTION) {
            lua_pushcclosure(L, wrapped_exit, 1);
            lua_setfield(L, -2, "exit");
        } else lua_pop(L, 1);
    }
    lua_pop(L, 1);
    push_info(L);
    return 1;
}

/* hb.mpi.finalize(): every rank must call it (or let the process end normally) */
static int l_finalize(lua_State *L) {
    (void)L;
    finalize_once();
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "hyblua.on_fatal");
    return 0;
}
static int l_initialized(lua_State *L) {
    lua_pushboolean(L, comm != MPI_COMM_NULL);
    return 1;
}
static int l_rank(lua_State *L) {
    need_init(L, "rank");
    lua_pushinteger(L, mpi_rank);
    return 1;
}
static int l_size(lua_State *L) {
    need_init(L, "size");
    lua_pushinteger(L, mpi_size);
    return 1;
}
static int l_barrier(lua_State *L) {
    need_init(L, "barrier");
    MPI_Barrier(comm);
    return 0;
}
static int l_wtime(lua_State *L) {
    lua_pushnumber(L, MPI_Wtime());
    return 1;
}
/* hb.mpi.abort(msg [, code=1]): print "rank r of N: msg" and end every rank of the job */
static int l_abort(lua_State *L) {
    const char *msg = luaL_optstring(L, 1, "aborted");
    lua_Integer code = luaL_optinteger(L, 2, 1);
    need_init(L, "abort");
    fprintf(stderr, "hyblua-mpi: rank %d of %d: %s\n", mpi_rank, mpi_size, msg);
    fflush(stderr);
    MPI_Abort(comm, (int)(code > 0 && code < 256 ? code : 1));
    return 0;
}

/* ---- tensors ------------------------------------------------------------------------------------- */
static hb_tensor_t *check_contig(lua_State *L, int arg, const char *fn) {
    hb_tensor_t *t = lhb_check_tensor(L, arg);
    if (!hb_is_contiguous(t)) luaL_error(L, "hb.mpi.%s: the tensor must be contiguous (call :contiguous())", fn);
    return t;
}

static void scale(hb_tensor_t *t, double s) {
    int64_t n = hb_numel(t);
    if (t->dtype == HB_F32) {
        float *p = hb_data(t), f = (float)s;
        for (int64_t i = 0; i < n; i++) p[i] *= f;
    } else if (t->dtype == HB_F64) {
        double *p = hb_data(t);
        for (int64_t i = 0; i < n; i++) p[i] *= s;
    }
}

/* hb.mpi.allreduce(t [, op="sum"]) → seconds: in place over a contiguous tensor, every rank the same shape */
static int l_allreduce(lua_State *L) {
    hb_tensor_t *t = check_contig(L, 1, "allreduce");
    int avg;
    MPI_Op op = check_op(L, 2, "sum", &avg);
    need_init(L, "allreduce");
    if (avg && !hb_dtype_is_float(t->dtype)) return luaL_error(L, "hb.mpi.allreduce: 'avg' needs a float tensor");
    double t0 = MPI_Wtime();
    int64_t n = hb_numel(t);
    size_t es = hb_dtype_size(t->dtype);
    hb_tensor_bump_version(t);
    char *p = hb_data(t);
    for (int64_t off = 0; off < n; off += CHUNK) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        MPI_Allreduce(MPI_IN_PLACE, p + off * (int64_t)es, cnt, mpi_type(t->dtype), op, comm);
    }
    if (avg) scale(t, 1.0 / mpi_size);
    lua_pushnumber(L, MPI_Wtime() - t0);
    return 1;
}

/* hb.mpi.bcast(t [, root=0]): in place; every rank the same shape and dtype */
static int l_bcast(lua_State *L) {
    hb_tensor_t *t = check_contig(L, 1, "bcast");
    lua_Integer root = luaL_optinteger(L, 2, 0);
    need_init(L, "bcast");
    if (root < 0 || root >= mpi_size) return luaL_argerror(L, 2, "root is not a rank");
    int64_t n = hb_numel(t);
    size_t es = hb_dtype_size(t->dtype);
    hb_tensor_bump_version(t);
    char *p = hb_data(t);
    for (int64_t off = 0; off < n; off += CHUNK) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        MPI_Bcast(p + off * (int64_t)es, cnt, mpi_type(t->dtype), (int)root, comm);
    }
    return 0;
}

/* hb.mpi.bcast_string(s | nil [, root=0]) → root's string on every rank */
static int l_bcast_string(lua_State *L) {
    lua_Integer root = luaL_optinteger(L, 2, 0);
    need_init(L, "bcast_string");
    if (root < 0 || root >= mpi_size) return luaL_argerror(L, 2, "root is not a rank");
    size_t len = 0;
    const char *s = mpi_rank == root ? luaL_checklstring(L, 1, &len) : NULL;
    if (len > INT_MAX) return luaL_argerror(L, 1, "string too long");
    long long n = (long long)len;
    MPI_Bcast(&n, 1, MPI_LONG_LONG, (int)root, comm);
    if (mpi_rank == root) {
        MPI_Bcast((void *)s, (int)n, MPI_CHAR, (int)root, comm);
        lua_pushvalue(L, 1);
        return 1;
    }
    luaL_Buffer b;
    char *buf = luaL_buffinitsize(L, &b, (size_t)n);
    MPI_Bcast(buf, (int)n, MPI_CHAR, (int)root, comm);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* hb.mpi.allreduce_values({x1, x2, ...} [, op="sum"]) → {...}: numbers (as doubles) */
static int l_allreduce_values(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int avg;
    MPI_Op op = check_op(L, 2, "sum", &avg);
    need_init(L, "allreduce_values");
    lua_Integer n = luaL_len(L, 1);
    if (n < 1 || n > 4096) return luaL_argerror(L, 1, "expected a list of 1..4096 numbers");
    double v[4096];
    for (lua_Integer i = 0; i < n; i++) {
        lua_geti(L, 1, i + 1);
        int isnum;
        v[i] = lua_tonumberx(L, -1, &isnum);
        if (!isnum) return luaL_error(L, "hb.mpi.allreduce_values: element %d is a %s, expected a number", (int)i + 1,
                                      luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, op, comm);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_pushnumber(L, avg ? v[i] / mpi_size : v[i]);
        lua_seti(L, -2, i + 1);
    }
    return 1;
}

/* hb.mpi.allgather_int(x) → {x of rank 0, x of rank 1, ...} (64-bit integers) */
static int l_allgather_int(lua_State *L) {
    lua_Integer x = luaL_checkinteger(L, 1);
    need_init(L, "allgather_int");
    int64_t mine = (int64_t)x;
    int64_t *all = lua_newuserdatauv(L, sizeof *all * (size_t)mpi_size, 0); /* collected by Lua */
    MPI_Allgather(&mine, 1, MPI_INT64_T, all, 1, MPI_INT64_T, comm);
    lua_createtable(L, mpi_size, 0);
    for (int r = 0; r < mpi_size; r++) {
        lua_pushinteger(L, (lua_Integer)all[r]);
        lua_seti(L, -2, r + 1);
    }
    return 1;
}

/* The parameter list at arg: n tensors into ps (raises on a non-tensor) */
static int check_list(lua_State *L, int arg, const char *fn, hb_tensor_t **ps, int max) {
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_Integer n = luaL_len(L, arg);
    if (n < 0 || n > max) luaL_error(L, "hb.mpi.%s: expected a list of at most %d tensors", fn, max);
    for (int i = 0; i < (int)n; i++) {
        lua_geti(L, arg, i + 1);
        ps[i] = lhb_test_tensor(L, -1);
        if (!ps[i]) luaL_error(L, "hb.mpi.%s: element %d is a %s, expected a tensor", fn, i + 1, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    return (int)n;
}

#define MAXP 65536

/* hb.mpi.checksum(tensors) → integer: a 64-bit hash of every tensor's bytes, in list order. Local (no
 * communication); equal on two ranks only if every bit of every tensor is. */
static int l_checksum(lua_State *L) {
    static hb_tensor_t *ps[MAXP];
    int n = check_list(L, 1, "checksum", ps, MAXP);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n; i++) {
        hb_tensor_t *c = hb_contiguous(ps[i]);
        if (!c) return luaL_error(L, "hb.mpi.checksum: %s", hb_errmsg());
        size_t nb = (size_t)hb_numel(c) * hb_dtype_size(c->dtype);
        const unsigned char *p = hb_data(c);
        size_t w = nb / 4;
        for (size_t k = 0; k < w; k++) { /* FNV-1a over 32-bit words, then the tail bytes */
            uint32_t x;
            memcpy(&x, p + 4 * k, 4);
            h = (h ^ x) * 0x100000001b3ull;
        }
        for (size_t k = 4 * w; k < nb; k++) h = (h ^ p[k]) * 0x100000001b3ull;
        h = (h ^ (uint64_t)nb) * 0x100000001b3ull; /* tensor boundaries count */
        hb_tensor_free(c);
    }
    lua_pushinteger(L, (lua_Integer)h);
    return 1;
}

/* hb.mpi.allreduce_grads(params, bucket_bytes [, op="avg"]) → comm_seconds, total_seconds, bytes, buckets
 *
 * Reduces the float32 .grad of every parameter in place across ranks. A parameter whose .grad is nil
 * on every rank is left alone (as AdamW skips it); one that has a gradient on some rank only gets a
 * zero gradient elsewhere first. Non-contiguous gradients are replaced by contiguous copies. Every rank
 * must pass the same parameters in the same order. comm_seconds is the time inside MPI_Allreduce
 * (which includes waiting for the slowest rank), total_seconds adds packing and unpacking. */
static int l_allreduce_grads(lua_State *L) {
    static hb_tensor_t *ps[MAXP];
    static int present[MAXP];
    int n = check_list(L, 1, "allreduce_grads", ps, MAXP);
    lua_Integer bucket_bytes = luaL_checkinteger(L, 2);
    int avg;
    MPI_Op op = check_op(L, 3, "avg", &avg);
    need_init(L, "allreduce_grads");
    if (op != MPI_SUM) return luaL_argerror(L, 3, "gradients are reduced with 'sum' or 'avg'");
    if (bucket_bytes < 4096 || bucket_bytes > ((lua_Integer)1 << 31))
        return luaL_argerror(L, 2, "bucket size must be in 4 KiB .. 2 GiB");
    for (int i = 0; i < n; i++) {
        if (ps[i]->dtype != HB_F32) return luaL_error(L, "hb.mpi.allreduce_grads: parameter %d is %s; only float32 is supported", i + 1, hb_dtype_name(ps[i]->dtype));
        if (ps[i]->grad && (ps[i]->grad->dtype != HB_F32 || hb_numel(ps[i]->grad) != hb_numel(ps[i])))
            return luaL_error(L, "hb.mpi.allreduce_grads: the gradient of parameter %d does not match it", i + 1);
    }
    double t0 = MPI_Wtime(), comm_s = 0;
    /* which parameters have a gradient somewhere */
    for (int i = 0; i < n; i++) present[i] = ps[i]->grad != NULL;
    double tc = MPI_Wtime();
    if (n > 0) MPI_Allreduce(MPI_IN_PLACE, present, n, MPI_INT, MPI_SUM, comm);
    comm_s += MPI_Wtime() - tc;
    for (int i = 0; i < n; i++) {
        hb_tensor_t *p = ps[i], *g = p->grad;
        if (!present[i]) continue;
        if (!g) g = hb_tensor_zeros(HB_F32, p->ndim, p->size);
        else if (!hb_is_contiguous(g)) g = hb_contiguous(g);
        else continue;
        if (!g) return luaL_error(L, "hb.mpi.allreduce_grads: %s", hb_errmsg());
        hb_tensor_free(p->grad);
        p->grad = g;
    }
    for (int i = 0; i < n; i++)
        if (present[i]) hb_tensor_bump_version(ps[i]->grad);   /* the unpacking below writes them */
    int64_t cap = bucket_bytes / (lua_Integer)sizeof(float);
    if (cap > CHUNK) cap = CHUNK;
    float *buf = malloc((size_t)cap * sizeof(float));
    if (!buf) return luaL_error(L, "hb.mpi.allreduce_grads: cannot allocate a %lld-byte bucket", (long long)bucket_bytes);
    const float s = avg ? 1.0f / (float)mpi_size : 1.0f;
    int64_t total = 0, buckets = 0;
    /* walk (param i, offset off) through all gradients; a bucket spans [start, end) of that walk */
    int i0 = 0;
    int64_t off0 = 0;
    while (i0 < n) {
        if (!present[i0] || off0 >= hb_numel(ps[i0])) { i0++, off0 = 0; continue; }
        /* pack */
        int64_t used = 0;
        int i = i0;
        int64_t off = off0;
        while (i < n && used < cap) {
            if (!present[i]) { i++; continue; }
            int64_t len = hb_numel(ps[i]) - off, room = cap - used;
            if (len > room) len = room;
            memcpy(buf + used, (float *)hb_data(ps[i]->grad) + off, (size_t)len * sizeof(float));
            used += len, off += len;
            if (off >= hb_numel(ps[i])) i++, off = 0;
        }
        tc = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)used, MPI_FLOAT, MPI_SUM, comm);
        comm_s += MPI_Wtime() - tc;
        /* unpack the same walk */
        int64_t pos = 0;
        while (pos < used) {
            if (!present[i0] || off0 >= hb_numel(ps[i0])) { i0++, off0 = 0; continue; }
            int64_t len = hb_numel(ps[i0]) - off0;
            if (len > used - pos) len = used - pos;
            float *g = (float *)hb_data(ps[i0]->grad) + off0;
            for (int64_t k = 0; k < len; k++) g[k] = buf[pos + k] * s;
            pos += len, off0 += len;
        }
        total += used;
        buckets++;
    }
    free(buf);
    lua_pushnumber(L, comm_s);
    lua_pushnumber(L, MPI_Wtime() - t0);
    lua_pushinteger(L, total * (int64_t)sizeof(float));
    lua_pushinteger(L, buckets);
    return 4;
}

static const luaL_Reg mpi_funcs[] = {
    {"init", l_init}, {"finalize", l_finalize}, {"initialized", l_initialized}, {"rank", l_rank}, {"size", l_size},
    {"barrier", l_barrier}, {"wtime", l_wtime}, {"abort", l_abort}, {"allreduce", l_allreduce}, {"bcast", l_bcast},
    {"bcast_string", l_bcast_string}, {"allreduce_values", l_allreduce_values}, {"allgather_int", l_allgather_int},
    {"checksum", l_checksum}, {"allreduce_grads", l_allreduce_grads}, {NULL, NULL}};

void lhb_open_mpi(lua_State *L) {
    lua_newtable(L);
    luaL_setfuncs(L, mpi_funcs, 0);
    int major = 0, minor = 0;
    MPI_Get_version(&major, &minor);
    lua_pushfstring(L, "MPI %d.%d", major, minor);
    lua_setfield(L, -2, "version");
    lua_setfield(L, -2, "mpi");
}
