// The sequence loop for one layer and one direction, written once on ATen GEMMs;
// only the per-step pointwise pass is device specific (pointwise.h). x's layout, padded
// or packed, is schedule.h's.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "cells/cells.h"

namespace rnnk {

// Returns (output [.., P], h_n [B,P], c_n [B,H] or empty, saved [.., S*H],
//          h_prev [.., P], c_prev [.., H] or empty, r_seq [.., H] or empty),
// where ".." is x's leading shape, P the projection size (H without one), and
// r_seq holds o*tanh(c) when an LSTM projects (the input of the w_hr GEMM).
// Without for_backward (inference) saved, h_prev, c_prev and r_seq are undefined: never
// written, so the forward skips their memory traffic and allocations.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
layer_forward(CellKind kind, const at::Tensor& x, at::IntArrayRef batch_sizes,
              const at::Tensor& h0, const std::optional<at::Tensor>& c0,
              const at::Tensor& w_ih, const at::Tensor& w_hh,
              const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh,
              const std::optional<at::Tensor>& w_hr, bool reverse, bool for_backward);

// Returns (dx, dh0, dc0 or empty, dw_ih, dw_hh, db_ih, db_hh, dw_hr); the bias
// and projection gradients are empty when the layer has none, dx without input_grad.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
layer_backward(CellKind kind, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
               const std::optional<at::Tensor>& grad_c_n, const at::Tensor& x,
               at::IntArrayRef batch_sizes, const at::Tensor& w_ih, const at::Tensor& w_hh,
               bool has_bias, const std::optional<at::Tensor>& w_hr, const at::Tensor& saved,
               const at::Tensor& h_prev, const at::Tensor& c_prev, const at::Tensor& r_seq,
               bool reverse, bool input_grad);

}  // namespace rnnk
