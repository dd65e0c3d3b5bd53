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
//
// The CUDA kernels are written as the step functions below (one lane's sum,
// one step of the tree, one warp-shuffle step), so that a host test
// (tests/cpp/test_gnorm_replay.cpp) can replay a block lane by lane.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

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
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));  // exact too: the same value, one instruction
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  // Normal numbers and inf/NaN: rebias the exponent; 2^112 rescales subnormals.
  if (em >= 0x7c00u) return bits_to_float(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
  if (em >= 0x0400u) return bits_to_float(sign | ((em << 13) + 0x38000000u));
  return bits_to_float(sign) + (sign ? -1.0f : 1.0f) * static_cast<float>(em) * 5.9604645e-8f;
#endif
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

// ---- Step functions of the CUDA kernels (replayed on the host by the tests).

// Element types as the kernels load them: 16-bit floats travel as their bits.
struct F16Bits {
  uint16_t bits;
};
struct BF16Bits {
  uint16_t bits;
};
PADA_HD float elem_to_float(float x) { return x; }
PADA_HD float elem_to_float(F16Bits x) { return f16_to_float(x.bits); }
PADA_HD float elem_to_float(BF16Bits x) { return bf16_to_float(x.bits); }

// Step 1, one lane of a chunk of n elements: the float32 sum of squares of
// elements lane, lane + kLanes, ... in that order. Lanes >= n give +0.
template <typename E>
PADA_HD float lane_partial(const E* p, int64_t n, int lane) {
  float acc = 0.0f;
  for (int64_t i = lane; i < n; i += kLanes) acc = sq_add(acc, elem_to_float(p[i]));
  return acc;
}

// The same with the element type chosen by a chunk row's DType code.
PADA_HD float lane_partial_any(const void* p, int64_t n, int64_t dtype, int lane) {
  if (dtype == kF32) return lane_partial(static_cast<const float*>(p), n, lane);
  if (dtype == kF16) return lane_partial(static_cast<const F16Bits*>(p), n, lane);
  return lane_partial(static_cast<const BF16Bits*>(p), n, lane);
}

// Step 2, one lane of a group: the float64 sum of the group's chunk
// partials lane, lane + kLanes, ... in chunk order.
PADA_HD double group_lane_partial(const float* partials, int64_t n, int lane) {
  double acc = 0.0;
  for (int64_t c = lane; c < n; c += kLanes) acc = add_rn(acc, static_cast<double>(partials[c]));
  return acc;
}

// One step of the halving tree at stride s, for lane l < s: what the block
// does in shared memory for s >= 32.
template <typename T>
PADA_HD void tree_step(T* acc, int lane, int s) {
  if (lane < s) acc[lane] = acc[lane] + acc[lane + s];
}

// One warp-shuffle step, s = 16, ..., 1: every lane adds what
// __shfl_down_sync(v, s) hands it, lane l + s's value (its own where
// l + s >= 32; such lanes never reach lane 0). Lane 0 ends with the value
// tree_reduce computes.
template <typename T>
PADA_HD T shuffle_step(T mine, T from_lane_plus_s) {
  return mine + from_lane_plus_s;
}

constexpr int kWarp = 32;  // the tree goes to shuffles below this stride

// ---- Launch batches: the CUDA kernels take their work by value.
//
// The chunk rows and group ranges are kernel arguments, not a table copied
// from host memory, so that nothing the host may free or reuse is read after
// the launch: the ops can be captured in a CUDA graph and replayed. A launch
// takes kBatchRows chunks (kBatchGroups groups); both structs stay under the
// 4 KiB of kernel parameters that every CUDA version accepts.
constexpr int kBatchRows = 320;
constexpr int kBatchGroups = 470;
constexpr uint32_t kNumelBits = 24;  // kChunk = 2^16 fits; the DType code above

struct RowBatch {
  int64_t first;                     // plan index of the batch's first chunk
  int64_t addr[kBatchRows];          // address of each chunk's first element
  uint32_t numel_dtype[kBatchRows];  // numel | dtype << kNumelBits
  int32_t count;                     // chunks in this batch (= its blocks)
};

struct GroupBatch {
  int64_t first;                    // first group of the batch
  int64_t begin[kBatchGroups + 1];  // chunk ranges, as Plan::group_begin
  int32_t count;                    // groups in this batch (= its blocks)
};

static_assert(kChunk < (int64_t{1} << kNumelBits), "a chunk's numel must fit its bits");
static_assert(sizeof(RowBatch) + 16 <= 4096, "RowBatch and two pointers: kernel parameter limit");
static_assert(sizeof(GroupBatch) + 32 <= 4096, "GroupBatch and the others: parameter limit");

PADA_HD int64_t num_batches(int64_t items, int64_t per_batch) {
  return (items + per_batch - 1) / per_batch;
}
PADA_HD int64_t batch_numel(const RowBatch& b, int r) {
  return b.numel_dtype[r] & ((1u << kNumelBits) - 1);
}
PADA_HD int64_t batch_dtype(const RowBatch& b, int r) { return b.numel_dtype[r] >> kNumelBits; }

// Batch k of a plan's rows (host).
inline RowBatch make_row_batch(const ChunkRow* rows, int64_t num_rows, int64_t k) {
  RowBatch b{};
  b.first = k * kBatchRows;
  const int64_t end = num_rows < b.first + kBatchRows ? num_rows : b.first + kBatchRows;
  b.count = static_cast<int32_t>(end - b.first);
  for (int r = 0; r < b.count; ++r) {
    const ChunkRow& row = rows[b.first + r];
    b.addr[r] = row.addr;
    b.numel_dtype[r] = static_cast<uint32_t>(row.numel) | static_cast<uint32_t>(row.dtype)
                                                              << kNumelBits;
  }
  return b;
}

// Batch k of a plan's groups (host); group_begin has num_groups + 1 entries.
inline GroupBatch make_group_batch(const int64_t* group_begin, int64_t num_groups, int64_t k) {
  GroupBatch b{};
  b.first = k * kBatchGroups;
  const int64_t end = num_groups < b.first + kBatchGroups ? num_groups : b.first + kBatchGroups;
  b.count = static_cast<int32_t>(end - b.first);
  for (int g = 0; g <= b.count; ++g) b.begin[g] = group_begin[b.first + g];
  return b;
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
