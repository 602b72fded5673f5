/* tr16.h — the 16×16 transpose of 32-bit elements held in sixteen AVX-512 registers, shared by
 * kernels/gemm_bf16.c (packing bf16 pairs along k) and kernels/kgemm.c (hb_transpose_f32's tiles).
 *
 * hb_tr16(r): element t of r[l] → element l of r[t]. Pairs of rows are interleaved (32-bit, then 64-bit
 * unpacks: u[i+s] holds rows i..i+3 of column 4q+s in 128-bit lane q), then the lanes q of u[s], u[4+s],
 * u[8+s], u[12+s] are gathered into column 4q+s by two rounds of 128-bit shuffles. Compiled for AVX-512F
 * by its own target attribute, so a file built without -mavx512f can still call it from a function
 * that is (gemm_bf16.c's runtime-dispatched code). */
#ifndef HB_TR16_H
#define HB_TR16_H
#include <immintrin.h>

__attribute__((target("avx512f"), unused)) static inline void hb_tr16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int s = 0; s < 4; s++) {
        __m512i xl = _mm512_shuffle_i32x4(u[s], u[4 + s], 0x44), xh = _mm512_shuffle_i32x4(u[s], u[4 + s], 0xee);
        __m512i yl = _mm512_shuffle_i32x4(u[8 + s], u[12 + s], 0x44);
        __m512i yh = _mm512_shuffle_i32x4(u[8 + s], u[12 + s], 0xee);
        r[s] = _mm512_shuffle_i32x4(xl, yl, 0x88);
        r[4 + s] = _mm512_shuffle_i32x4(xl, yl, 0xdd);
        r[8 + s] = _mm512_shuffle_i32x4(xh, yh, 0x88);
        r[12 + s] = _mm512_shuffle_i32x4(xh, yh, 0xdd);
    }
}

#endif
