// Op schemas and their per-device registration. Every cell has the same six schemas
// (a layer's forward, inference and backward; both directions' inference at once; a single
// step's forward and backward) so that one Python registration serves them all; the cell
// ops are the layer loop run over one step.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "directions.h"
#include "layer.h"

namespace rnnk {
namespace {

template <CellKind K>
auto forward_op(const at::Tensor& x, at::IntArrayRef batch_sizes, const at::Tensor& h0,
                const std::optional<at::Tensor>& c0, const at::Tensor& w_ih,
                const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                const std::optional<at::Tensor>& b_hh, const std::optional<at::Tensor>& w_hr,
                bool reverse) {
  return layer_forward(K, x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse,
                       /*for_backward=*/true);
}

// The forward without what backward needs, for calls no gradient will flow through.
template <CellKind K>
auto inference_op(const at::Tensor& x, at::IntArrayRef batch_sizes, const at::Tensor& h0,
                  const std::optional<at::Tensor>& c0, const at::Tensor& w_ih,
                  const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                  const std::optional<at::Tensor>& b_hh, const std::optional<at::Tensor>& w_hr,
                  bool reverse) {
  auto [output, h_n, c_n, saved, h_prev, c_prev, r_seq] = layer_forward(
      K, x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, /*for_backward=*/false);
  return std::make_tuple(output, h_n, c_n);
}

// Both directions of a bidirectional layer in inference, at once where the CPU has the
// threads (directions.h); the arguments are two inference calls' but for x and batch_sizes.
template <CellKind K>
auto bidirectional_inference_op(
    const at::Tensor& x, at::IntArrayRef batch_sizes, const at::Tensor& h0_f,
    const std::optional<at::Tensor>& c0_f, const at::Tensor& w_ih_f, const at::Tensor& w_hh_f,
    const std::optional<at::Tensor>& b_ih_f, const std::optional<at::Tensor>& b_hh_f,
    const std::optional<at::Tensor>& w_hr_f, const at::Tensor& h0_r,
    const std::optional<at::Tensor>& c0_r, const at::Tensor& w_ih_r, const at::Tensor& w_hh_r,
    const std::optional<at::Tensor>& b_ih_r, const std::optional<at::Tensor>& b_hh_r,
    const std::optional<at::Tensor>& w_hr_r) {
  std::tuple<at::Tensor, at::Tensor, at::Tensor> results[2];
  const auto run = [&](int direction) {
    results[direction] =
        direction == 0 ? inference_op<K>(x, batch_sizes, h0_f, c0_f, w_ih_f, w_hh_f, b_ih_f,
                                         b_hh_f, w_hr_f, /*reverse=*/false)
                       : inference_op<K>(x, batch_sizes, h0_r, c0_r, w_ih_r, w_hh_r, b_ih_r,
                                         b_hh_r, w_hr_r, /*reverse=*/true);
  };
  run_both_directions(run, x.is_cpu() && at::get_num_threads() > 1 && !at::in_parallel_region());
  const auto& [out_f, h_n_f, c_n_f] = results[0];
  const auto& [out_r, h_n_r, c_n_r] = results[1];
  return std::make_tuple(out_f, h_n_f, c_n_f, out_r, h_n_r, c_n_r);
}

template <CellKind K>
auto backward_op(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                 const std::optional<at::Tensor>& grad_c_n, const at::Tensor& x,
                 at::IntArrayRef batch_sizes, const at::Tensor& w_ih, const at::Tensor& w_hh,
                 bool has_bias, const std::optional<at::Tensor>& w_hr, const at::Tensor& saved,
                 const at::Tensor& h_prev, const at::Tensor& c_prev, const at::Tensor& r_seq,
                 bool reverse) {
  return layer_backward(K, grad_output, grad_h_n, grad_c_n, x, batch_sizes, w_ih, w_hh, has_bias,
                        w_hr, saved, h_prev, c_prev, r_seq, reverse);
}

// One step of a cell (the nn.*Cell modules): the layer loop over a single step.
template <CellKind K>
auto cell_forward_op(const at::Tensor& x, const at::Tensor& h, const std::optional<at::Tensor>& c,
                     const at::Tensor& w_ih, const at::Tensor& w_hh,
                     const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh) {
  auto [output, h_new, c_new, saved, h_prev, c_prev, r_seq] =
      layer_forward(K, x.unsqueeze(0), {}, h, c, w_ih, w_hh, b_ih, b_hh, std::nullopt, false,
                    /*for_backward=*/true);
  return std::make_tuple(h_new, c_new, saved.squeeze(0),
                         c_prev.dim() == 3 ? c_prev.squeeze(0) : c_prev);
}

template <CellKind K>
auto cell_backward_op(const at::Tensor& grad_h, const std::optional<at::Tensor>& grad_c,
                      const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih,
                      const at::Tensor& w_hh, bool has_bias, const at::Tensor& saved,
                      const at::Tensor& c_prev) {
  auto [dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, dw_hr] = layer_backward(
      K, grad_h.unsqueeze(0), at::zeros_like(h), grad_c, x.unsqueeze(0), {}, w_ih, w_hh, has_bias,
      std::nullopt, saved.unsqueeze(0), h.unsqueeze(0),
      c_prev.dim() == 2 ? c_prev.unsqueeze(0) : c_prev, at::empty({0}, x.options()), false);
  return std::make_tuple(dx.squeeze(0), dh, dc, dw_ih, dw_hh, db_ih, db_hh);
}

constexpr const char* kForwardSchema =
    "_layer_forward(Tensor x, int[] batch_sizes, Tensor h0, Tensor? c0, Tensor w_ih, "
    "Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, bool reverse) -> "
    "(Tensor output, Tensor h_n, Tensor c_n, Tensor saved, Tensor h_prev, Tensor c_prev, "
    "Tensor r_seq)";
constexpr const char* kInferenceSchema =
    "_layer_inference(Tensor x, int[] batch_sizes, Tensor h0, Tensor? c0, Tensor w_ih, "
    "Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, bool reverse) -> "
    "(Tensor output, Tensor h_n, Tensor c_n)";
constexpr const char* kBidirectionalInferenceSchema =
    "_bidirectional_inference(Tensor x, int[] batch_sizes, Tensor h0_f, Tensor? c0_f, "
    "Tensor w_ih_f, Tensor w_hh_f, Tensor? b_ih_f, Tensor? b_hh_f, Tensor? w_hr_f, Tensor h0_r, "
    "Tensor? c0_r, Tensor w_ih_r, Tensor w_hh_r, Tensor? b_ih_r, Tensor? b_hh_r, "
    "Tensor? w_hr_r) -> (Tensor output_f, Tensor h_n_f, Tensor c_n_f, Tensor output_r, "
    "Tensor h_n_r, Tensor c_n_r)";
constexpr const char* kBackwardSchema =
    "_layer_backward(Tensor grad_output, Tensor grad_h_n, Tensor? grad_c_n, Tensor x, "
    "int[] batch_sizes, Tensor w_ih, Tensor w_hh, bool has_bias, Tensor? w_hr, Tensor saved, "
    "Tensor h_prev, Tensor c_prev, Tensor r_seq, bool reverse) -> "
    "(Tensor grad_x, Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, Tensor grad_w_hh, "
    "Tensor grad_b_ih, Tensor grad_b_hh, Tensor grad_w_hr)";

constexpr const char* kCellForwardSchema =
    "_cell_forward(Tensor x, Tensor h, Tensor? c, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
    "Tensor? b_hh) -> (Tensor h_new, Tensor c_new, Tensor saved, Tensor c_prev)";
constexpr const char* kCellBackwardSchema =
    "_cell_backward(Tensor grad_h, Tensor? grad_c, Tensor x, Tensor h, Tensor w_ih, Tensor w_hh, "
    "bool has_bias, Tensor saved, Tensor c_prev) -> (Tensor grad_x, Tensor grad_h, "
    "Tensor grad_c, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh)";

const char* const kCellNames[] = {"lstm", "gru", "rnn_tanh", "rnn_relu"};

template <CellKind K>
void register_cell_impls(torch::Library& m) {
  const std::string name = kCellNames[static_cast<int>(K)];
  m.impl((name + "_layer_forward").c_str(), &forward_op<K>);
  m.impl((name + "_layer_inference").c_str(), &inference_op<K>);
  m.impl((name + "_bidirectional_inference").c_str(), &bidirectional_inference_op<K>);
  m.impl((name + "_layer_backward").c_str(), &backward_op<K>);
  m.impl((name + "_cell_forward").c_str(), &cell_forward_op<K>);
  m.impl((name + "_cell_backward").c_str(), &cell_backward_op<K>);
}

void register_impls(torch::Library& m) {
  register_cell_impls<CellKind::Lstm>(m);
  register_cell_impls<CellKind::Gru>(m);
  register_cell_impls<CellKind::RnnTanh>(m);
  register_cell_impls<CellKind::RnnRelu>(m);
}

}  // namespace

TORCH_LIBRARY(rnnkernels, m) {
  for (const char* name : kCellNames) {
    m.def((std::string(name) + kForwardSchema).c_str());
    m.def((std::string(name) + kInferenceSchema).c_str());
    m.def((std::string(name) + kBidirectionalInferenceSchema).c_str());
    m.def((std::string(name) + kBackwardSchema).c_str());
    m.def((std::string(name) + kCellForwardSchema).c_str());
    m.def((std::string(name) + kCellBackwardSchema).c_str());
  }
}

TORCH_LIBRARY_IMPL(rnnkernels, CPU, m) { register_impls(m); }

#ifdef RNNK_WITH_CUDA
TORCH_LIBRARY_IMPL(rnnkernels, CUDA, m) { register_impls(m); }
#endif

}  // namespace rnnk
