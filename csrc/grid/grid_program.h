// The persistent GPU kernels' work, written once as host+device code over an execution
// context: the CUDA kernels (cuda/grid_kernels.cu) run it on a grid, the CPU simulator
// (grid/grid_simulator.cpp) runs every block and thread of a small grid phase by phase.
//
// One launch runs a layer direction's whole sequence. Block i owns hidden units
// [i * units, (i + 1) * units): forward keeps their G gate rows of W_hh in shared memory
// for every step, backward the same units' columns (rows of W_hh^T). h_(t-1) is exchanged
// through a double buffer in global memory, one grid barrier a step; backward exchanges
// the step's gate gradients (dhg, an output anyway), one barrier a step too. The dot
// products run either as each thread's FMA loop (thread t: batch row t / (units * split),
// unit (t / split) % units, the (t % split)-th part of each product) or, with kTiles, as
// tensor-core tiles a warp each (Ctx::mma_tile), split along their length the same way;
// the parts are summed through shared memory, and the gate math is the cell headers', on
// the thread of part 0 of each (row, unit).
//
// A step is a list of phases, each followed by a block sync or a grid barrier (after()):
// between two grid barriers a block may read only what no other block writes.
#pragma once
#include <type_traits>

#include "../cells/cells.h"
#include "grid_layout.h"

namespace rnnk {

enum class Sync { Block, Grid };

// The steps in visiting order: `rows` and `offsets` ([steps], device memory) for a packed
// batch, or null for a padded one (every step all rows, offsets t * rows).
struct GridSteps {
  int64_t steps;
  bool reverse;
  const int64_t* rows;
  const int64_t* offsets;
  int64_t batch;
  RNNK_HD int64_t step_rows(int64_t k) const { return rows ? rows[k] : batch; }
  RNNK_HD int64_t step_offset(int64_t k) const {
    return offsets ? offsets[k] : (reverse ? steps - 1 - k : k) * batch;
  }
};

template <typename T>
struct GridForward {
  GridSteps order;
  int64_t H;
  const T* xg;    // [N, G*H] input projection
  const T* w_hh;  // [G*H, H]
  const T* b_hh;  // [G*H] or null: the recurrent bias (b_ih + b_hh where the cell sums them)
  const T* h0;    // [B, H]
  T* h_n;         // [B, H] out (rows get each active step's h)
  T* c;           // [B, H] in: c0; out: c_n (LSTM)
  T* output;      // [N, H]
  T* saved;       // [N, S*H] training; [B, S*H] one step's scratch in inference
  T* h_prev;      // [N, H] training, else null
  T* c_prev;      // [N, H] LSTM training, else null
  T* hg;          // [B, G*H] scratch: each thread's own gate sums
  T* state;       // [2, B, H] scratch: h exchanged between blocks (kBuffers, below)
  unsigned* barrier;
  GridShape shape;
};

template <typename T>
struct GridBackward {
  GridSteps order;  // as forward visited the steps; backward walks them backwards
  int64_t H;
  const T* w_hh;         // [G*H, H]
  const T* grad_output;  // [N, H]
  const T* saved;        // [N, S*H]
  const T* h_prev;       // [N, H]
  const T* c_prev;       // [N, H] (LSTM)
  T* dh;                 // [B, H] in: dL/dh_n; out: dL/dh0
  T* dc;                 // [B, H] in: dL/dc_n; out: dL/dc0 (LSTM)
  T* dxg;                // [N, G*H] out
  T* dhg;                // [N, G*H] out (GRU; the others pass dxg)
  unsigned* barrier;
  GridShape shape;
};

// Where part `part` of `split` of a dot product of `length` starts: a multiple of
// kPartAlign, so that every part but the last is whole tensor-core steps.
RNNK_HD int64_t part_begin(int64_t length, int part, int split) {
  const int64_t begin = round_up(length * part / split, kPartAlign);
  return begin < length ? begin : length;
}

// Where a thread works (see the top of this file).
struct GridThread {
  int b, u, part;
  int64_t j;   // the hidden unit
  bool owns;   // the unit exists (the last block may own fewer) and the row is in the batch
  template <typename Ctx>
  RNNK_HD GridThread(const Ctx& ctx, const GridShape& s, int64_t H)
      : b(ctx.thread / (s.units * s.split)),
        u((ctx.thread / s.split) % s.units),
        part(ctx.thread % s.split),
        j(int64_t(ctx.block) * s.units + u),
        owns(j < H && b < s.rows) {}
};

// The tensor-core tiles of a block's step: C[rows x cols] = A[rows x K] B[cols x K]^T,
// cut in `split` parts along K; item i of (row tiles x column tiles x split) goes to warp
// i % warps. Each warp adds its items' tiles to the partial sums [split][rows][cols]
// (rows and cols padded to whole tiles), which the cell's thread sums over the parts.
struct TileWork {
  int64_t rows, cols, K, padded_rows, padded_cols;
  int split;
  template <typename Ctx, typename T, typename Acc>
  RNNK_HD void run(Ctx& ctx, const T* a, int64_t lda, const T* b, int64_t ldb, Acc* sums) const {
    const int warps = ctx.threads / 32, warp = ctx.thread / 32, lane = ctx.thread % 32;
    const int64_t row_tiles = (rows + kTileRows - 1) / kTileRows;
    const int64_t col_tiles = (cols + kTileCols - 1) / kTileCols;
    for (int64_t item = warp; item < row_tiles * col_tiles * split; item += warps) {
      const int part = static_cast<int>(item % split);
      const int64_t tile = item / split, r0 = tile / col_tiles * kTileRows,
                    c0 = tile % col_tiles * kTileCols;
      Acc c[kTileSlots] = {Acc(0), Acc(0), Acc(0), Acc(0)};
      ctx.mma_tile(lane, a + r0 * lda, lda, rows - r0, b + c0 * ldb, ldb, cols - c0,
                   part_begin(K, part, split), part_begin(K, part + 1, split), c);
      for (int slot = 0; slot < kTileSlots; ++slot) {
        const int64_t r = r0 + tile_row(lane, slot), col = c0 + tile_col(lane, slot);
        sums[(part * padded_rows + r) * padded_cols + col] = c[slot];
      }
    }
  }
  // The sum over the parts of C[r][col].
  template <typename Acc>
  RNNK_HD Acc total(const Acc* sums, int64_t r, int64_t col) const {
    Acc sum = Acc(0);
    for (int q = 0; q < split; ++q) sum += sums[(q * padded_rows + r) * padded_cols + col];
    return sum;
  }
};

// kTiles: the dot products on tensor cores (TileWork) rather than FMA. kBuffers is 2 (a
// double buffer for h); the simulator's tests build 1 as well, to see its race check
// catch the single buffer's.
template <typename Cell, typename T, typename Ctx, bool kTiles, int kBuffers = 2>
struct GridForwardProgram {
  using A = typename OpMath<T>::type;
  using L = typename Ctx::template Lanes<T>;
  // Tensor-core tiles read h in the weights' type; the FMA loop in the accumulators'.
  using Staged = std::conditional_t<kTiles, T, A>;
  static constexpr int G = Cell::kGates;
  static constexpr int kPhases = 3;
  RNNK_HD static Sync after(int phase) { return phase == 2 ? Sync::Grid : Sync::Block; }
  RNNK_HD static GridLayout layout(const GridShape& s, int64_t H) {
    return GridLayout(s, H, G, /*backward=*/false, sizeof(T), sizeof(A));
  }
  const GridForward<T>& p;

  RNNK_HD int64_t iterations() const { return p.order.steps; }
  RNNK_HD int64_t batch() const { return p.order.batch; }
  RNNK_HD Staged* staged(Ctx& ctx) const { return reinterpret_cast<Staged*>(ctx.shared); }
  RNNK_HD A* partials(Ctx& ctx) const {
    return reinterpret_cast<A*>(ctx.shared + layout(p.shape, p.H).partials);
  }
  RNNK_HD T* weights(Ctx& ctx) const {
    return reinterpret_cast<T*>(ctx.shared + layout(p.shape, p.H).weights);
  }
  RNNK_HD TileWork tiles(int64_t n) const {
    const int64_t cols = int64_t(G) * p.shape.units;
    return {n, cols, p.H, round_up(p.shape.rows, kTileRows), round_up(cols, kTileCols),
            p.shape.split};
  }

