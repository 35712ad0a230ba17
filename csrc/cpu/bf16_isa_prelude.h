// The start of isa_amx.cpp and isa_avx512_bf16.cpp: AVX-512 with BF16 as the target
// (the includer adds AMX's), the feature macros at::vec tests, then the kernels.
#pragma once
#define __AVX__ 1
#define __AVX2__ 1
#define __FMA__ 1
#define __F16C__ 1
#define __AVX512F__ 1
#define __AVX512BW__ 1
#define __AVX512VL__ 1
#define __AVX512DQ__ 1
#define __AVX512BF16__ 1
#define CPU_CAPABILITY_AVX512
