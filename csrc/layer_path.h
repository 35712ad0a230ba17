// Which implementation runs a layer direction's call: the one place that decides, for
// forward and backward, on every device.
#pragma once
#include <ATen/core/Tensor.h>

#include "cells/cells.h"
#include "grid/grid_layer.h"

namespace rnnk {

enum class LayerPath {
  Bf16Cpu,        // bf16 on a CPU with bf16 dot products (bf16_layer.h)
  SingleStepCpu,  // one padded step on the CPU, float32/64, no projection (single_step.h)
  Grid,           // the persistent GPU kernels, or their CPU simulator (grid/grid_layer.h)
  PersistentCpu,  // the CPU's persistent kernels, float32/64, no projection (persistent.h)
  StepLoop,       // the per-step loop on any device (layer.cpp, step_device.h)
};

struct LayerCall {
  CellKind kind;
  const at::Tensor& x;
  bool packed;
  int64_t steps, batch, hidden;
  bool projects, backward;
};

struct LayerPlan {
  LayerPath path;
  GridPlan grid;  // the grid's shape where path is Grid
};

LayerPlan plan_layer(const LayerCall& call);

// The path's name, as tests and diagnostics see it (_C.layer_path).
const char* layer_path_name(LayerPath path);

}  // namespace rnnk
