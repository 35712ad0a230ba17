#include "step_ops.h"

#include <ATen/ATen.h>
#include <dlfcn.h>

#include <cstring>

namespace rnnk {
namespace {

// Fortran BLAS, as exported by the BLAS that torch links (MKL in x86 wheels). Looked up
// at run time so that a torch without it still loads this extension (and uses ATen).
template <typename T>
using Gemm = void (*)(const char*, const char*, const int*, const int*, const int*, const T*,
                      const T*, const int*, const T*, const int*, const T*, T*, const int*);

template <typename T>
Gemm<T> blas_gemm() {
  static const Gemm<T> fn = reinterpret_cast<Gemm<T>>(
      dlsym(RTLD_DEFAULT, std::is_same_v<T, float> ? "sgemm_" : "dgemm_"));
  return fn;
}

}  // namespace

bool cpu_blas_available(at::ScalarType dtype) {
  if (dtype == at::kFloat) return blas_gemm<float>() != nullptr;
  if (dtype == at::kDouble) return blas_gemm<double>() != nullptr;
  return false;
}

template <typename T>
void cpu_gemm_rows(int64_t rows, int64_t cols, int64_t inner, const T* a, const T* w,
                   bool transpose_w, T* out, bool accumulate) {
  if (rows == 0 || cols == 0) return;
  if (inner == 0) {  // BLAS refuses a leading dimension of 0
    if (!accumulate) std::memset(out, 0, rows * cols * sizeof(T));
    return;
  }
  // Row-major out[rows, cols] is column-major out^T; so out^T = op(w)^T a^T.
  const int m = static_cast<int>(cols), n = static_cast<int>(rows), k = static_cast<int>(inner);
  const int lda = static_cast<int>(transpose_w ? inner : cols), ldb = k, ldc = m;
  const T alpha = T(1), beta = accumulate ? T(1) : T(0);
  blas_gemm<T>()(transpose_w ? "T" : "N", "N", &m, &n, &k, &alpha, w, &lda, a, &ldb, &beta, out,
                 &ldc);
}

template <typename T>
void cpu_gemm_tn(int64_t rows, int64_t cols, int64_t inner, const T* a, const T* b, T* out,
                 bool accumulate) {
  if (rows == 0 || cols == 0) return;
  if (inner == 0) {
    if (!accumulate) std::memset(out, 0, rows * cols * sizeof(T));
    return;
  }
  // Column-major out^T [cols, rows] = b^T a: b is column-major [cols, inner] as stored,
  // a column-major [rows, inner], transposed.
  const int m = static_cast<int>(cols), n = static_cast<int>(rows), k = static_cast<int>(inner);
  const T alpha = T(1), beta = accumulate ? T(1) : T(0);
  blas_gemm<T>()("N", "T", &m, &n, &k, &alpha, b, &m, a, &n, &beta, out, &m);
}

template void cpu_gemm_rows<float>(int64_t, int64_t, int64_t, const float*, const float*, bool,
                                   float*, bool);
template void cpu_gemm_rows<double>(int64_t, int64_t, int64_t, const double*, const double*,
                                    bool, double*, bool);
template void cpu_gemm_tn<float>(int64_t, int64_t, int64_t, const float*, const float*, float*,
                                 bool);
template void cpu_gemm_tn<double>(int64_t, int64_t, int64_t, const double*, const double*,
                                  double*, bool);

}  // namespace rnnk
