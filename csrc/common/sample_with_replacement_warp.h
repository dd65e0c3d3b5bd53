// The warp-level steps of the CUDA alias-table builds of
// pada::sample_with_replacement, one lane at a time. The kernels call them
// with real __shfl_sync/__ballot_sync results; tests/cpp/test_swr_warp_replay
// runs them for all 32 lanes in lockstep with emulated ones and compares the
// tables with the CPU's build_block/build_top entry for entry. So everything
// that depends on the lane (which slots it owns, where a slot lands in the
// lists, which lanes are past the end) lives here, and the kernels only loop.
//
// A warp builds one table of `size` slots (a block of L <= 4096 weights, or
// the top level over 2^log_top blocks):
//   1. lane_partial: lane l sums slots l, l + 32, ... and finds its first bad one;
//   2. fold_lanes: every lane folds the 32 partials in lane order (shuffles);
//   3. compaction_round, for base = 0, 32, ... < size: the slots base + lane
//      classified light (p < 1) by ballot go to the light list, the others to
//      the heavy list, both in slot order; lanes past `size` take no part,
//      which matters for size < 32 (a block of n <= 16 weights);
//   4. lane 0 runs the sweep (block_sweep/top_sweep of the common header),
//      or, for a block of mass 0, zero_fill_lane zeroes the table.
#pragma once

#include "sample_with_replacement.h"

namespace pada {
namespace swr {
namespace warp {

constexpr unsigned kFullMask = 0xffffffffu;

PADA_HD int popcount(unsigned x) {
#if defined(__CUDA_ARCH__)
  return __popc(x);
#else
  return __builtin_popcount(x);
#endif
}

// Ballot mask of lanes [0, count) of a round: all 32 when count >= 32.
PADA_HD unsigned active_lanes(int64_t count) {
  if (count >= kLanes) return kFullMask;
  if (count <= 0) return 0u;
  return (1u << count) - 1u;
}

// What one lane contributes to the fold.
struct Partial {
  double sum;   // slots lane, lane + 32, ... < len, added in that order
  int64_t bad;  // first invalid one of them, INT64_MAX if none
};

template <typename T>
PADA_HD Partial lane_partial(const T* x, int64_t len, int lane) {
  Partial r{0.0, INT64_MAX};
  for (int64_t k = lane; k < len; k += kLanes) {
    const T v = x[k];
    if (bad_weight(v) && k < r.bad) r.bad = k;
    r.sum = add_rn(r.sum, static_cast<double>(v));
  }
  return r;
}

// The 32 partials folded in lane order (block_mass's order); partial(l) is
// lane l's, from a shuffle. Every lane gets the same result.
template <typename PartialOf>
PADA_HD Partial fold_lanes(const PartialOf& partial) {
  Partial r{0.0, INT64_MAX};
  for (int l = 0; l < kLanes; ++l) {
    const Partial o = partial(l);
    r.sum = add_rn(r.sum, o.sum);
    r.bad = o.bad < r.bad ? o.bad : r.bad;
  }
  return r;
}

// Lengths of the light and heavy lists so far.
struct Counts {
  int64_t nl, nh;
};

// Both lists in one array of `size` entries (they partition the slots): the
// light list from the front, the heavy list from the back (heavy i at
// size - 1 - i). Half the shared memory of two arrays, so twice the blocks
// fit on an SM to hide the sweeps' latency.
template <typename Index>
struct SplitLists {
  Index* a;
  int64_t size;
  PADA_HD void put_light(int64_t i, int64_t k) const { a[i] = static_cast<Index>(k); }
  PADA_HD void put_heavy(int64_t i, int64_t k) const { a[size - 1 - i] = static_cast<Index>(k); }
  PADA_HD int64_t light(int64_t i) const { return a[i]; }
  PADA_HD int64_t heavy(int64_t i) const { return a[size - 1 - i]; }
};

// The slot a lane classifies in the round starting at `base`, or -1 past `size`.
PADA_HD int64_t round_slot(int64_t base, int lane, int64_t size) {
  return base + lane < size ? base + lane : -1;
}

// One round of the order-preserving compaction. `lights` is the ballot of
// "slot round_slot(base, lane, size) exists and is light"; a slot's rank
// among the lights (heavies) of its round is the number of lower lanes of
// the same class. Stores this lane's slot and returns the counts after the
// round (the same in every lane).
template <typename Lists>
PADA_HD Counts compaction_round(int lane, int64_t base, int64_t size, unsigned lights,
                                const Lists& lists, Counts c) {
  const unsigned active = active_lanes(size - base);
  lights &= active;
  const unsigned heavies = active & ~lights;
  const unsigned lower = (1u << lane) - 1u;
  const unsigned me = 1u << lane;
  const int64_t k = base + lane;
  if (lights & me)
    lists.put_light(c.nl + popcount(lights & lower), k);
  else if (heavies & me)
    lists.put_heavy(c.nh + popcount(heavies & lower), k);
  return Counts{c.nl + popcount(lights), c.nh + popcount(heavies)};
}

// The sweep's accessors of a SplitLists.
template <typename Lists>
PADA_HD auto light_of(const Lists& lists) {
  return [&lists](int64_t i) -> int64_t { return lists.light(i); };
}
template <typename Lists>
PADA_HD auto heavy_of(const Lists& lists) {
  return [&lists](int64_t i) -> int64_t { return lists.heavy(i); };
}

// This lane's share of zeroing a table of `size` entries.
PADA_HD void zero_fill_lane(uint64_t* table, int64_t size, int lane) {
  for (int64_t k = lane; k < size; k += kLanes) table[k] = 0;
}

// The draw kernel's grid: threads_per_block threads per block, at most
// kMaxDrawBlocks blocks, each thread striding over the draws.
constexpr int kDrawThreads = 256;
constexpr int64_t kMaxDrawBlocks = 65536;

PADA_HD int64_t draw_blocks(int64_t num_samples) {
  const int64_t b = (num_samples + kDrawThreads - 1) / kDrawThreads;
  return b < kMaxDrawBlocks ? b : kMaxDrawBlocks;
}

// First draw of thread `thread` of block `block`, and the stride between its draws.
PADA_HD int64_t draw_first(int64_t block, int thread) { return block * kDrawThreads + thread; }

PADA_HD int64_t draw_stride(int64_t blocks) { return blocks * kDrawThreads; }

}  // namespace warp
}  // namespace swr
}  // namespace pada
