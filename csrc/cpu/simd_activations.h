// exp and 1/x on at::vec::Vectorized, the two pieces every activation of the cell math is
// built from (rows_kernel.h's Math<>). Part of each isa_*.cpp through rows_kernel.h, so
// CPU_CAPABILITY_AVX512 says whether this unit targets AVX-512.
#pragma once
#include <ATen/cpu/vec/vec.h>

#include <cfloat>

namespace rnnk {
namespace {

// at::vec's polynomial exp (Sleef's for double); it clamps, so NaN is put back.
template <typename S>
at::vec::Vectorized<S> simd_exp(at::vec::Vectorized<S> x) {
  return at::vec::Vectorized<S>::blendv(x.exp_u20(), x, x != x);
}

template <typename S>
at::vec::Vectorized<S> simd_reciprocal(at::vec::Vectorized<S> x) {
  return at::vec::Vectorized<S>(S(1)) / x;
}

#if defined(CPU_CAPABILITY_AVX512)

// exp(x) = 2^n e^r with n = round(x / ln 2) and r = x - n ln 2 (ln 2 in two parts, so n ln 2
// is exact to float's precision for every n that matters), |r| <= ln 2 / 2; e^r is its
// Taylor polynomial of degree 6 (truncation below 1.2e-7 relative) and vscalefps applies
// 2^n, which yields inf past the float range and 0 below it. x is first clamped where
// e^x is inf or 0 anyway (min/max with x second keep a NaN x: it propagates).
inline at::vec::Vectorized<float> simd_exp(at::vec::Vectorized<float> x) {
  const __m512 v = _mm512_max_ps(_mm512_set1_ps(-104.f), _mm512_min_ps(_mm512_set1_ps(89.f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), v);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// 1/x for x >= 1 or NaN: vrcp14ps (relative error below 2^-14) and one Newton step, within
// about 1 ulp, where a division costs several times as long. x is capped at FLT_MAX first:
// vrcp14ps(inf) is 0, and inf * 0 would make the Newton step NaN (a NaN x stays NaN).
inline at::vec::Vectorized<float> simd_reciprocal(at::vec::Vectorized<float> x) {
  const __m512 v = _mm512_min_ps(_mm512_set1_ps(FLT_MAX), x);
  const __m512 r = _mm512_rcp14_ps(v);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(v, r, _mm512_set1_ps(1.f)), r);
}

#endif

}  // namespace
}  // namespace rnnk
