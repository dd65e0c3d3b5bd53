// CPU kernel of pada::sample_with_replacement: the two-level alias table of
// csrc/common/sample_with_replacement.h, built and drawn on OpenMP threads
// Blocks and draws are independent, so the output does not depend
// on the number of threads.
// First, so that every later include finds it: GCC 12 flags the
// self-initialised _mm512_undefined_* in this header (-Wuninitialized, GCC
// bug 105593) once AVX-512 intrinsics are used; the pragma covers its lines.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
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

// The alias table's memory comes from std::aligned_alloc: freed with std::free.
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using TableBuffer = std::unique_ptr<uint64_t, FreeDeleter>;

// Asks for transparent huge pages on the whole 2 MiB pages inside [p, p + bytes)
// before they are first touched: fewer page faults, and one TLB entry per
// 2 MiB for the table's random reads. A hint: failure is harmless.
void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

// Maps the pages of [p, p + bytes) for writing in one system call, where the
// kernel has MADV_POPULATE_WRITE (Linux 5.14): in a VM a first touch costs
// ~2 us a 4 KiB page when taken one fault at a time, about half that in bulk.
// Called per chunk, so the threads populate their own ranges in parallel.
void populate_for_write(void* p, size_t bytes) {
#if defined(__linux__)
  constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE, absent from older headers
  constexpr uintptr_t kPage = 4096;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~(kPage - 1);
  const uintptr_t b = reinterpret_cast<uintptr_t>(p) + bytes;
  if (bytes >= 16 * kPage) madvise(reinterpret_cast<void*>(a), b - a, kPopulateWrite);  // a hint
#else
  (void)p;
  (void)bytes;
#endif
}

TableBuffer alloc_table(int64_t num_slots) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t bytes = static_cast<size_t>(num_slots) * sizeof(uint64_t);
  const size_t align = bytes >= kHuge ? kHuge : 64;
  void* p = std::aligned_alloc(align, (bytes + align - 1) / align * align);
  TORCH_CHECK(p != nullptr, "sample_with_replacement: out of memory for a ", bytes,
              "-byte alias table");
  advise_huge_pages(p, bytes);
  return TableBuffer(static_cast<uint64_t*>(p));
}

// The table's memory is kept for the next call, up to kCachedTableBytes: a
// first touch of fresh memory costs a page fault per 4 KiB page (~1-2 us in
// a VM), which at N = 1e5-1e6 took as long as building the table, and a
// sampler calls the op at one N every epoch. A call that finds the cached
// buffer taken (by a concurrent call) or too small allocates its own; on
// return the larger of the two is kept.
constexpr size_t kCachedTableBytes = size_t{64} << 20;

struct TableCache {
  std::mutex mutex;
  TableBuffer buffer;  // guarded by mutex
  size_t bytes = 0;
};

TableCache& table_cache() {
  static TableCache cache;
  return cache;
}

class TableLease {
 public:
  explicit TableLease(int64_t num_slots)
      : bytes_(static_cast<size_t>(num_slots) * sizeof(uint64_t)) {
    TableCache& cache = table_cache();
    {
      std::lock_guard<std::mutex> lock(cache.mutex);
      if (cache.buffer && cache.bytes >= bytes_) {
        buffer_ = std::move(cache.buffer);
        bytes_ = cache.bytes;
        fresh_ = false;
        return;
      }
    }
    buffer_ = alloc_table(num_slots);
  }
  ~TableLease() {
    if (bytes_ > kCachedTableBytes) return;
    TableCache& cache = table_cache();
    std::lock_guard<std::mutex> lock(cache.mutex);
    if (!cache.buffer || cache.bytes < bytes_) {
      cache.buffer = std::move(buffer_);
      cache.bytes = bytes_;
    }
  }
  TableLease(const TableLease&) = delete;
  TableLease& operator=(const TableLease&) = delete;
  uint64_t* get() const { return buffer_.get(); }
  // Whether the memory is new to this process (its pages not yet mapped).
  bool fresh() const { return fresh_; }

