// The CPU's persistent sequence kernels: a whole layer's recurrence (forward, or the
// backward's per-step part) in one call, with the recurrent GEMM computed per block of
// hidden units by our own SIMD tile and the gates applied to its results in the same step.
// Compiled once per instruction set (isa_*.cpp, from sequence_kernel.h); persistent.cpp
// picks one. Raw pointers only: every array is row-contiguous with the widths given.
#pragma once
#include <cstdint>

#include "../cells/cells.h"

namespace rnnk {

// The steps in the order forward visits them (reversed for a reverse direction).
struct StepOrder {
  int64_t steps;
  const int64_t* rows;     // [steps] active rows (a prefix of the batch)
  const int64_t* offsets;  // [steps] first row of the step in the [N, *] arrays
};

template <typename T>
struct SequenceForward {
  CellKind kind;
  StepOrder order;
  int64_t batch, H;
  const T* xg;    // [N, G*H] input projection
  const T* w_hh;  // [G*H, H]
  const T* b_hh;  // [G*H] or null: the recurrent GEMM's bias (b_ih + b_hh where it may)
  const T* h0;    // [B, H]
  T* h_n;         // [B, H] out
  T* c;           // [B, H] in: c0, out: c_n (LSTM)
  T* output;      // [N, H] out
  T* saved;       // [N, S*H] out; null in inference (then h_prev and c_prev are too)
  T* h_prev;      // [N, H] out: each step's input state
  T* c_prev;      // [N, H] out (LSTM)
  int threads;
};

template <typename T>
struct SequenceBackward {
  CellKind kind;
  StepOrder order;  // as the forward visited the steps; backward walks it backwards
  int64_t batch, H;
  const T* w_hh;         // [G*H, H]
  const T* grad_output;  // [N, H]
  const T* saved;        // [N, S*H]
  const T* h_prev;       // [N, H]
  const T* c_prev;       // [N, H] (LSTM)
  T* dh;                 // [B, H] in: grad of h_n, out: grad of h0
  T* dc;                 // [B, H] in: grad of c_n, out: grad of c0 (LSTM)
  T* dxg;                // [N, G*H] out
  T* dhg;                // [N, G*H] out (GRU; the others pass dxg)
  int threads;
};

#define RNNK_DECLARE_SEQUENCE(capability)                     \
  namespace rnnk::capability {                                \
  void run_sequence(const SequenceForward<float>&);           \
  void run_sequence(const SequenceForward<double>&);          \
  void run_sequence(const SequenceBackward<float>&);          \
  void run_sequence(const SequenceBackward<double>&);         \
  }

}  // namespace rnnk

RNNK_DECLARE_SEQUENCE(DEFAULT)
RNNK_DECLARE_SEQUENCE(AVX2)
RNNK_DECLARE_SEQUENCE(AVX512)
#undef RNNK_DECLARE_SEQUENCE
