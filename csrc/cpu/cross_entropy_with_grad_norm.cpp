// CPU kernels of pada::cross_entropy_with_grad_norm_{fwd,bwd}: one task per
// block of rows (at::parallel_for). Short rows go 16 at a time, one row per
// vector lane; long rows one at a time, in chunks that stay in L1 (a max pass,
// then one exp pass that feeds every sum; see
// csrc/common/cross_entropy_with_grad_norm_math.h).
//
// The inner loops are plain float loops that the compiler vectorises, with
// exp and log as polynomials. The extension is built without -mavx*, so each
// kernel is compiled three times (AVX-512, AVX2, baseline) and picked at run
// time: a libm exp per element would cost more than the whole op in torch.
#include "../host/cross_entropy_with_grad_norm.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/Storage.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <type_traits>

#include "isa.h"

// Let a * b + c become one FMA in the AVX2 / AVX-512 variants below (exp and
// log are polynomials): the build turns contraction off for the samplers.
#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

#define PADA_INLINE inline __attribute__((always_inline))

namespace pada {
namespace {

using xent::dispatch_dtype;
using xent::RowResult;
using xent::rows_unit_stride;
using xent::RowStats;
using xent::Smooth;

// Elements per chunk: 8 KiB of floats, so the second pass reads from L1.
constexpr int64_t kChunk = 2048;
// Vector lanes: 16 floats, one AVX-512 register (two AVX2 ones).
constexpr int64_t kLanes = 16;
// Rows with at most this many classes run one row per lane (below); must be
// >= kLanes, as the long-row loops need a whole vector per row.
constexpr int64_t kShortRow = 128;
constexpr int64_t kShortRowBwd = 16;

// ---------------------------------------------------------------------------
// Short rows: 16 rows at a time, one per vector lane, so that every step
// (max, exp, sums, the finishing log and divisions) is a vector op and no
// horizontal reduction is needed. Lanes past the last row repeat it.

struct FwdArgs {
  const void* logits;
  int64_t row_stride;
  const int64_t* target;
  int64_t C;
  int64_t ignore_index;
  Smooth sm;
  float* loss;  // per row
  float* grad_norm;
  float* lse;  // [N, 2]: the row's max and log-sum-exp of the shifted row
};

struct BwdArgs {
  const void* logits;
  int64_t row_stride;
  const int64_t* target;
  const float* grad;  // gradient of row r's loss: grad[r * grad_stride]
  int64_t grad_stride;
  const float* lse;  // [N, 2], as the forward wrote it
  int64_t C;
  int64_t ignore_index;
  Smooth sm;
  void* out;  // contiguous [N, C]
};

// Rows [r0, r0 + nr) in lanes (spare lanes repeat the last row): their rows,
// targets (0 for ignored rows, so that reads stay in the row), keep flags, and
// the logits transposed, zt[c][j] = z[row[j]][c], so that the lane loops read
// contiguous vectors (no gathers).
template <int64_t kMaxC>
struct LaneRows {
  int64_t row[kLanes];
  alignas(64) int32_t y[kLanes];
  alignas(64) float keep[kLanes];
  alignas(64) float zt[kMaxC][kLanes];

  template <typename T, typename Args>
  PADA_INLINE void load(const Args& a, int64_t r0, int64_t nr) {
    const T* z = static_cast<const T*>(a.logits);
    for (int64_t j = 0; j < kLanes; ++j) {
      row[j] = r0 + std::min(j, nr - 1);
      const int64_t t = a.target[row[j]];
      keep[j] = t != a.ignore_index ? 1.0f : 0.0f;
      y[j] = t != a.ignore_index ? static_cast<int32_t>(t) : 0;
      const T* zr = z + row[j] * a.row_stride;
      for (int64_t c = 0; c < a.C; ++c) zt[c][j] = static_cast<float>(zr[c]);
    }
  }
};

// The stats of 16 rows, one per lane, and their finish: every lane's
// (loss, squared norm, lse) in vector ops, then rows [r0, r0 + nr) stored;
// ignored rows (keep 0) get exact zeros.
struct LaneStats {
  alignas(64) float m[kLanes];
  alignas(64) float so[kLanes];
  alignas(64) float s2o[kLanes];
  alignas(64) float sz[kLanes];
  alignas(64) float zy[kLanes];
  alignas(64) float keep[kLanes];