  // The block's gate rows into shared memory ([gate][unit][k]; zeros for units past H, so
  // that whole tiles read no garbage), and h0 into every state buffer on its units (a row
  // that joins late, in a reverse packed batch, reads h0).
  RNNK_HD void setup(Ctx& ctx) const {
    const int64_t H = p.H, units = p.shape.units, j0 = int64_t(ctx.block) * units;
    T* w = weights(ctx);
    for (int64_t idx = ctx.thread; idx < G * units * H; idx += ctx.threads) {
      const int64_t g = idx / (units * H), u = idx / H % units, k = idx % H;
      w[idx] = j0 + u < H ? ctx.load(p.w_hh + (g * H + j0 + u) * H + k) : OpMath<T>::store(A(0));
    }
    const int64_t B = batch();
    for (int64_t idx = ctx.thread; idx < B * units; idx += ctx.threads) {
      const int64_t b = idx / units, j = j0 + idx % units;
      if (j >= H) continue;
      const T v = ctx.load(p.h0 + b * H + j);
      for (int buffer = 0; buffer < kBuffers; ++buffer) {
        ctx.store(p.state + (buffer * B + b) * H + j, v);
      }
    }
  }

  RNNK_HD void phase(int phase, int64_t k, Ctx& ctx) const {
    const int64_t H = p.H, GH = G * H, B = batch();
    const int64_t n = p.order.step_rows(k), off = p.order.step_offset(k);
    const T* current = p.state + (k % kBuffers) * B * H;
    T* next = p.state + ((k + 1) % kBuffers) * B * H;
    const GridThread me(ctx, p.shape, H);
    const int split = p.shape.split;
    if (phase == 0) {  // stage h_(t-1) of the active rows, every unit
      for (int64_t idx = ctx.thread; idx < n * H; idx += ctx.threads) {
        const T v = ctx.load(current + idx);
        if constexpr (kTiles) {
          staged(ctx)[idx] = v;
        } else {
          staged(ctx)[idx] = OpMath<T>::load(v);
        }
      }
    } else if (phase == 1) {  // the gates' dot products, a part each
      if constexpr (kTiles) {
        tiles(n).run(ctx, staged(ctx), H, weights(ctx), H, partials(ctx));
      } else {
        if (!me.owns || me.b >= n) return;
        const A* h = staged(ctx) + me.b * H;
        for (int g = 0; g < G; ++g) {
          const T* row = weights(ctx) + (int64_t(g) * p.shape.units + me.u) * H;
          A acc = A(0);
          for (int64_t q = part_begin(H, me.part, split); q < part_begin(H, me.part + 1, split);
               ++q) {
            acc += OpMath<T>::load(row[q]) * h[q];
          }
          partials(ctx)[ctx.thread * G + g] = acc;
        }
      }
    } else {  // the cell, on the thread that holds part 0
      if (!me.owns || me.b >= n || me.part != 0) return;
      for (int g = 0; g < G; ++g) {
        A sum = A(0);
        if constexpr (kTiles) {
          sum = tiles(n).total(partials(ctx), me.b, int64_t(g) * p.shape.units + me.u);
        } else {
          for (int q = 0; q < split; ++q) sum += partials(ctx)[(ctx.thread + q) * G + g];
        }
        ctx.store(p.hg + me.b * GH + g * H + me.j, OpMath<T>::store(sum));
      }
      const int64_t at = me.b * H + me.j;
      ctx.store(next + at, ctx.load(current + at));  // the cell updates h in place
      const bool keeps = p.h_prev != nullptr;
      StepForward<T> step{p.xg + off * GH, p.hg, next, p.c,
                          p.saved + (keeps ? off : 0) * Cell::kSaved * H, H};
      step.b_hh = p.b_hh;
      step.h_out = p.output + off * H;
      step.h_keep = keeps ? p.h_prev + off * H : nullptr;
      step.c_keep = p.c_prev == nullptr ? nullptr : p.c_prev + off * H;
      keep_inputs<L>(step, me.b, me.j);
      Cell::template forward<L>(step, me.b, me.j);
      ctx.store(p.h_n + at, ctx.load(next + at));
    }
  }
};

template <typename Cell, typename T, typename Ctx, bool kTiles>
struct GridBackwardProgram {
  using A = typename OpMath<T>::type;
  using L = typename Ctx::template Lanes<T>;
  static constexpr int G = Cell::kGates;
  static constexpr int kPhases = 3;
  RNNK_HD static Sync after(int phase) { return phase == 0 ? Sync::Grid : Sync::Block; }
  RNNK_HD static GridLayout layout(const GridShape& s, int64_t H) {
    return GridLayout(s, H, G, /*backward=*/true, sizeof(T), sizeof(A));
  }
  const GridBackward<T>& p;

