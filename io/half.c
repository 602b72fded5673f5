/* half.c — float32 <-> bf16 / f16 bit-level conversions (see half.h for the contract).
 *
 * Everything is done on integer bit patterns (memcpy for the float <-> uint32 punning) so results do
 * not depend on the compiler's or CPU's half-precision support, rounding mode or flush-to-zero flags.
 */
#include "half.h"
#include <string.h>

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

void hb_bf16_to_f32(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bits_f32((uint32_t)src[i] << 16);
}

/* f16 fields: e (5 bits, bias 15), m (10 bits). f32: bias 127, 23 mantissa bits. */
static uint32_t f16_to_f32_bits(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 31) return sign | 0x7f800000u | (m << 13);        /* inf, NaN with payload */
    if (e != 0) return sign | ((e + 112) << 23) | (m << 13);    /* normal: rebias 15 -> 127 */
    if (m == 0) return sign;                                     /* ±0 */
    /* subnormal m * 2^-24: normalise so the leading 1 becomes the implicit bit */
    uint32_t e32 = 113;                                          /* exponent of 2^-14 */
    while (!(m & 0x400)) { m <<= 1; e32--; }
    return sign | (e32 << 23) | ((m & 0x3ff) << 13);
}

void hb_f16_to_f32(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bits_f32(f16_to_f32_bits(src[i]));
}

static uint16_t f32_to_bf16_bits(uint32_t u) {
    if ((u & 0x7fffffffu) > 0x7f800000u)                         /* NaN: keep sign/payload, quiet */
        return (uint16_t)((u >> 16) | 0x0040);
    /* round to nearest even on the 16 dropped bits; overflow carries into inf as it should */
    uint32_t lsb = (u >> 16) & 1;
    return (uint16_t)((u + 0x7fffu + lsb) >> 16);
}

void hb_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16_bits(f32_bits(src[i]));
}

/* Round q + rem/2^shift to nearest even, where half = 2^(shift-1). */
static uint32_t round_even(uint32_t q, uint32_t rem, uint32_t half) {
    return (rem > half || (rem == half && (q & 1))) ? q + 1 : q;
}

static uint16_t f32_to_f16_bits(uint32_t u) {
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00 | ((a >> 13) & 0x3ff);  /* NaN: quiet, payload kept */
    if (a >= 0x477ff000u) return sign | 0x7c00;     /* >= 65520 (midway 65504..65536) or inf: inf */
    if (a >= 0x38800000u) {                          /* >= 2^-14: normal f16 */
        uint32_t t = a - 0x38000000u;                /* rebias exponent 127 -> 15 */
        return sign | (uint16_t)round_even(t >> 13, t & 0x1fff, 0x1000);
    }
    /* subnormal f16 (or zero): result = round(value * 2^24). value = m * 2^(e-150). */
    uint32_t e = a >> 23;
    if (e < 102) return sign;                        /* value < 2^-25: rounds to ±0 */
    uint32_t m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;   /* shift in [14, 24] */
    return sign | (uint16_t)round_even(m >> shift, m & ((1u << shift) - 1), 1u << (shift - 1));
}

void hb_f32_to_f16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16_bits(f32_bits(src[i]));
}
