// Checks of an op's operands against x and one another: the device, dtype and shape of
// each, named in the error, so that a bad call fails before any kernel reads memory.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "cells/cells.h"

namespace rnnk {

// t on ref's device, of the given shape, and of ref's dtype unless another is given.
void check_operand(const at::Tensor& ref, const at::Tensor& t, const char* name,
                   at::IntArrayRef expected, std::optional<at::ScalarType> dtype = std::nullopt);

// BLAS takes 32-bit sizes: refuse, before allocating anything, a GEMM side beyond them.
void check_blas_sizes(int64_t rows, int64_t gate_width, int64_t features);

// The sizes of a layer's operands, once they are checked against one another.
struct LayerSizes {
  int64_t G, S, H, I, P;
};

// Shapes, devices and dtypes of one layer and direction's operands: x [.., I] with `rows`
// rows per step and `total` in all, h0 [rows, P], c0 [rows, H] (LSTM), the weights nn's.
LayerSizes check_operands(CellKind kind, const at::Tensor& x, int64_t rows, int64_t total,
                          const at::Tensor& h0, const std::optional<at::Tensor>& c0,
                          const at::Tensor& w_ih, const at::Tensor& w_hh,
                          const std::optional<at::Tensor>& b_ih,
                          const std::optional<at::Tensor>& b_hh,
                          const std::optional<at::Tensor>& w_hr);

// Leading shape of x with the feature size replaced: [T, B, width] or [N, width].
std::vector<int64_t> rows_shape(const at::Tensor& x, int64_t width);

}  // namespace rnnk
