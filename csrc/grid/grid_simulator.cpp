#include "grid_simulator.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <sstream>
#include <unordered_map>
#include <vector>

namespace rnnk {
namespace {

// Who touched an element of global memory in the current window.
struct Access {
  int64_t read_window = -1, write_window = -1;
  int reader = -1;  // a block, or kMany
  int writer = -1;
};
constexpr int kMany = -2;

class Shadow {
 public:
  void next_window() { ++window_; }

  void read(const void* address, int block) {
    Access& a = accesses_[address];
    if (a.write_window == window_ && a.writer != block) {
      race("reads", address, block, a.writer);
    }
    if (a.read_window != window_) {
      a.read_window = window_;
      a.reader = block;
    } else if (a.reader != block) {
      a.reader = kMany;
    }
  }

  void write(const void* address, int block) {
    Access& a = accesses_[address];
    if (a.read_window == window_ && a.reader != block) race("writes", address, block, a.reader);
    if (a.write_window == window_ && a.writer != block) race("writes", address, block, a.writer);
    a.write_window = window_;
    a.writer = block;
  }

 private:
  void race(const char* what, const void* address, int block, int other) {
    GridSimulation& sim = grid_simulation();
    if (sim.races++ > 0) return;
    const std::lock_guard<std::mutex> lock(sim.first_race_lock);
    std::ostringstream text;
    text << "window " << window_ << ": block " << block << " " << what << " " << address
         << ", which block " << (other == kMany ? std::string("(several)") : std::to_string(other))
         << " touches in the same window";
    sim.first_race = text.str();
  }
  std::unordered_map<const void*, Access> accesses_;
  int64_t window_ = 0;
};

// The shadow and block that the cells' loads and stores (TrackedLanes) report to.
thread_local Shadow* t_shadow = nullptr;
thread_local int t_block = 0;

template <typename T>
struct TrackedLanes {
  using Elem = T;
  using Value = typename OpMath<T>::type;
  static Value load(const T* p) {
    t_shadow->read(p, t_block);
    return OpMath<T>::load(*p);
  }
  static void store(T* p, Value v) {
    t_shadow->write(p, t_block);
    *p = OpMath<T>::store(v);
  }
};

// Where grid_program.h's code runs in the simulator: every global access is recorded.
struct SimulatedContext {
  int block, blocks, thread, threads;
  char* shared;
  template <typename T>
  using Lanes = TrackedLanes<T>;
  template <typename T>
  T load(const T* p) const {
    t_shadow->read(p, block);
    return *p;
  }
  template <typename T>
  void store(T* p, T v) const {
    t_shadow->write(p, block);
    *p = v;
  }
  // A tensor-core tile (TileWork), this lane's slots only, in the accumulators' type:
  // what a lane holds after the warp's mma steps, up to the order of the sums.
  template <typename T, typename Acc>
  void mma_tile(int lane, const T* a, int64_t lda, int64_t a_rows, const T* b, int64_t ldb,
                int64_t b_rows, int64_t k_begin, int64_t k_end, Acc (&c)[kTileSlots]) const {
    for (int slot = 0; slot < kTileSlots; ++slot) {
      const int row = tile_row(lane, slot), col = tile_col(lane, slot);
      if (row >= a_rows || col >= b_rows) continue;
      for (int64_t k = k_begin; k < k_end; ++k) {
        c[slot] += Acc(load(a + row * lda + k)) * Acc(load(b + col * ldb + k));
      }
    }
  }
};

struct Work {
  int phase;
  int64_t iteration;
};

template <typename Program>
void simulate(const Program& program) {
  const GridShape& shape = program.p.shape;
  const int64_t shared_bytes = Program::layout(shape, program.p.H).total;
  GridSimulation& sim = grid_simulation();
  ++sim.launches;
  // The program's work cut into windows at its grid barriers.
  std::vector<std::vector<Work>> windows(1);
  visit_phases(program, [&](int phase, int64_t i, Sync sync) {
    windows.back().push_back({phase, i});
    if (sync == Sync::Grid) windows.emplace_back();
  });
  Shadow shadow;
  t_shadow = &shadow;
  std::vector<std::vector<char>> shared(shape.blocks, std::vector<char>(shared_bytes));
  std::vector<int> order(shape.blocks);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 random(sim.seed);
  for (const std::vector<Work>& window : windows) {
    shadow.next_window();
    std::shuffle(order.begin(), order.end(), random);
    for (int block : order) {
      t_block = block;
      for (const Work& work : window) {
        for (int thread = 0; thread < shape.threads(); ++thread) {
          SimulatedContext ctx{block, shape.blocks, thread, shape.threads(),
                               shared[block].data()};
          if (work.phase < 0) {
            program.setup(ctx);
          } else {
            program.phase(work.phase, work.iteration, ctx);
          }
        }
      }
    }
  }
  t_shadow = nullptr;
}

}  // namespace

void GridSimulation::start(int max_blocks, uint64_t order_seed, int buffers, bool tensor_cores) {
  blocks = max_blocks;
  seed = order_seed;
  state_buffers = buffers;
  tiles = tensor_cores;
  launches = 0;
  races = 0;
  const std::lock_guard<std::mutex> lock(first_race_lock);
  first_race.clear();
}

GridSimulation& grid_simulation() {
  static GridSimulation simulation;
  return simulation;
}

GridLimits simulated_grid_limits() {
  // Few threads a block, so that small layers still take several parts a dot product.
  return {grid_simulation().blocks, /*threads=*/64, /*rows=*/64, /*shared_bytes=*/int64_t(1) << 30};
}

template <typename T>
void simulate_grid_forward(CellKind kind, const GridForward<T>& p) {
  visit_cell(kind, [&](auto cell) {
    using Cell = decltype(cell);
    if (grid_simulation().state_buffers == 1) {
      simulate(GridForwardProgram<Cell, T, SimulatedContext, false, 1>{p});
    } else if (p.shape.tiles) {
      simulate(GridForwardProgram<Cell, T, SimulatedContext, true>{p});
    } else {
      simulate(GridForwardProgram<Cell, T, SimulatedContext, false>{p});
    }
  });
}

template <typename T>
void simulate_grid_backward(CellKind kind, const GridBackward<T>& p) {
  visit_cell(kind, [&](auto cell) {
    using Cell = decltype(cell);
    if (p.shape.tiles) {
      simulate(GridBackwardProgram<Cell, T, SimulatedContext, true>{p});
    } else {
      simulate(GridBackwardProgram<Cell, T, SimulatedContext, false>{p});
    }
  });
}

template void simulate_grid_forward<float>(CellKind, const GridForward<float>&);
template void simulate_grid_forward<double>(CellKind, const GridForward<double>&);
template void simulate_grid_backward<float>(CellKind, const GridBackward<float>&);
template void simulate_grid_backward<double>(CellKind, const GridBackward<double>&);

}  // namespace rnnk
