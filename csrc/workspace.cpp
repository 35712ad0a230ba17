#include "workspace.h"

#include <ATen/ATen.h>

#include "scratch_cache.h"

namespace rnnk {
namespace {

// Past this a buffer is not kept: a thread holds at most this much per use between calls.
constexpr int64_t kMostKeptBytes = int64_t{1} << 30;
static_assert(static_cast<int>(Scratch::kCount) == kKeptTensors);

}  // namespace

at::Tensor scratch(Scratch use, at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (options.device().type() != at::kCPU) return at::empty(sizes, options);
  int64_t numel = 1;
  for (const int64_t size : sizes) numel *= size;
  return with_kept_tensor(static_cast<int>(use), [&](at::Tensor& buffer) {
    const bool fits = buffer.defined() &&
                      buffer.scalar_type() == options.dtype().toScalarType() &&
                      buffer.numel() >= numel;
    if (!fits) {
      at::Tensor fresh = at::empty({numel}, options);
      if (fresh.nbytes() > static_cast<size_t>(kMostKeptBytes)) return fresh.view(sizes);
      buffer = fresh;
    }
    return buffer.narrow(0, 0, numel).view(sizes);
  });
}

}  // namespace rnnk
