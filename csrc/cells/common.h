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

// Half types store in 16 bits but compute in float: CUDA code specialises this
// with explicit conversions (torch builds CUDA with implicit half conversions off).
template <typename T>
struct OpMath {
  using type = T;
  static RNNK_HD type load(T v) { return v; }
  static RNNK_HD T store(type v) { return v; }
};

template <typename T>
RNNK_HD typename OpMath<T>::type ld(T v) {
  return OpMath<T>::load(v);
}

template <typename T>
RNNK_HD T st(typename OpMath<T>::type v) {
  return OpMath<T>::store(v);
}

template <typename A>
RNNK_HD A sigmoid(A x) {
  return A(1) / (A(1) + std::exp(-x));
}

template <typename A>
RNNK_HD A tanh_act(A x) {
  return std::tanh(x);
}

// `x < 0 ? 0 : x` (not `x > 0 ? x : 0`) so that NaN propagates as torch.relu does.
template <typename A>
RNNK_HD A relu_act(A x) {
  return x < A(0) ? A(0) : x;
}

// Pointers into one time step's rows (n rows of a batch). Rows are contiguous
// with the widths given in the comments; each cell reads only what it needs.
template <typename T>
struct StepForward {
  const T* xg;  // [n, G*H] input projection, b_ih included
  const T* hg;  // [n, G*H] recurrent projection, b_hh included
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
