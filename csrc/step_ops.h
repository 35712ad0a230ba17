// The BLAS that torch links, called directly: a step's few small operations would
// otherwise spend more time in dispatch than in arithmetic.
#pragma once
#include <c10/core/ScalarType.h>

#include <cstdint>

namespace rnnk {

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
