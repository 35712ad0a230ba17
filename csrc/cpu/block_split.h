// How the persistent kernels split a layer's hidden units among a team of threads, and
// the states a sequence's steps start from and end with.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "sequence.h"

namespace rnnk {
namespace {  // internal linkage: each isa_*.cpp has its own

// The hidden blocks (W of the H units each) split among a team in runs of `group`, the
// blocks one GEMM tile takes: every tile then holds the same blocks whatever the team's
// size, and the results do not depend on the number of threads (a tile of one block sums
// in a different order than a tile of two, at B=1 for example).
struct BlockSplit {
  int64_t H, W, blocks, group, runs;
  BlockSplit(int64_t H_, int64_t W_, int64_t group_)
      : H(H_), W(W_), blocks((H_ + W_ - 1) / W_), group(group_),
        runs((blocks + group_ - 1) / group_) {}
  // Threads to ask OpenMP for: as many as given, but no more than there are runs.
  int team_for(int threads) const {
    return static_cast<int>(std::clamp<int64_t>(threads, 1, std::max<int64_t>(runs, 1)));
  }
  // The most blocks a thread of a team of `team` holds.
  int64_t most(int team) const { return (runs + team - 1) / team * group; }
  // At least team * most(team) for any team up to `team` (OpenMP may give fewer threads
  // than asked: nested in another parallel region, a thread limit).
  int64_t most_in_all(int team) const { return (runs + team) * group; }
};

// Hidden blocks [first, last) of thread `tid` in a team, and the units they hold,
// [j0, j0 + width) (the last block may be partial).
struct Blocks {
  int64_t first, last, j0, width;
  Blocks(const BlockSplit& split, int tid, int team)
      : first(std::min(split.runs * tid / team * split.group, split.blocks)),
        last(std::min(split.runs * (tid + 1) / team * split.group, split.blocks)),
        j0(std::min(split.H, first * split.W)),
        width(std::min(split.H, last * split.W) - j0) {}
};

// The input state of visited step k, given the last step that ran (`prev`, -1 if none):
// h0, the previous step's output rows, or, where rows join mid-sequence (a reversed
// packed batch grows), `joined` assembled from both by one thread of the team. Called by
// every thread of the team at every step it runs (the assembly is a worksharing region).
template <typename S>
const S* step_input(const StepOrder& order, int64_t k, int64_t prev, int64_t H, const S* h0,
                    const S* output, S* joined) {
  const int64_t n = order.rows[k];
  if (prev < 0) return h0;
  if (n <= order.rows[prev]) return output + order.offsets[prev] * H;
#pragma omp single
  {
    const int64_t kept = order.rows[prev];
    std::memcpy(joined, output + order.offsets[prev] * H, kept * H * sizeof(S));
    std::memcpy(joined + kept * H, h0 + kept * H, (n - kept) * H * sizeof(S));
  }
  return joined;
}

// h_n[b] = the output of row b's last step (rows keep h0 if they never ran).
template <typename T>
void gather_last_states(const StepOrder& order, int64_t batch, int64_t H, const T* h0,
                        const T* output, T* h_n) {
  std::memcpy(h_n, h0, batch * H * sizeof(T));
  int64_t covered = 0;
  for (int64_t k = order.steps - 1; k >= 0 && covered < batch; --k) {
    const int64_t n = order.rows[k];
    if (n <= covered) continue;
    std::memcpy(h_n + covered * H, output + (order.offsets[k] + covered) * H,
                (n - covered) * H * sizeof(T));
    covered = n;
  }
}

}  // namespace
}  // namespace rnnk
