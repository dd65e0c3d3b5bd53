// CPU kernel of pada::sample_with_replacement: the two-level alias table of
// csrc/common/sample_with_replacement.h, built and drawn on OpenMP threads
// Blocks and draws are independent, so the output does not depend
// on the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <memory>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "../common/sample_with_replacement.h"
#include "../host/sample_with_replacement.h"
#include "philox_simd.h"

namespace pada {
namespace {

// Runs body(c) for c in [0, num_chunks) on torch's thread count, chunks handed
// out dynamically: on a shared machine a descheduled thread then delays only
// its current chunk, not a fixed half of the work. Chunks are independent and
// their results do not depend on which thread runs them.
template <typename Body>
void for_each_chunk(int64_t num_chunks, const Body& body) {
#if defined(_OPENMP)
  const int threads = static_cast<int>(std::min<int64_t>(at::get_num_threads(), num_chunks));
  if (threads > 1 && !at::in_parallel_region()) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t c = 0; c < num_chunks; ++c) body(c);
    return;
  }
#endif
  for (int64_t c = 0; c < num_chunks; ++c) body(c);
}

// Scratch for the alias table. Draws hit it at random, so on Linux we ask for
// transparent huge pages: one TLB entry per 2 MiB instead of per 4 KiB.
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using TableBuffer = std::unique_ptr<uint64_t, FreeDeleter>;

TableBuffer alloc_table(int64_t num_slots) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t bytes = static_cast<size_t>(num_slots) * sizeof(uint64_t);
  const size_t align = bytes >= kHuge ? kHuge : 64;
  void* p = std::aligned_alloc(align, (bytes + align - 1) / align * align);
  TORCH_CHECK(p != nullptr, "sample_with_replacement: out of memory for a ", bytes,
              "-byte alias table");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align == kHuge) madvise(p, bytes, MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
  return TableBuffer(static_cast<uint64_t*>(p));
}

// Draws in chunks of 64: the slots of a whole chunk are located and
// prefetched before any is read, so each random cache miss has ~64 draws of
// work to hide behind. Philox words come 16 draws at a time from one SIMD call.
constexpr int kPhiloxBatch = 2 * cpu::kPhiloxLanes;
constexpr int kDrawChunk = 4 * kPhiloxBatch;

void draw_range(int64_t begin, int64_t end, uint64_t seed, const swr::Layout& layout,
                const uint64_t* top_thr, const int64_t* top_alias, const uint64_t* table,
                int64_t* out) {
  const cpu::Philox16Fn philox16 = cpu::best_philox16();
  uint32_t words[2][4][cpu::kPhiloxLanes];
  Philox4 r[kDrawChunk];
  uint64_t pos[kDrawChunk];
  for (int64_t s0 = begin; s0 < end; s0 += kDrawChunk) {
    const int n = static_cast<int>(std::min<int64_t>(kDrawChunk, end - s0));
    for (int t = 0; t < n; ++t) {
      if (t % kPhiloxBatch == 0) philox16(seed, static_cast<uint64_t>(s0 + t), 0, words);
      const int h = (t % kPhiloxBatch) / cpu::kPhiloxLanes, l = t % cpu::kPhiloxLanes;
      r[t] = Philox4{{words[h][0][l], words[h][1][l], words[h][2][l], words[h][3][l]}};
      pos[t] = swr::draw_position(r[t], seed, static_cast<uint64_t>(s0 + t), top_thr, top_alias,
                                  layout.log_top, layout.log_block);
      __builtin_prefetch(table + pos[t]);
    }
    for (int t = 0; t < n; ++t) {
      const uint64_t s = static_cast<uint64_t>(s0 + t);
      out[s0 + t] = swr::draw_resolve(r[t], seed, s, pos[t], table[pos[t]], layout.log_block);
    }
  }
}

template <typename T>
void build_blocks(const T* w, const swr::Layout& layout, double* mass, int64_t* first_bad,
                  uint64_t* table) {
  const int64_t L = int64_t{1} << layout.log_block;
  std::vector<int64_t> bad(layout.num_blocks, std::numeric_limits<int64_t>::max());
  // A block of 4096 slots takes ~15 us: chunks of 32 blocks (~0.5 ms) keep
  // small inputs on one thread, where waking a second one costs more.
  constexpr int64_t kBlocksPerChunk = 32;
  const int64_t chunks = (layout.num_blocks + kBlocksPerChunk - 1) / kBlocksPerChunk;
  for_each_chunk(chunks, [&](int64_t c) {
    std::vector<double> p(L);
    std::vector<uint16_t> light(L), heavy(L);
    const int64_t b1 = std::min(layout.num_blocks, (c + 1) * kBlocksPerChunk);
    for (int64_t b = c * kBlocksPerChunk; b < b1; ++b) {
      const int64_t len = std::min(L, layout.n - b * L);
      int64_t local_bad = std::numeric_limits<int64_t>::max();
      mass[b] = swr::block_mass(w + b * L, len, &local_bad);
      if (local_bad != std::numeric_limits<int64_t>::max()) bad[b] = b * L + local_bad;
      swr::build_block(w + b * L, len, layout.log_block, mass[b], table + b * L, p.data(),
                       light.data(), heavy.data());
    }
  });
  *first_bad = *std::min_element(bad.begin(), bad.end());
}

at::Tensor sample_with_replacement_cpu(const at::Tensor& weights, int64_t num_samples,
                                       const at::Tensor& seed) {
  check_sample_with_replacement_args(weights, num_samples, seed);
  TORCH_CHECK(weights.is_cpu(), "sample_with_replacement_cpu: weights must be a CPU tensor");
  const at::Tensor w = weights.contiguous();
  const swr::Layout layout = swr::make_layout(w.numel());
  const int64_t num_slots = layout.num_blocks << layout.log_block;

  std::vector<double> mass(layout.num_blocks);
  TableBuffer table = alloc_table(num_slots);
  uint64_t* table_ptr = table.get();
  int64_t first_bad = 0;
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "sample_with_replacement_cpu", [&] {
    build_blocks(w.data_ptr<scalar_t>(), layout, mass.data(), &first_bad, table_ptr);
  });
  // The canonical lane order of the GPU's one-warp sum: the same on every backend.
  const double total = swr::lane_order_sum(mass.data(), layout.num_blocks);
  check_sample_with_replacement_status(w, std::min(first_bad, w.numel()), total);

  const int64_t top_size = int64_t{1} << layout.log_top;
  std::vector<uint64_t> top_thr(top_size);
  std::vector<int64_t> top_alias(top_size), light(top_size), heavy(top_size);
  swr::build_top(mass.data(), layout.num_blocks, layout.log_top, total, top_thr.data(),
                 top_alias.data(), light.data(), heavy.data());

  at::Tensor out = at::empty({num_samples}, w.options().dtype(at::kLong));
  const uint64_t key = static_cast<uint64_t>(seed.item<int64_t>());
  int64_t* out_ptr = out.data_ptr<int64_t>();
  // ~10 ns a draw: chunks of 32768 draws are ~0.3 ms of work.
  constexpr int64_t kDrawsPerChunk = 32768;
  for_each_chunk((num_samples + kDrawsPerChunk - 1) / kDrawsPerChunk, [&](int64_t c) {
    const int64_t s0 = c * kDrawsPerChunk;
    draw_range(s0, std::min(num_samples, s0 + kDrawsPerChunk), key, layout, top_thr.data(),
               top_alias.data(), table_ptr, out_ptr);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CPU, m) {
  m.impl("sample_with_replacement", &sample_with_replacement_cpu);
}

}  // namespace pada
