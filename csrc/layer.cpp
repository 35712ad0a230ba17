#include "layer.h"

#include <ATen/ATen.h>

#include <vector>

#include "bf16_layer.h"
#include "cpu/huge_pages.h"
#include "cpu/tensor_ptr.h"
#include "grid/grid_layer.h"
#include "layer_path.h"
#include "operands.h"
#include "persistent.h"
#include "schedule.h"
#include "single_step.h"
#include "step_device.h"
#include "workspace.h"

namespace rnnk {
namespace {

using at::Tensor;

// The rows and offsets of the steps in visiting order, for the persistent kernels.
struct VisitOrder {
  std::vector<int64_t> rows, offsets;
  VisitOrder(const Schedule& s, bool reverse) {
    for (int64_t k = 0; k < s.steps; ++k) {
      rows.push_back(s.rows(step_at(s, k, reverse)));
      offsets.push_back(s.offset(step_at(s, k, reverse)));
    }
  }
  StepOrder view() const {
    return {static_cast<int64_t>(rows.size()), rows.data(), offsets.data()};
  }
};

// The arrays of a layer's forward step loop, rows contiguous; null where absent.
template <typename T>
struct ForwardArrays {
  const T* xg;    // [N, G*H] the input projection
  const T* w_hh;  // [G*H, P]
  const T* bias;  // [G*H] the recurrent bias (b_ih + b_hh where the cell only sums them)
  const T* w_hr;  // [P, H] (projected LSTM)
  T* h;           // [B, P] in: h0; out: h_n (rows past a step's count keep their state)
  T* c;           // [B, H] in: c0; out: c_n (LSTM)
  T* hg;          // [B, G*H] one step's recurrent GEMM
  T* out;         // [N, P]
  // Kept for backward: [N, *]; in inference h_prev and c_prev are null, and saved and r
  // are one step's scratch, [B, *], rewritten each step.
  T* saved;   // S*H wide
  T* r;       // H wide: o * tanh(c), the projection's input (projected LSTM)
  T* h_prev;  // P wide
  T* c_prev;  // H wide (LSTM)
  bool for_backward;
};

// The sequence loop on the device's GEMM and pointwise pass (step_device.h), for every
// device (and on the CPU for the projected LSTM): a step is the recurrent GEMM and one
// pointwise launch that writes the new state, the output rows and what backward keeps.
// The projected LSTM adds the projection's GEMM and a copy of its result into the state.
template <typename T>
void forward_steps(const StepDevice<T>& device, CellKind kind, const Schedule& sched,
                   bool reverse, int64_t H, int64_t P, const ForwardArrays<T>& a) {
  const int64_t GH = cell_gates(kind) * H, SH = cell_saved(kind) * H;
  const bool projects = a.w_hr != nullptr;
  for (int64_t k = 0; k < sched.steps; ++k) {
    const int64_t t = step_at(sched, k, reverse), n = sched.rows(t), off = sched.offset(t);
    if (n == 0) continue;
    const int64_t kept = a.for_backward ? off : 0;  // the step's row in saved and r
    // The cell sees o * tanh(c), not h, where the LSTM projects: h_prev is kept here.
    if (projects && a.h_prev != nullptr) device.copy(a.h_prev + off * P, a.h, n * P);
    device.gemm(n, GH, P, a.h, a.w_hh, /*transpose_w=*/true, a.hg, /*accumulate=*/false);
    StepForward<T> step{a.xg + off * GH, a.hg, projects ? a.r + kept * H : a.h, a.c,
                        a.saved + kept * SH, H};
    step.b_hh = a.bias;
    step.c_keep = a.c_prev == nullptr ? nullptr : a.c_prev + off * H;
    if (!projects) {
      step.h_out = a.out + off * P;
      step.h_keep = a.h_prev == nullptr ? nullptr : a.h_prev + off * P;
    }
    device.forward(kind, step, n);
    if (projects) {
      device.gemm(n, P, H, step.h, a.w_hr, /*transpose_w=*/true, a.out + off * P, false);
      device.copy(a.h, a.out + off * P, n * P);
    }
  }
}

// The arrays of a layer's backward step loop, rows contiguous; null where absent.
template <typename T>
struct BackwardArrays {
  const T* w_hh;         // [G*H, P]
  const T* w_hr;         // [P, H] (projected LSTM)
  const T* grad_output;  // [N, P]
  const T* saved;        // [N, S*H]
  const T* h_prev;       // [N, P]
  const T* c_prev;       // [N, H] (LSTM)
  T* dh;                 // [B, P] in: dL/dh_n; out: dL/dh0
  T* dc;                 // [B, H] in: dL/dc_n; out: dL/dc0 (LSTM)
  T* dxg;                // [N, G*H] out
  T* dhg;                // [N, G*H] out (GRU; the others pass dxg)
  T* dh_seq;             // [N, P] out: each step's dL/dh (projected LSTM: w_hr's gradient)
  T* d_cell;             // [B, H] one step's dL/d(o * tanh(c)) (projected LSTM)
};

// The backward's step loop (see forward_steps): the pointwise launch adds the output's
// gradient and writes the gates' gradients, the recurrent GEMM turns them into dL/dh of the
// step before. The weight gradients are left to whole-sequence GEMMs.
template <typename T>
void backward_steps(const StepDevice<T>& device, CellKind kind, const Schedule& sched,
                    bool reverse, int64_t H, int64_t P, const BackwardArrays<T>& a) {
  const int64_t GH = cell_gates(kind) * H, SH = cell_saved(kind) * H;
  const bool projects = a.w_hr != nullptr;
  for (int64_t k = sched.steps - 1; k >= 0; --k) {
    const int64_t t = step_at(sched, k, reverse), n = sched.rows(t), off = sched.offset(t);
    if (n == 0) continue;
    if (projects) {
      device.sum(a.dh_seq + off * P, a.dh, a.grad_output + off * P, n * P);
      device.gemm(n, H, P, a.dh_seq + off * P, a.w_hr, /*transpose_w=*/false, a.d_cell, false);
    }
    StepBackward<T> step{projects ? a.d_cell : a.dh,
                         a.dc,
                         a.saved + off * SH,
                         a.c_prev == nullptr ? nullptr : a.c_prev + off * H,
                         a.h_prev + off * P,
                         a.dxg + off * GH,
                         a.dhg + off * GH,
                         H};
    if (!projects) step.grad_h = a.grad_output + off * P;
    device.backward(kind, step, n);
    device.gemm(n, P, GH, step.dhg, a.w_hh, /*transpose_w=*/false, a.dh,
                /*accumulate=*/cell_direct_hidden_gradient(kind));
  }
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> layer_forward(
    CellKind kind, const Tensor& x, at::IntArrayRef batch_sizes, const Tensor& h0,
    const std::optional<Tensor>& c0, const Tensor& w_ih, const Tensor& w_hh,
    const std::optional<Tensor>& b_ih, const std::optional<Tensor>& b_hh,
    const std::optional<Tensor>& w_hr, bool reverse, bool for_backward) {
  const Schedule sched = make_schedule(x, batch_sizes);
  const bool has_c = cell_has_cell_state(kind);
  const bool projects = w_hr.has_value() && w_hr->defined();
  const LayerSizes sizes =
      check_operands(kind, x, sched.batch, sched.total, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr);
  const int64_t G = sizes.G, S = sizes.S, H = sizes.H, I = sizes.I, B = sched.batch,
                P = sizes.P;
  // Distinct empty tensors: outputs of an op must not alias one another.
  auto none = [&] { return at::empty({0}, x.options()); };
  const LayerPlan plan = plan_layer({kind, x, !batch_sizes.empty(), sched.steps, B, H, projects,
                                     /*backward=*/false});
  if (plan.path == LayerPath::Bf16Cpu) {
    Tensor output = empty_like_rows(x, P);
    Tensor h_n = at::empty({B, P}, x.options());
    Tensor c = has_c ? c0->to(at::kFloat).contiguous().clone() : Tensor();  // c0 in, c_n out
    Bf16Kept kept;  // undefined in inference (layer.h)
    if (for_backward) {
      kept.saved = empty_like_rows(x, S * H, at::kFloat);
      kept.h_prev = empty_like_rows(x, P);
      kept.c_prev = has_c ? empty_like_rows(x, H, at::kFloat) : none();
      kept.r_seq = projects ? empty_like_rows(x, H) : none();
    }
    bf16_forward_cpu(kind, VisitOrder(sched, reverse).view(), x.reshape({sched.total, I}), h0,
                     w_ih, w_hh, b_ih, b_hh, projects ? *w_hr : Tensor(), c, output, h_n, kept);
    return {output, h_n, has_c ? c.to(x.scalar_type()) : none(), kept.saved, kept.h_prev,
            kept.c_prev, kept.r_seq};
  }
  if (plan.path == LayerPath::SingleStepCpu) {
    Tensor output = at::empty({1, B, H}, x.options());
    Tensor h_n = at::empty({B, H}, x.options());
    Tensor c_n = has_c ? at::empty({B, H}, x.options()) : none();
    StepResults results{h_n, has_c ? c_n : Tensor(), output};
    Tensor saved, h_prev, c_prev, r_seq;  // undefined in inference (layer.h)
    if (for_backward) {
      saved = results.saved = at::empty({1, B, S * H}, x.options());
      h_prev = results.h_prev = at::empty({1, B, H}, x.options());
      c_prev = has_c ? at::empty({1, B, H}, x.options()) : none();
      if (has_c) results.c_prev = c_prev;
      r_seq = none();
    }
    single_step_cpu(kind, x, h0, c0, w_ih, w_hh, b_ih, b_hh, results);
    return {output, h_n, c_n, saved, h_prev, c_prev, r_seq};
  }

  const Tensor x2d = x.reshape({sched.total, I});
  // xg: [N, G*H], the input projection of every step in one GEMM. Where the cell reads
  // only xg + hg, both biases start the recurrent GEMM instead (a few vectors per step):
  // addmm would first copy b_ih into all N rows of xg.
  const bool bias_in_xg = b_ih.has_value() && !cell_sums_projections(kind);
  Tensor xg = scratch(Scratch::InputProjection, {sched.total, G * H}, x.options());
  if (bias_in_xg) {
    at::addmm_out(xg, *b_ih, x2d, w_ih.t());
  } else {
    at::mm_out(xg, x2d, w_ih.t());
  }
  Tensor output = empty_like_rows(x, P);
  Tensor saved, h_prev, c_prev, r_seq;  // undefined in inference
  if (for_backward) {
    saved = empty_like_rows(x, S * H);
    h_prev = empty_like_rows(x, P);
    c_prev = has_c ? empty_like_rows(x, H) : none();
    r_seq = projects ? empty_like_rows(x, H) : none();
  }

  std::optional<Tensor> recurrent_bias;  // what the recurrent GEMM starts from
  if (b_hh.has_value()) recurrent_bias = bias_in_xg ? b_hh->contiguous() : *b_ih + *b_hh;
  Tensor c = has_c ? c0->contiguous().clone() : Tensor();  // [B, H]: c0 in, c_n out
  Tensor h_n;
  const VisitOrder visit(sched, reverse);
  if (plan.path == LayerPath::Grid) {
    h_n = at::empty({B, P}, x.options());
    grid_forward(kind, plan.grid, GridOrder{visit.view(), batch_sizes.empty(), reverse, B}, xg,
                 w_hh.contiguous(), recurrent_bias, h0.contiguous(), h_n, c, output, saved,
                 h_prev, c_prev);
  } else if (plan.path == LayerPath::PersistentCpu) {
    h_n = at::empty({B, P}, x.options());
    persistent_forward_cpu(kind, visit.view(), xg, w_hh.contiguous(), recurrent_bias,
                           h0.contiguous(), h_n, c, output, saved, h_prev, c_prev);
  } else {
    h_n = h0.contiguous().clone();
    Tensor hg = at::empty({B, G * H}, x.options());
    // In inference saved and r are one step's scratch (ForwardArrays).
    Tensor saved_rows = for_backward ? saved : at::empty({B, S * H}, x.options());
    Tensor r_rows = !projects ? Tensor() : for_backward ? r_seq : at::empty({B, H}, x.options());
    const Tensor w_hh_c = w_hh.contiguous(), w_hr_c = projects ? w_hr->contiguous() : Tensor();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                    "rnnkernels_forward_steps", [&] {
      using T = scalar_t;
      const ForwardArrays<T> arrays{
          xg.data_ptr<T>(), w_hh_c.data_ptr<T>(), ptr_or_null<T>(recurrent_bias),
          ptr_or_null<T>(w_hr_c), h_n.data_ptr<T>(), ptr_or_null<T>(c), hg.data_ptr<T>(),
          output.data_ptr<T>(), saved_rows.data_ptr<T>(), ptr_or_null<T>(r_rows),
          ptr_or_null<T>(h_prev), ptr_or_null<T>(c_prev), for_backward};
      forward_steps(step_device<T>(x), kind, sched, reverse, H, P, arrays);
    });
  }
  return {output, h_n, has_c ? c : none(), saved, h_prev, c_prev, r_seq};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> layer_backward(
    CellKind kind, const Tensor& grad_output, const Tensor& grad_h_n,
    const std::optional<Tensor>& grad_c_n, const Tensor& x, at::IntArrayRef batch_sizes,
    const Tensor& w_ih, const Tensor& w_hh, bool has_bias, const std::optional<Tensor>& w_hr,
    const Tensor& saved, const Tensor& h_prev, const Tensor& c_prev, const Tensor& r_seq,
    bool reverse, bool input_grad) {
  const Schedule sched = make_schedule(x, batch_sizes);
  const bool has_c = cell_has_cell_state(kind);
  // Where the recurrent projection is kept apart (GRU's), its gradient and bias gradient
  // differ from the input side's.
  const bool apart = !cell_sums_projections(kind);
  const bool projects = w_hr.has_value() && w_hr->defined();
  const int64_t G = cell_gates(kind), S = cell_saved(kind);
  const int64_t H = w_hh.size(0) / G, I = x.size(-1), B = sched.batch, N = sched.total;
  const int64_t P = projects ? w_hr->size(0) : H;
  check_operand(x, grad_output, "grad_output", h_prev.sizes());
  check_operand(x, grad_h_n, "grad_h_n", {B, P});
  // The bf16 kernels keep the gate values and c in float32 (bf16_layer.h).
  const LayerPlan plan = plan_layer({kind, x, !batch_sizes.empty(), sched.steps, B, H, projects,
                                     /*backward=*/true});
  const bool bf16 = plan.path == LayerPath::Bf16Cpu;
  const std::optional<at::ScalarType> kept_dtype =
      bf16 ? std::optional<at::ScalarType>(at::kFloat) : std::nullopt;
  check_operand(x, saved, "saved", rows_shape(x, S * H), kept_dtype);
  if (has_c) check_operand(x, c_prev, "c_prev", rows_shape(x, H), kept_dtype);
  TORCH_CHECK(!has_c || (grad_c_n.has_value() && grad_c_n->defined()),
              "rnnkernels: LSTM backward needs grad_c_n");

  const Tensor grad_out2d = grad_output.reshape({N, P}).contiguous();
  // The pointwise kernels walk rows by pointer: these must be row-contiguous.
  const Tensor saved2d = saved.reshape({N, S * H}).contiguous();
  const Tensor h_prev2d = h_prev.reshape({N, P}).contiguous();
  const Tensor c_prev2d = has_c ? c_prev.reshape({N, H}).contiguous() : Tensor();
  const Tensor w_hh_c = w_hh.contiguous();
  Tensor dxg, dhg, dh, dc, db_ih, db_hh;
  Tensor dh_seq = projects ? at::empty({N, P}, x.options()) : Tensor();
  if (bf16) {
    // dh and dc stay float32 for the whole recurrence; the bias gradients are sums of
    // the gates' float32 gradients. (A dtype conversion is a new tensor.)
    const auto f32 = x.options().dtype(at::kFloat);
    dxg = at::empty({N, G * H}, x.options());
    dhg = apart ? at::empty({N, G * H}, x.options()) : dxg;
    advise_huge_pages(dxg);
    if (apart) advise_huge_pages(dhg);
    dh = grad_h_n.to(at::kFloat).contiguous();
    dc = has_c ? grad_c_n->to(at::kFloat).contiguous() : Tensor();
    db_ih = has_bias ? at::empty({G * H}, f32) : Tensor();
    db_hh = has_bias && apart ? at::empty({G * H}, f32) : Tensor();
    bf16_backward_cpu(kind, VisitOrder(sched, reverse).view(), w_hh_c,
                      projects ? *w_hr : Tensor(), grad_out2d,
                      Bf16Kept{saved2d, h_prev2d, c_prev2d, Tensor()},
                      Bf16Grads{dh, dc, dxg, dhg, db_ih, db_hh, dh_seq});
  } else {
    dxg = scratch(Scratch::InputGateGrads, {N, G * H}, x.options());
    // GRU's recurrent-side gradient differs from the input side in the n gate.
    dhg = apart ? scratch(Scratch::HiddenGateGrads, {N, G * H}, x.options()) : dxg;
    dh = grad_h_n.contiguous().clone();  // [B, P]: dL/dh of each row's current step
    dc = has_c ? grad_c_n->contiguous().clone() : Tensor();  // [B, H]
    const VisitOrder visit(sched, reverse);
    if (plan.path == LayerPath::Grid) {
      grid_backward(kind, plan.grid, GridOrder{visit.view(), batch_sizes.empty(), reverse, B},
                    w_hh_c, grad_out2d, saved2d, h_prev2d, c_prev2d, dh, dc, dxg, dhg);
    } else if (plan.path == LayerPath::PersistentCpu) {
      persistent_backward_cpu(kind, visit.view(), w_hh_c, grad_out2d, saved2d, h_prev2d,
                              c_prev2d, dh, dc, dxg, dhg);
    } else {
      const Tensor w_hr_c = projects ? w_hr->contiguous() : Tensor();
      const Tensor d_cell = projects ? at::empty({B, H}, x.options()) : Tensor();
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                      "rnnkernels_backward_steps", [&] {
        using T = scalar_t;
        const BackwardArrays<T> arrays{
            w_hh_c.data_ptr<T>(),   ptr_or_null<T>(w_hr_c), grad_out2d.data_ptr<T>(),
            saved2d.data_ptr<T>(),  h_prev2d.data_ptr<T>(),  ptr_or_null<T>(c_prev2d),
            dh.data_ptr<T>(),       ptr_or_null<T>(dc),     dxg.data_ptr<T>(),
            dhg.data_ptr<T>(),      ptr_or_null<T>(dh_seq), ptr_or_null<T>(d_cell)};
        backward_steps(step_device<T>(x), kind, sched, reverse, H, P, arrays);
      });
    }
    if (has_bias) {
      db_ih = dxg.sum(0);
      if (apart) db_hh = dhg.sum(0);
    }
  }

  const Tensor x2d = x.reshape({N, I});
  const auto empty = [&] { return at::empty({0}, x.options()); };
  // x's gradient is a GEMM as large as the input projection: skipped where x needs none
  // (a first layer's input, usually).
  Tensor dx = input_grad ? at::mm(dxg, w_ih).view(x.sizes()) : empty();
  Tensor dw_ih = at::mm(dxg.t(), x2d);
  Tensor dw_hh = at::mm(dhg.t(), h_prev2d);
  if (has_bias) {
    db_ih = db_ih.to(x.scalar_type());
    // Only GRU's two projections get different gradients; a copy keeps the outputs apart.
    db_hh = apart ? db_hh.to(x.scalar_type()) : db_ih.clone();
  } else {
    db_ih = empty();
    db_hh = empty();
  }
  Tensor dw_hr = projects ? at::mm(dh_seq.t(), r_seq.reshape({N, H})) : empty();
  dh = dh.to(x.scalar_type());
  if (has_c) dc = dc.to(x.scalar_type());
  return {dx, dh, has_c ? dc : empty(), dw_ih, dw_hh, db_ih, db_hh, dw_hr};
}

}  // namespace rnnk