  // kSmooth is a template argument so that the lane loop has no branch: it
  // is vectorised (sqrtf, which may set errno, is left to the store loop).
  template <bool kSmooth>
  PADA_INLINE void finish(const FwdArgs& a, int64_t r0, int64_t nr) const {
    alignas(64) float loss[kLanes], n2[kLanes], mx[kLanes], ls[kLanes];
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) {
      const RowResult res =
          xent::finish_row_sq_t<kSmooth>(RowStats{m[j], so[j], s2o[j], sz[j]}, zy[j], a.C, a.sm);
      const bool kept = keep[j] != 0.0f;
      loss[j] = kept ? res.loss : 0.0f;
      n2[j] = res.grad_norm;
      mx[j] = kept ? res.m : 0.0f;
      ls[j] = kept ? res.log_s : 0.0f;
    }
    for (int64_t j = 0; j < nr; ++j) {
      a.loss[r0 + j] = loss[j];
      a.grad_norm[r0 + j] = keep[j] != 0.0f ? xent::norm_from_sq(n2[j]) : 0.0f;
      a.lse[2 * (r0 + j)] = mx[j];
      a.lse[2 * (r0 + j) + 1] = ls[j];
    }
  }
};

template <typename T, bool kSmooth>
PADA_INLINE void fwd_lanes(const FwdArgs& a, int64_t r0, int64_t nr) {
  const int64_t C = a.C;
  LaneRows<kShortRow> b;
  b.template load<T>(a, r0, nr);
  const auto& zt = b.zt;
  const int32_t* y = b.y;
  LaneStats st;
  alignas(64) float mr[kLanes], ref[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) st.zy[j] = zt[y[j]][j];
  for (int64_t j = 0; j < kLanes; ++j) ref[j] = xent::smooth_ref(st.zy[j]);
#pragma omp simd
  for (int64_t j = 0; j < kLanes; ++j) {
    st.keep[j] = b.keep[j];
    st.m[j] = -INFINITY;
    st.so[j] = st.s2o[j] = st.sz[j] = 0.0f;
  }
  for (int64_t c = 0; c < C; ++c) {
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) {
      st.m[j] = zt[c][j] > st.m[j] ? zt[c][j] : st.m[j];  // NaN: below
    }
  }
#pragma omp simd
  for (int64_t j = 0; j < kLanes; ++j) mr[j] = st.m[j] == -INFINITY ? 0.0f : st.m[j];  // no NaN
  for (int64_t c = 0; c < C; ++c) {
    const int32_t c32 = static_cast<int32_t>(c);
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) {
      const float e = c32 == y[j] ? 0.0f : xent::exp_f32(zt[c][j] - mr[j]);
      st.so[j] += e;
      st.s2o[j] += e * e;
      if constexpr (kSmooth) st.sz[j] += zt[c][j] - ref[j];
    }
  }
  st.template finish<kSmooth>(a, r0, nr);
}

// out = (softmax(z) - t) * g with t the smoothed target; 0 for ignored rows.
template <typename T>
PADA_INLINE void bwd_lanes(const BwdArgs& a, int64_t r0, int64_t nr) {
  const int64_t C = a.C;
  LaneRows<kShortRowBwd> b;
  b.template load<T>(a, r0, nr);
  auto& zt = b.zt;
  const int32_t* y = b.y;
  const float* keep = b.keep;
  alignas(64) float g[kLanes], ag[kLanes], mx[kLanes], ls[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) {
    g[j] = keep[j] != 0.0f ? a.grad[b.row[j] * a.grad_stride] : 0.0f;
    ag[j] = a.sm.a * g[j];
    mx[j] = a.lse[2 * b.row[j]];
    ls[j] = a.lse[2 * b.row[j] + 1];
  }
  const float tb = a.sm.b;
  for (int64_t c = 0; c < C; ++c) {
    const int32_t c32 = static_cast<int32_t>(c);
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) {
      const float e = xent::exp_f32((zt[c][j] - mx[j]) - ls[j]);
      const float o = c32 == y[j] ? (e - tb) * g[j] : e * g[j] - ag[j];
      zt[c][j] = keep[j] != 0.0f ? o : 0.0f;  // ignored rows: exact zeros
    }
  }
  T* out = static_cast<T*>(a.out);
  for (int64_t j = 0; j < nr; ++j) {
    T* o = out + (r0 + j) * C;
    for (int64_t c = 0; c < C; ++c) o[c] = static_cast<T>(zt[c][j]);
  }
}

