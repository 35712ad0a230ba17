// A GEMM against weights as nn stores them ([out, in], row-major), each result a dot
// product along the input: what one step of a cell needs at a small batch. BLAS copies
// its operands into its own layout on every call, which at a few rows costs about as much
// as the arithmetic, and packing the weights once per call, as the sequence kernels do,
// would cost as much as the step itself.
// Compiled once per instruction set (isa_{default,avx2,avx512}.cpp).
#pragma once
#include <cstdint>

namespace rnnk {

// out[r * ldo + j] = (accumulate ? out[r * ldo + j] : 0) + sum_k a[r * lda + k] * w[j * K + k]
// for r < rows, j in [col_begin, col_end). Each result sums in the same order whatever
// rows, columns and threads its call has: a row's step is bitwise the same at any batch.
template <typename T>
struct DotGemm {
  int64_t rows, K;
  const T* a;
  int64_t lda;
  const T* w;
  T* out;
  int64_t ldo;
  bool accumulate;
};

#define RNNK_DECLARE_DOT_GEMM(capability)                                         \
  namespace rnnk::capability {                                                    \
  void dot_gemm(const DotGemm<float>&, int64_t col_begin, int64_t col_end);       \
  void dot_gemm(const DotGemm<double>&, int64_t col_begin, int64_t col_end);      \
  }

}  // namespace rnnk

RNNK_DECLARE_DOT_GEMM(DEFAULT)
RNNK_DECLARE_DOT_GEMM(AVX2)
RNNK_DECLARE_DOT_GEMM(AVX512)
#undef RNNK_DECLARE_DOT_GEMM