 private:
  TableBuffer buffer_;
  size_t bytes_;
  bool fresh_ = true;
};

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

#ifdef PADA_HAVE_AVX2_PATH
// The same draws eight lanes of 64 bits at a time: Philox, the top-level
// table, the slot's entry and both acceptance tests in vector registers.
// Chunks of kVecChunk draws are pipelined: the positions of chunk k + 1 are
// computed and prefetched before chunk k reads the table, so a cache miss has
// a whole chunk of work to hide behind. A threshold tie (probability 2^-32 a
// test) sends the draw to the scalar draw_one, which reads the refinement stream.
constexpr int kVecChunk = 128;

struct VecChunk {
  alignas(64) uint64_t pos[kVecChunk];
  alignas(64) uint32_t w3[kVecChunk];
  uint64_t ties[2];  // a bit per draw whose top-level test tied
};

// Lanes 8 q .. 8 q + 7 of sixteen 32-bit words, zero-extended to 64 bits.
__attribute__((target(PADA_AVX512_TARGET))) inline __m512i widen_half(int q, __m512i v) {
  return _mm512_cvtepu32_epi64(q == 0 ? _mm512_castsi512_si256(v)
                                      : _mm512_extracti64x4_epi64(v, 1));
}

__attribute__((target(PADA_AVX512_TARGET))) void vec_positions(uint64_t seed, uint64_t s0,
                                                               const swr::Layout& layout,
                                                               const uint64_t* top_thr,
                                                               const int64_t* top_alias,
                                                               const uint64_t* table, VecChunk& c) {
  // Shift counts of 32 give 0 in 64-bit lanes: top_bits(word, 0) == 0.
  const __m128i top_shift = _mm_cvtsi32_si128(32 - layout.log_top);
  const __m128i slot_shift = _mm_cvtsi32_si128(32 - layout.log_block);
  const __m128i block_shift = _mm_cvtsi32_si128(layout.log_block);
  c.ties[0] = c.ties[1] = 0;
  for (int t = 0; t < kVecChunk; t += 32) {
    cpu::Philox16State r[2];
    cpu::philox32_avx512(seed, s0 + t, r);
    for (int h = 0; h < 2; ++h) {
      _mm512_store_si512(c.w3 + t + 16 * h, r[h].c[3]);
      for (int q = 0; q < 2; ++q) {
        const __m512i b = _mm512_srl_epi64(widen_half(q, r[h].c[0]), top_shift);
        const __m512i thr = _mm512_i64gather_epi64(b, top_thr, 8);
        const __m512i alt = _mm512_i64gather_epi64(b, top_alias, 8);
        const __m512i hi = widen_half(q, r[h].c[1]);
        const __m512i t_hi = _mm512_srli_epi64(thr, 32);
        const __mmask8 keep = _mm512_cmplt_epu64_mask(hi, t_hi);
        const __mmask8 tie = _mm512_cmpeq_epu64_mask(hi, t_hi);
        // On a tie `keep` is false and the alias is taken: a valid block, so
        // the lookup stays inside the table until draw_one redoes the draw.
        const __m512i blk = _mm512_mask_blend_epi64(keep, alt, b);
        const __m512i pos = _mm512_or_si512(_mm512_sll_epi64(blk, block_shift),
                                            _mm512_srl_epi64(widen_half(q, r[h].c[2]), slot_shift));
        const int at = t + 16 * h + 8 * q;
        _mm512_store_si512(c.pos + at, pos);
        c.ties[at >> 6] |= static_cast<uint64_t>(tie) << (at & 63);
        for (int l = 0; l < 8; ++l) __builtin_prefetch(table + c.pos[at + l]);
      }
    }
  }
}

