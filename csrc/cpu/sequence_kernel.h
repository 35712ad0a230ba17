// The body of isa_{default,avx2,avx512}.cpp after rows_kernel.h: the persistent sequence
// kernels of sequence.h for one instruction set.
//
// Forward, per step: for each block of W hidden units (W = SIMD lanes) the thread owns, the
// rows x (G gates x W units) recurrent GEMM in register tiles against the block's packed
// weights ([k][gate][lane], packed once per call by the owning thread, so they stay in that
// core's cache); then, row by row, the cell's gates on those results (cells/*.h, the same
// functions the pointwise kernels run). Backward, per step: the gates' gradients of the
// thread's units row by row, one barrier, then dh_{t-1} for the thread's columns from the
// same kind of tile. Threads own fixed hidden blocks for the whole sequence and meet at
// one barrier per step; no allocation in the time loop.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "block_split.h"
#include "call_buffers.h"
#include "sequence.h"
#include "spin_barrier.h"
#include "step_rows.h"
#include "tile_gemm.h"
#include "weight_panels.h"

namespace rnnk {
namespace CPU_CAPABILITY {
namespace {

// Asks for one row's input projections of units [j0, j0 + width) of each gate to come
// into L1 before the gates read them: xg, written by one GEMM before the loop, outgrows
// the caches, and those reads missed.
template <typename T>
inline void prefetch_gate_inputs(const T* xg_row, int64_t H, int64_t j0, int64_t width, int G) {
  constexpr int64_t kLine = 64 / sizeof(T);
  for (int g = 0; g < G; ++g) {
    for (int64_t j = 0; j < width; j += kLine) {
      __builtin_prefetch(xg_row + g * H + j0 + j, /*read*/ 0, /*to L1*/ 3);
    }
  }
}

template <typename Cell, typename T>
void forward_sequence(const SequenceForward<T>& p) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  constexpr int64_t W = Vec<T>::size();
  // RNN's single gate would give a tile one vector per row, its broadcasts outnumbering its
  // FMAs: its tiles take two blocks at once (as the backward's do).
  constexpr int64_t kGroup = G == 1 ? 2 : 1;  // hidden blocks per tile
  const int64_t H = p.H, GH = G * H, B = p.batch;
  const BlockSplit split(H, W, kGroup);
  const int64_t blocks = split.blocks;
  const StepOrder& order = p.order;
  const int team_size = split.team_for(p.threads);

