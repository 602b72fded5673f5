/* kgemm.h — the float32 block product every kernel calls (kreal.h maps kgemm to it).
 *
 * hb_kgemm_f32 has cblas_sgemm's signature and result (row-major or column-major, any transposition, alpha,
 * beta; beta = 0 never reads C). Row-major products of the kernels' block sizes (M·N·K ≤ 2^22; with op(B) = Bᵀ
 * also N·K ≤ 16384) can run on its own register-blocked kernel (kgemm.c: 8 rows × 32 columns of C in AVX-512
 * registers, 6 × 16 with AVX2; op(B) = Bᵀ first transposed into a per-thread buffer), which sums every element
 * the same way — acc = fma(a_ik, b_kj, acc) for k = 0..K−1, then C = fma(beta, C, alpha·acc) — whatever block it
 * falls in, so a product cut into sub-products gives the same bits. Which path runs is decided once per process
 * (hb_kgemm_own: `HYBLUA_KGEMM=own|blas`, else the rule below), so results do not depend on the thread count.
 *
 * The rule, from one-thread fwd+bwd of the chunked kernels at T 2048 (docs/performance.md): with AVX-512 compiled
 * in, the own kernel unless OpenBLAS runs its AVX-512 kernels (SkylakeX, Cooperlake, SapphireRapids). Against
 * OpenBLAS's AVX2 (Haswell) kernels it made every kernel 1.3–2.1× faster on a Zen 5 core; against its AVX-512
 * kernels it was 0.78–1.28× at D 64 and 0.84–1.44× at D 128 there, and 0.89–0.98× at D 64 / 1.07–1.48× at D 128 on a
 * Xeon (Sapphire/Emerald Rapids) — no clear gain, so OpenBLAS stays. In AVX2 builds OpenBLAS at first (the own
 * AVX2 kernel was 1.0–1.05× slower at D 64 and 1.2–1.35× at D 128 than OpenBLAS's Haswell kernels). Those figures
 * predate the unmasked full-block kernel (2026-12-07 evening): it made the own path's kernels 1.2–1.5× faster (Zen 5,
 * D 64, every kernel), and against OpenBLAS's Cooperlake kernels it stands at 0.78–1.06× (D 64) and 0.84–1.32× (D 128),
 * its AVX2 form against the Haswell kernels at 0.73–1.37× / 0.72–1.16× (a loaded machine): still no clear gain
 * where OpenBLAS has kernels for the ISA, so the rule is unchanged (tests/bench/results/kgemm_full_ab.md).
 * AVX2 builds, rerun on a quiet Zen 5 core (2026-12-07, tests/bench/results/kgemm_avx2_split.md): the own AVX2
 * kernel is 1.01–1.43× OpenBLAS's Haswell kernels at D 64 and 0.78–0.98× at D 128, whose products are larger;
 * so in AVX2 builds the default puts products of at most 64³ (M·N·K) on the own kernel and larger ones on
 * OpenBLAS (all on OpenBLAS where it runs AVX-512 kernels, as in AVX-512 builds; hb_kgemm_own() = 2,
 * hb.kgemm_path() "own-small"): 1.02–1.10× the all-OpenBLAS speed at D 64 on every kernel, the same within noise
 * at D 128.
 * Without AVX2 + FMA, and for larger or column-major products, cblas_sgemm (A·Bᵀ of small sizes as transpose +
 * NoTrans × NoTrans: OpenBLAS's NT form of them was slower on its SkylakeX kernels). Concurrent small products cost the same per
 * thread on both paths (kernels_bench blocks: 0.73 / 0.78 of the 1-thread rate at 16 threads): OpenBLAS's
 * per-call buffer lock does not serialise the kernels. */
#ifndef HB_KGEMM_H
#define HB_KGEMM_H
#include <cblas.h>
#include <stdint.h>

void hb_kgemm_f32(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* where small products run, decided once (HYBLUA_KGEMM=own|blas, else the rule above): 1 on kgemm.c's own kernel,
 * 0 on OpenBLAS, 2 those of at most 64³ on the own kernel and larger ones on OpenBLAS (AVX2 builds) */
int hb_kgemm_own(void);
/* set that choice (tests and benchmarks): mode 0, 1 or 2 as above; 1 and 2 have no effect where the kernel is not
 * compiled (no AVX2 + FMA) */
void hb_kgemm_force(int mode);
/* the own kernel compiled into this build: "avx512", "avx2" or "none" (no AVX2 + FMA at compile time: -march) */
const char *hb_kgemm_isa(void);

/* dst (cols × rows, row stride ldd) = the transpose of src (rows × cols, row stride lds). 16×16 tiles
 * in registers where AVX-512 is compiled in, element by element otherwise and at the edges. */
void hb_transpose_f32(float *restrict dst, int64_t ldd, const float *restrict src, int64_t lds, int64_t rows,
                      int64_t cols);

#endif
