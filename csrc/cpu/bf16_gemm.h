// The bfloat16 tile GEMM with float32 results, for one instruction set: AMX tiles
// (RNNK_BF16_AMX) or AVX512_BF16's vdpbf16ps (RNNK_BF16_DPBF16). The including file sets
// the target first (isa_amx.cpp, isa_avx512_bf16.cpp). No ATen: bf16 values are their raw
// 16 bits here, as at::BFloat16 stores them.
//
// Right operands are packed once per call into VNNI panels: columns in tiles of 16, each
// tile [K/2][16][2] (row k/2 holds the pair (k, k+1) of each of its 16 columns), K padded
// with zeros to a multiple of 32. An AMX B tile is 16 such rows; a vdpbf16ps operand is
// one. Left operands are rows of kTileRows-padded, K-padded bf16 the caller provides.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace rnnk {
namespace {

using bf16_bits = uint16_t;

constexpr int64_t kTileCols = 16;   // columns of a panel tile (float32 lanes of a zmm)
constexpr int64_t kTileDepth = 32;  // K of one AMX tile row (64 bytes of bf16)
constexpr int64_t kTileRows = 16;   // rows of an AMX tile

inline int64_t padded_depth(int64_t K) { return (K + kTileDepth - 1) / kTileDepth * kTileDepth; }
inline int64_t padded_rows(int64_t M) { return (M + kTileRows - 1) / kTileRows * kTileRows; }
// bf16 values in one packed column tile of depth K.
inline int64_t tile_values(int64_t K) { return padded_depth(K) * kTileCols; }

// One VNNI column tile from `count` (<= 16) rows of w (row stride ldw, K values each):
// tile[(k / 2) * 32 + col * 2 + k % 2] = w[col][k]; zero past count and past K.
inline void pack_vnni_tile(const bf16_bits* w, int64_t ldw, int64_t count, int64_t K,
                           bf16_bits* tile) {
  const int64_t depth = padded_depth(K);
  std::memset(tile, 0, depth * kTileCols * sizeof(bf16_bits));
  // A pair of adjacent k at a time: 32 bits read from a row, written to the pair's slot.
  for (int64_t k = 0; k + 1 < K; k += 2) {
    bf16_bits* slots = tile + (k / 2) * 32;
    for (int64_t col = 0; col < count; ++col) {
      std::memcpy(slots + col * 2, w + col * ldw + k, 2 * sizeof(bf16_bits));
    }
  }
  if (K % 2 != 0) {
    for (int64_t col = 0; col < count; ++col) tile[(K / 2) * 32 + col * 2] = w[col * ldw + K - 1];
  }
}

// Rows [0, M) of a (row stride lda, K values) into dst [padded_rows(M)][padded_depth(K)],
// zero elsewhere: the form the tile GEMM reads.
inline void pad_rows(const bf16_bits* a, int64_t lda, int64_t M, int64_t K, bf16_bits* dst) {
  const int64_t depth = padded_depth(K), rows = padded_rows(M);
  for (int64_t r = 0; r < rows; ++r) {
    bf16_bits* out = dst + r * depth;
    const int64_t kept = r < M ? K : 0;
    if (kept > 0) std::memcpy(out, a + r * lda, kept * sizeof(bf16_bits));
    std::memset(out + kept, 0, (depth - kept) * sizeof(bf16_bits));
  }
}

// out[r * ldo + c * 16 + lane] = start + sum_k A(r, k) * panel_c(k, lane), r < M, c < C:
// A is [padded_rows(M)][lda >= padded_depth(K)] (zero padding); panel tiles are
// consecutive, `tile_values(K)` apart; start is bias[c * 16 + lane] (or 0 without bias).
// Rows past M of `out` (up to padded_rows(M)) may be written too: `out` must hold them.
void bf16_gemm(int64_t M, const bf16_bits* a, int64_t lda, int64_t K, const bf16_bits* panel,
               int64_t C, const float* bias, float* out, int64_t ldo);

// dst[i] = bf16(src[i]) (round to nearest even), i < count.
inline void store_bf16(const float* src, bf16_bits* dst, int64_t count) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
  }
  if (i < count) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (count - i)) - 1);
    _mm256_mask_storeu_epi16(dst + i, mask,
                             (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src + i)));
  }
}

