// One step of a cell (the nn.*Cell modules' ops): on the CPU in float32/64 the
// single-step kernels (single_step.h), elsewhere the layer loop over one step.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "cells/cells.h"

namespace rnnk {

// For a call no gradient flows through: x [B, I] with h, c [B, H], or unbatched x [I]
// with h, c [H]; returns (h', c' or empty), shaped as h and c.
std::tuple<at::Tensor, at::Tensor> cell_inference(CellKind kind, const at::Tensor& x,
                                                  const at::Tensor& h,
                                                  const std::optional<at::Tensor>& c,
                                                  const at::Tensor& w_ih, const at::Tensor& w_hh,
                                                  const std::optional<at::Tensor>& b_ih,
                                                  const std::optional<at::Tensor>& b_hh);

// For training, x [B, I]: returns (h', c' or empty, saved [B, S*H], c_prev [B, H] or
// empty), what cell_backward reads.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cell_forward(
    CellKind kind, const at::Tensor& x, const at::Tensor& h, const std::optional<at::Tensor>& c,
    const at::Tensor& w_ih, const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
    const std::optional<at::Tensor>& b_hh);

// Returns (dx, dh, dc or empty, dw_ih, dw_hh, db_ih, db_hh); dx is empty without
// input_grad and dh without hidden_grad (their GEMMs are skipped), the bias gradients
// without has_bias. grad_c is required for LSTM.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
cell_backward(CellKind kind, const at::Tensor& grad_h, const std::optional<at::Tensor>& grad_c,
              const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih,
              const at::Tensor& w_hh, bool has_bias, const at::Tensor& saved,
              const at::Tensor& c_prev, bool input_grad, bool hidden_grad);

}  // namespace rnnk
