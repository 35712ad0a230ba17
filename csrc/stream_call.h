// The layers' lean call for one time step (streaming: FusedLSTM/GRU/RNN called with T = 1
// and their state carried, rnnkernels/_single_step.py): a step of a stack is a cell step
// per layer and direction, so it runs the cells' lean step (cell_call.h) for each, in one
// Python-to-C++ crossing instead of the layer path's Python and per-layer op calls.
#pragma once
#include <ATen/core/Tensor.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <vector>

namespace rnnk {

// One time step of a stack of `num_layers` layers of cell `kind` (CellKind's value):
// x [1, B, I] ([B, 1, I] batch_first, [1, I] unbatched), hx and cx [L*D, B, H] ([L*D, H]
// unbatched) or None (zeros), weights as nn's _flat_weights without a projection (per
// layer and direction w_ih, w_hh and, with bias, b_ih, b_hh). Returns (output, h_n, c_n)
// shaped as nn's (c_n None but for LSTM), or None when the call is not one it takes
// (another device or dtype, sizes or shapes nn would refuse): the module's full path
// then runs it, or raises nn's error. Inference dispatches one op per layer and
// direction; training records one autograd node for each.
pybind11::object stream_step(int kind, const at::Tensor& x, const std::optional<at::Tensor>& hx,
                             const std::optional<at::Tensor>& cx,
                             const std::vector<at::Tensor>& weights, int64_t num_layers,
                             bool bidirectional, bool batch_first);

}  // namespace rnnk
