#include "stream_call.h"

#include <ATen/ATen.h>
#include <torch/extension.h>

#include "cell_call.h"
#include "cells/cells.h"
#include "single_step.h"

namespace rnnk {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

bool on_cpu_as(const Tensor& t, const Tensor& x) {
  return t.is_cpu() && t.scalar_type() == x.scalar_type();
}

bool has_sizes(const Tensor& t, at::IntArrayRef sizes) { return t.sizes() == sizes; }

}  // namespace

pybind11::object stream_step(int kind, const Tensor& x, const OptTensor& hx, const OptTensor& cx,
                             const std::vector<Tensor>& weights, int64_t num_layers,
                             bool bidirectional, bool batch_first) {
  TORCH_CHECK(kind >= 0 && kind < kCellKinds, "rnnkernels: unknown cell kind ", kind);
  const bool has_c = cell_has_cell_state(static_cast<CellKind>(kind));
  const int64_t D = bidirectional ? 2 : 1, LD = num_layers * D;
  const bool batched = x.dim() == 3;
  if (!(batched || x.dim() == 2) || !single_step_cpu_applies(x) || num_layers < 1) {
    return pybind11::none();
  }
  const int64_t steps = batched ? x.size(batch_first ? 1 : 0) : x.size(0);
  const int64_t B = batched ? x.size(batch_first ? 0 : 1) : 1, I = x.size(-1);
  const int64_t per_layer = static_cast<int64_t>(weights.size()) / LD;
  if (steps != 1 || B == 0 || (per_layer != 2 && per_layer != 4) ||
      static_cast<int64_t>(weights.size()) != per_layer * LD || weights[1].dim() != 2) {
    return pybind11::none();
  }
  const int64_t H = weights[1].size(1), GH = cell_gates(static_cast<CellKind>(kind)) * H;
  // The states' and weights' exact shapes: nn refuses anything else (with its own error,
  // which the full path raises).
  const std::vector<int64_t> state_sizes =
      batched ? std::vector<int64_t>{LD, B, H} : std::vector<int64_t>{LD, H};
  const auto state_ok = [&](const OptTensor& s) {
    return !s.has_value() || (on_cpu_as(*s, x) && has_sizes(*s, state_sizes));
  };
  if (!state_ok(hx) || !state_ok(cx) || (!has_c && cx.has_value()) ||
      (has_c && hx.has_value() != cx.has_value())) {
    return pybind11::none();
  }
  for (int64_t k = 0; k < LD; ++k) {
    const int64_t layer_input = k < D ? I : D * H;
    const Tensor* w = &weights[k * per_layer];
    if (!on_cpu_as(w[0], x) || !has_sizes(w[0], {GH, layer_input}) || !on_cpu_as(w[1], x) ||
        !has_sizes(w[1], {GH, H})) {
      return pybind11::none();
    }
    for (int64_t b = 2; b < per_layer; ++b) {
      if (!on_cpu_as(w[b], x) || !has_sizes(w[b], {GH})) return pybind11::none();
    }
  }
  std::vector<Tensor> grads_from{x, hx.value_or(Tensor()), cx.value_or(Tensor())};
  grads_from.insert(grads_from.end(), weights.begin(), weights.end());
  const bool training = wants_grad(grads_from);

  Tensor output, h_n, c_n;
  {
    pybind11::gil_scoped_release no_gil;
    // Rows [B, I] of the one step, and each layer and direction's state rows [B, H].
    Tensor input = batched ? x.select(batch_first ? 1 : 0, 0) : x;
    const Tensor zeros = hx.has_value() ? Tensor() : at::zeros({B, H}, x.options());
    const auto state = [&](const OptTensor& s, int64_t k) {
      if (!s.has_value()) return zeros;
      return batched ? s->select(0, k) : s->select(0, k).unsqueeze(0);
    };
    std::vector<Tensor> h_finals, c_finals, outputs;
    for (int64_t layer = 0; layer < num_layers; ++layer) {
      outputs.clear();
      for (int64_t d = 0; d < D; ++d) {
        // One step of a reverse direction is the same step: its sequence is this one.
        const int64_t k = layer * D + d;
        const Tensor* w = &weights[k * per_layer];
        const OptTensor b_ih = per_layer == 4 ? OptTensor(w[2]) : std::nullopt;
        const OptTensor b_hh = per_layer == 4 ? OptTensor(w[3]) : std::nullopt;
        const OptTensor c = has_c ? OptTensor(state(cx, k)) : std::nullopt;
        auto [h_new, c_new] =
            run_cell_step(kind, input, state(hx, k), c, w[0], w[1], b_ih, b_hh, training);
        outputs.push_back(h_new);
        h_finals.push_back(h_new);
        if (has_c) c_finals.push_back(c_new);
      }
      input = D == 1 ? outputs[0] : at::cat(outputs, 1);
    }
    // The output's own storage is the last layer's step; h_n and c_n are copies (as nn's,
    // which share no memory with the output).
    output = !batched ? input : input.unsqueeze(batch_first ? 1 : 0);
    const auto stacked = [&](const std::vector<Tensor>& finals) {
      const Tensor all = at::stack(finals);  // [L*D, B, H]
      return batched ? all : all.squeeze(1);
    };
    h_n = stacked(h_finals);
    if (has_c) c_n = stacked(c_finals);
  }
  if (has_c) return pybind11::make_tuple(output, h_n, c_n);
  return pybind11::make_tuple(output, h_n, pybind11::none());
}

}  // namespace rnnk
