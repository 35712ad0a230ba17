#include "rowwise_layer.h"

#include <ATen/ATen.h>

#include "cells/layer_norm.h"
#include "cpu/tensor_ptr.h"
#include "operands.h"
#include "rowwise.h"
#include "schedule.h"
#include "step_device.h"
#include "workspace.h"

namespace rnnk {
namespace {

using at::Tensor;

Tensor none_like(const Tensor& x) { return at::empty({0}, x.options()); }

// [rows, width] of x's dtype (what a forward keeps), and x's rows with another width: not
// advised huge pages as layer.cpp's outputs are (schedule.h's empty_like_rows). Where the
// kernel compacts memory on a fault in advised ranges (defrag=madvise), a rowwise call's
// several such buffers made some calls stall many times their usual length.
Tensor kept_rows(const Tensor& x, int64_t rows, int64_t width) {
  return at::empty({rows, width}, x.options());
}

Tensor like_rows(const Tensor& x, int64_t width) {
  return at::empty(rows_shape(x, width), x.options());
}

// The layer norms' shapes, and all of a LayerNormLSTM's or a LayerNormGRU's or none.
void check_norms(CellKind kind, const Tensor& x, int64_t GH, int64_t H, const LayerNorms& n) {
  const bool has_c = cell_has_cell_state(kind);
  TORCH_CHECK(n.hh.has_value() == n.present() &&
                  n.cell_w.has_value() == (n.present() && has_c) &&
                  n.cell_b.has_value() == n.cell_w.has_value(),
              "rnnkernels: a layer-normalised ", kCellNames[static_cast<int>(kind)],
              " takes ln_ih_weight and ln_hh_weight",
              has_c ? ", ln_cell_weight and ln_cell_bias" : "", " (or none of them)");
  if (!n.present()) return;
  check_operand(x, *n.ih, "ln_ih_weight", {GH});
  check_operand(x, *n.hh, "ln_hh_weight", {GH});
  if (has_c) {
    check_operand(x, *n.cell_w, "ln_cell_weight", {H});
    check_operand(x, *n.cell_b, "ln_cell_bias", {H});
  }
}

void check_device(const Tensor& x, CellKind kind) {
  TORCH_CHECK(cell_rowwise(kind), "rnnkernels: the ", kCellNames[static_cast<int>(kind)],
              " cell takes no layer norms or zoneout");
#ifdef RNNK_WITH_CUDA
  TORCH_CHECK(x.is_cpu() || x.is_cuda(), "rnnkernels: no rowwise kernels for ", x.device());
#else
  TORCH_CHECK(x.is_cpu(), "rnnkernels: no rowwise kernels for ", x.device(), " in this build");
#endif
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "rnnkernels: the layer-normalised and zoneout kernels take float32 and float64, "
              "got ", x.scalar_type());
}

// The step's rowwise pass on x's device.
template <typename T>
void forward_rows(const Tensor& like, CellKind kind, const RowwiseForward<T>& step, int64_t n) {
#ifdef RNNK_WITH_CUDA
  if (like.is_cuda()) return cuda_rowwise_forward_rows(kind, step, n);
#endif
  rowwise_forward_rows(kind, step, n);
}

template <typename T>
void backward_rows(const Tensor& like, CellKind kind, const RowwiseBackward<T>& step, int64_t n) {
#ifdef RNNK_WITH_CUDA
  if (like.is_cuda()) return cuda_rowwise_backward_rows(kind, step, n);
#endif
  rowwise_backward_rows(kind, step, n);
}

// (mean, rstd) [N, 1] each of the input projection's rows.
std::pair<Tensor, Tensor> x_stats_columns(const Tensor& x_stats) {
  return {x_stats.narrow(1, 0, 1).contiguous(), x_stats.narrow(1, 1, 1).contiguous()};
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, RowwiseKept> rowwise_layer_forward(
    CellKind kind, const Tensor& x, at::IntArrayRef batch_sizes, const Tensor& h0,
    const std::optional<Tensor>& c0, const Tensor& w_ih, const Tensor& w_hh,
    const std::optional<Tensor>& b_ih, const std::optional<Tensor>& b_hh,
    const LayerNorms& norms, const std::optional<Tensor>& zoneout, bool reverse,
    bool for_backward) {
  check_device(x, kind);
  const Schedule sched = make_schedule(x, batch_sizes);
  const LayerSizes sizes = check_operands(kind, x, sched.batch, sched.total, h0, c0, w_ih, w_hh,
                                          b_ih, b_hh, std::nullopt);
  const int64_t G = sizes.G, S = sizes.S, H = sizes.H, I = sizes.I, B = sched.batch,
                N = sched.total, GH = G * H;
  const bool has_c = cell_has_cell_state(kind), normed = norms.present();
  check_norms(kind, x, GH, H, norms);
  if (zoneout.has_value()) check_operand(x, *zoneout, "zoneout", rows_shape(x, H));

  // The input side for every step at once. Where the cell only sums the projections, both
  // biases start the recurrent side instead (layer.cpp).
  const Tensor x2d = x.reshape({N, I});
  const bool bias_in_xg = b_ih.has_value() && !cell_sums_projections(kind);
  RowwiseKept kept;  // in inference only one step's rows of each, rewritten every step
  const int64_t kept_rows_count = for_backward ? N : B;
  // The finished input side never leaves the call: a kept scratch buffer (workspace.h).
  Tensor xg = scratch(Scratch::InputProjection, {N, GH}, x.options());
  if (normed) {
    kept.xg_raw = for_backward ? kept_rows(x, N, GH)
                               : scratch(Scratch::InputGateGrads, {N, GH}, x.options());
    at::mm_out(kept.xg_raw, x2d, w_ih.t());
    Tensor mean = at::empty({N, 1}, x.options()), rstd = at::empty({N, 1}, x.options());
    at::native_layer_norm_out(xg, mean, rstd, kept.xg_raw, {GH}, *norms.ih,
                              bias_in_xg ? b_ih : std::nullopt, kLayerNormEps);
    kept.x_stats = at::cat({mean, rstd}, 1);
    kept.h_hat = kept_rows(x, kept_rows_count, GH);
    kept.c_hat = has_c ? kept_rows(x, kept_rows_count, H) : none_like(x);
    // The GRU has no c': its column stays zero (an op's outputs are fully written).
    kept.h_stats = has_c ? at::empty({kept_rows_count, 2}, x.options())
                         : at::zeros({kept_rows_count, 2}, x.options());
  } else {
    if (bias_in_xg) {
      at::addmm_out(xg, *b_ih, x2d, w_ih.t());
    } else {
      at::mm_out(xg, x2d, w_ih.t());
    }
    kept.xg_raw = none_like(x);
    kept.x_stats = none_like(x);
    kept.h_hat = none_like(x);
    kept.c_hat = none_like(x);
    kept.h_stats = none_like(x);
  }
  std::optional<Tensor> recurrent_bias;
  if (b_hh.has_value()) recurrent_bias = bias_in_xg ? b_hh->contiguous() : *b_ih + *b_hh;
  Tensor output = like_rows(x, H);
  kept.saved = for_backward ? like_rows(x, S * H) : kept_rows(x, B, S * H);
  // h_(t-1) is backward's and zoneout's; c_(t-1) backward's only.
  const bool keeps_h = for_backward || zoneout.has_value();
  kept.h_prev = !keeps_h ? none_like(x) : for_backward ? like_rows(x, H) : kept_rows(x, B, H);
  kept.c_prev = has_c && for_backward ? like_rows(x, H) : none_like(x);
  Tensor h = h0.contiguous().clone();  // h0 in, h_n out
  Tensor c = has_c ? c0->contiguous().clone() : none_like(x);
  Tensor hg = at::empty({B, GH}, x.options());
  const Tensor w_hh_c = w_hh.contiguous();
  const Tensor mask = zoneout.has_value() ? zoneout->contiguous() : Tensor();

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkernels_rowwise_forward", [&] {
    using T = scalar_t;
    const StepDevice<T> device = step_device<T>(x);
    const T* bias = ptr_or_null<T>(recurrent_bias);
    for (int64_t k = 0; k < sched.steps; ++k) {
      const int64_t t = step_at(sched, k, reverse), n = sched.rows(t), off = sched.offset(t);
      if (n == 0) continue;
      const int64_t kept_off = for_backward ? off : 0;  // the step's row in what is kept
      device.gemm(n, GH, H, h.data_ptr<T>(), w_hh_c.data_ptr<T>(), /*transpose_w=*/true,
                  hg.data_ptr<T>(), /*accumulate=*/false);
      RowwiseForward<T> r{{xg.data_ptr<T>() + off * GH, hg.data_ptr<T>(), h.data_ptr<T>(),
                           ptr_or_null<T>(c), kept.saved.data_ptr<T>() + kept_off * S * H, H},
                          hg.data_ptr<T>()};
      r.step.b_hh = bias;
      r.step.h_out = output.data_ptr<T>() + off * H;
      if (keeps_h) r.step.h_keep = kept.h_prev.data_ptr<T>() + kept_off * H;
      if (has_c && for_backward) r.step.c_keep = kept.c_prev.data_ptr<T>() + off * H;
      if (normed) {
        r.ln_hh = norms.hh->data_ptr<T>();
        r.h_hat = kept.h_hat.data_ptr<T>() + kept_off * GH;
        r.rstd = kept.h_stats.data_ptr<T>() + kept_off * 2;
        if (has_c) {
          r.ln_cell_w = norms.cell_w->data_ptr<T>();
          r.ln_cell_b = norms.cell_b->data_ptr<T>();
          r.c_hat = kept.c_hat.data_ptr<T>() + kept_off * H;
        }
      }
      if (mask.defined()) r.zoneout = mask.data_ptr<T>() + off * H;
      forward_rows(x, kind, r, n);
    }
  });
  return {output, h, c, kept};
}

