// The sequence loop's step calls on a CUDA device: cuBLAS on torch's handle for the
// current stream (float32 on TF32 where torch's matmul flag allows it) and our kernels,
// each one launch on the current stream, without host synchronisation.
#include "../step_device.h"

#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <dlfcn.h>

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

using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                   int, int, const void*, const void*, cudaDataType, int,
                                   const void*, cudaDataType, int, const void*, void*,
                                   cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

// cublasGemmEx from the cuBLAS that torch loaded: torch exports no GEMM on raw pointers
// (at::cuda::blas::gemm is hidden), and looking it up at run time keeps this extension
// from linking a cuBLAS of its own.
GemmEx cublas_gemm_ex() {
  static const GemmEx fn = [] {
    void* symbol = dlsym(RTLD_DEFAULT, "cublasGemmEx");
    for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
      if (symbol != nullptr) break;
      if (void* library = dlopen(name, RTLD_NOLOAD | RTLD_LAZY)) {
        symbol = dlsym(library, "cublasGemmEx");
      }
    }
    return reinterpret_cast<GemmEx>(symbol);
  }();
  TORCH_CHECK(fn != nullptr, "rnnkernels: cublasGemmEx not found in the cuBLAS torch loaded");
  return fn;
}

template <typename T>
constexpr cudaDataType kCudaDataType = std::is_same_v<T, double>     ? CUDA_R_64F
                                       : std::is_same_v<T, float>    ? CUDA_R_32F
                                       : std::is_same_v<T, at::Half> ? CUDA_R_16F
                                                                     : CUDA_R_16BF;

// Row-major out[rows, cols] is column-major out^T: out^T = op(w)^T a^T.
template <typename T>
void gemm_cuda(int64_t rows, int64_t cols, int64_t inner, const T* a, const T* w,
               bool transpose_w, T* out, bool accumulate) {
  if (rows == 0 || cols == 0) return;
  if (inner == 0) {  // cuBLAS refuses a leading dimension of 0; the product is zero
    if (!accumulate) {
      C10_CUDA_CHECK(cudaMemsetAsync(out, 0, rows * cols * sizeof(T), stream()));
    }
    return;
  }
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const Acc alpha = 1, beta = accumulate ? 1 : 0;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  if (std::is_same_v<T, double>) compute = CUBLAS_COMPUTE_64F;
  if (std::is_same_v<T, float> && at::globalContext().allowTF32CuBLAS()) {
    compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  }
  const int m = static_cast<int>(cols), n = static_cast<int>(rows), k = static_cast<int>(inner);
  const cublasStatus_t status = cublas_gemm_ex()(
      at::cuda::getCurrentCUDABlasHandle(), transpose_w ? CUBLAS_OP_T : CUBLAS_OP_N,
      CUBLAS_OP_N, m, n, k, &alpha, w, kCudaDataType<T>, transpose_w ? k : m, a,
      kCudaDataType<T>, k, &beta, out, kCudaDataType<T>, m, compute, CUBLAS_GEMM_DEFAULT);
  TORCH_CHECK(status == CUBLAS_STATUS_SUCCESS, "rnnkernels: cublasGemmEx failed with status ",
              static_cast<int>(status));
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