// ---------------------------------------------------------------------------
// Long rows: one row at a time, read in chunks of kChunk. Each chunk is a
// body that is a multiple of kLanes plus, if it is not, one more vector that
// ends where the chunk ends and skips the lanes the body already did; so all
// loops run on whole vectors into 16 lane accumulators, and each row ends
// with one horizontal sum. The rows are finished 16 at a time, in lanes.

// The first `len` elements of z as floats: z itself for float32, else converted into buf.
template <typename T>
PADA_INLINE const float* load_chunk(const T* z, int64_t len, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    return z;
  } else {
    for (int64_t i = 0; i < len; ++i) buf[i] = static_cast<float>(z[i]);
    return buf;
  }
}

// max(m, z[0, n)), n a multiple of kLanes.
PADA_INLINE float lanes_max(const float* z, int64_t n, float m) {
  alignas(64) float mx[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) mx[l] = m;
  for (int64_t i = 0; i < n; i += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) mx[l] = z[i + l] > mx[l] ? z[i + l] : mx[l];
  }
  for (int64_t l = 0; l < kLanes; ++l) m = mx[l] > m ? mx[l] : m;
  return m;
}

struct LaneSums {
  alignas(64) float so[kLanes];
  alignas(64) float s2o[kLanes];
  alignas(64) float sz[kLanes];
};

// Adds exp(z - m) and its square over [first, n) except index k (the target,
// if it is in this range), and z - ref if kSmooth; n a multiple of kLanes, and
// first < kLanes (the lanes of a final vector that the body already did).
template <bool kSmooth>
PADA_INLINE void lanes_accumulate(const float* z, int64_t n, int64_t first, int64_t k, float m,
                                  float ref, LaneSums& acc) {
  for (int64_t i = 0; i < n; i += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) {
      const bool in = i + l >= first;
      const float e = in && i + l != k ? xent::exp_f32(z[i + l] - m) : 0.0f;
      acc.so[l] += e;
      acc.s2o[l] += e * e;
      if constexpr (kSmooth) acc.sz[l] += in ? z[i + l] - ref : 0.0f;
    }
  }
}

PADA_INLINE float lanes_sum(const float* v) {
  float s = 0.0f;
  for (int64_t l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

// The RowStats of a row of C > kLanes logits z with target y; ref = smooth_ref(z[y]).
template <typename T, bool kSmooth>
PADA_INLINE RowStats row_stats(const T* z, int64_t C, int64_t y, float ref, float* buf) {
  LaneSums acc;
  for (int64_t l = 0; l < kLanes; ++l) acc.so[l] = acc.s2o[l] = acc.sz[l] = 0.0f;
  alignas(64) float tbuf[kLanes];
  float m = -INFINITY;  // running max
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t len = std::min(kChunk, C - c0), body = len & ~(kLanes - 1);
    const float* f = load_chunk(z + c0, body, buf);
    // The last vector of the chunk, [c0 + len - kLanes, c0 + len): inside the row as C > kLanes.
    const float* t = body < len ? load_chunk(z + c0 + len - kLanes, kLanes, tbuf) : nullptr;
    float cm = lanes_max(f, body, m);
    if (t != nullptr) cm = lanes_max(t, kLanes, cm);  // overlapping lanes change no max
    if (cm > m) {  // rescale the sums to the new max; exp(-inf) = 0 for the first chunk
      const float r = xent::exp_f32(m - cm);
      for (int64_t l = 0; l < kLanes; ++l) {
        acc.so[l] *= r;
        acc.s2o[l] *= r * r;
      }
      m = cm;
    }
    const float mr = m == -INFINITY ? 0.0f : m;  // an all -inf row so far: exp(-inf - 0) = 0
    lanes_accumulate<kSmooth>(f, body, 0, y - c0, mr, ref, acc);
    if (t != nullptr) {
      lanes_accumulate<kSmooth>(t, kLanes, body - (len - kLanes), y - (c0 + len - kLanes), mr, ref,
                                acc);
    }
  }
  return RowStats{m, lanes_sum(acc.so), lanes_sum(acc.s2o), kSmooth ? lanes_sum(acc.sz) : 0.0f};
}

template <typename T, bool kSmooth>
PADA_INLINE void fwd_long(const FwdArgs& a, int64_t r0, int64_t nr, float* buf) {
  const T* z = static_cast<const T*>(a.logits);
  LaneStats st;
  for (int64_t j = 0; j < kLanes; ++j) {
    const int64_t r = r0 + j, y = j < nr ? a.target[r] : a.ignore_index;
    RowStats rs{0.0f, 1.0f, 0.0f, 0.0f};  // a harmless row for ignored or spare lanes
    st.keep[j] = y != a.ignore_index ? 1.0f : 0.0f;
    st.zy[j] = 0.0f;
    if (st.keep[j] != 0.0f) {
      const T* zr = z + r * a.row_stride;
      st.zy[j] = static_cast<float>(zr[y]);
      rs = row_stats<T, kSmooth>(zr, a.C, y, xent::smooth_ref(st.zy[j]), buf);
    }
    st.m[j] = rs.m;
    st.so[j] = rs.so;
    st.s2o[j] = rs.s2o;
    st.sz[j] = rs.sz;
  }
  st.template finish<kSmooth>(a, r0, nr);
}

template <typename T>
PADA_INLINE void fwd_rows(const FwdArgs& a, int64_t r0, int64_t r1) {
  const bool smooth = a.sm.eps != 0.0f;
  if (a.C <= kShortRow) {
    for (int64_t r = r0; r < r1; r += kLanes) {
      const int64_t nr = std::min(kLanes, r1 - r);
      smooth ? fwd_lanes<T, true>(a, r, nr) : fwd_lanes<T, false>(a, r, nr);
    }
    return;
  }
  alignas(64) float buf[kChunk];
  for (int64_t r = r0; r < r1; r += kLanes) {
    const int64_t nr = std::min(kLanes, r1 - r);
    smooth ? fwd_long<T, true>(a, r, nr, buf) : fwd_long<T, false>(a, r, nr, buf);
  }
}

// o[0, len) = exp((f - m) - ls) * g - ag.
PADA_INLINE void bwd_chunk(const float* f, int64_t len, float m, float ls, float g, float ag,
                           float* o) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) o[i] = xent::exp_f32((f[i] - m) - ls) * g - ag;
}