// out[s0 + t] for t < n (n <= kVecChunk) from the chunk's positions.
__attribute__((target(PADA_AVX512_TARGET))) void vec_resolve(
    uint64_t seed, uint64_t s0, int n, const swr::Layout& layout, const uint64_t* top_thr,
    const int64_t* top_alias, const uint64_t* table, const VecChunk& c, int64_t* out) {
  const __m512i block_mask = _mm512_set1_epi64(-(int64_t{1} << layout.log_block));
  const __m512i alias_mask = _mm512_set1_epi64((int64_t{1} << swr::kLocalAliasBits) - 1);
  uint64_t ties[2] = {c.ties[0], c.ties[1]};
  for (int t = 0; t < n; t += 8) {
    const __m512i pos = _mm512_load_si512(c.pos + t);
    const __m512i e = _mm512_i64gather_epi64(pos, table, 8);
    const __m512i alt =
        _mm512_or_si512(_mm512_and_si512(pos, block_mask), _mm512_and_si512(e, alias_mask));
    const __m512i hi =
        _mm512_cvtepu32_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(c.w3 + t)));
    // The entry's top 32 bits are the first 32 bits of its 52-bit threshold.
    const __m512i t_hi = _mm512_srli_epi64(e, 32);
    const __mmask8 keep = _mm512_cmplt_epu64_mask(hi, t_hi);
    ties[t >> 6] |= static_cast<uint64_t>(_mm512_cmpeq_epu64_mask(hi, t_hi)) << (t & 63);
    const __mmask8 valid = static_cast<__mmask8>(n - t >= 8 ? 0xFF : (1u << (n - t)) - 1);
    _mm512_mask_storeu_epi64(out + s0 + t, valid, _mm512_mask_blend_epi64(keep, alt, pos));
  }
  for (int h = 0; h < 2; ++h) {
    for (uint64_t m = ties[h]; m != 0; m &= m - 1) {
      const int t = 64 * h + __builtin_ctzll(m);
      if (t < n)
        out[s0 + t] = swr::draw_one(seed, s0 + t, top_thr, top_alias, layout.log_top,
                                    layout.log_block, table);
    }
  }
}

void draw_range_avx512(int64_t begin, int64_t end, uint64_t seed, const swr::Layout& layout,
                       const uint64_t* top_thr, const int64_t* top_alias, const uint64_t* table,
                       int64_t* out) {
  VecChunk chunk[2];
  if (begin >= end) return;
  vec_positions(seed, begin, layout, top_thr, top_alias, table, chunk[0]);
  int k = 0;
  for (int64_t s0 = begin; s0 < end; s0 += kVecChunk, k ^= 1) {
    if (s0 + kVecChunk < end)
      vec_positions(seed, s0 + kVecChunk, layout, top_thr, top_alias, table, chunk[k ^ 1]);
    const int n = static_cast<int>(std::min<int64_t>(kVecChunk, end - s0));
    vec_resolve(seed, s0, n, layout, top_thr, top_alias, table, chunk[k], out);
  }
}
#endif

// Up to kSweepLanes blocks are built together, one per 64-bit vector lane.
constexpr int kSweepLanes = 8;

// Scratch of kSweepLanes block builds, one stretch of L entries per lane,
// left uninitialised (every entry read is written first) and kept per thread:
// fresh memory would cost page faults on every chunk.
struct BlockScratch {
  explicit BlockScratch(int64_t L)
      : L(L),
        p(new double[kSweepLanes * L + 1]),
        light_step(new double[kSweepLanes * L + 1]),
        heavy_p(new double[kSweepLanes * L + 1]),
        light_entry(new uint64_t[kSweepLanes * L + 1]),
        light(new uint32_t[kSweepLanes * L + 1]),
        heavy(new uint32_t[kSweepLanes * L + 1]) {}
  int64_t L;
  // One entry past the last lane: the sweep reads each list one past its end
  // before it knows whether that lane stops (the value is then unused).
  std::unique_ptr<double[]> p, light_step, heavy_p;
  std::unique_ptr<uint64_t[]> light_entry;
  std::unique_ptr<uint32_t[]> light, heavy;
};

