#include "cell_call.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/extension.h>

#include <array>
#include <string>

#include "cells/cells.h"
#include "single_step.h"

namespace rnnk {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = std::optional<Tensor>;

using CellInference = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const OptTensor&,
                                                 const Tensor&, const Tensor&, const OptTensor&,
                                                 const OptTensor&);
using CellForward = std::tuple<Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const OptTensor&, const Tensor&, const Tensor&,
    const OptTensor&, const OptTensor&);
using CellBackward = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const OptTensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    bool, const Tensor&, const Tensor&, bool, bool);

// The handle of op rnnkernels::<cell><suffix> for each cell, looked up once.
template <typename Signature>
const c10::TypedOperatorHandle<Signature>& op_of(int kind, const char* suffix) {
  using Handles = std::array<c10::TypedOperatorHandle<Signature>, kCellKinds>;
  static const Handles handles = [suffix] {
    auto find = [suffix](int k) {
      const std::string name = std::string("rnnkernels::") + kCellNames[k] + suffix;
      return c10::Dispatcher::singleton().findSchemaOrThrow(name.c_str(), "").typed<Signature>();
    };
    return Handles{find(0), find(1), find(2), find(3)};
  }();
  return handles.at(kind);
}

const auto& inference_op(int kind) { return op_of<CellInference>(kind, "_cell_inference"); }
const auto& forward_op(int kind) { return op_of<CellForward>(kind, "_cell_forward"); }
const auto& backward_op(int kind) { return op_of<CellBackward>(kind, "_cell_backward"); }

Tensor or_zeros_like(const Tensor& grad, const Tensor& like) {
  return grad.defined() ? grad : at::zeros_like(like);
}

// One training step as a single autograd node: the forward runs the cell's
// `_cell_forward` op and the backward its `_cell_backward` op, both below autograd, with
// no Python in either. Its inputs: (kind, x, h, c, w_ih, w_hh, b_ih, b_hh), c and the
// biases absent where the cell or layer has none.
struct CellStep : torch::autograd::Function<CellStep> {
  static variable_list forward(AutogradContext* ctx, int64_t kind, const Tensor& x,
                               const Tensor& h, const OptTensor& c, const Tensor& w_ih,
                               const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh) {
    const at::AutoDispatchBelowAutograd below_autograd;
    auto [h_new, c_new, saved, c_prev] =
        forward_op(static_cast<int>(kind)).call(x, h, c, w_ih, w_hh, b_ih, b_hh);
    ctx->save_for_backward({x, h, c.value_or(Tensor()), w_ih, w_hh, b_ih.value_or(Tensor()),
                            b_hh.value_or(Tensor()), saved, c_prev});
    ctx->saved_data["kind"] = kind;
    if (c.has_value()) return {h_new, c_new};
    return {h_new};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const int kind = static_cast<int>(ctx->saved_data["kind"].toInt());
    const variable_list s = ctx->get_saved_variables();
    const Tensor &x = s[0], &h = s[1], &c = s[2], &w_ih = s[3], &w_hh = s[4], &b_ih = s[5],
                 &b_hh = s[6];
    const bool has_c = c.defined(), has_bias = b_ih.defined();
    const Tensor grad_h = or_zeros_like(grads[0], h);
    const Tensor grad_c = has_c ? or_zeros_like(grads[1], c) : Tensor();
    if (at::GradMode::is_enabled()) {
      return differentiable_backward(kind, {x, h, c, w_ih, w_hh, b_ih, b_hh}, grad_h, grad_c);
    }
    // Edges are numbered over the tensor inputs present: x is 0 and h is 1.
    const bool input_grad = ctx->needs_input_grad(0), hidden_grad = ctx->needs_input_grad(1);
    auto [dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh] = [&] {
      const at::AutoDispatchBelowAutograd below_autograd;
      return backward_op(kind).call(grad_h, has_c ? OptTensor(grad_c) : std::nullopt, x, h,
                                    w_ih, w_hh, has_bias, s[7], s[8], input_grad, hidden_grad);
    }();
    const auto kept = [](bool wanted, const Tensor& t) { return wanted ? t : Tensor(); };
    return {Tensor(),          kept(input_grad, dx), kept(hidden_grad, dh), kept(has_c, dc),
            dw_ih,             dw_hh,                kept(has_bias, db_ih),  kept(has_bias, db_hh)};
  }

  // A backward that is itself differentiated (create_graph=True): the step is recomputed
  // on the op's full Autograd kernel, whose gradient is differentiable (the reference
  // math, rnnkernels/_ops.py), and that graph gives the gradients.
  static variable_list differentiable_backward(int kind, const variable_list& inputs,
                                               const Tensor& grad_h, const Tensor& grad_c) {
    const auto& [x, h, c, w_ih, w_hh, b_ih, b_hh] =
        std::tie(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], inputs[6]);
    const auto optional = [](const Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; };
    auto [h_new, c_new, saved, c_prev] = forward_op(kind).call(
        x, h, optional(c), w_ih, w_hh, optional(b_ih), optional(b_hh));
    variable_list outputs{h_new}, grad_outputs{grad_h};
    if (c.defined()) {
      outputs.push_back(c_new);
      grad_outputs.push_back(grad_c);
    }
    variable_list wrt;
    for (const Tensor& t : inputs) {
      if (t.defined() && t.requires_grad()) wrt.push_back(t);
    }
    const variable_list found = torch::autograd::grad(outputs, wrt, grad_outputs,
                                                      /*retain_graph=*/true,
                                                      /*create_graph=*/true,
                                                      /*allow_unused=*/true);
    variable_list result{Tensor()};  // kind
    auto next = found.begin();
    for (const Tensor& t : inputs) {
      result.push_back(t.defined() && t.requires_grad() ? *next++ : Tensor());
    }
    return result;
  }
};

