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
  // Whether the rowwise ops (layer norms, zoneout: rowwise.h) take this cell.
  static constexpr bool kRowwise = true;

  // The activated gates of unit(s) j of row b, as forward saves them.
  template <typename A>
  struct Gates {
    A i, f, g, o;
  };

  // The gates and the new cell state c' of unit(s) j of row b.
  template <typename A>
  struct Update {
    Gates<A> gates;
    A c;
  };

  // Stores c' and the gates (saved) and returns them: the LSTM's output is o * tanh(c'),
  // LayerNormLSTM's o * tanh(LN(c') * weight + bias).
  template <typename L>
  static RNNK_HD Update<typename L::Value> update(const StepForward<typename L::Elem>& s,
                                                  int64_t b, int64_t j) {
    using A = typename L::Value;
    const int64_t H = s.H;
    const auto* xg = s.xg + b * 4 * H + j;
    const auto hg = [&](int gate) { return recurrent_gate<L>(s, b, gate * H + j, 4 * H); };
    const Gates<A> gates{sigmoid(L::load(xg) + hg(0)), sigmoid(L::load(xg + H) + hg(1)),
                         tanh_act(L::load(xg + 2 * H) + hg(2)),
                         sigmoid(L::load(xg + 3 * H) + hg(3))};
    const A c_new = gates.f * L::load(s.c + b * H + j) + gates.i * gates.g;
    L::store(s.c + b * H + j, c_new);
    auto* saved = s.saved + b * 4 * H + j;
    L::store(saved, gates.i);
    L::store(saved + H, gates.f);
    L::store(saved + 2 * H, gates.g);
    L::store(saved + 3 * H, gates.o);
    return {gates, c_new};
  }

  // Hidden unit(s) j of row b; L says how many units one load covers (common.h).
  template <typename L>
  static RNNK_HD void forward(const StepForward<typename L::Elem>& s, int64_t b, int64_t j) {
    const auto next = update<L>(s, b, j);
    store_h<L>(s, b, j, next.gates.o * tanh_act(next.c));
  }

  // The output gate o of unit(s) j of row b as forward saved it.
  template <typename L>
  static RNNK_HD typename L::Value saved_output_gate(const typename L::Elem* saved, int64_t b,
                                                     int64_t j, int64_t H) {
    return L::load(saved + b * 4 * H + 3 * H + j);
  }

  template <typename L>
  static RNNK_HD Gates<typename L::Value> saved_gates(const StepBackward<typename L::Elem>& s,
                                                      int64_t b, int64_t j) {
    const auto* saved = s.saved + b * 4 * s.H + j;
    return {L::load(saved), L::load(saved + s.H), L::load(saved + 2 * s.H),
            L::load(saved + 3 * s.H)};
  }

  // Stores the gates' gradients and dL/dc_(t-1) from dc = dL/dc_t (carried and through
  // the output) and d_out = dL/do (dh times what o multiplies in the output).
  template <typename L>
  static RNNK_HD void store_gate_grads(const StepBackward<typename L::Elem>& s, int64_t b,
                                       int64_t j, const Gates<typename L::Value>& gates,
                                       typename L::Value dc, typename L::Value d_out) {
    using A = typename L::Value;
    const int64_t H = s.H;
    const A c_prev = L::load(s.c_prev + b * H + j);
    auto* dxg = s.dxg + b * 4 * H + j;
    L::store(dxg, dc * gates.g * gates.i * (A(1) - gates.i));
    L::store(dxg + H, dc * c_prev * gates.f * (A(1) - gates.f));
    L::store(dxg + 2 * H, dc * gates.i * (A(1) - gates.g * gates.g));
    L::store(dxg + 3 * H, d_out * gates.o * (A(1) - gates.o));
    L::store(s.dc + b * H + j, dc * gates.f);
  }

  template <typename L>
  static RNNK_HD void backward(const StepBackward<typename L::Elem>& s, int64_t b, int64_t j) {
    using A = typename L::Value;
    const int64_t H = s.H;
    const auto gates = saved_gates<L>(s, b, j);
    const A c_prev = L::load(s.c_prev + b * H + j);
    const A tanh_c = tanh_act(gates.f * c_prev + gates.i * gates.g);
    const A dh = incoming_dh<L>(s, b * H + j);
    const A dc = L::load(s.dc + b * H + j) + dh * gates.o * (A(1) - tanh_c * tanh_c);
    store_gate_grads<L>(s, b, j, gates, dc, dh * tanh_c);
  }
};

}  // namespace
}  // namespace rnnk
