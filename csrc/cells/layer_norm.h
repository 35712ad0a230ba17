// The layer normalisation of LayerNormLSTM and LayerNormGRU, on whatever a kernel computes
// with (a scalar or SIMD lanes): LN(v) = (v - mean(v)) * rstd, rstd = 1 / sqrt(var(v) + eps)
// over one row, biased variance. A kernel reduces the row itself (its threads split it)
// and applies these per unit.
#pragma once
#include "common.h"

namespace rnnk {
namespace {  // internal linkage: see common.h

inline constexpr double kLayerNormEps = 1e-5;

// rstd from a row's biased variance.
template <typename A>
RNNK_HD A layer_norm_rstd(A variance) {
  return A(1) / std::sqrt(variance + A(kLayerNormEps));
}

// dL/dv of unit(s) of a row from g = dL/dLN(v) there, LN(v) there (v_hat), the row's rstd
// and the row means of g and of g * v_hat: the mean and the variance depend on every unit,
// so each unit's gradient loses the row's mean gradient and its projection on v_hat.
template <typename A>
RNNK_HD A layer_norm_grad(A g, A v_hat, A rstd, A mean_g, A mean_g_v_hat) {
  return rstd * (g - mean_g - v_hat * mean_g_v_hat);
}

}  // namespace
}  // namespace rnnk
