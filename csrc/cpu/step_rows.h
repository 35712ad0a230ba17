// Rows the persistent kernels' steps ran, summed over steps and calls: each step's recurrent
// GEMM and gates run over that step's active rows only (a packed batch's shrinking ones),
// and tests read this count to see it. Thread 0 of a team adds each step's rows once; one
// relaxed add a step, read between calls.
#pragma once
#include <atomic>
#include <cstdint>

namespace rnnk {

inline std::atomic<int64_t> g_step_rows{0};

inline void count_step_rows(int64_t rows) {
  g_step_rows.fetch_add(rows, std::memory_order_relaxed);
}

}  // namespace rnnk
