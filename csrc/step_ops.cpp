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

bool direct_cpu(const at::Tensor& t) {
  return t.is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}

template <typename T>
void direct_gemm(const at::Tensor& out, const at::Tensor& a, const at::Tensor& w,
                 bool transpose_w, const std::optional<at::Tensor>& bias, bool accumulate) {
  const int64_t rows = out.size(0), cols = out.size(1);
  T* c = out.data_ptr<T>();
  if (!accumulate && bias.has_value()) {
    const T* b = bias->data_ptr<T>();
    for (int64_t r = 0; r < rows; ++r) std::memcpy(c + r * cols, b, cols * sizeof(T));
    accumulate = true;
  }
  cpu_gemm_rows<T>(rows, cols, a.size(1), a.data_ptr<T>(), w.data_ptr<T>(), transpose_w, c,
                   accumulate);
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

void copy_rows(const at::Tensor& dst, const at::Tensor& src) {
  if (direct_cpu(dst)) {
    std::memcpy(dst.data_ptr(), src.data_ptr(), dst.numel() * dst.element_size());
  } else {
    dst.copy_(src);
  }
}

void add_rows(const at::Tensor& dst, const at::Tensor& src) {
  if (!direct_cpu(dst)) {
    dst.add_(src);
    return;
  }
  AT_DISPATCH_FLOATING_TYPES(dst.scalar_type(), "rnnkernels_add_rows", [&] {
    scalar_t* d = dst.data_ptr<scalar_t>();
    const scalar_t* s = src.data_ptr<scalar_t>();
    for (int64_t i = 0, count = dst.numel(); i < count; ++i) d[i] += s[i];
  });
}

void gemm_rows(const at::Tensor& out, const at::Tensor& a, const at::Tensor& w, bool transpose_w,
               const std::optional<at::Tensor>& bias, bool accumulate) {
  if (out.numel() == 0) return;
  const bool direct = direct_cpu(out) && cpu_blas_available(out.scalar_type());
  if (direct && a.size(1) > 0) {
    AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "rnnkernels_gemm_rows", [&] {
      direct_gemm<scalar_t>(out, a, w, transpose_w, bias, accumulate);
    });
    return;
  }
  const at::Tensor weight = transpose_w ? w.t() : w;
  at::Tensor result = out;
  if (accumulate) {
    result.addmm_(a, weight);
  } else if (bias.has_value()) {
    at::addmm_out(result, *bias, a, weight);
  } else {
    at::mm_out(result, a, weight);
  }
}

}  // namespace rnnk
