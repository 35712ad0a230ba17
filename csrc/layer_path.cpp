#include "layer_path.h"

#include "bf16_layer.h"
#include "persistent.h"
#include "single_step.h"

namespace rnnk {

LayerPlan plan_layer(const LayerCall& call) {
  if (bf16_cpu_applies(call.x)) return {LayerPath::Bf16Cpu, {}};
  // A single step's backward needs no path of its own: its saved values are a sequence's.
  if (!call.backward && single_step_cpu_applies(call.x) && !call.packed && call.steps == 1 &&
      !call.projects) {
    return {LayerPath::SingleStepCpu, {}};
  }
  if (call.steps > 0) {
    const GridPlan grid =
        plan_grid(call.kind, call.x, call.projects, call.batch, call.hidden, call.backward);
    if (grid.runs()) return {LayerPath::Grid, grid};
  }
  if (persistent_cpu_applies(call.x, call.projects, call.steps)) {
    return {LayerPath::PersistentCpu, {}};
  }
  return {LayerPath::StepLoop, {}};
}

const char* layer_path_name(LayerPath path) {
  switch (path) {
    case LayerPath::Bf16Cpu:
      return "bf16_cpu";
    case LayerPath::SingleStepCpu:
      return "single_step_cpu";
    case LayerPath::Grid:
      return "grid";
    case LayerPath::PersistentCpu:
      return "persistent_cpu";
    case LayerPath::StepLoop:
      return "step_loop";
  }
  return "unknown";
}

}  // namespace rnnk
