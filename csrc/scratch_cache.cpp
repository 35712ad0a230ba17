#include "scratch_cache.h"

#include <array>
#include <memory>
#include <mutex>
#include <unordered_set>

namespace rnnk {
namespace {

struct ThreadCache {
  std::mutex lock;  // the owner's calls against empty_cache from other threads
  std::array<at::Tensor, kKeptTensors> tensors;
  std::unique_ptr<std::byte[]> block;
  size_t bytes = 0;
  bool held = false;  // by a live call on the owner thread
};

// Never destroyed: threads may outlive static destruction at exit.
std::mutex& registry_lock() {
  static auto* lock = new std::mutex;
  return *lock;
}
std::unordered_set<ThreadCache*>& registry() {
  static auto* caches = new std::unordered_set<ThreadCache*>;
  return *caches;
}

struct Registered {
  ThreadCache cache;
  Registered() {
    const std::lock_guard<std::mutex> guard(registry_lock());
    registry().insert(&cache);
  }
  ~Registered() {
    const std::lock_guard<std::mutex> guard(registry_lock());
    registry().erase(&cache);
  }
};

ThreadCache& this_thread() {
  thread_local Registered registered;
  return registered.cache;
}

}  // namespace

std::byte* take_kept_block(size_t bytes) {
  ThreadCache& cache = this_thread();
  const std::lock_guard<std::mutex> guard(cache.lock);
  if (cache.held) return nullptr;
  if (cache.bytes < bytes) {
    cache.block.reset();  // free the smaller block before taking the larger one
    cache.block.reset(new std::byte[bytes]);
    cache.bytes = bytes;
  }
  cache.held = true;
  return cache.block.get();
}

void release_kept_block() {
  ThreadCache& cache = this_thread();
  const std::lock_guard<std::mutex> guard(cache.lock);
  cache.held = false;
}

namespace detail {

at::Tensor& lock_kept_tensor(int use) {
  ThreadCache& cache = this_thread();
  cache.lock.lock();
  return cache.tensors.at(use);
}

void unlock_kept_tensor() { this_thread().lock.unlock(); }

}  // namespace detail

int64_t empty_cache() {
  int64_t freed = 0;
  const std::lock_guard<std::mutex> guard(registry_lock());
  for (ThreadCache* cache : registry()) {
    const std::lock_guard<std::mutex> cache_guard(cache->lock);
    if (!cache->held && cache->block) {
      freed += static_cast<int64_t>(cache->bytes);
      cache->block.reset();
      cache->bytes = 0;
    }
    // A scratch tensor in use by a call is a view that keeps its storage alive.
    for (at::Tensor& tensor : cache->tensors) {
      if (tensor.defined()) freed += static_cast<int64_t>(tensor.nbytes());
      tensor.reset();
    }
  }
  return freed;
}

}  // namespace rnnk
