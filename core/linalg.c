/* linalg.c — matmul / batched matmul / linear through cblas_sgemm and cblas_dgemm.
 *
 * A 2-D operand whose last two dims are row-major (stride[-1] == 1) or column-major (stride[-2] == 1)
 * is handed to BLAS as is, with NoTrans/Trans and the matching leading dimension: transposed views
 * (e.g. a weight W used as Wᵀ) never get copied. Anything else is made contiguous first.
 * Batched operands broadcast their batch dims; when the right operand is 2-D and the left one's batch
 * dims are contiguous, the whole batch runs as ONE gemm of (batch·M) rows.
 * With hb_set_matmul_precision(HB_MM_BF16), every float32 gemm here (forward and backward products)
 * goes to kernels/gemm_bf16.c instead of cblas_sgemm; float64 never does.
 */
#include "linalg.h"
#include "autograd.h"
#include "ops.h"
#include "views.h"
#include "../kernels/gemm_bf16.h"
#include "../kernels/gemv.h"
#include "../kernels/alloc.h"
#include "../kernels/parallel.h"
#include <cblas.h>
#include <string.h>

/* Describe the last two dims of t for BLAS: returns 1 and sets trans/ld if usable in place. */
static int blas_layout(const hb_tensor_t *t, CBLAS_TRANSPOSE *tr, int64_t *ld) {
    int n = t->ndim;
    int64_t r = t->size[n - 2], c = t->size[n - 1], sr = t->stride[n - 2], sc = t->stride[n - 1];
    if ((sc == 1 || c == 1) && (sr >= (c > 1 ? c : 1) || r == 1)) {
        *tr = CblasNoTrans;
        *ld = r == 1 ? (c > 1 ? c : 1) : sr;
        if (*ld < c) *ld = c;
        return 1;
    }
    if ((sr == 1 || r == 1) && (sc >= (r > 1 ? r : 1) || c == 1)) {
        *tr = CblasTrans;
        *ld = c == 1 ? (r > 1 ? r : 1) : sc;
        if (*ld < r) *ld = r;
        return 1;
    }
    return 0;
}

/* A product of at most GEMV_MAX_M rows of C (decode: one token per sequence) is not a job for sgemm, which
 * would pack all of op(B) — the weights — into a buffer on every call and read them twice (a 1 x 1024 x 32
 * tile ran at half the speed through sgemm, most of it packing). The nn.Linear layout (B = Wᵀ with W's rows
 * contiguous, A's rows contiguous) goes to kernels/gemv.c, which reads each weight row once for all M rows;
 * other layouts are M BLAS matrix-vector products. Chosen by the shape alone. */
enum { GEMV_MAX_M = HB_GEMV_MAX_M };
static void gemv_rows(hb_dtype_t dt, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K,
                      const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc) {
    if (dt == HB_F32 && ta == CblasNoTrans && tb == CblasTrans) {
        hb_gemv_nt_f32(M, N, K, A, lda, B, ldb, (float)beta, C, ldc);
        return;
    }
    size_t es = dt == HB_F32 ? 4 : 8;
    /* row m of op(A): A + m*lda (stride 1) when not transposed, else A + m (stride lda) */
    int64_t xs = ta == CblasNoTrans ? 1 : lda;
    /* C[m, :] = op(B)ᵀ-times: tb == Trans means B is N x K (y = B x), NoTrans means B is K x N (y = Bᵀ x) */
    CBLAS_TRANSPOSE vt = tb == CblasNoTrans ? CblasTrans : CblasNoTrans;
    int64_t rows = tb == CblasNoTrans ? K : N, cols = tb == CblasNoTrans ? N : K;
    for (int64_t m = 0; m < M; m++) {
        const char *x = (const char *)A + (size_t)(ta == CblasNoTrans ? m * lda : m) * es;
        char *y = (char *)C + (size_t)(m * ldc) * es;
        if (beta == 0) memset(y, 0, (size_t)N * es); /* gemv scales y by beta: never let garbage NaN through */
        if (dt == HB_F32)
            cblas_sgemv(CblasRowMajor, vt, (int)rows, (int)cols, 1.0f, B, (int)ldb, (const float *)x, (int)xs,
                        (float)beta, (float *)y, 1);
        else
            cblas_dgemv(CblasRowMajor, vt, (int)rows, (int)cols, 1.0, B, (int)ldb, (const double *)x, (int)xs, beta,
                        (double *)y, 1);
    }
}