// dst[i] = float(src[i]), i < count (exact).
inline void load_bf16(const bf16_bits* src, float* dst, int64_t count) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m512i wide = _mm512_cvtepu16_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
  if (i < count) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (count - i)) - 1);
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, src + i));
    _mm512_mask_storeu_ps(dst + i, mask, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
}

#if defined(RNNK_BF16_AMX)

// The palette-1 tile configuration: every tile 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  TileConfig() {
    for (int t = 0; t < 8; ++t) {
      colsb[t] = 64;
      rows[t] = 16;
    }
  }
};

// Tile configuration is per-thread state, and other AMX code on the same threads (oneDNN's
// GEMMs) loads its own: each kernel call loads ours on each of its threads and releases
// the tiles when it is done (loading it zeroes the tiles).
class TileSession {
 public:
  TileSession() {
    static const TileConfig config;
    _tile_loadconfig(&config);
  }
  ~TileSession() { _tile_release(); }
  TileSession(const TileSession&) = delete;
  TileSession& operator=(const TileSession&) = delete;
};

// An MR x NR block of 16x16 result tiles (tmm0..3), A tiles in tmm4/5, B in tmm6/7.
template <int MR, int NR>
inline void amx_block(const bf16_bits* a, int64_t lda, int64_t depth, const bf16_bits* panel,
                      int64_t tile_stride, const float* bias, float* out, int64_t ldo) {
  const int64_t a_bytes = lda * sizeof(bf16_bits), o_bytes = ldo * sizeof(float);
  // A bias row loaded with a zero stride repeats it in all 16 rows.
  if (bias != nullptr) {
    _tile_loadd(0, bias, 0);
    if (NR > 1) _tile_loadd(1, bias + 16, 0);
    if (MR > 1) _tile_loadd(2, bias, 0);
    if (MR > 1 && NR > 1) _tile_loadd(3, bias + 16, 0);
  } else {
    _tile_zero(0);
    if (NR > 1) _tile_zero(1);
    if (MR > 1) _tile_zero(2);
    if (MR > 1 && NR > 1) _tile_zero(3);
  }
  for (int64_t k = 0; k < depth; k += kTileDepth) {
    const bf16_bits* b = panel + k * kTileCols;
    _tile_loadd(4, a + k, a_bytes);
    _tile_loadd(6, b, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (NR > 1) {
      _tile_loadd(7, b + tile_stride, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (MR > 1) {
      _tile_loadd(5, a + kTileRows * lda + k, a_bytes);
      _tile_dpbf16ps(2, 5, 6);
      if (NR > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, out, o_bytes);
  if (NR > 1) _tile_stored(1, out + 16, o_bytes);
  if (MR > 1) _tile_stored(2, out + kTileRows * ldo, o_bytes);
  if (MR > 1 && NR > 1) _tile_stored(3, out + kTileRows * ldo + 16, o_bytes);
}

// Column tiles (whole pairs) whose panels, 768 KiB of them, stay in L2 while every row
// block of A passes over them: without that, a GEMM whose panels outgrow L2 (the input
// projection at H = 1024: 8 MiB) reads them all again for every 32 rows.
inline int64_t l2_column_tiles(int64_t K) {
  constexpr int64_t kPanelBytes = int64_t{768} << 10;
  return std::max<int64_t>(2, kPanelBytes / (tile_values(K) * 2) / 2 * 2);
}

void bf16_gemm(int64_t M, const bf16_bits* a, int64_t lda, int64_t K, const bf16_bits* panel,
               int64_t C, const float* bias, float* out, int64_t ldo) {
  const int64_t depth = padded_depth(K), stride = tile_values(K);
  const int64_t row_blocks = padded_rows(M) / kTileRows, block = l2_column_tiles(K);
  for (int64_t c0 = 0; c0 < C; c0 += block) {
    const int64_t c1 = std::min(C, c0 + block);
    for (int64_t rb = 0; rb < row_blocks; rb += 2) {
      const bool two_rows = rb + 1 < row_blocks;
      const bf16_bits* a_rows = a + rb * kTileRows * lda;
      float* o_rows = out + rb * kTileRows * ldo;
      for (int64_t c = c0; c < c1; c += 2) {
        const bool two_cols = c + 1 < c1;
        const bf16_bits* p = panel + c * stride;
        const float* s = bias != nullptr ? bias + c * 16 : nullptr;
        float* o = o_rows + c * 16;
        if (two_rows && two_cols) {
          amx_block<2, 2>(a_rows, lda, depth, p, stride, s, o, ldo);
        } else if (two_rows) {
          amx_block<2, 1>(a_rows, lda, depth, p, stride, s, o, ldo);
        } else if (two_cols) {
          amx_block<1, 2>(a_rows, lda, depth, p, stride, s, o, ldo);
        } else {
          amx_block<1, 1>(a_rows, lda, depth, p, stride, s, o, ldo);
        }
      }
    }
  }
}

#elif defined(RNNK_BF16_DPBF16)

// Nothing to configure without tiles.
struct TileSession {
  TileSession() {}
};

// An R x NC block: R rows, NC column tiles, NC weight vectors and one broadcast in flight.
template <int R, int NC>
inline void dpbf16_block(const bf16_bits* a, int64_t lda, int64_t depth, const bf16_bits* panel,
                         int64_t tile_stride, const float* bias, float* out, int64_t ldo) {
  __m512 acc[R][NC];
  for (int c = 0; c < NC; ++c) {
    const __m512 start = bias != nullptr ? _mm512_loadu_ps(bias + c * 16) : _mm512_setzero_ps();
    for (int r = 0; r < R; ++r) acc[r][c] = start;
  }
  for (int64_t kp = 0; kp < depth / 2; ++kp) {
    __m512bh w[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      w[c] = (__m512bh)_mm512_loadu_si512(panel + c * tile_stride + kp * 32);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      uint32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * kp, sizeof(pair));
      const __m512bh x = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], x, w[c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out + r * ldo + c * 16, acc[r][c]);
  }
}

// Calls f(std::integral_constant<int, rows>) for 1 <= rows <= R.
template <int R, typename F>
inline void with_block_rows(int64_t rows, const F& f) {
  if constexpr (R > 1) {
    if (rows < R) return with_block_rows<R - 1>(rows, f);
  }
  f(std::integral_constant<int, R>{});
}

void bf16_gemm(int64_t M, const bf16_bits* a, int64_t lda, int64_t K, const bf16_bits* panel,
               int64_t C, const float* bias, float* out, int64_t ldo) {
  constexpr int NC = 4, R = 6;  // 24 accumulators + 4 weights + 1 broadcast of 32 registers
  const int64_t depth = padded_depth(K), stride = tile_values(K);
  for (int64_t c = 0; c < C; c += NC) {
    const int64_t nc = std::min<int64_t>(NC, C - c);
    const bf16_bits* p = panel + c * stride;
    const float* s = bias != nullptr ? bias + c * 16 : nullptr;
    for (int64_t r = 0; r < M; r += R) {
      with_block_rows<R>(std::min<int64_t>(R, M - r), [&](auto rows) {
        constexpr int RT = decltype(rows)::value;
        const bf16_bits* ar = a + r * lda;
        float* o = out + r * ldo + c * 16;
        switch (nc) {
          case 4: return dpbf16_block<RT, 4>(ar, lda, depth, p, stride, s, o, ldo);
          case 3: return dpbf16_block<RT, 3>(ar, lda, depth, p, stride, s, o, ldo);
          case 2: return dpbf16_block<RT, 2>(ar, lda, depth, p, stride, s, o, ldo);
          default: return dpbf16_block<RT, 1>(ar, lda, depth, p, stride, s, o, ldo);
        }
      });
    }
  }
}

#endif

}  // namespace
}  // namespace rnnk
