// After an AVX-512 target pragma (isa_avx512.cpp, isa_avx512_bf16.cpp, isa_amx.cpp): the
// feature macros that sleef.h and at::vec test, which the pragma does not define.
#pragma once
#define __AVX__ 1
#define __AVX2__ 1
#define __FMA__ 1
#define __F16C__ 1
#define __AVX512F__ 1
#define __AVX512BW__ 1
#define __AVX512VL__ 1
#define __AVX512DQ__ 1
#define CPU_CAPABILITY_AVX512