static void gemm1(hb_dtype_t dt, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K, const void *A,
                  int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc) {
    if (M <= GEMV_MAX_M && M > 0 && N > 0 && K > 0) {
        gemv_rows(dt, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (dt == HB_F32)
        cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, (float)beta, C, (int)ldc);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, 1.0, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* A large product is split into tiles of C — blocks of rows, and also of columns when there are too few
 * row blocks (the weight gradients: 512 x 512 over 4096 tokens) — run on the thread pool, each a
 * single-threaded BLAS call (OpenBLAS is kept at one thread: kernels/threads.c). Tiles never change how an
 * element of C is summed (K is never split), so results do not depend on the thread count. */
typedef struct {
    hb_dtype_t dt;
    CBLAS_TRANSPOSE ta, tb;
    int64_t M, N, K, lda, ldb, ldc, bm, bn, nbn;
    const char *A, *B;
    const uint16_t *B16; /* bf16 matrix-vector products: B's bfloat16 copy (tb == Trans, M <= GEMV_MAX_M), or NULL */
    char *C;
    double beta;
} gemm_job_t;

static void gemm_block(void *ctx, int64_t i) {
    gemm_job_t *j = ctx;
    size_t es = j->dt == HB_F32 ? 4 : 8;
    int64_t m0 = (i / j->nbn) * j->bm, n0 = (i % j->nbn) * j->bn;
    int64_t m = m0 + j->bm < j->M ? j->bm : j->M - m0;
    int64_t n = n0 + j->bn < j->N ? j->bn : j->N - n0;
    const char *a = j->A + (size_t)(j->ta == CblasNoTrans ? m0 * j->lda : m0) * es;
    if (j->B16) {
        hb_gemv_nt_bf16(m, n, j->K, (const float *)a, j->lda, j->B16 + n0 * j->ldb, j->ldb, (float)j->beta,
                        (float *)j->C + m0 * j->ldc + n0, j->ldc);
        return;
    }
    const char *b = j->B + (size_t)(j->tb == CblasNoTrans ? n0 : n0 * j->ldb) * es;
    gemm1(j->dt, j->ta, j->tb, m, n, j->K, a, j->lda, b, j->ldb, j->beta, j->C + (size_t)(m0 * j->ldc + n0) * es, j->ldc);
}

/* The tiling of an M x N product: a grid of nr x nc tiles (each side at least 64, rounded up to 16). Each tile
 * is one BLAS call, which packs its own rows of op(A) (bm x K) and columns of op(B) (K x bn): the grid reads
 * op(A) nc times and op(B) nr times, K (M nc + N nr) elements in all. Among the grids of at least GEMM_SPLIT
 * tiles (where the shape allows that many), the one that runs best on 16 threads — the makespan of
 * ceil(tiles / 16) rounds of the largest tile against the product's area, kept within 2% of the best — and
 * then packs the least, then has the fewest tiles. 16 tiles also divide evenly over 2, 4 and 8 threads.
 * The shape alone decides it. Measured (one thread, OpenBLAS SkylakeX kernels, 2026-12-06, kernels_bench gemm):
 * a d 512 step's products (B.T = 4096) ran at 1.06-1.50x the earlier rule's speed (32 tiles, the first grid
 * found: the narrowest columns, 1024 x 64 for 4096 x 512, op(A) packed 8 times), 0.67-0.92 of one whole
 * cblas_sgemm (the weight gradients of long K lowest). */
enum { GEMM_SPLIT = 16 }; /* the fewest tiles a large fp32 product is split into, where its shape allows */
static void gemm_tiles(int64_t M, int64_t N, int64_t *bm_out, int64_t *bn_out) {
    enum { MAXP = 32, ROUND = 16 };
    int64_t pm = (M + 63) / 64, pn = (N + 63) / 64;
    if (pm > MAXP) pm = MAXP;
    if (pn > MAXP) pn = MAXP;
    if (pm < 1) pm = 1;
    if (pn < 1) pn = 1;
    int64_t want = pm * pn < GEMM_SPLIT ? pm * pn : GEMM_SPLIT;
    /* two passes: the best makespan over all grids, then the least packing among those within 2% of it */
    double best_eff = 0, best_pack = -1;
    int64_t best_tiles = 0;
    *bm_out = M, *bn_out = N;
    for (int pass = 0; pass < 2; pass++)
        for (int64_t nr = 1; nr <= pm; nr++)
            for (int64_t nc = 1; nc <= pn; nc++) {
                int64_t bm = ((M + nr - 1) / nr + 15) / 16 * 16, bn = ((N + nc - 1) / nc + 15) / 16 * 16;
                if (bm < 64) bm = 64;
                if (bn < 64) bn = 64;
                if (bm > M) bm = M;
                if (bn > N) bn = N;
                int64_t tr = (M + bm - 1) / bm, tc = (N + bn - 1) / bn, tiles = tr * tc;
                if (tiles < want) continue;
                double eff = (double)M * (double)N / ((double)ROUND * (double)((tiles + ROUND - 1) / ROUND) * (double)bm * (double)bn);
                if (pass == 0) {
                    if (eff > best_eff) best_eff = eff;
                    continue;
                }
                if (eff < 0.98 * best_eff) continue;
                double pack = (double)M * (double)tc + (double)N * (double)tr;
                if (best_pack < 0 || pack < best_pack || (pack == best_pack && tiles < best_tiles)) {
                    best_pack = pack, best_tiles = tiles;
                    *bm_out = bm, *bn_out = bn;
                }
            }
}


static hb_mm_precision_t mm_precision = HB_MM_FP32;

int hb_set_matmul_precision(hb_mm_precision_t p) {
    if (p != HB_MM_FP32 && p != HB_MM_BF16) {
        hb_seterr("set_matmul_precision: unknown precision %d (expected HB_MM_FP32 or HB_MM_BF16)", (int)p);
        return -1;
    }
    mm_precision = p;
    return 0;
}

hb_mm_precision_t hb_matmul_precision(void) { return mm_precision; }

/* Returns 0, or -1 with the error set (only the bf16 path allocates: its packing buffers). B16: B's
   bfloat16 copy from bf16_weights (non-NULL only in bf16 precision, for float32 with at most GEMV_MAX_M
   rows and tb == Trans: it checked those), or NULL. */
static int gemm(hb_dtype_t dt, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K, const void *A,
                int64_t lda, const void *B, int64_t ldb, const uint16_t *B16, double beta, void *C, int64_t ldc) {
    int bf16_rows = B16 && ta == CblasNoTrans;
    if (dt == HB_F32 && mm_precision == HB_MM_BF16 && !bf16_rows) {
        if (gemm_bf16(C, A, B, ta != CblasNoTrans, tb != CblasNoTrans, (float)beta, M, N, K, lda, ldb, ldc) == 0)
            return 0;
        hb_seterr("matmul: out of memory for the bf16 packing buffers (%lldx%lldx%lld)", (long long)M, (long long)N,
                  (long long)K);
        return -1;
    }
    /* before ANY BLAS call, small ones included: the first hb_threads_get() puts OpenBLAS at one thread,
       and OpenBLAS's own threading rounds differently, so a product made before it would give other bits
       than the same product later in the process (a resumed run diverged from an uninterrupted one) */
    (void)hb_threads_get();
    double flops = 2.0 * (double)M * (double)N * (double)K, es = dt == HB_F32 ? 4 : 8;
    double bytes = es * ((double)M * (double)K + (double)M * (double)N) + (bf16_rows ? 2 : es) * (double)K * (double)N;
    gemm_job_t j = {dt, ta, tb, M, N, K, lda, ldb, ldc, M, N, 1, A, B, bf16_rows ? B16 : NULL, C, beta};
    /* small products are one call; a decode step's vector-matrix products (few flops, megabytes of
       weights) are split too, so that several threads stream the weights. Those that go to kernels/gemv.c
       (at most GEMV_MAX_M rows, B = Wᵀ; fp32 or the bf16 copy) are bound by memory bandwidth, a byte
       costing a core several flops' time: they are split from 256 KiB of operands on, with a byte counted
       as 8 units of work (a 768 x 1024 bf16 weight, 1.5 MB, ran on one thread of 16 otherwise). Any split
       gives the same bits there: each output is one row's dot product in a fixed order. */
    int streamed = M <= GEMV_MAX_M && ta == CblasNoTrans && tb == CblasTrans && dt == HB_F32;
    if (streamed ? bytes < 262144 : flops < 4e6 && bytes < 2e6) {
        gemm_block(&j, 0);
        return 0;
    }
    /* the split depends on the shape only, never on the thread count, and is used with 1 thread too:
       OpenBLAS picks its kernels (small-matrix paths included) by the shape of each call, so a product
       split into other blocks can round differently (a 320x192x64 product whole vs in two 160-row
       halves differed in the last bit). gemm_tiles picks the tiles. */
    gemm_tiles(M, N, &j.bm, &j.bn);
    j.nbn = (N + j.bn - 1) / j.bn;
    hb_parallel_for_work(((M + j.bm - 1) / j.bm) * j.nbn, flops + (streamed ? 8 : 2) * bytes, gemm_block, &j);
    return 0;
}

/* The bfloat16 copy of b's storage, at b's first element, for a bf16-precision product of at most
 * GEMV_MAX_M rows with b = Wᵀ (W's rows contiguous: tb == Trans): decode then streams 2 bytes per weight
 * and multiplies them with the float32 activations (bf16 x fp32 products summed in float32; gemm_bf16
 * would round the activations too and re-pack the weights on every call). The copy lives with the storage
 * and is remade after any in-place write (its version). NULL when the product is not such a one, the
 * storage is small (< 2^16 floats: gemm_bf16 is as good from cache) or the copy cannot be allocated (the
 * product then goes to gemm_bf16). */
typedef struct { uint16_t *dst; const float *src; } round_job_t;
static void round_range(void *ctx, int64_t lo, int64_t hi) {
    round_job_t *r = ctx;
    gemm_bf16_round_bits(r->dst + lo, r->src + lo, (size_t)(hi - lo));
}

static const uint16_t *bf16_weights(const hb_tensor_t *b, int64_t M, CBLAS_TRANSPOSE tb) {
    hb_storage_t *s = b->storage;
    size_t n = s->nbytes / sizeof(float);
    if (mm_precision != HB_MM_BF16 || b->dtype != HB_F32 || M <= 0 || M > GEMV_MAX_M || tb != CblasTrans ||
        n < ((size_t)1 << 16))
        return NULL;
    if (!s->bf16 || s->bf16_version != s->version) {
        if (!s->bf16) s->bf16 = hb_malloc(n * sizeof(uint16_t));
        if (!s->bf16) return NULL;
        round_job_t r = {s->bf16, s->data};
        hb_parallel_range((int64_t)n, HB_ELEM_GRAIN, round_range, &r);
        s->bf16_version = s->version;
    }
    return s->bf16 + b->offset;
}

static hb_tensor_t *matmul_raw(hb_tensor_t *a, hb_tensor_t *b);

static int bw_matmul(hb_node_t *n, hb_tensor_t *g, hb_tensor_t **gin) {
    hb_tensor_t *a = n->in[0], *b = n->in[1];
    if (a->requires_grad) {
        hb_tensor_t *bt = hb_transpose(b, -1, -2);
        hb_tensor_t *ga = bt ? matmul_raw(g, bt) : NULL;
        hb_tensor_free(bt);
        if (!ga) return -1;
        gin[0] = hb_sum_to(ga, a->ndim, a->size);
        hb_tensor_free(ga);
        if (!gin[0]) return -1;
    }
    if (b->requires_grad) {
        hb_tensor_t *gb = NULL;
        if (b->ndim == 2 && a->ndim > 2) {
            /* sum over the batch as one gemm: (a as [(batch·M), K])ᵀ · (g as [(batch·M), N]) */
            int64_t s1[2] = {-1, a->size[a->ndim - 1]}, s2[2] = {-1, g->size[g->ndim - 1]};
            hb_tensor_t *a2 = hb_view(a, 2, s1), *g2 = hb_view(g, 2, s2);
            hb_tensor_t *a2t = a2 ? hb_transpose(a2, 0, 1) : NULL;
            gb = a2t && g2 ? matmul_raw(a2t, g2) : NULL;
            hb_tensor_free(a2); hb_tensor_free(g2); hb_tensor_free(a2t);
        } else {
            hb_tensor_t *at = hb_transpose(a, -1, -2);
            hb_tensor_t *full = at ? matmul_raw(at, g) : NULL;
            hb_tensor_free(at);
            gb = full ? hb_sum_to(full, b->ndim, b->size) : NULL;
            hb_tensor_free(full);
        }
        if (!gb) return -1;
        gin[1] = gb;
    }
    return 0;
}

static hb_tensor_t *matmul_raw(hb_tensor_t *a_in, hb_tensor_t *b_in) {
    char x[64], y[64];
    if (a_in->ndim < 1 || b_in->ndim < 1) { hb_seterr("matmul: operands must have at least 1 dim"); return NULL; }
    if (!hb_dtype_is_float(a_in->dtype) || a_in->dtype != b_in->dtype) {
        hb_seterr("matmul: operands must be float tensors of one dtype (got %s and %s)", hb_dtype_name(a_in->dtype),
                  hb_dtype_name(b_in->dtype));
        return NULL;
    }
    /* promote 1-d operands like numpy: a [K] → [1, K], b [K] → [K, 1] */
    hb_tensor_t *a = a_in->ndim == 1 ? hb_unsqueeze(a_in, 0) : hb_tensor_ref(a_in);
    hb_tensor_t *b = b_in->ndim == 1 ? hb_unsqueeze(b_in, 1) : hb_tensor_ref(b_in);
    hb_tensor_t *o = NULL;
    if (!a || !b) goto done;
    int64_t M = a->size[a->ndim - 2], K = a->size[a->ndim - 1], K2 = b->size[b->ndim - 2], N = b->size[b->ndim - 1];
    if (K != K2) {
        hb_seterr("matmul: inner dimensions differ: %s @ %s (%lld vs %lld)", hb_shape_str(a_in, x, sizeof x),
                  hb_shape_str(b_in, y, sizeof y), (long long)K, (long long)K2);
        goto done;
    }
    /* broadcast batch dims */
    int nba = a->ndim - 2, nbb = b->ndim - 2, nb = nba > nbb ? nba : nbb;
    int64_t bshape[HB_MAXDIM];
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - nba), ib = i - (nb - nbb);
        int64_t sa = ia >= 0 ? a->size[ia] : 1, sb = ib >= 0 ? b->size[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            hb_seterr("matmul: batch dims of %s and %s cannot be broadcast", hb_shape_str(a_in, x, sizeof x),
                      hb_shape_str(b_in, y, sizeof y));
            goto done;
        }
        bshape[i] = sa == 1 ? sb : sa;
    }
    int64_t oshape[HB_MAXDIM];
    memcpy(oshape, bshape, sizeof(int64_t) * (size_t)nb);
    oshape[nb] = M;
    oshape[nb + 1] = N;
    o = hb_tensor_empty(a->dtype, nb + 2, oshape);
    if (!o) goto done;
    int64_t nbatch = 1;
    for (int i = 0; i < nb; i++) nbatch *= bshape[i];
    if (M == 0 || N == 0 || nbatch == 0) goto done;
    if (K == 0) { hb_fill_(o, 0); goto done; }
    CBLAS_TRANSPOSE ta, tb;
    int64_t lda, ldb;
    size_t es = hb_dtype_size(a->dtype);
    /* fast path: 2-D right operand, left operand contiguous → one big gemm (for a 2-D left operand the
       same call as the general path's below) */
    if (nbb == 0 && hb_is_contiguous(a)) {
        if (!blas_layout(b, &tb, &ldb)) {
            hb_tensor_t *bc = hb_contiguous(b);
            hb_tensor_free(b);
            b = bc;
            if (!b) { hb_tensor_free(o); o = NULL; goto done; }
            blas_layout(b, &tb, &ldb);
        }
        if (gemm(a->dtype, CblasNoTrans, tb, nbatch * M, N, K, hb_data(a), K, hb_data(b), ldb,
                 bf16_weights(b, nbatch * M, tb), 0.0, hb_data(o), N)) {
            hb_tensor_free(o);
            o = NULL;
        }
        goto done;
    }
    if (!blas_layout(a, &ta, &lda)) {
        hb_tensor_t *c = hb_contiguous(a);
        hb_tensor_free(a);
        a = c;
        if (!a) { hb_tensor_free(o); o = NULL; goto done; }
        blas_layout(a, &ta, &lda);
    }
    if (!blas_layout(b, &tb, &ldb)) {
        hb_tensor_t *c = hb_contiguous(b);
        hb_tensor_free(b);
        b = c;
        if (!b) { hb_tensor_free(o); o = NULL; goto done; }
        blas_layout(b, &tb, &ldb);
    }
    /* a 2-D right operand is the same matrix for every batch entry: its bf16 copy serves them all */
    const uint16_t *b16 = nbb == 0 ? bf16_weights(b, M, tb) : NULL;
    int64_t idx[HB_MAXDIM] = {0};
    for (int64_t k = 0; k < nbatch; k++) {
        int64_t oa = a->offset, ob = b->offset;
        for (int i = 0; i < nb; i++) {
            int ia = i - (nb - nba), ib = i - (nb - nbb);
            if (ia >= 0 && a->size[ia] != 1) oa += idx[i] * a->stride[ia];
            if (ib >= 0 && b->size[ib] != 1) ob += idx[i] * b->stride[ib];
        }
        if (gemm(a->dtype, ta, tb, M, N, K, (char *)a->storage->data + (size_t)oa * es, lda,
                 (char *)b->storage->data + (size_t)ob * es, ldb, b16, 0.0, (char *)hb_data(o) + (size_t)(k * M * N) * es,
                 N)) {
            hb_tensor_free(o);
            o = NULL;
            goto done;
        }
        for (int i = nb - 1; i >= 0; i--) { if (++idx[i] < bshape[i]) break; idx[i] = 0; }
    }
done:
    if (o && (a_in->ndim == 1 || b_in->ndim == 1)) {
        /* drop the promoted dims */
        int g = hb_grad_set(0);
        hb_tensor_t *r = o;
        if (b_in->ndim == 1) { r = hb_squeeze(o, -1); hb_tensor_free(o); o = r; }
        if (o && a_in->ndim == 1) { r = hb_squeeze(o, o->ndim - (b_in->ndim == 1 ? 1 : 2)); hb_tensor_free(o); o = r; }
        hb_grad_set(g);
        if (o && o->grad_fn == NULL && !hb_is_contiguous(o)) { r = hb_contiguous(o); hb_tensor_free(o); o = r; }
    }
    hb_tensor_free(a);
    hb_tensor_free(b);
    return o;
}

