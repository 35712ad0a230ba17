// The CPU kernels (pointwise and rowwise passes, persistent sequences, a step's projections) for
// AVX-512 CPUs; only called where the CPU has them.
#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#include "avx512_prelude.h"
#define CPU_CAPABILITY AVX512
#else
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_DEFAULT
#endif
#include "rows_kernel.h"
#include "rowwise_kernel.h"
#include "sequence_kernel.h"
#include "dot_gemm_kernel.h"
