#include "../bf16_layer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "../persistent.h"
#include "bf16_sequence.h"
#include "isa.h"
#include "tensor_ptr.h"

namespace rnnk {
namespace {

const uint16_t* bits(const at::Tensor& t) {
  return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>());
}
uint16_t* bits_out(const at::Tensor& t) {
  return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>());
}
uint16_t* bits_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? bits_out(t) : nullptr;
}

// The kernel for this CPU: AMX tiles, or AVX512_BF16's dot products.
template <typename Params>
void run_on_this_cpu(const Params& params) {
  if (cpu_paths().bf16 == Isa::Amx) {
    AMX::run_bf16(params);
  } else {
    AVX512_BF16::run_bf16(params);
  }
}

}  // namespace

bool bf16_cpu_applies(const at::Tensor& x) {
  return x.is_cpu() && x.scalar_type() == at::kBFloat16 && cpu_paths().bf16 != Isa::Default;
}

void bf16_forward_cpu(CellKind kind, const StepOrder& order, const at::Tensor& x,
                      const at::Tensor& h0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                      const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh,
                      const at::Tensor& w_hr, const at::Tensor& c, const at::Tensor& output,
                      const at::Tensor& h_n, const Bf16Kept& kept) {
  const at::Tensor x_c = x.contiguous(), h0_c = h0.contiguous(), w_ih_c = w_ih.contiguous(),
                   w_hh_c = w_hh.contiguous();
  const at::Tensor w_hr_c = w_hr.defined() ? w_hr.contiguous() : at::Tensor();
  // The biases are added to float32 sums: one rounding fewer in float32.
  const at::Tensor bias_ih = b_ih.has_value() ? b_ih->to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor bias_hh = b_hh.has_value() ? b_hh->to(at::kFloat).contiguous() : at::Tensor();
  const int64_t B = h0.size(0), P = h0.size(1), H = w_hh.size(0) / cell_gates(kind);
  const int threads = sequence_threads(B, w_hh.size(0), P, at::get_num_threads());
  const Bf16Forward params{kind,
                           order,
                           B,
                           H,
                           P,
                           x.size(1),
                           x.size(0),
                           bits(x_c),
                           bits(w_ih_c),
                           bits(w_hh_c),
                           bits_or_null(w_hr_c),
                           ptr_or_null<float>(bias_ih),
                           ptr_or_null<float>(bias_hh),
                           bits(h0_c),
                           ptr_or_null<float>(c),
                           bits_out(output),
                           bits_out(h_n),
                           ptr_or_null<float>(kept.saved),
                           bits_or_null(kept.h_prev),
                           ptr_or_null<float>(kept.c_prev),
                           bits_or_null(kept.r_seq),
                           threads};
  run_on_this_cpu(params);
}

void bf16_backward_cpu(CellKind kind, const StepOrder& order, const at::Tensor& w_hh,
                       const at::Tensor& w_hr, const at::Tensor& grad_output,
                       const Bf16Kept& kept, const Bf16Grads& grads) {
  const at::Tensor w_hh_t = w_hh.t().contiguous(), grad_rows = grad_output.contiguous();
  const at::Tensor w_hr_t = w_hr.defined() ? w_hr.t().contiguous() : at::Tensor();
  const int64_t B = grads.dh.size(0), P = w_hh.size(1), H = w_hh.size(0) / cell_gates(kind);
  const int threads = sequence_threads(B, w_hh.size(0), P, at::get_num_threads());
  const Bf16Backward params{kind,
                            order,
                            B,
                            H,
                            P,
                            bits(w_hh_t),
                            bits_or_null(w_hr_t),
                            bits(grad_rows),
                            kept.saved.data_ptr<float>(),
                            bits(kept.h_prev),
                            ptr_or_null<float>(kept.c_prev),
                            grads.dh.data_ptr<float>(),
                            ptr_or_null<float>(grads.dc),
                            bits_or_null(grads.dh_seq),
                            bits_out(grads.dxg),
                            bits_out(grads.dhg),
                            ptr_or_null<float>(grads.db_ih),
                            ptr_or_null<float>(grads.db_hh),
                            threads};
  run_on_this_cpu(params);
}

}  // namespace rnnk
