/* kreal.h — the scalar type a kernel file is compiled for.
 *
 * Every kernels/<family>.c is written once over `real` and compiled twice by the Makefile:
 * once as float (the fast path models use) and once with -DHB_KERNEL_F64 as double (used by the
 * float64 gradient checks). Its bodies are static functions over `real`; the exported names are
 * written out in full at the end of the file, in an `#ifdef HB_KERNEL_F64 ... #else ... #endif` block
 * of thin wrappers (`int gla_fwd_chunk_f32(float *o, ...) { return fwd_chunk(o, ...); }`), so grep and
 * ctags find every kernel. kgemm() maps to cblas_dgemm in double and to hb_kgemm_f32 (kgemm.h: cblas_sgemm, with the small
 * A·Bᵀ products run as transpose + A·B) in float: the only generic device here.
 */
#ifndef HB_KREAL_H
#define HB_KREAL_H
#include "kgemm.h"
#include <cblas.h>
#include <math.h>
#include <stdint.h>

#ifdef HB_KERNEL_F64
typedef double real;
#define kgemm cblas_dgemm
#define kexp exp
#define klog log
#define ksqrt sqrt
#else
typedef float real;
#define kgemm hb_kgemm_f32
#define kexp expf
#define klog logf
#define ksqrt sqrtf
#endif

#endif
