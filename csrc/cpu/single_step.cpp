#include "../single_step.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>

#include "../pointwise.h"
#include "../step_ops.h"
#include "call_buffers.h"
#include "dot_gemm_call.h"
#include "tensor_ptr.h"

namespace rnnk {
namespace {

using at::Tensor;

// Every row of rows x width `out` starts as `bias` (or zero without one).
template <typename T>
void start_rows(T* out, const T* bias, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; ++r) {
    if (bias != nullptr) {
      std::memcpy(out + r * width, bias, width * sizeof(T));
    } else {
      std::memset(out + r * width, 0, width * sizeof(T));
    }
  }
}

// Column sums of rows x width `in` into `out`: a bias gradient.
template <typename T>
void sum_rows(const T* in, int64_t rows, int64_t width, T* out) {
  std::fill(out, out + width, T(0));
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = in + r * width;
    for (int64_t j = 0; j < width; ++j) out[j] += row[j];
  }
}

// out[B, cols] += a[B, K] @ w^T, w as nn stores it ([cols, K]): a step's projection.
template <typename T>
void project(int64_t B, int64_t cols, int64_t K, const T* a, const T* w, T* out) {
  if (B <= kDotGemmRows) {
    run_dot_gemm<T>({B, K, a, K, w, out, cols, /*accumulate=*/true}, cols);
  } else {
    cpu_gemm_rows<T>(B, cols, K, a, w, /*transpose_w=*/true, out, /*accumulate=*/true);
  }
}

}  // namespace

bool single_step_cpu_applies(const Tensor& x) {
  return x.is_cpu() && cpu_blas_available(x.scalar_type());
}

void single_step_cpu(CellKind kind, const Tensor& x, const Tensor& h0,
                     const std::optional<Tensor>& c0, const Tensor& w_ih, const Tensor& w_hh,
                     const std::optional<Tensor>& b_ih, const std::optional<Tensor>& b_hh,
                     const StepResults& out) {
  const int64_t G = cell_gates(kind), S = cell_saved(kind);
  const int64_t H = w_hh.size(1), I = w_ih.size(1), B = H > 0 ? h0.numel() / H : 0, GH = G * H;
  if (B == 0 || H == 0) return;
  const Tensor x_c = x.contiguous(), h0_c = h0.contiguous(), w_ih_c = w_ih.contiguous(),
               w_hh_c = w_hh.contiguous();
  const Tensor c0_c = out.c.defined() ? c0->contiguous() : Tensor();
  const std::optional<Tensor> b_ih_c = b_ih.has_value() ? b_ih->contiguous() : b_ih;
  const std::optional<Tensor> b_hh_c = b_hh.has_value() ? b_hh->contiguous() : b_hh;
  const bool for_backward = out.saved.defined();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkernels_single_step", [&] {
    using T = scalar_t;
    const size_t gates = static_cast<size_t>(B * GH);
    // The gate projections, and the saved gates in inference.
    const CallBuffers<T> scratch(
        {static_cast<int64_t>(2 * gates) + (for_backward ? 0 : B * S * H)});
    T* xg = scratch[0];
    T* hg = xg + gates;
    // b_ih starts xg and b_hh starts hg: the cells read xg + hg, or (GRU) each apart.
    start_rows(xg, ptr_or_null<T>(b_ih_c), B, GH);
    start_rows(hg, ptr_or_null<T>(b_hh_c), B, GH);
    project<T>(B, GH, I, x_c.data_ptr<T>(), w_ih_c.data_ptr<T>(), xg);
    project<T>(B, GH, H, h0_c.data_ptr<T>(), w_hh_c.data_ptr<T>(), hg);
    const size_t state_bytes = static_cast<size_t>(B * H) * sizeof(T);
    const auto copy = [&](const Tensor& dst, const Tensor& src) {
      if (dst.defined()) std::memcpy(dst.data_ptr<T>(), src.data_ptr<T>(), state_bytes);
    };
    // The pointwise pass updates h and c in place: they start as h0 and c0.
    copy(out.h, h0_c);
    copy(out.c, c0_c);
    copy(out.h_prev, h0_c);
    copy(out.c_prev, c0_c);
    const StepForward<T> step{xg, hg, out.h.data_ptr<T>(), ptr_or_null<T>(out.c),
                              for_backward ? out.saved.data_ptr<T>() : hg + gates, H};
    pointwise_forward_rows(kind, step, B);
    copy(out.output, out.h);
  });
}

void single_step_backward_cpu(CellKind kind, const Tensor& grad_h,
                              const std::optional<Tensor>& grad_c, const Tensor& x,
                              const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                              const Tensor& saved, const Tensor& c_prev,
                              const StepGradients& out) {
  // B from x: with H = 0 the states have no elements, while dx still has B rows (zeros).
  const int64_t G = cell_gates(kind), H = w_hh.size(1), I = w_ih.size(1), B = x.size(0);
  const int64_t GH = G * H;
  // Where the recurrent projection is kept apart (GRU's), its gradient differs from xg's.
  const bool apart = !cell_sums_projections(kind);
  const Tensor x_c = x.contiguous(), h0_c = h0.contiguous(), w_ih_c = w_ih.contiguous(),
               w_hh_c = w_hh.contiguous(), grad_h_c = grad_h.contiguous(),
               saved_c = saved.contiguous();
  const Tensor c_prev_c = out.dc.defined() ? c_prev.contiguous() : Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkernels_single_step_backward", [&] {
    using T = scalar_t;
    const size_t gates = static_cast<size_t>(B * GH), states = static_cast<size_t>(B * H);
    // dh is the pointwise pass's in/out: the gradient of h' in, GRU's direct part of dh0
    // out; where dh0 is not wanted it lives in scratch.
    const CallBuffers<T> scratch(
        {static_cast<int64_t>((apart ? 2 : 1) * gates + (out.dh.defined() ? 0 : states))});
    T* dxg = scratch[0];
    T* dhg = apart ? dxg + gates : dxg;
    T* dh = out.dh.defined() ? out.dh.data_ptr<T>() : dhg + gates;
    std::memcpy(dh, grad_h_c.data_ptr<T>(), states * sizeof(T));
    T* dc = ptr_or_null<T>(out.dc);
    if (dc != nullptr) std::memcpy(dc, grad_c->contiguous().data_ptr<T>(), states * sizeof(T));
    const StepBackward<T> step{dh, dc, saved_c.data_ptr<T>(), ptr_or_null<T>(c_prev_c),
                               h0_c.data_ptr<T>(), dxg, dhg, H};
    if (B > 0 && H > 0) pointwise_backward_rows(kind, step, B);
    if (out.dh.defined()) {
      cpu_gemm_rows<T>(B, H, GH, dhg, w_hh_c.data_ptr<T>(), /*transpose_w=*/false, dh,
                       /*accumulate=*/apart);
    }
    if (out.dx.defined()) {
      cpu_gemm_rows<T>(B, I, GH, dxg, w_ih_c.data_ptr<T>(), /*transpose_w=*/false,
                       out.dx.data_ptr<T>(), /*accumulate=*/false);
    }
    cpu_gemm_tn<T>(GH, I, B, dxg, x_c.data_ptr<T>(), out.dw_ih.data_ptr<T>(), false);
    cpu_gemm_tn<T>(GH, H, B, dhg, h0_c.data_ptr<T>(), out.dw_hh.data_ptr<T>(), false);
    if (out.db_ih.defined()) {
      sum_rows(dxg, B, GH, out.db_ih.data_ptr<T>());
      sum_rows(dhg, B, GH, out.db_hh.data_ptr<T>());
    }
  });
}

}  // namespace rnnk
