// The CPU's bfloat16 layer kernels (cpu/bf16_sequence.h) behind ATen tensors.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

#include "cpu/sequence.h"

namespace rnnk {

// bf16 on the CPU and a CPU with bf16 dot products (cpu/isa.h): what the bf16 kernels
// cover. Other bf16 calls are computed in float32 by the caller.
bool bf16_cpu_applies(const at::Tensor& x);

// One layer direction: x [N, I], h0 [B, P], w_ih, w_hh, the biases and w_hr [P, H] (a
// projected LSTM; undefined otherwise, and P = H) in bf16 (operands checked: layer.cpp);
// c [B, H] float32, c0 in and c_n out (LSTM; undefined otherwise); output [N, P] and h_n
// [B, P] bf16, written. For backward saved [N, S*H] and c_prev [N, H] (LSTM) float32,
// h_prev [N, P] and r_seq [N, H] (projected: what the projection read) bf16, written;
// undefined in inference.
struct Bf16Kept {
  at::Tensor saved, h_prev, c_prev, r_seq;
};
void bf16_forward_cpu(CellKind kind, const StepOrder& order, const at::Tensor& x,
                      const at::Tensor& h0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                      const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh,
                      const at::Tensor& w_hr, const at::Tensor& c, const at::Tensor& output,
                      const at::Tensor& h_n, const Bf16Kept& kept);

// The backward's recurrence of one layer direction, from what bf16_forward_cpu kept:
// grad_output [N, P] bf16; dh [B, P], dc [B, H] float32 (grads of h_n, c_n in, of h0, c0
// out); dxg, dhg [N, G*H] bf16 written (dhg is dxg but for GRU); db_ih, db_hh [G*H]
// float32 written, or undefined without biases (db_hh too but for GRU); dh_seq [N, P]
// bf16 written, each step's grad of h (projected LSTM; undefined otherwise).
struct Bf16Grads {
  at::Tensor dh, dc, dxg, dhg, db_ih, db_hh, dh_seq;
};
void bf16_backward_cpu(CellKind kind, const StepOrder& order, const at::Tensor& w_hh,
                       const at::Tensor& w_hr, const at::Tensor& grad_output,
                       const Bf16Kept& kept, const Bf16Grads& grads);

}  // namespace rnnk