// Whether a state tensor fits x's call: same device and dtype, as x's rows by H.
bool state_fits(const Tensor& x, const Tensor& state, int64_t hidden) {
  return state.is_cpu() && state.scalar_type() == x.scalar_type() && state.dim() == x.dim() &&
         state.size(-1) == hidden && (x.dim() == 1 || state.size(0) == x.size(0));
}

bool weight_fits(const Tensor& x, const OptTensor& w) {
  return !w.has_value() || (w->is_cpu() && w->scalar_type() == x.scalar_type());
}

}  // namespace

std::tuple<Tensor, Tensor> run_cell_step(int kind, const Tensor& x, const Tensor& h,
                                         const OptTensor& c, const Tensor& w_ih,
                                         const Tensor& w_hh, const OptTensor& b_ih,
                                         const OptTensor& b_hh, bool training) {
  if (!training) {
    const at::AutoDispatchBelowAutograd below_autograd;
    return inference_op(kind).call(x, h, c, w_ih, w_hh, b_ih, b_hh);
  }
  // The training op takes batches: an unbatched step is a batch of one row (views that
  // autograd records).
  const bool batched = x.dim() == 2;
  const auto rows = [&](const Tensor& t) { return batched ? t : t.unsqueeze(0); };
  const variable_list out =
      CellStep::apply(static_cast<int64_t>(kind), rows(x), rows(h),
                      c.has_value() ? OptTensor(rows(*c)) : std::nullopt, w_ih, w_hh, b_ih, b_hh);
  const auto unrows = [&](const Tensor& t) { return batched ? t : t.squeeze(0); };
  return {unrows(out[0]), c.has_value() ? unrows(out[1]) : Tensor()};
}

bool wants_grad(at::ArrayRef<Tensor> tensors) {
  if (!at::GradMode::is_enabled()) return false;
  for (const Tensor& t : tensors) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

pybind11::object cell_step(int kind, const Tensor& x, const OptTensor& h, const OptTensor& c,
                           const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                           const OptTensor& b_hh) {
  TORCH_CHECK(kind >= 0 && kind < kCellKinds, "rnnkernels: unknown cell kind ", kind);
  const bool has_c = cell_has_cell_state(static_cast<CellKind>(kind));
  const int64_t hidden = w_hh.dim() == 2 ? w_hh.size(1) : -1;
  const bool fits = (x.dim() == 1 || x.dim() == 2) && single_step_cpu_applies(x) &&
                    w_ih.dim() == 2 && x.size(-1) == w_ih.size(1) && weight_fits(x, w_ih) &&
                    weight_fits(x, w_hh) && weight_fits(x, b_ih) && weight_fits(x, b_hh) &&
                    (!h.has_value() || state_fits(x, *h, hidden)) &&
                    (!has_c || !c.has_value() || state_fits(x, *c, hidden)) &&
                    (has_c || !c.has_value());
  if (!fits) return pybind11::none();
  const auto zeros = [&] {
    return x.dim() == 1 ? at::zeros({hidden}, x.options())
                        : at::zeros({x.size(0), hidden}, x.options());
  };
  const Tensor h0 = h.has_value() ? *h : zeros();
  const OptTensor c0 = !has_c ? std::nullopt : c.has_value() ? c : OptTensor(zeros());
  const bool training = wants_grad({x, h0, c0.value_or(Tensor()), w_ih, w_hh,
                                    b_ih.value_or(Tensor()), b_hh.value_or(Tensor())});
  Tensor h_new, c_new;
  {
    pybind11::gil_scoped_release no_gil;
    std::tie(h_new, c_new) = run_cell_step(kind, x, h0, c0, w_ih, w_hh, b_ih, b_hh, training);
  }
  if (has_c) return pybind11::make_tuple(h_new, c_new);
  return pybind11::cast(h_new);
}

pybind11::dict cell_kinds() {
  pybind11::dict kinds;
  for (int k = 0; k < kCellKinds; ++k) kinds[kCellNames[k]] = k;
  return kinds;
}

pybind11::dict cell_table() {
  pybind11::dict table;
  for (int k = 0; k < kCellKinds; ++k) {
    visit_cell(static_cast<CellKind>(k), [&](auto cell) {
      using Cell = decltype(cell);
      pybind11::dict row;
      row["kind"] = k;
      row["gates"] = Cell::kGates;
      row["saved"] = Cell::kSaved;
      row["has_cell_state"] = Cell::kHasCellState;
      row["sums_projections"] = Cell::kSumsProjections;
      row["reads_previous_hidden"] = Cell::kReadsPreviousHidden;
      row["direct_hidden_gradient"] = Cell::kDirectHiddenGradient;
      row["rowwise"] = Cell::kRowwise;
      table[kCellNames[k]] = row;
    });
  }
  return table;
}

}  // namespace rnnk