BlockScratch& block_scratch(int64_t L) {
  thread_local std::unique_ptr<BlockScratch> scratch;
  if (!scratch || scratch->L < L) scratch.reset(new BlockScratch(L));
  return *scratch;
}

// swr::build_block's partition with AVX-512 for one block into lane `lane`
// of the scratch: slot masses eight at a time, the light and heavy slot
// numbers compress-stored (which keeps both lists in slot order), and for
// each light slot i what its step of the sweep needs, computed ahead:
// local_threshold(p(i)) << kLocalAliasBits (only the alias is left to add)
// and add_rn(p(i), -1.0). Returns the list lengths in *nl, *nh.
template <typename T>
__attribute__((target(PADA_AVX512_TARGET), flatten)) void partition_avx512(
    const T* w, int64_t len, int64_t L, double mass, BlockScratch& sc, int64_t lane,
    int64_t* nl_out, int64_t* nh_out) {
  const double scale = static_cast<double>(L) / mass;
  const int64_t off = lane * L;
  double* p = sc.p.get() + off;
  double* light_step = sc.light_step.get() + off;
  double* heavy_p = sc.heavy_p.get() + off;
  uint64_t* light_entry = sc.light_entry.get() + off;
  uint32_t* light = sc.light.get() + off;
  uint32_t* heavy = sc.heavy.get() + off;
  const __m512d vscale = _mm512_set1_pd(scale);
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512d two52 = _mm512_set1_pd(4503599627370496.0);
  const __m256i step = _mm256_set1_epi32(8);
  __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  int64_t nl = 0, nh = 0;
  for (int64_t k = 0; k < L; k += 8) {
    // Padding past len has mass 0.
    const int64_t rest = len - k;
    const __mmask8 in = static_cast<__mmask8>(rest >= 8 ? 0xFF : rest <= 0 ? 0 : (1u << rest) - 1);
    __m512d wk;
    if constexpr (sizeof(T) == 4)
      wk = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(in, w + k));
    else
      wk = _mm512_maskz_loadu_pd(in, w + k);
    const __m512d pk = _mm512_mul_pd(wk, vscale);
    _mm512_storeu_pd(p + k, pk);
    const __mmask8 is_light = _mm512_cmp_pd_mask(pk, one, _CMP_LT_OQ);
    // local_threshold of a light slot (p < 1): 0 unless p > 0, else the
    // truncated p * 2^52, which is at most kLocalFull.
    const __mmask8 positive = _mm512_cmp_pd_mask(pk, _mm512_setzero_pd(), _CMP_GT_OQ);
    const __m512i thr = _mm512_maskz_cvttpd_epu64(positive, _mm512_mul_pd(pk, two52));
    // The slot number rides in the alias bits until the sweep puts the alias there.
    _mm512_mask_compressstoreu_epi64(
        light_entry + nl, is_light,
        _mm512_or_si512(_mm512_slli_epi64(thr, swr::kLocalAliasBits), _mm512_cvtepu32_epi64(idx)));
    _mm512_mask_compressstoreu_pd(light_step + nl, is_light,
                                  _mm512_add_pd(pk, _mm512_set1_pd(-1.0)));
    _mm256_mask_compressstoreu_epi32(light + nl, is_light, idx);
    _mm256_mask_compressstoreu_epi32(heavy + nh, static_cast<__mmask8>(~is_light), idx);
    _mm512_mask_compressstoreu_pd(heavy_p + nh, static_cast<__mmask8>(~is_light), pk);
    nl += __builtin_popcount(is_light);
    nh += 8 - __builtin_popcount(is_light);
    idx = _mm256_add_epi32(idx, step);
  }
  *nl_out = nl;
  *nh_out = nh;
}

