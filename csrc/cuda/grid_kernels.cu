// The persistent kernels on the GPU: one cooperative launch runs a layer direction's
// whole sequence (grid/grid_program.h), every block resident at once, the grid barrier
// of grid/grid_barrier.h between steps.
#include <cstdint>
#include <type_traits>

#include "../grid/grid_barrier.h"
#include "../grid/grid_program.h"
#include "cuda_types.h"
#include "grid_launch.h"

namespace rnnk {
namespace {

// The 32-bit register an mma operand takes for elements k and k + 1 of a row (the lower
// half holds k), zero past the row count or the part's end.
template <typename T>
__device__ uint32_t pair(const T* row, bool valid, int64_t k, int64_t k_end) {
  static_assert(sizeof(T) == 2, "16-bit operands");
  uint32_t lo = 0, hi = 0;
  if (valid && k < k_end) lo = *reinterpret_cast<const uint16_t*>(row + k);
  if (valid && k + 1 < k_end) hi = *reinterpret_cast<const uint16_t*>(row + k + 1);
  return lo | (hi << 16);
}

// Element k of a row as a TF32 operand (rounded to nearest), zero where pair() has zero.
__device__ uint32_t tf32(const float* row, bool valid, int64_t k, int64_t k_end) {
  uint32_t bits = 0;
  if (valid && k < k_end) asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bits) : "f"(row[k]));
  return bits;
}

// Where grid_program.h's code runs on the device: loads and stores are plain ones (the
// barrier's fences order them), the cells see one unit a thread, and mma_tile is the
// warp's tensor-core product.
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

  // c[slot] += sum over k in [k_begin, k_end) of a[row][k] * b[col][k] for this lane's
  // slots (grid_layout.h), rows of a past a_rows and of b past b_rows zero; all 32 lanes of
  // the warp call it together. mma.m16n8k16 for the 16-bit types, m16n8k8 on TF32 for
  // float; fragment layouts as the PTX ISA gives them for .row.col.
  template <typename T>
  __device__ void mma_tile(int lane, const T* a, int64_t lda, int64_t a_rows, const T* b,
                           int64_t ldb, int64_t b_rows, int64_t k_begin, int64_t k_end,
                           float (&c)[kTileSlots]) const {
    const int g = lane >> 2, t = lane & 3;
    const T* a_lo = a + g * lda;        // rows g and g + 8 of the tile
    const T* a_hi = a + (g + 8) * lda;
    const T* b_row = b + g * ldb;        // column g of the tile
    const bool lo_ok = g < a_rows, hi_ok = g + 8 < a_rows, b_ok = g < b_rows;
    if constexpr (std::is_same_v<T, float>) {
      for (int64_t k0 = k_begin; k0 < k_end; k0 += 8) {
        const uint32_t a0 = tf32(a_lo, lo_ok, k0 + t, k_end), a1 = tf32(a_hi, hi_ok, k0 + t, k_end),
                       a2 = tf32(a_lo, lo_ok, k0 + t + 4, k_end),
                       a3 = tf32(a_hi, hi_ok, k0 + t + 4, k_end);
        const uint32_t b0 = tf32(b_row, b_ok, k0 + t, k_end),
                       b1 = tf32(b_row, b_ok, k0 + t + 4, k_end);
        asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
            "{%8,%9}, {%0,%1,%2,%3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
      }
    } else {
      for (int64_t k0 = k_begin; k0 < k_end; k0 += 16) {
        const int64_t k = k0 + 2 * t;
        const uint32_t a0 = pair(a_lo, lo_ok, k, k_end), a1 = pair(a_hi, hi_ok, k, k_end),
                       a2 = pair(a_lo, lo_ok, k + 8, k_end), a3 = pair(a_hi, hi_ok, k + 8, k_end);
        const uint32_t b0 = pair(b_row, b_ok, k, k_end), b1 = pair(b_row, b_ok, k + 8, k_end);
        if constexpr (std::is_same_v<T, __half>) {
          asm volatile(
              "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
              "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
              : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
              : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
        } else {
          static_assert(std::is_same_v<T, __nv_bfloat16>, "tensor-core tiles: 16-bit or float");
          asm volatile(
              "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
              "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
              : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
              : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
        }
      }
    }
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

template <typename Cell, typename T, bool kTiles>
__global__ void grid_forward_kernel(GridForward<T> p) {
  run_block(GridForwardProgram<Cell, T, DeviceContext, kTiles>{p}, p.barrier);
}

template <typename Cell, typename T, bool kTiles>
__global__ void grid_backward_kernel(GridBackward<T> p) {
  run_block(GridBackwardProgram<Cell, T, DeviceContext, kTiles>{p}, p.barrier);
}

// Tensor-core tiles exist for the 16-bit types and float (TF32), not double.
template <typename T>
constexpr bool kHasTiles = !std::is_same_v<T, double>;

// Calls f(kernel, shared bytes) with the kernel for `kind`, direction and shape.tiles.
template <typename T, typename F>
auto with_kernel(CellKind kind, bool backward, const GridShape& shape, int64_t H, const F& f) {
  return visit_cell(kind, [&](auto cell) {
    using Cell = decltype(cell);
    const auto pick = [&](auto tiles) {
      constexpr bool kTiles = decltype(tiles)::value;
      if (backward) {
        using Program = GridBackwardProgram<Cell, T, DeviceContext, kTiles>;
        return f(grid_backward_kernel<Cell, T, kTiles>, Program::layout(shape, H).total);
      }
      using Program = GridForwardProgram<Cell, T, DeviceContext, kTiles>;
      return f(grid_forward_kernel<Cell, T, kTiles>, Program::layout(shape, H).total);
    };
    if constexpr (kHasTiles<T>) {
      if (shape.tiles) return pick(std::true_type{});
    }
    return pick(std::false_type{});
  });
}

cudaError_t allow_shared(const void* kernel, int64_t bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

template <typename Params>
cudaError_t launch(const void* kernel, const Params& params, int64_t bytes,
                   cudaStream_t stream) {
  cudaError_t status = allow_shared(kernel, bytes);
  if (status != cudaSuccess) return status;
  void* args[] = {const_cast<Params*>(&params)};
  return cudaLaunchCooperativeKernel(kernel, dim3(params.shape.blocks),
                                     dim3(params.shape.threads()), args,
                                     static_cast<size_t>(bytes), stream);
}

}  // namespace

template <typename T>
bool grid_fits(CellKind kind, const GridShape& shape, int64_t H, bool backward, int sms) {
  return with_kernel<T>(kind, backward, shape, H, [&](auto kernel, int64_t bytes) {
    const void* fn = reinterpret_cast<const void*>(kernel);
    int per_sm = 0;
    if (allow_shared(fn, bytes) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, shape.threads(), bytes) !=
            cudaSuccess) {
      (void)cudaGetLastError();  // clear it: the layer falls back to the step loop
      return false;
    }
    return int64_t(per_sm) * sms >= shape.blocks;
  });
}

template <typename T>
cudaError_t launch_grid_forward(CellKind kind, const GridForward<T>& p, cudaStream_t stream) {
  return with_kernel<T>(kind, false, p.shape, p.H, [&](auto kernel, int64_t bytes) {
    return launch(reinterpret_cast<const void*>(kernel), p, bytes, stream);
  });
}

template <typename T>
cudaError_t launch_grid_backward(CellKind kind, const GridBackward<T>& p, cudaStream_t stream) {
  return with_kernel<T>(kind, true, p.shape, p.H, [&](auto kernel, int64_t bytes) {
    return launch(reinterpret_cast<const void*>(kernel), p, bytes, stream);
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
