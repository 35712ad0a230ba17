// The Python module rnnkernels._C: loading it registers the ops; it also reports
// what this build contains.
#include <torch/extension.h>

#ifndef RNNK_CUDA_ARCHS
#define RNNK_CUDA_ARCHS ""
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
#ifdef RNNK_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.attr("cuda_archs") = RNNK_CUDA_ARCHS;
}
