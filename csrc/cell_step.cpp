#include "cell_step.h"

#include <ATen/ATen.h>

#include "layer.h"
#include "operands.h"
#include "single_step.h"

namespace rnnk {

using at::Tensor;

std::tuple<Tensor, Tensor> cell_inference(CellKind kind, const Tensor& x, const Tensor& h,
                                          const std::optional<Tensor>& c, const Tensor& w_ih,
                                          const Tensor& w_hh, const std::optional<Tensor>& b_ih,
                                          const std::optional<Tensor>& b_hh) {
  TORCH_CHECK(x.dim() == 1 || x.dim() == 2, "rnnkernels: a cell's x must be [B, I] or [I], got ",
              x.dim(), "-D");
  const bool has_c = cell_has_cell_state(kind);
  // An unbatched step is a batch of one row.
  const auto rows = [&](const Tensor& t) { return x.dim() == 1 ? t.view({1, -1}) : t; };
  const Tensor x2d = rows(x), h2d = rows(h);
  const std::optional<Tensor> c2d = has_c ? std::optional<Tensor>(rows(*c)) : c;
  if (!single_step_cpu_applies(x)) {
    auto [output, h_n, c_n, saved, h_prev, c_prev, r_seq] =
        layer_forward(kind, x2d.unsqueeze(0), {}, h2d, c2d, w_ih, w_hh, b_ih, b_hh,
                      std::nullopt, false, /*for_backward=*/false);
    return {h_n.view(h.sizes()), has_c ? c_n.view(c->sizes()) : c_n};
  }
  check_operands(kind, x2d, x2d.size(0), x2d.size(0), h2d, c2d, w_ih, w_hh, b_ih, b_hh,
                 std::nullopt);
  Tensor h_new = at::empty(h.sizes(), x.options());
  Tensor c_new = has_c ? at::empty(c->sizes(), x.options()) : at::empty({0}, x.options());
  single_step_cpu(kind, x2d, h2d, c2d, w_ih, w_hh, b_ih, b_hh,
                  StepResults{h_new, has_c ? c_new : Tensor()});
  return {h_new, c_new};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> cell_forward(CellKind kind, const Tensor& x,
                                                        const Tensor& h,
                                                        const std::optional<Tensor>& c,
                                                        const Tensor& w_ih, const Tensor& w_hh,
                                                        const std::optional<Tensor>& b_ih,
                                                        const std::optional<Tensor>& b_hh) {
  TORCH_CHECK(x.dim() == 2, "rnnkernels: a training cell's x must be [B, I], got ", x.dim(),
              "-D");
  const bool has_c = cell_has_cell_state(kind);
  if (!single_step_cpu_applies(x)) {
    auto [output, h_new, c_new, saved, h_prev, c_prev, r_seq] =
        layer_forward(kind, x.unsqueeze(0), {}, h, c, w_ih, w_hh, b_ih, b_hh, std::nullopt,
                      false, /*for_backward=*/true);
    return {h_new, c_new, saved.squeeze(0), has_c ? c_prev.squeeze(0) : c_prev};
  }
  const int64_t B = x.size(0);
  const LayerSizes sizes =
      check_operands(kind, x, B, B, h, c, w_ih, w_hh, b_ih, b_hh, std::nullopt);
  const auto empty = [&](at::IntArrayRef shape) { return at::empty(shape, x.options()); };
  // The cell needs neither the layer's output row nor a copy of h0 (backward reads the
  // op's input h), only c0, which the step overwrites in c'.
  Tensor h_new = empty({B, sizes.H}), saved = empty({B, sizes.S * sizes.H});
  Tensor c_new = has_c ? empty({B, sizes.H}) : empty({0});
  Tensor c_prev = has_c ? empty({B, sizes.H}) : empty({0});
  single_step_cpu(kind, x, h, c, w_ih, w_hh, b_ih, b_hh,
                  StepResults{h_new, has_c ? c_new : Tensor(), Tensor(), saved, Tensor(),
                              has_c ? c_prev : Tensor()});
  return {h_new, c_new, saved, c_prev};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> cell_backward(
    CellKind kind, const Tensor& grad_h, const std::optional<Tensor>& grad_c, const Tensor& x,
    const Tensor& h, const Tensor& w_ih, const Tensor& w_hh, bool has_bias, const Tensor& saved,
    const Tensor& c_prev, bool input_grad, bool hidden_grad) {
  TORCH_CHECK(x.dim() == 2, "rnnkernels: a training cell's x must be [B, I], got ", x.dim(),
              "-D");
  const bool has_c = cell_has_cell_state(kind);
  TORCH_CHECK(!has_c || (grad_c.has_value() && grad_c->defined()),
              "rnnkernels: LSTM backward needs grad_c");
  const auto empty = [&](at::IntArrayRef shape) { return at::empty(shape, x.options()); };
  if (!single_step_cpu_applies(x)) {
    auto [dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, dw_hr] = layer_backward(
        kind, grad_h.unsqueeze(0), at::zeros_like(h), grad_c, x.unsqueeze(0), {}, w_ih, w_hh,
        has_bias, std::nullopt, saved.unsqueeze(0), h.unsqueeze(0),
        has_c ? c_prev.unsqueeze(0) : c_prev, empty({0}), false, input_grad);
    return {input_grad ? dx.squeeze(0) : dx, hidden_grad ? dh : empty({0}), dc, dw_ih, dw_hh,
            db_ih, db_hh};
  }
  const int64_t B = x.size(0);
  // c_prev stands where the forward's c0 stood; the biases are not operands here.
  const LayerSizes sizes =
      check_operands(kind, x, B, B, h, has_c ? std::optional<Tensor>(c_prev) : std::nullopt,
                     w_ih, w_hh, std::nullopt, std::nullopt, std::nullopt);
  const int64_t H = sizes.H, GH = sizes.G * H;
  check_operand(x, grad_h, "grad_h", {B, H});
  if (has_c) check_operand(x, *grad_c, "grad_c", {B, H});
  check_operand(x, saved, "saved", {B, sizes.S * H});
  StepGradients grads{input_grad ? empty({B, sizes.I}) : Tensor(),
                      hidden_grad ? empty({B, H}) : Tensor(),
                      has_c ? empty({B, H}) : Tensor(),
                      empty(w_ih.sizes()),
                      empty(w_hh.sizes()),
                      has_bias ? empty({GH}) : Tensor(),
                      has_bias ? empty({GH}) : Tensor()};
  single_step_backward_cpu(kind, grad_h, grad_c, x, h, w_ih, w_hh, saved, c_prev, grads);
  const auto or_empty = [&](const Tensor& t) { return t.defined() ? t : empty({0}); };
  return {or_empty(grads.dx), or_empty(grads.dh), or_empty(grads.dc), grads.dw_ih, grads.dw_hh,
          or_empty(grads.db_ih), or_empty(grads.db_hh)};
}

}  // namespace rnnk
