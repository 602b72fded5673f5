/* gemm_bf16.c — C = op(A)·op(B) + beta·C with bfloat16 inputs and float32 accumulation (AVX512_BF16).
 *
 * Shape letters: M, N, K the product's dims; MR×NR the register tile of C (NR = 16·NV floats: NV zmm
 * per row); KC the k-block, MC the row block of A, NC the column block of B kept packed.
 *
 * The maths: with r(x) the bf16 rounding of gemm_bf16.h,
 *   C[i,j] = Σ_k r(A[i,k]) · r(B[k,j])  (+ beta·C[i,j])
 * Each product of two bf16 values is exact in float32 (8-bit significands); the sum is float32. One
 * vdpbf16ps adds, per float32 lane, the two products of a PAIR of k values: lane j of the accumulator
 * += a[2p]·b[2p, j] + a[2p+1]·b[2p+1, j], 16 lanes × 2 multiply-adds per instruction — twice the
 * work of an fp32 FMA at the same instruction rate, which is where a ~2× over sgemm comes from.
 *
 * Blocking (Goto/BLIS): for each NC column block and KC k-block, op(B) is packed into NR-wide slivers
 * (per k-pair p: NR dwords, dword j = (r(B[2p,j]), r(B[2p+1,j])) as two bf16); for each MC row block
 * op(A) is packed into MR-row slivers (per k-pair p: MR dwords (r(A[i,2p]), r(A[i,2p+1]))). The micro-
 * kernel holds an MR×NR tile of C in MR·NV zmm accumulators and per k-pair loads NV vectors of B and
 * broadcasts one dword of A per row. Packing converts float32 to bf16 16 lines at a time: where the
 * source lines run along k (row-major A, transposed B) each line gives 16 pairs and a 16×16 dword
 * transpose turns lines into k-pairs; where they run across lines, two rows (k, k+1) are converted and
 * their words interleaved. Edges (M, N not multiples of the tile, odd K) are packed with zeros and
 * stored through masks; K blocks after the first accumulate into C.
 *
 * Threads: like core/linalg.c, the rows of C (or its columns when N > M) are split into one block per
 * thread on hb_parallel_for, each block a single-threaded product with its own packing buffers
 * (allocated before the region and kept for the next call; gemm_bf16_release_buffers frees them). The
 * k-blocking and the summation order of an element never depend on the split, so results do not
 * depend on the thread count.
 *
 * The AVX-512 functions carry a target attribute, so the file builds with any flags; gemm_bf16 checks
 * the CPU once (__builtin_cpu_supports) and otherwise rounds A and B into float32 copies and calls
 * cblas_sgemm (same rounding; float32 sums in OpenBLAS's order). gemm_bf16_ref is the naive reference.
 *
 * Float only: the Makefile also compiles every kernel file with -DHB_KERNEL_F64; that object is empty.
 */
#ifndef HB_KERNEL_F64
#include "gemm_bf16.h"
#include "alloc.h"
#include "parallel.h"
#include <cblas.h>
#include "tr16.h"
#include <immintrin.h>
#include <stdatomic.h>
#include <string.h>

/* Blocking, measured on the 2-core Zen 4 (tests/bench: 8×32, 8×48, 16×16 tiles and KC 256…1024 were
   within a few per cent of each other; larger KC wins by sweeping C fewer times). Overridable with -D
   for experiments. */
#ifndef GB_MR
#define GB_MR 8    /* rows of the register tile: 8 or 16 (a packing group of 16 lines fills 16/MR slivers) */
#endif
#ifndef GB_NV
#define GB_NV 2    /* zmm per tile row: NR = 32 columns, MR·NV = 16 accumulators */
#endif
#ifndef GB_KC
#define GB_KC 768  /* k-block (even): a B sliver is KC/2·NR·4 = 48 KiB (L1/L2), the k-sum of most training
                      products (K ≤ 768) in one pass over C */
#endif
#ifndef GB_MC
#define GB_MC 96   /* row block (multiple of 16): MC·KC·2 = 144 KiB of packed A, kept in L2 */
#endif
#ifndef GB_NC
#define GB_NC 2048 /* column block (multiple of NR): KC·NC·2 = 3 MiB of packed B (L3) */
#endif
#define MR GB_MR
#define NV GB_NV
#define NR (16 * GB_NV)

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* ---- rounding and the reference --------------------------------------------------------------- */

/* bf16 bits of x as vcvtne2ps2bf16 computes them: ±0 and subnormals → ±0, NaN → quiet NaN (sign and
   top payload kept), otherwise round to nearest even (overflow carries into ±inf). */
static uint16_t round_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float gemm_bf16_round(float x) {
    uint32_t u = (uint32_t)round_bits(x) << 16;
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}

void gemm_bf16_round_bits(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = round_bits(src[i]);
}

