// Whole-layer CPU kernels (cpu/sequence.h) behind ATen tensors: layer.cpp hands a layer's
// recurrence to them where they apply, and keeps the whole-sequence GEMMs itself.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

#include "cpu/sequence.h"

namespace rnnk {

// Whether the persistent kernels may run where they apply (on by default); off, every
// layer runs the per-step loop (layer.cpp): a switch to compare the two paths. Returns
// the setting it replaces.
bool set_persistent_kernels(bool enabled);
bool persistent_kernels_enabled();

// Float32/64 on the CPU, no projection, more than one step: what the persistent kernels
// cover. (A single step, as the *Cell modules take, would repack the weights per call.)
bool persistent_cpu_applies(const at::Tensor& x, bool projects, int64_t steps);

// Threads worth using for a recurrence of steps of `rows` x `gate_width` x `features`
// multiply-adds, of `available`.
int sequence_threads(int64_t rows, int64_t gate_width, int64_t features, int available);

// Tensors are contiguous, as the fields of SequenceForward / SequenceBackward describe.
// In inference saved, h_prev and c_prev are empty (SequenceForward's null).
void persistent_forward_cpu(CellKind kind, const StepOrder& order, const at::Tensor& xg,
                            const at::Tensor& w_hh, const std::optional<at::Tensor>& b_hh,
                            const at::Tensor& h0, const at::Tensor& h_n, const at::Tensor& c,
                            const at::Tensor& output, const at::Tensor& saved,
                            const at::Tensor& h_prev, const at::Tensor& c_prev);
void persistent_backward_cpu(CellKind kind, const StepOrder& order, const at::Tensor& w_hh,
                             const at::Tensor& grad_output, const at::Tensor& saved,
                             const at::Tensor& h_prev, const at::Tensor& c_prev,
                             const at::Tensor& dh, const at::Tensor& dc, const at::Tensor& dxg,
                             const at::Tensor& dhg);

}  // namespace rnnk
