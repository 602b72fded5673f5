/* kernels_bench.c — kernel-level throughput of hyblua's token mixers next to OpenBLAS sgemm.
 *
 * Built by tests/bench/run.sh with the Makefile's flags and linked against build/libhbcore.a:
 *   kernels_bench sgemm N REPS                   cblas_sgemm N×N×N, best time → GFLOP/s
 *   kernels_bench train KERNEL T[,T...] D REPS    chunked forward + backward of one mixer at B = 1 (or
 *                                                 HB_BENCH_B, for B·H work items on many threads),
 *                                                 H = 512/D heads (or HB_BENCH_H) of head dim D (K = V = D, or
 *                                                 V = HB_BENCH_V), chunk 64;
 *                                                 best of REPS after a warm-up (no warm-up for T > 1024)
 *                                                 (delta / gdelta: through the mixer entry points, as
 *                                                 training calls them; HB_BENCH_NOWY=1 the public functions;
 *                                                 HB_BENCH_SCATTER=1: inputs rewritten over the pool first)
 *   kernels_bench train+sgemm KERNEL T[,T...] D REPS   the same, with a 1024³ cblas_sgemm timed 3 times right
 *                                                 before and 3 times right after the kernel's repetitions
 *                                                 in the same process (not between them: that would evict
 *                                                 the kernel's working set): sgemm_gflops_best / _median
 *                                                 are measured under the same load as the kernel
 *   kernels_bench decode KERNEL CTX[,CTX...] D REPS  one decode step at context length CTX (B = 1)
 *   kernels_bench gemm TR:M:N:K[,...] REPS        hb_matmul in fp32 (cblas_sgemm split over the pool, what
 *                                                 training runs) and in bf16 (kernels/gemm_bf16.c) on
 *                                                 op(A) (M,K) · op(B) (K,N), TR = NN | NT | TN | TT; the
 *                                                 two alternate REPS times, best time → GFLOP/s each;
 *                                                 then the same product as one cblas_sgemm call
 *                                                 (OpenBLAS's threads: OPENBLAS_NUM_THREADS), gflops_sgemm
 *   kernels_bench blocks P[,P...] REPS            P threads at once (pthreads, not the pool), each running REPS
 *                                                 times the block products of one delta-rule chunk (64×64 and
 *                                                 64×128 blocks, NN / TN / NT, 13 products) on its own operands,
 *                                                 once through cblas_sgemm and once through kgemm's
 *                                                 own kernel (hb_kgemm_f32, hb_kgemm_force(1)): GFLOP/s per thread (mean) and summed, so the
 *                                                 per-thread rate shows what concurrent small products cost
 * KERNEL: gla | retention | delta | gdelta | hgrn | attn | kda | dproduct | dplr | ssd (the last four: issue 13's
 * mixers, set up as their model layers call them: KDA with a per-key-channel log decay g ∈ [−0.2, 0) and
 * l2-normalised q/k; Gated DeltaProduct with NH = 2 Householder steps per token, a forget gate and
 * l2-normalised q/k; DPLR as RWKV-7 calls it, a = −κ, b = κ ⊙ u (κ l2-normalised, u ∈ (0,1)),
 * gk ∈ (−0.6065, 0), scale 1; SSD with G = H groups (one q/k per head) and a scalar log decay per
 * (token, head); HV = H everywhere). Output: one JSON line per call with the best
 * and median seconds of the forward, the backward and both together, and the FLOP counts of the chunked
 * algorithm (formulas in docs/performance.md and below; 2 FLOPs per multiply-add, causal/triangular
 * blocks counted as half, element-wise work not counted). HGRN is element-wise: it reports bytes moved.
 * Threads: the kernels' pool reads HYBLUA_NUM_THREADS, OpenBLAS reads OPENBLAS_NUM_THREADS.
 */
