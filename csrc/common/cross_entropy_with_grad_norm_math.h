// Per-row math of pada::cross_entropy_with_grad_norm shared by the CPU and
// CUDA kernels, and the CUDA kernels' row-to-thread mapping and lane/warp
// merge steps, written so that a host test (tests/cpp/test_xent_replay.cpp)
// replays them lane by lane. No torch here.
//
// One read of a row z (C logits, target y, label smoothing eps) keeps, with an
// online (running-max) rescaling, over the classes c != y:
//   m   = max_c z_c          (over all c, y included)
//   so  = sum_{c != y} e_c,  e_c = exp(z_c - m)
//   s2o = sum_{c != y} e_c^2
//   sz  = sum_c (z_c - r)    (only when eps > 0; r = smooth_ref(z_y))
// and e_y = exp(z_y - m) at the end. Leaving y out of the sums is what keeps
// the norm accurate for confident rows: with eps = 0,
//   ||p - onehot(y)||^2 = s2o / s^2 + (so / s)^2,   s = so + e_y,
// has no cancellation, whereas sum p^2 - 2 p_y + 1 loses every digit when
// p_y -> 1. With the smoothed target t = (1 - eps) onehot(y) + eps / C,
//   ||p - t||^2 = sum_{c != y} (p_c - a)^2 + (p_y - b)^2,  a = eps/C, b = 1 - eps + a.
// The loss is torch's, lse - (1 - eps) z_y - a * sum_c z_c, but formed from
// shifted values only, as log(s) + (m - z_y) - a * sz (with r = z_y): lse and
// z_y are each as large as the logits (an offset of 1e6 has a float32 ulp of
// 0.06), their difference is not. For the same reason the backward gets m and
// log(s) apart and computes exp((z - m) - log(s)), never exp(z - lse).
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

// Reduction codes, as at::Reduction (pada_ext/_codes.py names them too).
constexpr int64_t kReduceNone = 0, kReduceMean = 1, kReduceSum = 2;

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
  float sz;   // sum of z - smooth_ref(z_y) over all c
};

// The reference the smoothing sum is shifted by: z_y itself when finite (so
// the sum has no cancellation at any offset), else 0 (so that a -inf or NaN
// target logit gives torch's inf or NaN loss, not -inf - -inf = NaN).
PADA_XENT_HD float smooth_ref(float zy) { return zy >= -3.4e38f && zy <= 3.4e38f ? zy : 0.0f; }

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

// lse = m + log_s, kept as two floats for the backward (see the top).
struct RowResult {
  float loss;
  float grad_norm;
  float m;
  float log_s;
};

// Turns the stats of a whole row into (loss, squared grad norm, m, log s): the
// square root is left to norm_from_sq, so that CPU loops over many rows stay
// vectorisable (sqrtf may set errno). kSmooth says whether sm.eps != 0: a
// compile-time choice, so that a CPU loop over rows has no branch in it.
template <bool kSmooth>
PADA_XENT_HD RowResult finish_row_sq_t(const RowStats& st, float zy, int64_t C, const Smooth& sm) {
  const float ey = exp_f32(zy - st.m);
  const float s = st.so + ey;
  const float inv_s = 1.0f / s;
  const float log_s = log_f32(s);
  const float d = st.m - zy;  // small at any offset: z_y is within the row's range
  // Probability mass off the target, computed without 1 - p_y.
  const float q = st.so * inv_s;
  float n2;
  if (!kSmooth) {
    n2 = st.s2o * inv_s * inv_s + q * q;
  } else {
    // sum_{c != y} (p_c - a)^2 = s2o / s^2 - 2 a q + (C - 1) a^2.
    const float off =
        st.s2o * inv_s * inv_s - 2.0f * sm.a * q + static_cast<float>(C - 1) * sm.a * sm.a;
    const float dy = sm.eps - sm.a - q;  // p_y - b = (1 - q) - (1 - eps + a)
    n2 = off + dy * dy;
    n2 = n2 < 0.0f ? 0.0f : n2;  // rounding can leave -tiny; NaN must stay NaN
  }
  // sum_c t_c (lse - z_c) = log s + (1 - eps) (m - z_y) + a sum_c (m - z_c),
  // and sum_c (m - z_c) = C (m - r) - sz. Without smoothing sz is not summed.
  float loss;
  if (!kSmooth) {
    loss = d + log_s;
  } else {
    const float r = smooth_ref(zy);
    loss = log_s + (1.0f - sm.eps) * d + (sm.eps * (st.m - r) - sm.a * st.sz);
  }
  return RowResult{loss, n2, st.m, log_s};
}

