// What the register-tiled kernels of one instruction set share (sequence_kernel.h,
// dot_gemm_kernel.h): how many SIMD registers bound a tile, and the dispatch to a tile of
// fewer rows or columns at a matrix's edge. Included after CPU_CAPABILITY is defined.
#pragma once
#include <cstdint>
#include <type_traits>

namespace rnnk {
namespace CPU_CAPABILITY {
namespace {

// SIMD registers of this instruction set: they bound a tile's accumulators.
#if defined(CPU_CAPABILITY_AVX512)
constexpr int kRegisters = 32;
#else
constexpr int kRegisters = 16;
#endif

// Calls f(std::integral_constant<int, n>) for 1 <= n <= N: the tiles at the edges.
template <int N, typename F>
inline void with_count(int64_t n, const F& f) {
  if constexpr (N > 1) {
    if (n < N) return with_count<N - 1>(n, f);
  }
  f(std::integral_constant<int, N>{});
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace rnnk
