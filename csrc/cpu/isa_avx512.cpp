// The CPU kernels (pointwise passes, persistent sequences) for AVX-512 CPUs; only called
// where the CPU has them.
#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
// The target pragma does not define the feature macros that sleef.h and at::vec test.
#define __AVX__ 1
#define __AVX2__ 1
#define __FMA__ 1
#define __F16C__ 1
#define __AVX512F__ 1
#define __AVX512BW__ 1
#define __AVX512VL__ 1
#define __AVX512DQ__ 1
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#else
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_DEFAULT
#endif
#include "rows_kernel.h"
#include "sequence_kernel.h"
