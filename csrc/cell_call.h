// The *Cell modules' lean call (rnnkernels/_single_step.py): one Python-to-C++ crossing
// per step in inference instead of the module's Python checks and the op's Python
// Autograd kernel, which cost many times a small step's arithmetic.
#pragma once
#include <ATen/core/Tensor.h>
#include <pybind11/pybind11.h>

#include <optional>

namespace rnnk {

// One step of cell `kind` (CellKind's value) no gradient can flow through, on its
// `_cell_inference` op below autograd; h, c may be None (zeros, as nn starts). Returns
// h' (LSTM: (h', c')), or None when the call is not one it takes (another device or
// dtype, sizes that do not fit): the module's full path then runs it, or raises nn's error.
pybind11::object cell_step_inference(int kind, const at::Tensor& x,
                                     const std::optional<at::Tensor>& h,
                                     const std::optional<at::Tensor>& c, const at::Tensor& w_ih,
                                     const at::Tensor& w_hh,
                                     const std::optional<at::Tensor>& b_ih,
                                     const std::optional<at::Tensor>& b_hh);

}  // namespace rnnk
