// The CPU kernels (pointwise and rowwise passes, persistent sequences, a step's projections) for
// any CPU (at::vec's portable fallback).
#define CPU_CAPABILITY DEFAULT
#define CPU_CAPABILITY_DEFAULT
#include "rows_kernel.h"
#include "rowwise_kernel.h"
#include "sequence_kernel.h"
#include "dot_gemm_kernel.h"
