// What the sequence loop (layer.cpp) asks of a device each step, on raw pointers: a
// GEMM, a pointwise pass, and, for the projected LSTM only, row copies and sums. On a GPU
// each call is one kernel launch on the current stream with no host synchronisation, so
// a step costs two launches (a recurrent GEMM and the pointwise pass that does every
// write of the step) and a whole call can be captured in a CUDA graph. No call goes
// through the dispatcher: a step's host time is that of its launches.
#pragma once
#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>

#include "cells/cells.h"

namespace rnnk {

// The step loop's device calls, summed over calls: tests read it (step_launches()) to see
// how many launches a step takes.
inline std::atomic<int64_t> g_step_launches{0};

template <typename T>
struct StepDevice {
  // out[rows, cols] (+)= a[rows, inner] @ (transpose_w ? w^T : w), row-major and dense.
  void (*gemm_fn)(int64_t rows, int64_t cols, int64_t inner, const T* a, const T* w,
                  bool transpose_w, T* out, bool accumulate);
  void (*forward_fn)(CellKind kind, const StepForward<T>& step, int64_t rows);
  void (*backward_fn)(CellKind kind, const StepBackward<T>& step, int64_t rows);
  void (*copy_fn)(T* dst, const T* src, int64_t count);
  void (*sum_fn)(T* dst, const T* a, const T* b, int64_t count);  // dst = a + b

  void gemm(int64_t rows, int64_t cols, int64_t inner, const T* a, const T* w, bool transpose_w,
            T* out, bool accumulate) const {
    counted();
    gemm_fn(rows, cols, inner, a, w, transpose_w, out, accumulate);
  }
  void forward(CellKind kind, const StepForward<T>& step, int64_t rows) const {
    counted();
    forward_fn(kind, step, rows);
  }
  void backward(CellKind kind, const StepBackward<T>& step, int64_t rows) const {
    counted();
    backward_fn(kind, step, rows);
  }
  void copy(T* dst, const T* src, int64_t count) const {
    counted();
    copy_fn(dst, src, count);
  }
  void sum(T* dst, const T* a, const T* b, int64_t count) const {
    counted();
    sum_fn(dst, a, b, count);
  }

 private:
  static void counted() { g_step_launches.fetch_add(1, std::memory_order_relaxed); }
};

// The step calls for `like`'s device and dtype (T is its ATen scalar type); an error
// naming both where this build has none.
template <typename T>
StepDevice<T> step_device(const at::Tensor& like);

#ifdef RNNK_WITH_CUDA
// cuda/step_device.cpp: float, double, at::Half, at::BFloat16.
template <typename T>
StepDevice<T> cuda_step_device();
#endif

}  // namespace rnnk