static int check_args(const float *C, const float *A, const float *B, int trans_a, int trans_b, int64_t M,
                      int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
    if (M < 0 || N < 0 || K < 0) return -1;
    if (M == 0 || N == 0) return 0;
    int64_t ra = trans_a ? M : K, rb = trans_b ? K : N; /* row lengths of A and B as stored */
    if (!C || ldc < N) return -1;
    if (K > 0 && (!A || !B || lda < ra || ldb < rb)) return -1;
    return 0;
}

int gemm_bf16_ref(float *C, const float *A, const float *B, int trans_a, int trans_b, float beta, int64_t M,
                  int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
    if (check_args(C, A, B, trans_a, trans_b, M, N, K, lda, ldb, ldc)) return -1;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                float a = trans_a ? A[k * lda + i] : A[i * lda + k], b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                s += (double)gemm_bf16_round(a) * (double)gemm_bf16_round(b);
            }
            float *c = &C[i * ldc + j];
            *c = beta == 0 ? (float)s : (float)(s + (double)beta * (double)*c);
        }
    return 0;
}

/* ---- CPU check and the portable fallback --------------------------------------------------------- */

static int allow_native = 1, cpu_state = -1; /* -1: not checked yet */

static int cpu_has_bf16(void) {
    if (cpu_state < 0) {
        __builtin_cpu_init();
        cpu_state = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
    }
    return cpu_state;
}

int gemm_bf16_native(void) { return allow_native && cpu_has_bf16(); }

int gemm_bf16_allow_native(int allow) {
    int old = allow_native;
    allow_native = allow != 0;
    return old;
}

/* sgemm on rounded, contiguous copies of op(A) (M,K) and op(B) (K,N). */
static int gemm_portable(float *C, const float *A, const float *B, int trans_a, int trans_b, float beta, int64_t M,
                         int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
    float *ra = hb_malloc((size_t)(M * K) * sizeof(float)), *rb = hb_malloc((size_t)(K * N) * sizeof(float));
    if (!ra || !rb) {
        hb_free(ra);
        hb_free(rb);
        return -1;
    }
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++) ra[i * K + k] = gemm_bf16_round(trans_a ? A[k * lda + i] : A[i * lda + k]);
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) rb[k * N + j] = gemm_bf16_round(trans_b ? B[j * ldb + k] : B[k * ldb + j]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, ra, (int)K, rb, (int)N, beta,
                C, (int)ldc);
    hb_free(ra);
    hb_free(rb);
    return 0;
}

/* ---- packing ------------------------------------------------------------------------------------ */

/* n floats from p (0 ≤ n; lanes ≥ n read as 0 and are not touched in memory). */
BF16_TARGET static inline __m512 load16(const float *p, int64_t n) {
    if (n >= 16) return _mm512_loadu_ps(p);
    if (n <= 0) return _mm512_setzero_ps();
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}

/* Store the 16 dwords of k-pair p of one 16-line group into slivers W dwords wide: lines 0..15 of the
   group start at base (line l of the group is at sliver offset l when W ≥ 16; when W = 8 the second
   half goes to the next sliver, W·kp dwords further). */
BF16_TARGET static inline void store_pair(uint32_t *base, int64_t p, int W, int64_t kp, __m512i d) {
    if (W >= 16) {
        _mm512_storeu_si512(base + p * W, d);
    } else {
        _mm256_storeu_si256((__m256i *)(base + p * W), _mm512_castsi512_si256(d));
        _mm256_storeu_si256((__m256i *)(base + W * kp + p * W), _mm512_extracti64x4_epi64(d, 1));
    }
}

/* One group of `lines` ≤ 16 lines whose elements run along k: line l, k-value k at src[l·ld + k],
   k < kc. Each line gives 16 pairs per 32 k-values; a transpose makes them k-pairs of 16 lines. */
BF16_TARGET static void pack_group_along_k(uint32_t *base, int W, int64_t kp, const float *src, int64_t ld,
                                           int64_t lines, int64_t kc) {
    __m512i r[16];
    for (int64_t kb = 0; kb < kc; kb += 32) {
        for (int64_t l = 0; l < 16; l++) {
            if (l < lines) {
                const float *s = src + l * ld + kb;
                __m512 lo = load16(s, kc - kb), hi = load16(s + 16, kc - kb - 16);
                r[l] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            } else {
                r[l] = _mm512_setzero_si512();
            }
        }
        hb_tr16(r);
        for (int64_t t = 0; t < 16 && kb / 2 + t < kp; t++) store_pair(base, kb / 2 + t, W, kp, r[t]);
    }
}

