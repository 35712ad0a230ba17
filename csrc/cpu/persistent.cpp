// ATen tensors -> the persistent sequence kernels of this CPU's instruction set.
#include "../persistent.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>

#include "isa.h"
#include "tensor_ptr.h"

namespace rnnk {
namespace {

// Multiply-adds per step that make another thread worth a barrier each step. Low: past
// ~8K the step's recurrent weights (4 bytes each) outgrow one core's 32 KiB L1 and would
// stream from L2 every step, which costs more than the barrier; split between two cores'
// L1 caches they stay resident.
constexpr int64_t kWorkPerThread = 1 << 12;

std::atomic<bool> g_persistent_enabled{true};

template <typename Params>
void run_for_this_cpu(const Params& params) {
  using Fn = void (*)(const Params&);
  for_this_cpu<Fn>(AVX512::run_sequence, AVX2::run_sequence, DEFAULT::run_sequence)(params);
}

}  // namespace

// Threads worth using for steps of `rows` x `gate_width` x `features` multiply-adds.
int sequence_threads(int64_t rows, int64_t gate_width, int64_t features, int available) {
  const int64_t work = rows * gate_width * features;
  return static_cast<int>(std::clamp<int64_t>(work / kWorkPerThread, 1, std::max(available, 1)));
}

bool set_persistent_kernels(bool enabled) { return g_persistent_enabled.exchange(enabled); }

bool persistent_kernels_enabled() { return g_persistent_enabled.load(); }

bool persistent_cpu_applies(const at::Tensor& x, bool projects, int64_t steps) {
  return persistent_kernels_enabled() && x.is_cpu() && !projects && steps > 1 &&
         (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble);
}

void persistent_forward_cpu(CellKind kind, const StepOrder& order, const at::Tensor& xg,
                            const at::Tensor& w_hh, const std::optional<at::Tensor>& b_hh,
                            const at::Tensor& h0, const at::Tensor& h_n, const at::Tensor& c,
                            const at::Tensor& output, const at::Tensor& saved,
                            const at::Tensor& h_prev, const at::Tensor& c_prev) {
  const int64_t B = h0.size(0), H = h0.size(1);
  AT_DISPATCH_FLOATING_TYPES(xg.scalar_type(), "rnnkernels_persistent_forward", [&] {
    const SequenceForward<scalar_t> params{
        kind, order, B, H, xg.data_ptr<scalar_t>(), w_hh.data_ptr<scalar_t>(),
        b_hh.has_value() ? b_hh->data_ptr<scalar_t>() : nullptr, h0.data_ptr<scalar_t>(),
        h_n.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(c), output.data_ptr<scalar_t>(),
        ptr_or_null<scalar_t>(saved), ptr_or_null<scalar_t>(h_prev), ptr_or_null<scalar_t>(c_prev),
        sequence_threads(B, w_hh.size(0), H, at::get_num_threads())};
    run_for_this_cpu(params);
  });
}

void persistent_backward_cpu(CellKind kind, const StepOrder& order, const at::Tensor& w_hh,
                             const at::Tensor& grad_output, const at::Tensor& saved,
                             const at::Tensor& h_prev, const at::Tensor& c_prev,
                             const at::Tensor& dh, const at::Tensor& dc, const at::Tensor& dxg,
                             const at::Tensor& dhg) {
  const int64_t B = dh.size(0), H = dh.size(1);
  AT_DISPATCH_FLOATING_TYPES(dh.scalar_type(), "rnnkernels_persistent_backward", [&] {
    const SequenceBackward<scalar_t> params{
        kind, order, B, H, w_hh.data_ptr<scalar_t>(), grad_output.data_ptr<scalar_t>(),
        saved.data_ptr<scalar_t>(), h_prev.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(c_prev),
        dh.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(dc), dxg.data_ptr<scalar_t>(),
        dhg.data_ptr<scalar_t>(), sequence_threads(B, w_hh.size(0), H, at::get_num_threads())};
    run_for_this_cpu(params);
  });
}

}  // namespace rnnk
