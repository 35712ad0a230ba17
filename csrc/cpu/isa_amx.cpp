// bfloat16 layer kernels on AMX tiles (bf16_sequence.h); only called where the CPU has
// AMX and the process was granted its tile data.
#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c,amx-tile,amx-bf16")
#define CPU_CAPABILITY AMX
#define RNNK_BF16_AMX
#include "avx512_prelude.h"
#include "rows_kernel.h"
#include "bf16_gemm.h"
#include "bf16_forward_kernel.h"
#include "bf16_backward_kernel.h"
#else
#include "bf16_unavailable.h"
RNNK_BF16_UNAVAILABLE(AMX)
#endif
