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
#include <type_traits>

#include "block_split.h"
#include "call_buffers.h"
#include "simd_tiles.h"
#include "sequence.h"
#include "spin_barrier.h"
#include "step_rows.h"

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
  constexpr bool kIsLstm = std::is_same_v<Cell, LstmCell>, kIsGru = std::is_same_v<Cell, GruCell>;
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
          if (kIsLstm) {
            std::memcpy(p.c_prev + row * H + mine.j0, p.c + r * H + mine.j0,
                        mine.width * sizeof(T));
          }
        }
        const StepForward<T> step{p.xg + row * GH, hg, p.output + row * H,
                                  kIsLstm ? p.c + r * H : nullptr,
                                  keeps ? p.saved + row * S * H : discarded, H};
        // GRU reads h_{t-1} where it writes h_t.
        if (kIsGru) std::memcpy(step.h + mine.j0, state + mine.j0, mine.width * sizeof(T));
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
  constexpr bool kIsLstm = std::is_same_v<Cell, LstmCell>, kIsGru = std::is_same_v<Cell, GruCell>;
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
        const StepBackward<T> step{p.dh + r * H, kIsLstm ? p.dc + r * H : nullptr,
                                   p.saved + row * S * H, kIsLstm ? p.c_prev + row * H : nullptr,
                                   p.h_prev + row * H, p.dxg + row * GH, p.dhg + row * GH, H};
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
        if (kIsGru) copy_vectors(n, C, tile, p.dh + j, H, W, counts, /*to_wide=*/false);
        const T* panel = panels + jb * GH * W;
        const PanelStart<T> start{nullptr, kIsGru};
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
