// The sequence loop's step calls on the CPU: BLAS and the SIMD pointwise kernels, float
// and double (half types are computed in float32 on the CPU, functional.py).
#include "../step_device.h"

#include <ATen/ATen.h>

#include <cstring>

#include "../pointwise.h"
#include "../step_ops.h"

namespace rnnk {
namespace {

template <typename T>
void copy_cpu(T* dst, const T* src, int64_t count) {
  if (count > 0) std::memcpy(dst, src, count * sizeof(T));
}

template <typename T>
void sum_cpu(T* dst, const T* a, const T* b, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dst[i] = a[i] + b[i];
}

// Where torch links no BLAS to call directly: ATen's matmul over the same memory.
template <typename T>
void gemm_aten(int64_t rows, int64_t cols, int64_t inner, const T* a, const T* w,
               bool transpose_w, T* out, bool accumulate) {
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const at::Tensor a_t = at::from_blob(const_cast<T*>(a), {rows, inner}, options);
  const at::Tensor w_t = transpose_w
                             ? at::from_blob(const_cast<T*>(w), {cols, inner}, options).t()
                             : at::from_blob(const_cast<T*>(w), {inner, cols}, options);
  at::Tensor out_t = at::from_blob(out, {rows, cols}, options);
  if (accumulate) {
    out_t.addmm_(a_t, w_t);
  } else {
    at::mm_out(out_t, a_t, w_t);
  }
}

template <typename T>
StepDevice<T> cpu_step_device(bool blas) {
  return {blas ? cpu_gemm_rows<T> : gemm_aten<T>, pointwise_forward_rows<T>,
          pointwise_backward_rows<T>, copy_cpu<T>, sum_cpu<T>};
}

template <typename T>
constexpr bool kCpuComputes = std::is_same_v<T, float> || std::is_same_v<T, double>;

}  // namespace

template <typename T>
StepDevice<T> step_device(const at::Tensor& like) {
#ifdef RNNK_WITH_CUDA
  if (like.is_cuda()) return cuda_step_device<T>();
#endif
  TORCH_CHECK(like.is_cpu(), "rnnkernels: no step kernels for device ", like.device(),
              " in this build");
  if constexpr (kCpuComputes<T>) {
    return cpu_step_device<T>(cpu_blas_available(like.scalar_type()));
  } else {
    TORCH_CHECK(false, "rnnkernels: the CPU step kernels take float32 and float64, not ",
                like.scalar_type());
  }
}

template StepDevice<float> step_device<float>(const at::Tensor&);
template StepDevice<double> step_device<double>(const at::Tensor&);
template StepDevice<at::Half> step_device<at::Half>(const at::Tensor&);
template StepDevice<at::BFloat16> step_device<at::BFloat16>(const at::Tensor&);

}  // namespace rnnk
