// The CPU's bfloat16 layer kernels. Forward: the input projection of every step and the
// whole recurrence of one layer direction in one call, GEMMs in bf16 with float32 sums,
// the gate math and the cell state in float32 (the cell headers), h rounded to bf16 where
// it is written (the output, which the next step's GEMM reads; a projected LSTM rounds
// r = o * tanh(c) for its projection GEMM, and the projection's h). Backward: the per-step
// part (the gates' gradients in float32, the dh GEMMs in bf16); layer.cpp keeps the
// whole-sequence GEMMs. Compiled for AMX (isa_amx.cpp) and for AVX512_BF16
// (isa_avx512_bf16.cpp); bf16_layer.cpp picks one. Raw pointers only; bf16 values are
// their 16 bits.
#pragma once
#include <cstdint>

#include "sequence.h"

namespace rnnk {

struct Bf16Forward {
  CellKind kind;
  StepOrder order;
  // total: rows of x and output, over all steps; P: units of h (the projection's, or H).
  int64_t batch, H, P, I, total;
  const uint16_t* x;           // [total, I]
  const uint16_t* w_ih;        // [G*H, I]
  const uint16_t* w_hh;        // [G*H, P]
  const uint16_t* w_hr;        // [P, H] (a projected LSTM) or null
  const float* b_ih;           // [G*H] or null (then b_hh is too)
  const float* b_hh;           // [G*H] or null
  const uint16_t* h0;          // [B, P]
  float* c;                    // [B, H] in: c0, out: c_n (LSTM)
  uint16_t* output;            // [total, P] out
  uint16_t* h_n;               // [B, P] out
  // What backward reads; all null in inference. Gate values and c stay float32.
  float* saved;       // [total, S*H] out
  uint16_t* h_prev;   // [total, P] out: each step's input state
  float* c_prev;      // [total, H] out (LSTM)
  uint16_t* r_seq;    // [total, H] out: what the projection read (projected LSTM)
  int threads;
};

struct Bf16Backward {
  CellKind kind;
  StepOrder order;  // as the forward visited the steps; backward walks it backwards
  int64_t batch, H, P;  // P: units of h (the projection's, or H)
  const uint16_t* w_hh_t;       // [P, G*H]: w_hh transposed
  const uint16_t* w_hr_t;       // [H, P]: w_hr transposed (a projected LSTM), or null
  const uint16_t* grad_output;  // [N, P]
  const float* saved;           // [N, S*H]
  const uint16_t* h_prev;       // [N, P]
  const float* c_prev;          // [N, H] (LSTM)
  float* dh;                    // [B, P] in: grad of h_n, out: grad of h0
  float* dc;                    // [B, H] in: grad of c_n, out: grad of c0 (LSTM)
  uint16_t* dh_seq;             // [N, P] out: each step's grad of h, for w_hr's (or null)
  uint16_t* dxg;                // [N, G*H] out
  uint16_t* dhg;                // [N, G*H] out (GRU; the others pass dxg)
  // [G*H] out, or null without biases: the column sums of dxg and dhg (GRU; the others
  // pass null), from their float32 values.
  float* db_ih;
  float* db_hh;
  int threads;
};

#define RNNK_DECLARE_BF16(capability)      \
  namespace rnnk::capability {             \
  void run_bf16(const Bf16Forward&);       \
  void run_bf16(const Bf16Backward&);      \
  }

}  // namespace rnnk

RNNK_DECLARE_BF16(AMX)
RNNK_DECLARE_BF16(AVX512_BF16)
#undef RNNK_DECLARE_BF16
