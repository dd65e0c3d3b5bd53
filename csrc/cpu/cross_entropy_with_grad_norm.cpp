// CPU kernels of pada::cross_entropy_with_grad_norm_{fwd,bwd}: one task per
// block of rows (at::parallel_for), each row read in chunks that stay in L1
// (a max pass, then one exp pass that feeds every sum; see
// csrc/common/cross_entropy_with_grad_norm.h).
//
// The inner loops are plain float loops that the compiler vectorises, with
// exp as a polynomial. The extension is built without -mavx*, so each row
// kernel is compiled three times (AVX-512, AVX2, baseline) and picked at run
// time: a libm exp per element would cost more than the whole op in torch.
#include "../common/cross_entropy_with_grad_norm.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <type_traits>

#define PADA_INLINE inline __attribute__((always_inline))

namespace pada {
namespace {

using xent::RowResult;
using xent::RowStats;
using xent::Smooth;

// Elements per chunk: 8 KiB of floats, so the second pass reads from L1.
constexpr int64_t kChunk = 2048;

// A chunk of a row as floats: the row itself for float32, else converted into buf.
template <typename T>
PADA_INLINE const float* load_chunk(const T* z, int64_t len, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    return z;
  } else {
    for (int64_t i = 0; i < len; ++i) buf[i] = static_cast<float>(z[i]);
    return buf;
  }
}

PADA_INLINE float chunk_max(const float* z, int64_t len) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < len; ++i) m = z[i] > m ? z[i] : m;  // NaN is caught by the exp pass
  return m;
}

// Adds exp(z - m) and its square (and z) over [0, len) into st (st.m fixed).
template <bool kSmooth>
PADA_INLINE void accumulate(const float* z, int64_t len, RowStats& st) {
  // A row that is -inf so far: use 0 so that exp(-inf - 0) = 0, not NaN.
  const float m = st.m == -INFINITY ? 0.0f : st.m;
  float so = 0.0f, s2o = 0.0f, sz = 0.0f;
#pragma omp simd reduction(+ : so, s2o, sz)
  for (int64_t i = 0; i < len; ++i) {
    const float e = xent::exp_f32(z[i] - m);
    so += e;
    s2o += e * e;
    if constexpr (kSmooth) sz += z[i];
  }
  st.so += so;
  st.s2o += s2o;
  st.sz += sz;
}

template <typename T, bool kSmooth>
PADA_INLINE RowResult fwd_row(const T* z, int64_t C, int64_t y, const Smooth& sm, float* buf) {
  RowStats st = xent::empty_stats();
  float zy = 0.0f;
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    const int64_t len = std::min(kChunk, C - c0);
    const float* f = load_chunk(z + c0, len, buf);
    xent::rescale(st, chunk_max(f, len));
    const int64_t k = y - c0;
    if (k >= 0 && k < len) {  // the target is left out of the sums
      accumulate<kSmooth>(f, k, st);
      accumulate<kSmooth>(f + k + 1, len - k - 1, st);
      zy = f[k];
      if constexpr (kSmooth) st.sz += zy;
    } else {
      accumulate<kSmooth>(f, len, st);
    }
  }
  return xent::finish_row(st, zy, C, sm);
}

struct FwdArgs {
  const void* logits;
  int64_t row_stride;
  const int64_t* target;
  int64_t C;
  int64_t ignore_index;
  Smooth sm;
  float* loss;
  float* grad_norm;
  float* lse;
};

template <typename T>
PADA_INLINE void fwd_rows(const FwdArgs& a, int64_t r0, int64_t r1) {
  alignas(64) float buf[kChunk];
  const T* logits = static_cast<const T*>(a.logits);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t y = a.target[r];
    if (y == a.ignore_index) {  // ignored rows cost nothing and get 0 everywhere
      a.loss[r] = a.grad_norm[r] = a.lse[r] = 0.0f;
      continue;
    }
    const T* z = logits + r * a.row_stride;
    const RowResult res = a.sm.eps == 0.0f ? fwd_row<T, false>(z, a.C, y, a.sm, buf)
                                           : fwd_row<T, true>(z, a.C, y, a.sm, buf);
    a.loss[r] = res.loss;
    a.grad_norm[r] = res.grad_norm;
    a.lse[r] = res.lse;
  }
}

struct BwdArgs {
  const void* logits;
  int64_t row_stride;
  const int64_t* target;
  const float* grad;
  const float* lse;
  int64_t C;
  int64_t ignore_index;
  Smooth sm;
  void* out;  // contiguous [N, C]
};

