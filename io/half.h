/* half.h — conversions between float32 and the two 16-bit float formats safetensors stores.
 *
 * Both 16-bit formats are passed around as their raw bit patterns (uint16_t, host order; safetensors
 * is little-endian, which is the host order on every machine hyblua supports).
 *   bf16: 1 sign, 8 exponent, 7 mantissa bits — the top half of a float32.
 *   f16 : IEEE binary16, 1 sign, 5 exponent, 10 mantissa bits, subnormals below 2^-14.
 * Widening (to f32) is exact for every input: subnormals, ±0, ±inf, and NaNs keep sign and payload.
 * Narrowing rounds to nearest, ties to even (what PyTorch's .to(torch.float16/bfloat16) does);
 * values too large for the format become ±inf, NaN stays NaN (sign and top payload bits kept, quiet
 * bit set so a payload can never collapse into inf).
 * All functions take dst first, then src, then the element count; dst and src must not overlap.
 * n == 0 is allowed (pointers may then be NULL).
 */
#ifndef HB_HALF_H
#define HB_HALF_H
#include <stddef.h>
#include <stdint.h>

/* dst[i] = (float) bf16 src[i], exact. dst (n) [OUT], src (n) [IN]. */
void hb_bf16_to_f32(float *dst, const uint16_t *src, size_t n);

/* dst[i] = (float) f16 src[i], exact. dst (n) [OUT], src (n) [IN]. */
void hb_f16_to_f32(float *dst, const uint16_t *src, size_t n);

/* dst[i] = bf16(src[i]), round to nearest even. dst (n) [OUT], src (n) [IN]. */
void hb_f32_to_bf16(uint16_t *dst, const float *src, size_t n);

/* dst[i] = f16(src[i]), round to nearest even, overflow to ±inf. dst (n) [OUT], src (n) [IN]. */
void hb_f32_to_f16(uint16_t *dst, const float *src, size_t n);

#endif
