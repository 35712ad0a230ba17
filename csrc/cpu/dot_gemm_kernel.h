// The body of isa_{default,avx2,avx512}.cpp after rows_kernel.h: dot_gemm.h's kernel for
// one instruction set. A tile of R rows by J weight rows keeps R*J accumulator vectors
// along K; each k step loads J weight vectors and R input vectors for R*J FMAs. Columns go
// in blocks of W (the SIMD width) whose weight rows stay in cache while every row tile of
// the batch uses them, so the weights are read from memory once a call.
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <type_traits>

#include "dot_gemm.h"
#include "simd_tiles.h"

namespace rnnk {
namespace CPU_CAPABILITY {
namespace {

template <typename T>
using DotVec = at::vec::Vectorized<T>;

constexpr int kDotCols = 4;
// Rows per tile: R*J accumulators, J weight vectors and one input vector fit the registers.
constexpr int kDotRows = std::max(1, (kRegisters - kDotCols - 1) / kDotCols);

// sums[r][j0 + j] = the lane-wise partial sums of row r0 + r's dot product with weight
// row c0 + j0 + j: lane l sums the k = l (mod W).
template <int R, int J, typename T>
inline void dot_tile(const DotGemm<T>& p, int64_t r0, int64_t c0, int64_t j0,
                     T (*sums)[DotVec<T>::size()][DotVec<T>::size()]) {
  using V = DotVec<T>;
  constexpr int64_t W = V::size();
  V acc[R][J];
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < J; ++j) acc[r][j] = V(T(0));
  }
  const T* a = p.a + r0 * p.lda;
  const T* w = p.w + (c0 + j0) * p.K;
  int64_t k = 0;
  const auto step = [&](int64_t count) {
    V wv[J];
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      wv[j] = count == W ? V::loadu(w + j * p.K + k) : V::loadu(w + j * p.K + k, count);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const V x = count == W ? V::loadu(a + r * p.lda + k) : V::loadu(a + r * p.lda + k, count);
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) acc[r][j] = at::vec::fmadd(x, wv[j], acc[r][j]);
    }
  };
  for (; k + W <= p.K; k += W) step(W);
  if (k < p.K) step(p.K - k);  // partial loads fill the lanes past K with zeros
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < J; ++j) acc[r][j].store(sums[r][j0 + j]);
  }
}

// The W lane sums of W vectors at once: each level sums adjacent lanes of two vectors
// into one (deinterleave2 puts the even lanes of both first, the odd ones second), so after
// log2(W) levels lane j holds the sum of vector j. A few instructions a result, where
// reducing each vector alone costs log2(W) shuffles and adds for one.
template <typename T>
inline DotVec<T> lane_sums(const T (*vectors)[DotVec<T>::size()]) {
  using V = DotVec<T>;
  constexpr int64_t W = V::size();
  V v[W];
  for (int64_t j = 0; j < W; ++j) v[j] = V::loadu(vectors[j]);
  for (int64_t n = W; n > 1; n /= 2) {
    for (int64_t q = 0; q < n / 2; ++q) {
      const auto [even, odd] = at::vec::deinterleave2(v[2 * q], v[2 * q + 1]);
      v[q] = even + odd;
    }
  }
  return v[0];
}

template <typename T>
void dot_gemm_cols(const DotGemm<T>& p, int64_t col_begin, int64_t col_end) {
  using V = DotVec<T>;
  constexpr int64_t W = V::size();
  T sums[kDotRows][W][W];
  // Blocks of W columns; within one, each row tile's partial sums of every column, then
  // one lane_sums per row gives the block's W results.
  for (int64_t c0 = col_begin; c0 < col_end; c0 += W) {
    const int64_t width = std::min(W, col_end - c0);
    for (int64_t r0 = 0; r0 < p.rows; r0 += kDotRows) {
      with_count<kDotRows>(std::min<int64_t>(kDotRows, p.rows - r0), [&](auto rows) {
        constexpr int R = decltype(rows)::value;
        for (int64_t j0 = 0; j0 < width; j0 += kDotCols) {
          with_count<kDotCols>(std::min<int64_t>(kDotCols, width - j0), [&](auto cols) {
            dot_tile<R, decltype(cols)::value>(p, r0, c0, j0, sums);
          });
        }
        for (int r = 0; r < R; ++r) {
          for (int64_t j = width; j < W; ++j) V(T(0)).store(sums[r][j]);
          T* out = p.out + (r0 + r) * p.ldo + c0;
          V total = lane_sums<T>(sums[r]);
          if (p.accumulate) total = total + V::loadu(out, width);
          total.store(out, width);
        }
      });
    }
  }
}

}  // namespace

void dot_gemm(const DotGemm<float>& p, int64_t col_begin, int64_t col_end) {
  dot_gemm_cols(p, col_begin, col_end);
}
void dot_gemm(const DotGemm<double>& p, int64_t col_begin, int64_t col_end) {
  dot_gemm_cols(p, col_begin, col_end);
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnk
