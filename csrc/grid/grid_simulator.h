// The CPU simulator of the persistent GPU kernels (grid_program.h), for the tests: with
// it switched on, CPU layers in float32/64 run the grid programs, every block and thread
// of a small grid phase by phase, blocks in a seeded random order within each window
// between grid barriers. A shadow of global memory records which block read and wrote
// each element in the current window: a block reading what another block writes in the
// same window, or writing what another reads or writes there, is a race, counted.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "grid_program.h"

namespace rnnk {

// Set between calls; a bidirectional layer simulates its two directions on two threads at
// once, so the findings are atomic.
struct GridSimulation {
  int blocks = 0;         // the most blocks a grid may have; 0: the simulator is off
  uint64_t seed = 0;      // of the blocks' order
  int state_buffers = 2;  // forward's h buffers: 1 is the deliberately racy variant
  bool tiles = false;     // the tensor-core variant, its tiles computed one slot at a time
  std::atomic<int64_t> launches{0};  // grid programs run so far
  std::atomic<int64_t> races{0};     // found so far
  std::mutex first_race_lock;
  std::string first_race;

  void start(int max_blocks, uint64_t order_seed, int buffers, bool tensor_cores);
};

// The simulator's settings and findings.
GridSimulation& grid_simulation();

// The limits of the simulated device.
GridLimits simulated_grid_limits();

template <typename T>
void simulate_grid_forward(CellKind kind, const GridForward<T>& p);
template <typename T>
void simulate_grid_backward(CellKind kind, const GridBackward<T>& p);

}  // namespace rnnk
