// CPU kernels of pada::grouped_grad_norm, grouped_sq_norm_accumulate_ and
// segment_grad_norm, plus the argument checks and chunk planning that the
// CUDA entry points share (csrc/common/grouped_grad_norm.h has the math).
//
// The cost to beat is per tensor, not per element: the list is walked once,
// with no allocation per tensor; small inputs run on the calling thread.
#include "../common/grouped_grad_norm.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../common/checks.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PADA_GNORM_AVX2 1
#endif

namespace pada {
namespace gnorm {

namespace {

bool dtype_code(at::ScalarType t, int64_t* code) {
  switch (t) {
    case at::kFloat:
      *code = kF32;
      return true;
    case at::kHalf:
      *code = kF16;
      return true;
    case at::kBFloat16:
      *code = kBF16;
      return true;
    default:
      return false;
  }
}

void check_index_tensor(const char* op, const char* name, const at::Tensor& t, int64_t len) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ",
                   dtype_name(t.scalar_type()));
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": ", name,
                    " must be a CPU tensor (it is read on the host), got ", t.device());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.numel() == len, op, ": ", name, " must be 1-D with ", len,
                    " entries, got shape ", t.sizes());
}

// Fills plan.rows in group order from per-item (address, numel, dtype, group).
struct Item {
  int64_t addr, numel, dtype, group;
};

void place_rows(const std::vector<Item>& items, int64_t num_groups, Plan& plan) {
  plan.group_begin.assign(num_groups + 1, 0);
  for (const Item& it : items) plan.group_begin[it.group + 1] += num_chunks(it.numel);
  for (int64_t g = 0; g < num_groups; ++g) plan.group_begin[g + 1] += plan.group_begin[g];
  plan.rows.resize(plan.group_begin[num_groups]);
  std::vector<int64_t> next(plan.group_begin.begin(), plan.group_begin.end() - 1);
  for (const Item& it : items) {
    int64_t& r = next[it.group];
    const int64_t size = it.dtype == kF32 ? 4 : 2;
    for (int64_t off = 0; off < it.numel; off += kChunk) {
      plan.rows[r++] = ChunkRow{it.addr + off * size, std::min(kChunk, it.numel - off), it.dtype};
    }
    plan.total_numel += it.numel;
  }
}

}  // namespace

Plan plan_tensors(const char* op, at::TensorList tensors, const at::Tensor& group_index,
                  int64_t num_groups) {
  TORCH_CHECK_VALUE(num_groups >= 0, op, ": num_groups must be >= 0, got ", num_groups);
  const int64_t n = static_cast<int64_t>(tensors.size());
  check_index_tensor(op, "group_index", group_index, n);
  const at::Tensor gi = group_index.contiguous();
  const int64_t* groups = gi.data_ptr<int64_t>();
  Plan plan;
  std::vector<Item> items(n);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& t = tensors[i];
    if (i == 0) plan.device = t.device();
    TORCH_CHECK(t.device() == plan.device, op, ": all tensors must be on one device; tensors[", i,
                "] is on ", t.device(), " but tensors[0] is on ", plan.device);
    int64_t code = 0;
    TORCH_CHECK_TYPE(dtype_code(t.scalar_type(), &code), op, ": tensors[", i, "] has dtype ",
                     dtype_name(t.scalar_type()), "; supported are float32, float16 and bfloat16");
    const int64_t g = groups[i];
    TORCH_CHECK_INDEX(g >= 0 && g < num_groups, op, ": group_index[", i, "] = ", g,
                      " (for tensors[", i, "]) is out of range for num_groups = ", num_groups);
    // A dense tensor in any dimension order covers exactly numel slots from
    // its data pointer, and the order of the terms is ours to fix: no copy.
    const void* ptr = nullptr;
    if (t.numel() > 0) {
      if (t.is_non_overlapping_and_dense()) {
        ptr = t.data_ptr();
      } else {
        plan.copies.push_back(t.contiguous());
        ptr = plan.copies.back().data_ptr();
      }
    }
    items[i] = Item{reinterpret_cast<int64_t>(ptr), t.numel(), code, g};
  }
  if (n == 0) plan.device = group_index.device();
  place_rows(items, num_groups, plan);
  return plan;
}

