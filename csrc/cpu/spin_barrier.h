// The per-step barrier of the persistent kernels (included by sequence_kernel.h, and like
// it compiled once per instruction set). Each thread counts its own arrivals in its own
// cache line and waits until every other thread's count has caught up: the last thread to
// arrive goes on at once, the others after one cache-line transfer, where libgomp's barrier
// costs two transfers and a futex_wake call per step (a large share of a small step).
// A thread still waiting after ~50 us yields its core a few times, then sleeps (a futex on
// the counter it waits for) until that counter moves.
#pragma once
#include <algorithm>
#include <atomic>
#include <climits>
#include <ctime>
#include <memory>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace rnnk {
namespace CPU_CAPABILITY {
namespace {

class SpinBarrier {
 public:
  // For teams of at most `most_threads`.
  explicit SpinBarrier(int most_threads)
      : arrivals_(std::make_unique<Counter[]>(std::max(most_threads, 1))) {}

  // Thread `tid` of a team of `team` calls this; it returns once all have called it as
  // often, and what they wrote before is then visible to it.
  void wait(int tid, int team) {
    if (team <= 1) return;
    std::atomic<unsigned>& mine = arrivals_[tid].count;
    const unsigned count = mine.load(std::memory_order_relaxed) + 1;
    // Sequentially consistent, as a sleeper's sign-up and its last look at this count
    // are: either it sees this arrival and does not sleep, or this sees it and wakes it.
    // (libstdc++ 12's std::atomic::notify_all skips the wake when it reads its own
    // sleeper count as zero; after a mere release store, that read may come first. With
    // it a team hung for good once here, a thread asleep on a counter that had moved.)
    mine.store(count, std::memory_order_seq_cst);
    if (sleepers_.count.load(std::memory_order_seq_cst) > 0) wake_all(mine);
    for (int other = 0; other < team; ++other) {
      std::atomic<unsigned>& theirs = arrivals_[other].count;
      for (int spins = 0; ahead(theirs.load(std::memory_order_acquire), count); ++spins) {
        if (spins < kPauses) {
          pause();
        } else {
          sleep_until_reaches(theirs, count);
        }
      }
    }
  }

 private:
  struct Counter {
    alignas(64) std::atomic<unsigned> count{0};
  };
  // Whether `target` is still ahead of `count` (wrap-around safe).
  static bool ahead(unsigned count, unsigned target) {
    return static_cast<int>(target - count) > 0;
  }

  // With more threads than free cores the late thread may be waiting for this core: a
  // few yields first let it run without the cost of a sleep and a wake (LSTM B=1 H=64 on
  // 4 threads and 2 cores: 4.3 -> 2.9 s for 100 calls of 2000 steps).
  void sleep_until_reaches(std::atomic<unsigned>& theirs, unsigned count) {
    for (int i = 0; i < kYields; ++i) {
      if (!ahead(theirs.load(std::memory_order_acquire), count)) return;
      std::this_thread::yield();
    }
    sleepers_.count.fetch_add(1, std::memory_order_seq_cst);
    for (unsigned seen; ahead(seen = theirs.load(std::memory_order_seq_cst), count);) {
      sleep_while(theirs, seen);
    }
    sleepers_.count.fetch_sub(1, std::memory_order_release);
  }

#if defined(__linux__)
  // Sleeps while `counter` holds `seen`, at most 1 ms: were a wake ever lost, the
  // thread would look again instead of hanging the team.
  static void sleep_while(std::atomic<unsigned>& counter, unsigned seen) {
    const timespec most{0, 1000 * 1000};
    syscall(SYS_futex, reinterpret_cast<unsigned*>(&counter), FUTEX_WAIT_PRIVATE, seen, &most,
            nullptr, 0);
  }
  static void wake_all(std::atomic<unsigned>& counter) {
    syscall(SYS_futex, reinterpret_cast<unsigned*>(&counter), FUTEX_WAKE_PRIVATE, INT_MAX,
            nullptr, nullptr, 0);
  }
#else
  static void sleep_while(std::atomic<unsigned>&, unsigned) { std::this_thread::yield(); }
  static void wake_all(std::atomic<unsigned>&) {}
#endif

  // ~50 us of pauses, far longer than a small step, before a waiting thread yields and
  // sleeps, leaving its core to others (a team of more threads than free cores).
  static constexpr int kPauses = 1 << 10;
  static constexpr int kYields = 4;
  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  std::unique_ptr<Counter[]> arrivals_;
  Counter sleepers_;  // threads asleep in sleep_until_reaches
};

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace rnnk
