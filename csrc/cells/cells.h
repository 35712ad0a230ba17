// The closed set of cells, and one switch that maps a runtime kind to its math type.
#pragma once
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "gru.h"
#include "lstm.h"
#include "rnn.h"

namespace rnnk {

enum class CellKind : int { Lstm, Gru, RnnTanh, RnnRelu };

// Each kind's name, indexed by its value: the prefix of its ops' names, and the key
// Python looks kinds up by (rnnkernels._C.cell_kinds).
inline constexpr const char* kCellNames[] = {"lstm", "gru", "rnn_tanh", "rnn_relu"};
inline constexpr int kCellKinds = 4;

namespace {  // internal linkage: see common.h

// Calls f(Cell{}) with the cell type for `kind`; every kernel dispatches through here.
template <typename F>
decltype(auto) visit_cell(CellKind kind, F&& f) {
  switch (kind) {
    case CellKind::Lstm:
      return f(LstmCell{});
    case CellKind::Gru:
      return f(GruCell{});
    case CellKind::RnnTanh:
      return f(RnnTanhCell{});
    case CellKind::RnnRelu:
      return f(RnnReluCell{});
  }
  // Host code only (kernels get their cell as a type): the ops' entry points check kinds,
  // so this is a bug, never a silently chosen cell.
  throw std::invalid_argument("rnnkernels: unknown cell kind " +
                              std::to_string(static_cast<int>(kind)));
}

// Calls f(std::integral_constant<CellKind, K>{}) for every kind K of the table, in order:
// for code that needs each kind at compile time (the ops' registrations).
template <typename F, int... K>
void for_each_cell_kind(const F& f, std::integer_sequence<int, K...>) {
  (f(std::integral_constant<CellKind, static_cast<CellKind>(K)>{}), ...);
}

template <typename F>
void for_each_cell_kind(const F& f) {
  for_each_cell_kind(f, std::make_integer_sequence<int, kCellKinds>());
}

inline int cell_gates(CellKind kind) {
  return visit_cell(kind, [](auto cell) { return decltype(cell)::kGates; });
}

inline int cell_saved(CellKind kind) {
  return visit_cell(kind, [](auto cell) { return decltype(cell)::kSaved; });
}

// Whether the cell only ever reads xg + hg, so that b_ih may as well sit in hg.
inline bool cell_sums_projections(CellKind kind) {
  return visit_cell(kind, [](auto cell) { return decltype(cell)::kSumsProjections; });
}

// Whether the cell carries a cell state c (LSTM).
inline bool cell_has_cell_state(CellKind kind) {
  return visit_cell(kind, [](auto cell) { return decltype(cell)::kHasCellState; });
}

// Whether the cell's backward leaves a direct part of dL/dh_(t-1) in dh, which the
// recurrent GEMM then adds to instead of overwriting.
inline bool cell_direct_hidden_gradient(CellKind kind) {
  return visit_cell(kind, [](auto cell) { return decltype(cell)::kDirectHiddenGradient; });
}

// Whether the rowwise ops (layer norms, zoneout) take the cell.
inline bool cell_rowwise(CellKind kind) {
  return visit_cell(kind, [](auto cell) { return decltype(cell)::kRowwise; });
}

}  // namespace
}  // namespace rnnk
