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

/* hb_expf_edges: hb_expf with expf's lower edges kept — NaN stays NaN (hb_expf would clamp it) and
 * x < −87.33 (below FLT_MIN) gives 0 instead of hb_expf's 1.6e−38; still branch-free and vectorised.
 * Above 88.7 it still saturates at ~3.4e38: callers that can see large positive x map that to inf. */
static inline float hb_expf_edges(float x) { return x != x ? x : x < -87.33f ? 0.0f : hb_expf(x); }

/* hb_log1pf_unit: log(1 + y) for y in [0, 1] (the softplus / log-sigmoid tail log1p(e^{-|x|})),
 * branch-free so GCC vectorises the loops that call it. u = 1 + y is split into m·2^e with m in
 * [0.707, 1.414]; log(m) = f − f²/2 + f³·P(f) with f = m − 1 (a degree-8 minimax polynomial, the classic
 * single-precision logf coefficients); then log1p(y) = log(u) · y / (u − 1) restores the relative
 * accuracy the rounding of 1 + y lost for small y. Max error ~2 ulp on [0, 1] (tests/test_core.c). */
static inline float hb_log1pf_unit(float y) {
    float u = 1.0f + y;
    int big = u > 1.41421356f;
    float m = big ? 0.5f * u : u, e = big ? 1.0f : 0.0f;
    float f = m - 1.0f, z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    float lg = f + (f * z * p - 0.5f * z) + e * 0.693147180559945f;
    float d = u - 1.0f;
    return d == 0.0f ? y : lg * (y / d);
}

#endif
