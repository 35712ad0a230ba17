// The sequence loop's step calls on a CUDA device: cuBLAS through ATen's gemm (which
// follows torch's TF32 flag for float32) and our kernels, each one launch on the current
// stream, without host synchronisation.
#include "../step_device.h"

#include <ATen/cuda/CUDABlas.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "aten_types.h"
#include "launch.h"

namespace rnnk {
namespace {

template <typename T>
StepForward<typename CudaType<T>::type> cuda_step(const StepForward<T>& s) {
  return {cuda(s.xg),   cuda(s.hg),    cuda(s.h),      cuda(s.c),     cuda(s.saved), s.H,
          cuda(s.b_hh), cuda(s.h_out), cuda(s.h_keep), cuda(s.c_keep)};
}

template <typename T>
StepBackward<typename CudaType<T>::type> cuda_step(const StepBackward<T>& s) {
  return {cuda(s.dh),     cuda(s.dc),  cuda(s.saved), cuda(s.c_prev), cuda(s.h_prev),
          cuda(s.dxg),    cuda(s.dhg), s.H,           cuda(s.grad_h)};
}

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }

// Row-major out[rows, cols] is column-major out^T: out^T = op(w)^T a^T.
template <typename T>
void gemm_cuda(int64_t rows, int64_t cols, int64_t inner, const T* a, const T* w,
               bool transpose_w, T* out, bool accumulate) {
  if (rows == 0 || cols == 0) return;
  using Acc = at::opmath_type<T>;
  at::cuda::blas::gemm<T>(transpose_w ? 't' : 'n', 'n', cols, rows, inner, Acc(1), w,
                          transpose_w ? inner : cols, a, inner, Acc(accumulate ? 1 : 0), out,
                          cols);
}

template <typename T>
void forward_cuda(CellKind kind, const StepForward<T>& step, int64_t rows) {
  C10_CUDA_CHECK(launch_pointwise_forward(kind, cuda_step(step), rows, stream()));
}

template <typename T>
void backward_cuda(CellKind kind, const StepBackward<T>& step, int64_t rows) {
  C10_CUDA_CHECK(launch_pointwise_backward(kind, cuda_step(step), rows, stream()));
}

template <typename T>
void copy_cuda(T* dst, const T* src, int64_t count) {
  if (count == 0) return;
  C10_CUDA_CHECK(
      cudaMemcpyAsync(dst, src, count * sizeof(T), cudaMemcpyDeviceToDevice, stream()));
}

template <typename T>
void sum_cuda(T* dst, const T* a, const T* b, int64_t count) {
  C10_CUDA_CHECK(launch_sum(cuda(dst), cuda(a), cuda(b), count, stream()));
}

}  // namespace

template <typename T>
StepDevice<T> cuda_step_device() {
  return {gemm_cuda<T>, forward_cuda<T>, backward_cuda<T>, copy_cuda<T>, sum_cuda<T>};
}

template StepDevice<float> cuda_step_device<float>();
template StepDevice<double> cuda_step_device<double>();
template StepDevice<at::Half> cuda_step_device<at::Half>();
template StepDevice<at::BFloat16> cuda_step_device<at::BFloat16>();

}  // namespace rnnk
