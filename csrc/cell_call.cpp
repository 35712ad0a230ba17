#include "cell_call.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/extension.h>

#include <array>
#include <string>

#include "cells/cells.h"
#include "single_step.h"

namespace rnnk {
namespace {

using at::Tensor;
using CellInference = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&,
                                                 const std::optional<Tensor>&, const Tensor&,
                                                 const Tensor&, const std::optional<Tensor>&,
                                                 const std::optional<Tensor>&);

const char* const kNames[] = {"rnnkernels::lstm_cell_inference", "rnnkernels::gru_cell_inference",
                              "rnnkernels::rnn_tanh_cell_inference",
                              "rnnkernels::rnn_relu_cell_inference"};

// The op's handle, looked up once per cell.
const c10::TypedOperatorHandle<CellInference>& op_of(int kind) {
  static const std::array<c10::TypedOperatorHandle<CellInference>, 4> handles = [] {
    auto find = [](const char* name) {
      return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<CellInference>();
    };
    return std::array<c10::TypedOperatorHandle<CellInference>, 4>{
        find(kNames[0]), find(kNames[1]), find(kNames[2]), find(kNames[3])};
  }();
  return handles.at(kind);
}

// Whether a state tensor fits x's call: same device and dtype, as x's rows by H.
bool state_fits(const Tensor& x, const Tensor& state, int64_t hidden) {
  return state.is_cpu() && state.scalar_type() == x.scalar_type() && state.dim() == x.dim() &&
         state.size(-1) == hidden && (x.dim() == 1 || state.size(0) == x.size(0));
}

bool weight_fits(const Tensor& x, const std::optional<Tensor>& w) {
  return !w.has_value() || (w->is_cpu() && w->scalar_type() == x.scalar_type());
}

}  // namespace

pybind11::object cell_step_inference(int kind, const Tensor& x, const std::optional<Tensor>& h,
                                     const std::optional<Tensor>& c, const Tensor& w_ih,
                                     const Tensor& w_hh, const std::optional<Tensor>& b_ih,
                                     const std::optional<Tensor>& b_hh) {
  TORCH_CHECK(kind >= 0 && kind < 4, "rnnkernels: unknown cell kind ", kind);
  const bool is_lstm = kind == static_cast<int>(CellKind::Lstm);
  const int64_t hidden = w_hh.dim() == 2 ? w_hh.size(1) : -1;
  const bool fits = (x.dim() == 1 || x.dim() == 2) && single_step_cpu_applies(x) &&
                    w_ih.dim() == 2 && x.size(-1) == w_ih.size(1) && weight_fits(x, w_ih) &&
                    weight_fits(x, w_hh) && weight_fits(x, b_ih) && weight_fits(x, b_hh) &&
                    (!h.has_value() || state_fits(x, *h, hidden)) &&
                    (!is_lstm || !c.has_value() || state_fits(x, *c, hidden)) &&
                    (is_lstm || !c.has_value());
  if (!fits) return pybind11::none();
  const auto zeros = [&] {
    return x.dim() == 1 ? at::zeros({hidden}, x.options())
                        : at::zeros({x.size(0), hidden}, x.options());
  };
  const Tensor h0 = h.has_value() ? *h : zeros();
  const std::optional<Tensor> c0 = !is_lstm ? std::nullopt
                                   : c.has_value() ? c : std::optional<Tensor>(zeros());
  std::tuple<Tensor, Tensor> result;
  {
    pybind11::gil_scoped_release no_gil;
    const at::AutoDispatchBelowAutograd below_autograd;
    result = op_of(kind).call(x, h0, c0, w_ih, w_hh, b_ih, b_hh);
  }
  if (is_lstm) return pybind11::make_tuple(std::get<0>(result), std::get<1>(result));
  return pybind11::cast(std::get<0>(result));
}

}  // namespace rnnk
