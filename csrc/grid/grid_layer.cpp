#include "grid_layer.h"

#include <ATen/ATen.h>

#include "../cpu/tensor_ptr.h"
#include "../persistent.h"
#include "grid_simulator.h"

namespace rnnk {
namespace {

// The steps for the kernels: a packed batch's per-step arrays on the data's device.
struct DeviceSteps {
  at::Tensor arrays;  // [2, steps]: rows, then offsets; undefined for a padded batch
  GridSteps steps;
  DeviceSteps(const GridOrder& o, const at::Tensor& like) {
    steps = {o.order.steps, o.reverse, nullptr, nullptr, o.batch};
    if (o.padded) return;
    std::vector<int64_t> both(o.order.rows, o.order.rows + o.order.steps);
    both.insert(both.end(), o.order.offsets, o.order.offsets + o.order.steps);
    arrays = at::tensor(both, at::kLong).to(like.device());
    steps.rows = arrays.data_ptr<int64_t>();
    steps.offsets = steps.rows + o.order.steps;
  }
};

}  // namespace

GridPlan plan_grid(CellKind kind, const at::Tensor& x, bool projects, int64_t B, int64_t H,
                   bool backward) {
  GridPlan plan;
  if (projects || !persistent_kernels_enabled()) return plan;
#ifdef RNNK_WITH_CUDA
  if (x.is_cuda()) {
    plan.shape = cuda_grid_shape(kind, x, B, H, backward);
    return plan;
  }
#endif
  const bool cpu_float = x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble;
  if (x.is_cpu() && cpu_float && grid_simulation().blocks > 0) {
    const int elem = static_cast<int>(x.element_size());
    plan.shape = choose_grid_shape(B, H, cell_gates(kind), backward, grid_simulation().tiles,
                                   elem, elem, simulated_grid_limits());
    plan.simulated = true;
  }
  return plan;
}

void grid_forward(CellKind kind, const GridPlan& plan, const GridOrder& order,
                  const at::Tensor& xg, const at::Tensor& w_hh,
                  const std::optional<at::Tensor>& b_hh, const at::Tensor& h0,
                  const at::Tensor& h_n, const at::Tensor& c, const at::Tensor& output,
                  const at::Tensor& saved, const at::Tensor& h_prev, const at::Tensor& c_prev) {
  const int64_t B = order.batch, H = h0.size(1), G = cell_gates(kind);
  const DeviceSteps steps(order, xg);
  const auto options = xg.options();
  const at::Tensor hg = at::empty({B, G * H}, options);
  const at::Tensor state = at::empty({2, B, H}, options);
  // In inference saved is one step's scratch.
  const bool keeps = h_prev.defined() && h_prev.numel() > 0;
  const at::Tensor saved_rows =
      keeps ? saved : at::empty({B, cell_saved(kind) * H}, options);
  const at::Tensor barrier = at::zeros({1}, options.dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xg.scalar_type(),
                                  "rnnkernels_grid_forward", [&] {
    using T = scalar_t;
    const GridForward<T> p{steps.steps,
                           H,
                           xg.data_ptr<T>(),
                           w_hh.data_ptr<T>(),
                           ptr_or_null<T>(b_hh),
                           h0.data_ptr<T>(),
                           h_n.data_ptr<T>(),
                           ptr_or_null<T>(c),
                           output.data_ptr<T>(),
                           saved_rows.data_ptr<T>(),
                           ptr_or_null<T>(h_prev),
                           ptr_or_null<T>(c_prev),
                           hg.data_ptr<T>(),
                           state.data_ptr<T>(),
                           reinterpret_cast<unsigned*>(barrier.data_ptr<int>()),
                           plan.shape};
    if (plan.simulated) {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        simulate_grid_forward(kind, p);
      }
      return;
    }
#ifdef RNNK_WITH_CUDA
    cuda_grid_forward(kind, p);
#endif
  });
}

void grid_backward(CellKind kind, const GridPlan& plan, const GridOrder& order,
                   const at::Tensor& w_hh, const at::Tensor& grad_output,
                   const at::Tensor& saved, const at::Tensor& h_prev, const at::Tensor& c_prev,
                   const at::Tensor& dh, const at::Tensor& dc, const at::Tensor& dxg,
                   const at::Tensor& dhg) {
  const DeviceSteps steps(order, dh);
  const at::Tensor barrier = at::zeros({1}, dh.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dh.scalar_type(),
                                  "rnnkernels_grid_backward", [&] {
    using T = scalar_t;
    const GridBackward<T> p{steps.steps,
                            dh.size(1),
                            w_hh.data_ptr<T>(),
                            grad_output.data_ptr<T>(),
                            saved.data_ptr<T>(),
                            h_prev.data_ptr<T>(),
                            ptr_or_null<T>(c_prev),
                            dh.data_ptr<T>(),
                            ptr_or_null<T>(dc),
                            dxg.data_ptr<T>(),
                            dhg.data_ptr<T>(),
                            reinterpret_cast<unsigned*>(barrier.data_ptr<int>()),
                            plan.shape};
    if (plan.simulated) {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        simulate_grid_backward(kind, p);
      }
      return;
    }
#ifdef RNNK_WITH_CUDA
    cuda_grid_backward(kind, p);
#endif
  });
}

}  // namespace rnnk
