// ATen side of the CUDA pointwise kernels: tensors to raw step pointers on the
// current stream, dispatched over float, double, half and bfloat16.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../pointwise.h"
#include "launch.h"

namespace rnnk {
namespace {

// ATen's 16-bit types share their bit layout with CUDA's.
template <typename T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<at::Half> {
  using type = __half;
};
template <>
struct CudaType<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename S>
auto* ptr(const at::Tensor& t) {
  using T = typename CudaType<S>::type;
  return t.defined() && t.numel() > 0 ? reinterpret_cast<T*>(t.data_ptr<S>()) : nullptr;
}

}  // namespace

void pointwise_forward_cuda(CellKind kind, const at::Tensor& xg, const at::Tensor& hg,
                            const at::Tensor& h, const at::Tensor& c, const at::Tensor& saved) {
  const c10::cuda::CUDAGuard guard(xg.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xg.scalar_type(),
                                  "rnnkernels_pointwise_forward_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    const StepForward<T> step{ptr<scalar_t>(xg), ptr<scalar_t>(hg), ptr<scalar_t>(h),
                              ptr<scalar_t>(c), ptr<scalar_t>(saved), h.size(1)};
    C10_CUDA_CHECK(launch_pointwise_forward(kind, step, h.size(0),
                                            c10::cuda::getCurrentCUDAStream()));
  });
}

void pointwise_backward_cuda(CellKind kind, const at::Tensor& dh, const at::Tensor& dc,
                             const at::Tensor& saved, const at::Tensor& c_prev,
                             const at::Tensor& h_prev, const at::Tensor& dxg,
                             const at::Tensor& dhg) {
  const c10::cuda::CUDAGuard guard(dh.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dh.scalar_type(),
                                  "rnnkernels_pointwise_backward_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    const StepBackward<T> step{ptr<scalar_t>(dh),     ptr<scalar_t>(dc),  ptr<scalar_t>(saved),
                               ptr<scalar_t>(c_prev), ptr<scalar_t>(h_prev),
                               ptr<scalar_t>(dxg),    ptr<scalar_t>(dhg), dh.size(1)};
    C10_CUDA_CHECK(launch_pointwise_backward(kind, step, dh.size(0),
                                             c10::cuda::getCurrentCUDAStream()));
  });
}

}  // namespace rnnk
