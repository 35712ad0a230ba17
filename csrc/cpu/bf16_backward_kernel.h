// Part of the body of isa_amx.cpp and isa_avx512_bf16.cpp, after bf16_forward_kernel.h:
// bf16_sequence.h's layer backward (its per-step part) for one instruction set.
//
// Threads own fixed blocks of 16 hidden units, as in forward, and pack their units'
// columns of w_hh once per call. Per step, last to first: each thread runs the cell's
// backward on its units in float32 (dh and dc stay float32 for the whole call), rounds
// its gates' gradients to bf16 into dxg / dhg and adds their float32 values to the bias
// gradients of its columns; one barrier; then each thread's GEMM reads the step's whole
// bf16 dhg rows and writes dh_{t-1} on its units. Nothing another thread writes is read
// before the barrier that follows its writing.
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
  constexpr bool kIsLstm = std::is_same_v<Cell, LstmCell>, kIsGru = std::is_same_v<Cell, GruCell>;
  const int64_t H = p.H, GH = G * H, B = p.batch;
  const int64_t depth = padded_depth(GH), Bp = padded_rows(B);
  const BlockSplit split(H, W, 1);
  const StepOrder& order = p.order;
  const int team_size = split.team_for(p.threads);
  // A step's GEMM reads the dhg rows in place unless a tile would run past their ends;
  // then each thread copies them into its own padded block first.
  const bool pads_rows = GH % kTileDepth != 0;
  // Per thread: its GEMM results [Bp][its tiles * 16], one row of dxg and (GRU) one of dhg
  // [G*H], one row of h_{t-1} and one of scratch [H] in float, the padded dhg block
  // [Bp][depth] in bf16; whole cache lines each, for the tile loads and stores.
  const auto lines = [](int64_t floats) { return (floats + 15) / 16 * 16; };
  const int64_t sums_size = Bp * split.most_in_all(team_size) * W;
  const int64_t per_thread = sums_size + lines(GH) * (kIsGru ? 2 : 1) + 2 * lines(H) +
                             lines(slots_for_bf16(Bp * depth));
  const CallBuffers<float> buffers(
      {slots_for_bf16(split.blocks * tile_values(GH)), team_size * per_thread});
  bf16_bits* const panels = reinterpret_cast<bf16_bits*>(buffers[0]);
  float* const scratch = buffers[1];
  SpinBarrier gates_done(team_size);

#pragma omp parallel num_threads(team_size) if (team_size > 1)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    const Blocks mine(split, tid, team);
    const int64_t tiles_mine = mine.last - mine.first, ldo = tiles_mine * W;
    for (int64_t jb = mine.first; jb < mine.last; ++jb) {
      pack_vnni_tile(p.w_hh_t + jb * W * GH, GH, std::min(W, H - jb * W), GH,
                     panels + jb * tile_values(GH));
    }
    const TileSession tiles_on;
    float* sums = scratch + tid * per_thread;
    float* dxg = sums + sums_size;
    float* dhg = kIsGru ? dxg + lines(GH) : dxg;
    float* h_prev = dhg + lines(GH);
    float* grad_row = h_prev + lines(H);
    bf16_bits* dhg_padded = reinterpret_cast<bf16_bits*>(grad_row + lines(H));
    for (int g = 0; g < G; ++g) {
      if (p.db_ih != nullptr) std::fill_n(p.db_ih + g * H + mine.j0, mine.width, 0.f);
      if (p.db_hh != nullptr) std::fill_n(p.db_hh + g * H + mine.j0, mine.width, 0.f);
    }
    for (int64_t k = order.steps - 1; k >= 0; --k) {
      const int64_t n = order.rows[k], off = order.offsets[k];
      if (n == 0) continue;
      for (int64_t r = 0; r < n; ++r) {
        const int64_t row = off + r;
        float* dh = p.dh + r * H;
        add_bf16(p.grad_output + row * H + mine.j0, dh + mine.j0, mine.width, grad_row);
        if (kIsGru) load_bf16(p.h_prev + row * H + mine.j0, h_prev + mine.j0, mine.width);
        const StepBackward<float> step{dh, kIsLstm ? p.dc + r * H : nullptr,
                                       p.saved + row * S * H,
                                       kIsLstm ? p.c_prev + row * H : nullptr, h_prev,
                                       dxg, dhg, H};
        cell_units<true, Cell>(step, 0, mine.j0, mine.j0 + mine.width);
        for (int g = 0; g < G; ++g) {
          const int64_t col = g * H + mine.j0;
          store_bf16(dxg + col, p.dxg + row * GH + col, mine.width);
          if (kIsGru) store_bf16(dhg + col, p.dhg + row * GH + col, mine.width);
          for (int64_t i = 0; p.db_ih != nullptr && i < mine.width; ++i) {
            p.db_ih[col + i] += dxg[col + i];
          }
          for (int64_t i = 0; p.db_hh != nullptr && i < mine.width; ++i) {
            p.db_hh[col + i] += dhg[col + i];
          }
        }
      }
      gates_done.wait(tid, team);
      // dh_{t-1} = dhg @ w_hh on this thread's units; GRU adds the direct part z * dh that
      // its gates left in dh.
      if (tid == 0) count_step_rows(n);  // the rows the gates above and the GEMM below run
      if (tiles_mine == 0) continue;
      const bf16_bits* a = p.dhg + off * GH;
      const bool pads = pads_rows || n % kTileRows != 0;
      if (pads) pad_rows(a, GH, n, GH, dhg_padded);
      bf16_gemm(n, pads ? dhg_padded : a, pads ? depth : GH, GH,
                panels + mine.first * tile_values(GH), tiles_mine, nullptr, sums, ldo);
      for (int64_t r = 0; r < n; ++r) {
        float* dh = p.dh + r * H + mine.j0;
        const float* result = sums + r * ldo;
        for (int64_t i = 0; i < mine.width; ++i) dh[i] = (kIsGru ? dh[i] : 0.f) + result[i];
      }
    }
  }
}

}  // namespace

void run_bf16(const Bf16Backward& p) {
  visit_cell(p.kind, [&](auto cell) { bf16_backward<decltype(cell)>(p); });
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnk
