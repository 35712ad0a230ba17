// The boundary between the framework glue (g++, ATen) and the CUDA kernels
// (nvcc, no torch headers, so they compile in seconds). T is float, double,
// __half or __nv_bfloat16.
#pragma once
#include <cuda_runtime_api.h>

#include "../cells/cells.h"
#include "../rowwise.h"

namespace rnnk {

template <typename T>
cudaError_t launch_pointwise_forward(CellKind kind, const StepForward<T>& step, int64_t rows,
                                     cudaStream_t stream);

template <typename T>
cudaError_t launch_pointwise_backward(CellKind kind, const StepBackward<T>& step, int64_t rows,
                                      cudaStream_t stream);

// dst = a + b over `count` elements.
template <typename T>
cudaError_t launch_sum(T* dst, const T* a, const T* b, int64_t count, cudaStream_t stream);

// The rowwise passes (rowwise.h), float and double: one block per row.
template <typename T>
cudaError_t launch_rowwise_forward(CellKind kind, const RowwiseForward<T>& step, int64_t rows,
                                   cudaStream_t stream);

template <typename T>
cudaError_t launch_rowwise_backward(CellKind kind, const RowwiseBackward<T>& step, int64_t rows,
                                    cudaStream_t stream);

}  // namespace rnnk
