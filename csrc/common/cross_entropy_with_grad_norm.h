// Per-row math of pada::cross_entropy_with_grad_norm shared by the CPU and
// CUDA kernels.
//
// One read of a row z (C logits, target y, label smoothing eps) keeps, with an
// online (running-max) rescaling, over the classes c != y:
//   m   = max_c z_c          (over all c, y included)
//   so  = sum_{c != y} e_c,  e_c = exp(z_c - m)
//   s2o = sum_{c != y} e_c^2
//   sz  = sum_c z_c          (only when eps > 0)
// and e_y = exp(z_y - m) at the end. Leaving y out of the sums is what keeps
// the norm accurate for confident rows: with eps = 0,
//   ||p - onehot(y)||^2 = s2o / s^2 + (so / s)^2,   s = so + e_y,
// has no cancellation, whereas sum p^2 - 2 p_y + 1 loses every digit when
// p_y -> 1. With the smoothed target t = (1 - eps) onehot(y) + eps / C,
//   ||p - t||^2 = sum_{c != y} (p_c - a)^2 + (p_y - b)^2,  a = eps/C, b = 1 - eps + a.
// The loss is torch's: lse - (1 - eps) z_y - a * sum_c z_c.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "macros.h"

// The host loops only vectorise if these helpers are inlined into them.
#if defined(__CUDACC__) || defined(__HIPCC__) || !(defined(__GNUC__) || defined(__clang__))
#define PADA_XENT_HD PADA_HD
#else
#define PADA_XENT_HD inline __attribute__((always_inline))
#endif

namespace pada {
namespace xent {

// exp(x) for x <= 88 that compilers vectorise (no libm call): Cephes' expf,
// ~1 ulp. NaN propagates; x below the float range gives exactly 0, so -inf
// logits (masks) contribute nothing, as in torch.
PADA_XENT_HD float exp_f32(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  constexpr float kLo = -87.33654f, kHi = 88.3762626647949f;
  float xc = x < kLo ? kLo : x;  // written so that NaN stays NaN
  xc = xc > kHi ? kHi : xc;
  // n = round(x / ln 2) by the 1.5 * 2^23 trick: no rounding-mode dependence.
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < kLo ? 0.0f : p * scale;
#endif
}

// log(x) that compilers vectorise: Cephes' logf, ~1 ulp for positive normal
// x; log(0) = -inf, NaN below 0, +inf and NaN pass through. Rows only take
// the log of s = sum exp(z - max) >= 1 (or NaN).
PADA_XENT_HD float log_f32(float x) {
#if defined(__CUDA_ARCH__)
  return logf(x);
#else
  int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  float e = static_cast<float>(((bits >> 23) & 0xff) - 126);
  const int32_t mbits = (bits & 0x007fffff) | 0x3f000000;  // mantissa in [0.5, 1)
  float f;
  std::memcpy(&f, &mbits, sizeof(f));
  const bool low = f < 0.707106781186547524f;
  e = low ? e - 1.0f : e;
  f = low ? f + f - 1.0f : f - 1.0f;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  y += -2.12194440e-4f * e;
  y += -0.5f * z;
  const float r = f + y + 0.693359375f * e;
  const bool normal = x >= 1.17549435e-38f && x <= 3.40282347e38f;
  return normal
             ? r
             : (x == 0.0f ? -INFINITY : (x > 0.0f ? x : std::numeric_limits<float>::quiet_NaN()));
#endif
}

// Running sums of one row (or one thread's share of it).
struct RowStats {
  float m;    // running max
  float so;   // sum of exp(z - m) over c != y
  float s2o;  // sum of exp(2 (z - m)) over c != y
  float sz;   // sum of z over all c
};

PADA_HD RowStats empty_stats() { return RowStats{-INFINITY, 0.0f, 0.0f, 0.0f}; }

// Rescales `st` to a new running max `m_new >= st.m`.
PADA_XENT_HD void rescale(RowStats& st, float m_new) {
  if (m_new > st.m) {
    // exp(-inf) = 0 also covers the first chunk, whose sums are 0.
    const float f = exp_f32(st.m - m_new);
    st.so *= f;
    st.s2o *= f * f;
    st.m = m_new;
  }
}

// Merges two partial stats (CUDA block reduction).
PADA_HD RowStats merge(RowStats a, const RowStats& b) {
  RowStats bb = b;
  const float m = a.m > b.m ? a.m : b.m;
  rescale(a, m);
  rescale(bb, m);
  return RowStats{a.m, a.so + bb.so, a.s2o + bb.s2o, a.sz + bb.sz};
}

// Smoothing constants: a = eps / C (every class), b = 1 - eps + a (the target).
struct Smooth {
  float a;
  float b;
  float eps;
};

PADA_HD Smooth make_smooth(double eps, int64_t C) {
  const double a = eps / static_cast<double>(C);
  return Smooth{static_cast<float>(a), static_cast<float>(1.0 - eps + a), static_cast<float>(eps)};
}

struct RowResult {
  float loss;
  float grad_norm;
  float lse;
};

// Turns the stats of a whole row into (loss, squared grad norm, lse): the
// square root is left to norm_from_sq, so that CPU loops over many rows stay
// vectorisable (sqrtf may set errno).
PADA_XENT_HD RowResult finish_row_sq(const RowStats& st, float zy, int64_t C, const Smooth& sm) {
  const float ey = exp_f32(zy - st.m);
  const float s = st.so + ey;
  const float inv_s = 1.0f / s;
  const float lse = st.m + log_f32(s);
  // Probability mass off the target, computed without 1 - p_y.
  const float q = st.so * inv_s;
  float n2;
  if (sm.eps == 0.0f) {
    n2 = st.s2o * inv_s * inv_s + q * q;
  } else {
    // sum_{c != y} (p_c - a)^2 = s2o / s^2 - 2 a q + (C - 1) a^2.
    const float off =
        st.s2o * inv_s * inv_s - 2.0f * sm.a * q + static_cast<float>(C - 1) * sm.a * sm.a;
    const float dy = sm.eps - sm.a - q;  // p_y - b = (1 - q) - (1 - eps + a)
    n2 = off + dy * dy;
    n2 = n2 < 0.0f ? 0.0f : n2;  // rounding can leave -tiny; NaN must stay NaN
  }
  // Without smoothing sz is not summed (and 0 * -inf would be NaN).
  const float smooth = sm.eps == 0.0f ? 0.0f : sm.a * st.sz;
  const float loss = lse - (1.0f - sm.eps) * zy - smooth;
  return RowResult{loss, n2, lse};
}

// The norm from its square. A row whose norm is not finite (NaN or +inf
// logits, all -inf) gets NaN, which the importance table skips (a 0 would be
// stored as a score); its loss stays NaN/inf as torch's does.
PADA_HD float norm_from_sq(float n2) {
  const float gn = sqrtf(n2);
  return gn <= 3.0e38f ? gn : std::numeric_limits<float>::quiet_NaN();
}

PADA_HD RowResult finish_row(const RowStats& st, float zy, int64_t C, const Smooth& sm) {
  RowResult r = finish_row_sq(st, zy, C, sm);
  r.grad_norm = norm_from_sq(r.grad_norm);
  return r;
}

// d loss_i / d z_c (before scaling by the incoming gradient).
PADA_XENT_HD float grad_elem(float z, float lse, float target) { return exp_f32(z - lse) - target; }

}  // namespace xent
}  // namespace pada

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

