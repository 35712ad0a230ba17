// Part of the body of isa_amx.cpp and isa_avx512_bf16.cpp, after bf16_forward_kernel.h:
// bf16_sequence.h's layer backward (its per-step part) for one instruction set.
//
// Threads own fixed blocks of 16 hidden units, as in forward, and blocks of h's P units
// (the same blocks without a projection), and pack w_hh's columns of their h units once
// per call. Per step, last to first: each thread runs the cell's backward on its units in
// float32 (dh and dc stay float32 for the whole call), rounds its gates' gradients to
// bf16 into dxg / dhg and adds their float32 values to the bias gradients of its columns;
// one barrier; then each thread's GEMM reads the step's whole bf16 dhg rows and writes
// dh_{t-1} on its h units, and adds the next step's output gradient there. A projected
// LSTM first turns dh_t into the cell's gradient, dh_t w_hr on the thread's units: that
// GEMM reads dh_t's bf16 rows whole (dh_seq, which w_hr's gradient reads too), each
// thread having written its h units of them, so a second barrier precedes it. Nothing
// another thread writes is read before the barrier that follows its writing.
namespace rnnk {
namespace CPU_CAPABILITY {
namespace {

// dst[i] += float(src[i]), i < count.
inline void add_bf16(const bf16_bits* src, float* dst, int64_t count, float* scratch) {
  load_bf16(src, scratch, count);
  for (int64_t i = 0; i < count; ++i) dst[i] += scratch[i];
}

template <typename Cell>
void bf16_backward(const Bf16Backward& p) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  constexpr int64_t W = kTileCols;
  constexpr bool kHasC = Cell::kHasCellState, kReadsH = Cell::kReadsPreviousHidden;
  // Where the recurrent projection is kept apart (GRU's), its gradient differs from xg's.
  constexpr bool kApart = !Cell::kSumsProjections;
  const int64_t H = p.H, P = p.P, GH = G * H, B = p.batch;
  const bool projects = p.w_hr_t != nullptr;
  const int64_t depth = padded_depth(GH), Bp = padded_rows(B);
  const BlockSplit split(H, W, 1), out_split(P, W, 1);
  const StepOrder& order = p.order;
  const int team_size = split.team_for(p.threads);
  // A step's GEMMs read the dhg (and dh_seq) rows in place unless a tile would run past
  // their ends; then each thread copies them into its own padded block first.
  const bool pads_rows = GH % kTileDepth != 0;
  const bool pads_dh = P % kTileDepth != 0;
  // Per thread: its dh GEMM's results [Bp][its h units' tiles * 16], one row of dxg and
  // (GRU) one of dhg [G*H], one row of h_{t-1} and one of scratch [H >= P] in float,
  // the padded dhg block [Bp][depth] in bf16; projecting, the cell's gradient
  // [Bp][ld_cell] (laid out as the cell reads dh: a partial last tile spills into the
  // row's padding) and the padded dh block [Bp][padded_depth(P)]; whole cache lines each.
  const auto lines = [](int64_t floats) { return (floats + 15) / 16 * 16; };
  const int64_t sums_size = Bp * out_split.most_in_all(team_size) * W;
  const int64_t ld_cell = lines(H + W);
  const int64_t per_thread =
      sums_size + lines(GH) * (kApart ? 2 : 1) + 2 * lines(H) +
      lines(slots_for_bf16(Bp * depth)) +
      (projects ? Bp * ld_cell + lines(slots_for_bf16(Bp * padded_depth(P))) : 0);
  const CallBuffers<float> buffers(
      {slots_for_bf16(out_split.blocks * tile_values(GH)), team_size * per_thread,
       projects ? slots_for_bf16(split.blocks * tile_values(P)) : 0});
  bf16_bits* const panels = reinterpret_cast<bf16_bits*>(buffers[0]);
  float* const scratch = buffers[1];
  bf16_bits* const cell_panels = reinterpret_cast<bf16_bits*>(buffers[2]);
  SpinBarrier gates_done(team_size);

#pragma omp parallel num_threads(team_size) if (team_size > 1)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    const Blocks mine(split, tid, team), outs(out_split, tid, team);
    const int64_t tiles_out = outs.last - outs.first, ldo = tiles_out * W;
    for (int64_t jb = outs.first; jb < outs.last; ++jb) {
      pack_vnni_tile(p.w_hh_t + jb * W * GH, GH, std::min(W, P - jb * W), GH,
                     panels + jb * tile_values(GH));
    }
    for (int64_t jb = mine.first; projects && jb < mine.last; ++jb) {
      pack_vnni_tile(p.w_hr_t + jb * W * P, P, std::min(W, H - jb * W), P,
                     cell_panels + jb * tile_values(P));
    }
    const TileSession tiles_on;
    float* sums = scratch + tid * per_thread;
    float* dxg = sums + sums_size;
    float* dhg = kApart ? dxg + lines(GH) : dxg;
    float* h_prev = dhg + lines(GH);
    float* grad_row = h_prev + lines(H);
    bf16_bits* dhg_padded = reinterpret_cast<bf16_bits*>(grad_row + lines(H));
    float* d_cell = reinterpret_cast<float*>(dhg_padded) + lines(slots_for_bf16(Bp * depth));
    bf16_bits* dh_padded = reinterpret_cast<bf16_bits*>(d_cell + Bp * ld_cell);
    for (int g = 0; g < G; ++g) {
      if (p.db_ih != nullptr) std::fill_n(p.db_ih + g * H + mine.j0, mine.width, 0.f);
      if (p.db_hh != nullptr) std::fill_n(p.db_hh + g * H + mine.j0, mine.width, 0.f);
    }
    // dh += the output's gradient of visited step k, on this thread's h units (and
    // projecting, dh_seq's rows of them).
    const auto add_output_grad = [&](int64_t k) {
      for (int64_t r = 0; r < order.rows[k]; ++r) {
        const int64_t row = order.offsets[k] + r;
        float* dh = p.dh + r * P + outs.j0;
        add_bf16(p.grad_output + row * P + outs.j0, dh, outs.width, grad_row);
        if (projects) store_bf16(dh, p.dh_seq + row * P + outs.j0, outs.width);
      }
    };
    // The visited step before k that runs rows, or -1.
    const auto next_step = [&](int64_t k) {
      do --k; while (k >= 0 && order.rows[k] == 0);
      return k;
    };
    int64_t k = next_step(order.steps);
    if (k >= 0) add_output_grad(k);
    for (; k >= 0; k = next_step(k)) {
      const int64_t n = order.rows[k], off = order.offsets[k];
      if (projects) {
        gates_done.wait(tid, team);  // dh_seq's rows of this step
        if (mine.last > mine.first) {
          const bf16_bits* a = p.dh_seq + off * P;
          const bool pads = pads_dh || n % kTileRows != 0;
          if (pads) pad_rows(a, P, n, P, dh_padded);
          bf16_gemm(n, pads ? dh_padded : a, pads ? padded_depth(P) : P, P,
                    cell_panels + mine.first * tile_values(P), mine.last - mine.first, nullptr,
                    d_cell + mine.j0, ld_cell);
        }
      }
      for (int64_t r = 0; r < n; ++r) {
        const int64_t row = off + r;
        if (kReadsH) load_bf16(p.h_prev + row * H + mine.j0, h_prev + mine.j0, mine.width);
        const StepBackward<float> step{projects ? d_cell + r * ld_cell : p.dh + r * H,
                                       kHasC ? p.dc + r * H : nullptr,
                                       p.saved + row * S * H,
                                       kHasC ? p.c_prev + row * H : nullptr, h_prev,
                                       dxg, dhg, H};
        cell_units<true, Cell>(step, 0, mine.j0, mine.j0 + mine.width);
        for (int g = 0; g < G; ++g) {
          const int64_t col = g * H + mine.j0;
          store_bf16(dxg + col, p.dxg + row * GH + col, mine.width);
          if (kApart) store_bf16(dhg + col, p.dhg + row * GH + col, mine.width);
          for (int64_t i = 0; p.db_ih != nullptr && i < mine.width; ++i) {
            p.db_ih[col + i] += dxg[col + i];
          }
          for (int64_t i = 0; p.db_hh != nullptr && i < mine.width; ++i) {
            p.db_hh[col + i] += dhg[col + i];
          }
        }
      }
      gates_done.wait(tid, team);
      // dh_{t-1} = dhg @ w_hh on this thread's h units; GRU adds the direct part z * dh
      // that its gates left in dh.
      if (tid == 0) count_step_rows(n);  // the rows the gates above and the GEMM below run
      if (tiles_out > 0) {
        const bf16_bits* a = p.dhg + off * GH;
        const bool pads = pads_rows || n % kTileRows != 0;
        if (pads) pad_rows(a, GH, n, GH, dhg_padded);
        bf16_gemm(n, pads ? dhg_padded : a, pads ? depth : GH, GH,
                  panels + outs.first * tile_values(GH), tiles_out, nullptr, sums, ldo);
        for (int64_t r = 0; r < n; ++r) {
          float* dh = p.dh + r * P + outs.j0;
          const float* result = sums + r * ldo;
          for (int64_t i = 0; i < outs.width; ++i) {
            dh[i] = (Cell::kDirectHiddenGradient ? dh[i] : 0.f) + result[i];
          }
        }
      }
      const int64_t next = next_step(k);
      if (next >= 0) add_output_grad(next);
    }
  }
}

}  // namespace

void run_bf16(const Bf16Backward& p) {
  visit_cell(p.kind, [&](auto cell) { bf16_backward<decltype(cell)>(p); });
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnk
