// ATen's 16-bit types share their bit layout with CUDA's: the glue hands the kernels
// (compiled without torch headers) their pointers retyped.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace rnnk {

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

// p as a pointer to the CUDA type, constness kept.
template <typename T>
auto* cuda(T* p) {
  using C = typename CudaType<std::remove_const_t<T>>::type;
  if constexpr (std::is_const_v<T>) {
    return reinterpret_cast<const C*>(p);
  } else {
    return reinterpret_cast<C*>(p);
  }
}

}  // namespace rnnk