  // Rows that join mid-sequence (a reversed packed batch grows) start from h0: such steps
  // read their input state from `joined`, assembled once by one thread.
  bool grows = false;
  for (int64_t k = 1; k < order.steps; ++k) grows = grows || order.rows[k] > order.rows[k - 1];
  // Per thread: its blocks' GEMM results [block][B][G][W], then one row of recurrent
  // projections [G*H] (only the thread's units touched) as the cell math reads them, then
  // in inference one row [S*H] that takes the saved values and stays in L1.
  constexpr int64_t KC = panel_chunk<G * kGroup, T>();
  const bool keeps = p.saved != nullptr;
  const int64_t rows_per_thread = GH + (keeps ? 0 : S * H);
  // Written before read, none zero-filled: joined, panels, biases, the threads' scratch.
  const CallBuffers<T> buffers({grows ? B * H : 0, blocks * H * G * W,
                                p.b_hh ? blocks * G * W : 0,
                                split.most_in_all(team_size) * B * G * W +
                                    team_size * rows_per_thread});
  T *const joined = buffers[0], *const panels = buffers[1], *const biases = buffers[2],
           *const scratch = buffers[3];
  SpinBarrier step_done(team_size);

#pragma omp parallel num_threads(team_size) if (team_size > 1)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    const Blocks mine(split, tid, team);
    for (int64_t jb = mine.first; jb < mine.last; ++jb) {
      pack_forward_block(p.w_hh, p.b_hh, H, G, jb, panels + jb * H * G * W,
                         p.b_hh ? biases + jb * G * W : nullptr);
    }
    const int64_t most_blocks = split.most(team);
    T* tiles = scratch + tid * (most_blocks * B * G * W + rows_per_thread);
    T* hg = tiles + most_blocks * B * G * W;
    T* discarded = hg + GH;
    int64_t prev = -1;  // the last step that ran
    for (int64_t k = 0; k < order.steps; ++k) {
      const int64_t n = order.rows[k], off = order.offsets[k];
      if (n == 0) continue;
      const T* h_in = step_input(order, k, prev, H, p.h0, p.output, joined);
      const PanelInput<T> states{h_in, H, KC};
      // The GEMM block by block (each block's weights stay in cache across the rows)...
      for (int64_t jb = mine.first; jb < mine.last; jb += kGroup) {
        const PanelStart<T> start{p.b_hh ? biases + jb * G * W : nullptr, false};
        T* out = tiles + (jb - mine.first) * B * G * W;  // [B][blocks of the tile][G][W]
        if (kGroup == 2 && jb + 1 < mine.last) {
          panel_gemm<2, KC>(n, states, H, panels + jb * H * W, W, H * W, out, start);
        } else {
          panel_gemm<G, KC>(n, states, H, panels + jb * H * G * W, G * W, W, out, start);
        }
      }
      if (tid == 0) count_step_rows(n);  // the rows the GEMM above and the gates below run
      // ...then the gates row by row, so the input projections and the outputs stream
      // through memory in order (block by block they would be a scattered walk).
      for (int64_t r = 0; r < n; ++r) {
        const int64_t row = off + r;
        const T* state = h_in + r * H;
        // The next row the gates read: this step's next, or the next step's first. (Not
        // a whole step ahead: the recurrent weights streaming through L2 in between would
        // evict them again where they outgrow it.)
        if (r + 1 < n) {
          prefetch_gate_inputs(p.xg + (row + 1) * GH, H, mine.j0, mine.width, G);
        } else if (k + 1 < order.steps && order.rows[k + 1] > 0) {
          prefetch_gate_inputs(p.xg + order.offsets[k + 1] * GH, H, mine.j0, mine.width, G);
        }
        if (keeps) {
          std::memcpy(p.h_prev + row * H + mine.j0, state + mine.j0, mine.width * sizeof(T));
          if (Cell::kHasCellState) {
            std::memcpy(p.c_prev + row * H + mine.j0, p.c + r * H + mine.j0,
                        mine.width * sizeof(T));
          }
        }
        const StepForward<T> step{p.xg + row * GH, hg, p.output + row * H,
                                  Cell::kHasCellState ? p.c + r * H : nullptr,
                                  keeps ? p.saved + row * S * H : discarded, H};
        // A cell that reads h_{t-1} (GRU) finds it where it writes h_t.
        if (Cell::kReadsPreviousHidden) {
          std::memcpy(step.h + mine.j0, state + mine.j0, mine.width * sizeof(T));
        }
        for (int64_t jb = mine.first; jb < mine.last; ++jb) {
          const int64_t j = jb * W, count = std::min(W, H - j);
          const int64_t first = mine.first + (jb - mine.first) / kGroup * kGroup;  // its tile's
          const int64_t tiled = std::min(kGroup, mine.last - first);
          const T* result = tiles + ((first - mine.first) * B + r * tiled + jb - first) * G * W;
          for (int g = 0; g < G; ++g) {
            store_lanes(hg + g * H + j, Vec<T>::loadu(result + g * W), count);
          }
        }
        cell_units<false, Cell>(step, 0, mine.j0, mine.j0 + mine.width);
      }
      prev = k;
      step_done.wait(tid, team);
    }
  }
  gather_last_states(p.order, p.batch, p.H, p.h0, p.output, p.h_n);
}

template <typename Cell, typename T>
void backward_sequence(const SequenceBackward<T>& p) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  constexpr int64_t W = Vec<T>::size();
  const int64_t H = p.H, GH = G * H;
  const BlockSplit split(H, W, /*group=*/2);  // dh tiles take two blocks where they can
  const int64_t blocks = split.blocks;
  const StepOrder& order = p.order;
  const int team_size = split.team_for(p.threads);
  constexpr int64_t KC = panel_chunk<2, T>();
  const int64_t chunks = (GH + KC - 1) / KC;
  // Per thread: the step's dhg packed by chunk [chunk][B][KC], and a GEMM result [B][2][W].
  const int64_t per_thread = chunks * p.batch * KC + p.batch * 2 * W;
  const CallBuffers<T> buffers({blocks * GH * W, team_size * per_thread});
  T *const panels = buffers[0], *const scratch = buffers[1];
  SpinBarrier gates_done(team_size);

#pragma omp parallel num_threads(team_size) if (team_size > 1)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    const Blocks mine(split, tid, team);
    T* packed = scratch + static_cast<size_t>(tid) * per_thread;
    T* tile = packed + chunks * p.batch * KC;
    for (int64_t jb = mine.first; jb < mine.last; ++jb) {
      pack_backward_block(p.w_hh, H, GH, jb, panels + jb * GH * W);
    }
    for (int64_t k = order.steps - 1; k >= 0; --k) {
      const int64_t n = order.rows[k], off = order.offsets[k];
      if (n == 0) continue;
      // The gates' gradients of this step, on this thread's units, row by row.
      for (int64_t r = 0; r < n; ++r) {
        const int64_t row = off + r;
        constexpr bool kCellState = Cell::kHasCellState;
        const StepBackward<T> step{p.dh + r * H,
                                   kCellState ? p.dc + r * H : nullptr,
                                   p.saved + row * S * H,
                                   kCellState ? p.c_prev + row * H : nullptr,
                                   p.h_prev + row * H,
                                   p.dxg + row * GH,
                                   p.dhg + row * GH,
                                   H};
        for (int64_t jb = mine.first; jb < mine.last; ++jb) {
          const int64_t j = jb * W, count = std::min(W, H - j);
          T* dh = step.dh + j;
          store_lanes(dh, load_lanes(dh, count) + load_lanes(p.grad_output + row * H + j, count),
                      count);
        }
        cell_units<true, Cell>(step, 0, mine.j0, mine.j0 + mine.width);
      }
      gates_done.wait(tid, team);
      // dh_{t-1} = dhg @ w_hh on this thread's columns, two blocks per tile where it can;
      // GRU adds the direct part z * dh that its gates left in dh.
      if (tid == 0) count_step_rows(n);  // the rows the gates above and the GEMM below run
      pack_rows_by_chunk(n, p.dhg + off * GH, GH, GH, KC, packed);
      const PanelInput<T> dhg{packed, KC, n * KC};
      for (int64_t jb = mine.first; jb < mine.last;) {
        const int64_t j = jb * W;
        const int C = jb + 1 < mine.last ? 2 : 1;
        const int64_t counts[2] = {std::min(W, H - j), C == 2 ? std::min(W, H - j - W) : 0};
        if (Cell::kDirectHiddenGradient) {
          copy_vectors(n, C, tile, p.dh + j, H, W, counts, /*to_wide=*/false);
        }
        const T* panel = panels + jb * GH * W;
        const PanelStart<T> start{nullptr, Cell::kDirectHiddenGradient};
        if (C == 2) {
          panel_gemm<2, KC>(n, dhg, GH, panel, W, GH * W, tile, start);
        } else {
          panel_gemm<1, KC>(n, dhg, GH, panel, W, GH * W, tile, start);
        }
        copy_vectors(n, C, tile, p.dh + j, H, W, counts, /*to_wide=*/true);
        jb += C;
      }
    }
  }
}

}  // namespace

void run_sequence(const SequenceForward<float>& p) {
  visit_cell(p.kind, [&](auto cell) { forward_sequence<decltype(cell)>(p); });
}
void run_sequence(const SequenceForward<double>& p) {
  visit_cell(p.kind, [&](auto cell) { forward_sequence<decltype(cell)>(p); });
}
void run_sequence(const SequenceBackward<float>& p) {
  visit_cell(p.kind, [&](auto cell) { backward_sequence<decltype(cell)>(p); });
}
void run_sequence(const SequenceBackward<double>& p) {
  visit_cell(p.kind, [&](auto cell) { backward_sequence<decltype(cell)>(p); });
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnk
