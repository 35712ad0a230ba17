// Op schemas and their per-device registration. Every cell has the same nine schemas
// (a layer's forward, inference and backward; both directions' forward, inference and
// backward at once; a single step's forward, inference and backward) so that one Python
// registration serves them all.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cell_step.h"
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

// Whether the two directions of a layer on x can take a CPU thread each.
bool directions_concurrently(const at::Tensor& x) {
  return x.is_cpu() && at::get_num_threads() > 1 && !at::in_parallel_region();
}

// Both directions of a bidirectional layer through `Op` (the forward or inference op), at
// once where the CPU has the threads (directions.h); the arguments are two calls' but for
// x and batch_sizes, the results the forward direction's then the reverse one's.
template <auto Op>
auto both_directions(
    const at::Tensor& x, at::IntArrayRef batch_sizes, const at::Tensor& h0_f,
    const std::optional<at::Tensor>& c0_f, const at::Tensor& w_ih_f, const at::Tensor& w_hh_f,
    const std::optional<at::Tensor>& b_ih_f, const std::optional<at::Tensor>& b_hh_f,
    const std::optional<at::Tensor>& w_hr_f, const at::Tensor& h0_r,
    const std::optional<at::Tensor>& c0_r, const at::Tensor& w_ih_r, const at::Tensor& w_hh_r,
    const std::optional<at::Tensor>& b_ih_r, const std::optional<at::Tensor>& b_hh_r,
    const std::optional<at::Tensor>& w_hr_r) {
  // One has_bias serves both directions in bidirectional_backward_op.
  TORCH_CHECK(b_ih_f.has_value() == b_ih_r.has_value(),
              "rnnkernels: give both directions biases or neither");
  decltype(Op(x, batch_sizes, h0_f, c0_f, w_ih_f, w_hh_f, b_ih_f, b_hh_f, w_hr_f, false))
      results[2];
  const auto run = [&](int direction) {
    results[direction] =
        direction == 0
            ? Op(x, batch_sizes, h0_f, c0_f, w_ih_f, w_hh_f, b_ih_f, b_hh_f, w_hr_f, false)
            : Op(x, batch_sizes, h0_r, c0_r, w_ih_r, w_hh_r, b_ih_r, b_hh_r, w_hr_r, true);
  };
  run_both_directions(run, directions_concurrently(x));
  return std::tuple_cat(results[0], results[1]);
}

template <CellKind K>
auto backward_op(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                 const std::optional<at::Tensor>& grad_c_n, const at::Tensor& x,
                 at::IntArrayRef batch_sizes, const at::Tensor& w_ih, const at::Tensor& w_hh,
                 bool has_bias, const std::optional<at::Tensor>& w_hr, const at::Tensor& saved,
                 const at::Tensor& h_prev, const at::Tensor& c_prev, const at::Tensor& r_seq,
                 bool reverse, bool input_grad) {
  return layer_backward(K, grad_output, grad_h_n, grad_c_n, x, batch_sizes, w_ih, w_hh, has_bias,
                        w_hr, saved, h_prev, c_prev, r_seq, reverse, input_grad);
}

// The backward of both directions of a bidirectional layer trained through
// both_directions<forward_op>, at once where it ran at once: each direction's arguments as
// for backward_op but for x, batch_sizes, has_bias and input_grad; returns the input's
// gradient (the sum of the directions') and then each direction's gradients of its other
// inputs.
template <CellKind K>
auto bidirectional_backward_op(
    const at::Tensor& x, at::IntArrayRef batch_sizes, bool has_bias,
    const at::Tensor& grad_output_f, const at::Tensor& grad_h_n_f,
    const std::optional<at::Tensor>& grad_c_n_f, const at::Tensor& w_ih_f,
    const at::Tensor& w_hh_f, const std::optional<at::Tensor>& w_hr_f, const at::Tensor& saved_f,
    const at::Tensor& h_prev_f, const at::Tensor& c_prev_f, const at::Tensor& r_seq_f,
    const at::Tensor& grad_output_r, const at::Tensor& grad_h_n_r,
    const std::optional<at::Tensor>& grad_c_n_r, const at::Tensor& w_ih_r,
    const at::Tensor& w_hh_r, const std::optional<at::Tensor>& w_hr_r, const at::Tensor& saved_r,
    const at::Tensor& h_prev_r, const at::Tensor& c_prev_r, const at::Tensor& r_seq_r,
    bool input_grad) {
  decltype(backward_op<K>(grad_output_f, grad_h_n_f, grad_c_n_f, x, batch_sizes, w_ih_f, w_hh_f,
                          has_bias, w_hr_f, saved_f, h_prev_f, c_prev_f, r_seq_f, false,
                          input_grad)) results[2];
  const auto run = [&](int direction) {
    results[direction] =
        direction == 0
            ? backward_op<K>(grad_output_f, grad_h_n_f, grad_c_n_f, x, batch_sizes, w_ih_f,
                             w_hh_f, has_bias, w_hr_f, saved_f, h_prev_f, c_prev_f, r_seq_f,
                             false, input_grad)
            : backward_op<K>(grad_output_r, grad_h_n_r, grad_c_n_r, x, batch_sizes, w_ih_r,
                             w_hh_r, has_bias, w_hr_r, saved_r, h_prev_r, c_prev_r, r_seq_r,
                             true, input_grad);
  };
  run_both_directions(run, directions_concurrently(x));
  const auto& [dx_f, dh_f, dc_f, dw_ih_f, dw_hh_f, db_ih_f, db_hh_f, dw_hr_f] = results[0];
  const auto& [dx_r, dh_r, dc_r, dw_ih_r, dw_hh_r, db_ih_r, db_hh_r, dw_hr_r] = results[1];
  return std::make_tuple(input_grad ? dx_f + dx_r : dx_f, dh_f, dc_f, dw_ih_f, dw_hh_f, db_ih_f,
                         db_hh_f, dw_hr_f, dh_r, dc_r, dw_ih_r, dw_hh_r, db_ih_r, db_hh_r, dw_hr_r);
}

