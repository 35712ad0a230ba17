// Part of the body of isa_{default,avx2,avx512}.cpp: each defines CPU_CAPABILITY (and its
// CPU_CAPABILITY_* macro and target) first, so at::vec picks that instruction set and
// everything here lands in a namespace of its own. Keep ATen tensor headers out: only
// at::vec and the cell math, so little inline code is compiled for a wider target.
#include <ATen/cpu/vec/vec.h>

#include "../cells/cells.h"
#include "rows.h"

namespace rnnk {
namespace {

// The cell math on SIMD registers: Math<> for at::vec::Vectorized. Sleef's exp and tanh
// (1 ulp) made the gates cost as much as the recurrent GEMM at small sizes; these take
// ~155 cycles per 16 LSTM units against ~360, within 3e-7 (relative, sigmoid) and 2e-7
// (absolute, tanh) in float.
template <typename S>
struct Math<at::vec::Vectorized<S>> {
  using V = at::vec::Vectorized<S>;
  // at::vec's polynomial exp (Sleef's for double); it clamps, so NaN is put back.
  static V exp(V x) { return V::blendv(x.exp_u20(), x, x != x); }
  // 2 sigmoid(2x) - 1, on the exp above.
  static V tanh(V x) { return V(2) / (V(1) + exp(V(-2) * x)) - V(1); }
  static V relu(V x) { return at::vec::maximum(x, V(0)); }  // propagates NaN like torch.relu
  static V relu_grad(V h, V dh) { return V::blendv(V(0), dh, h > V(0)); }
};

}  // namespace

namespace CPU_CAPABILITY {
namespace {

template <typename T>
struct VectorLanes {
  using Elem = T;
  using Value = at::vec::Vectorized<T>;
  static Value load(const T* p) { return Value::loadu(p); }
  static void store(T* p, Value v) { v.store(p); }
};

// Full vectors over the hidden units, then one unit at a time for the remainder.
template <typename Step, typename Fn, typename TailFn>
void each_unit(const Step& step, int64_t begin, int64_t end, const Fn& vector_fn,
               const TailFn& scalar_fn, int64_t width) {
  const int64_t vector_end = step.H - step.H % width;
  for (int64_t b = begin; b < end; ++b) {
    int64_t j = 0;
    for (; j < vector_end; j += width) vector_fn(b, j);
    for (; j < step.H; ++j) scalar_fn(b, j);
  }
}

// The forward or backward pass of the cell `kind` over rows [begin, end).
template <bool Backward, typename T, typename Step>
void run_rows(CellKind kind, const Step& step, int64_t begin, int64_t end) {
  visit_cell(kind, [&](auto cell) {
    using Cell = decltype(cell);
    const auto apply = [&](auto lanes, int64_t b, int64_t j) {
      using L = decltype(lanes);
      if constexpr (Backward) {
        Cell::template backward<L>(step, b, j);
      } else {
        Cell::template forward<L>(step, b, j);
      }
    };
    each_unit(
        step, begin, end, [&](int64_t b, int64_t j) { apply(VectorLanes<T>{}, b, j); },
        [&](int64_t b, int64_t j) { apply(ScalarLanes<T>{}, b, j); },
        at::vec::Vectorized<T>::size());
  });
}

}  // namespace

void forward_rows(CellKind kind, const StepForward<float>& step, int64_t begin, int64_t end) {
  run_rows<false, float>(kind, step, begin, end);
}
void forward_rows(CellKind kind, const StepForward<double>& step, int64_t begin, int64_t end) {
  run_rows<false, double>(kind, step, begin, end);
}
void backward_rows(CellKind kind, const StepBackward<float>& step, int64_t begin, int64_t end) {
  run_rows<true, float>(kind, step, begin, end);
}
void backward_rows(CellKind kind, const StepBackward<double>& step, int64_t begin, int64_t end) {
  run_rows<true, double>(kind, step, begin, end);
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnk
