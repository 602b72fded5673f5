/* kmath.h — small math helpers shared by kernels and core element-wise loops.
 *
 * hb_expf: a branch-free float exp that GCC vectorises at -O3 without -ffast-math. Range reduction
 * x = n·ln2 + r (ln2 split in two for exactness), a degree-6 polynomial on r, and 2^n built in the
 * exponent bits. Inputs are clamped to [-87.3, 88.7]; relative error within ~1 ulp of expf over that
 * range; inputs below -87.3 (including -inf) give ~1.6e-38 instead of 0, above 88.7 give ~3.4e38.
 * NaN inputs propagate as NaN only through the caller's arithmetic — do not rely on it for NaN checks.
 */
#ifndef HB_KMATH_H
#define HB_KMATH_H
#include <stdint.h>
#include <string.h>

static inline float hb_expf(float x) {
    uint32_t u, mask;
    memcpy(&u, &x, 4);
    mask = -(uint32_t)(u > 0xC2AE0000u); /* x < -87 or -inf (sign set, larger magnitude) */
    u = (u & ~mask) | (0xC2AE0000u & mask);
    mask = -(uint32_t)((u > 0x42B00000u) & (u < 0x80000000u)); /* x > 88 or +inf */
    u = (u & ~mask) | (0x42B00000u & mask);
    memcpy(&x, &u, 4);
    float t = x * 1.44269504088896341f + 12582912.0f; /* round(x/ln2) in the low mantissa bits */
    float n = t - 12582912.0f;
    int32_t ti;
    memcpy(&ti, &t, 4);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t bits = (ti - 0x4B400000 + 127) * (1 << 23); /* 2^n */
    float sc;
    memcpy(&sc, &bits, 4);
    return y * sc;
}

#endif
