// The CPU kernels (pointwise and rowwise passes, persistent sequences, a step's projections) for
// AVX2 + FMA CPUs; only called where the CPU has them.
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,f16c")
// The target pragma does not define the feature macros that sleef.h and at::vec test.
#define __AVX__ 1
#define __AVX2__ 1
#define __FMA__ 1
#define __F16C__ 1
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#else
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_DEFAULT
#endif
#include "rows_kernel.h"
#include "rowwise_kernel.h"
#include "sequence_kernel.h"
#include "dot_gemm_kernel.h"
