// The geometry of the persistent GPU kernels (grid_program.h): how a grid splits a layer,
// what a block keeps in shared memory, and the shape a layer gets on a device.
#pragma once
#include "../cells/common.h"

namespace rnnk {

// Block i owns hidden units [i * units, (i + 1) * units). Each dot product is cut in
// `split` parts along its length. `tiles`: the products run as 16 x 8 tensor-core tiles
// (a warp each) instead of a thread's FMA loop.
struct GridShape {
  int blocks = 0, units = 0, split = 0, rows = 0;
  bool tiles = false;
  // A thread for every (row, unit, part), rounded up to whole warps: a tensor-core tile
  // takes all 32 lanes of a warp.
  RNNK_HD int threads() const { return (rows * units * split + 31) / 32 * 32; }
};

RNNK_HD int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// A tensor-core tile of the output: 16 rows by 8 columns; lane l of the warp holds its
// slots 0..3 at row l / 4 + 8 * (slot / 2), column 2 * (l % 4) + slot % 2.
inline constexpr int kTileRows = 16, kTileCols = 8, kTileSlots = 4;
RNNK_HD int tile_row(int lane, int slot) { return (lane >> 2) + 8 * (slot >> 1); }
RNNK_HD int tile_col(int lane, int slot) { return 2 * (lane & 3) + (slot & 1); }
// A part of a dot product starts at a multiple of this (the deepest tile step, 16).
inline constexpr int kPartAlign = 16;

// A block's shared memory, in bytes from its start. Forward: h_(t-1)'s active rows
// staged (in the weights' type for tiles, else the accumulators'), the partial sums, the
// G gate rows of its units ([gate][unit][k]). Backward: the partial sums and its units'
// columns of W_hh ([unit][gate row]).
struct GridLayout {
  int64_t partials, weights, total;
  RNNK_HD GridLayout(const GridShape& s, int64_t H, int gates, bool backward, int elem_bytes,
                     int acc_bytes) {
    const int64_t staged = backward ? 0 : int64_t(s.rows) * H * (s.tiles ? elem_bytes : acc_bytes);
    int64_t sums = int64_t(s.threads()) * (backward ? 1 : gates);
    if (s.tiles) {  // [split][tile rows][tile columns], padded to whole tiles
      const int64_t rows = backward ? s.units : s.rows, cols = backward ? s.rows : gates * s.units;
      sums = s.split * round_up(rows, kTileRows) * round_up(cols, kTileCols);
    }
    partials = round_up(staged, 16);
    weights = round_up(partials + sums * acc_bytes, 16);
    total = weights + int64_t(gates) * s.units * H * elem_bytes;
  }
};

// What a device offers a grid: co-resident blocks, threads a block, the largest batch
// taken (each block stages the step's whole h rows), shared memory a block.
struct GridLimits {
  int blocks, threads, rows;
  int64_t shared_bytes;
};
inline constexpr int kMaxSplit = 16;

// The shape of a grid for a layer, or blocks == 0 where none fits: the fewest units a
// block (the most blocks, within limits.blocks) and as many parts a dot product as the
// block has threads for, up to kMaxSplit. More units a block would only take more shared
// memory.
inline GridShape choose_grid_shape(int64_t B, int64_t H, int gates, bool backward, bool tiles,
                                   int elem_bytes, int acc_bytes, const GridLimits& limits) {
  if (B < 1 || H < 1 || B > limits.rows || limits.blocks < 1) return {};
  GridShape s;
  s.rows = static_cast<int>(B);
  s.units = static_cast<int>((H + limits.blocks - 1) / limits.blocks);
  s.blocks = static_cast<int>((H + s.units - 1) / s.units);
  s.split = 1;
  s.tiles = tiles;
  if (s.threads() > limits.threads) return {};
  while (s.split < kMaxSplit && s.rows * s.units * 2 * s.split <= limits.threads) s.split *= 2;
  const GridLayout layout(s, H, gates, backward, elem_bytes, acc_bytes);
  return layout.total <= limits.shared_bytes ? s : GridShape{};
}

}  // namespace rnnk
