// Vanilla RNN math: h' = act(xg + hg), act = tanh or relu.
// Saved for backward: h' itself (both derivatives are functions of the output).
#pragma once
#include "common.h"

namespace rnnk {
namespace {  // internal linkage: see common.h

template <bool Relu>
struct RnnCell {
  static constexpr int kGates = 1;
  static constexpr int kSaved = 1;
  static constexpr bool kSumsProjections = true;  // reads xg + hg
  // Whether the cell carries a cell state c besides h (its own c0, c_n, c_prev and dc).
  static constexpr bool kHasCellState = false;
  // Whether forward reads h_(t-1) of its own unit (where it writes h_t).
  static constexpr bool kReadsPreviousHidden = false;
  // Whether backward leaves in dh the part of dL/dh_(t-1) that bypasses W_hh (z * dh).
  static constexpr bool kDirectHiddenGradient = false;
  // Whether the rowwise ops (layer norms, zoneout: rowwise.h) take this cell.
  static constexpr bool kRowwise = false;

  template <typename L>
  static RNNK_HD void forward(const StepForward<typename L::Elem>& s, int64_t b, int64_t j) {
    using A = typename L::Value;
    const int64_t k = b * s.H + j;
    const A pre = L::load(s.xg + k) + recurrent_gate<L>(s, b, j, s.H);
    const A h = Relu ? Math<A>::relu(pre) : tanh_act(pre);
    store_h<L>(s, b, j, h);
    L::store(s.saved + k, h);
  }

  template <typename L>
  static RNNK_HD void backward(const StepBackward<typename L::Elem>& s, int64_t b, int64_t j) {
    using A = typename L::Value;
    const int64_t k = b * s.H + j;
    const A h = L::load(s.saved + k);
    const A dh = incoming_dh<L>(s, k);
    L::store(s.dxg + k, Relu ? Math<A>::relu_grad(h, dh) : dh * (A(1) - h * h));
  }
};

using RnnTanhCell = RnnCell<false>;
using RnnReluCell = RnnCell<true>;

}  // namespace
}  // namespace rnnk
