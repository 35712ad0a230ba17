// Scratch tensors that never leave an op call (the input projection, the gate gradients),
// kept per thread between calls on the CPU (scratch_cache.h): fresh allocations of tens of
// MB come from mmap and would fault in every page on first touch, a large share of a
// training step.
#pragma once
#include <ATen/core/Tensor.h>

namespace rnnk {

// What each scratch tensor is for: a call may hold one of each at once.
enum class Scratch { InputProjection, InputGateGrads, HiddenGateGrads, RawHiddenGateGrads, kCount };

// An uninitialized contiguous tensor of `sizes`, valid until this thread asks for the same
// `use` again: it must not escape the op. Elsewhere than the CPU, a plain at::empty.
at::Tensor scratch(Scratch use, at::IntArrayRef sizes, const at::TensorOptions& options);

}  // namespace rnnk
