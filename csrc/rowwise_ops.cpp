// The rowwise layer ops (rowwise_layer.h): one schema pair for the LSTM and the GRU, with
// the layer-normalised cells' weights and the zoneout mask as optional inputs; CPU and CUDA.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "rowwise_layer.h"

namespace rnnk {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

template <CellKind K>
auto rowwise_forward_op(const Tensor& x, at::IntArrayRef batch_sizes, const Tensor& h0,
                        const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                        const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& ln_ih,
                        const OptTensor& ln_hh, const OptTensor& ln_cell_w,
                        const OptTensor& ln_cell_b, const OptTensor& zoneout, bool reverse) {
  auto [output, h_n, c_n, kept] = rowwise_layer_forward(
      K, x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh,
      LayerNorms{ln_ih, ln_hh, ln_cell_w, ln_cell_b}, zoneout, reverse, /*for_backward=*/true);
  return std::make_tuple(output, h_n, c_n, kept.saved, kept.h_prev, kept.c_prev, kept.xg_raw,
                         kept.x_stats, kept.h_hat, kept.c_hat, kept.h_stats);
}

// The forward without what backward needs, for calls no gradient will flow through.
template <CellKind K>
auto rowwise_inference_op(const Tensor& x, at::IntArrayRef batch_sizes, const Tensor& h0,
                          const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                          const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& ln_ih,
                          const OptTensor& ln_hh, const OptTensor& ln_cell_w,
                          const OptTensor& ln_cell_b, const OptTensor& zoneout, bool reverse) {
  auto [output, h_n, c_n, kept] = rowwise_layer_forward(
      K, x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh,
      LayerNorms{ln_ih, ln_hh, ln_cell_w, ln_cell_b}, zoneout, reverse, /*for_backward=*/false);
  return std::make_tuple(output, h_n, c_n);
}

template <CellKind K>
auto rowwise_backward_op(const Tensor& grad_output, const Tensor& grad_h_n,
                         const OptTensor& grad_c_n, const Tensor& x, at::IntArrayRef batch_sizes,
                         const Tensor& w_ih, const Tensor& w_hh, bool has_bias,
                         const OptTensor& ln_ih, const OptTensor& ln_hh,
                         const OptTensor& ln_cell_w, const OptTensor& ln_cell_b,
                         const OptTensor& zoneout, const Tensor& saved, const Tensor& h_prev,
                         const Tensor& c_prev, const Tensor& xg_raw, const Tensor& x_stats,
                         const Tensor& h_hat, const Tensor& c_hat, const Tensor& h_stats,
                         bool reverse, bool input_grad) {
  const RowwiseGrads g = rowwise_layer_backward(
      K, grad_output, grad_h_n, grad_c_n, x, batch_sizes, w_ih, w_hh, has_bias,
      LayerNorms{ln_ih, ln_hh, ln_cell_w, ln_cell_b}, zoneout,
      RowwiseKept{saved, h_prev, c_prev, xg_raw, x_stats, h_hat, c_hat, h_stats}, reverse,
      input_grad);
  return std::make_tuple(g.dx, g.dh0, g.dc0, g.dw_ih, g.dw_hh, g.db_ih, g.db_hh, g.d_ln_ih,
                         g.d_ln_hh, g.d_ln_cell_w, g.d_ln_cell_b);
}

constexpr const char* kRowwiseForwardSchema =
    "_rowwise_forward(Tensor x, int[] batch_sizes, Tensor h0, Tensor? c0, Tensor w_ih, "
    "Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? ln_ih_weight, Tensor? ln_hh_weight, "
    "Tensor? ln_cell_weight, Tensor? ln_cell_bias, Tensor? zoneout, bool reverse) -> "
    "(Tensor output, Tensor h_n, Tensor c_n, Tensor saved, Tensor h_prev, Tensor c_prev, "
    "Tensor xg_raw, Tensor x_stats, Tensor h_hat, Tensor c_hat, Tensor h_stats)";
constexpr const char* kRowwiseInferenceSchema =
    "_rowwise_inference(Tensor x, int[] batch_sizes, Tensor h0, Tensor? c0, Tensor w_ih, "
    "Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? ln_ih_weight, Tensor? ln_hh_weight, "
    "Tensor? ln_cell_weight, Tensor? ln_cell_bias, Tensor? zoneout, bool reverse) -> "
    "(Tensor output, Tensor h_n, Tensor c_n)";
constexpr const char* kRowwiseBackwardSchema =
    "_rowwise_backward(Tensor grad_output, Tensor grad_h_n, Tensor? grad_c_n, Tensor x, "
    "int[] batch_sizes, Tensor w_ih, Tensor w_hh, bool has_bias, Tensor? ln_ih_weight, "
    "Tensor? ln_hh_weight, Tensor? ln_cell_weight, Tensor? ln_cell_bias, Tensor? zoneout, "
    "Tensor saved, Tensor h_prev, Tensor c_prev, Tensor xg_raw, Tensor x_stats, Tensor h_hat, "
    "Tensor c_hat, Tensor h_stats, bool reverse, *, bool input_grad=True) -> "
    "(Tensor grad_x, Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, Tensor grad_w_hh, "
    "Tensor grad_b_ih, Tensor grad_b_hh, Tensor grad_ln_ih_weight, Tensor grad_ln_hh_weight, "
    "Tensor grad_ln_cell_weight, Tensor grad_ln_cell_bias)";

// The ops of every cell whose traits say the rowwise ops take it (kRowwise).
template <CellKind K>
void register_rowwise_impls(torch::Library& m) {
  if (!cell_rowwise(K)) return;
  const std::string name = kCellNames[static_cast<int>(K)];
  m.impl((name + "_rowwise_forward").c_str(), &rowwise_forward_op<K>);
  m.impl((name + "_rowwise_inference").c_str(), &rowwise_inference_op<K>);
  m.impl((name + "_rowwise_backward").c_str(), &rowwise_backward_op<K>);
}

void register_impls(torch::Library& m) {
  for_each_cell_kind([&](auto kind) { register_rowwise_impls<decltype(kind)::value>(m); });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkernels, m) {
  for (int k = 0; k < kCellKinds; ++k) {
    if (!cell_rowwise(static_cast<CellKind>(k))) continue;
    const std::string name = kCellNames[k];
    m.def((name + kRowwiseForwardSchema).c_str());
    m.def((name + kRowwiseInferenceSchema).c_str());
    m.def((name + kRowwiseBackwardSchema).c_str());
  }
}

TORCH_LIBRARY_IMPL(rnnkernels, CPU, m) { register_impls(m); }

#ifdef RNNK_WITH_CUDA
TORCH_LIBRARY_IMPL(rnnkernels, CUDA, m) { register_impls(m); }
#endif

}  // namespace rnnk
