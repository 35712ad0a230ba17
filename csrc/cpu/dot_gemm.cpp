// dot_gemm.h's kernel for this CPU's instruction set, on as many threads as its work is
// worth.
#include "dot_gemm_call.h"

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>

#include "isa.h"

namespace rnnk {
namespace {

// Multiply-adds that make a second thread worth its start (waking an OpenMP team costs
// about what a core does in this many); below it one thread runs the whole product.
constexpr int64_t kWorkPerThread = 1 << 15;

}  // namespace

template <typename T>
void run_dot_gemm(const DotGemm<T>& p, int64_t cols) {
  using Fn = void (*)(const DotGemm<T>&, int64_t, int64_t);
  static const Fn kernel = for_this_cpu<Fn>(AVX512::dot_gemm, AVX2::dot_gemm, DEFAULT::dot_gemm);
  const int64_t work = p.rows * cols * p.K;
  const int threads = static_cast<int>(
      std::clamp<int64_t>(work / kWorkPerThread, 1, std::max(at::get_num_threads(), 1)));
  if (threads == 1 || omp_in_parallel()) {
    kernel(p, 0, cols);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t tid = omp_get_thread_num(), team = omp_get_num_threads();
    kernel(p, cols * tid / team, cols * (tid + 1) / team);
  }
}

template void run_dot_gemm<float>(const DotGemm<float>&, int64_t);
template void run_dot_gemm<double>(const DotGemm<double>&, int64_t);

}  // namespace rnnk
