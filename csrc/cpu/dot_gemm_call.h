// dot_gemm.h's kernel, picked for this CPU and run on the threads its work is worth.
#pragma once
#include <cstdint>

#include "dot_gemm.h"

namespace rnnk {

// Most rows a step's projections take the dot kernel for: past them BLAS's packing of the
// weights pays for itself.
constexpr int64_t kDotGemmRows = 16;

// dot_gemm over columns [0, cols).
template <typename T>
void run_dot_gemm(const DotGemm<T>& p, int64_t cols);

}  // namespace rnnk
