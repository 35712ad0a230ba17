// The per-step building blocks of the sequence loop. On CPU they call BLAS and memcpy
// directly (a step's few small operations otherwise spend more time in dispatch than in
// arithmetic); on other devices, or without a BLAS to call, they are ATen ops.
// Every tensor here is a row-contiguous [rows, width] block.
#pragma once
#include <ATen/core/Tensor.h>

#include <c10/core/ScalarType.h>

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

// Whether the BLAS that torch links can be called directly for this dtype (float, double).
bool cpu_blas_available(at::ScalarType dtype);

// out[rows, cols] (+)= a[rows, inner] @ (transpose_w ? w^T : w), all row-major and dense,
// on that BLAS (cpu_blas_available must hold): `accumulate` adds to out instead of
// overwriting it.
template <typename T>
void cpu_gemm_rows(int64_t rows, int64_t cols, int64_t inner, const T* a, const T* w,
                   bool transpose_w, T* out, bool accumulate);

// out[rows, cols] (+)= a^T @ b for a [inner, rows] and b [inner, cols], row-major and
// dense, on that BLAS: a weight's gradient from one step's rows.
template <typename T>
void cpu_gemm_tn(int64_t rows, int64_t cols, int64_t inner, const T* a, const T* b, T* out,
                 bool accumulate);

}  // namespace rnnk