RowwiseGrads rowwise_layer_backward(CellKind kind, const Tensor& grad_output,
                                    const Tensor& grad_h_n, const std::optional<Tensor>& grad_c_n,
                                    const Tensor& x, at::IntArrayRef batch_sizes,
                                    const Tensor& w_ih, const Tensor& w_hh, bool has_bias,
                                    const LayerNorms& norms, const std::optional<Tensor>& zoneout,
                                    const RowwiseKept& kept, bool reverse, bool input_grad) {
  check_device(x, kind);
  const Schedule sched = make_schedule(x, batch_sizes);
  const bool has_c = cell_has_cell_state(kind), normed = norms.present();
  const bool apart = !cell_sums_projections(kind);
  const int64_t G = cell_gates(kind), S = cell_saved(kind);
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) % G == 0, "rnnkernels: w_hh must be [", G,
              "*H, H], got ", w_hh.sizes());
  const int64_t H = w_hh.size(0) / G, GH = G * H, I = x.size(-1), B = sched.batch,
                N = sched.total;
  check_operand(x, w_ih, "w_ih", {GH, I});
  check_operand(x, w_hh, "w_hh", {GH, H});
  check_norms(kind, x, GH, H, norms);
  check_operand(x, grad_output, "grad_output", rows_shape(x, H));
  check_operand(x, grad_h_n, "grad_h_n", {B, H});
  check_operand(x, kept.saved, "saved", rows_shape(x, S * H));
  check_operand(x, kept.h_prev, "h_prev", rows_shape(x, H));
  TORCH_CHECK(!has_c || (grad_c_n.has_value() && grad_c_n->defined()),
              "rnnkernels: LSTM backward needs grad_c_n");
  if (has_c) {
    check_operand(x, *grad_c_n, "grad_c_n", {B, H});
    check_operand(x, kept.c_prev, "c_prev", rows_shape(x, H));
  }
  if (normed) {
    check_operand(x, kept.xg_raw, "xg_raw", {N, GH});
    check_operand(x, kept.x_stats, "x_stats", {N, 2});
    check_operand(x, kept.h_hat, "h_hat", {N, GH});
    check_operand(x, kept.h_stats, "h_stats", {N, 2});
    if (has_c) check_operand(x, kept.c_hat, "c_hat", {N, H});
  }
  if (zoneout.has_value()) check_operand(x, *zoneout, "zoneout", rows_shape(x, H));

  const Tensor grad_out2d = grad_output.reshape({N, H}).contiguous();
  const Tensor saved = kept.saved.reshape({N, S * H}).contiguous();
  const Tensor h_prev = kept.h_prev.reshape({N, H}).contiguous();
  const Tensor c_prev = has_c ? kept.c_prev.reshape({N, H}).contiguous() : Tensor();
  const Tensor h_hat = normed ? kept.h_hat.contiguous() : Tensor();
  const Tensor c_hat = normed && has_c ? kept.c_hat.contiguous() : Tensor();
  const Tensor h_stats = normed ? kept.h_stats.contiguous() : Tensor();
  const Tensor mask = zoneout.has_value() ? zoneout->contiguous() : Tensor();
  // The gates' gradients never leave the call: kept scratch buffers (workspace.h).
  Tensor dxg = scratch(Scratch::InputGateGrads, {N, GH}, x.options());
  // GRU's recurrent-side gradient differs from the input side in the n gate; where the cell
  // normalises, W_hh h's gradient differs from that of the normalised projection.
  Tensor dhg = apart ? scratch(Scratch::HiddenGateGrads, {N, GH}, x.options()) : dxg;
  Tensor dhg_raw = normed ? scratch(Scratch::RawHiddenGateGrads, {N, GH}, x.options()) : dhg;
  Tensor d_cell_out = normed && has_c ? kept_rows(x, N, H) : Tensor();
  Tensor dh = grad_h_n.contiguous().clone();  // dL/dh of each row's current step
  Tensor dc = has_c ? grad_c_n->contiguous().clone() : Tensor();
  Tensor dh_direct = mask.defined() ? at::empty({B, H}, x.options()) : Tensor();
  const Tensor w_hh_c = w_hh.contiguous();
  const bool accumulate = mask.defined() || cell_direct_hidden_gradient(kind);

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkernels_rowwise_backward", [&] {
    using T = scalar_t;
    const StepDevice<T> device = step_device<T>(x);
    for (int64_t k = sched.steps - 1; k >= 0; --k) {
      const int64_t t = step_at(sched, k, reverse), n = sched.rows(t), off = sched.offset(t);
      if (n == 0) continue;
      RowwiseBackward<T> r{{dh.data_ptr<T>(), ptr_or_null<T>(dc),
                            saved.data_ptr<T>() + off * S * H,
                            has_c ? c_prev.data_ptr<T>() + off * H : nullptr,
                            h_prev.data_ptr<T>() + off * H, dxg.data_ptr<T>() + off * GH,
                            dhg.data_ptr<T>() + off * GH, H}};
      r.step.grad_h = grad_out2d.data_ptr<T>() + off * H;
      if (normed) {
        r.ln_hh = norms.hh->data_ptr<T>();
        r.h_hat = h_hat.data_ptr<T>() + off * GH;
        r.rstd = h_stats.data_ptr<T>() + off * 2;
        r.dhg_raw = dhg_raw.data_ptr<T>() + off * GH;
        if (has_c) {
          r.ln_cell_w = norms.cell_w->data_ptr<T>();
          r.ln_cell_b = norms.cell_b->data_ptr<T>();
          r.c_hat = c_hat.data_ptr<T>() + off * H;
          r.d_cell_out = d_cell_out.data_ptr<T>() + off * H;
        }
      }
      if (mask.defined()) {
        r.zoneout = mask.data_ptr<T>() + off * H;
        r.dh_direct = dh_direct.data_ptr<T>();
      }
      backward_rows(x, kind, r, n);
      device.gemm(n, H, GH, dhg_raw.data_ptr<T>() + off * GH, w_hh_c.data_ptr<T>(),
                  /*transpose_w=*/false, dh.data_ptr<T>(), accumulate);
    }
  });

  RowwiseGrads grads;
  const auto empty = [&] { return none_like(x); };
  Tensor dxg_raw = dxg;
  if (normed) {
    const auto [mean, rstd] = x_stats_columns(kept.x_stats);
    auto [d_raw, d_ln_ih, unused_db] = at::native_layer_norm_backward(
        dxg, kept.xg_raw, {GH}, mean, rstd, *norms.ih, std::nullopt, {true, true, false});
    dxg_raw = d_raw;
    grads.d_ln_ih = d_ln_ih;
    grads.d_ln_hh = (dhg * h_hat).sum(0);
    grads.d_ln_cell_w = has_c ? (d_cell_out * c_hat).sum(0) : empty();
    grads.d_ln_cell_b = has_c ? d_cell_out.sum(0) : empty();
  } else {
    grads.d_ln_ih = empty();
    grads.d_ln_hh = empty();
    grads.d_ln_cell_w = empty();
    grads.d_ln_cell_b = empty();
  }
  if (has_bias) {
    grads.db_ih = dxg.sum(0);
    // Only GRU's two projections get different gradients; a copy keeps the outputs apart.
    grads.db_hh = apart ? dhg.sum(0) : grads.db_ih.clone();
  } else {
    grads.db_ih = empty();
    grads.db_hh = empty();
  }
  grads.dx = input_grad ? at::mm(dxg_raw, w_ih).view(x.sizes()) : empty();
  grads.dw_ih = at::mm(dxg_raw.t(), x.reshape({N, I}));
  grads.dw_hh = at::mm(dhg_raw.t(), h_prev);
  grads.dh0 = dh;
  grads.dc0 = has_c ? dc : empty();
  return grads;
}

}  // namespace rnnk