// out = (softmax(z) - eps / C) * g, then the target entry is fixed up.
template <typename T>
PADA_INLINE void bwd_rows(const BwdArgs& a, int64_t r0, int64_t r1) {
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
    const float g = a.grad[r], lse = a.lse[r], ag = a.sm.a * g;
    for (int64_t c0 = 0; c0 < a.C; c0 += kChunk) {
      const int64_t len = std::min(kChunk, a.C - c0);
      const float* f = load_chunk(z + c0, len, buf);
      float* o = std::is_same_v<T, float> ? reinterpret_cast<float*>(out + c0) : obuf;
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) o[i] = xent::exp_f32(f[i] - lse) * g - ag;
      if constexpr (!std::is_same_v<T, float>) {
        for (int64_t i = 0; i < len; ++i) out[c0 + i] = static_cast<T>(obuf[i]);
      }
    }
    const float zy = static_cast<float>(z[y]);
    out[y] = static_cast<T>(xent::grad_elem(zy, lse, a.sm.b) * g);
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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
PADA_XENT_VARIANT(avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))))
PADA_XENT_VARIANT(avx2, __attribute__((target("avx2,fma"))))
#define PADA_XENT_X86 1
#endif
PADA_XENT_VARIANT(base, )

enum class Isa { kBase, kAvx2, kAvx512 };

Isa best_isa() {
#if defined(PADA_XENT_X86)
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
      return Isa::kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
    return Isa::kBase;
  }();
  return isa;
#else
  return Isa::kBase;
#endif
}

template <typename T>
void run_fwd(const FwdArgs& a, int64_t r0, int64_t r1) {
  switch (best_isa()) {
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
  switch (best_isa()) {
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

// Calls f(T{}) with T the element type of the (already checked) logits.
template <typename F>
void dispatch_dtype(at::ScalarType dt, const F& f) {
  if (dt == at::kHalf) return f(c10::Half{});
  if (dt == at::kBFloat16) return f(c10::BFloat16{});
  return f(float{});
}

// Rows per task: ~32k elements, so small problems stay on one thread.
int64_t grain_rows(int64_t C) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1)); }

// Rows are read with their stride; only a non-unit class stride costs a copy.
at::Tensor rows_unit_stride(const at::Tensor& logits) {
  return logits.size(1) <= 1 || logits.stride(1) == 1 ? logits : logits.contiguous();
}

void check_targets(const at::Tensor& target, int64_t C, int64_t ignore_index) {
  const int64_t* t = target.data_ptr<int64_t>();
  for (int64_t r = 0; r < target.numel(); ++r) {
    TORCH_CHECK_VALUE(t[r] == ignore_index || (t[r] >= 0 && t[r] < C),
                      "cross_entropy_with_grad_norm: target[", r, "] = ", t[r],
                      " is out of range for ", C,
                      " classes (and is not ignore_index = ", ignore_index, ")");
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_cpu(const at::Tensor& logits_in,
                                                       const at::Tensor& target_in,
                                                       int64_t ignore_index,
                                                       double label_smoothing) {
  xent::check_args("cross_entropy_with_grad_norm_fwd", logits_in, target_in, label_smoothing);
  TORCH_CHECK(logits_in.is_cpu(), "cross_entropy_with_grad_norm_fwd: expected CPU tensors");
  const at::Tensor logits = rows_unit_stride(logits_in);
  const at::Tensor target = target_in.contiguous();
  const int64_t N = logits.size(0), C = logits.size(1);
  check_targets(target, C, ignore_index);
  const auto opts = logits.options().dtype(at::kFloat);
  at::Tensor loss = at::empty({N}, opts), grad_norm = at::empty({N}, opts),
             lse = at::empty({N}, opts);
  const FwdArgs args{logits.data_ptr(),
                     logits.stride(0),
                     target.data_ptr<int64_t>(),
                     C,
                     ignore_index,
                     xent::make_smooth(label_smoothing, C),
                     loss.data_ptr<float>(),
                     grad_norm.data_ptr<float>(),
                     lse.data_ptr<float>()};
  dispatch_dtype(logits.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    at::parallel_for(0, N, grain_rows(C),
                     [&](int64_t r0, int64_t r1) { run_fwd<T>(args, r0, r1); });
  });
  return {loss, grad_norm, lse};
}

at::Tensor bwd_cpu(const at::Tensor& grad_in, const at::Tensor& logits_in,
                   const at::Tensor& target_in, const at::Tensor& lse_in, int64_t ignore_index,
                   double label_smoothing) {
  xent::check_bwd_args(grad_in, logits_in, target_in, lse_in, label_smoothing);
  TORCH_CHECK(logits_in.is_cpu(), "cross_entropy_with_grad_norm_bwd: expected CPU tensors");
  const at::Tensor logits = rows_unit_stride(logits_in);
  const at::Tensor target = target_in.contiguous(), lse = lse_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();  // often an expanded scalar (stride 0)
  const int64_t N = logits.size(0), C = logits.size(1);
  check_targets(target, C, ignore_index);  // the rows' z[y] is read
  at::Tensor out = at::empty({N, C}, logits.options().memory_format(at::MemoryFormat::Contiguous));
  const BwdArgs args{logits.data_ptr(),
                     logits.stride(0),
                     target.data_ptr<int64_t>(),
                     grad.data_ptr<float>(),
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