// swr::alias_sweep over the lanes' lists, one block per lane, with selects
// instead of its data-dependent branch (r < 1: a coin flip the CPU mispredicts
// about every other slot, ~5 ns a slot): every step emits one entry in every
// lane that has not stopped, the heavy step's or the light step's, and
// advances that list. The same sums in the same order per block, so the same
// table; a lane stops where alias_sweep breaks, and its ending (what is left
// keeps its own slot) runs scalar. `table` points at lane 0's block; lanes
// outside `lanes` are skipped. Every lane in `lanes` has nh > 0.
__attribute__((target(PADA_AVX512_TARGET))) void sweep_lanes_avx512(
    BlockScratch& sc, __mmask8 lanes, const int64_t* nl_in, const int64_t* nh_in, uint64_t* table) {
  const int64_t L = sc.L;
  const double* p = sc.p.get();
  const __m512i one64 = _mm512_set1_epi64(1);
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512d minus_one = _mm512_set1_pd(-1.0);
  const __m512d two52 = _mm512_set1_pd(4503599627370496.0);
  const __m512i full = _mm512_set1_epi64(static_cast<int64_t>(swr::kLocalFull));
  const __m512i alias_bits = _mm512_set1_epi64((int64_t{1} << swr::kLocalAliasBits) - 1);
  const __m512i off =
      _mm512_mullo_epi64(_mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi64(L));
  const __m512i nl = _mm512_maskz_loadu_epi64(lanes, nl_in);
  const __m512i nh = _mm512_maskz_loadu_epi64(lanes, nh_in);
  __m512i li = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
  __m512i j = _mm512_cvtepu32_epi64(
      _mm512_mask_i64gather_epi32(_mm256_setzero_si256(), lanes, off, sc.heavy.get(), 4));
  __m512d r = _mm512_mask_i64gather_pd(_mm512_setzero_pd(), lanes, _mm512_add_epi64(off, j), p, 8);
  __mmask8 active = lanes;
  while (true) {
    const __mmask8 c = _mm512_cmp_pd_mask(r, one, _CMP_LT_OQ);
    const __m512i hi1 = _mm512_add_epi64(hi, one64);
    const __mmask8 stop = (c & _mm512_cmpge_epi64_mask(hi1, nh)) |
                          (static_cast<__mmask8>(~c) & _mm512_cmpge_epi64_mask(li, nl));
    // Both steps' operands are read before the test is known (they depend only
    // on where the lists stand), in lanes not yet stopped.
    const __m512i hat = _mm512_add_epi64(off, hi1);
    const __m512i jn = _mm512_cvtepu32_epi64(
        _mm512_mask_i64gather_epi32(_mm256_setzero_si256(), active, hat, sc.heavy.get(), 4));
    const __m512d pjn =
        _mm512_mask_i64gather_pd(_mm512_setzero_pd(), active, hat, sc.heavy_p.get(), 8);
    const __m512i at = _mm512_add_epi64(off, li);
    const __m512i le_i =
        _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), active, at, sc.light_entry.get(), 8);
    const __m512i i = _mm512_and_si512(le_i, alias_bits);
    const __m512i le = _mm512_andnot_si512(alias_bits, le_i);
    const __m512d ls =
        _mm512_mask_i64gather_pd(_mm512_setzero_pd(), active, at, sc.light_step.get(), 8);
    active &= static_cast<__mmask8>(~stop);
    if (active == 0) break;
    const __mmask8 ch = active & c, cl = active & static_cast<__mmask8>(~c);
    // The heavy step: emit(j, r, jn), r = add_rn(p(jn), add_rn(r, -1.0)).
    const __mmask8 positive = _mm512_cmp_pd_mask(r, _mm512_setzero_pd(), _CMP_GT_OQ);
    const __mmask8 whole = _mm512_cmp_pd_mask(r, one, _CMP_GE_OQ);
    __m512i thr =
        _mm512_min_epu64(_mm512_maskz_cvttpd_epu64(positive, _mm512_mul_pd(r, two52)), full);
    thr = _mm512_mask_mov_epi64(thr, whole, full);
    const __m512i e_heavy = _mm512_or_si512(_mm512_slli_epi64(thr, swr::kLocalAliasBits), jn);
    const __m512d r_heavy = _mm512_add_pd(pjn, _mm512_add_pd(r, minus_one));
    // The light step: emit(i, p(i), j), r = add_rn(r, add_rn(p(i), -1.0)).
    const __m512i e_light = _mm512_or_si512(le, j);
    const __m512d r_light = _mm512_add_pd(r, ls);
    // Blocks are disjoint, so the lanes never write the same entry.
    const __m512i k = _mm512_mask_blend_epi64(c, i, j);
    const __m512i e = _mm512_mask_blend_epi64(c, e_light, e_heavy);
    _mm512_mask_i64scatter_epi64(table, active, _mm512_add_epi64(off, k), e, 8);
    r = _mm512_mask_blend_pd(cl, _mm512_mask_blend_pd(ch, r, r_heavy), r_light);
    j = _mm512_mask_blend_epi64(ch, j, jn);
    hi = _mm512_mask_add_epi64(hi, ch, hi, one64);
    li = _mm512_mask_add_epi64(li, cl, li, one64);
  }
  alignas(64) int64_t js[kSweepLanes], his[kSweepLanes], lis[kSweepLanes];
  _mm512_store_si512(js, j);
  _mm512_store_si512(his, hi);
  _mm512_store_si512(lis, li);
  for (int lane = 0; lane < kSweepLanes; ++lane) {
    if (!((lanes >> lane) & 1)) continue;
    // alias_sweep's ending, for this lane's block.
    const int64_t o = lane * L;
    uint64_t* t = table + o;
    const uint32_t* light = sc.light.get() + o;
    const uint32_t* heavy = sc.heavy.get() + o;
    const int64_t jl = js[lane];
    t[jl] = swr::local_entry(1.0, jl);
    for (int64_t h = his[lane] + 1; h < nh_in[lane]; ++h)
      t[heavy[h]] = swr::local_entry(1.0, heavy[h]);
    for (int64_t q = lis[lane]; q < nl_in[lane]; ++q) {
      const int64_t i = light[q];
      t[i] = p[o + i] > 0.0 ? swr::local_entry(1.0, i) : swr::local_entry(0.0, jl);
    }
  }
}

