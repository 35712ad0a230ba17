// CPU pointwise passes over rows [begin, end) of one step, compiled once per instruction
// set (isa_{default,avx2,avx512}.cpp); pointwise.cpp picks one at run time.
#pragma once
#include <cstdint>

#include "../cells/cells.h"
#include "../rowwise.h"

#define RNNK_DECLARE_ROWS(capability)                                                        \
  namespace rnnk::capability {                                                               \
  void forward_rows(CellKind, const StepForward<float>&, int64_t begin, int64_t end);        \
  void forward_rows(CellKind, const StepForward<double>&, int64_t begin, int64_t end);       \
  void backward_rows(CellKind, const StepBackward<float>&, int64_t begin, int64_t end);      \
  void backward_rows(CellKind, const StepBackward<double>&, int64_t begin, int64_t end);     \
  void rowwise_forward_rows(CellKind, const RowwiseForward<float>&, int64_t, int64_t);       \
  void rowwise_forward_rows(CellKind, const RowwiseForward<double>&, int64_t, int64_t);      \
  void rowwise_backward_rows(CellKind, const RowwiseBackward<float>&, int64_t, int64_t);     \
  void rowwise_backward_rows(CellKind, const RowwiseBackward<double>&, int64_t, int64_t);    \
  }

RNNK_DECLARE_ROWS(DEFAULT)
RNNK_DECLARE_ROWS(AVX2)
RNNK_DECLARE_ROWS(AVX512)
#undef RNNK_DECLARE_ROWS
