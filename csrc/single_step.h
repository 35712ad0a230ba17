// One step of a layer on the CPU: what a *Cell module or a streaming call (T = 1, state
// carried) runs, where a call's fixed costs decide its speed. The sequence loop
// (layer.cpp) pays per call for ATen views, scratch tensors and the bias sum, several
// microseconds, against well under one of arithmetic at B=1, H=64; this step works on raw
// arrays, allocates only the results and calls BLAS twice (backward: once per gradient
// wanted).
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

#include "cells/cells.h"

namespace rnnk {

// Whether single_step_cpu can run a step on x's device and dtype: the CPU in float32/64,
// with a BLAS to call.
bool single_step_cpu_applies(const at::Tensor& x);

// What one step writes, each a dense array of the size named (undefined: not wanted).
struct StepResults {
  at::Tensor h, c;   // [B, H] the new state (c: LSTM)
  at::Tensor output;  // [B, H] a copy of h (the layer's output row)
  at::Tensor saved;   // [B, S*H] what backward needs
  at::Tensor h_prev, c_prev;  // [B, H] copies of h0 and c0 (c0: LSTM), for backward
};

// One step of a cell without a projection from x [B, I], h0 [B, H] and c0 [B, H] (LSTM),
// operands checked (layer.cpp), into `out`.
void single_step_cpu(CellKind kind, const at::Tensor& x, const at::Tensor& h0,
                     const std::optional<at::Tensor>& c0, const at::Tensor& w_ih,
                     const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                     const std::optional<at::Tensor>& b_hh, const StepResults& out);

// What one step's backward writes, each a dense array (undefined: not wanted; db_ih and
// db_hh are both defined or both not, as the step's biases).
struct StepGradients {
  at::Tensor dx;             // [B, I]
  at::Tensor dh, dc;         // [B, H] the gradients of h0 and (LSTM) c0
  at::Tensor dw_ih, dw_hh;   // the weights' shapes
  at::Tensor db_ih, db_hh;   // [G*H]
};

// The backward of single_step_cpu from the gradients of h' and (LSTM) c', the step's
// inputs and what its forward saved, operands checked (cell_step.cpp), into `out`.
void single_step_backward_cpu(CellKind kind, const at::Tensor& grad_h,
                              const std::optional<at::Tensor>& grad_c, const at::Tensor& x,
                              const at::Tensor& h0, const at::Tensor& w_ih,
                              const at::Tensor& w_hh, const at::Tensor& saved,
                              const at::Tensor& c_prev, const StepGradients& out);

}  // namespace rnnk
