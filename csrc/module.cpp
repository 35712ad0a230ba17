// The Python module rnnkernels._C: loading it registers the ops; it also reports
// what this build contains.
#include <torch/extension.h>

#include <optional>
#include <string>

#include "cell_call.h"
#include "cpu/isa.h"
#include "cpu/step_rows.h"
#include "grid/grid_barrier_check.h"
#include "grid/grid_simulator.h"
#include "layer_path.h"
#include "persistent.h"
#include "scratch_cache.h"
#include "step_device.h"
#include "stream_call.h"

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
  // Which build of the CPU kernels runs here (after any RNNKERNELS_CPU_ISA or
  // ATEN_CPU_CAPABILITY cap): float32/64, then bfloat16 (None: computed in float32, and why).
  m.def("cpu_isa", [] { return rnnk::isa_name(rnnk::cpu_isa()); });
  m.def("cpu_bf16_isa", []() -> std::optional<std::string> {
    const rnnk::Isa bf16 = rnnk::cpu_paths().bf16;
    if (bf16 == rnnk::Isa::Default) return std::nullopt;
    return std::string(rnnk::isa_name(bf16));
  });
  m.def("cpu_bf16_note", [] { return rnnk::cpu_paths().bf16_reason; });
  m.def("cell_step", &rnnk::cell_step, "one step of a cell");
  m.def("cell_kinds", &rnnk::cell_kinds);
  m.def("cell_table", &rnnk::cell_table);
  // The path a layer direction's call takes (layer_path.h), by name: for tests and for
  // users asking which kernels run their shapes.
  m.def(
      "layer_path",
      [](int kind, const at::Tensor& x, bool packed, int64_t steps, int64_t batch,
         int64_t hidden, bool projects, bool backward) {
        TORCH_CHECK(kind >= 0 && kind < rnnk::kCellKinds, "rnnkernels: unknown cell kind ", kind);
        const rnnk::LayerPlan plan = rnnk::plan_layer({static_cast<rnnk::CellKind>(kind), x,
                                                       packed, steps, batch, hidden, projects,
                                                       backward});
        return std::string(rnnk::layer_path_name(plan.path));
      },
      py::arg("kind"), py::arg("x"), py::arg("packed"), py::arg("steps"), py::arg("batch"),
      py::arg("hidden"), py::arg("projects"), py::arg("backward"));
  m.def("stream_step", &rnnk::stream_step, "one time step of a layer stack");
  m.def("empty_cache", &rnnk::empty_cache, "frees the memory kept between calls; bytes freed");
  // The rows the CPU persistent kernels' steps have run so far (cpu/step_rows.h).
  m.def("step_rows", [] { return rnnk::g_step_rows.load(std::memory_order_relaxed); });
  // The per-step loop's device calls so far, each one launch on a GPU (step_device.h).
  m.def("step_launches", [] { return rnnk::g_step_launches.load(std::memory_order_relaxed); });
  // Persistent kernels where they apply (default) or the per-step loop everywhere;
  // returns the previous setting.
  m.def("set_persistent_kernels", &rnnk::set_persistent_kernels, py::arg("enabled"));
  // The CPU simulator of the persistent GPU kernels (grid/grid_simulator.h), for the tests:
  // CPU float32/64 layers run on a simulated grid of at most `blocks` blocks (0: off), the
  // tensor-core variant with tensor_cores; state_buffers=1 is the racy single-buffer
  // variant. Clears the report.
  m.def(
      "simulate_grid",
      [](int blocks, uint64_t seed, int state_buffers, bool tensor_cores) {
        TORCH_CHECK(state_buffers == 1 || state_buffers == 2,
                    "rnnkernels: state_buffers is 1 or 2, got ", state_buffers);
        rnnk::grid_simulation().start(std::max(blocks, 0), seed, state_buffers, tensor_cores);
      },
      py::arg("blocks"), py::arg("seed") = 0, py::arg("state_buffers") = 2,
      py::arg("tensor_cores") = false);
  // The grid barrier with host threads for blocks: wrong reads seen (0 where it holds).
  m.def("check_grid_barrier", &rnnk::check_grid_barrier, py::arg("blocks"), py::arg("rounds"));
  // Since simulate_grid: grid programs run, races found and the first one described.
  m.def("grid_report", [] {
    rnnk::GridSimulation& sim = rnnk::grid_simulation();
    py::dict report;
    report["launches"] = sim.launches.load();
    report["races"] = sim.races.load();
    const std::lock_guard<std::mutex> lock(sim.first_race_lock);
    report["first_race"] = sim.first_race;
    return report;
  });
}