#include "alloc.h"
#include "attention.h"
#include "delta_rule.h"
#include "deltaproduct.h"
#include "dplr.h"
#include "gla.h"
#include "hgrn.h"
#include "kda.h"
#include "parallel.h"
#include "retention.h"
#include "ssd.h"
#include "gemm_bf16.h"
#include "linalg.h"
#include "tensor.h"
#include "views.h"
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include "kgemm.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static double unif(void) { /* xorshift64, uniform in (0,1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static float *buf(int64_t n, double lo, double hi) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (int64_t i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * unif());
    return p;
}
static float *zbuf(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static void l2norm_rows(float *x, int64_t rows, int64_t D) {
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t j = 0; j < D; j++) s += (double)x[r * D + j] * x[r * D + j];
        float inv = (float)(1.0 / sqrt(s + 1e-6));
        for (int64_t j = 0; j < D; j++) x[r * D + j] *= inv;
    }
}
/* the integer in environment variable `name` when it lies in [lo, hi], else def */
static int64_t env_int(const char *name, long lo, long hi, int64_t def) {
    const char *s = getenv(name);
    long v = s ? strtol(s, NULL, 10) : lo - 1;
    return v >= lo && v <= hi ? v : def;
}
/* the batch of `train` runs: 1, or HB_BENCH_B (1..64) */
static int64_t bench_batch(void) { return env_int("HB_BENCH_B", 1, 64, 1); }
/* the value dim of `train` runs: D, or HB_BENCH_V (1..1024; Gated DeltaNet's expand_v = 2 has V = 2K) */
static int64_t bench_vdim(int64_t D) { return env_int("HB_BENCH_V", 1, 1024, D); }
/* the heads of `train` runs at head size D: 512 / D, or HB_BENCH_H (1..64; a training config's B·H work items) */
static int64_t bench_heads(int64_t D) { return env_int("HB_BENCH_H", 1, 64, 512 / D); }
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double med(double *t, int n) {
    double *s = malloc((size_t)n * sizeof *s);
    memcpy(s, t, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}
static double best(double *t, int n) {
    double m = t[0];
    for (int i = 1; i < n; i++) m = t[i] < m ? t[i] : m;
    return m;
}

static int do_sgemm(int64_t N, int reps) {
    float *a = buf(N * N, -1, 1), *b = buf(N * N, -1, 1), *c = zbuf(N * N);
    double *t = malloc((size_t)reps * sizeof *t);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)N, (int)N, 1.f, a, (int)N, b, (int)N, 0.f, c, (int)N);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)N, (int)N, 1.f, a, (int)N, b, (int)N, 0.f, c,
                    (int)N);
        t[r] = now() - t0;
    }
    double fl = 2.0 * N * N * N;
    printf("{\"bench\":\"sgemm\",\"N\":%lld,\"threads\":%d,\"best_s\":%.6g,\"median_s\":%.6g,\"gflops_best\":%.4g,"
           "\"gflops_median\":%.4g}\n",
           (long long)N, hb_threads_get(), best(t, reps), med(t, reps), fl / best(t, reps) / 1e9, fl / med(t, reps) / 1e9);
    free(a); free(b); free(c); free(t);
    return 0;
}

/* A [rows, cols] float32 tensor of uniform(-1, 1) values, or its transpose view when tr (then the
   stored tensor is [cols, rows]). */
static hb_tensor_t *operand(int tr, int64_t rows, int64_t cols) {
    int64_t shape[2] = {tr ? cols : rows, tr ? rows : cols};
    hb_tensor_t *t = hb_tensor_empty(HB_F32, 2, shape);
    if (!t) return NULL;
    float *p = hb_data(t), *r = buf(rows * cols, -1, 1);
    memcpy(p, r, (size_t)(rows * cols) * sizeof(float));
    free(r);
    if (!tr) return t;
    hb_tensor_t *v = hb_transpose(t, 0, 1);
    hb_tensor_free(t);
    return v;
}

