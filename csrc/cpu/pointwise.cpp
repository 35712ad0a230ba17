// CPU pointwise kernels: the cell math from cells/*.h over n rows x H units, SIMD over
// the units (the widest instruction set this CPU has) and parallel over rows.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cstdlib>
#include <cstring>

#include "../pointwise.h"
#include "rows.h"

namespace rnnk {
namespace {

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<T>() : nullptr;
}

// Enough work per task that waking a thread stays small against the math.
constexpr int64_t kGrainElements = 16384;

template <typename Step, typename RowsFn>
void parallel_rows(const Step& step, int64_t rows, const RowsFn& rows_fn) {
  const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(step.H, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { rows_fn(begin, end); });
}

enum class Isa { Default, Avx2, Avx512 };

// The widest instruction set of this CPU that rows_*.cpp are compiled for;
// ATEN_CPU_CAPABILITY=default|avx2 caps it, as it does for ATen's own kernels.
Isa detect_isa() {
  Isa best = Isa::Default;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    best = Isa::Avx512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    best = Isa::Avx2;
  }
#endif
  const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
  if (cap != nullptr && std::strcmp(cap, "default") == 0) return Isa::Default;
  if (cap != nullptr && std::strcmp(cap, "avx2") == 0 && best == Isa::Avx512) return Isa::Avx2;
  return best;
}

Isa cpu_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

template <typename Step>
using RowsFn = void (*)(CellKind, const Step&, int64_t, int64_t);

// The build of a row function for this CPU's instruction set.
template <typename Step>
RowsFn<Step> for_this_cpu(RowsFn<Step> avx512, RowsFn<Step> avx2, RowsFn<Step> portable) {
  switch (cpu_isa()) {
    case Isa::Avx512:
      return avx512;
    case Isa::Avx2:
      return avx2;
    default:
      return portable;
  }
}

}  // namespace

void pointwise_forward_cpu(CellKind kind, const at::Tensor& xg, const at::Tensor& hg,
                           const at::Tensor& h, const at::Tensor& c, const at::Tensor& saved) {
  AT_DISPATCH_FLOATING_TYPES(xg.scalar_type(), "rnnkernels_pointwise_forward", [&] {
    const StepForward<scalar_t> step{xg.data_ptr<scalar_t>(), hg.data_ptr<scalar_t>(),
                                     h.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(c),
                                     saved.data_ptr<scalar_t>(), h.size(1)};
    const auto rows_fn = for_this_cpu<StepForward<scalar_t>>(
        AVX512::forward_rows, AVX2::forward_rows, DEFAULT::forward_rows);
    parallel_rows(step, h.size(0),
                  [&](int64_t begin, int64_t end) { rows_fn(kind, step, begin, end); });
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
    const auto rows_fn = for_this_cpu<StepBackward<scalar_t>>(
        AVX512::backward_rows, AVX2::backward_rows, DEFAULT::backward_rows);
    parallel_rows(step, dh.size(0),
                  [&](int64_t begin, int64_t end) { rows_fn(kind, step, begin, end); });
  });
}

}  // namespace rnnk
