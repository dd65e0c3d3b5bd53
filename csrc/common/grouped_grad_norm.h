// Math of pada::grouped_grad_norm shared by the CPU and CUDA kernels.
//
// Work is a table of chunks: each tensor (or segment of a flat buffer) is cut
// into chunks of at most kChunk elements, and the chunks are ordered by group
// (then by tensor position, then by offset), so that group g owns the chunk
// range [group_begin[g], group_begin[g + 1]).
//
// The summation order is part of the contract, so that the CPU and the CUDA
// kernels give the same bits whatever the thread count or the grid:
//   1. chunk partial (float32): kLanes lanes; lane l sums x[l], x[l + kLanes],
//      ... in that order as acc = acc + x * x (never fused into an FMA), then
//      the lanes are combined by the halving tree of tree_reduce;
//   2. group total (float64): the same lanes and tree over the group's chunk
//      partials, in chunk order; then rounded to float32.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "macros.h"

namespace pada {
namespace gnorm {

constexpr int64_t kChunk = int64_t{1} << 16;  // elements per unit of work
constexpr int kLanes = 256;                   // = CUDA threads per block
constexpr int kRowWords = 3;                  // int64 words per chunk row

// Element types, as stored in a chunk row.
enum DType : int64_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

// One chunk: the address of its first element, its length, its DType. Kept
// as plain int64 words so that the Triton kernels read the same table.
struct ChunkRow {
  int64_t addr;
  int64_t numel;
  int64_t dtype;
};
static_assert(sizeof(ChunkRow) == kRowWords * sizeof(int64_t), "ChunkRow must be 3 int64 words");

// What the finishing step writes into out[g].
enum Finish : int { kNorm = 0, kSquared = 1, kAccumulate = 2 };

PADA_HD int64_t num_chunks(int64_t numel) { return (numel + kChunk - 1) / kChunk; }

// The smallest power of two >= min(n, kLanes): the lanes that n items reach.
PADA_HD int lane_width(int64_t n) {
  int w = 1;
  while (w < kLanes && w < n) w *= 2;
  return w;
}

PADA_HD float sq_add(float acc, float x) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(acc, __fmul_rn(x, x));
#else
  // x86-64 host code is built without -mfma (the AVX2 clone names no "fma"),
  // so this is never contracted. On aarch64 GCC would fuse it: results stay
  // thread-count independent but may then differ from CUDA in the last bit.
  return acc + x * x;
#endif
}

PADA_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

PADA_HD float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

// IEEE binary16 to float32, exact; branch-light so that it vectorises.
PADA_HD float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  // Normal numbers and inf/NaN: rebias the exponent; 2^112 rescales subnormals.
  if (em >= 0x7c00u) return bits_to_float(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
  if (em >= 0x0400u) return bits_to_float(sign | ((em << 13) + 0x38000000u));
  return bits_to_float(sign) + (sign ? -1.0f : 1.0f) * static_cast<float>(em) * 5.9604645e-8f;
}

// acc[0] = the halving-tree sum of acc[0 .. kLanes): acc[l] += acc[l + s] for
// s = kLanes / 2, ..., 1. The CUDA kernels do the same additions in shared
// memory and warp shuffles. When only the first `width` lanes (a power of two)
// can be nonzero, starting at s = width / 2 gives the same bits: the skipped
// additions all add +0 (every lane holds a sum of squares: >= +0 or NaN).
template <typename T>
PADA_HD T tree_reduce(T* acc, int width = kLanes) {
  for (int s = width / 2; s > 0; s /= 2) {
    for (int l = 0; l < s; ++l) acc[l] = acc[l] + acc[l + s];
  }
  return acc[0];
}

// out[g] from a group's total sum of squares.
PADA_HD float finish_value(double total, float previous, int finish) {
  const float t = static_cast<float>(total);
  if (finish == kAccumulate) return previous + t;
  if (finish == kNorm) return static_cast<float>(sqrt(static_cast<double>(t)));
  return t;
}

}  // namespace gnorm
}  // namespace pada

// Host side, shared by the CPU and CUDA entry points; defined in
// csrc/cpu/grouped_grad_norm.cpp. Builds the chunk table after checking the
// arguments (the errors users see come from here).
#include <ATen/core/Tensor.h>

#include <vector>

namespace pada {
namespace gnorm {

struct Plan {
  std::vector<ChunkRow> rows;        // ordered by group
  std::vector<int64_t> group_begin;  // num_groups + 1 entries
  int64_t total_numel = 0;
  at::Device device = at::kCPU;    // of the inputs (CPU for an empty list)
  std::vector<at::Tensor> copies;  // contiguous copies of strided inputs, kept alive
};

// `tensors` grouped by `group_index` (a CPU int64 tensor, one entry per tensor).
Plan plan_tensors(const char* op, at::TensorList tensors, const at::Tensor& group_index,
                  int64_t num_groups);

// Segments [offsets[s], offsets[s + 1]) of the 1-D tensor `flat`, segment s
// in group group_of_segment[s]; offsets and group_of_segment are CPU int64.
Plan plan_segments(const char* op, const at::Tensor& flat, const at::Tensor& offsets,
                   const at::Tensor& group_of_segment, int64_t num_groups);

// Checks that `table` can receive the group sums of a plan on `device`.
void check_table(const char* op, const at::Tensor& table, const at::Device& device);

}  // namespace gnorm
}  // namespace pada