static int do_gemm(const char *spec, int reps) {
    char tr[3] = {0};
    long long M, N, K;
    if (sscanf(spec, "%2[NT]:%lld:%lld:%lld", tr, &M, &N, &K) != 4 || strlen(tr) != 2) {
        fprintf(stderr, "kernels_bench gemm: bad shape '%s' (expected e.g. NT:4096:768:256)\n", spec);
        return 2;
    }
    hb_tensor_t *a = operand(tr[0] == 'T', M, K), *b = operand(tr[1] == 'T', K, N);
    if (!a || !b) { fprintf(stderr, "out of memory\n"); return 1; }
    double *t32 = malloc((size_t)reps * sizeof *t32), *t16 = malloc((size_t)reps * sizeof *t16);
    hb_tensor_t *c32 = NULL, *c16 = NULL;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up (thread pool, packing buffers) */
        for (int p = 0; p < 2; p++) {
            hb_set_matmul_precision(p ? HB_MM_BF16 : HB_MM_FP32);
            hb_tensor_t **c = p ? &c16 : &c32;
            hb_tensor_free(*c);
            double t0 = now();
            *c = hb_matmul(a, b);
            double t = now() - t0;
            if (!*c) { fprintf(stderr, "matmul failed: %s\n", hb_errmsg()); return 1; }
            if (r >= 0) (p ? t16 : t32)[r] = t;
        }
    }
    hb_set_matmul_precision(HB_MM_FP32);
    /* the same product as ONE cblas_sgemm call (OpenBLAS's own threads: OPENBLAS_NUM_THREADS), the yardstick of
       hb_matmul's tiling over the pool */
    double *tsg = malloc((size_t)reps * sizeof *tsg);
    float *cs = malloc((size_t)(M * N) * sizeof *cs);
    if (!tsg || !cs) { fprintf(stderr, "out of memory\n"); return 1; }
    for (int r = -1; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, tr[0] == 'T' ? CblasTrans : CblasNoTrans, tr[1] == 'T' ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, 1.f, hb_data(a), tr[0] == 'T' ? (int)M : (int)K, hb_data(b),
                    tr[1] == 'T' ? (int)K : (int)N, 0.f, cs, (int)N);
        if (r >= 0) tsg[r] = now() - t0;
    }
    double num = 0, den = 0; /* relative Frobenius difference bf16 vs fp32 */
    const float *x = hb_data(c16), *y = hb_data(c32);
    for (long long i = 0; i < M * N; i++) num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]), den += (double)y[i] * y[i];
    double fl = 2.0 * (double)M * (double)N * (double)K;
    printf("{\"bench\":\"gemm\",\"trans\":\"%s\",\"M\":%lld,\"N\":%lld,\"K\":%lld,\"threads\":%d,\"native\":%d,"
           "\"fp32_best_s\":%.6g,\"bf16_best_s\":%.6g,\"fp32_median_s\":%.6g,\"bf16_median_s\":%.6g,"
           "\"gflops_fp32\":%.4g,\"gflops_bf16\":%.4g,\"rel_diff\":%.3g,\"sgemm_best_s\":%.6g,\"gflops_sgemm\":%.4g}\n",
           tr, M, N, K, hb_threads_get(), gemm_bf16_native(), best(t32, reps), best(t16, reps), med(t32, reps),
           med(t16, reps), fl / best(t32, reps) / 1e9, fl / best(t16, reps) / 1e9, sqrt(num / (den > 0 ? den : 1)),
           best(tsg, reps), fl / best(tsg, reps) / 1e9);
    hb_tensor_free(a); hb_tensor_free(b); hb_tensor_free(c32); hb_tensor_free(c16);
    free(t32); free(t16); free(tsg); free(cs);
    return 0;
}

#define DP_NH 2 /* Householder steps per token of the Gated DeltaProduct bench */

/* FLOPs of the chunked algorithms per (batch, head); see docs/performance.md */
static void flops(const char *k, double T, double D, double C, double *ff, double *fb) {
    double K = D, V = (double)bench_vdim((int64_t)D);
    if (!strcmp(k, "gla") || !strcmp(k, "retention")) { /* the backwards read the forward's chunk states: no
                                                            * recomputed state pass (since 2026-12-07) */
        *ff = 4 * T * K * V + T * (C + 1) * (K + V);
        *fb = 8 * T * K * V + T * (C + 1) * (3 * K + 2 * V);
    } else if (!strcmp(k, "delta") || !strcmp(k, "gdelta")) {
        *ff = 6 * T * K * V + T * (C - 1) * (2 * K + V) + T * (C + 1) * (K + V);
        *fb = 12 * T * K * V + 2 * T * (C + 1) * (K + V) + 2 * T * (C - 1) * (2 * K + V);
    } else if (!strcmp(k, "kda")) { /* kernels/kda.h: per token and value head */
        *ff = T * (6 * K * V + 2 * C * V + 2 * C * K + C * C / 3);
        *fb = T * (14 * K * V + 5 * C * V + 6 * C * K + C * C / 3);
    } else if (!strcmp(k, "dproduct")) { /* the delta rule's count over R = T·NH sub-steps (what runs) */
        double R = T * DP_NH;
        *ff = 6 * R * K * V + R * (C - 1) * (2 * K + V) + R * (C + 1) * (K + V);
        *fb = 12 * R * K * V + 2 * R * (C + 1) * (K + V) + 2 * R * (C - 1) * (2 * K + V);
    } else if (!strcmp(k, "dplr")) { /* kernels/dplr.h */
        *ff = 8 * T * K * V + 2 * T * (C + 1) * K + 2 * T * (C - 1) * K + 2 * T * (C - 1) * V + 2 * T * (C + 1) * V +
              T * C * C / 3;
        *fb = 16 * T * K * V + 4 * T * (C + 1) * (K + V) + 4 * T * (C - 1) * (K + V);
    } else if (!strcmp(k, "ssd")) { /* kernels/ssd.h with G = H (per head) */
        *ff = 4 * T * K * V + T * (C + 1) * V + T * (C + 1) * K;
        *fb = 8 * T * K * V + 2 * T * (C + 1) * V + 3 * T * (C + 1) * K;
    } else if (!strcmp(k, "attn")) {
        *ff = 2 * T * (T + 1) * D;
        *fb = 5 * T * (T + 1) * D;
    } else {
        *ff = *fb = 0;
    }
}

