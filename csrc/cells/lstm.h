// LSTM gate math, gate rows i, f, g, o:
//   i, f, o = sigmoid(xg + hg), g = tanh(xg + hg), c' = f*c + i*g, h' = o*tanh(c')
// Saved for backward: the activated i, f, g, o (c' is rebuilt from them and c).
#pragma once
#include "common.h"

namespace rnnk {

struct LstmCell {
  static constexpr int kGates = 4;
  static constexpr int kSaved = 4;

  template <typename T>
  static RNNK_HD void forward(const StepForward<T>& s, int64_t b, int64_t j) {
    using A = typename OpMath<T>::type;
    const int64_t H = s.H;
    const T* xg = s.xg + b * 4 * H;
    const T* hg = s.hg + b * 4 * H;
    const A i = sigmoid(ld(xg[j]) + ld(hg[j]));
    const A f = sigmoid(ld(xg[H + j]) + ld(hg[H + j]));
    const A g = tanh_act(ld(xg[2 * H + j]) + ld(hg[2 * H + j]));
    const A o = sigmoid(ld(xg[3 * H + j]) + ld(hg[3 * H + j]));
    const A c = f * ld(s.c[b * H + j]) + i * g;
    s.c[b * H + j] = st<T>(c);
    s.h[b * H + j] = st<T>(o * tanh_act(c));
    T* saved = s.saved + b * 4 * H;
    saved[j] = st<T>(i);
    saved[H + j] = st<T>(f);
    saved[2 * H + j] = st<T>(g);
    saved[3 * H + j] = st<T>(o);
  }

  template <typename T>
  static RNNK_HD void backward(const StepBackward<T>& s, int64_t b, int64_t j) {
    using A = typename OpMath<T>::type;
    const int64_t H = s.H;
    const T* saved = s.saved + b * 4 * H;
    const A i = ld(saved[j]), f = ld(saved[H + j]), g = ld(saved[2 * H + j]),
            o = ld(saved[3 * H + j]);
    const A c_prev = ld(s.c_prev[b * H + j]);
    const A tanh_c = tanh_act(f * c_prev + i * g);
    const A dh = ld(s.dh[b * H + j]);
    const A dc = ld(s.dc[b * H + j]) + dh * o * (A(1) - tanh_c * tanh_c);
    T* dxg = s.dxg + b * 4 * H;
    dxg[j] = st<T>(dc * g * i * (A(1) - i));
    dxg[H + j] = st<T>(dc * c_prev * f * (A(1) - f));
    dxg[2 * H + j] = st<T>(dc * i * (A(1) - g * g));
    dxg[3 * H + j] = st<T>(dh * tanh_c * o * (A(1) - o));
    s.dc[b * H + j] = st<T>(dc * f);
  }
};

}  // namespace rnnk