// out[0, len) = exp((z - m) - ls) * g - ag for z[0, len), through float buffers for 16-bit T.
template <typename T>
PADA_INLINE void bwd_span(const T* z, int64_t len, float m, float ls, float g, float ag, T* out,
                          float* buf, float* obuf) {
  const float* f = load_chunk(z, len, buf);
  if constexpr (std::is_same_v<T, float>) {
    bwd_chunk(f, len, m, ls, g, ag, out);
  } else {
    bwd_chunk(f, len, m, ls, g, ag, obuf);
    for (int64_t i = 0; i < len; ++i) out[i] = static_cast<T>(obuf[i]);
  }
}

// out = (softmax(z) - eps / C) * g, then the target entry is fixed up.
template <typename T>
PADA_INLINE void bwd_rows(const BwdArgs& a, int64_t r0, int64_t r1) {
  if (a.C <= kShortRowBwd) {
    for (int64_t r = r0; r < r1; r += kLanes) bwd_lanes<T>(a, r, std::min(kLanes, r1 - r));
    return;
  }
  alignas(64) float buf[kChunk];
  alignas(64) float obuf[kChunk];
  const T* logits = static_cast<const T*>(a.logits);
  T* out_all = static_cast<T*>(a.out);
  for (int64_t r = r0; r < r1; ++r) {
    T* out = out_all + r * a.C;
    const int64_t y = a.target[r];
    if (y == a.ignore_index) {
      std::memset(static_cast<void*>(out), 0, sizeof(T) * a.C);  // all-zero bits are +0 for every T
      continue;
    }
    const T* z = logits + r * a.row_stride;
    const float g = a.grad[r * a.grad_stride], m = a.lse[2 * r], ls = a.lse[2 * r + 1];
    const float ag = a.sm.a * g;
    for (int64_t c0 = 0; c0 < a.C; c0 += kChunk) {
      const int64_t len = std::min(kChunk, a.C - c0), body = len & ~(kLanes - 1);
      bwd_span(z + c0, body, m, ls, g, ag, out + c0, buf, obuf);
      // A chunk that is not whole vectors ends with one vector overlapping the
      // body (C > kLanes): the overlap is written twice, with the same values.
      if (body < len) {
        const int64_t s = c0 + len - kLanes;
        bwd_span(z + s, kLanes, m, ls, g, ag, out + s, buf, obuf);
      }
    }
    out[y] = static_cast<T>(xent::grad_elem(static_cast<float>(z[y]), m, ls, a.sm.b) * g);
  }
}

// The same row loops compiled for three instruction sets.
#define PADA_XENT_VARIANT(NAME, TARGET)                              \
  template <typename T>                                              \
  TARGET void fwd_##NAME(const FwdArgs& a, int64_t r0, int64_t r1) { \
    fwd_rows<T>(a, r0, r1);                                          \
  }                                                                  \
  template <typename T>                                              \
  TARGET void bwd_##NAME(const BwdArgs& a, int64_t r0, int64_t r1) { \
    bwd_rows<T>(a, r0, r1);                                          \
  }

