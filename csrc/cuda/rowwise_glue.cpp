// The rowwise passes on CUDA tensors: launches on the current stream (cuda/rowwise.cu).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "../rowwise.h"
#include "launch.h"

namespace rnnk {

template <typename T>
void cuda_rowwise_forward_rows(CellKind kind, const RowwiseForward<T>& step, int64_t rows) {
  C10_CUDA_CHECK(launch_rowwise_forward(kind, step, rows, c10::cuda::getCurrentCUDAStream()));
}

template <typename T>
void cuda_rowwise_backward_rows(CellKind kind, const RowwiseBackward<T>& step, int64_t rows) {
  C10_CUDA_CHECK(launch_rowwise_backward(kind, step, rows, c10::cuda::getCurrentCUDAStream()));
}

template void cuda_rowwise_forward_rows<float>(CellKind, const RowwiseForward<float>&, int64_t);
template void cuda_rowwise_forward_rows<double>(CellKind, const RowwiseForward<double>&, int64_t);
template void cuda_rowwise_backward_rows<float>(CellKind, const RowwiseBackward<float>&, int64_t);
template void cuda_rowwise_backward_rows<double>(CellKind, const RowwiseBackward<double>&,
                                                 int64_t);

}  // namespace rnnk
