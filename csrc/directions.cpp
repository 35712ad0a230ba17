#include "directions.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <omp.h>

#include <exception>

namespace rnnk {

void run_both_directions(const std::function<void(int)>& run, bool concurrently) {
  std::exception_ptr errors[2];
  const at::ThreadLocalState state;
  // Work inside (GEMMs, the persistent kernels) sees a nested region and stays on its thread.
#pragma omp parallel num_threads(2) if (concurrently)
  {
    const at::ThreadLocalStateGuard guard(state);
    // An exception must not leave an OpenMP region: keep it for the caller.
    for (int direction = omp_get_thread_num(); direction < 2;
         direction += omp_get_num_threads()) {
      try {
        run(direction);
      } catch (...) {
        errors[direction] = std::current_exception();
      }
    }
  }
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

}  // namespace rnnk
