// CUDA pointwise kernels: one thread per (row, hidden unit), running the same
// cell math as the CPU kernels (cells/*.h).
#include "cuda_types.h"
#include "launch.h"

namespace rnnk {
namespace {

constexpr int kThreads = 256;

template <typename Cell, typename T>
__global__ void forward_kernel(StepForward<T> step, int64_t total) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t b = idx / step.H, j = idx % step.H;
  keep_inputs<ScalarLanes<T>>(step, b, j);
  Cell::template forward<ScalarLanes<T>>(step, b, j);
}

template <typename Cell, typename T>
__global__ void backward_kernel(StepBackward<T> step, int64_t total) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx < total) Cell::template backward<ScalarLanes<T>>(step, idx / step.H, idx % step.H);
}

template <typename T>
__global__ void sum_kernel(T* dst, const T* a, const T* b, int64_t count) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx < count) dst[idx] = OpMath<T>::store(OpMath<T>::load(a[idx]) + OpMath<T>::load(b[idx]));
}

int64_t blocks_for(int64_t total) { return (total + kThreads - 1) / kThreads; }

}  // namespace

template <typename T>
cudaError_t launch_pointwise_forward(CellKind kind, const StepForward<T>& step, int64_t rows,
                                     cudaStream_t stream) {
  const int64_t total = rows * step.H;
  if (total == 0) return cudaSuccess;
  visit_cell(kind, [&](auto cell) {
    forward_kernel<decltype(cell), T><<<blocks_for(total), kThreads, 0, stream>>>(step, total);
  });
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_pointwise_backward(CellKind kind, const StepBackward<T>& step, int64_t rows,
                                      cudaStream_t stream) {
  const int64_t total = rows * step.H;
  if (total == 0) return cudaSuccess;
  visit_cell(kind, [&](auto cell) {
    backward_kernel<decltype(cell), T><<<blocks_for(total), kThreads, 0, stream>>>(step, total);
  });
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_sum(T* dst, const T* a, const T* b, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  sum_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(dst, a, b, count);
  return cudaGetLastError();
}

#define RNNK_INSTANTIATE(T)                                                                   \
  template cudaError_t launch_pointwise_forward<T>(CellKind, const StepForward<T>&, int64_t,  \
                                                   cudaStream_t);                             \
  template cudaError_t launch_pointwise_backward<T>(CellKind, const StepBackward<T>&, int64_t, \
                                                    cudaStream_t);                            \
  template cudaError_t launch_sum<T>(T*, const T*, const T*, int64_t, cudaStream_t);
RNNK_INSTANTIATE(float)
RNNK_INSTANTIATE(double)
RNNK_INSTANTIATE(__half)
RNNK_INSTANTIATE(__nv_bfloat16)
#undef RNNK_INSTANTIATE

}  // namespace rnnk