hb_tensor_t *hb_matmul(hb_tensor_t *a, hb_tensor_t *b) {
    int g = hb_grad_set(0);
    hb_tensor_t *o = matmul_raw(a, b);
    hb_grad_set(g);
    if (!o) return NULL;
    hb_tensor_t *in[2] = {a, b};
    if (a->ndim >= 2 && b->ndim >= 2) hb_node_attach(o, "matmul", bw_matmul, 2, in, 0);
    else if (hb_needs_grad(2, in)) {
        /* 1-d operands: differentiate through explicit unsqueeze views */
        hb_tensor_free(o);
        hb_tensor_t *a2 = a->ndim == 1 ? hb_unsqueeze(a, 0) : hb_tensor_ref(a);
        hb_tensor_t *b2 = b->ndim == 1 ? hb_unsqueeze(b, 1) : hb_tensor_ref(b);
        hb_tensor_t *r = a2 && b2 ? hb_matmul(a2, b2) : NULL;
        hb_tensor_free(a2);
        hb_tensor_free(b2);
        if (!r) return NULL;
        if (b->ndim == 1) { hb_tensor_t *s = hb_squeeze(r, -1); hb_tensor_free(r); r = s; }
        if (r && a->ndim == 1) { hb_tensor_t *s = hb_squeeze(r, r->ndim - (b->ndim == 1 ? 1 : 2)); hb_tensor_free(r); r = s; }
        return r;
    }
    return o;
}

hb_tensor_t *hb_linear(hb_tensor_t *x, hb_tensor_t *w, hb_tensor_t *bias) {
    char a[64], b[64];
    if (w->ndim != 2 || x->ndim < 1 || x->size[x->ndim - 1] != w->size[1]) {
        hb_seterr("linear: input %s does not match weight %s (expected last dim %lld)", hb_shape_str(x, a, sizeof a),
                  hb_shape_str(w, b, sizeof b), w->ndim == 2 ? (long long)w->size[1] : -1LL);
        return NULL;
    }
    hb_tensor_t *wt = hb_transpose(w, 0, 1);
    if (!wt) return NULL;
    hb_tensor_t *y = hb_matmul(x, wt);
    hb_tensor_free(wt);
    if (!y || !bias) return y;
    hb_tensor_t *r = hb_add(y, bias);
    hb_tensor_free(y);
    return r;
}
