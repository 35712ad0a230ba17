// One layer and direction of a layer-normalised cell (LayerNormLSTM, LayerNormGRU) or of
// an LSTM/GRU that zones out: the sequence loop of layer.cpp (the recurrent GEMM a step on
// the device's step calls) with the rowwise pass (rowwise.h) as each step's pointwise one.
// CPU and CUDA, float32 and float64.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "cells/cells.h"

namespace rnnk {

// A layer-normalised cell's own weights, all absent for the plain cell: ih and hh [G*H]
// scale LN(W_ih x) and LN(W_hh h); cell_w, cell_b [H] (LayerNormLSTM) LN(c').
struct LayerNorms {
  std::optional<at::Tensor> ih, hh, cell_w, cell_b;
  bool present() const { return ih.has_value(); }
};

// What the forward keeps for backward: the plain cell's saved gates, h_prev and c_prev,
// and where the cell normalises, W_ih x with its rows' (mean, rstd) [N, 2], LN(W_hh h),
// LN(c') and the rstd of W_hh h and of c' (0 for the GRU) [N, 2]; empty where absent.
struct RowwiseKept {
  at::Tensor saved, h_prev, c_prev, xg_raw, x_stats, h_hat, c_hat, h_stats;
};

// Returns (output, h_n, c_n (empty but for the LSTM), kept); zoneout is the mask with
// output's shape, or absent. Without for_backward (inference) kept holds one step's
// scratch rows, not the sequence's.
std::tuple<at::Tensor, at::Tensor, at::Tensor, RowwiseKept> rowwise_layer_forward(
    CellKind kind, const at::Tensor& x, at::IntArrayRef batch_sizes, const at::Tensor& h0,
    const std::optional<at::Tensor>& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh,
    const LayerNorms& norms, const std::optional<at::Tensor>& zoneout, bool reverse,
    bool for_backward);

// The gradients of a rowwise layer's inputs; empty where an input is absent, dx without
// input_grad.
struct RowwiseGrads {
  at::Tensor dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, d_ln_ih, d_ln_hh, d_ln_cell_w,
      d_ln_cell_b;
};

RowwiseGrads rowwise_layer_backward(CellKind kind, const at::Tensor& grad_output,
                                    const at::Tensor& grad_h_n,
                                    const std::optional<at::Tensor>& grad_c_n,
                                    const at::Tensor& x, at::IntArrayRef batch_sizes,
                                    const at::Tensor& w_ih, const at::Tensor& w_hh,
                                    bool has_bias, const LayerNorms& norms,
                                    const std::optional<at::Tensor>& zoneout,
                                    const RowwiseKept& kept, bool reverse, bool input_grad);

}  // namespace rnnk
