// Both directions of a bidirectional layer at once: on the CPU each runs on its own core,
// a whole recurrence with no barrier per step, where one after the other each direction
// would split every step over the cores.
#pragma once
#include <functional>

namespace rnnk {

// Calls run(0) and run(1); concurrently on two OpenMP threads when `concurrently` (each
// with the caller's thread-local state: grad mode, dispatch keys). Both calls run to the
// end; then an error of the forward direction's call, else of the reverse one's, is rethrown.
void run_both_directions(const std::function<void(int)>& run, bool concurrently);

}  // namespace rnnk
