// The persistent CUDA kernels behind grid_layer.cpp: the device's limits, the shape a
// layer takes (if all its blocks can be resident at once) and the launches on the
// current stream.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "../grid/grid_layer.h"
#include "aten_types.h"
#include "grid_launch.h"

namespace rnnk {
namespace {

// The batch the grid kernels take ("small": each block holds the step's whole h rows);
// threads a block, which leaves registers for the dot products' partial sums.
constexpr int kMostRows = 32;
constexpr int kMostThreads = 512;

template <typename T>
GridForward<typename CudaType<T>::type> retyped(const GridForward<T>& p) {
  return {p.order,         p.H,           cuda(p.xg),      cuda(p.w_hh),   cuda(p.b_hh),
          cuda(p.h0),      cuda(p.h_n),   cuda(p.c),       cuda(p.output), cuda(p.saved),
          cuda(p.h_prev),  cuda(p.c_prev), cuda(p.hg),     cuda(p.state),  p.barrier,
          p.shape};
}

template <typename T>
GridBackward<typename CudaType<T>::type> retyped(const GridBackward<T>& p) {
  return {p.order,           p.H,          cuda(p.w_hh), cuda(p.grad_output), cuda(p.saved),
          cuda(p.h_prev),    cuda(p.c_prev), cuda(p.dh), cuda(p.dc),          cuda(p.dxg),
          cuda(p.dhg),       p.barrier,    p.shape};
}

}  // namespace

GridShape cuda_grid_shape(CellKind kind, const at::Tensor& x, int64_t B, int64_t H,
                          bool backward) {
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaDeviceProp* props = at::cuda::getCurrentDeviceProperties();
  if (!props->cooperativeLaunch) return {};
  const GridLimits limits{props->multiProcessorCount, kMostThreads, kMostRows,
                          static_cast<int64_t>(props->sharedMemPerBlockOptin)};
  GridShape shape;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "rnnkernels_grid_shape", [&] {
    using C = typename CudaType<scalar_t>::type;
    const int acc = x.scalar_type() == at::kDouble ? 8 : 4;
    // Tensor cores for the 16-bit types, and for float32 where torch lets its matmuls use
    // TF32 (torch.backends.cuda.matmul.allow_tf32), as our cuBLAS GEMMs do.
    const bool tiles = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16 ||
                       (x.scalar_type() == at::kFloat && at::globalContext().allowTF32CuBLAS());
    shape = choose_grid_shape(B, H, cell_gates(kind), backward, tiles, sizeof(C), acc, limits);
    if (shape.blocks > 0 && !grid_fits<C>(kind, shape, H, backward, limits.blocks)) shape = {};
  });
  return shape;
}

template <typename T>
void cuda_grid_forward(CellKind kind, const GridForward<T>& p) {
  C10_CUDA_CHECK(launch_grid_forward(kind, retyped(p), at::cuda::getCurrentCUDAStream()));
}

template <typename T>
void cuda_grid_backward(CellKind kind, const GridBackward<T>& p) {
  C10_CUDA_CHECK(launch_grid_backward(kind, retyped(p), at::cuda::getCurrentCUDAStream()));
}

template void cuda_grid_forward<float>(CellKind, const GridForward<float>&);
template void cuda_grid_forward<double>(CellKind, const GridForward<double>&);
template void cuda_grid_forward<at::Half>(CellKind, const GridForward<at::Half>&);
template void cuda_grid_forward<at::BFloat16>(CellKind, const GridForward<at::BFloat16>&);
template void cuda_grid_backward<float>(CellKind, const GridBackward<float>&);
template void cuda_grid_backward<double>(CellKind, const GridBackward<double>&);
template void cuda_grid_backward<at::Half>(CellKind, const GridBackward<at::Half>&);
template void cuda_grid_backward<at::BFloat16>(CellKind, const GridBackward<at::BFloat16>&);

}  // namespace rnnk
