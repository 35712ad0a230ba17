// The CPU kernels (pointwise passes, persistent sequences) for any CPU (at::vec's portable
// fallback).
#define CPU_CAPABILITY DEFAULT
#define CPU_CAPABILITY_DEFAULT
#include "rows_kernel.h"
#include "sequence_kernel.h"
