#include "operands.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

namespace rnnk {

using at::Tensor;

void check_blas_sizes(int64_t rows, int64_t gate_width, int64_t features) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  TORCH_CHECK(rows <= kMax && gate_width <= kMax && features <= kMax,
              "rnnkernels: sizes too large for 32-bit GEMM indexing (", rows, " rows, ",
              gate_width, " gate columns, ", features, " features); split the batch or sequence");
}

std::vector<int64_t> rows_shape(const Tensor& x, int64_t width) {
  auto sizes = x.sizes().vec();
  sizes.back() = width;
  return sizes;
}

void check_operand(const Tensor& ref, const Tensor& t, const char* name,
                   at::IntArrayRef expected, std::optional<at::ScalarType> dtype) {
  TORCH_CHECK(t.device() == ref.device(), "rnnkernels: ", name, " is on ", t.device(),
              " but x is on ", ref.device());
  const at::ScalarType wanted = dtype.value_or(ref.scalar_type());
  TORCH_CHECK(t.scalar_type() == wanted, "rnnkernels: ", name, " has dtype ", t.scalar_type(),
              dtype.has_value() ? " but must be " : " but x has dtype ", wanted);
  TORCH_CHECK(t.sizes() == expected, "rnnkernels: ", name, " must have shape ", expected,
              ", got ", t.sizes());
}

LayerSizes check_operands(CellKind kind, const Tensor& x, int64_t rows, int64_t total,
                          const Tensor& h0, const std::optional<Tensor>& c0, const Tensor& w_ih,
                          const Tensor& w_hh, const std::optional<Tensor>& b_ih,
                          const std::optional<Tensor>& b_hh, const std::optional<Tensor>& w_hr) {
  // The projection maps the cell-state path's output (o * tanh(c)) to h: only a cell with a
  // cell state (the LSTM) has one.
  const bool has_c = cell_has_cell_state(kind);
  const bool projects = w_hr.has_value() && w_hr->defined();
  TORCH_CHECK(!projects || has_c, "rnnkernels: only LSTM takes a projection weight");
  TORCH_CHECK(has_c == (c0.has_value() && c0->defined()),
              "rnnkernels: c0 is required for LSTM and not accepted by other cells");
  TORCH_CHECK(b_ih.has_value() == b_hh.has_value(), "rnnkernels: give both biases or neither");
  const int64_t G = cell_gates(kind), S = cell_saved(kind);
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) % G == 0, "rnnkernels: w_hh must be [", G,
              "*H, P], got ", w_hh.sizes());
  const int64_t H = w_hh.size(0) / G, I = x.size(-1);
  const int64_t P = projects ? w_hr->size(0) : H;
  check_operand(x, w_ih, "w_ih", {G * H, I});
  check_operand(x, w_hh, "w_hh", {G * H, P});
  check_operand(x, h0, "h0", {rows, P});
  if (has_c) check_operand(x, *c0, "c0", {rows, H});
  if (b_ih.has_value()) {
    check_operand(x, *b_ih, "b_ih", {G * H});
    check_operand(x, *b_hh, "b_hh", {G * H});
  }
  if (projects) check_operand(x, *w_hr, "w_hr", {P, H});
  check_blas_sizes(total, G * H, std::max({I, P, H}));
  return {G, S, H, I, P};
}

}  // namespace rnnk
