// The grid-wide barrier of the persistent GPU kernels, host+device: the same code runs on
// the GPU (one thread per block) and on host threads in the tests. A counter in global
// memory, zero at launch, counts arrivals; the r-th barrier of a launch lets a block go on
// once r * blocks have arrived. Release/acquire: a block's writes before its arrival are
// visible to every block after the barrier (the fence before arriving publishes what the
// whole block wrote, which its block-level sync made visible to the arriving thread).
#pragma once
#include "../cells/common.h"

#ifndef __CUDA_ARCH__
#include <atomic>
#include <thread>
#endif

namespace rnnk {

struct GridBarrier {
  unsigned* count;  // zero at launch
  unsigned blocks;

  // One thread of each block calls this with round = 1, 2, ... for the launch's barriers.
  RNNK_HD void arrive_and_wait(unsigned round) const {
    fence();
    arrive();
    const unsigned target = round * blocks;
    // Wrap-around safe while fewer than 2^31 arrivals are in flight.
    while (static_cast<int>(peek() - target) < 0) pause();
    fence();
  }

 private:
  RNNK_HD void fence() const {
#ifdef __CUDA_ARCH__
    __threadfence();
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
  }
  RNNK_HD void arrive() const {
#ifdef __CUDA_ARCH__
    atomicAdd(count, 1u);
#else
    __atomic_fetch_add(count, 1u, __ATOMIC_RELAXED);
#endif
  }
  RNNK_HD unsigned peek() const {
#ifdef __CUDA_ARCH__
    return *static_cast<volatile const unsigned*>(count);
#else
    return __atomic_load_n(count, __ATOMIC_ACQUIRE);
#endif
  }
  RNNK_HD static void pause() {
#ifdef __CUDA_ARCH__
    __nanosleep(32);
#else
    std::this_thread::yield();  // host threads (the tests) may outnumber the cores
#endif
  }
};

}  // namespace rnnk
