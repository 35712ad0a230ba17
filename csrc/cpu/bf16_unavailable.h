// Off x86-64 the bf16 kernels are never chosen (cpu/isa.h finds no AVX512_BF16): their
// entry points exist for the linker and refuse to run.
#pragma once
#include <c10/util/Exception.h>

#include "bf16_sequence.h"

#define RNNK_BF16_UNAVAILABLE(capability)                                         \
  namespace rnnk::capability {                                                    \
  void run_bf16(const Bf16Forward&) {                                             \
    TORCH_CHECK(false, "rnnkernels: no " #capability " kernels on this machine"); \
  }                                                                               \
  void run_bf16(const Bf16Backward&) {                                            \
    TORCH_CHECK(false, "rnnkernels: no " #capability " kernels on this machine"); \
  }                                                                               \
  }
