// The CPU's bfloat16 layer inference: the input projection of every step and the whole
// recurrence of one layer direction in one call, GEMMs in bf16 with float32 sums, the gate
// math and the cell state in float32 (the cell headers), h rounded to bf16 where it is
// written (the output, which the next step's GEMM reads). Compiled for AMX (isa_amx.cpp)
// and for AVX512_BF16 (isa_avx512_bf16.cpp); bf16_layer.cpp picks one. Raw pointers only;
// bf16 values are their 16 bits.
#pragma once
#include <cstdint>

#include "sequence.h"

namespace rnnk {

struct Bf16Inference {
  CellKind kind;
  StepOrder order;
  int64_t batch, H, I, total;  // total: rows of x and output, over all steps
  const uint16_t* x;           // [total, I]
  const uint16_t* w_ih;        // [G*H, I]
  const uint16_t* w_hh;        // [G*H, H]
  const float* b_ih;           // [G*H] or null (then b_hh is too)
  const float* b_hh;           // [G*H] or null
  const uint16_t* h0;          // [B, H]
  float* c;                    // [B, H] in: c0, out: c_n (LSTM)
  uint16_t* output;            // [total, H] out
  uint16_t* h_n;               // [B, H] out
  int threads;
};

#define RNNK_DECLARE_BF16(capability) \
  namespace rnnk::capability {        \
  void run_bf16_inference(const Bf16Inference&); \
  }

}  // namespace rnnk

RNNK_DECLARE_BF16(AMX)
RNNK_DECLARE_BF16(AVX512_BF16)
#undef RNNK_DECLARE_BF16
