// Raw pointers from ATen tensors for the CPU kernels, which take null for an absent array.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

namespace rnnk {

// The tensor's data, or null when it is undefined or empty (e.g. c for a GRU).
template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<T>() : nullptr;
}

// The same for an optional tensor (an absent bias).
template <typename T>
T* ptr_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? ptr_or_null<T>(*t) : nullptr;
}

}  // namespace rnnk
