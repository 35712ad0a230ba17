// LSTM gate math, gate rows i, f, g, o:
//   i, f, o = sigmoid(xg + hg), g = tanh(xg + hg), c' = f*c + i*g, h' = o*tanh(c')
// Saved for backward: the activated i, f, g, o (c' is rebuilt from them and c).
#pragma once
#include "common.h"

namespace rnnk {
namespace {  // internal linkage: see common.h

struct LstmCell {
  static constexpr int kGates = 4;
  static constexpr int kSaved = 4;
  static constexpr bool kSumsProjections = true;  // every gate reads xg + hg
  // Whether the cell carries a cell state c besides h (its own c0, c_n, c_prev and dc).
  static constexpr bool kHasCellState = true;
  // Whether forward reads h_(t-1) of its own unit (where it writes h_t).
  static constexpr bool kReadsPreviousHidden = false;
  // Whether backward leaves in dh the part of dL/dh_(t-1) that bypasses W_hh (z * dh).
  static constexpr bool kDirectHiddenGradient = false;

  // Hidden unit(s) j of row b; L says how many units one load covers (common.h).
  template <typename L>
  static RNNK_HD void forward(const StepForward<typename L::Elem>& s, int64_t b, int64_t j) {
    using A = typename L::Value;
    const int64_t H = s.H;
    const auto* xg = s.xg + b * 4 * H + j;
    const auto hg = [&](int gate) { return recurrent_gate<L>(s, b, gate * H + j, 4 * H); };
    const A i = sigmoid(L::load(xg) + hg(0));
    const A f = sigmoid(L::load(xg + H) + hg(1));
    const A g = tanh_act(L::load(xg + 2 * H) + hg(2));
    const A o = sigmoid(L::load(xg + 3 * H) + hg(3));
    const A c = f * L::load(s.c + b * H + j) + i * g;
    L::store(s.c + b * H + j, c);
    store_h<L>(s, b, j, o * tanh_act(c));
    auto* saved = s.saved + b * 4 * H + j;
    L::store(saved, i);
    L::store(saved + H, f);
    L::store(saved + 2 * H, g);
    L::store(saved + 3 * H, o);
  }

  template <typename L>
  static RNNK_HD void backward(const StepBackward<typename L::Elem>& s, int64_t b, int64_t j) {
    using A = typename L::Value;
    const int64_t H = s.H;
    const auto* saved = s.saved + b * 4 * H + j;
    const A i = L::load(saved), f = L::load(saved + H), g = L::load(saved + 2 * H),
            o = L::load(saved + 3 * H);
    const A c_prev = L::load(s.c_prev + b * H + j);
    const A tanh_c = tanh_act(f * c_prev + i * g);
    const A dh = incoming_dh<L>(s, b * H + j);
    const A dc = L::load(s.dc + b * H + j) + dh * o * (A(1) - tanh_c * tanh_c);
    auto* dxg = s.dxg + b * 4 * H + j;
    L::store(dxg, dc * g * i * (A(1) - i));
    L::store(dxg + H, dc * c_prev * f * (A(1) - f));
    L::store(dxg + 2 * H, dc * i * (A(1) - g * g));
    L::store(dxg + 3 * H, dh * tanh_c * o * (A(1) - o));
    L::store(s.dc + b * H + j, dc * f);
  }
};

}  // namespace
}  // namespace rnnk
