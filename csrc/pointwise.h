// One time step's fused pointwise pass, per device. Tensors are row-contiguous
// slices holding the n active rows; see StepForward/StepBackward for each role.
#pragma once
#include <ATen/core/Tensor.h>

#include "cells/cells.h"

namespace rnnk {

// The forward and backward passes over `rows` rows of raw arrays (float, double).
template <typename T>
void pointwise_forward_rows(CellKind kind, const StepForward<T>& step, int64_t rows);
template <typename T>
void pointwise_backward_rows(CellKind kind, const StepBackward<T>& step, int64_t rows);

// h: [n,H] in/out; c: [n,H] in/out or undefined; saved: [n,S*H] out.
void pointwise_forward_cpu(CellKind kind, const at::Tensor& xg, const at::Tensor& hg,
                           const at::Tensor& h, const at::Tensor& c, const at::Tensor& saved);
// dh: [n,H] in/out; dc: [n,H] in/out or undefined; dxg, dhg: [n,G*H] out.
void pointwise_backward_cpu(CellKind kind, const at::Tensor& dh, const at::Tensor& dc,
                            const at::Tensor& saved, const at::Tensor& c_prev,
                            const at::Tensor& h_prev, const at::Tensor& dxg,
                            const at::Tensor& dhg);

#ifdef RNNK_WITH_CUDA
void pointwise_forward_cuda(CellKind kind, const at::Tensor& xg, const at::Tensor& hg,
                            const at::Tensor& h, const at::Tensor& c, const at::Tensor& saved);
void pointwise_backward_cuda(CellKind kind, const at::Tensor& dh, const at::Tensor& dc,
                             const at::Tensor& saved, const at::Tensor& c_prev,
                             const at::Tensor& h_prev, const at::Tensor& dxg,
                             const at::Tensor& dhg);
#endif

}  // namespace rnnk
