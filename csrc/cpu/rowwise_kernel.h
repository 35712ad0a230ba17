// Part of the body of isa_{default,avx2,avx512}.cpp, after rows_kernel.h (its lanes): the
// rowwise step passes (rowwise.h) over rows [begin, end) of one step. A row's layer-norm
// statistics are reductions over its units, so a row is one task: each pass reads the row
// once for the statistics and once to apply them.
#include "../cells/layer_norm.h"
#include "../rowwise.h"

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

// The row means of g and of g * v_hat, g = grad * weight (layer_norm_grad's arguments).
template <typename T>
struct GradMeans {
  T g, g_v_hat;
};

template <typename T>
inline GradMeans<T> grad_means(const T* grad, const T* weight, const T* v_hat, int64_t n) {
  const T mean_g = sum_units<T>(n, [&](auto lanes, int64_t j) {
    using L = decltype(lanes);
    return L::load(grad + j) * L::load(weight + j);
  }) / T(n);
  const T mean_g_v_hat = sum_units<T>(n, [&](auto lanes, int64_t j) {
    using L = decltype(lanes);
    return L::load(grad + j) * L::load(weight + j) * L::load(v_hat + j);
  }) / T(n);
  return {mean_g, mean_g_v_hat};
}

template <typename Cell, typename T>
void rowwise_forward_row(const RowwiseForward<T>& r, int64_t b) {
  const StepForward<T>& s = r.step;
  const int64_t H = s.H, GH = Cell::kGates * H;
  each_unit<T>(H, [&](auto lanes, int64_t j) { keep_inputs<decltype(lanes)>(s, b, j); });
  if (r.ln_hh != nullptr) {
    T* hg = r.hg + b * GH;
    T* h_hat = r.h_hat + b * GH;
    const RowStats<T> stats = row_stats(hg, GH);
    each_unit<T>(GH, [&](auto lanes, int64_t k) {
      using L = decltype(lanes);
      using A = typename L::Value;
      const A v_hat = (L::load(hg + k) - A(stats.mean)) * A(stats.rstd);
      L::store(h_hat + k, v_hat);
      L::store(hg + k, v_hat * L::load(r.ln_hh + k));
    });
    r.rstd[b * 2] = stats.rstd;
  }
  bool cell_done = false;
  if constexpr (Cell::kHasCellState) {
    if (r.ln_cell_w != nullptr) {
      each_unit<T>(H, [&](auto lanes, int64_t j) { Cell::template update<decltype(lanes)>(s, b, j); });
      const T* c = s.c + b * H;
      const RowStats<T> stats = row_stats(c, H);
      r.rstd[b * 2 + 1] = stats.rstd;
      each_unit<T>(H, [&](auto lanes, int64_t j) {
        using L = decltype(lanes);
        using A = typename L::Value;
        const A c_hat = (L::load(c + j) - A(stats.mean)) * A(stats.rstd);
        L::store(r.c_hat + b * H + j, c_hat);
        const A o = L::load(s.saved + b * 4 * H + 3 * H + j);
        const A out = c_hat * L::load(r.ln_cell_w + j) + L::load(r.ln_cell_b + j);
        store_h<L>(s, b, j, o * tanh_act(out));
      });
      cell_done = true;
    }
  }
  if (!cell_done) {
    each_unit<T>(H, [&](auto lanes, int64_t j) { Cell::template forward<decltype(lanes)>(s, b, j); });
  }
  if (r.zoneout != nullptr) {
    each_unit<T>(H, [&](auto lanes, int64_t j) {
      using L = decltype(lanes);
      using A = typename L::Value;
      const int64_t k = b * H + j;
      const A m = L::load(r.zoneout + k);
      store_h<L>(s, b, j, m * L::load(s.h + k) + (A(1) - m) * L::load(s.h_keep + k));
    });
  }
}

template <typename Cell, typename T>
void rowwise_backward_row(const RowwiseBackward<T>& r, int64_t b) {
  StepBackward<T> s = r.step;
  s.grad_h = nullptr;  // folded into dh first
  const int64_t H = s.H, GH = Cell::kGates * H;
  // dL/dh_t, carried and the output's; zoning out, m of it reaches the cell's new state
  // and 1 - m goes straight to h_(t-1).
  each_unit<T>(H, [&](auto lanes, int64_t j) {
    using L = decltype(lanes);
    using A = typename L::Value;
    const int64_t k = b * H + j;
    A dh = incoming_dh<L>(r.step, k);
    if (r.zoneout != nullptr) {
      const A m = L::load(r.zoneout + k);
      L::store(r.dh_direct + k, (A(1) - m) * dh);
      dh = m * dh;
    }
    L::store(s.dh + k, dh);
  });
  bool cell_done = false;
  if constexpr (Cell::kHasCellState) {
    if (r.ln_cell_w != nullptr) {
      const T* c_hat = r.c_hat + b * H;
      T* d_out = r.d_cell_out + b * H;
      const auto out_tanh = [&](auto lanes, int64_t j) {
        using L = decltype(lanes);
        return tanh_act(L::load(c_hat + j) * L::load(r.ln_cell_w + j) +
                        L::load(r.ln_cell_b + j));
      };
      each_unit<T>(H, [&](auto lanes, int64_t j) {
        using L = decltype(lanes);
        using A = typename L::Value;
        const A t = out_tanh(lanes, j);
        const A o = L::load(s.saved + b * 4 * H + 3 * H + j);
        L::store(d_out + j, L::load(s.dh + b * H + j) * o * (A(1) - t * t));
      });
      const GradMeans<T> means = grad_means(d_out, r.ln_cell_w, c_hat, H);
      const T rstd = r.rstd[b * 2 + 1];
      each_unit<T>(H, [&](auto lanes, int64_t j) {
        using L = decltype(lanes);
        using A = typename L::Value;
        const A g = L::load(d_out + j) * L::load(r.ln_cell_w + j);
        const A dc = L::load(s.dc + b * H + j) +
                     layer_norm_grad(g, L::load(c_hat + j), A(rstd), A(means.g), A(means.g_v_hat));
        const auto gates = Cell::template saved_gates<L>(s, b, j);
        Cell::template store_gate_grads<L>(s, b, j, gates, dc,
                                           L::load(s.dh + b * H + j) * out_tanh(lanes, j));
      });
      cell_done = true;
    }
  }
  if (!cell_done) {
    each_unit<T>(H, [&](auto lanes, int64_t j) { Cell::template backward<decltype(lanes)>(s, b, j); });
  }
  if (r.zoneout != nullptr) {
    each_unit<T>(H, [&](auto lanes, int64_t j) {
      using L = decltype(lanes);
      const int64_t k = b * H + j;
      auto direct = L::load(r.dh_direct + k);
      if constexpr (Cell::kDirectHiddenGradient) direct = direct + L::load(s.dh + k);
      L::store(s.dh + k, direct);
    });
  }
  if (r.ln_hh != nullptr) {
    const T* dhg = s.dhg + b * GH;
    const T* h_hat = r.h_hat + b * GH;
    const GradMeans<T> means = grad_means(dhg, r.ln_hh, h_hat, GH);
    const T rstd = r.rstd[b * 2];
    each_unit<T>(GH, [&](auto lanes, int64_t k) {
      using L = decltype(lanes);
      using A = typename L::Value;
      L::store(r.dhg_raw + b * GH + k,
               layer_norm_grad(L::load(dhg + k) * L::load(r.ln_hh + k), L::load(h_hat + k),
                               A(rstd), A(means.g), A(means.g_v_hat)));
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
