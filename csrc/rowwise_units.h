// Each unit's math of the rowwise passes (rowwise.h), host+device over lanes L (common.h):
// the CPU passes (cpu/rowwise_kernel.h, SIMD lanes) and the CUDA ones (cuda/rowwise.cu, a
// thread per unit) call these and differ only in how they walk a row and reduce it (the
// layer norms' statistics are sums over the row, passed in here as the row's values).
#pragma once
#include "cells/layer_norm.h"
#include "rowwise.h"

namespace rnnk {
namespace {  // internal linkage: see cells/common.h

// Forward: unit(s) k of row b's recurrent projection (G*H wide) normalised with the row's
// mean and rstd: LN(W_hh h) kept, and scaled by ln_hh in place for the cell to read.
template <typename L>
RNNK_HD void normalise_projection(const RowwiseForward<typename L::Elem>& r, int64_t b,
                                  int64_t k, int64_t width, typename L::Elem mean,
                                  typename L::Elem rstd) {
  using A = typename L::Value;
  const int64_t at = b * width + k;
  const A v_hat = (L::load(r.hg + at) - A(mean)) * A(rstd);
  L::store(r.h_hat + at, v_hat);
  L::store(r.hg + at, v_hat * L::load(r.ln_hh + k));
}

// LayerNormLSTM's output of unit(s) j of row b, from c' and the row's mean and rstd of c':
// h' = o * tanh(LN(c') * ln_cell_w + ln_cell_b), LN(c') kept.
template <typename Cell, typename L>
RNNK_HD void normalised_cell_output(const RowwiseForward<typename L::Elem>& r, int64_t b,
                                    int64_t j, typename L::Elem mean, typename L::Elem rstd) {
  using A = typename L::Value;
  const StepForward<typename L::Elem>& s = r.step;
  const int64_t k = b * s.H + j;
  const A c_hat = (L::load(s.c + k) - A(mean)) * A(rstd);
  L::store(r.c_hat + k, c_hat);
  const A out = c_hat * L::load(r.ln_cell_w + j) + L::load(r.ln_cell_b + j);
  store_h<L>(s, b, j, Cell::template saved_output_gate<L>(s.saved, b, j, s.H) * tanh_act(out));
}

// Zoneout of unit(s) j of row b: h' <- m * h' + (1 - m) * h_(t-1), in h and the output row
// (a 0/1 mask yields one of the two exactly).
template <typename L>
RNNK_HD void zone_out(const RowwiseForward<typename L::Elem>& r, int64_t b, int64_t j) {
  using A = typename L::Value;
  const StepForward<typename L::Elem>& s = r.step;
  const int64_t k = b * s.H + j;
  const A m = L::load(r.zoneout + k);
  store_h<L>(s, b, j, m * L::load(s.h + k) + (A(1) - m) * L::load(s.h_keep + k));
}

// Backward: dL/dh_t of unit(s) k, the carried part and the output's, into dh; zoning out,
// only m of it reaches the cell's new state and 1 - m goes straight to h_(t-1) (dh_direct).
template <typename L>
RNNK_HD void split_incoming(const RowwiseBackward<typename L::Elem>& r, int64_t k) {
  using A = typename L::Value;
  A dh = incoming_dh<L>(r.step, k);
  if (r.zoneout != nullptr) {
    const A m = L::load(r.zoneout + k);
    L::store(r.dh_direct + k, (A(1) - m) * dh);
    dh = m * dh;
  }
  L::store(r.step.dh + k, dh);
}

// LayerNormLSTM: tanh of unit(s) j's normalised cell state as the output reads it.
template <typename L>
RNNK_HD typename L::Value normalised_cell_tanh(const RowwiseBackward<typename L::Elem>& r,
                                               int64_t b, int64_t j) {
  const int64_t k = b * r.step.H + j;
  return tanh_act(L::load(r.c_hat + k) * L::load(r.ln_cell_w + j) + L::load(r.ln_cell_b + j));
}

// LayerNormLSTM: dL/d(LN(c') * ln_cell_w + ln_cell_b) of unit(s) j into d_cell_out.
template <typename Cell, typename L>
RNNK_HD void normalised_cell_output_grad(const RowwiseBackward<typename L::Elem>& r, int64_t b,
                                         int64_t j) {
  using A = typename L::Value;
  const StepBackward<typename L::Elem>& s = r.step;
  const int64_t k = b * s.H + j;
  const A t = normalised_cell_tanh<L>(r, b, j);
  const A o = Cell::template saved_output_gate<L>(s.saved, b, j, s.H);
  L::store(r.d_cell_out + k, L::load(s.dh + k) * o * (A(1) - t * t));
}

// The summands of the row means layer_norm_grad takes, on a row's arrays: g = grad * weight
// at unit(s) k, and g * v_hat.
template <typename L>
RNNK_HD typename L::Value weighted_grad(const typename L::Elem* grad,
                                        const typename L::Elem* weight, int64_t k) {
  return L::load(grad + k) * L::load(weight + k);
}

template <typename L>
RNNK_HD typename L::Value weighted_grad_v_hat(const typename L::Elem* grad,
                                              const typename L::Elem* weight,
                                              const typename L::Elem* v_hat, int64_t k) {
  return weighted_grad<L>(grad, weight, k) * L::load(v_hat + k);
}

// LayerNormLSTM: unit(s) j's gate gradients and dL/dc_(t-1), dL/dc' taking the path
// through LN(c') (the row's rstd of c' and the means of d_cell_out's layer_norm_grad).
template <typename Cell, typename L>
RNNK_HD void normalised_cell_backward(const RowwiseBackward<typename L::Elem>& r,
                                      const StepBackward<typename L::Elem>& s, int64_t b,
                                      int64_t j, typename L::Elem rstd, typename L::Elem mean_g,
                                      typename L::Elem mean_g_v_hat) {
  using A = typename L::Value;
  const int64_t k = b * s.H + j;
  const A g = weighted_grad<L>(r.d_cell_out + b * s.H, r.ln_cell_w, j);
  const A dc = L::load(s.dc + k) + layer_norm_grad(g, L::load(r.c_hat + k), A(rstd),
                                                   A(mean_g), A(mean_g_v_hat));
  Cell::template store_gate_grads<L>(s, b, j, Cell::template saved_gates<L>(s, b, j), dc,
                                     L::load(s.dh + k) * normalised_cell_tanh<L>(r, b, j));
}

// Zoneout: the direct part of dL/dh_(t-1) at unit(s) k, (1 - m) dL/dh_t plus the cell's
// own (GRU's z * dh), where the recurrent GEMM adds its part.
template <typename Cell, typename L>
RNNK_HD void direct_hidden_grad(const RowwiseBackward<typename L::Elem>& r,
                                const StepBackward<typename L::Elem>& s, int64_t k) {
  auto direct = L::load(r.dh_direct + k);
  if constexpr (Cell::kDirectHiddenGradient) direct = direct + L::load(s.dh + k);
  L::store(s.dh + k, direct);
}

// dL/d(W_hh h) at unit(s) k of row b from the normalised projection's gradient, with the
// row's rstd of W_hh h and its means of layer_norm_grad.
template <typename L>
RNNK_HD void raw_projection_grad(const RowwiseBackward<typename L::Elem>& r,
                                 const StepBackward<typename L::Elem>& s, int64_t b, int64_t k,
                                 int64_t width, typename L::Elem rstd, typename L::Elem mean_g,
                                 typename L::Elem mean_g_v_hat) {
  using A = typename L::Value;
  const int64_t at = b * width + k;
  L::store(r.dhg_raw + at, layer_norm_grad(L::load(s.dhg + at) * L::load(r.ln_hh + k),
                                           L::load(r.h_hat + at), A(rstd), A(mean_g),
                                           A(mean_g_v_hat)));
}

}  // namespace
}  // namespace rnnk
