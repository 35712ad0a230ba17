// One time step's fused pointwise pass on the CPU, over the n active rows; see
// StepForward/StepBackward for each array's role.
#pragma once
#include <cstdint>

#include "cells/cells.h"

namespace rnnk {

// The forward and backward passes over `rows` rows of raw arrays (float, double).
template <typename T>
void pointwise_forward_rows(CellKind kind, const StepForward<T>& step, int64_t rows);
template <typename T>
void pointwise_backward_rows(CellKind kind, const StepBackward<T>& step, int64_t rows);

}  // namespace rnnk
