// The persistent kernels on the GPU: one cooperative launch runs a layer direction's
// whole sequence (grid/grid_program.h), every block resident at once, the grid barrier
// of grid/grid_barrier.h between steps.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../grid/grid_barrier.h"
#include "../grid/grid_program.h"
#include "cuda_types.h"
#include "grid_launch.h"

namespace rnnk {
namespace {

// Where grid_program.h's code runs on the device: loads and stores are plain ones (the
// barrier's fences order them), and the cells see one unit a thread.
struct DeviceContext {
  int block, blocks, thread, threads;
  char* shared;
  template <typename T>
  using Lanes = ScalarLanes<T>;
  template <typename T>
  __device__ T load(const T* p) const {
    return *p;
  }
  template <typename T>
  __device__ void store(T* p, T v) const {
    *p = v;
  }
};

template <typename Program>
__device__ void run_block(const Program& program, unsigned* counter) {
  extern __shared__ __align__(16) char shared[];
  DeviceContext ctx{static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x),
                    static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), shared};
  const GridBarrier barrier{counter, gridDim.x};
  unsigned round = 0;
  visit_phases(program, [&](int phase, int64_t i, Sync sync) {
    if (phase < 0) {
      program.setup(ctx);
    } else {
      program.phase(phase, i, ctx);
    }
    __syncthreads();
    if (sync == Sync::Grid) {
      ++round;
      if (threadIdx.x == 0) barrier.arrive_and_wait(round);
      __syncthreads();
    }
  });
}

template <typename Cell, typename T>
__global__ void grid_forward_kernel(GridForward<T> p) {
  run_block(GridForwardProgram<Cell, T, DeviceContext>{p}, p.barrier);
}

template <typename Cell, typename T>
__global__ void grid_backward_kernel(GridBackward<T> p) {
  run_block(GridBackwardProgram<Cell, T, DeviceContext>{p}, p.barrier);
}

template <typename Kernel>
cudaError_t prepare(Kernel kernel, int64_t shared_bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(shared_bytes));
}

// Whether `blocks` blocks of the kernel fit on the device at once.
template <typename Kernel>
bool co_resident(Kernel kernel, const GridShape& shape, int64_t shared_bytes, int sms) {
  if (prepare(kernel, shared_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, shape.threads(),
                                                    shared_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return int64_t(per_sm) * sms >= shape.blocks;
}

template <typename Kernel, typename Params>
cudaError_t launch(Kernel kernel, const Params& params, int64_t shared_bytes,
                   cudaStream_t stream) {
  cudaError_t status = prepare(kernel, shared_bytes);
  if (status != cudaSuccess) return status;
  void* args[] = {const_cast<Params*>(&params)};
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel),
                                     dim3(params.shape.blocks), dim3(params.shape.threads()),
                                     args, static_cast<size_t>(shared_bytes), stream);
}

}  // namespace

template <typename T>
bool grid_fits(CellKind kind, const GridShape& shape, int64_t H, bool backward, int sms) {
  return visit_cell(kind, [&](auto cell) {
    using Cell = decltype(cell);
    return backward
               ? co_resident(grid_backward_kernel<Cell, T>, shape,
                             GridBackwardProgram<Cell, T, DeviceContext>::shared_bytes(shape, H),
                             sms)
               : co_resident(grid_forward_kernel<Cell, T>, shape,
                             GridForwardProgram<Cell, T, DeviceContext>::shared_bytes(shape, H),
                             sms);
  });
}

template <typename T>
cudaError_t launch_grid_forward(CellKind kind, const GridForward<T>& p, cudaStream_t stream) {
  return visit_cell(kind, [&](auto cell) {
    using Cell = decltype(cell);
    using Program = GridForwardProgram<Cell, T, DeviceContext>;
    return launch(grid_forward_kernel<Cell, T>, p, Program::shared_bytes(p.shape, p.H), stream);
  });
}

template <typename T>
cudaError_t launch_grid_backward(CellKind kind, const GridBackward<T>& p, cudaStream_t stream) {
  return visit_cell(kind, [&](auto cell) {
    using Cell = decltype(cell);
    using Program = GridBackwardProgram<Cell, T, DeviceContext>;
    return launch(grid_backward_kernel<Cell, T>, p, Program::shared_bytes(p.shape, p.H), stream);
  });
}

#define RNNK_INSTANTIATE(T)                                                                  \
  template bool grid_fits<T>(CellKind, const GridShape&, int64_t, bool, int);               \
  template cudaError_t launch_grid_forward<T>(CellKind, const GridForward<T>&, cudaStream_t); \
  template cudaError_t launch_grid_backward<T>(CellKind, const GridBackward<T>&, cudaStream_t);
RNNK_INSTANTIATE(float)
RNNK_INSTANTIATE(double)
RNNK_INSTANTIATE(__half)
RNNK_INSTANTIATE(__nv_bfloat16)
#undef RNNK_INSTANTIATE

}  // namespace rnnk
