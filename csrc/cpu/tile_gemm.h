// The persistent CPU kernels' tile GEMM (included by sequence_kernel.h, compiled once per
// instruction set): register tiles of rows by SIMD vectors of a packed weight panel, K in
// chunks that keep a panel slice and the partial sums in L1, and the lane loads and
// stores of a partial last vector.
#pragma once
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "simd_tiles.h"

namespace rnnk {
namespace CPU_CAPABILITY {
namespace {

template <typename T>
using Vec = at::vec::Vectorized<T>;

// Rows per tile with C accumulator vectors per row: accumulators, C weight vectors and one
// broadcast fit the registers; at most 12 rows.
constexpr int tile_rows(int C) { return std::min(12, std::max(1, (kRegisters - C - 1) / C)); }

// acc[r][c] += a[r * lda + k] * panel[k * k_stride + c * c_stride + lane], for one k.
template <int R, int C, typename T>
inline void tile_step(const T* a, int64_t lda, int64_t k, const T* panel, int64_t k_stride,
                      int64_t c_stride, Vec<T> (&acc)[R][C]) {
  Vec<T> w[C];
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c) w[c] = Vec<T>::loadu(panel + k * k_stride + c * c_stride);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const Vec<T> x(a[r * lda + k]);
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) acc[r][c] = at::vec::fmadd(x, w[c], acc[r][c]);
  }
}

// acc[r][c] += sum_k a[r * lda + k] * panel[k * k_stride + c * c_stride + lane]. A tile of
// fewer than 8 accumulators (a batch of one or two rows) would wait on each FMA's latency
// (4 cycles, 2 units): it keeps S sets that take alternate k, summed at the end.
template <int R, int C, typename T>
inline void tile_gemm(const T* a, int64_t lda, int64_t K, const T* panel, int64_t k_stride,
                      int64_t c_stride, Vec<T> (&acc)[R][C]) {
  constexpr int S = (8 + R * C - 1) / (R * C);
  Vec<T> more[S][R][C];  // sets 1..S-1 (set 0 is acc; more[0] stays unused)
  for (int s = 1; s < S; ++s) {
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) more[s][r][c] = Vec<T>(0);
    }
  }
  int64_t k = 0;
  for (; k + S <= K; k += S) {
    tile_step<R, C>(a, lda, k, panel, k_stride, c_stride, acc);
#pragma GCC unroll 8
    for (int s = 1; s < S; ++s) tile_step<R, C>(a, lda, k + s, panel, k_stride, c_stride, more[s]);
  }
  for (; k < K; ++k) tile_step<R, C>(a, lda, k, panel, k_stride, c_stride, acc);
  for (int s = 1; s < S; ++s) {
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) acc[r][c] = acc[r][c] + more[s][r][c];
    }
  }
}

// `count` of the W lanes at p (the last hidden block may be partial).
template <typename T>
inline Vec<T> load_lanes(const T* p, int64_t count) {
  return count == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, count);
}
template <typename T>
inline void store_lanes(T* p, const Vec<T>& v, int64_t count) {
  if (count == Vec<T>::size()) {
    v.store(p);
  } else {
    v.store(p, count);
  }
}

// Values a panel GEMM starts from: init[c * W + lane] (a bias), what `out` holds
// (accumulate), or zero.
template <typename T>
struct PanelStart {
  const T* init;
  bool accumulate;
};

// K chunk of a panel GEMM with C vectors per row: ~8 KiB of panel slice, which with the
// partial sums and the rows' inputs fits L1.
template <int C, typename T>
constexpr int64_t panel_chunk() {
  return std::max<int64_t>(16, (8 * 1024) / (C * Vec<T>::size() * sizeof(T)));
}

// A GEMM's left operand: element (r, k) of K chunk `ch` (k = ch * chunk + kk) lies at
// a[ch * chunk_stride + r * lda + kk]. Plain rows: chunk_stride = chunk; rows packed by
// pack_rows_by_chunk: lda = chunk, chunk_stride = n * chunk.
template <typename T>
struct PanelInput {
  const T* a;
  int64_t lda, chunk_stride;
};

// Rows [n][K] (row stride ld) -> [chunk][n][KC]. Rows a multiple of 4 KiB apart all map to
// one L1 set; a row tile reading 12 of them at once would miss on every k.
template <typename T>
void pack_rows_by_chunk(int64_t n, const T* src, int64_t ld, int64_t K, int64_t KC, T* dst) {
  for (int64_t k0 = 0, ch = 0; k0 < K; k0 += KC, ++ch) {
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(dst + (ch * n + r) * KC, src + r * ld + k0, std::min(KC, K - k0) * sizeof(T));
    }
  }
}

// out[r * C * W + c * W + lane] = start + sum_k A(r, k) * panel[k * k_stride +
// c * c_stride + lane] for r < n, k < K. `out` is compact (rows of C vectors): rows of
// the real destinations lie 1-4 KiB apart and would all compete for the same few L1 sets.
// Rows go in blocks and K in chunks of KC so that a panel slice and the block's partial
// sums (waiting in `out` between chunks) stay in L1 while every row tile uses them.
template <int C, int64_t KC, typename T>
void panel_gemm(int64_t n, const PanelInput<T>& in, int64_t K, const T* panel, int64_t k_stride,
                int64_t c_stride, T* out, const PanelStart<T>& start) {
  constexpr int R = tile_rows(C);
  constexpr int64_t W = Vec<T>::size();
  constexpr int64_t kRowBlock = std::max<int64_t>(1, panel_chunk<C, T>() / R) * R;
  for (int64_t m0 = 0; m0 < n; m0 += kRowBlock) {
    const int64_t m_end = std::min(n, m0 + kRowBlock);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int64_t kc = std::min(KC, K - k0);
      const bool resume = k0 > 0 || start.accumulate;
      const T* a = in.a + (k0 / KC) * in.chunk_stride;
      for (int64_t r0 = m0; r0 < m_end; r0 += R) {
        with_count<R>(std::min<int64_t>(R, m_end - r0), [&](auto rows) {
          constexpr int RT = decltype(rows)::value;
          T* tile = out + r0 * C * W;
          Vec<T> acc[RT][C];
          for (int r = 0; r < RT; ++r) {
            for (int c = 0; c < C; ++c) {
              acc[r][c] = resume       ? Vec<T>::loadu(tile + (r * C + c) * W)
                          : start.init ? Vec<T>::loadu(start.init + c * W)
                                       : Vec<T>(0);
            }
          }
          tile_gemm<RT, C>(a + r0 * in.lda, in.lda, kc, panel + k0 * k_stride, k_stride,
                           c_stride, acc);
          for (int r = 0; r < RT; ++r) {
            for (int c = 0; c < C; ++c) acc[r][c].store(tile + (r * C + c) * W);
          }
        });
      }
    }
  }
}

// Copies `count` lanes of each of C vectors per row between a compact [n][C][W] array and
// rows of a wider one (vector c at c_stride); `to_wide` says which way.
template <typename T>
void copy_vectors(int64_t n, int C, T* compact, T* wide, int64_t ld, int64_t c_stride,
                  const int64_t* counts, bool to_wide) {
  constexpr int64_t W = Vec<T>::size();
  for (int64_t r = 0; r < n; ++r) {
    for (int c = 0; c < C; ++c) {
      T* packed = compact + (r * C + c) * W;
      T* spread = wide + r * ld + c * c_stride;
      if (to_wide) {
        store_lanes(spread, Vec<T>::loadu(packed), counts[c]);
      } else {
        load_lanes(spread, counts[c]).store(packed);
      }
    }
  }
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace rnnk
