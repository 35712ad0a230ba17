// Shared by the CPU and CUDA pointwise kernels: the host/device qualifier, the
// compute ("opmath") type of each storage type, and the activation functions.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define RNNK_HD __host__ __device__ __forceinline__
#else
#define RNNK_HD inline
#endif

namespace rnnk {

// The math below has internal linkage (an unnamed namespace): every translation unit
// compiles its own copy, so the CPU units built for different instruction sets
// (cpu/isa_*.cpp) never share a function the linker could pick for the wrong CPU.
namespace {

// Half types store in 16 bits but compute in float: CUDA code specialises this
// with explicit conversions (torch builds CUDA with implicit half conversions off).
template <typename T>
struct OpMath {
  using type = T;
  static RNNK_HD type load(T v) { return v; }
  static RNNK_HD T store(type v) { return v; }
};

// Elementwise functions of a compute type A: a scalar here; the CPU kernels specialise
// it for at::vec::Vectorized so the same cell math runs on SIMD registers.
template <typename A>
struct Math {
  static RNNK_HD A exp(A x) { return std::exp(x); }
  static RNNK_HD A tanh(A x) { return std::tanh(x); }
  // 1 / x, where x >= 1 or NaN (the activations' denominators).
  static RNNK_HD A reciprocal(A x) { return A(1) / x; }
  // `x < 0 ? 0 : x` (not `x > 0 ? x : 0`) so that NaN propagates as torch.relu does.
  static RNNK_HD A relu(A x) { return x < A(0) ? A(0) : x; }
  // d relu / d pre-activation, from the output h: dh where h > 0.
  static RNNK_HD A relu_grad(A h, A dh) { return h > A(0) ? dh : A(0); }
};

template <typename A>
RNNK_HD A sigmoid(A x) {
  return Math<A>::reciprocal(A(1) + Math<A>::exp(A(0) - x));
}

template <typename A>
RNNK_HD A tanh_act(A x) {
  return Math<A>::tanh(x);
}

// How a kernel reads and writes hidden units: one at a time (ScalarLanes) or, in the CPU
// kernels, a SIMD vector of adjacent ones. Value is what the cell math computes on.
template <typename T>
struct ScalarLanes {
  using Elem = T;
  using Value = typename OpMath<T>::type;
  static RNNK_HD Value load(const T* p) { return OpMath<T>::load(*p); }
  static RNNK_HD void store(T* p, Value v) { *p = OpMath<T>::store(v); }
};

}  // namespace

// Pointers into one time step's rows (n rows of a batch). Rows are contiguous
// with the widths given in the comments; each cell reads only what it needs. The fields
// after H are optional (null: absent), for the sequence loop's pointwise launch, which
// does a step's every write but the recurrent GEMM's.
template <typename T>
struct StepForward {
  // Biases: b_ih in xg and b_hh in hg (or in b_hh below), or both there for cells that
  // only read xg + hg.
  const T* xg;  // [n, G*H] input projection
  const T* hg;  // [n, G*H] recurrent projection
  T* h;         // [n, H] in: h_prev (GRU); out: new h (LSTM with projection: o*tanh(c))
  T* c;         // [n, H] in/out: cell state (LSTM)
  T* saved;     // [n, S*H] what backward needs
  int64_t H;
  const T* b_hh = nullptr;  // [G*H] added to every row of hg as it is read
  T* h_out = nullptr;       // [n, H] out: the new h again (the layer's output rows)
  T* h_keep = nullptr;      // [n, H] out: h as it came in (backward's h_prev)
  T* c_keep = nullptr;      // [n, H] out: c as it came in (backward's c_prev)
};

template <typename T>
struct StepBackward {
  T* dh;              // [n, H] in: dL/dh_t; out (GRU): the direct part of dL/dh_{t-1}
  T* dc;              // [n, H] in: dL/dc_t; out: dL/dc_{t-1} (LSTM)
  const T* saved;     // [n, S*H] from the forward step
  const T* c_prev;    // [n, H] (LSTM)
  const T* h_prev;    // [n, H] (GRU)
  T* dxg;             // [n, G*H] dL/d(input projection)
  T* dhg;             // [n, G*H] dL/d(recurrent projection) (GRU; others equal dxg)
  int64_t H;
  const T* grad_h = nullptr;  // [n, H] optional: the output's gradient, added to dh as read
};

namespace {  // internal linkage: see above

// Gate row k (of `width`) of row b's recurrent projection, with b_hh where it is apart.
template <typename L>
RNNK_HD typename L::Value recurrent_gate(const StepForward<typename L::Elem>& s, int64_t b,
                                         int64_t k, int64_t width) {
  const typename L::Value v = L::load(s.hg + b * width + k);
  return s.b_hh == nullptr ? v : v + L::load(s.b_hh + k);
}

// Stores the new h of unit(s) j of row b, in h and, where given, in h_out.
template <typename L>
RNNK_HD void store_h(const StepForward<typename L::Elem>& s, int64_t b, int64_t j,
                     typename L::Value h) {
  L::store(s.h + b * s.H + j, h);
  if (s.h_out != nullptr) L::store(s.h_out + b * s.H + j, h);
}

// Copies the incoming states of unit(s) j of row b where backward keeps them: every
// pointwise forward pass calls this before the cell overwrites them.
template <typename L>
RNNK_HD void keep_inputs(const StepForward<typename L::Elem>& s, int64_t b, int64_t j) {
  const int64_t k = b * s.H + j;
  if (s.h_keep != nullptr) L::store(s.h_keep + k, L::load(s.h + k));
  if (s.c_keep != nullptr) L::store(s.c_keep + k, L::load(s.c + k));
}

// dL/dh_t of unit(s) at k: the carried gradient plus, where given, the output's.
template <typename L>
RNNK_HD typename L::Value incoming_dh(const StepBackward<typename L::Elem>& s, int64_t k) {
  const typename L::Value dh = L::load(s.dh + k);
  return s.grad_h == nullptr ? dh : dh + L::load(s.grad_h + k);
}

}  // namespace
}  // namespace rnnk
