// The persistent GPU kernels' work, written once as host+device code over an execution
// context: the CUDA kernels (cuda/grid_kernels.cu) run it on a grid, the CPU simulator
// (grid/grid_simulator.cpp) runs every block and thread of a small grid phase by phase.
//
// One launch runs a layer direction's whole sequence. Block i owns hidden units
// [i * units, (i + 1) * units): forward keeps their G gate rows of W_hh in shared memory
// for every step, backward the same units' columns (rows of W_hh^T). h_(t-1) is exchanged
// through a double buffer in global memory, one grid barrier a step; backward exchanges
// the step's gate gradients (dhg, an output anyway), one barrier a step too. Thread t of a
// block works on batch row t / (units * split), unit (t / split) % units and the
// (t % split)-th part of each dot product; the gate math is the cell headers'.
//
// A step is a list of phases, each followed by a block sync or a grid barrier (after()):
// between two grid barriers a block may read only what no other block writes.
#pragma once
#include "../cells/cells.h"

namespace rnnk {

enum class Sync { Block, Grid };

struct GridShape {
  int blocks = 0, units = 0, split = 0, rows = 0;
  RNNK_HD int threads() const { return rows * units * split; }
};

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

// A block's shared memory: float accumulators (the staged h_(t-1) rows in forward, the
// dot products' partial sums) first, then, from this offset, the weights in their own type.
RNNK_HD int64_t grid_weights_offset(const GridShape& s, int64_t H, int gates, bool backward,
                                    int acc_bytes) {
  const int64_t staged = backward ? 0 : int64_t(s.rows) * H;
  const int64_t partials = int64_t(s.threads()) * (backward ? 1 : gates);
  return ((staged + partials) * acc_bytes + 15) / 16 * 16;
}

// The whole of it, in bytes.
RNNK_HD int64_t grid_shared_bytes(const GridShape& s, int64_t H, int gates, bool backward,
                                  int elem_bytes, int acc_bytes) {
  return grid_weights_offset(s, H, gates, backward, acc_bytes) +
         int64_t(gates) * s.units * H * elem_bytes;
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
  // The part of [0, length) this thread's dot products cover.
  RNNK_HD int64_t begin(int64_t length, int split) const {
    return length * part / split;
  }
  RNNK_HD int64_t end(int64_t length, int split) const { return length * (part + 1) / split; }
};

// kBuffers is 2 (a double buffer for h); the simulator's tests build 1 as well, to see
// its race check catch the single buffer's.
template <typename Cell, typename T, typename Ctx, int kBuffers = 2>
struct GridForwardProgram {
  using A = typename OpMath<T>::type;
  using L = typename Ctx::template Lanes<T>;
  static constexpr int G = Cell::kGates;
  static constexpr int kPhases = 3;
  RNNK_HD static Sync after(int phase) { return phase == 2 ? Sync::Grid : Sync::Block; }
  RNNK_HD static int64_t shared_bytes(const GridShape& s, int64_t H) {
    return grid_shared_bytes(s, H, G, /*backward=*/false, sizeof(T), sizeof(A));
  }
  const GridForward<T>& p;

  RNNK_HD int64_t iterations() const { return p.order.steps; }
  RNNK_HD int64_t batch() const { return p.order.batch; }
  RNNK_HD A* staged(Ctx& ctx) const { return reinterpret_cast<A*>(ctx.shared); }
  RNNK_HD A* partials(Ctx& ctx) const { return staged(ctx) + p.shape.rows * p.H; }
  RNNK_HD T* weights(Ctx& ctx) const {
    return reinterpret_cast<T*>(ctx.shared + grid_weights_offset(p.shape, p.H, G, false,
                                                                 sizeof(A)));
  }