#if defined(PADA_X86_SIMD)
PADA_XENT_VARIANT(avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))))
PADA_XENT_VARIANT(avx2, __attribute__((target("avx2,fma"))))
#define PADA_XENT_X86 1
#endif
PADA_XENT_VARIANT(base, )

using cpu::Isa;

template <typename T>
void run_fwd(const FwdArgs& a, int64_t r0, int64_t r1) {
  switch (cpu::isa()) {
#if defined(PADA_XENT_X86)
    case Isa::kAvx512:
      return fwd_avx512<T>(a, r0, r1);
    case Isa::kAvx2:
      return fwd_avx2<T>(a, r0, r1);
#endif
    default:
      return fwd_base<T>(a, r0, r1);
  }
}

template <typename T>
void run_bwd(const BwdArgs& a, int64_t r0, int64_t r1) {
  switch (cpu::isa()) {
#if defined(PADA_XENT_X86)
    case Isa::kAvx512:
      return bwd_avx512<T>(a, r0, r1);
    case Isa::kAvx2:
      return bwd_avx2<T>(a, r0, r1);
#endif
    default:
      return bwd_base<T>(a, r0, r1);
  }
}

// Rows per task: ~32k elements, so small problems stay on one thread.
int64_t grain_rows(int64_t C) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1)); }

// Raises on a target out of range; returns the number of rows not ignored.
int64_t check_targets(const at::Tensor& target, int64_t C, int64_t ignore_index) {
  const int64_t* t = target.data_ptr<int64_t>();
  int64_t kept = 0;
  for (int64_t r = 0; r < target.numel(); ++r) {
    if (t[r] == ignore_index) continue;
    TORCH_CHECK_VALUE(t[r] >= 0 && t[r] < C, "cross_entropy_with_grad_norm: target[", r,
                      "] = ", t[r], " is out of range for ", C,
                      " classes (and is not ignore_index = ", ignore_index, ")");
    ++kept;
  }
  return kept;
}

// A 0-dim floating tensor's value, read on the host (CPU tensors only).
float scalar_value(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return *t.const_data_ptr<float>();
    case at::kDouble:
      return static_cast<float>(*t.const_data_ptr<double>());
    case at::kHalf:
      return static_cast<float>(*t.const_data_ptr<c10::Half>());
    case at::kBFloat16:
      return static_cast<float>(*t.const_data_ptr<c10::BFloat16>());
    default:
      return t.item<float>();
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_cpu(const at::Tensor& logits_in,
                                                       const at::Tensor& target_in,
                                                       int64_t reduction, int64_t ignore_index,
                                                       double label_smoothing) {
  xent::check_args("cross_entropy_with_grad_norm_fwd", logits_in, target_in, reduction,
                   label_smoothing);
  TORCH_CHECK(logits_in.is_cpu(), "cross_entropy_with_grad_norm_fwd: expected CPU tensors");
  const at::Tensor logits = rows_unit_stride(logits_in);
  const at::Tensor target = target_in.contiguous();
  const int64_t N = logits.size(0), C = logits.size(1);
  const int64_t kept = check_targets(target, C, ignore_index);
  const auto opts = logits.options().dtype(at::kFloat);
  at::Tensor loss_rows = at::empty({N}, opts), grad_norm = at::empty({N}, opts),
             lse = at::empty({N, 2}, opts);
  const FwdArgs args{logits.data_ptr(),
                     logits.stride(0),
                     target.data_ptr<int64_t>(),
                     C,
                     ignore_index,
                     xent::make_smooth(label_smoothing, C),
                     loss_rows.data_ptr<float>(),
                     grad_norm.data_ptr<float>(),
                     lse.data_ptr<float>()};
  dispatch_dtype(logits.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    at::parallel_for(0, N, grain_rows(C),
                     [&](int64_t r0, int64_t r1) { run_fwd<T>(args, r0, r1); });
  });
  if (reduction == xent::kReduceNone) {
    return {loss_rows.to(logits.scalar_type()), grad_norm, lse};
  }
  // One fixed-order double sum: the same loss whatever the thread count.
  double total = 0.0;
  const float* lr = loss_rows.const_data_ptr<float>();
  for (int64_t r = 0; r < N; ++r) total += lr[r];
  if (reduction == xent::kReduceMean) total /= static_cast<double>(kept);  // 0 / 0 = NaN, as torch
  at::Tensor loss = at::empty({}, logits.options());
  dispatch_dtype(logits.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    *loss.mutable_data_ptr<T>() = static_cast<T>(static_cast<float>(total));
  });
  return {loss, grad_norm, lse};
}

