// Vanilla RNN math: h' = act(xg + hg), act = tanh or relu.
// Saved for backward: h' itself (both derivatives are functions of the output).
#pragma once
#include "common.h"

namespace rnnk {

template <bool Relu>
struct RnnCell {
  static constexpr int kGates = 1;
  static constexpr int kSaved = 1;

  template <typename T>
  static RNNK_HD void forward(const StepForward<T>& s, int64_t b, int64_t j) {
    using A = typename OpMath<T>::type;
    const int64_t k = b * s.H + j;
    const A pre = ld(s.xg[k]) + ld(s.hg[k]);
    const A h = Relu ? relu_act(pre) : tanh_act(pre);
    s.h[k] = st<T>(h);
    s.saved[k] = st<T>(h);
  }

  template <typename T>
  static RNNK_HD void backward(const StepBackward<T>& s, int64_t b, int64_t j) {
    using A = typename OpMath<T>::type;
    const int64_t k = b * s.H + j;
    const A h = ld(s.saved[k]);
    const A dh = ld(s.dh[k]);
    s.dxg[k] = st<T>(Relu ? (h > A(0) ? dh : A(0)) : dh * (A(1) - h * h));
  }
};

using RnnTanhCell = RnnCell<false>;
using RnnReluCell = RnnCell<true>;

}  // namespace rnnk
