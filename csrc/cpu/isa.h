// The one CPU-feature probe behind every CPU kernel's choice of instruction
// set. Levels nest: kAvx2 needs AVX2, FMA and F16C; kAvx512 adds AVX-512
// F/VL/DQ/BW and BMI2 (every x86-64-v3 / v4 CPU has them together).
//
// PADA_CPU_ISA=scalar|avx2|avx512 caps the choice, read once per process, so
// that tests (tests/test_cpu_isa.py) run every variant on a machine that has
// the best one; a level the CPU lacks is not granted, and an unknown value
// makes every CPU kernel raise, naming it.
#pragma once

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PADA_X86_SIMD 1  // the AVX2 / AVX-512 variants are compiled
#endif

namespace pada {
namespace cpu {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

inline const char* isa_name(Isa isa) {
  return isa == Isa::kAvx512 ? "avx512" : isa == Isa::kAvx2 ? "avx2" : "scalar";
}

inline Isa detected_isa() {
#if defined(PADA_X86_SIMD)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("bmi2");
  return avx512 ? Isa::kAvx512 : avx2 ? Isa::kAvx2 : Isa::kScalar;
#else
  return Isa::kScalar;
#endif
}

// The level every CPU kernel uses: the detected one, capped by PADA_CPU_ISA.
inline Isa isa() {
  static const Isa chosen = [] {
    const Isa best = detected_isa();
    const char* cap = std::getenv("PADA_CPU_ISA");
    if (cap == nullptr || *cap == '\0') return best;
    Isa want = Isa::kScalar;
    if (std::strcmp(cap, "avx512") == 0)
      want = Isa::kAvx512;
    else if (std::strcmp(cap, "avx2") == 0)
      want = Isa::kAvx2;
    else if (std::strcmp(cap, "scalar") != 0)  // no torch here: the C++ tests use it too
      throw std::invalid_argument(
          std::string("PADA_CPU_ISA must be scalar, avx2 or avx512, got '") + cap + "'");
    return static_cast<int>(want) < static_cast<int>(best) ? want : best;
  }();
  return chosen;
}

inline bool use_avx2() { return isa() != Isa::kScalar; }
inline bool use_avx512() { return isa() == Isa::kAvx512; }

}  // namespace cpu
}  // namespace pada
