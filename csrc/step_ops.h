// The per-step building blocks of the sequence loop. On CPU they call BLAS and memcpy
// directly (a step's few small operations otherwise spend more time in dispatch than in
// arithmetic); on other devices, or without a BLAS to call, they are ATen ops.
// Every tensor here is a row-contiguous [rows, width] block.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

namespace rnnk {

// dst = src.
void copy_rows(const at::Tensor& dst, const at::Tensor& src);

// dst += src.
void add_rows(const at::Tensor& dst, const at::Tensor& src);

// out = (accumulate ? out : bias, or 0 without one) + a @ (transpose_w ? w^T : w).
// w must be contiguous.
void gemm_rows(const at::Tensor& out, const at::Tensor& a, const at::Tensor& w, bool transpose_w,
               const std::optional<at::Tensor>& bias, bool accumulate);

}  // namespace rnnk
