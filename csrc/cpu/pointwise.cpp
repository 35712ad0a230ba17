// CPU pointwise kernels: the cell math from cells/*.h over n rows x H columns,
// parallel over rows with at::parallel_for.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "../pointwise.h"

namespace rnnk {
namespace {

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<T>() : nullptr;
}

// Enough work per task that thread wake-up stays small against the math.
constexpr int64_t kGrainElements = 16384;

template <typename Fn>
void for_each_point(int64_t n, int64_t H, const Fn& fn) {
  const int64_t grain_rows = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(H, 1));
  at::parallel_for(0, n, grain_rows, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t j = 0; j < H; ++j) fn(b, j);
    }
  });
}

}  // namespace

void pointwise_forward_cpu(CellKind kind, const at::Tensor& xg, const at::Tensor& hg,
                           const at::Tensor& h, const at::Tensor& c, const at::Tensor& saved) {
  AT_DISPATCH_FLOATING_TYPES(xg.scalar_type(), "rnnkernels_pointwise_forward", [&] {
    const StepForward<scalar_t> step{xg.data_ptr<scalar_t>(), hg.data_ptr<scalar_t>(),
                                     h.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(c),
                                     saved.data_ptr<scalar_t>(), h.size(1)};
    visit_cell(kind, [&](auto cell) {
      using Cell = decltype(cell);
      for_each_point(h.size(0), h.size(1),
                     [&](int64_t b, int64_t j) { Cell::forward(step, b, j); });
    });
  });
}

void pointwise_backward_cpu(CellKind kind, const at::Tensor& dh, const at::Tensor& dc,
                            const at::Tensor& saved, const at::Tensor& c_prev,
                            const at::Tensor& h_prev, const at::Tensor& dxg,
                            const at::Tensor& dhg) {
  AT_DISPATCH_FLOATING_TYPES(dh.scalar_type(), "rnnkernels_pointwise_backward", [&] {
    const StepBackward<scalar_t> step{
        dh.data_ptr<scalar_t>(),        ptr_or_null<scalar_t>(dc),
        saved.data_ptr<scalar_t>(),     ptr_or_null<scalar_t>(c_prev),
        ptr_or_null<scalar_t>(h_prev),  dxg.data_ptr<scalar_t>(),
        dhg.data_ptr<scalar_t>(),       dh.size(1)};
    visit_cell(kind, [&](auto cell) {
      using Cell = decltype(cell);
      for_each_point(dh.size(0), dh.size(1),
                     [&](int64_t b, int64_t j) { Cell::backward(step, b, j); });
    });
  });
}

}  // namespace rnnk
