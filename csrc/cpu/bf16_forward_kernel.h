// Part of the body of isa_amx.cpp and isa_avx512_bf16.cpp, after rows_kernel.h and
// bf16_gemm.h: bf16_sequence.h's layer forward for one instruction set.
//
// The input projection of all steps is one bf16 GEMM split by rows among the threads. The
// recurrence: threads own fixed blocks of 16 hidden units and pack their gates' rows of
// W_hh once per call, gate by gate; per step each thread's GEMMs (one a gate) read the
// previous step's output rows (h in bf16, as the output keeps it) and write float32 gate
// sums for its units where a [G*H] row keeps them, so the cell math reads them in place,
// in float32, and the thread rounds its units of h_t to bf16 into the output row; one
// barrier per step. A projected LSTM rounds r = o * tanh(c) instead, and after a second
// barrier each thread's GEMM over its blocks of w_hr's rows writes its units of h_t. For
// backward each thread also keeps its units' gate values, h_{t-1} and c_{t-1} (and r) of
// every step.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "bf16_sequence.h"
#include "block_split.h"
#include "call_buffers.h"
#include "spin_barrier.h"
#include "step_rows.h"

namespace rnnk {
namespace CPU_CAPABILITY {
namespace {

// bf16 values in float-sized buffer slots.
constexpr int64_t slots_for_bf16(int64_t count) { return (count + 1) / 2; }

// xg[r * ld + col] = x[r] . w_ih[col] + bias[col] for r < total, col < G*H (ld: G*H rounded
// up to whole tiles; rows up to padded_rows(total) are written too).
void input_projection(const Bf16Forward& p, int G, const float* bias, bf16_bits* x_padded,
                      bf16_bits* panels, float* xg, int64_t ld, int team) {
  const int64_t GH = G * p.H, tiles = ld / kTileCols;
  const bool pads = x_padded != nullptr;
  const bf16_bits* a = pads ? x_padded : p.x;
  const int64_t lda = pads ? padded_depth(p.I) : p.I;
  const int64_t row_blocks = padded_rows(p.total) / kTileRows;
#pragma omp parallel num_threads(team) if (team > 1)
  {
    const int tid = omp_get_thread_num(), threads = omp_get_num_threads();
    for (int64_t c = tid; c < tiles; c += threads) {
      pack_vnni_tile(p.w_ih + c * kTileCols * p.I, p.I, std::min(kTileCols, GH - c * kTileCols),
                     p.I, panels + c * tile_values(p.I));
    }
    if (pads) {
      // Row blocks of the padded copy, each thread its own share of them.
      const int64_t first = row_blocks * tid / threads, last = row_blocks * (tid + 1) / threads;
      const int64_t r0 = first * kTileRows, r1 = std::min(p.total, last * kTileRows);
      if (last > first) {
        pad_rows(p.x + r0 * p.I, p.I, std::max<int64_t>(r1 - r0, 0), p.I,
                 x_padded + r0 * lda);
      }
    }
#pragma omp barrier
    // Pairs of row blocks (what one AMX block takes) split evenly.
    const int64_t pairs = (row_blocks + 1) / 2;
    const int64_t first = pairs * tid / threads * 2;
    const int64_t last = std::min(row_blocks, pairs * (tid + 1) / threads * 2);
    if (last > first) {
      const TileSession tiles_on;
      const int64_t rows = std::min(p.total, last * kTileRows) - first * kTileRows;
      bf16_gemm(rows, a + first * kTileRows * lda, lda, p.I, panels, tiles, bias,
                xg + first * kTileRows * ld, ld);
    }
  }
}

template <typename Cell>
void bf16_forward(const Bf16Forward& p) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  constexpr int64_t W = kTileCols;
  constexpr bool kHasC = Cell::kHasCellState, kReadsH = Cell::kReadsPreviousHidden;
  // h has P units: the projection's rows, or the cell's H (P = H without a projection).
  const int64_t H = p.H, P = p.P, GH = G * H, B = p.batch;
  const bool projects = p.w_hr != nullptr;
  const int64_t depth = padded_depth(P), Bp = padded_rows(B);
  // The threads split the cell's units, and the projection's output units apart from them.
  const BlockSplit split(H, W, 1), out_split(P, W, 1);
  const StepOrder& order = p.order;
  const int team_size = split.team_for(p.threads);
  const int64_t x_tiles = (GH + W - 1) / W, ld = x_tiles * W;
  // A step's GEMM reads h rows as they lie in the output unless a tile would run past
  // their ends (a step of a packed batch may have any number of rows); then each thread
  // copies them into its own padded block first. The input projection likewise reads x
  // itself or a padded copy, and the projection the rows of r.
  const bool pads_h = P % kTileDepth != 0 || B % kTileRows != 0;
  const bool pads_r = H % kTileDepth != 0 || B % kTileRows != 0;
  const bool pads_x = p.I % kTileDepth != 0 || p.total % kTileRows != 0;
  bool grows = false;
  for (int64_t k = 1; k < order.steps; ++k) grows = grows || order.rows[k] > order.rows[k - 1];
  // Per thread: its GEMM results [Bp][ld_sums], rows laid out as the cell reads hg, [G*H]
  // (a gate's partial last tile spills 16 - H % 16 columns into the next gate's first
  // units, which that gate's GEMM writes after it, or past G*H into the row's padding);
  // h [H] and, in inference, saved values [S*H] (discarded) in float; the padded h block
  // [Bp][depth] in bf16; projecting, the projection's results [Bp][ld_out] and the padded
  // r block [Bp][padded_depth(H)]; whole cache lines each, for the tile loads and stores.
  const auto lines = [](int64_t floats) { return (floats + 15) / 16 * 16; };
  const int64_t ld_sums = lines(GH + W), ld_out = out_split.most_in_all(team_size) * W;
  const int64_t per_thread =
      Bp * ld_sums + lines(H) + lines(S * H) + lines(slots_for_bf16(Bp * depth)) +
      (projects ? Bp * ld_out + lines(slots_for_bf16(Bp * padded_depth(H))) : 0);
  const int64_t total_rows = padded_rows(p.total);
  const bool keeps = p.saved != nullptr;
  const CallBuffers<float> buffers(
      {total_rows * ld, ld, pads_x ? slots_for_bf16(total_rows * padded_depth(p.I)) : 0,
       slots_for_bf16(x_tiles * tile_values(p.I)),
       slots_for_bf16(split.blocks * G * tile_values(P)), split.blocks * G * W,
       grows ? slots_for_bf16(B * P) : 0, team_size * per_thread,
       projects ? slots_for_bf16(out_split.blocks * tile_values(H)) : 0,
       projects && !keeps ? slots_for_bf16(B * H) : 0});
  float* const xg = buffers[0];
  float* const x_bias = buffers[1];
  bf16_bits* const x_padded = reinterpret_cast<bf16_bits*>(buffers[2]);
  bf16_bits* const x_panels = reinterpret_cast<bf16_bits*>(buffers[3]);
  bf16_bits* const panels = reinterpret_cast<bf16_bits*>(buffers[4]);
  float* const h_bias = buffers[5];
  bf16_bits* const joined = reinterpret_cast<bf16_bits*>(buffers[6]);
  float* const scratch = buffers[7];
  bf16_bits* const out_panels = reinterpret_cast<bf16_bits*>(buffers[8]);
  // r = o * tanh(c) in bf16, what the projection reads: kept for backward, or one step's.
  bf16_bits* const r_step = reinterpret_cast<bf16_bits*>(buffers[9]);