// One step of a cell (the nn.*Cell modules), cell_step.h.
template <CellKind K>
auto cell_forward_op(const at::Tensor& x, const at::Tensor& h, const std::optional<at::Tensor>& c,
                     const at::Tensor& w_ih, const at::Tensor& w_hh,
                     const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh) {
  return cell_forward(K, x, h, c, w_ih, w_hh, b_ih, b_hh);
}

template <CellKind K>
auto cell_inference_op(const at::Tensor& x, const at::Tensor& h,
                       const std::optional<at::Tensor>& c, const at::Tensor& w_ih,
                       const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                       const std::optional<at::Tensor>& b_hh) {
  return cell_inference(K, x, h, c, w_ih, w_hh, b_ih, b_hh);
}

template <CellKind K>
auto cell_backward_op(const at::Tensor& grad_h, const std::optional<at::Tensor>& grad_c,
                      const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih,
                      const at::Tensor& w_hh, bool has_bias, const at::Tensor& saved,
                      const at::Tensor& c_prev, bool input_grad, bool hidden_grad) {
  return cell_backward(K, grad_h, grad_c, x, h, w_ih, w_hh, has_bias, saved, c_prev, input_grad,
                       hidden_grad);
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
constexpr const char* kBidirectionalForwardSchema =
    "_bidirectional_forward(Tensor x, int[] batch_sizes, Tensor h0_f, Tensor? c0_f, "
    "Tensor w_ih_f, Tensor w_hh_f, Tensor? b_ih_f, Tensor? b_hh_f, Tensor? w_hr_f, Tensor h0_r, "
    "Tensor? c0_r, Tensor w_ih_r, Tensor w_hh_r, Tensor? b_ih_r, Tensor? b_hh_r, "
    "Tensor? w_hr_r) -> (Tensor output_f, Tensor h_n_f, Tensor c_n_f, Tensor saved_f, "
    "Tensor h_prev_f, Tensor c_prev_f, Tensor r_seq_f, Tensor output_r, Tensor h_n_r, "
    "Tensor c_n_r, Tensor saved_r, Tensor h_prev_r, Tensor c_prev_r, Tensor r_seq_r)";
constexpr const char* kBidirectionalInferenceSchema =
    "_bidirectional_inference(Tensor x, int[] batch_sizes, Tensor h0_f, Tensor? c0_f, "
    "Tensor w_ih_f, Tensor w_hh_f, Tensor? b_ih_f, Tensor? b_hh_f, Tensor? w_hr_f, Tensor h0_r, "
    "Tensor? c0_r, Tensor w_ih_r, Tensor w_hh_r, Tensor? b_ih_r, Tensor? b_hh_r, "
    "Tensor? w_hr_r) -> (Tensor output_f, Tensor h_n_f, Tensor c_n_f, Tensor output_r, "
    "Tensor h_n_r, Tensor c_n_r)";
constexpr const char* kBidirectionalBackwardSchema =
    "_bidirectional_backward(Tensor x, int[] batch_sizes, bool has_bias, "
    "Tensor grad_output_f, Tensor grad_h_n_f, Tensor? grad_c_n_f, Tensor w_ih_f, Tensor w_hh_f, "
    "Tensor? w_hr_f, Tensor saved_f, Tensor h_prev_f, Tensor c_prev_f, Tensor r_seq_f, "
    "Tensor grad_output_r, Tensor grad_h_n_r, Tensor? grad_c_n_r, Tensor w_ih_r, Tensor w_hh_r, "
    "Tensor? w_hr_r, Tensor saved_r, Tensor h_prev_r, Tensor c_prev_r, Tensor r_seq_r, *, "
    "bool input_grad=True) -> "
    "(Tensor grad_x, Tensor grad_h0_f, Tensor grad_c0_f, Tensor grad_w_ih_f, "
    "Tensor grad_w_hh_f, Tensor grad_b_ih_f, Tensor grad_b_hh_f, Tensor grad_w_hr_f, "
    "Tensor grad_h0_r, Tensor grad_c0_r, Tensor grad_w_ih_r, Tensor grad_w_hh_r, "
    "Tensor grad_b_ih_r, Tensor grad_b_hh_r, Tensor grad_w_hr_r)";
constexpr const char* kBackwardSchema =
    "_layer_backward(Tensor grad_output, Tensor grad_h_n, Tensor? grad_c_n, Tensor x, "
    "int[] batch_sizes, Tensor w_ih, Tensor w_hh, bool has_bias, Tensor? w_hr, Tensor saved, "
    "Tensor h_prev, Tensor c_prev, Tensor r_seq, bool reverse, *, bool input_grad=True) -> "
    "(Tensor grad_x, Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, Tensor grad_w_hh, "
    "Tensor grad_b_ih, Tensor grad_b_hh, Tensor grad_w_hr)";

constexpr const char* kCellForwardSchema =
    "_cell_forward(Tensor x, Tensor h, Tensor? c, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
    "Tensor? b_hh) -> (Tensor h_new, Tensor c_new, Tensor saved, Tensor c_prev)";
// x [B, I] with h, c [B, H], or unbatched: x [I] with h, c [H].
constexpr const char* kCellInferenceSchema =
    "_cell_inference(Tensor x, Tensor h, Tensor? c, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
    "Tensor? b_hh) -> (Tensor h_new, Tensor c_new)";
constexpr const char* kCellBackwardSchema =
    "_cell_backward(Tensor grad_h, Tensor? grad_c, Tensor x, Tensor h, Tensor w_ih, Tensor w_hh, "
    "bool has_bias, Tensor saved, Tensor c_prev, *, bool input_grad=True, "
    "bool hidden_grad=True) -> (Tensor grad_x, Tensor grad_h, "
    "Tensor grad_c, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh)";

template <CellKind K>
void register_cell_impls(torch::Library& m) {
  const std::string name = kCellNames[static_cast<int>(K)];
  m.impl((name + "_layer_forward").c_str(), &forward_op<K>);
  m.impl((name + "_layer_inference").c_str(), &inference_op<K>);
  m.impl((name + "_bidirectional_forward").c_str(), &both_directions<forward_op<K>>);
  m.impl((name + "_bidirectional_inference").c_str(), &both_directions<inference_op<K>>);
  m.impl((name + "_bidirectional_backward").c_str(), &bidirectional_backward_op<K>);
  m.impl((name + "_layer_backward").c_str(), &backward_op<K>);
  m.impl((name + "_cell_forward").c_str(), &cell_forward_op<K>);
  m.impl((name + "_cell_inference").c_str(), &cell_inference_op<K>);
  m.impl((name + "_cell_backward").c_str(), &cell_backward_op<K>);
}

// Every kind of the cell table (cells.h).
void register_impls(torch::Library& m) {
  for_each_cell_kind([&](auto kind) { register_cell_impls<decltype(kind)::value>(m); });
}

}  // namespace

TORCH_LIBRARY(rnnkernels, m) {
  for (const char* name : kCellNames) {
    m.def((std::string(name) + kForwardSchema).c_str());
    m.def((std::string(name) + kInferenceSchema).c_str());
    m.def((std::string(name) + kBidirectionalForwardSchema).c_str());
    m.def((std::string(name) + kBidirectionalInferenceSchema).c_str());
    m.def((std::string(name) + kBidirectionalBackwardSchema).c_str());
    m.def((std::string(name) + kBackwardSchema).c_str());
    m.def((std::string(name) + kCellForwardSchema).c_str());
    m.def((std::string(name) + kCellInferenceSchema).c_str());
    m.def((std::string(name) + kCellBackwardSchema).c_str());
  }
}

TORCH_LIBRARY_IMPL(rnnkernels, CPU, m) { register_impls(m); }

#ifdef RNNK_WITH_CUDA
TORCH_LIBRARY_IMPL(rnnkernels, CUDA, m) { register_impls(m); }
#endif

}  // namespace rnnk