template <typename T>
__attribute__((target(PADA_AVX512_TARGET), flatten)) double block_mass_avx512(const T* w,
                                                                              int64_t len,
                                                                              int64_t* bad) {
  return swr::block_mass(w, len, bad);
}

template <typename T>
void build_blocks(const T* w, const swr::Layout& layout, double* mass, int64_t* first_bad,
                  uint64_t* table, bool fresh_table) {
  const int64_t L = int64_t{1} << layout.log_block;
  std::vector<int64_t> bad(layout.num_blocks, std::numeric_limits<int64_t>::max());
#ifdef PADA_HAVE_AVX2_PATH
  // Blocks of 8 slots or more, with AVX-512: built kSweepLanes at a time
  // (one per lane), except where scale n / mass is not finite (a zero or
  // subnormal mass) or no slot is heavy: those take the generic path.
  const bool vec = cpu::use_avx512() && L >= 8;
#else
  const bool vec = false;
#endif
  // A block of 4096 slots takes ~20 us scalar: chunks of 4 blocks (~80 us)
  // are long next to waking a second thread (~10 us), and short enough that
  // N = 1e5 (25 blocks) is built on both threads, evenly. The vector sweep
  // runs all its lanes in the time of one, so larger inputs fill them all.
  const int64_t blocks_per_chunk = vec && layout.num_blocks >= 16 * kSweepLanes ? kSweepLanes : 4;
  const int64_t chunks = (layout.num_blocks + blocks_per_chunk - 1) / blocks_per_chunk;
  for_each_chunk(chunks, [&](int64_t c) {
    const int64_t b0 = c * blocks_per_chunk;
    const int64_t b1 = std::min(layout.num_blocks, b0 + blocks_per_chunk);
    if (fresh_table)
      populate_for_write(table + b0 * L, static_cast<size_t>((b1 - b0) * L) * sizeof(uint64_t));
    std::vector<double> p;
    std::vector<uint16_t> light, heavy;
    auto generic = [&](int64_t b, int64_t len) {
      if (p.empty()) {
        p.resize(L);
        light.resize(L);
        heavy.resize(L);
      }
      swr::build_block(w + b * L, len, layout.log_block, mass[b], table + b * L, p.data(),
                       light.data(), heavy.data());
    };
#ifdef PADA_HAVE_AVX2_PATH
    if (vec) {
      BlockScratch& sc = block_scratch(L);
      int64_t nl[kSweepLanes] = {}, nh[kSweepLanes] = {};
      __mmask8 lanes = 0;
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t len = std::min(L, layout.n - b * L);
        int64_t local_bad = std::numeric_limits<int64_t>::max();
        mass[b] = block_mass_avx512(w + b * L, len, &local_bad);
        if (local_bad != std::numeric_limits<int64_t>::max()) bad[b] = b * L + local_bad;
        const double scale = static_cast<double>(L) / mass[b];
        const int64_t lane = b - b0;
        if (mass[b] > 0.0 && scale <= std::numeric_limits<double>::max()) {
          partition_avx512(w + b * L, len, L, mass[b], sc, lane, &nl[lane], &nh[lane]);
          if (nh[lane] > 0) {
            lanes |= static_cast<__mmask8>(1u << lane);
            continue;
          }
        }
        generic(b, len);
      }
      if (lanes != 0) sweep_lanes_avx512(sc, lanes, nl, nh, table + b0 * L);
      return;
    }
#endif
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t len = std::min(L, layout.n - b * L);
      int64_t local_bad = std::numeric_limits<int64_t>::max();
      mass[b] = swr::block_mass(w + b * L, len, &local_bad);
      if (local_bad != std::numeric_limits<int64_t>::max()) bad[b] = b * L + local_bad;
      generic(b, len);
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
  const TableLease table(num_slots);
  uint64_t* table_ptr = table.get();
  int64_t first_bad = 0;
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "sample_with_replacement_cpu", [&] {
    build_blocks(w.data_ptr<scalar_t>(), layout, mass.data(), &first_bad, table_ptr, table.fresh());
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
  // Outputs of 32 MiB or more are a mapping of their own (glibc's largest
  // mmap threshold), so the hint marks no one else's memory; smaller ones may
  // come from the heap, whose mapping each hint would split further.
  // First-touching 80 MB in this VM: ~40 ms with 4 KiB pages, ~15 with 2 MiB.
  const size_t out_bytes = static_cast<size_t>(num_samples) * sizeof(int64_t);
  if (out_bytes >= (size_t{32} << 20)) advise_huge_pages(out_ptr, out_bytes);
#ifdef PADA_HAVE_AVX2_PATH
  const auto draw = cpu::use_avx512() ? &draw_range_avx512 : &draw_range;
#else
  const auto draw = &draw_range;
#endif
  // ~4 ns a draw: chunks of 8192 draws are ~30 us of work, so that the
  // threads finish together even at N = 1e5 (a multiple of kVecChunk).
  constexpr int64_t kDrawsPerChunk = 8192;
  for_each_chunk((num_samples + kDrawsPerChunk - 1) / kDrawsPerChunk, [&](int64_t c) {
    const int64_t s0 = c * kDrawsPerChunk;
    const int64_t s1 = std::min(num_samples, s0 + kDrawsPerChunk);
    populate_for_write(out_ptr + s0, static_cast<size_t>(s1 - s0) * sizeof(int64_t));
    draw(s0, s1, key, layout, top_thr.data(), top_alias.data(), table_ptr, out_ptr);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CPU, m) {
  m.impl("sample_with_replacement", &sample_with_replacement_cpu);
}

}  // namespace pada
