// CUDA rowwise passes (rowwise.h): one block per row of a step, its threads striding over
// the row's units and reducing the layer norms' statistics through shared memory. Each
// unit's math is rowwise_units.h's and cells/*.h's, as in the CPU passes.
#include "../cells/layer_norm.h"
#include "../rowwise.h"
#include "../rowwise_units.h"
#include "cuda_types.h"
#include "launch.h"

namespace rnnk {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// The sum of every thread's v over the block; every thread gets it. shared: kWarps values.
template <typename T>
__device__ T block_sum(T v, T* shared) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? shared[lane] : T(0);
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const T total = shared[0];
  __syncthreads();  // shared is reused by the next sum
  return total;
}

// The mean and rstd of v[0, n).
template <typename T>
__device__ void row_stats(const T* v, int64_t n, T* shared, T* mean, T* rstd) {
  T sum = 0;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) sum += v[k];
  *mean = block_sum(sum, shared) / T(n);
  T squares = 0;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) squares += (v[k] - *mean) * (v[k] - *mean);
  *rstd = layer_norm_rstd(block_sum(squares, shared) / T(n));
}

// The row means of g = grad * weight and of g * v_hat over a row's arrays [0, n).
template <typename T>
__device__ void grad_means(const T* grad, const T* weight, const T* v_hat, int64_t n, T* shared,
                           T* mean_g, T* mean_g_v_hat) {
  using L = ScalarLanes<T>;
  T g_sum = 0, gv_sum = 0;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    g_sum += weighted_grad<L>(grad, weight, k);
    gv_sum += weighted_grad_v_hat<L>(grad, weight, v_hat, k);
  }
  *mean_g = block_sum(g_sum, shared) / T(n);
  *mean_g_v_hat = block_sum(gv_sum, shared) / T(n);
}

// Calls f(j) for this thread's units of [0, n).
template <typename F>
__device__ void each_unit(int64_t n, const F& f) {
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) f(j);
}

template <typename Cell, typename T>
__global__ void rowwise_forward_kernel(RowwiseForward<T> r) {
  using L = ScalarLanes<T>;
  __shared__ T shared[kWarps];
  const StepForward<T>& s = r.step;
  const int64_t b = blockIdx.x, H = s.H, GH = Cell::kGates * H;
  each_unit(H, [&](int64_t j) { keep_inputs<L>(s, b, j); });
  if (r.ln_hh != nullptr) {
    T mean, rstd;
    row_stats(r.hg + b * GH, GH, shared, &mean, &rstd);
    each_unit(GH, [&](int64_t k) { normalise_projection<L>(r, b, k, GH, mean, rstd); });
    if (threadIdx.x == 0) r.rstd[b * 2] = rstd;
    __syncthreads();  // a unit's gates were normalised by other threads
  }
  bool cell_done = false;
  if constexpr (Cell::kHasCellState) {
    if (r.ln_cell_w != nullptr) {
      each_unit(H, [&](int64_t j) { Cell::template update<L>(s, b, j); });
      T mean, rstd;
      row_stats(s.c + b * H, H, shared, &mean, &rstd);
      if (threadIdx.x == 0) r.rstd[b * 2 + 1] = rstd;
      each_unit(H, [&](int64_t j) { normalised_cell_output<Cell, L>(r, b, j, mean, rstd); });
      cell_done = true;
    }
  }
  if (!cell_done) each_unit(H, [&](int64_t j) { Cell::template forward<L>(s, b, j); });
  if (r.zoneout != nullptr) each_unit(H, [&](int64_t j) { zone_out<L>(r, b, j); });
}

template <typename Cell, typename T>
__global__ void rowwise_backward_kernel(RowwiseBackward<T> r) {
  using L = ScalarLanes<T>;
  __shared__ T shared[kWarps];
  StepBackward<T> s = r.step;
  s.grad_h = nullptr;  // split_incoming folds it into dh
  const int64_t b = blockIdx.x, H = s.H, GH = Cell::kGates * H;
  each_unit(H, [&](int64_t j) { split_incoming<L>(r, b * H + j); });
  bool cell_done = false;
  if constexpr (Cell::kHasCellState) {
    if (r.ln_cell_w != nullptr) {
      each_unit(H, [&](int64_t j) { normalised_cell_output_grad<Cell, L>(r, b, j); });
      __syncthreads();  // the means read every thread's units
      T mean_g, mean_g_v_hat;
      grad_means(r.d_cell_out + b * H, r.ln_cell_w, r.c_hat + b * H, H, shared, &mean_g,
                 &mean_g_v_hat);
      const T rstd = r.rstd[b * 2 + 1];
      each_unit(H, [&](int64_t j) {
        normalised_cell_backward<Cell, L>(r, s, b, j, rstd, mean_g, mean_g_v_hat);
      });
      cell_done = true;
    }
  }
  if (!cell_done) each_unit(H, [&](int64_t j) { Cell::template backward<L>(s, b, j); });
  if (r.zoneout != nullptr) {
    each_unit(H, [&](int64_t j) { direct_hidden_grad<Cell, L>(r, s, b * H + j); });
  }
  if (r.ln_hh != nullptr) {
    __syncthreads();  // the row's gate gradients come from every thread
    T mean_g, mean_g_v_hat;
    grad_means(s.dhg + b * GH, r.ln_hh, r.h_hat + b * GH, GH, shared, &mean_g, &mean_g_v_hat);
    const T rstd = r.rstd[b * 2];
    each_unit(GH, [&](int64_t k) {
      raw_projection_grad<L>(r, s, b, k, GH, rstd, mean_g, mean_g_v_hat);
    });
  }
}

}  // namespace

template <typename T>
cudaError_t launch_rowwise_forward(CellKind kind, const RowwiseForward<T>& step, int64_t rows,
                                   cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  visit_cell(kind, [&](auto cell) {
    rowwise_forward_kernel<decltype(cell), T><<<rows, kThreads, 0, stream>>>(step);
  });
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_rowwise_backward(CellKind kind, const RowwiseBackward<T>& step, int64_t rows,
                                    cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  visit_cell(kind, [&](auto cell) {
    rowwise_backward_kernel<decltype(cell), T><<<rows, kThreads, 0, stream>>>(step);
  });
  return cudaGetLastError();
}

template cudaError_t launch_rowwise_forward<float>(CellKind, const RowwiseForward<float>&,
                                                   int64_t, cudaStream_t);
template cudaError_t launch_rowwise_forward<double>(CellKind, const RowwiseForward<double>&,
                                                    int64_t, cudaStream_t);
template cudaError_t launch_rowwise_backward<float>(CellKind, const RowwiseBackward<float>&,
                                                    int64_t, cudaStream_t);
template cudaError_t launch_rowwise_backward<double>(CellKind, const RowwiseBackward<double>&,
                                                     int64_t, cudaStream_t);

}  // namespace rnnk
