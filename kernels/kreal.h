/* kreal.h — the scalar type a kernel file is compiled for.
 *
 * Every kernels/<family>.c is written once over `real` and compiled twice by the Makefile:
 * once as float (functions suffixed _f32, the fast path models use) and once with
 * -DHB_KERNEL_F64 as double (suffix _f64, used by the float64 gradient checks).
 * KN(name) appends the suffix; kgemm() maps to cblas_sgemm / cblas_dgemm.
 * This is the only generic-programming device in kernels/: one macro for names, one for BLAS.
 */
#ifndef HB_KREAL_H
#define HB_KREAL_H
#include <cblas.h>
#include <math.h>
#include <stdint.h>

#ifdef HB_KERNEL_F64
typedef double real;
#define KN(name) name##_f64
#define kgemm cblas_dgemm
#define kexp exp
#define klog log
#define ksqrt sqrt
#else
typedef float real;
#define KN(name) name##_f32
#define kgemm cblas_sgemm
#define kexp expf
#define klog logf
#define ksqrt sqrtf
#endif

#endif
