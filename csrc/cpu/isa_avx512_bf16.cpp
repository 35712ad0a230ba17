// bfloat16 layer kernels on AVX512_BF16's dot products (bf16_sequence.h), for CPUs with
// them but no AMX; only called where the CPU has them.
#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")
#define CPU_CAPABILITY AVX512_BF16
#define RNNK_BF16_DPBF16
#include "avx512_prelude.h"
#include "rows_kernel.h"
#include "bf16_gemm.h"
#include "bf16_forward_kernel.h"
#include "bf16_backward_kernel.h"
#else
#include "bf16_unavailable.h"
RNNK_BF16_UNAVAILABLE(AVX512_BF16)
#endif
