// Part of the body of isa_{default,avx2,avx512}.cpp: each defines CPU_CAPABILITY (and its
// CPU_CAPABILITY_* macro and target) first, so at::vec picks that instruction set and
// everything here lands in a namespace of its own. Keep ATen tensor headers out: only
// at::vec and the cell math, so little inline code is compiled for a wider target.
#include <ATen/cpu/vec/vec.h>

#include <type_traits>

#include "../cells/cells.h"
#include "rows.h"
#include "simd_activations.h"

namespace rnnk {
namespace {

// The cell math on SIMD registers: Math<> for at::vec::Vectorized, on simd_activations.h's
// exp and reciprocal. Sleef's exp and tanh (1 ulp) and vdivps made the gates cost as much
// as the recurrent GEMM; these stay within 3e-7 (relative, sigmoid) and 2e-7 (absolute,
// tanh) in float.
template <typename S>
struct Math<at::vec::Vectorized<S>> {
  using V = at::vec::Vectorized<S>;
  static V exp(V x) { return simd_exp(x); }
  static V reciprocal(V x) { return simd_reciprocal(x); }
  // 2 sigmoid(2x) - 1.
  static V tanh(V x) { return V(2) * reciprocal(V(1) + exp(V(-2) * x)) - V(1); }
  static V relu(V x) { return at::vec::maximum(x, V(0)); }  // propagates NaN like torch.relu
  static V relu_grad(V h, V dh) { return V::blendv(V(0), dh, h > V(0)); }
};

// Two vectors of adjacent units computed side by side: the cell math is one long chain of
// dependent operations (exp's polynomial, divides), and two independent chains interleaved
// keep more of the core's execution units busy than one.
template <typename S>
struct VectorPair {
  using V = at::vec::Vectorized<S>;
  V lo, hi;
  VectorPair(V lo_, V hi_) : lo(lo_), hi(hi_) {}
  template <typename N, typename = std::enable_if_t<std::is_arithmetic_v<N>>>
  explicit VectorPair(N value) : lo(S(value)), hi(S(value)) {}
};

#define RNNK_PAIR_OPERATOR(op)                                                        \
  template <typename S>                                                               \
  VectorPair<S> operator op(const VectorPair<S>& a, const VectorPair<S>& b) {         \
    return {a.lo op b.lo, a.hi op b.hi};                                              \
  }
RNNK_PAIR_OPERATOR(+)
RNNK_PAIR_OPERATOR(-)
RNNK_PAIR_OPERATOR(*)
RNNK_PAIR_OPERATOR(/)
#undef RNNK_PAIR_OPERATOR

template <typename S>
struct Math<VectorPair<S>> {
  using P = VectorPair<S>;
  using M = Math<at::vec::Vectorized<S>>;
  static P exp(P x) { return {M::exp(x.lo), M::exp(x.hi)}; }
  static P reciprocal(P x) { return {M::reciprocal(x.lo), M::reciprocal(x.hi)}; }
  static P tanh(P x) { return {M::tanh(x.lo), M::tanh(x.hi)}; }
  static P relu(P x) { return {M::relu(x.lo), M::relu(x.hi)}; }
  static P relu_grad(P h, P dh) { return {M::relu_grad(h.lo, dh.lo), M::relu_grad(h.hi, dh.hi)}; }
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

// Two vectors' worth of adjacent units (see VectorPair).
template <typename T>
struct PairLanes {
  using Elem = T;
  using Value = VectorPair<T>;
  static constexpr int64_t kHalf = at::vec::Vectorized<T>::size();
  static Value load(const T* p) {
    return {at::vec::Vectorized<T>::loadu(p), at::vec::Vectorized<T>::loadu(p + kHalf)};
  }
  static void store(T* p, const Value& v) {
    v.lo.store(p);
    v.hi.store(p + kHalf);
  }
};

// Runs the cell on units [begin, end) of row b: two vectors at a time, then one, then
// one unit at a time (a partial last vector).
template <bool Backward, typename Cell, typename Step>
inline void cell_units(const Step& step, int64_t b, int64_t begin, int64_t end) {
  using T = std::remove_const_t<std::remove_pointer_t<decltype(step.saved)>>;
  const auto run = [&](auto lanes, int64_t j) {
    using L = decltype(lanes);
    if constexpr (Backward) {
      Cell::template backward<L>(step, b, j);
    } else {
      keep_inputs<L>(step, b, j);
      Cell::template forward<L>(step, b, j);
    }
  };
  constexpr int64_t kVector = at::vec::Vectorized<T>::size();
  int64_t j = begin;
  for (; j + 2 * kVector <= end; j += 2 * kVector) run(PairLanes<T>{}, j);
  for (; j + kVector <= end; j += kVector) run(VectorLanes<T>{}, j);
  for (; j < end; ++j) run(ScalarLanes<T>{}, j);
}

// The forward or backward pass of the cell `kind` over rows [begin, end).
template <bool Backward, typename Step>
void run_rows(CellKind kind, const Step& step, int64_t begin, int64_t end) {
  visit_cell(kind, [&](auto cell) {
    for (int64_t b = begin; b < end; ++b) cell_units<Backward, decltype(cell)>(step, b, 0, step.H);
  });
}

}  // namespace

void forward_rows(CellKind kind, const StepForward<float>& step, int64_t begin, int64_t end) {
  run_rows<false>(kind, step, begin, end);
}
void forward_rows(CellKind kind, const StepForward<double>& step, int64_t begin, int64_t end) {
  run_rows<false>(kind, step, begin, end);
}
void backward_rows(CellKind kind, const StepBackward<float>& step, int64_t begin, int64_t end) {
  run_rows<true>(kind, step, begin, end);
}
void backward_rows(CellKind kind, const StepBackward<double>& step, int64_t begin, int64_t end) {
  run_rows<true>(kind, step, begin, end);
}

}  // namespace CPU_CAPABILITY
}  // namespace rnnk
