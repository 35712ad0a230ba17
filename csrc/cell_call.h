// The *Cell modules' lean call (rnnkernels/_single_step.py): one Python-to-C++ crossing
// per step instead of the module's Python checks and the op's Python Autograd kernel,
// which cost many times a small step's arithmetic.
#pragma once
#include <ATen/core/Tensor.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <tuple>

namespace rnnk {

// One step of cell `kind` (CellKind's value); h, c may be None (zeros, as nn starts).
// Where no gradient can flow, its `_cell_inference` op runs below autograd; otherwise
// one autograd node runs its `_cell_forward` op, and `_cell_backward` in backward.
// Returns h' (LSTM: (h', c')), or None when the call is not one it takes (another device
// or dtype, sizes that do not fit): the module's full path then runs it, or raises nn's
// error.
pybind11::object cell_step(int kind, const at::Tensor& x, const std::optional<at::Tensor>& h,
                           const std::optional<at::Tensor>& c, const at::Tensor& w_ih,
                           const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                           const std::optional<at::Tensor>& b_hh);

// The step of cell_step on operands that fit it (x [B, I] or [I], h and c as x's rows by
// H, c present for LSTM only): below autograd unless `training`, else one autograd node.
// Returns (h', c'), c' undefined but for LSTM. Call without the GIL.
std::tuple<at::Tensor, at::Tensor> run_cell_step(int kind, const at::Tensor& x,
                                                 const at::Tensor& h,
                                                 const std::optional<at::Tensor>& c,
                                                 const at::Tensor& w_ih, const at::Tensor& w_hh,
                                                 const std::optional<at::Tensor>& b_ih,
                                                 const std::optional<at::Tensor>& b_hh,
                                                 bool training);

// Whether grad mode is on and a defined tensor among these requires grad: whether a step
// on them is training.
bool wants_grad(at::ArrayRef<at::Tensor> tensors);

// {cell name: CellKind value}.
pybind11::dict cell_kinds();

// The cell table, by name: each cell's kind and traits (cells/*.h), what Python's op
// registrations read (rnnkernels/_cells.py) instead of keeping a copy.
pybind11::dict cell_table();

}  // namespace rnnk
