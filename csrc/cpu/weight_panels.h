// The recurrent weights packed into the tile GEMM's panels, one block of W hidden units
// at a time (included by sequence_kernel.h, compiled once per instruction set).
#pragma once
#include <algorithm>
#include <cstring>

#include "tile_gemm.h"

namespace rnnk {
namespace CPU_CAPABILITY {
namespace {

// Forward panel of block jb: panel[(k * G + g) * W + lane] = w_hh[g*H + jb*W + lane][k],
// zero past H; bias[g * W + lane] likewise from b_hh.
template <typename T>
void pack_forward_block(const T* w_hh, const T* b_hh, int64_t H, int G, int64_t jb, T* panel,
                        T* bias) {
  constexpr int64_t W = Vec<T>::size();
  const int64_t j = jb * W, count = std::min(W, H - j);
  // Each gate's [count, H] slice of w_hh, transposed (at::vec's SIMD transpose); the
  // lanes past H of a partial block are zero.
  for (int g = 0; g < G; ++g) {
    at::vec::transpose_mxn<T>(w_hh + (g * H + j) * H, H, panel + g * W, G * W,
                              static_cast<int>(count), static_cast<int>(H));
    for (int64_t k = 0; count < W && k < H; ++k) {
      std::fill(panel + (k * G + g) * W + count, panel + (k * G + g + 1) * W, T(0));
    }
  }
  if (bias == nullptr) return;
  for (int g = 0; g < G; ++g) {
    for (int64_t lane = 0; lane < W; ++lane) {
      bias[g * W + lane] = lane < count ? b_hh[g * H + j + lane] : T(0);
    }
  }
}

// Backward panel of block jb: panel[k * W + lane] = w_hh[k][jb*W + lane], k < G*H.
template <typename T>
void pack_backward_block(const T* w_hh, int64_t H, int64_t GH, int64_t jb, T* panel) {
  constexpr int64_t W = Vec<T>::size();
  const int64_t j = jb * W, count = std::min(W, H - j);
  for (int64_t k = 0; k < GH; ++k) {
    std::memcpy(panel + k * W, w_hh + k * H + j, count * sizeof(T));
    std::fill(panel + k * W + count, panel + (k + 1) * W, T(0));
  }
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace rnnk