/* HB_BENCH_SCATTER=1: before the forward q, k, v, beta and g, before the backward dout, q, k and v are rewritten by
 * element ranges on the pool, as the ops before a mixer write them in a training step: each item then reads its
 * rows from other cores' caches, not its own (the copies are not timed; the mixers' other inputs are left alone) */
typedef struct { float *x; const float *src; } scat_t;
static void scat_range(void *ctx, int64_t lo, int64_t hi) {
    const scat_t *c = ctx;
    for (int64_t i = lo; i < hi; i++) c->x[i] = c->src[i];
}
static void scatter(float *x, int64_t n) {
    if (!x || n <= 0) return;
    float *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp) { fprintf(stderr, "scatter: out of memory\n"); return; }
    memcpy(tmp, x, (size_t)n * sizeof *tmp);
    scat_t c = {x, tmp};
    hb_parallel_range(n, HB_ELEM_GRAIN, scat_range, &c);
    free(tmp);
}

static int interleave_sgemm; /* train+sgemm: 1024³ sgemms right before and after the repetitions */
static int dr_wy;                  /* delta / gdelta through the mixer entry points (saved D and T) */
static hb_mixer_args_t dr_args;

static int do_train(const char *kern, int64_t T, int64_t D, int reps) {
    const int64_t B = bench_batch(), H = bench_heads(D), C = 64, K = D, V = bench_vdim(D);
    const int64_t nk = B * T * H * K, nv = B * T * H * V, nb = B * T * H;
    float scale = (float)(1.0 / sqrt((double)K));
    float *q = buf(nk, -1, 1), *k = buf(nk, -1, 1), *v = buf(nv, -1, 1), *o = zbuf(nv), *dout = buf(nv, -1, 1);
    float *dq = zbuf(nk), *dk = zbuf(nk), *dv = zbuf(nv);
    float *g = NULL, *dg = NULL, *beta = NULL, *db = NULL, *hs = NULL, *lse = NULL, *lg = NULL;
    if (!strcmp(kern, "gla")) { g = buf(nk, -0.2, -0.001); dg = zbuf(nk); hs = zbuf(gla_chunk_count(NULL, 0, B, T, C) * H * K * V); }
    if (!strcmp(kern, "retention")) {
        hs = zbuf(retention_chunk_count(NULL, 0, B, T, C) * H * K * V);
        lg = malloc((size_t)H * sizeof *lg);
        for (int64_t h = 0; h < H; h++) lg[h] = (float)log(1 - pow(2.0, -5.0 - (double)h));
    }
    if (!strcmp(kern, "delta") || !strcmp(kern, "gdelta")) {
        l2norm_rows(q, B * T * H, K);
        l2norm_rows(k, B * T * H, K);
        beta = buf(nb, 0.05, 0.95);
        db = zbuf(nb);
        if (!strcmp(kern, "gdelta")) { g = buf(nb, -0.2, -0.001); dg = zbuf(nb); }
        /* as training runs it: the mixer entry points, which save the chunk states and the WY quantities
         * (HB_BENCH_NOWY=1: the public functions, chunk states only; the backward recomputes D and T) */
        dr_wy = !env_int("HB_BENCH_NOWY", 1, 1, 0);
        memset(&dr_args, 0, sizeof dr_args);
        const int64_t dims[6] = {B, T, H, H, K, V};
        memcpy(dr_args.dim, dims, sizeof dims);
        dr_args.chunk = C, dr_args.scalar[0] = scale;
        dr_args.in[0] = q, dr_args.in[1] = k, dr_args.in[2] = v, dr_args.in[3] = beta, dr_args.in[4] = g;
        dr_args.din[0] = dq, dr_args.din[1] = dk, dr_args.din[2] = dv, dr_args.din[3] = db, dr_args.din[4] = dg;
        dr_args.o = o, dr_args.dout = dout;
        hs = zbuf(dr_wy ? hb_mixer_delta_rule.saved_numel(&dr_args) : B * H * ((T + C - 1) / C) * K * V);
        dr_args.saved = hs;
    }
    if (!strcmp(kern, "attn")) lse = zbuf(B * H * T);
    /* issue 13's mixers (HV = H, G = H) */
    const int is_kda = !strcmp(kern, "kda"), is_dp = !strcmp(kern, "dproduct"), is_dplr = !strcmp(kern, "dplr"),
              is_ssd = !strcmp(kern, "ssd");
    float *xk = NULL, *xv = NULL, *xdk = NULL, *xdv = NULL, *xa = NULL, *xb = NULL, *xda = NULL, *xdb = NULL;
    if (is_kda) {
        l2norm_rows(q, B * T * H, K);
        l2norm_rows(k, B * T * H, K);
        g = buf(nk, -0.2, -0.001); dg = zbuf(nk);
        beta = buf(nb, 0.05, 0.95); db = zbuf(nb);
        hs = zbuf(kda_chunk_count(NULL, 0, B, T, C) * H * K * V);
    }
    if (is_dp) { /* k, v, beta: DP_NH sub-steps per token */
        l2norm_rows(q, B * T * H, K);
        xk = buf(nk * DP_NH, -1, 1); xv = buf(nv * DP_NH, -1, 1); xdk = zbuf(nk * DP_NH); xdv = zbuf(nv * DP_NH);
        l2norm_rows(xk, B * T * DP_NH * H, K);
        beta = buf(nb * DP_NH, 0.05, 0.95); db = zbuf(nb * DP_NH);
        g = buf(nb, -0.2, -0.001); dg = zbuf(nb);
        hs = zbuf(deltaproduct_chunk_count(NULL, 0, B, T, DP_NH, C) * H * K * V);
    }
    if (is_dplr) { /* RWKV-7: a = −κ, b = κ ⊙ u, κ l2-normalised; gk = −0.6065·σ(·) */
        l2norm_rows(k, B * T * H, K);
        xa = buf(nk, -1, 1); l2norm_rows(xa, B * T * H, K);
        xb = buf(nk, 0.01, 0.99);
        for (int64_t i = 0; i < nk; i++) { xb[i] *= xa[i]; xa[i] = -xa[i]; }
        g = buf(nk, -0.6, -0.001); dg = zbuf(nk); xda = zbuf(nk); xdb = zbuf(nk);
        hs = zbuf(dplr_chunk_count(NULL, 0, B, T, C) * H * K * V);
        scale = 1.f;
    }
    if (is_ssd) {
        g = buf(nb, -0.2, -0.001); dg = zbuf(nb);
        hs = zbuf(ssd_chunk_count(NULL, 0, B, T, C) * H * K * V);
    }
    const int64_t Dh = H * D; /* hgrn: channels */
    float *hx = NULL, *hg = NULL, *ho = NULL, *hdo = NULL, *hdx = NULL, *hdg = NULL;
    int64_t hC = hgrn_chunk_hint(B, T, Dh);
    if (!strcmp(kern, "hgrn")) {
        hx = buf(B * T * Dh, -1, 1); hg = buf(B * T * Dh, -0.5, -0.001); ho = zbuf(B * T * Dh);
        hdo = buf(B * T * Dh, -1, 1); hdx = zbuf(B * T * Dh); hdg = zbuf(B * T * Dh);
    }
    double *tf = malloc((size_t)(reps + 1) * sizeof *tf), *tb = malloc((size_t)(reps + 1) * sizeof *tb), *tt = malloc((size_t)(reps + 1) * sizeof *tt);
    const int SG = 1024;
    float *sa = NULL, *sb = NULL, *sc = NULL;
    double ts[6];
    if (interleave_sgemm) {
        sa = buf(SG * SG, -1, 1); sb = buf(SG * SG, -1, 1); sc = zbuf(SG * SG);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, SG, SG, SG, 1.f, sa, SG, sb, SG, 0.f, sc, SG);
        for (int i = 0; i < 3; i++) {
            double s0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, SG, SG, SG, 1.f, sa, SG, sb, SG, 0.f, sc, SG);
            ts[i] = now() - s0;
        }
    }
    int rc = 0;
    const int scat = env_int("HB_BENCH_SCATTER", 1, 1, 0) == 1;
    const int64_t ng = !g ? 0 : (is_kda || is_dplr || !strcmp(kern, "gla")) ? nk : nb; /* g's length, as allocated */
    for (int r = T <= 1024 ? 0 : 1; r <= reps && !rc; r++) { /* r = 0 is a warm-up (skipped for long T) */
        if (scat) scatter(q, nk), scatter(k, nk), scatter(v, nv), scatter(beta, nb), scatter(g, ng);
        double t0 = now();
        if (is_kda) rc = kda_fwd_chunk_f32(o, NULL, hs, q, k, v, g, beta, NULL, scale, NULL, 0, B, T, H, H, K, V, C);
        else if (is_dp) rc = deltaproduct_fwd_chunk_f32(o, NULL, hs, q, xk, xv, beta, g, NULL, scale, NULL, 0, B, T, DP_NH, H, H, K, V, C);
        else if (is_dplr) rc = dplr_fwd_chunk_f32(o, NULL, hs, q, k, v, xa, xb, g, NULL, scale, NULL, 0, B, T, H, K, V, C);
        else if (is_ssd) rc = ssd_fwd_chunk_f32(o, NULL, hs, q, k, v, g, NULL, scale, 0, NULL, 0, B, T, H, H, K, V, C);
        else if (!strcmp(kern, "gla")) rc = gla_fwd_chunk_f32(o, NULL, hs, q, k, v, g, NULL, scale, NULL, 0, B, T, H, K, V, C);
        else if (!strcmp(kern, "retention")) rc = retention_fwd_chunk_f32(o, NULL, hs, q, k, v, NULL, lg, scale, NULL, 0, B, T, H, K, V, C);
        else if (beta && dr_wy) rc = hb_mixer_delta_rule.f32.fwd_chunk(&dr_args);
        else if (beta) rc = delta_rule_fwd_chunk_f32(o, NULL, hs, q, k, v, beta, g, NULL, scale, NULL, 0, B, T, H, H, K, V, C);
        else if (!strcmp(kern, "attn")) rc = attn_fwd_f32(o, lse, q, k, v, scale, 0, NULL, 0, B, T, H, H, D, 64);
        else if (hx) rc = hgrn_fwd_chunk_f32(ho, NULL, hx, hg, NULL, NULL, 0, B, T, Dh, hC);
        double t1 = now(), t1s = t1;
        if (scat) scatter(dout, nv), scatter(q, nk), scatter(k, nk), scatter(v, nv), t1s = now();
        if (!rc) {
            if (is_kda) rc = kda_bwd_chunk_f32(dq, dk, dv, dg, db, NULL, dout, NULL, q, k, v, g, beta, NULL, hs, scale, NULL, 0, B, T, H, H, K, V, C);
            else if (is_dp) rc = deltaproduct_bwd_chunk_f32(dq, xdk, xdv, db, dg, dout, q, xk, xv, beta, g, NULL, hs, scale, NULL, 0, B, T, DP_NH, H, H, K, V, C);
            else if (is_dplr) rc = dplr_bwd_chunk_f32(dq, dk, dv, xda, xdb, dg, NULL, dout, NULL, q, k, v, xa, xb, g, NULL, hs, scale, NULL, 0, B, T, H, K, V, C);
            else if (is_ssd) rc = ssd_bwd_chunk_f32(dq, dk, dv, dg, NULL, dout, NULL, q, k, v, g, NULL, hs, scale, 0, NULL, 0, B, T, H, H, K, V, C);
            else if (!strcmp(kern, "gla")) rc = gla_bwd_chunk_f32(dq, dk, dv, dg, NULL, dout, NULL, q, k, v, g, NULL, hs, scale, NULL, 0, B, T, H, K, V, C);
            else if (!strcmp(kern, "retention")) rc = retention_bwd_chunk_f32(dq, dk, dv, dout, q, k, v, NULL, hs, lg, scale, NULL, 0, B, T, H, K, V, C);
            else if (beta && dr_wy) rc = hb_mixer_delta_rule.f32.bwd_chunk(&dr_args);
            else if (beta) rc = delta_rule_bwd_chunk_f32(dq, dk, dv, db, dg, dout, q, k, v, beta, g, NULL, hs, scale, NULL, 0, B, T, H, H, K, V, C);
            else if (!strcmp(kern, "attn")) rc = attn_bwd_f32(dq, dk, dv, q, k, v, o, lse, dout, scale, 0, NULL, 0, B, T, H, H, D, 64);
            else if (hx) rc = hgrn_bwd_chunk_f32(hdx, hdg, hdo, hg, ho, NULL, NULL, 0, B, T, Dh, hC);
        }
        double t2 = now();
        if (r > 0) { tf[r - 1] = t1 - t0; tb[r - 1] = t2 - t1s; tt[r - 1] = (t1 - t0) + (t2 - t1s); }
    }
    if (rc) { fprintf(stderr, "kernel %s failed\n", kern); return 1; }
    for (int i = 3; interleave_sgemm && i < 6; i++) {
        double s0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, SG, SG, SG, 1.f, sa, SG, sb, SG, 0.f, sc, SG);
        ts[i] = now() - s0;
    }
    double ff, fb;
    flops(kern, (double)T, (double)D, (double)C, &ff, &fb);
    ff *= (double)(B * H);
    fb *= (double)(B * H);
    double bytes = hx ? (double)(B * T * Dh) * 4.0 * (3 + 5) : 0; /* fwd: x,g→o; bwd: do,g,o→dx,dg */
    printf("{\"bench\":\"train\",\"kernel\":\"%s\",\"T\":%lld,\"D\":%lld,\"H\":%lld,\"B\":%lld,\"C\":%lld,\"threads\":%d,"
           "\"fwd_best_s\":%.6g,\"fwd_median_s\":%.6g,\"bwd_best_s\":%.6g,\"bwd_median_s\":%.6g,\"total_best_s\":%.6g,"
           "\"total_median_s\":%.6g,\"flops_fwd\":%.6g,\"flops_bwd\":%.6g,\"bytes\":%.6g",
           kern, (long long)T, (long long)D, (long long)H, (long long)B, (long long)(hx ? hC : C), hb_threads_get(),
           best(tf, reps), med(tf, reps), best(tb, reps), med(tb, reps), best(tt, reps), med(tt, reps), ff, fb, bytes);
    if (interleave_sgemm)
        printf(",\"sgemm_N\":%d,\"sgemm_gflops_best\":%.4g,\"sgemm_gflops_median\":%.4g", SG,
               2.0 * SG * SG * SG / best(ts, 6) / 1e9, 2.0 * SG * SG * SG / med(ts, 6) / 1e9);
    printf("}\n");
    free(sa); free(sb); free(sc);
    free(q); free(k); free(v); free(o); free(dout); free(dq); free(dk); free(dv); free(g); free(dg); free(beta);
    free(db); free(hs); free(lse); free(lg); free(hx); free(hg); free(ho); free(hdo); free(hdx); free(hdg);
    free(xk); free(xv); free(xdk); free(xdv); free(xa); free(xb); free(xda); free(xdb);
    free(tf); free(tb); free(tt);
    return 0;
}

static int do_decode(const char *kern, int64_t ctx, int64_t D, int reps) {
    const int64_t B = 1, H = 512 / D, K = D, V = D;
    float scale = (float)(1.0 / sqrt((double)K));
    float *q = buf(H * K, -1, 1), *k = buf(H * K, -1, 1), *v = buf(H * V, -1, 1), *o = zbuf(H * V);
    float *state = buf(H * K * V, -0.1, 0.1), *g = buf(H * K, -0.2, -0.001), *beta = buf(H, 0.1, 0.9);
    float lg[64];
    for (int64_t h = 0; h < H && h < 64; h++) lg[h] = (float)log(1 - pow(2.0, -5.0 - (double)h));
    float *kc = NULL, *vc = NULL;
    if (!strcmp(kern, "attn")) { kc = buf(ctx * H * D, -1, 1); vc = buf(ctx * H * D, -1, 1); }
    double *t = malloc((size_t)reps * sizeof *t);
    int rc = 0;
    for (int r = -3; r < reps && !rc; r++) {
        double t0 = now();
        if (!strcmp(kern, "gla")) rc = gla_step_f32(o, state, q, k, v, g, scale, B, H, K, V);
        else if (!strcmp(kern, "retention")) rc = retention_step_f32(o, state, q, k, v, lg, scale, B, H, K, V);
        else if (!strcmp(kern, "delta")) rc = delta_rule_step_f32(o, state, q, k, v, beta, NULL, scale, B, H, H, K, V);
        else if (!strcmp(kern, "gdelta")) rc = delta_rule_step_f32(o, state, q, k, v, beta, g, scale, B, H, H, K, V);
        else if (!strcmp(kern, "hgrn")) rc = hgrn_step_f32(o, state, q, g, B, H * K);
        else if (kc) rc = attn_decode_step_f32(o, q, kc, vc, scale, 0, ctx - 1, B, ctx, H, H, D);
        if (r >= 0) t[r] = now() - t0;
    }
    if (rc) { fprintf(stderr, "decode %s failed\n", kern); return 1; }
    printf("{\"bench\":\"decode\",\"kernel\":\"%s\",\"ctx\":%lld,\"D\":%lld,\"H\":%lld,\"threads\":%d,\"best_s\":%.6g,"
           "\"median_s\":%.6g}\n",
           kern, (long long)ctx, (long long)D, (long long)H, hb_threads_get(), best(t, reps), med(t, reps));
    free(q); free(k); free(v); free(o); free(state); free(g); free(beta); free(kc); free(vc); free(t);
    return 0;
}

