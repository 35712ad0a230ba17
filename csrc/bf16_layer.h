// The CPU's bfloat16 layer inference (cpu/bf16_sequence.h) behind ATen tensors.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

#include "cpu/sequence.h"

namespace rnnk {

// bf16 on the CPU, no projection, nothing kept for backward, and a CPU with bf16 dot
// products (cpu/isa.h): what the bf16 kernels cover. Other bf16 calls are computed in
// float32 by the caller.
bool bf16_cpu_applies(const at::Tensor& x, bool projects, bool for_backward);

// One layer direction: x [N, I], h0 [B, H], w_ih, w_hh and the biases in bf16 (operands
// checked: layer.cpp); c [B, H] float32, c0 in and c_n out (LSTM; undefined otherwise);
// output [N, H] and h_n [B, H] bf16, written.
void bf16_inference_cpu(CellKind kind, const StepOrder& order, const at::Tensor& x,
                        const at::Tensor& h0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                        const std::optional<at::Tensor>& b_ih,
                        const std::optional<at::Tensor>& b_hh, const at::Tensor& c,
                        const at::Tensor& output, const at::Tensor& h_n);

}  // namespace rnnk
