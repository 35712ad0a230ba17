// Op schemas and their per-device registration, nothing else. Every cell has the
// same two schemas so that one Python registration serves them all.
#include <torch/library.h>

#include "layer.h"

namespace rnnk {
namespace {

template <CellKind K>
auto forward_op(const at::Tensor& x, at::IntArrayRef batch_sizes, const at::Tensor& h0,
                const std::optional<at::Tensor>& c0, const at::Tensor& w_ih,
                const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                const std::optional<at::Tensor>& b_hh, const std::optional<at::Tensor>& w_hr,
                bool reverse) {
  return layer_forward(K, x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse);
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

constexpr const char* kForwardSchema =
    "_layer_forward(Tensor x, int[] batch_sizes, Tensor h0, Tensor? c0, Tensor w_ih, "
    "Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, bool reverse) -> "
    "(Tensor output, Tensor h_n, Tensor c_n, Tensor saved, Tensor h_prev, Tensor c_prev, "
    "Tensor r_seq)";
constexpr const char* kBackwardSchema =
    "_layer_backward(Tensor grad_output, Tensor grad_h_n, Tensor? grad_c_n, Tensor x, "
    "int[] batch_sizes, Tensor w_ih, Tensor w_hh, bool has_bias, Tensor? w_hr, Tensor saved, "
    "Tensor h_prev, Tensor c_prev, Tensor r_seq, bool reverse) -> "
    "(Tensor grad_x, Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, Tensor grad_w_hh, "
    "Tensor grad_b_ih, Tensor grad_b_hh, Tensor grad_w_hr)";

const char* const kCellNames[] = {"lstm", "gru", "rnn_tanh", "rnn_relu"};

template <CellKind K>
void register_cell_impls(torch::Library& m) {
  const std::string name = kCellNames[static_cast<int>(K)];
  m.impl((name + "_layer_forward").c_str(), &forward_op<K>);
  m.impl((name + "_layer_backward").c_str(), &backward_op<K>);
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
    m.def((std::string(name) + kBackwardSchema).c_str());
  }
}

TORCH_LIBRARY_IMPL(rnnkernels, CPU, m) { register_impls(m); }

#ifdef RNNK_WITH_CUDA
TORCH_LIBRARY_IMPL(rnnkernels, CUDA, m) { register_impls(m); }
#endif

}  // namespace rnnk