namespace pada {
namespace xent {

// Calls f(T{}) with T the element type of the (already checked) logits.
template <typename F>
void dispatch_dtype(at::ScalarType dt, const F& f) {
  if (dt == at::kHalf) return f(c10::Half{});
  if (dt == at::kBFloat16) return f(c10::BFloat16{});
  return f(float{});
}

// Rows are read with their stride; only a non-unit class stride costs a copy.
inline at::Tensor rows_unit_stride(const at::Tensor& logits) {
  return logits.size(1) <= 1 || logits.stride(1) == 1 ? logits : logits.contiguous();
}

// Reduction codes, as at::Reduction.
constexpr int64_t kReduceNone = 0, kReduceMean = 1, kReduceSum = 2;

// Argument checks shared by the CPU and CUDA entry points (host only). The
// target range is checked by each backend: it needs the target values.
inline void check_args(const char* op, const at::Tensor& logits, const at::Tensor& target,
                       int64_t reduction, double label_smoothing) {
  TORCH_CHECK_VALUE(logits.dim() == 2, op, ": logits must be 2-D [N, C], got ", logits.dim(),
                    " dimensions");
  const auto dt = logits.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, op,
                   ": logits must be float32, float16 or bfloat16, got ", dt);
  TORCH_CHECK_VALUE(logits.size(1) >= 1, op, ": logits need at least one class");
  TORCH_CHECK_TYPE(target.scalar_type() == at::kLong, op, ": target must be int64, got ",
                   target.scalar_type());
  TORCH_CHECK_VALUE(target.dim() == 1 && target.size(0) == logits.size(0), op,
                    ": target must have shape [N] = [", logits.size(0), "], got ", target.sizes());
  TORCH_CHECK(target.device() == logits.device(), op, ": target is on ", target.device(),
              " but logits are on ", logits.device());
  TORCH_CHECK_VALUE(reduction == kReduceNone || reduction == kReduceMean || reduction == kReduceSum,
                    op, ": reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
  TORCH_CHECK_VALUE(label_smoothing >= 0.0 && label_smoothing <= 1.0, op,
                    ": label_smoothing must be in [0, 1], got ", label_smoothing);
}

inline void check_bwd_args(const at::Tensor& grad_loss, const at::Tensor& logits,
                           const at::Tensor& target, const at::Tensor& lse, int64_t reduction,
                           double label_smoothing) {
  constexpr const char* op = "cross_entropy_with_grad_norm_bwd";
  check_args(op, logits, target, reduction, label_smoothing);
  const int64_t n = logits.size(0);
  TORCH_CHECK_VALUE(lse.dim() == 1 && lse.size(0) == n, op, ": lse must be [", n, "], got ",
                    lse.sizes());
  TORCH_CHECK_TYPE(lse.scalar_type() == at::kFloat, op, ": lse must be float32");
  if (reduction == kReduceNone) {
    TORCH_CHECK_VALUE(grad_loss.dim() == 1 && grad_loss.size(0) == n, op, ": grad_loss must be [",
                      n, "] for reduction none, got ", grad_loss.sizes());
  } else {
    TORCH_CHECK_VALUE(grad_loss.dim() == 0, op,
                      ": grad_loss must be a scalar for reduction mean or sum, got ",
                      grad_loss.sizes());
  }
  TORCH_CHECK_TYPE(at::isFloatingType(grad_loss.scalar_type()), op,
                   ": grad_loss must be floating point, got ", grad_loss.scalar_type());
  for (const at::Tensor* t : {&grad_loss, &lse}) {
    TORCH_CHECK(t->device() == logits.device(), op, ": tensors on ", t->device(), " and ",
                logits.device());
  }
}

}  // namespace xent
}  // namespace pada
