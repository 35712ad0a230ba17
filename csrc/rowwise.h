// One time step of the cells whose step needs whole rows: the layer-normalised cells
// (a row's statistics span all its units) and zoneout (which mixes each unit's new and
// previous state). The pass over a row does every write of the step but the recurrent
// GEMM's, as the pointwise pass (pointwise.h) does for the plain cells, whose math it
// runs between the normalisation and the zoneout.
#pragma once
#include <cstdint>

#include "cells/cells.h"

namespace rnnk {

// Forward: `step` holds the plain cell's arrays with xg the finished input side (layer
// normalised and scaled where the cell is), hg the raw recurrent GEMM W_hh h (no bias:
// step.b_hh adds it), h_keep non-null when zoning out. The fields below are null where
// the cell has no layer norm or the layer no zoneout.
template <typename T>
struct RowwiseForward {
  StepForward<T> step;
  T* hg;                      // [n, G*H] in: W_hh h; out: LN(W_hh h) * ln_hh (step.hg)
  const T* ln_hh = nullptr;   // [G*H] the recurrent projection's LN weight
  const T* ln_cell_w = nullptr;  // [H] LayerNormLSTM: the cell state's LN weight, bias
  const T* ln_cell_b = nullptr;
  T* h_hat = nullptr;         // [n, G*H] out: LN(W_hh h)
  T* c_hat = nullptr;         // [n, H] out: LN(c') (LayerNormLSTM)
  T* rstd = nullptr;          // [n, 2] out: rstd of W_hh h and of c'
  const T* zoneout = nullptr;  // [n, H] the mask m: h' <- m * h' + (1 - m) * h
};

// Backward: `step` as for the plain cell (step.dhg is dL/d(LN(W_hh h) * ln_hh + b_hh)),
// with step.grad_h folded into dh by the pass.
template <typename T>
struct RowwiseBackward {
  StepBackward<T> step;
  const T* ln_hh = nullptr;
  const T* ln_cell_w = nullptr;
  const T* ln_cell_b = nullptr;
  const T* h_hat = nullptr;
  const T* c_hat = nullptr;
  const T* rstd = nullptr;
  T* dhg_raw = nullptr;   // [n, G*H] out: dL/d(W_hh h), what the recurrent GEMM reads
  T* d_cell_out = nullptr;  // [n, H] out: dL/d(LN(c') * ln_cell_w + ln_cell_b) (LayerNormLSTM)
  const T* zoneout = nullptr;
  T* dh_direct = nullptr;  // [n, H] scratch (zoneout): (1 - m) * dL/dh_t
};

// The passes over `rows` rows (float, double), parallel over rows: on the CPU, and
// (cuda/rowwise_glue.cpp) on CUDA pointers, launched on the current stream.
template <typename T>
void rowwise_forward_rows(CellKind kind, const RowwiseForward<T>& step, int64_t rows);
template <typename T>
void rowwise_backward_rows(CellKind kind, const RowwiseBackward<T>& step, int64_t rows);
#ifdef RNNK_WITH_CUDA
template <typename T>
void cuda_rowwise_forward_rows(CellKind kind, const RowwiseForward<T>& step, int64_t rows);
template <typename T>
void cuda_rowwise_backward_rows(CellKind kind, const RowwiseBackward<T>& step, int64_t rows);
#endif

}  // namespace rnnk
