// Which build of the per-instruction-set kernels (isa_*.cpp) this CPU runs.
#pragma once
#include <cstdlib>
#include <cstring>

namespace rnnk {

enum class Isa { Default, Avx2, Avx512 };

// The widest instruction set of this CPU that isa_*.cpp are compiled for;
// ATEN_CPU_CAPABILITY=default|avx2 caps it, as it does for ATen's own kernels.
inline Isa detect_isa() {
  Isa best = Isa::Default;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    best = Isa::Avx512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    best = Isa::Avx2;
  }
#endif
  const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
  if (cap != nullptr && std::strcmp(cap, "default") == 0) return Isa::Default;
  if (cap != nullptr && std::strcmp(cap, "avx2") == 0 && best == Isa::Avx512) return Isa::Avx2;
  return best;
}

inline Isa cpu_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

// The build of a kernel for this CPU's instruction set.
template <typename Fn>
Fn for_this_cpu(Fn avx512, Fn avx2, Fn portable) {
  switch (cpu_isa()) {
    case Isa::Avx512:
      return avx512;
    case Isa::Avx2:
      return avx2;
    default:
      return portable;
  }
}

}  // namespace rnnk