  RNNK_HD int64_t iterations() const { return p.order.steps; }
  RNNK_HD A* partials(Ctx& ctx) const {
    return reinterpret_cast<A*>(ctx.shared + layout(p.shape, p.H).partials);
  }
  RNNK_HD T* weights(Ctx& ctx) const {
    return reinterpret_cast<T*>(ctx.shared + layout(p.shape, p.H).weights);
  }
  // Transposed, so that the block's units are the tile rows: C^T = W_hh^T's rows dhg^T.
  RNNK_HD TileWork tiles(int64_t n) const {
    return {p.shape.units, n, G * p.H, round_up(p.shape.units, kTileRows),
            round_up(p.shape.rows, kTileCols), p.shape.split};
  }

  // The block's units' columns of W_hh into shared memory ([unit][gate row]; zeros for
  // units past H).
  RNNK_HD void setup(Ctx& ctx) const {
    const int64_t H = p.H, GH = G * H, units = p.shape.units, j0 = int64_t(ctx.block) * units;
    T* w = weights(ctx);
    for (int64_t idx = ctx.thread; idx < units * GH; idx += ctx.threads) {
      const int64_t u = idx / GH, r = idx % GH;
      w[idx] = j0 + u < H ? ctx.load(p.w_hh + r * H + j0 + u) : OpMath<T>::store(A(0));
    }
  }

  // Iteration i is step steps - 1 - i: the cell's gradients (then every block's are in
  // dhg), then dL/dh_(t-1) = dhg W_hh on the block's units, in parts, then summed.
  RNNK_HD void phase(int phase, int64_t i, Ctx& ctx) const {
    const int64_t H = p.H, GH = G * H;
    const int64_t k = p.order.steps - 1 - i;
    const int64_t n = p.order.step_rows(k), off = p.order.step_offset(k);
    const GridThread me(ctx, p.shape, H);
    const int split = p.shape.split;
    if constexpr (kTiles) {
      if (phase == 1) {  // every warp takes part, whatever its threads' rows
        tiles(n).run(ctx, weights(ctx), GH, p.dhg + off * GH, GH, partials(ctx));
        return;
      }
    }
    if (!me.owns || me.b >= n) return;
    if (phase == 0) {
      if (me.part != 0) return;
      StepBackward<T> step{p.dh,
                           p.dc,
                           p.saved + off * Cell::kSaved * H,
                           p.c_prev == nullptr ? nullptr : p.c_prev + off * H,
                           p.h_prev + off * H,
                           p.dxg + off * GH,
                           p.dhg + off * GH,
                           H};
      step.grad_h = p.grad_output + off * H;
      Cell::template backward<L>(step, me.b, me.j);
    } else if (phase == 1) {
      const T* column = weights(ctx) + int64_t(me.u) * GH;
      const T* grads = p.dhg + (off + me.b) * GH;
      A acc = A(0);
      for (int64_t r = part_begin(GH, me.part, split); r < part_begin(GH, me.part + 1, split);
           ++r) {
        acc += OpMath<T>::load(ctx.load(grads + r)) * OpMath<T>::load(column[r]);
      }
      partials(ctx)[ctx.thread] = acc;
    } else {
      if (me.part != 0) return;
      A sum = A(0);
      if constexpr (kTiles) {
        sum = tiles(n).total(partials(ctx), me.u, me.b);
      } else {
        for (int q = 0; q < split; ++q) sum += partials(ctx)[ctx.thread + q];
      }
      T* dh = p.dh + me.b * H + me.j;
      if (Cell::kDirectHiddenGradient) sum += OpMath<T>::load(ctx.load(dh));
      ctx.store(dh, OpMath<T>::store(sum));
    }
  }
};

// The order of a program's work: visit(phase, iteration, sync) for the setup (phase -1)
// and then every phase of every iteration, with what must follow it. The CUDA kernels run
// a block through it; the simulator runs every block through it, window by window.
template <typename Program, typename Visit>
RNNK_HD void visit_phases(const Program& program, const Visit& visit) {
  visit(-1, int64_t(0), Sync::Grid);
  for (int64_t i = 0; i < program.iterations(); ++i) {
    for (int ph = 0; ph < Program::kPhases; ++ph) visit(ph, i, Program::after(ph));
  }
}

}  // namespace rnnk
