// CPU kernels of pada::grouped_grad_norm, grouped_sq_norm_accumulate_ and
// segment_grad_norm (csrc/common/grouped_grad_norm.h has the math; the checks
// and the chunk table are in csrc/host/grouped_grad_norm.cpp).
//
// The cost to beat is per tensor, not per element: the list is walked once,
// with no allocation per tensor; small inputs run on the calling thread.
#include "../host/grouped_grad_norm.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#include "isa.h"

#if defined(PADA_X86_SIMD)
#define PADA_GNORM_AVX2 1
#endif

namespace pada {
namespace gnorm {

namespace {

// Sum of squares of one chunk in the order of the shared header: lane l
// takes elements l, l + kLanes, ... The inner loop has no cross-lane
// dependency, so compilers vectorise it without reassociating anything.
template <typename E, typename Conv>
__attribute__((always_inline)) inline float chunk_body(const E* p, int64_t n, Conv conv) {
  alignas(64) float acc[kLanes];
  const int width = lane_width(n);
  for (int l = 0; l < width; ++l) acc[l] = 0.0f;
  const int64_t full = n - n % kLanes;
  for (int64_t i = 0; i < full; i += kLanes) {
    const E* q = p + i;
    // Unrolled so that loop overhead does not bind: the accumulators live in L1.
#pragma GCC unroll 8
    for (int l = 0; l < kLanes; ++l) acc[l] = sq_add(acc[l], conv(q[l]));
  }
  for (int64_t l = 0; l < n - full; ++l) acc[l] = sq_add(acc[l], conv(p[full + l]));
  return tree_reduce(acc, width);
}

inline float f32_id(float x) { return x; }

float chunk_sum_generic(const ChunkRow& r) {
  const void* p = reinterpret_cast<const void*>(r.addr);
  if (r.dtype == kF32) return chunk_body(static_cast<const float*>(p), r.numel, f32_id);
  if (r.dtype == kBF16) return chunk_body(static_cast<const uint16_t*>(p), r.numel, bf16_to_float);
  return chunk_body(static_cast<const uint16_t*>(p), r.numel, f16_to_float);
}

#ifdef PADA_GNORM_AVX2
// Halves go through F16C a block of kLanes at a time, then the float body.
__attribute__((target("avx2,f16c"))) float chunk_sum_f16_avx2(const uint16_t* p, int64_t n) {
  alignas(64) float acc[kLanes];
  alignas(64) float x[kLanes];
  const int width = lane_width(n);
  for (int l = 0; l < width; ++l) acc[l] = 0.0f;
  const int64_t full = n - n % kLanes;
  for (int64_t i = 0; i < full; i += kLanes) {
    for (int l = 0; l < kLanes; l += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + l));
      _mm256_store_ps(x + l, _mm256_cvtph_ps(h));
    }
#pragma GCC unroll 8
    for (int l = 0; l < kLanes; ++l) acc[l] = sq_add(acc[l], x[l]);
  }
  for (int64_t l = 0; l < n - full; ++l) acc[l] = sq_add(acc[l], f16_to_float(p[full + l]));
  return tree_reduce(acc, width);
}

// No "fma" in the target list: a fused multiply-add would change the bits.
__attribute__((target("avx2,f16c"))) float chunk_sum_avx2(const ChunkRow& r) {
  const void* p = reinterpret_cast<const void*>(r.addr);
  if (r.dtype == kF32) return chunk_body(static_cast<const float*>(p), r.numel, f32_id);
  if (r.dtype == kBF16) return chunk_body(static_cast<const uint16_t*>(p), r.numel, bf16_to_float);
  return chunk_sum_f16_avx2(static_cast<const uint16_t*>(p), r.numel);
}
#endif

#ifdef PADA_GNORM_AVX2
// AVX-512: the kLanes accumulators are 16 registers of 16 lanes, so a block
// of kLanes elements is 16 loads, multiplies and adds with no accumulator
// traffic through memory. Same lanes, same order, same tree as chunk_body
// (no "fma" in the target list): the same bits. A ragged tail is loaded
// masked with zeros, which add +0 to lanes that chunk_body leaves alone.
#define PADA_GNORM_AVX512_TARGET "avx512f,avx512vl,avx512dq,avx512bw,avx2,f16c"
// GCC 12 warns about the _mm512_undefined_* inside its own conversion intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
constexpr int kVecs = kLanes / 16;

struct LoadF32 {
  __attribute__((target(PADA_GNORM_AVX512_TARGET))) static __m512 load(const void* p, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, p);
  }
  static constexpr int kSize = 4;
};
struct LoadF16 {
  __attribute__((target(PADA_GNORM_AVX512_TARGET))) static __m512 load(const void* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
  static constexpr int kSize = 2;
};
struct LoadBF16 {
  __attribute__((target(PADA_GNORM_AVX512_TARGET))) static __m512 load(const void* p, __mmask16 m) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
  static constexpr int kSize = 2;
};

template <typename L>
__attribute__((target(PADA_GNORM_AVX512_TARGET), always_inline)) inline float chunk_avx512(
    const char* p, int64_t n) {
  constexpr __mmask16 kAll = 0xffff;
  __m512 acc[kVecs];
  const int width = lane_width(n);  // lanes >= width stay +0
  const int vecs = width < 16 ? 1 : width / 16;
  for (int v = 0; v < kVecs; ++v) acc[v] = _mm512_setzero_ps();
  const int64_t full = n - n % kLanes;
  for (int64_t i = 0; i < full; i += kLanes) {
    const char* q = p + i * L::kSize;
#pragma GCC unroll 16
    for (int v = 0; v < kVecs; ++v) {
      const __m512 x = L::load(q + v * 16 * L::kSize, kAll);
      acc[v] = _mm512_add_ps(acc[v], _mm512_mul_ps(x, x));
    }
  }
  const int64_t rem = n - full;
  for (int v = 0; v * 16 < rem; ++v) {
    const int64_t left = rem - v * 16;
    const __mmask16 m = left >= 16 ? kAll : static_cast<__mmask16>((1u << left) - 1u);
    const __m512 x = L::load(p + (full + v * 16) * L::kSize, m);
    acc[v] = _mm512_add_ps(acc[v], _mm512_mul_ps(x, x));
  }
  // tree_reduce's steps: strides of whole registers, then within one.
  for (int s = vecs / 2; s > 0; s /= 2) {
    for (int v = 0; v < s; ++v) acc[v] = _mm512_add_ps(acc[v], acc[v + s]);
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, acc[0]);
  return tree_reduce(lanes, 16);
}

__attribute__((target(PADA_GNORM_AVX512_TARGET))) float chunk_sum_avx512(const ChunkRow& r) {
  const char* p = reinterpret_cast<const char*>(r.addr);
  if (r.dtype == kF32) return chunk_avx512<LoadF32>(p, r.numel);
  if (r.dtype == kBF16) return chunk_avx512<LoadBF16>(p, r.numel);
  return chunk_avx512<LoadF16>(p, r.numel);
}
#pragma GCC diagnostic pop
#endif

using ChunkSumFn = float (*)(const ChunkRow&);

ChunkSumFn best_chunk_sum() {
#ifdef PADA_GNORM_AVX2
  if (cpu::use_avx512()) return &chunk_sum_avx512;
  if (cpu::use_avx2()) return &chunk_sum_avx2;
#endif
  return &chunk_sum_generic;
}

// Below this many elements per thread, waking threads costs more than it saves.
constexpr int64_t kMinElemsPerThread = int64_t{1} << 17;

}  // namespace

