// GRU gate math, gate rows r, z, n:
//   r, z = sigmoid(xg + hg), n = tanh(xg_n + r * hg_n), h' = (1 - z) * n + z * h
// hg_n holds W_hn h + b_hn, so b_hn sits inside the reset gate as PyTorch has it.
// Saved for backward: r, z, n and hg_n.
#pragma once
#include "common.h"

namespace rnnk {

struct GruCell {
  static constexpr int kGates = 3;
  static constexpr int kSaved = 4;

  template <typename T>
  static RNNK_HD void forward(const StepForward<T>& s, int64_t b, int64_t j) {
    using A = typename OpMath<T>::type;
    const int64_t H = s.H;
    const T* xg = s.xg + b * 3 * H;
    const T* hg = s.hg + b * 3 * H;
    const A r = sigmoid(ld(xg[j]) + ld(hg[j]));
    const A z = sigmoid(ld(xg[H + j]) + ld(hg[H + j]));
    const A hg_n = ld(hg[2 * H + j]);
    const A n = tanh_act(ld(xg[2 * H + j]) + r * hg_n);
    const A h_prev = ld(s.h[b * H + j]);
    s.h[b * H + j] = st<T>((A(1) - z) * n + z * h_prev);
    T* saved = s.saved + b * 4 * H;
    saved[j] = st<T>(r);
    saved[H + j] = st<T>(z);
    saved[2 * H + j] = st<T>(n);
    saved[3 * H + j] = st<T>(hg_n);
  }

  template <typename T>
  static RNNK_HD void backward(const StepBackward<T>& s, int64_t b, int64_t j) {
    using A = typename OpMath<T>::type;
    const int64_t H = s.H;
    const T* saved = s.saved + b * 4 * H;
    const A r = ld(saved[j]), z = ld(saved[H + j]), n = ld(saved[2 * H + j]),
            hg_n = ld(saved[3 * H + j]);
    const A h_prev = ld(s.h_prev[b * H + j]);
    const A dh = ld(s.dh[b * H + j]);
    const A dn_pre = dh * (A(1) - z) * (A(1) - n * n);
    const A dr_pre = dn_pre * hg_n * r * (A(1) - r);
    const A dz_pre = dh * (h_prev - n) * z * (A(1) - z);
    T* dxg = s.dxg + b * 3 * H;
    T* dhg = s.dhg + b * 3 * H;
    dxg[j] = dhg[j] = st<T>(dr_pre);
    dxg[H + j] = dhg[H + j] = st<T>(dz_pre);
    dxg[2 * H + j] = st<T>(dn_pre);
    dhg[2 * H + j] = st<T>(dn_pre * r);
    s.dh[b * H + j] = st<T>(dh * z);
  }
};

}  // namespace rnnk
