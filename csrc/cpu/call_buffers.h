// Memory for the buffers of one kernel call (packed weights, GEMM tiles, a single step's
// projections), in the calling thread's kept block (scratch_cache.h) for its next call.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "../scratch_cache.h"

namespace rnnk {
namespace {  // internal linkage: each isa_*.cpp has its own (one of them runs)

// Past this a call's buffers are its own, freed when it returns.
constexpr size_t kMostKeptCallBytes = size_t{1} << 30;

// Uninitialized buffers of the given element counts, 64-byte aligned, valid while the
// object lives: in the thread's kept memory, or (if that is held or would be too large)
// in memory of their own.
template <typename T>
class CallBuffers {
 public:
  explicit CallBuffers(std::initializer_list<int64_t> counts) {
    size_t bytes = kAlign;
    for (const int64_t n : counts) bytes += aligned(n);
    std::byte* base = bytes <= kMostKeptCallBytes ? take_kept_block(bytes) : nullptr;
    holds_kept_ = base != nullptr;
    if (!holds_kept_) {
      own_.reset(new std::byte[bytes]);
      base = own_.get();
    }
    uintptr_t address = (reinterpret_cast<uintptr_t>(base) + kAlign - 1) / kAlign * kAlign;
    for (const int64_t n : counts) {
      parts_.push_back(reinterpret_cast<T*>(address));
      address += aligned(n);
    }
  }
  ~CallBuffers() {
    if (holds_kept_) release_kept_block();
  }
  CallBuffers(const CallBuffers&) = delete;
  CallBuffers& operator=(const CallBuffers&) = delete;

  T* operator[](size_t i) const { return parts_[i]; }

 private:
  static constexpr size_t kAlign = 64;
  static size_t aligned(int64_t count) {
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(count, 0)) * sizeof(T);
    return (bytes + kAlign - 1) / kAlign * kAlign;
  }

  std::unique_ptr<std::byte[]> own_;
  std::vector<T*> parts_;
  bool holds_kept_ = false;
};

}  // namespace
}  // namespace rnnk
