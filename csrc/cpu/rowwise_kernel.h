// Part of the body of isa_{default,avx2,avx512}.cpp, after rows_kernel.h (its lanes): the
// rowwise step passes (rowwise.h) over rows [begin, end) of one step: each unit's math is
// rowwise_units.h's; here, how a row is walked (SIMD lanes) and reduced. A row's layer-norm
// statistics are reductions over its units, so a row is one task: each pass reads the row
// once for the statistics and once to apply them.
#include "../cells/layer_norm.h"
#include "../rowwise.h"
#include "../rowwise_units.h"

namespace rnnk {
namespace CPU_CAPABILITY {
namespace {

// Calls f(lanes, j) for units [0, n): a vector at a time, then one unit at a time.
template <typename T, typename F>
inline void each_unit(int64_t n, const F& f) {
  constexpr int64_t kVector = at::vec::Vectorized<T>::size();
  int64_t j = 0;
  for (; j + kVector <= n; j += kVector) f(VectorLanes<T>{}, j);
  for (; j < n; ++j) f(ScalarLanes<T>{}, j);
}

// The sum over units [0, n) of f(lanes, j).
template <typename T, typename F>
inline T sum_units(int64_t n, const F& f) {
  using V = at::vec::Vectorized<T>;
  V lanes_sum(T(0));
  T sum = 0;
  int64_t j = 0;
  for (; j + V::size() <= n; j += V::size()) lanes_sum = lanes_sum + f(VectorLanes<T>{}, j);
  for (; j < n; ++j) sum += f(ScalarLanes<T>{}, j);
  T parts[V::size()];
  lanes_sum.store(parts);
  for (const T part : parts) sum += part;
  return sum;
}

template <typename T>
struct RowStats {
  T mean, rstd;
};

// The mean and rstd of v[0, n), the variance from the mean (two passes: the one-pass
// formula loses the variance of rows far from zero to cancellation).
template <typename T>
inline RowStats<T> row_stats(const T* v, int64_t n) {
  const T mean = sum_units<T>(n, [&](auto lanes, int64_t j) {
    return decltype(lanes)::load(v + j);
  }) / T(n);
  const T variance = sum_units<T>(n, [&](auto lanes, int64_t j) {
    using L = decltype(lanes);
    const auto d = L::load(v + j) - typename L::Value(mean);
    return d * d;
  }) / T(n);
  return {mean, layer_norm_rstd(variance)};
}

// The row means of g and of g * v_hat, g = grad * weight (layer_norm_grad's arguments),
// over a row's arrays.
template <typename T>
struct GradMeans {
  T g, g_v_hat;
};

template <typename T>
inline GradMeans<T> grad_means(const T* grad, const T* weight, const T* v_hat, int64_t n) {
  const T mean_g = sum_units<T>(n, [&](auto lanes, int64_t k) {
    return weighted_grad<decltype(lanes)>(grad, weight, k);
  }) / T(n);
  const T mean_g_v_hat = sum_units<T>(n, [&](auto lanes, int64_t k) {
    return weighted_grad_v_hat<decltype(lanes)>(grad, weight, v_hat, k);
  }) / T(n);
  return {mean_g, mean_g_v_hat};
}

template <typename Cell, typename T>
void rowwise_forward_row(const RowwiseForward<T>& r, int64_t b) {
  const StepForward<T>& s = r.step;
  const int64_t H = s.H, GH = Cell::kGates * H;
  each_unit<T>(H, [&](auto lanes, int64_t j) { keep_inputs<decltype(lanes)>(s, b, j); });
  if (r.ln_hh != nullptr) {
    const RowStats<T> stats = row_stats(r.hg + b * GH, GH);
    each_unit<T>(GH, [&](auto lanes, int64_t k) {
      normalise_projection<decltype(lanes)>(r, b, k, GH, stats.mean, stats.rstd);
    });
    r.rstd[b * 2] = stats.rstd;
  }
  bool cell_done = false;
  if constexpr (Cell::kHasCellState) {
    if (r.ln_cell_w != nullptr) {
      each_unit<T>(H, [&](auto lanes, int64_t j) { Cell::template update<decltype(lanes)>(s, b, j); });
      const RowStats<T> stats = row_stats(s.c + b * H, H);
      r.rstd[b * 2 + 1] = stats.rstd;
      each_unit<T>(H, [&](auto lanes, int64_t j) {
        normalised_cell_output<Cell, decltype(lanes)>(r, b, j, stats.mean, stats.rstd);
      });
      cell_done = true;
    }
  }
  if (!cell_done) {
    each_unit<T>(H, [&](auto lanes, int64_t j) { Cell::template forward<decltype(lanes)>(s, b, j); });
  }
  if (r.zoneout != nullptr) {
    each_unit<T>(H, [&](auto lanes, int64_t j) { zone_out<decltype(lanes)>(r, b, j); });
  }
}

template <typename Cell, typename T>
void rowwise_backward_row(const RowwiseBackward<T>& r, int64_t b) {
  StepBackward<T> s = r.step;
  s.grad_h = nullptr;  // split_incoming folds it into dh
  const int64_t H = s.H, GH = Cell::kGates * H;
  each_unit<T>(H, [&](auto lanes, int64_t j) { split_incoming<decltype(lanes)>(r, b * H + j); });
  bool cell_done = false;
  if constexpr (Cell::kHasCellState) {
    if (r.ln_cell_w != nullptr) {
      each_unit<T>(H, [&](auto lanes, int64_t j) {
        normalised_cell_output_grad<Cell, decltype(lanes)>(r, b, j);
      });
      const GradMeans<T> means =
          grad_means(r.d_cell_out + b * H, r.ln_cell_w, r.c_hat + b * H, H);
      const T rstd = r.rstd[b * 2 + 1];
      each_unit<T>(H, [&](auto lanes, int64_t j) {
        normalised_cell_backward<Cell, decltype(lanes)>(r, s, b, j, rstd, means.g,
                                                        means.g_v_hat);
      });
      cell_done = true;
    }
  }
  if (!cell_done) {
    each_unit<T>(H, [&](auto lanes, int64_t j) { Cell::template backward<decltype(lanes)>(s, b, j); });
  }
  if (r.zoneout != nullptr) {
    each_unit<T>(H, [&](auto lanes, int64_t j) {
      direct_hidden_grad<Cell, decltype(lanes)>(r, s, b * H + j);
    });
  }
  if (r.ln_hh != nullptr) {
    const GradMeans<T> means = grad_means(s.dhg + b * GH, r.ln_hh, r.h_hat + b * GH, GH);
    const T rstd = r.rstd[b * 2];
    each_unit<T>(GH, [&](auto lanes, int64_t k) {
      raw_projection_grad<decltype(lanes)>(r, s, b, k, GH, rstd, means.g, means.g_v_hat);
    });
  }
}

template <typename RowFn>
void each_row(CellKind kind, int64_t begin, int64_t end, const RowFn& row) {
  visit_cell(kind, [&](auto cell) {
    for (int64_t b = begin; b < end; ++b) row(cell, b);
  });
}

}  // namespace

#define RNNK_ROWWISE_PASSES(T)                                                               \
  void rowwise_forward_rows(CellKind kind, const RowwiseForward<T>& step, int64_t begin,     \
                            int64_t end) {                                                   \
    each_row(kind, begin, end, [&](auto cell, int64_t b) {                             \
      rowwise_forward_row<decltype(cell)>(step, b);                                          \
    });                                                                                      \
  }                                                                                          \
  void rowwise_backward_rows(CellKind kind, const RowwiseBackward<T>& step, int64_t begin,   \
                             int64_t end) {                                                  \
    each_row(kind, begin, end, [&](auto cell, int64_t b) {                             \
      rowwise_backward_row<decltype(cell)>(step, b);                                         \
    });                                                                                      \
  }
RNNK_ROWWISE_PASSES(float)
RNNK_ROWWISE_PASSES(double)
#undef RNNK_ROWWISE_PASSES

}  // namespace CPU_CAPABILITY
}  // namespace rnnk