/* ---- blocks: concurrent small products ---------------------------------------------------------------- */
typedef void (*gemm_fn)(CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, int, int, int, float, const float *, int,
                        const float *, int, float, float *, int);
typedef struct {
    gemm_fn f;
    int reps;
    pthread_barrier_t *bar;
    double secs, flops;
} blk_job_t;

static void *blocks_run(void *p) {
    blk_job_t *j = p;
    enum { C = 64, D = 64, V = 128 };
    float *a = hb_malloc(C * V * sizeof(float)), *b = hb_malloc(V * V * sizeof(float)), *c = hb_malloc(C * V * sizeof(float));
    for (int i = 0; i < C * V; i++) a[i] = (float)((i * 7 % 13) - 6) / 13, c[i] = 0;
    for (int i = 0; i < V * V; i++) b[i] = (float)((i * 5 % 11) - 5) / 11;
    /* one chunk of the gated delta rule's forward and backward at K = 64, V = 128: (ta, tb, M, N, K) */
    static const int sh[][5] = {{0, 1, C, C, D}, {0, 1, C, C, D}, {0, 0, C, V, D}, {0, 0, C, V, C}, {0, 0, C, V, D},
                                {0, 0, C, V, C}, {1, 0, D, V, C}, {1, 0, C, V, C}, {0, 1, C, D, V}, {0, 1, C, C, V},
                                {0, 0, C, D, C}, {1, 0, D, V, C}, {1, 0, D, V, C}};
    const int ns = sizeof sh / sizeof sh[0];
    double fl = 0;
    for (int i = 0; i < ns; i++) fl += 2.0 * sh[i][2] * sh[i][3] * sh[i][4];
    pthread_barrier_wait(j->bar);
    double t0 = now();
    for (int r = 0; r < j->reps; r++)
        for (int i = 0; i < ns; i++) {
            const int ta = sh[i][0], tb = sh[i][1], M = sh[i][2], N = sh[i][3], K = sh[i][4];
            j->f(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1, a,
                 ta ? M : K, b, tb ? K : N, 1, c, N);
        }
    j->secs = now() - t0;
    j->flops = fl * j->reps;
    free(a), free(b), free(c);
    return NULL;
}

