// The grid barrier's host test: host threads stand in for blocks.
#pragma once
#include <cstdint>

namespace rnnk {

// `blocks` threads each publish a value a round and pass `rounds` barriers, reading every
// other thread's value of that round after each: returns how many reads saw another
// (0 where the barrier holds every thread until all arrived and orders their writes).
int64_t check_grid_barrier(int blocks, int rounds);

}  // namespace rnnk
