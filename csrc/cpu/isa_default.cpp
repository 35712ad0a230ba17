// The pointwise passes for any x86-64 or other CPU (at::vec's portable fallback).
#define CPU_CAPABILITY DEFAULT
#define CPU_CAPABILITY_DEFAULT
#include "rows_kernel.h"