// A contiguous CPU [N, C] tensor whose memory comes from malloc, 64-byte
// aligned by hand, rather than from torch's CPU allocator (posix_memalign).
// glibc (before 2.38) serves posix_memalign(64, n) with a chunk of n + 96
// bytes and gives the slack back, so a freed block of n bytes that lies
// between live blocks can never serve the next request of n: a training loop
// that frees the gradient and runs forward + backward again got a fresh
// block from the OS in every step, depending on the heap's history (at
// 4096 x 1000, 3900 page faults, +3 to +10 ms a step). A malloc of the same
// size takes the freed block back. The storage stays resizable through
// torch's allocator.
at::Tensor empty_reusable(int64_t N, int64_t C, at::ScalarType dtype) {
  constexpr size_t kAlign = 64;
  const size_t nbytes = static_cast<size_t>(N) * static_cast<size_t>(C) * at::elementSize(dtype);
  void* raw = std::malloc(nbytes + kAlign);
  TORCH_CHECK_WITH(OutOfMemoryError, raw != nullptr,
                   "cross_entropy_with_grad_norm_bwd: out of memory allocating ", nbytes, " bytes");
  void* data = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(raw) + kAlign - 1) &
                                       ~static_cast<uintptr_t>(kAlign - 1));
  c10::DataPtr ptr(data, raw, &std::free, c10::Device(c10::DeviceType::CPU));
  c10::Storage storage(c10::Storage::use_byte_size_t(), nbytes, std::move(ptr),
                       c10::GetCPUAllocator(), /*resizable=*/true);
  at::Tensor t = at::detail::make_tensor<c10::TensorImpl>(
      std::move(storage), c10::DispatchKeySet(c10::DispatchKey::CPU),
      c10::scalarTypeToTypeMeta(dtype));
  t.unsafeGetTensorImpl()->set_sizes_contiguous({N, C});
  return t;
}

at::Tensor bwd_cpu(const at::Tensor& grad_loss, const at::Tensor& logits_in,
                   const at::Tensor& target_in, const at::Tensor& lse_in, int64_t reduction,
                   int64_t ignore_index, double label_smoothing) {
  xent::check_bwd_args(grad_loss, logits_in, target_in, lse_in, reduction, label_smoothing);
  TORCH_CHECK(logits_in.is_cpu() && grad_loss.is_cpu() && lse_in.is_cpu(),
              "cross_entropy_with_grad_norm_bwd: expected CPU tensors");
  const at::Tensor logits = rows_unit_stride(logits_in);
  const at::Tensor target = target_in.contiguous(), lse = lse_in.contiguous();
  const int64_t N = logits.size(0), C = logits.size(1);
  const int64_t kept = check_targets(target, C, ignore_index);  // the rows' z[y] is read
  // The gradient of each row's loss: one value (mean, sum) or one per row (none).
  float g_all = 0.0f;
  at::Tensor g_rows;
  const float* grad = &g_all;
  int64_t grad_stride = 0;
  if (reduction == xent::kReduceNone) {
    g_rows = grad_loss.to(at::kFloat);  // often an expanded scalar: read with its stride
    grad = g_rows.const_data_ptr<float>();
    grad_stride = g_rows.stride(0);
  } else {
    g_all = scalar_value(grad_loss);
    if (reduction == xent::kReduceMean) g_all /= static_cast<float>(kept);
  }
  at::Tensor out = empty_reusable(N, C, logits.scalar_type());
  const BwdArgs args{logits.data_ptr(),
                     logits.stride(0),
                     target.data_ptr<int64_t>(),
                     grad,
                     grad_stride,
                     lse.data_ptr<float>(),
                     C,
                     ignore_index,
                     xent::make_smooth(label_smoothing, C),
                     out.data_ptr()};
  dispatch_dtype(logits.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    at::parallel_for(0, N, grain_rows(C),
                     [&](int64_t r0, int64_t r1) { run_bwd<T>(args, r0, r1); });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CPU, m) {
  m.impl("cross_entropy_with_grad_norm_fwd", &fwd_cpu);
  m.impl("cross_entropy_with_grad_norm_bwd", &bwd_cpu);
}

}  // namespace pada
