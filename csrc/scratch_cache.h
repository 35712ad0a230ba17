// The one cache of memory kept between calls: each thread keeps its scratch tensors
// (workspace.h) and one raw block for a call's buffers (cpu/call_buffers.h), since fresh
// allocations of megabytes come from mmap and fault in every page on first touch. Every
// thread's cache is registered, so that empty_cache (rnnkernels.empty_cache()) can release
// what no call is using, from any thread.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>

namespace rnnk {

// The calling thread's kept block, grown to at least `bytes`, held until
// release_kept_block; null where the thread holds it already (a nested call).
std::byte* take_kept_block(size_t bytes);
void release_kept_block();

// The calling thread's kept tensor number `use` (of kKeptTensors): `fill(tensor)` may
// replace it; runs under the thread's cache lock.
inline constexpr int kKeptTensors = 4;
template <typename Fill>
at::Tensor with_kept_tensor(int use, const Fill& fill);

// Frees every thread's kept memory that no call holds; returns the bytes freed.
int64_t empty_cache();

namespace detail {
at::Tensor& lock_kept_tensor(int use);
void unlock_kept_tensor();
}  // namespace detail

template <typename Fill>
at::Tensor with_kept_tensor(int use, const Fill& fill) {
  at::Tensor& kept = detail::lock_kept_tensor(use);
  struct Unlock {
    ~Unlock() { detail::unlock_kept_tensor(); }
  } unlock;
  return fill(kept);
}

}  // namespace rnnk
