// The persistent grid kernels (grid_program.h) behind ATen tensors: on a CUDA device, or
// in the CPU simulator where the tests switch it on (grid_simulator.h). layer.cpp asks
// plan_grid first and runs a layer direction here where it gives a shape.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

#include "../cpu/sequence.h"
#include "grid_program.h"

namespace rnnk {

struct GridPlan {
  GridShape shape;  // blocks == 0: the grid kernels do not take this layer
  bool simulated = false;
  bool runs() const { return shape.blocks > 0; }
};

// Where the weights fit on chip, the batch is small and every block can be resident at
// once; never with a projection, nor with the persistent kernels switched off.
GridPlan plan_grid(CellKind kind, const at::Tensor& x, bool projects, int64_t B, int64_t H,
                   bool backward);

// The steps as forward visits them (order), and whether the batch is padded (the kernels
// then compute offsets themselves, so that a padded call reads no host arrays).
struct GridOrder {
  StepOrder order;
  bool padded, reverse;
  int64_t batch;
};

// The arguments as for persistent_forward_cpu / persistent_backward_cpu (persistent.h).
void grid_forward(CellKind kind, const GridPlan& plan, const GridOrder& order,
                  const at::Tensor& xg, const at::Tensor& w_hh,
                  const std::optional<at::Tensor>& b_hh, const at::Tensor& h0,
                  const at::Tensor& h_n, const at::Tensor& c, const at::Tensor& output,
                  const at::Tensor& saved, const at::Tensor& h_prev, const at::Tensor& c_prev);
void grid_backward(CellKind kind, const GridPlan& plan, const GridOrder& order,
                   const at::Tensor& w_hh, const at::Tensor& grad_output,
                   const at::Tensor& saved, const at::Tensor& h_prev, const at::Tensor& c_prev,
                   const at::Tensor& dh, const at::Tensor& dc, const at::Tensor& dxg,
                   const at::Tensor& dhg);

#ifdef RNNK_WITH_CUDA
// cuda/grid_glue.cpp. T is the ATen scalar type (float, double, Half, BFloat16).
GridShape cuda_grid_shape(CellKind kind, const at::Tensor& x, int64_t B, int64_t H,
                          bool backward);
template <typename T>
void cuda_grid_forward(CellKind kind, const GridForward<T>& p);
template <typename T>
void cuda_grid_backward(CellKind kind, const GridBackward<T>& p);
#endif

}  // namespace rnnk
