// GRU gate math, gate rows r, z, n:
//   r, z = sigmoid(xg + hg), n = tanh(xg_n + r * hg_n), h' = (1 - z) * n + z * h
// hg_n holds W_hn h + b_hn, so b_hn sits inside the reset gate as PyTorch has it.
// Saved for backward: r, z, n and hg_n.
#pragma once
#include "common.h"

namespace rnnk {
namespace {  // internal linkage: see common.h

struct GruCell {
  static constexpr int kGates = 3;
  static constexpr int kSaved = 4;
  static constexpr bool kSumsProjections = false;  // n reads xg_n + r * hg_n
  // Whether the cell carries a cell state c besides h (its own c0, c_n, c_prev and dc).
  static constexpr bool kHasCellState = false;
  // Whether forward reads h_(t-1) of its own unit (where it writes h_t).
  static constexpr bool kReadsPreviousHidden = true;
  // Whether backward leaves in dh the part of dL/dh_(t-1) that bypasses W_hh (z * dh).
  static constexpr bool kDirectHiddenGradient = true;
  // Whether the rowwise ops (layer norms, zoneout: rowwise.h) take this cell.
  static constexpr bool kRowwise = true;

  template <typename L>
  static RNNK_HD void forward(const StepForward<typename L::Elem>& s, int64_t b, int64_t j) {
    using A = typename L::Value;
    const int64_t H = s.H;
    const auto* xg = s.xg + b * 3 * H + j;
    const auto hg = [&](int gate) { return recurrent_gate<L>(s, b, gate * H + j, 3 * H); };
    const A r = sigmoid(L::load(xg) + hg(0));
    const A z = sigmoid(L::load(xg + H) + hg(1));
    const A hg_n = hg(2);
    const A n = tanh_act(L::load(xg + 2 * H) + r * hg_n);
    const A h_prev = L::load(s.h + b * H + j);
    store_h<L>(s, b, j, (A(1) - z) * n + z * h_prev);
    auto* saved = s.saved + b * 4 * H + j;
    L::store(saved, r);
    L::store(saved + H, z);
    L::store(saved + 2 * H, n);
    L::store(saved + 3 * H, hg_n);
  }

  template <typename L>
  static RNNK_HD void backward(const StepBackward<typename L::Elem>& s, int64_t b, int64_t j) {
    using A = typename L::Value;
    const int64_t H = s.H;
    const auto* saved = s.saved + b * 4 * H + j;
    const A r = L::load(saved), z = L::load(saved + H), n = L::load(saved + 2 * H),
            hg_n = L::load(saved + 3 * H);
    const A h_prev = L::load(s.h_prev + b * H + j);
    const A dh = incoming_dh<L>(s, b * H + j);
    const A dn_pre = dh * (A(1) - z) * (A(1) - n * n);
    const A dr_pre = dn_pre * hg_n * r * (A(1) - r);
    const A dz_pre = dh * (h_prev - n) * z * (A(1) - z);
    auto* dxg = s.dxg + b * 3 * H + j;
    auto* dhg = s.dhg + b * 3 * H + j;
    L::store(dxg, dr_pre);
    L::store(dhg, dr_pre);
    L::store(dxg + H, dz_pre);
    L::store(dhg + H, dz_pre);
    L::store(dxg + 2 * H, dn_pre);
    L::store(dhg + 2 * H, dn_pre * r);
    L::store(s.dh + b * H + j, dh * z);
  }
};

}  // namespace
}  // namespace rnnk