// out[g] <- finish(sum of squares of group g). Chunks are split between
// threads by element count; each chunk's partial, and so the result, is the
// same for any split.
void run_plan(const Plan& plan, int finish, float* out) {
  const int64_t num_rows = static_cast<int64_t>(plan.rows.size());
  const int64_t num_groups = static_cast<int64_t>(plan.group_begin.size()) - 1;
  std::vector<float> partials(num_rows);
  const ChunkSumFn chunk_sum = best_chunk_sum();
  const ChunkRow* rows = plan.rows.data();
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), plan.total_numel / kMinElemsPerThread));
  if (parts == 1) {
    for (int64_t c = 0; c < num_rows; ++c) partials[c] = chunk_sum(rows[c]);
  } else {
    // bounds[p] = first chunk of part p: cut where the running count passes p/parts.
    std::vector<int64_t> bounds(parts + 1, num_rows);
    bounds[0] = 0;
    int64_t seen = 0, p = 1;
    for (int64_t c = 0; c < num_rows && p < parts; ++c) {
      seen += rows[c].numel;
      while (p < parts && seen * parts >= plan.total_numel * p) bounds[p++] = c + 1;
    }
    at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t q = p0; q < p1; ++q) {
        for (int64_t c = bounds[q]; c < bounds[q + 1]; ++c) partials[c] = chunk_sum(rows[c]);
      }
    });
  }
  alignas(64) double acc[kLanes];
  for (int64_t g = 0; g < num_groups; ++g) {
    const int64_t b = plan.group_begin[g], n = plan.group_begin[g + 1] - b;
    const int width = lane_width(n);
    for (int l = 0; l < width; ++l) acc[l] = 0.0;
    for (int64_t c = 0; c < n; ++c) acc[c % kLanes] += partials[b + c];
    const float previous = finish == kAccumulate ? out[g] : 0.0f;
    out[g] = finish_value(tree_reduce(acc, width), previous, finish);
  }
}

namespace {

at::Tensor grouped_grad_norm_cpu(at::TensorList tensors, const at::Tensor& group_index,
                                 int64_t num_groups, bool squared) {
  const Plan plan = plan_tensors("grouped_grad_norm", tensors, group_index, num_groups);
  at::Tensor out = at::empty({num_groups}, at::TensorOptions().dtype(at::kFloat));
  run_plan(plan, squared ? kSquared : kNorm, out.data_ptr<float>());
  return out;
}

void grouped_sq_norm_accumulate_cpu(at::TensorList tensors, const at::Tensor& group_index,
                                    const at::Tensor& table) {
  const char* op = "grouped_sq_norm_accumulate_";
  check_accumulate_args(op, tensors, table);
  const Plan plan = plan_tensors(op, tensors, group_index, table.numel());
  run_plan(plan, kAccumulate, table.data_ptr<float>());
}

at::Tensor segment_grad_norm_cpu(const at::Tensor& flat, const at::Tensor& offsets,
                                 const at::Tensor& group_of_segment, int64_t num_groups,
                                 bool squared) {
  check_no_grad("segment_grad_norm", "flat", flat);
  const Plan plan = plan_segments("segment_grad_norm", flat, offsets, group_of_segment, num_groups);
  at::Tensor out = at::empty({num_groups}, flat.options().dtype(at::kFloat));
  run_plan(plan, squared ? kSquared : kNorm, out.data_ptr<float>());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CPU, m) {
  m.impl("grouped_grad_norm", &grouped_grad_norm_cpu);
  m.impl("grouped_sq_norm_accumulate_", &grouped_sq_norm_accumulate_cpu);
  m.impl("segment_grad_norm", &segment_grad_norm_cpu);
}

}  // namespace gnorm
}  // namespace pada
