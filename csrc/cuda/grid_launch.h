// The boundary between the framework glue and the persistent CUDA kernels (see launch.h):
// T is float, double, __half or __nv_bfloat16.
#pragma once
#include <cuda_runtime_api.h>

#include "../grid/grid_program.h"

namespace rnnk {

// Whether shape.blocks blocks of the kernel fit on the device's `sms` multiprocessors at
// once (each block's shared memory and threads), which the grid barrier needs.
template <typename T>
bool grid_fits(CellKind kind, const GridShape& shape, int64_t H, bool backward, int sms);

// One cooperative launch on `stream`; p.barrier must be zero.
template <typename T>
cudaError_t launch_grid_forward(CellKind kind, const GridForward<T>& p, cudaStream_t stream);
template <typename T>
cudaError_t launch_grid_backward(CellKind kind, const GridBackward<T>& p, cudaStream_t stream);

}  // namespace rnnk