static int do_blocks(const char *list, int reps) {
    for (const char *p = list; *p;) {
        char *end;
        int P = (int)strtol(p, &end, 10);
        if (P < 1 || P > 256) return 2;
        for (int w = 0; w < 2; w++) {
            gemm_fn f = w ? hb_kgemm_f32 : cblas_sgemm;
            pthread_t th[256];
            blk_job_t jobs[256];
            pthread_barrier_t bar;
            pthread_barrier_init(&bar, NULL, (unsigned)P);
            for (int i = 0; i < P; i++) {
                jobs[i] = (blk_job_t){f, reps, &bar, 0, 0};
                pthread_create(&th[i], NULL, blocks_run, &jobs[i]);
            }
            double sum = 0, slow = 0, per = 0;
            for (int i = 0; i < P; i++) {
                pthread_join(th[i], NULL);
                per += jobs[i].flops / jobs[i].secs / 1e9 / P;
                if (jobs[i].secs > slow) slow = jobs[i].secs;
                sum += jobs[i].flops;
            }
            pthread_barrier_destroy(&bar);
            printf("{\"bench\":\"blocks\",\"path\":\"%s\",\"threads\":%d,\"reps\":%d,\"gflops_per_thread\":%.4g,"
                   "\"gflops_total\":%.4g}\n", w ? "kgemm_own" : "cblas_sgemm", P, reps, per, sum / slow / 1e9);
            fflush(stdout);
        }
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

int main(int argc, char **argv) {
    /* malloc as the hyblua executable sets it: without it every call's scratch of more than 128 KiB was a fresh
     * mmap faulted in and zeroed again, and Gated DeltaProduct's fwd+bwd timed 1.7–1.8× slower than in hyblua */
    hb_malloc_policy();
    if (argc >= 4 && !strcmp(argv[1], "sgemm")) return do_sgemm(atoll(argv[2]), atoi(argv[3]));
    if (argc >= 4 && !strcmp(argv[1], "blocks")) {
        hb_kgemm_force(1); /* its "kgemm_own" path: the own kernel whatever OpenBLAS runs */
        return do_blocks(argv[2], atoi(argv[3]));
    }
    if (argc >= 4 && !strcmp(argv[1], "gemm")) {
        int rc = 0;
        for (char *p = argv[2]; *p && !rc;) { /* comma-separated shapes */
            char *end = strchr(p, ',');
            if (end) *end = 0;
            rc = do_gemm(p, atoi(argv[3]));
            fflush(stdout);
            p = end ? end + 1 : p + strlen(p);
        }
        return rc;
    }
    if (argc >= 6 && !strcmp(argv[1], "train+sgemm")) { interleave_sgemm = 1; argv[1] = "train"; }
    if (argc >= 6 && (!strcmp(argv[1], "train") || !strcmp(argv[1], "decode"))) {
        /* argv[3] is a comma-separated list of sequence / context lengths */
        int rc = 0;
        for (char *p = argv[3]; *p && !rc;) {
            char *end;
            long long n = strtoll(p, &end, 10);
            rc = !strcmp(argv[1], "train") ? do_train(argv[2], n, atoll(argv[4]), atoi(argv[5]))
                                           : do_decode(argv[2], n, atoll(argv[4]), atoi(argv[5]));
            fflush(stdout);
            p = *end == ',' ? end + 1 : end;
        }
        return rc;
    }
    fprintf(stderr, "usage: kernels_bench sgemm N REPS | train[+sgemm] KERNEL T[,T..] D REPS | decode KERNEL CTX[,CTX..] D REPS"
                    " | gemm TR:M:N:K[,...] REPS | blocks P[,P..] REPS\n");
    return 2;
}
