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
// with the widths given in the comments; each cell reads only what it needs.
template <typename T>
struct StepForward {
  // Biases: b_ih in xg and b_hh in hg, or both in hg for cells that only read xg + hg.
  const T* xg;  // [n, G*H] input projection
  const T* hg;  // [n, G*H] recurrent projection
  T* h;         // [n, H] in: h_prev (GRU); out: new h (LSTM with projection: o*tanh(c))
  T* c;         // [n, H] in/out: cell state (LSTM)
  T* saved;     // [n, S*H] what backward needs
  int64_t H;
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
};

}  // namespace rnnk