Plan plan_segments(const char* op, const at::Tensor& flat, const at::Tensor& offsets,
                   const at::Tensor& group_of_segment, int64_t num_groups) {
  TORCH_CHECK_VALUE(num_groups >= 0, op, ": num_groups must be >= 0, got ", num_groups);
  int64_t code = 0;
  TORCH_CHECK_TYPE(dtype_code(flat.scalar_type(), &code), op, ": flat has dtype ",
                   dtype_name(flat.scalar_type()), "; supported are float32, float16 and bfloat16");
  TORCH_CHECK_VALUE(flat.dim() == 1 && flat.is_contiguous(), op,
                    ": flat must be a contiguous 1-D tensor, got shape ", flat.sizes());
  const int64_t s = group_of_segment.numel();
  check_index_tensor(op, "offsets", offsets, s + 1);
  check_index_tensor(op, "group_of_segment", group_of_segment, s);
  const at::Tensor off_c = offsets.contiguous(), grp_c = group_of_segment.contiguous();
  const int64_t* off = off_c.data_ptr<int64_t>();
  const int64_t* grp = grp_c.data_ptr<int64_t>();
  TORCH_CHECK_INDEX(off[0] >= 0 && off[s] <= flat.numel(), op, ": offsets must lie in [0, ",
                    flat.numel(), "], got offsets[0] = ", off[0], ", offsets[", s, "] = ", off[s]);
  Plan plan;
  plan.device = flat.device();
  std::vector<Item> items(s);
  const int64_t base = reinterpret_cast<int64_t>(flat.data_ptr());
  const int64_t size = code == kF32 ? 4 : 2;
  for (int64_t i = 0; i < s; ++i) {
    TORCH_CHECK_VALUE(off[i + 1] >= off[i], op, ": offsets must be non-decreasing, but offsets[",
                      i + 1, "] = ", off[i + 1], " < offsets[", i, "] = ", off[i]);
    TORCH_CHECK_INDEX(grp[i] >= 0 && grp[i] < num_groups, op, ": group_of_segment[", i,
                      "] = ", grp[i], " is out of range for num_groups = ", num_groups);
    items[i] = Item{base + off[i] * size, off[i + 1] - off[i], code, grp[i]};
  }
  place_rows(items, num_groups, plan);
  return plan;
}

void check_table(const char* op, const at::Tensor& table, const at::Device& device) {
  TORCH_CHECK_TYPE(table.scalar_type() == at::kFloat, op, ": table must be float32, got ",
                   dtype_name(table.scalar_type()));
  TORCH_CHECK_VALUE(table.dim() == 1 && table.is_contiguous(), op,
                    ": table must be a contiguous 1-D tensor, got shape ", table.sizes());
  TORCH_CHECK(table.device() == device, op, ": table is on ", table.device(),
              " but the tensors are on ", device);
}

void check_no_grad(const char* op, const std::string& name, const at::Tensor& t) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && t.requires_grad()), op,
              " is not differentiable, but ", name,
              " requires grad: detach it or call it under torch.no_grad() "
              "(grouped_grad_norm is differentiable)");
}

void check_accumulate_args(const char* op, at::TensorList tensors, const at::Tensor& table) {
  for (size_t i = 0; i < tensors.size(); ++i)
    check_no_grad(op, "tensors[" + std::to_string(i) + "]", tensors[i]);
  check_no_grad(op, "table", table);
  check_table(op, table, tensors.empty() ? table.device() : tensors[0].device());
}

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

using ChunkSumFn = float (*)(const ChunkRow&);

ChunkSumFn best_chunk_sum() {
#ifdef PADA_GNORM_AVX2
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  if (avx2) return &chunk_sum_avx2;
#endif
  return &chunk_sum_generic;
}

// Below this many elements per thread, waking threads costs more than it saves.
constexpr int64_t kMinElemsPerThread = int64_t{1} << 17;

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