PADA_XENT_HD RowResult finish_row_sq(const RowStats& st, float zy, int64_t C, const Smooth& sm) {
  return sm.eps == 0.0f ? finish_row_sq_t<false>(st, zy, C, sm)
                        : finish_row_sq_t<true>(st, zy, C, sm);
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

// d loss_i / d z_c (before scaling by the incoming gradient), from the row's
// max m and log s: exp((z - m) - log s), exact at any offset of the logits.
PADA_XENT_HD float grad_elem(float z, float m, float log_s, float target) {
  return exp_f32((z - m) - log_s) - target;
}

// ---- The CUDA kernels' per-thread steps and geometry ----------------------
// The kernels call these with real shuffles; the host test calls the same
// functions lane by lane.

// A thread's stats before it reads its share: the max starts at z_y, which
// keeps exp(z_y - m) <= 1 at the end whatever share the thread reads.
PADA_HD RowStats start_stats(float zy) { return RowStats{zy, 0.0f, 0.0f, 0.0f}; }

// Adds logit v (of the target class when is_target) to a thread's stats;
// ref = smooth_ref(z_y).
template <bool kSmooth>
PADA_XENT_HD void accumulate(RowStats& st, float v, bool is_target, float ref) {
  if (kSmooth) st.sz += v - ref;
  if (is_target) return;
  rescale(st, v);
  // A max still at -inf (z_y and all so far -inf) gives exp(v - 0) = 0, not NaN.
  const float e = exp_f32(v - (st.m == -INFINITY ? 0.0f : st.m));
  st.so += e;
  st.s2o += e * e;
}

constexpr int kWarpSize = 32;
constexpr int kBlockThreads = 256;
constexpr int kBlockWarps = kBlockThreads / kWarpSize;
// Rows of up to this many classes get one warp each (kBlockWarps rows per
// block): a 256-thread block on a short row would leave most threads idle.
constexpr int64_t kWarpRowMaxC = 1024;
// Blocks of one launch; more rows are covered by a grid-stride loop (the
// x-dimension limit is 2^31 - 1 blocks; 2^20 already fills any GPU).
constexpr int64_t kMaxGridBlocks = int64_t{1} << 20;

PADA_HD bool warp_per_row(int64_t C) { return C <= kWarpRowMaxC; }

// Row blocks needed for N rows: one row per warp or one per block.
PADA_HD int64_t row_blocks(int64_t N, bool warp_rows) {
  return warp_rows ? (N + kBlockWarps - 1) / kBlockWarps : N;
}

PADA_HD int64_t grid_blocks(int64_t nblocks, int64_t cap) { return nblocks < cap ? nblocks : cap; }

// The row that thread `thread` of row block `block` works on, its lane in
// that row and the number of lanes sharing it; lane l reads classes l,
// l + width, ... The row may be >= N in the last block of warp rows.
struct RowSlot {
  int64_t row;
  int lane;
  int width;
};

PADA_HD RowSlot row_slot(bool warp_rows, int64_t block, int thread) {
  if (warp_rows)
    return RowSlot{block * kBlockWarps + thread / kWarpSize, thread % kWarpSize, kWarpSize};
  return RowSlot{block, thread, kBlockThreads};
}

// The lane that __shfl_down_sync(v, delta) reads for `lane`: past the warp's
// end a lane gets its own value back (merged twice, but only lane 0's tree,
// which never reads past the end, is used).
PADA_HD int shfl_down_src(int lane, int delta) {
  return lane + delta < kWarpSize ? lane + delta : lane;
}

// The shuffle tree's deltas: 16, 8, 4, 2, 1.
constexpr int kFirstDelta = kWarpSize / 2;

// The second level of a block merge: lane `lane` of warp 0 takes warp
// `lane`'s total, or nothing.
PADA_HD RowStats warp_total_or_empty(const RowStats* warp_totals, int lane) {
  return lane < kBlockWarps ? warp_totals[lane] : empty_stats();
}

}  // namespace xent
}  // namespace pada
