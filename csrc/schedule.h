// Which rows of a layer's input each step reads: the one layout both sequence drivers
// (layer.cpp, rowwise_layer.cpp) walk.
//
// Either x is [T, B, I] and batch_sizes is empty, or x is a packed [N, I] (PackedSequence
// data, sorted by length) and batch_sizes[t] rows are active at step t. The padded case is
// the packed one with every batch size equal to B, so there is a single code path and
// padded steps of short sequences never run.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

namespace rnnk {

// Rows active at each step and where they start in the packed [N, ...] layout. A padded
// input keeps no per-step arrays: every step has all B rows.
struct Schedule {
  std::vector<int64_t> packed_rows, packed_offset;
  int64_t steps = 0, batch = 0, total = 0;
  int64_t rows(int64_t t) const { return packed_rows.empty() ? batch : packed_rows[t]; }
  int64_t offset(int64_t t) const { return packed_rows.empty() ? t * batch : packed_offset[t]; }
};

// The schedule of x (checked against batch_sizes).
Schedule make_schedule(const at::Tensor& x, at::IntArrayRef batch_sizes);

// Order in which forward visits the steps; backward walks it the other way.
inline int64_t step_at(const Schedule& s, int64_t k, bool reverse) {
  return reverse ? s.steps - 1 - k : k;
}

// x's leading shape with the feature size replaced, empty; x's dtype unless another
// is given.
at::Tensor empty_like_rows(const at::Tensor& x, int64_t width,
                           std::optional<at::ScalarType> dtype = std::nullopt);

}  // namespace rnnk
