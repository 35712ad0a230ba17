// The Python module rnnkernels._C: loading it registers the ops; it also reports
// what this build contains.
#include <torch/extension.h>

#include "cell_call.h"
#include "cpu/isa.h"
#include "cpu/step_rows.h"

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
  // Which build of the CPU kernels runs here (after any ATEN_CPU_CAPABILITY cap).
  m.def("cpu_isa", [] {
    switch (rnnk::cpu_isa()) {
      case rnnk::Isa::Avx512:
        return "avx512";
      case rnnk::Isa::Avx2:
        return "avx2";
      default:
        return "default";
    }
  });
  m.def("cell_step_inference", &rnnk::cell_step_inference, "one step of a cell, no gradient");
  // The rows the CPU persistent kernels' steps have run so far (cpu/step_rows.h).
  m.def("step_rows", [] { return rnnk::g_step_rows.load(std::memory_order_relaxed); });
}
