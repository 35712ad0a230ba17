// CUDA's 16-bit types in the cell math: stored in 16 bits, computed in float (torch builds
// CUDA with implicit half conversions off, so the conversions are spelled out).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../cells/common.h"

namespace rnnk {
namespace {  // where OpMath lives (cells/common.h)

template <>
struct OpMath<__half> {
  using type = float;
  static RNNK_HD float load(__half v) { return __half2float(v); }
  static RNNK_HD __half store(float v) { return __float2half_rn(v); }
};

template <>
struct OpMath<__nv_bfloat16> {
  using type = float;
  static RNNK_HD float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static RNNK_HD __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

}  // namespace
}  // namespace rnnk
