// Which build of the per-instruction-set kernels (isa_*.cpp) this CPU runs, for float32/64
// and for bfloat16.
#pragma once
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace rnnk {

// In rising order: each level's CPUs have everything the levels below need.
enum class Isa { Default, Avx2, Avx512, Avx512Bf16, Amx };

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Amx:
      return "amx";
    case Isa::Avx512Bf16:
      return "avx512_bf16";
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx2:
      return "avx2";
    default:
      return "default";
  }
}

// The widest level this CPU has, as far as the compiler's feature checks tell.
inline Isa widest_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (avx512 && __builtin_cpu_supports("avx512bf16")) {
    return __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16")
               ? Isa::Amx
               : Isa::Avx512Bf16;
  }
  if (avx512) return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Default;
}

// `best`, or the lower level the environment variable `var` names.
inline Isa capped_by(const char* var, Isa best) {
  const char* cap = std::getenv(var);
  if (cap == nullptr) return best;
  for (Isa level : {Isa::Default, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16, Isa::Amx}) {
    if (std::strcmp(cap, isa_name(level)) == 0 && level < best) return level;
  }
  return best;
}

// Linux lends AMX's tile data registers only to a process that asks (they enlarge every
// context switch's saved state); without them the first tile instruction faults.
inline bool request_amx_tiles(std::string* refusal) {
#if defined(__linux__) && defined(__x86_64__)
  constexpr long kRequestPermission = 0x1023;  // ARCH_REQ_XCOMP_PERM
  constexpr long kTileData = 18;               // XFEATURE_XTILEDATA
  if (syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0) return true;
  *refusal = std::string("the kernel refused AMX tile data (arch_prctl: ") + std::strerror(errno) +
             ")";
#else
  *refusal = "AMX tile data is requested only on Linux";
#endif
  return false;
}

struct CpuPaths {
  Isa isa;       // the float32/64 kernels' build: Default, Avx2 or Avx512
  Isa bf16;      // the bfloat16 kernels': Amx, Avx512Bf16, or Default (computed in float32)
  std::string bf16_reason;  // why bf16 has no faster path, or empty
};

// RNNKERNELS_CPU_ISA=default|avx2|avx512|avx512_bf16|amx caps every path. ATen's own
// ATEN_CPU_CAPABILITY=default|avx2|avx512 caps ATen's vectorised kernels but not oneDNN's
// (whose bf16 GEMMs run AMX whatever it says): it caps the float32/64 kernels only.
inline CpuPaths detect_paths() {
  const Isa widest = widest_isa(), level = capped_by("RNNKERNELS_CPU_ISA", widest);
  const Isa float_level = std::min(level, capped_by("ATEN_CPU_CAPABILITY", widest));
  CpuPaths paths{std::min(float_level, Isa::Avx512), Isa::Default, {}};
  if (level >= Isa::Avx512Bf16) paths.bf16 = level;
  if (paths.bf16 == Isa::Amx && !request_amx_tiles(&paths.bf16_reason)) {
    paths.bf16 = Isa::Avx512Bf16;
  }
  if (paths.bf16 == Isa::Default) {
    paths.bf16_reason = level < widest ? std::string("capped at ") + isa_name(level) +
                                             " by the environment"
                                       : "this CPU has no AVX512_BF16";
  }
  return paths;
}

inline const CpuPaths& cpu_paths() {
  static const CpuPaths paths = detect_paths();
  return paths;
}

inline Isa cpu_isa() { return cpu_paths().isa; }

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
