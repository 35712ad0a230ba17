// CPU pointwise and rowwise kernels: the cell math from cells/*.h over n rows x H units,
// SIMD over the units (the widest instruction set this CPU has) and parallel over rows.
#include <ATen/Parallel.h>

#include "../pointwise.h"
#include "../rowwise.h"
#include "isa.h"
#include "rows.h"

namespace rnnk {
namespace {

// Enough work per task that waking a thread stays small against the math.
constexpr int64_t kGrainElements = 16384;

// row_elements: about how many values one row's pass reads or writes.
template <typename Fn>
void parallel_rows(int64_t row_elements, int64_t rows, const Fn& rows_fn) {
  const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(row_elements, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { rows_fn(begin, end); });
}

// A rowwise pass reads its row's G*H projection and H states several times over (the
// statistics, then their use), where a pointwise pass reads each value once per unit.
int64_t rowwise_elements(CellKind kind, int64_t H) { return 4 * (cell_gates(kind) + 1) * H; }

template <typename Step>
using RowsFn = void (*)(CellKind, const Step&, int64_t, int64_t);

}  // namespace

template <typename T>
void pointwise_forward_rows(CellKind kind, const StepForward<T>& step, int64_t rows) {
  const auto rows_fn = for_this_cpu<RowsFn<StepForward<T>>>(AVX512::forward_rows,
                                                            AVX2::forward_rows,
                                                            DEFAULT::forward_rows);
  parallel_rows(step.H, rows, [&](int64_t begin, int64_t end) { rows_fn(kind, step, begin, end); });
}

template void pointwise_forward_rows<float>(CellKind, const StepForward<float>&, int64_t);
template void pointwise_forward_rows<double>(CellKind, const StepForward<double>&, int64_t);

template <typename T>
void pointwise_backward_rows(CellKind kind, const StepBackward<T>& step, int64_t rows) {
  const auto rows_fn = for_this_cpu<RowsFn<StepBackward<T>>>(AVX512::backward_rows,
                                                             AVX2::backward_rows,
                                                             DEFAULT::backward_rows);
  parallel_rows(step.H, rows, [&](int64_t begin, int64_t end) { rows_fn(kind, step, begin, end); });
}

template void pointwise_backward_rows<float>(CellKind, const StepBackward<float>&, int64_t);
template void pointwise_backward_rows<double>(CellKind, const StepBackward<double>&, int64_t);

template <typename T>
void rowwise_forward_rows(CellKind kind, const RowwiseForward<T>& step, int64_t rows) {
  const auto rows_fn = for_this_cpu<RowsFn<RowwiseForward<T>>>(
      AVX512::rowwise_forward_rows, AVX2::rowwise_forward_rows, DEFAULT::rowwise_forward_rows);
  parallel_rows(rowwise_elements(kind, step.step.H), rows,
                [&](int64_t begin, int64_t end) { rows_fn(kind, step, begin, end); });
}

template void rowwise_forward_rows<float>(CellKind, const RowwiseForward<float>&, int64_t);
template void rowwise_forward_rows<double>(CellKind, const RowwiseForward<double>&, int64_t);

template <typename T>
void rowwise_backward_rows(CellKind kind, const RowwiseBackward<T>& step, int64_t rows) {
  const auto rows_fn = for_this_cpu<RowsFn<RowwiseBackward<T>>>(
      AVX512::rowwise_backward_rows, AVX2::rowwise_backward_rows, DEFAULT::rowwise_backward_rows);
  parallel_rows(rowwise_elements(kind, step.step.H), rows,
                [&](int64_t begin, int64_t end) { rows_fn(kind, step, begin, end); });
}

template void rowwise_backward_rows<float>(CellKind, const RowwiseBackward<float>&, int64_t);
template void rowwise_backward_rows<double>(CellKind, const RowwiseBackward<double>&, int64_t);

}  // namespace rnnk
