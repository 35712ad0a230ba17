// CUDA rowwise passes (rowwise.h): one block per row of a step, its threads striding over
// the row's units and reducing the layer norms' statistics through shared memory. The cell
// math is cells/*.h's, one unit per thread at a time, as in the CPU passes.
#include "../cells/layer_norm.h"
#include "../rowwise.h"
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

// The row means of g = grad * weight and of g * v_hat over [0, n).
template <typename T>
__device__ void grad_means(const T* grad, const T* weight, const T* v_hat, int64_t n, T* shared,
                           T* mean_g, T* mean_g_v_hat) {
  T g_sum = 0, gv_sum = 0;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    g_sum += grad[k] * weight[k];
    gv_sum += grad[k] * weight[k] * v_hat[k];
  }
  *mean_g = block_sum(g_sum, shared) / T(n);
  *mean_g_v_hat = block_sum(gv_sum, shared) / T(n);
}

template <typename Cell, typename T>
__global__ void rowwise_forward_kernel(RowwiseForward<T> r) {
  using L = ScalarLanes<T>;
  __shared__ T shared[kWarps];
  const StepForward<T>& s = r.step;
  const int64_t b = blockIdx.x, H = s.H, GH = Cell::kGates * H;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) keep_inputs<L>(s, b, j);
  if (r.ln_hh != nullptr) {
    T* hg = r.hg + b * GH;
    T mean, rstd;
    row_stats(hg, GH, shared, &mean, &rstd);
    for (int64_t k = threadIdx.x; k < GH; k += blockDim.x) {
      const T v_hat = (hg[k] - mean) * rstd;
      r.h_hat[b * GH + k] = v_hat;
      hg[k] = v_hat * r.ln_hh[k];
    }
    if (threadIdx.x == 0) r.rstd[b * 2] = rstd;
    __syncthreads();  // a unit's gates were normalised by other threads
  }
  bool cell_done = false;
  if constexpr (Cell::kHasCellState) {
    if (r.ln_cell_w != nullptr) {
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) Cell::template update<L>(s, b, j);
      __syncthreads();
      const T* c = s.c + b * H;
      T mean, rstd;
      row_stats(c, H, shared, &mean, &rstd);
      if (threadIdx.x == 0) r.rstd[b * 2 + 1] = rstd;
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        const T c_hat = (c[j] - mean) * rstd;
        r.c_hat[b * H + j] = c_hat;
        const T o = s.saved[b * 4 * H + 3 * H + j];
        store_h<L>(s, b, j, o * tanh_act(c_hat * r.ln_cell_w[j] + r.ln_cell_b[j]));
      }
      cell_done = true;
    }
  }
  if (!cell_done) {
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) Cell::template forward<L>(s, b, j);
  }
  if (r.zoneout != nullptr) {
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      const int64_t k = b * H + j;
      const T m = r.zoneout[k];
      store_h<L>(s, b, j, m * s.h[k] + (T(1) - m) * s.h_keep[k]);
    }
  }
}

template <typename Cell, typename T>
__global__ void rowwise_backward_kernel(RowwiseBackward<T> r) {
  using L = ScalarLanes<T>;
  __shared__ T shared[kWarps];
  StepBackward<T> s = r.step;
  s.grad_h = nullptr;  // folded into dh first
  const int64_t b = blockIdx.x, H = s.H, GH = Cell::kGates * H;
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
    const int64_t k = b * H + j;
    T dh = incoming_dh<L>(r.step, k);
    if (r.zoneout != nullptr) {
      const T m = r.zoneout[k];
      r.dh_direct[k] = (T(1) - m) * dh;
      dh = m * dh;
    }
    s.dh[k] = dh;
  }
  bool cell_done = false;
  if constexpr (Cell::kHasCellState) {
    if (r.ln_cell_w != nullptr) {
      const T* c_hat = r.c_hat + b * H;
      T* d_out = r.d_cell_out + b * H;
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        const T t = tanh_act(c_hat[j] * r.ln_cell_w[j] + r.ln_cell_b[j]);
        const T o = s.saved[b * 4 * H + 3 * H + j];
        d_out[j] = s.dh[b * H + j] * o * (T(1) - t * t);
      }
      __syncthreads();
      T mean_g, mean_g_v_hat;
      grad_means(d_out, r.ln_cell_w, c_hat, H, shared, &mean_g, &mean_g_v_hat);
      const T rstd = r.rstd[b * 2 + 1];
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        const T t = tanh_act(c_hat[j] * r.ln_cell_w[j] + r.ln_cell_b[j]);
        const T dc = s.dc[b * H + j] + layer_norm_grad(d_out[j] * r.ln_cell_w[j], c_hat[j], rstd,
                                                       mean_g, mean_g_v_hat);
        Cell::template store_gate_grads<L>(s, b, j, Cell::template saved_gates<L>(s, b, j), dc,
                                           s.dh[b * H + j] * t);
      }
      cell_done = true;
    }
  }
  if (!cell_done) {
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) Cell::template backward<L>(s, b, j);
  }
  if (r.zoneout != nullptr) {
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      const int64_t k = b * H + j;
      s.dh[k] = r.dh_direct[k] + (Cell::kDirectHiddenGradient ? s.dh[k] : T(0));
    }
  }
  if (r.ln_hh != nullptr) {
    __syncthreads();  // the row's gate gradients come from every thread
    const T* dhg = s.dhg + b * GH;
    const T* h_hat = r.h_hat + b * GH;
    T mean_g, mean_g_v_hat;
    grad_means(dhg, r.ln_hh, h_hat, GH, shared, &mean_g, &mean_g_v_hat);
    const T rstd = r.rstd[b * 2];
    for (int64_t k = threadIdx.x; k < GH; k += blockDim.x) {
      r.dhg_raw[b * GH + k] =
          layer_norm_grad(dhg[k] * r.ln_hh[k], h_hat[k], rstd, mean_g, mean_g_v_hat);
    }
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
