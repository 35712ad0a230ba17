// Transparent huge pages for the large tensors a call allocates and writes at once.
#pragma once
#include <ATen/core/Tensor.h>

namespace rnnk {

// Asks Linux to back the 2 MiB-aligned part of a large CPU tensor's memory with huge pages
// (madvise MADV_HUGEPAGE, what PyTorch's THP_MEM_ALLOC_ENABLE does for every allocation),
// before anything touches it. A layer's outputs, the values it keeps for backward and
// the gates' gradients are fresh allocations (mmap'ed by malloc at these sizes) that the
// call writes whole: in 4 KiB pages that is one page fault per 4 KiB, a large share of a
// training step's time. A hint only: no effect elsewhere, on small tensors or where the
// kernel refuses.
void advise_huge_pages(const at::Tensor& t);

}  // namespace rnnk