  // Cells that read only xg + hg take both biases in the input projection; GRU keeps b_hh
  // with the recurrent sums (r scales them).
  const bool biased = p.b_ih != nullptr;
  for (int64_t col = 0; col < ld; ++col) {
    float b = 0;
    if (biased && col < GH) b = p.b_ih[col] + (Cell::kSumsProjections ? p.b_hh[col] : 0.f);
    x_bias[col] = b;
  }
  const bool h_biased = biased && !Cell::kSumsProjections;
  input_projection(p, G, biased ? x_bias : nullptr, pads_x ? x_padded : nullptr, x_panels, xg,
                   ld, std::max(p.threads, 1));

  SpinBarrier step_done(team_size);
#pragma omp parallel num_threads(team_size) if (team_size > 1)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    const Blocks mine(split, tid, team), outs(out_split, tid, team);
    const int64_t tiles_mine = mine.last - mine.first;  // per gate
    // Tile (g, jb) of the panels, and its bias lanes: a gate's tiles are consecutive.
    const auto tile = [&](int g, int64_t jb) { return g * split.blocks + jb; };
    for (int64_t jb = mine.first; jb < mine.last; ++jb) {
      const int64_t count = std::min(W, H - jb * W);
      for (int g = 0; g < G; ++g) {
        pack_vnni_tile(p.w_hh + (g * H + jb * W) * P, P, count, P,
                       panels + tile(g, jb) * tile_values(P));
        for (int64_t lane = 0; h_biased && lane < W; ++lane) {
          h_bias[tile(g, jb) * W + lane] = lane < count ? p.b_hh[g * H + jb * W + lane] : 0.f;
        }
      }
    }
    for (int64_t jb = outs.first; projects && jb < outs.last; ++jb) {
      pack_vnni_tile(p.w_hr + jb * W * H, H, std::min(W, P - jb * W), H,
                     out_panels + jb * tile_values(H));
    }
    const TileSession tiles_on;
    float* sums = scratch + tid * per_thread;
    float* h = sums + Bp * ld_sums;
    float* discarded = h + lines(H);
    bf16_bits* h_padded = reinterpret_cast<bf16_bits*>(discarded + lines(S * H));
    float* out_sums = reinterpret_cast<float*>(h_padded) + lines(slots_for_bf16(Bp * depth));
    bf16_bits* r_padded = reinterpret_cast<bf16_bits*>(out_sums + Bp * ld_out);
    int64_t prev = -1;
    for (int64_t k = 0; k < order.steps; ++k) {
      const int64_t n = order.rows[k], off = order.offsets[k];
      if (n == 0) continue;
      const bf16_bits* h_in = step_input(order, k, prev, P, p.h0, p.output, joined);
      if (tiles_mine > 0) {
        const bool pads = pads_h || n % kTileRows != 0;
        if (pads) pad_rows(h_in, P, n, P, h_padded);
        for (int g = 0; g < G; ++g) {  // in gate order: see ld_sums
          bf16_gemm(n, pads ? h_padded : h_in, pads ? depth : P, P,
                    panels + tile(g, mine.first) * tile_values(P), tiles_mine,
                    h_biased ? h_bias + tile(g, mine.first) * W : nullptr,
                    sums + g * H + mine.j0, ld_sums);
        }
      }
      if (tid == 0) count_step_rows(n);
      // Where the cell's h_t goes: the output, or r's rows for the projection.
      bf16_bits* const cell_out = !projects ? p.output + off * H
                                  : keeps   ? p.r_seq + off * H
                                            : r_step;
      for (int64_t r = 0; r < n; ++r) {
        const int64_t row = off + r;
        if (keeps) {
          std::memcpy(p.h_prev + row * P + outs.j0, h_in + r * P + outs.j0,
                      outs.width * sizeof(bf16_bits));
          if (kHasC) {
            std::memcpy(p.c_prev + row * H + mine.j0, p.c + r * H + mine.j0,
                        mine.width * sizeof(float));
          }
        }
        // A cell that reads h_{t-1} where it writes h_t (GRU) needs it in float.
        if (kReadsH) load_bf16(h_in + r * H + mine.j0, h + mine.j0, mine.width);
        const StepForward<float> step{xg + row * ld, sums + r * ld_sums, h,
                                      kHasC ? p.c + r * H : nullptr,
                                      keeps ? p.saved + row * S * H : discarded, H};
        cell_units<false, Cell>(step, 0, mine.j0, mine.j0 + mine.width);
        store_bf16(h + mine.j0, cell_out + r * H + mine.j0, mine.width);
      }
      if (projects) {
        // h_t = r w_hr^T on this thread's output units, once every unit of r is written.
        step_done.wait(tid, team);
        if (outs.last > outs.first) {
          const bool pads = pads_r || n % kTileRows != 0;
          if (pads) pad_rows(cell_out, H, n, H, r_padded);
          bf16_gemm(n, pads ? r_padded : cell_out, pads ? padded_depth(H) : H, H,
                    out_panels + outs.first * tile_values(H), outs.last - outs.first, nullptr,
                    out_sums, ld_out);
          for (int64_t r = 0; r < n; ++r) {
            store_bf16(out_sums + r * ld_out, p.output + (off + r) * P + outs.j0, outs.width);
          }
        }
      }
      prev = k;
      step_done.wait(tid, team);
    }
  }
  gather_last_states(order, B, P, p.h0, p.output, p.h_n);
}

}  // namespace

void run_bf16(const Bf16Forward& p) {
  visit_cell(p.kind, [&](auto cell) { bf16_forward<decltype(cell)>(p); });
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnk
