#include "grid_barrier_check.h"

#include <atomic>
#include <thread>
#include <vector>

#include "grid_barrier.h"

namespace rnnk {

int64_t check_grid_barrier(int blocks, int rounds) {
  unsigned counter = 0;
  // Round r's values in slots[r % 2]: a thread writes round r + 1's while others may still
  // read round r's, never round r + 2's (it passed barrier r + 1 only after they arrived).
  // Relaxed: only the barrier's fences order them.
  std::vector<std::atomic<int64_t>> slots(2 * static_cast<size_t>(blocks));
  std::atomic<int64_t> wrong{0};
  std::vector<std::thread> threads;
  for (int block = 0; block < blocks; ++block) {
    threads.emplace_back([&, block] {
      const GridBarrier barrier{&counter, static_cast<unsigned>(blocks)};
      for (int round = 1; round <= rounds; ++round) {
        const int64_t base = int64_t(round % 2) * blocks, value = int64_t(round) * blocks;
        slots[base + block].store(value + block, std::memory_order_relaxed);
        barrier.arrive_and_wait(static_cast<unsigned>(round));
        for (int other = 0; other < blocks; ++other) {
          if (slots[base + other].load(std::memory_order_relaxed) != value + other) ++wrong;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return wrong.load();
}

}  // namespace rnnk
