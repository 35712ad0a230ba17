#include "../bf16_layer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "../persistent.h"
#include "bf16_sequence.h"
#include "isa.h"
#include "tensor_ptr.h"

namespace rnnk {

bool bf16_cpu_applies(const at::Tensor& x, bool projects, bool for_backward) {
  return x.is_cpu() && x.scalar_type() == at::kBFloat16 && !projects && !for_backward &&
         cpu_paths().bf16 != Isa::Default;
}

void bf16_inference_cpu(CellKind kind, const StepOrder& order, const at::Tensor& x,
                        const at::Tensor& h0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                        const std::optional<at::Tensor>& b_ih,
                        const std::optional<at::Tensor>& b_hh, const at::Tensor& c,
                        const at::Tensor& output, const at::Tensor& h_n) {
  const at::Tensor x_c = x.contiguous(), h0_c = h0.contiguous(), w_ih_c = w_ih.contiguous(),
                   w_hh_c = w_hh.contiguous();
  // The biases are added to float32 sums: one rounding fewer in float32.
  const at::Tensor bias_ih = b_ih.has_value() ? b_ih->to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor bias_hh = b_hh.has_value() ? b_hh->to(at::kFloat).contiguous() : at::Tensor();
  const auto bits = [](const at::Tensor& t) {
    return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>());
  };
  const int64_t B = h0.size(0), H = h0.size(1);
  const int threads = sequence_threads(B, w_hh.size(0), H, at::get_num_threads());
  const Bf16Inference params{
      kind, order, B, H, x.size(1), x.size(0), bits(x_c), bits(w_ih_c), bits(w_hh_c),
      ptr_or_null<float>(bias_ih), ptr_or_null<float>(bias_hh), bits(h0_c),
      ptr_or_null<float>(c), reinterpret_cast<uint16_t*>(output.data_ptr<at::BFloat16>()),
      reinterpret_cast<uint16_t*>(h_n.data_ptr<at::BFloat16>()), threads};
  if (cpu_paths().bf16 == Isa::Amx) {
    AMX::run_bf16_inference(params);
  } else {
    AVX512_BF16::run_bf16_inference(params);
  }
}

}  // namespace rnnk
