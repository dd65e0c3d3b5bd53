// Portability macros for math shared between the CPU and CUDA kernels.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define PADA_HD __host__ __device__ __forceinline__
#else
#define PADA_HD inline
#endif

#include <cstdint>

#if defined(__GNUC__) || defined(__clang__)
#define PADA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define PADA_UNLIKELY(x) (x)
#endif

namespace pada {

// Multiplication and addition that no compiler may contract into an FMA, so
// that host and device produce bit-identical alias tables.
PADA_HD double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

PADA_HD double div_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

PADA_HD double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

}  // namespace pada