/* Lines stored across memory: line j, k-value k at src[k·ld + j], j < n. Rows k and k+1 are read
   whole (sequential in memory: the loop runs over k-pairs, then over 16-line groups), converted
   together and their words interleaved into (k, k+1) pairs. Rows k+4 and k+5 are prefetched (the
   source is usually a large activation or gradient on its way from L3/DRAM: measured 1.7× faster). */
BF16_TARGET static void pack_across(uint32_t *dst, int W, int64_t kp, const float *src, int64_t ld, int64_t n,
                                    int64_t kc) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t p = 0; p < kp; p++) {
        const float *r0 = src + 2 * p * ld, *r1 = r0 + ld;
        int odd = 2 * p + 1 < kc;
        int ahead = 2 * p + 5 < kc;
        for (int64_t g = 0; g < n; g += 16) {
            if (ahead) {
                _mm_prefetch((const char *)(r0 + 4 * ld + g), _MM_HINT_T0);
                _mm_prefetch((const char *)(r1 + 4 * ld + g), _MM_HINT_T0);
            }
            __m512 x0 = load16(r0 + g, n - g), x1 = odd ? load16(r1 + g, n - g) : _mm512_setzero_ps();
            __m512i w = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
            store_pair(dst + (g / W) * W * kp + g % W, p, W, kp, _mm512_permutexvar_epi16(idx, w));
        }
    }
}

/* Pack `n` lines (rows of op(A) or columns of op(B)) starting at line j0, k-values k0..k0+kc−1, into
   W-wide slivers of kp = ⌈kc/2⌉ pairs; lines past n up to the 16-line group are zero-filled.
   along_k: element (line j, k) at X[j·ld + k]; else at X[k·ld + j]. */
BF16_TARGET static void pack(uint32_t *dst, int W, const float *X, int along_k, int64_t ld, int64_t j0, int64_t n,
                             int64_t k0, int64_t kc) {
    int64_t kp = (kc + 1) / 2;
    if (!along_k) {
        pack_across(dst, W, kp, X + k0 * ld + j0, ld, n, kc);
        return;
    }
    for (int64_t g = 0; g < n; g += 16) {
        int64_t lines = n - g < 16 ? n - g : 16;
        pack_group_along_k(dst + (g / W) * W * kp + g % W, W, kp, X + (j0 + g) * ld + k0, ld, lines, kc);
    }
}

/* ---- micro-kernel and the single-threaded product ------------------------------------------------ */

/* C tile (mr ≤ MR rows, nr ≤ NR columns, row stride ldc) = acc (overwrite) or beta·C + acc, where
   acc = Σ_p a-sliver pair p ⊗ b-sliver pair p over kp pairs. */
BF16_TARGET static void micro_kernel(int64_t kp, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, int mr,
                                     int nr, int overwrite, float beta) {
    __m512 acc[MR][NV];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kp; p++) {
        __m512bh bv[NV];
        for (int v = 0; v < NV; v++) bv[v] = (__m512bh)_mm512_loadu_si512(b + p * NR + 16 * v);
        for (int i = 0; i < MR; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[p * MR + i]);
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, bv[v]);
        }
    }
    __mmask16 m[NV];
    for (int v = 0; v < NV; v++) {
        int rem = nr - 16 * v;
        m[v] = rem >= 16 ? 0xffff : rem > 0 ? (__mmask16)((1u << rem) - 1) : 0;
    }
    const __m512 vb = _mm512_set1_ps(beta);
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
        for (int v = 0; v < NV; v++) {
            if (!m[v]) continue;
            float *cp = c + i * ldc + 16 * v;
            __m512 r = acc[i][v];
            if (!overwrite) {
                __m512 old = _mm512_maskz_loadu_ps(m[v], cp);
                r = beta == 1 ? _mm512_add_ps(r, old) : _mm512_fmadd_ps(vb, old, r);
            }
            _mm512_mask_storeu_ps(cp, m[v], r);
        }
    }
}

typedef struct {
    float *C;
    const float *A, *B;
    int ta, tb, by_rows;
    float beta;
    int64_t M, N, K, lda, ldb, ldc, block;
    uint32_t *buf;          /* per item: ap_len + bp_len dwords */
    size_t ap_len, bp_len;
} job_t;

