#include "schedule.h"

#include <ATen/ATen.h>

#include "cpu/huge_pages.h"
#include "operands.h"

namespace rnnk {

Schedule make_schedule(const at::Tensor& x, at::IntArrayRef batch_sizes) {
  Schedule s;
  if (batch_sizes.empty()) {
    TORCH_CHECK(x.dim() == 3, "rnnkernels: x must be [T, B, I] when batch_sizes is empty, got ",
                x.dim(), "-D");
    s.steps = x.size(0);
    s.batch = x.size(1);
    s.total = x.size(0) * x.size(1);
    return s;
  }
  TORCH_CHECK(x.dim() == 2, "rnnkernels: packed x must be [N, I], got ", x.dim(), "-D");
  s.steps = static_cast<int64_t>(batch_sizes.size());
  s.batch = batch_sizes[0];
  for (int64_t t = 0; t < s.steps; ++t) {
    TORCH_CHECK(batch_sizes[t] >= 0 && (t == 0 || batch_sizes[t] <= batch_sizes[t - 1]),
                "rnnkernels: batch_sizes must be non-negative and non-increasing");
    s.packed_rows.push_back(batch_sizes[t]);
    s.packed_offset.push_back(s.total);
    s.total += batch_sizes[t];
  }
  TORCH_CHECK(s.total == x.size(0), "rnnkernels: batch_sizes sum to ", s.total,
              " but packed x has ", x.size(0), " rows");
  return s;
}

at::Tensor empty_like_rows(const at::Tensor& x, int64_t width,
                           std::optional<at::ScalarType> dtype) {
  at::Tensor rows =
      at::empty(rows_shape(x, width), x.options().dtype(dtype.value_or(x.scalar_type())));
  advise_huge_pages(rows);
  return rows;
}

}  // namespace rnnk
