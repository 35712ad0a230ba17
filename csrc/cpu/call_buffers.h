// Memory for the buffers of one persistent-kernel call (packed weights, GEMM tiles), kept
// by the calling thread for its next call: fresh buffers of megabytes come from mmap and
// would fault in every page on first touch, on every call.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

namespace rnnk {
namespace {  // internal linkage: each isa_*.cpp has its own (one of them runs)

// Past this a call's buffers are its own, freed when it returns.
constexpr size_t kMostKeptCallBytes = size_t{1} << 30;

struct KeptMemory {
  std::unique_ptr<std::byte[]> block;
  size_t bytes = 0;
  bool held = false;  // by a live CallBuffers of this thread
};

inline KeptMemory& kept_memory() {
  thread_local KeptMemory kept;
  return kept;
}

// Uninitialized buffers of the given element counts, 64-byte aligned, valid while the
// object lives: in the thread's kept memory, or (if that is held or would be too large)
// in memory of their own.
template <typename T>
class CallBuffers {
 public:
  explicit CallBuffers(std::initializer_list<int64_t> counts) {
    size_t bytes = kAlign;
    for (const int64_t n : counts) bytes += aligned(n);
    KeptMemory& kept = kept_memory();
    std::byte* base = nullptr;
    if (kept.held || bytes > kMostKeptCallBytes) {
      own_.reset(new std::byte[bytes]);
      base = own_.get();
    } else {
      if (kept.bytes < bytes) {
        kept.block.reset();  // free the smaller block before taking the larger one
        kept.block.reset(new std::byte[bytes]);
        kept.bytes = bytes;
      }
      kept.held = holds_kept_ = true;
      base = kept.block.get();
    }
    uintptr_t address = (reinterpret_cast<uintptr_t>(base) + kAlign - 1) / kAlign * kAlign;
    for (const int64_t n : counts) {
      parts_.push_back(reinterpret_cast<T*>(address));
      address += aligned(n);
    }
  }
  ~CallBuffers() {
    if (holds_kept_) kept_memory().held = false;
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