/* The rows i0..i0+m−1 × columns j0..j0+n−1 of C, single-threaded, with packing buffers ap and bp. */
BF16_TARGET static void product_block(const job_t *j, int64_t i0, int64_t m, int64_t j0, int64_t n, uint32_t *ap,
                                      uint32_t *bp) {
    for (int64_t jc = 0; jc < n; jc += GB_NC) {
        int64_t nc = n - jc < GB_NC ? n - jc : GB_NC;
        for (int64_t pc = 0; pc < j->K; pc += GB_KC) {
            int64_t kc = j->K - pc < GB_KC ? j->K - pc : GB_KC, kp = (kc + 1) / 2;
            pack(bp, NR, j->B, j->tb, j->ldb, j0 + jc, nc, pc, kc);
            int overwrite = pc == 0 && j->beta == 0;
            float beta = pc == 0 ? j->beta : 1.0f;
            for (int64_t ic = 0; ic < m; ic += GB_MC) {
                int64_t mc = m - ic < GB_MC ? m - ic : GB_MC;
                pack(ap, MR, j->A, !j->ta, j->lda, i0 + ic, mc, pc, kc);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = nc - jr < NR ? (int)(nc - jr) : NR;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int mr = mc - ir < MR ? (int)(mc - ir) : MR;
                        micro_kernel(kp, ap + ir * kp, bp + jr * kp, j->C + (i0 + ic + ir) * j->ldc + j0 + jc + jr,
                                     j->ldc, mr, nr, overwrite, beta);
                    }
                }
            }
        }
    }
}

static void block_item(void *ctx, int64_t it) {
    const job_t *j = ctx;
    uint32_t *ap = j->buf + (size_t)it * (j->ap_len + j->bp_len), *bp = ap + j->ap_len;
    int64_t lo = it * j->block, len = j->by_rows ? j->M : j->N;
    int64_t cnt = len - lo < j->block ? len - lo : j->block;
    if (j->by_rows) product_block(j, lo, cnt, 0, j->N, ap, bp);
    else product_block(j, 0, j->M, lo, cnt, ap, bp);
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* The packing buffers (a few MiB for a large product) are kept between calls: allocating them each
   time costs page faults and kernel page clearing (measured: 4% of a bf16 training step). One cached
   buffer, taken by one call at a time; a concurrent call allocates its own. */
static struct {
    atomic_int busy;
    uint32_t *buf;
    size_t bytes;
} cache;

static uint32_t *buffers_get(size_t bytes, int *cached) {
    bytes = (bytes + 63) / 64 * 64;
    *cached = !atomic_exchange(&cache.busy, 1);
    if (!*cached) return hb_aligned_alloc(64, bytes);
    if (cache.bytes < bytes) {
        hb_free(cache.buf);
        cache.buf = hb_aligned_alloc(64, bytes);
        cache.bytes = cache.buf ? bytes : 0;
    }
    if (!cache.buf) atomic_store(&cache.busy, 0);
    return cache.buf;
}

static void buffers_put(uint32_t *buf, int cached) {
    if (cached) atomic_store(&cache.busy, 0);
    else hb_free(buf);
}

void gemm_bf16_release_buffers(void) {
    if (atomic_exchange(&cache.busy, 1)) return; /* in use: kept */
    hb_free(cache.buf);
    cache.buf = NULL;
    cache.bytes = 0;
    atomic_store(&cache.busy, 0);
}

int gemm_bf16(float *C, const float *A, const float *B, int trans_a, int trans_b, float beta, int64_t M, int64_t N,
              int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
    if (check_args(C, A, B, trans_a, trans_b, M, N, K, lda, ldb, ldc)) return -1;
    if (M == 0 || N == 0) return 0;
    if (K == 0) { /* empty sum: C = beta·C */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0.0f : beta * C[i * ldc + j];
        return 0;
    }
    if (!gemm_bf16_native()) return gemm_portable(C, A, B, trans_a, trans_b, beta, M, N, K, lda, ldb, ldc);
    job_t j = {.C = C, .A = A, .B = B, .ta = trans_a != 0, .tb = trans_b != 0, .by_rows = M >= N, .beta = beta,
               .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc};
    /* one block per thread, rounded to 16 rows/columns (as linalg.c splits sgemm); small products: one */
    int64_t len = j.by_rows ? M : N;
    int nt = 2.0 * (double)M * (double)N * (double)K < 4e6 ? 1 : hb_threads_get();
    j.block = round_up((len + nt - 1) / nt, 16);
    if (j.block < 64) j.block = 64;
    int64_t items = (len + j.block - 1) / j.block;
    int64_t mb = j.by_rows ? j.block : M, nb = j.by_rows ? N : j.block, kpm = (K < GB_KC ? K + 1 : GB_KC) / 2;
    j.ap_len = (size_t)(round_up(mb < GB_MC ? mb : GB_MC, 16) * kpm);
    j.bp_len = (size_t)(round_up(nb < GB_NC ? nb : GB_NC, NR) * kpm);
    size_t bytes = (size_t)items * (j.ap_len + j.bp_len) * sizeof(uint32_t);
    int cached;
    j.buf = buffers_get(bytes, &cached);
    if (!j.buf) return -1;
    hb_parallel_for(items, block_item, &j);
    buffers_put(j.buf, cached);
    return 0;
}

#else
typedef int gemm_bf16_float_only; /* the _f64 build of this file: nothing (ISO C wants a declaration) */
#endif