  // The block's gate rows into shared memory ([gate][unit][k]), and h0 into every state
  // buffer on its units (a row that joins late, in a reverse packed batch, reads h0).
  RNNK_HD void setup(Ctx& ctx) const {
    const int64_t H = p.H, units = p.shape.units, j0 = int64_t(ctx.block) * units;
    T* w = weights(ctx);
    for (int64_t idx = ctx.thread; idx < G * units * H; idx += ctx.threads) {
      const int64_t g = idx / (units * H), u = idx / H % units, k = idx % H;
      if (j0 + u < H) w[idx] = ctx.load(p.w_hh + (g * H + j0 + u) * H + k);
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
        staged(ctx)[idx] = OpMath<T>::load(ctx.load(current + idx));
      }
    } else if (phase == 1) {  // the gates' dot products, a part each
      if (!me.owns || me.b >= n) return;
      const T* w = weights(ctx);
      const A* h = staged(ctx) + me.b * H;
      for (int g = 0; g < G; ++g) {
        const T* row = w + (int64_t(g) * p.shape.units + me.u) * H;
        A acc = A(0);
        for (int64_t q = me.begin(H, split); q < me.end(H, split); ++q) {
          acc += OpMath<T>::load(row[q]) * h[q];
        }
        partials(ctx)[ctx.thread * G + g] = acc;
      }
    } else {  // the cell, on the thread that holds part 0
      if (!me.owns || me.b >= n || me.part != 0) return;
      for (int g = 0; g < G; ++g) {
        A sum = A(0);
        for (int q = 0; q < split; ++q) sum += partials(ctx)[(ctx.thread + q) * G + g];
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

template <typename Cell, typename T, typename Ctx>
struct GridBackwardProgram {
  using A = typename OpMath<T>::type;
  using L = typename Ctx::template Lanes<T>;
  static constexpr int G = Cell::kGates;
  static constexpr int kPhases = 3;
  RNNK_HD static Sync after(int phase) { return phase == 0 ? Sync::Grid : Sync::Block; }
  RNNK_HD static int64_t shared_bytes(const GridShape& s, int64_t H) {
    return grid_shared_bytes(s, H, G, /*backward=*/true, sizeof(T), sizeof(A));
  }
  const GridBackward<T>& p;

  RNNK_HD int64_t iterations() const { return p.order.steps; }
  RNNK_HD A* partials(Ctx& ctx) const { return reinterpret_cast<A*>(ctx.shared); }
  RNNK_HD T* weights(Ctx& ctx) const {
    return reinterpret_cast<T*>(ctx.shared + grid_weights_offset(p.shape, p.H, G, true,
                                                                 sizeof(A)));
  }

  // The block's units' columns of W_hh into shared memory ([unit][gate row]).
  RNNK_HD void setup(Ctx& ctx) const {
    const int64_t H = p.H, GH = G * H, units = p.shape.units, j0 = int64_t(ctx.block) * units;
    T* w = weights(ctx);
    for (int64_t idx = ctx.thread; idx < units * GH; idx += ctx.threads) {
      const int64_t u = idx / GH, r = idx % GH;
      if (j0 + u < H) w[idx] = ctx.load(p.w_hh + r * H + j0 + u);
    }
  }

  // Iteration i is step steps - 1 - i: the cell's gradients (then every block's are in
  // dhg), then dL/dh_(t-1) = dhg W_hh on the block's units, a part a thread, then summed.
  RNNK_HD void phase(int phase, int64_t i, Ctx& ctx) const {
    const int64_t H = p.H, GH = G * H;
    const int64_t k = p.order.steps - 1 - i;
    const int64_t n = p.order.step_rows(k), off = p.order.step_offset(k);
    const GridThread me(ctx, p.shape, H);
    if (!me.owns || me.b >= n) return;
    const int split = p.shape.split;
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
      for (int64_t r = me.begin(GH, split); r < me.end(GH, split); ++r) {
        acc += OpMath<T>::load(ctx.load(grads + r)) * OpMath<T>::load(column[r]);
      }
      partials(ctx)[ctx.thread] = acc;
    } else {
      if (me.part != 0) return;
      A sum = A(0);
      for (int q = 0; q < split; ++q) sum += partials(ctx)[ctx.thread + q];
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

// The shape of a grid for a layer, or blocks == 0 where none fits: the fewest units a
// block (the most blocks, within `blocks`) and as many threads a (row, unit) as the block
// may have, up to kMaxSplit. More units a block only need more shared memory.
struct GridLimits {
  int blocks, threads, rows;
  int64_t shared_bytes;
};
inline constexpr int kMaxSplit = 16;

inline GridShape choose_grid_shape(int64_t B, int64_t H, int gates, bool backward, int elem_bytes,
                                   int acc_bytes, const GridLimits& limits) {
  if (B < 1 || H < 1 || B > limits.rows || limits.blocks < 1) return {};
  GridShape s;
  s.rows = static_cast<int>(B);
  s.units = static_cast<int>((H + limits.blocks - 1) / limits.blocks);
  s.blocks = static_cast<int>((H + s.units - 1) / s.units);
  s.split = 1;
  if (s.threads() > limits.threads) return {};
  while (s.split < kMaxSplit && 2 * s.threads() <= limits.threads) s.split *= 2;
  if (grid_shared_bytes(s, H, gates, backward, elem_bytes, acc_bytes) > limits.shared_bytes) {
    return {};
  }
  return s;
}

}  // namespace rnnk
