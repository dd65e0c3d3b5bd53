// Math of pada::sample_with_replacement shared by the CPU and CUDA kernels.
//
// A two-level alias table (Walker 1977, Vose 1991), built in O(N) with no
// cross-block dependency so that any number of threads builds the same table:
//   * the weights are cut into blocks of L = 2^log_block slots (L <= 4096);
//     each block gets its own alias table over its L slots (padding = weight 0);
//   * a top-level alias table over the 2^log_top blocks picks a block with
//     probability mass(block) / sum(weights).
// A draw costs one Philox call: word 0 picks a block, word 1 accepts it or
// takes its alias, word 2 picks a slot, word 3 accepts it or takes its alias.
// Slot and block choice use the top bits of a word (sizes are powers of two),
// so they are exactly uniform. Acceptance compares a 64-bit (top) or 52-bit
// (local) fixed-point threshold with as many random bits: the second 32 bits
// are only drawn when the first 32 tie, so exactness costs nothing.
#pragma once

#include <cmath>

#include "macros.h"
#include "philox.h"

namespace pada {
namespace swr {

constexpr int kMaxLogBlock = 12;
constexpr int kLocalAliasBits = kMaxLogBlock;
constexpr int kLocalThrBits = 64 - kLocalAliasBits;  // 52
constexpr int kLanes = 32;
constexpr uint64_t kLocalFull = (uint64_t{1} << kLocalThrBits) - 1;

PADA_HD int ceil_log2(uint64_t n) {
  int bits = 0;
  while ((uint64_t{1} << bits) < n) ++bits;
  return bits;
}

struct Layout {
  int64_t n;           // number of weights
  int log_block;       // log2 of the slots per block
  int64_t num_blocks;  // blocks that hold weights: ceil(n / L)
  int log_top;         // log2 of the top-level table size (>= num_blocks)
};

PADA_HD Layout make_layout(int64_t n) {
  Layout l;
  l.n = n;
  const int lb = ceil_log2(static_cast<uint64_t>(n));
  l.log_block = lb < kMaxLogBlock ? lb : kMaxLogBlock;
  l.num_blocks = (n + (int64_t{1} << l.log_block) - 1) >> l.log_block;
  l.log_top = ceil_log2(static_cast<uint64_t>(l.num_blocks));
  return l;
}

// True when a weight is not a finite, non-negative number.
template <typename T>
PADA_HD bool bad_weight(T w) {
  const double d = static_cast<double>(w);
  return !(d >= 0.0) || !(d <= 1.7976931348623157e308);
}

// Slot mass w scaled so that the n slots sum to n: w * (n / total), or, when
// n / total overflows (a subnormal total), (w / total) * n, exact as n is a
// power of two. `scale` is n / total.
PADA_HD double scaled_mass(double w, double n, double total, double scale) {
  if (PADA_UNLIKELY(!(scale <= 1.7976931348623157e308))) return mul_rn(div_rn(w, total), n);
  return mul_rn(w, scale);
}

// Fixed-point thresholds of a slot that keeps `own` (in [0, 1]) of its mass.
PADA_HD uint64_t top_threshold(double own) {
  if (!(own > 0.0)) return 0;
  if (own >= 1.0) return ~uint64_t{0};
  return static_cast<uint64_t>(mul_rn(own, 18446744073709551616.0));  // 2^64
}

PADA_HD uint64_t local_threshold(double own) {
  if (!(own > 0.0)) return 0;
  if (own >= 1.0) return kLocalFull;
  const uint64_t t = static_cast<uint64_t>(mul_rn(own, 4503599627370496.0));  // 2^52
  return t < kLocalFull ? t : kLocalFull;
}

// Alias construction by a single sweep over the light slots (p < 1) and the
// heavy slots (p >= 1), each list in slot order: light i takes its missing
// mass from the current heavy j; a heavy whose residual drops below 1 becomes
// a light slot itself, aliased to the next heavy. The result depends only on
// the two lists, so every backend that lists slots in order builds the same
// table. p(k) is slot k's mass scaled so that the n masses sum to n;
// emit(k, own, alias) is called once per slot, alias == k meaning "keep".
template <typename P, typename Light, typename Heavy, typename Emit>
PADA_HD void alias_sweep(int64_t nl, const Light& light, int64_t nh, const Heavy& heavy, const P& p,
                         const Emit& emit) {
  if (nh == 0) {
    // Only rounding can leave no heavy slot: all masses are then (nearly) 1.
    // Keep every slot, except that a zero stays never-drawn.
    int64_t keeper = light(0);
    for (int64_t li = 1; li < nl; ++li)
      if (p(light(li)) > p(keeper)) keeper = light(li);
    for (int64_t li = 0; li < nl; ++li) {
      const int64_t k = light(li);
      if (p(k) > 0.0)
        emit(k, 1.0, k);
      else
        emit(k, 0.0, keeper);
    }
    return;
  }
  int64_t li = 0, hi = 0;
  int64_t j = heavy(0);
  double r = p(j);
  while (true) {
    if (r < 1.0) {
      if (hi + 1 >= nh) break;
      const int64_t jn = heavy(hi + 1);
      emit(j, r, jn);
      r = add_rn(p(jn), add_rn(r, -1.0));
      j = jn;
      ++hi;
    } else {
      if (li >= nl) break;
      const int64_t i = light(li);
      const double pi = p(i);
      emit(i, pi, j);
      r = add_rn(r, add_rn(pi, -1.0));
      ++li;
    }
  }
  // What is left holds (up to rounding) exactly one slot of mass each.
  emit(j, 1.0, j);
  for (int64_t h = hi + 1; h < nh; ++h) emit(heavy(h), 1.0, heavy(h));
  for (; li < nl; ++li) {
    const int64_t i = light(li);
    if (p(i) > 0.0)
      emit(i, 1.0, i);
    else
      emit(i, 0.0, j);  // a zero weight is never drawn
  }
}

// Sums `len` weights in the canonical order that the CUDA warp reproduces:
// lane l adds slots l, l + 32, ... in turn; the 32 lane sums are added in
// lane order. Returns the first invalid slot in *bad (or leaves it alone).
template <typename T>
PADA_HD double block_mass(const T* w, int64_t len, int64_t* bad) {
  double acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = 0.0;
  bool any_bad = false;
  int64_t k0 = 0;
  for (; k0 + kLanes <= len; k0 += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      any_bad |= bad_weight(w[k0 + l]);
      acc[l] = add_rn(acc[l], static_cast<double>(w[k0 + l]));
    }
  }
  for (int l = 0; k0 + l < len; ++l) {
    any_bad |= bad_weight(w[k0 + l]);
    acc[l] = add_rn(acc[l], static_cast<double>(w[k0 + l]));
  }
  if (any_bad) {
    for (int64_t k = 0; k < len; ++k)
      if (bad_weight(w[k])) {
        if (k < *bad) *bad = k;
        break;
      }
  }
  double m = 0.0;
  for (int l = 0; l < kLanes; ++l) m = add_rn(m, acc[l]);
  return m;
}

// Sum of x[0..len) in the canonical order of block_mass(), which every backend
// uses for the total over the block masses too (a one-warp sum on the GPU).
PADA_HD double lane_order_sum(const double* x, int64_t len) {
  double acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = 0.0;
  for (int64_t k = 0; k < len; ++k) acc[k % kLanes] = add_rn(acc[k % kLanes], x[k]);
  double m = 0.0;
  for (int l = 0; l < kLanes; ++l) m = add_rn(m, acc[l]);
  return m;
}

// Local entry = (52-bit threshold << 12) | local alias.
PADA_HD uint64_t local_entry(double own, int64_t alias) {
  return (local_threshold(own) << kLocalAliasBits) | static_cast<uint64_t>(alias);
}

// The sweep of one block over its light and heavy lists, into its L entries;
// light(i) and heavy(i) are the lists' i-th slots.
template <typename Light, typename Heavy, typename P>
PADA_HD void block_sweep(int64_t nl, const Light& light, int64_t nh, const Heavy& heavy, const P& p,
                         uint64_t* table) {
  alias_sweep(nl, light, nh, heavy, p,
              [&](int64_t k, double own, int64_t alias) { table[k] = local_entry(own, alias); });
}

// Scaled mass of slot k of a block of `len` weights (padding past len is 0).
template <typename T>
PADA_HD double block_slot_mass(const T* w, int64_t len, int64_t k, double L, double mass,
                               double scale) {
  return k < len ? scaled_mass(static_cast<double>(w[k]), L, mass, scale) : 0.0;
}

// Fills the L = 2^log_block entries of one block's table. Slots past `len`
// are padding of weight 0. `p`, `light` and `heavy` are caller-provided
// scratch of L entries each.
template <typename T>
PADA_HD void build_block(const T* w, int64_t len, int log_block, double mass, uint64_t* table,
                         double* p, uint16_t* light, uint16_t* heavy) {
  const int64_t L = int64_t{1} << log_block;
  if (!(mass > 0.0)) {
    for (int64_t k = 0; k < L; ++k) table[k] = 0;  // never chosen by the top level
    return;
  }
  const double scale = static_cast<double>(L) / mass;
  int64_t nl = 0, nh = 0;
  for (int64_t k = 0; k < L; ++k) {
    // Branch-free partition: the classes of neighbouring slots are random.
    const double pk = block_slot_mass(w, len, k, static_cast<double>(L), mass, scale);
    const bool is_light = pk < 1.0;
    p[k] = pk;
    light[nl] = static_cast<uint16_t>(k);
    heavy[nh] = static_cast<uint16_t>(k);
    nl += is_light;
    nh += !is_light;
  }
  block_sweep(
      nl, [&](int64_t i) -> int64_t { return light[i]; }, nh,
      [&](int64_t i) -> int64_t { return heavy[i]; }, [&](int64_t k) -> double { return p[k]; },
      table);
}

// Scaled mass of top-level block b (blocks past num_blocks have mass 0).
PADA_HD double top_slot_mass(const double* mass, int64_t num_blocks, int64_t b, double T,
                             double total, double scale) {
  return b < num_blocks ? scaled_mass(mass[b], T, total, scale) : 0.0;
}

// The top-level sweep over its light and heavy lists (accessors, as above).
template <typename Light, typename Heavy, typename P>
PADA_HD void top_sweep(int64_t nl, const Light& light, int64_t nh, const Heavy& heavy, const P& p,
                       uint64_t* thr, int64_t* alias) {
  alias_sweep(nl, light, nh, heavy, p, [&](int64_t b, double own, int64_t a) {
    thr[b] = top_threshold(own);
    alias[b] = a;
  });
}

// Top-level table over 2^log_top blocks (blocks past num_blocks have mass 0).
// `light` and `heavy` are scratch of 2^log_top entries each.
PADA_HD void build_top(const double* mass, int64_t num_blocks, int log_top, double total,
                       uint64_t* thr, int64_t* alias, int64_t* light, int64_t* heavy) {
  const int64_t T = int64_t{1} << log_top;
  const double scale = static_cast<double>(T) / total;
  auto p = [&](int64_t b) -> double {
    return top_slot_mass(mass, num_blocks, b, static_cast<double>(T), total, scale);
  };
  int64_t nl = 0, nh = 0;
  for (int64_t b = 0; b < T; ++b) {
    if (p(b) < 1.0)
      light[nl++] = b;
    else
      heavy[nh++] = b;
  }
  top_sweep(
      nl, [&](int64_t i) { return light[i]; }, nh, [&](int64_t i) { return heavy[i]; }, p, thr,
      alias);
}

// U < threshold, where U's first 32 bits are `hi` and the rest are drawn only
// on a tie (probability 2^-32) from the refinement stream.
PADA_HD bool accept_top(uint32_t hi, uint64_t thr, uint64_t seed, uint64_t s) {
  const uint32_t t_hi = static_cast<uint32_t>(thr >> 32);
  if (PADA_UNLIKELY(hi == t_hi)) return philox_draw(seed, s, 1).v[0] < static_cast<uint32_t>(thr);
  return hi < t_hi;
}

PADA_HD bool accept_local(uint32_t hi, uint64_t thr52, uint64_t seed, uint64_t s) {
  const uint32_t t_hi = static_cast<uint32_t>(thr52 >> 20);
  if (PADA_UNLIKELY(hi == t_hi))
    return (philox_draw(seed, s, 1).v[1] >> 12) < static_cast<uint32_t>(thr52 & 0xFFFFFu);
  return hi < t_hi;
}

// keep ? a : b, as arithmetic: compilers turn a plain ?: back into a branch.
PADA_HD uint64_t select(bool keep, uint64_t a, uint64_t b) {
  const uint64_t mask = uint64_t{0} - static_cast<uint64_t>(keep);
  return (a & mask) | (b & ~mask);
}

PADA_HD uint64_t top_bits(uint32_t word, int bits) {
  return bits == 0 ? 0 : static_cast<uint64_t>(word >> (32 - bits));
}

// First half of draw s: the chosen block and the slot to look up in it.
// Selects rather than branches: acceptance is a coin flip the CPU cannot predict.
PADA_HD uint64_t draw_position(const Philox4& r, uint64_t seed, uint64_t s, const uint64_t* top_thr,
                               const int64_t* top_alias, int log_top, int log_block) {
  const uint64_t b = top_bits(r.v[0], log_top);
  const uint64_t alt = static_cast<uint64_t>(top_alias[b]);
  const bool keep = accept_top(r.v[1], top_thr[b], seed, s);
  return (select(keep, b, alt) << log_block) | top_bits(r.v[2], log_block);
}

// Second half: keep the slot at `pos` or take its alias, given its entry.
PADA_HD int64_t draw_resolve(const Philox4& r, uint64_t seed, uint64_t s, uint64_t pos,
                             uint64_t entry, int log_block) {
  const uint64_t block_start = (pos >> log_block) << log_block;
  const uint64_t alt = block_start | (entry & ((uint64_t{1} << kLocalAliasBits) - 1));
  const bool keep = accept_local(r.v[3], entry >> kLocalAliasBits, seed, s);
  return static_cast<int64_t>(select(keep, pos, alt));
}

// Draw s from start to end (the GPU's; the CPU splits it to prefetch the table).
PADA_HD int64_t draw_one(uint64_t seed, uint64_t s, const uint64_t* top_thr,
                         const int64_t* top_alias, int log_top, int log_block,
                         const uint64_t* table) {
  const Philox4 r = philox_draw(seed, s, 0);
  const uint64_t pos = draw_position(r, seed, s, top_thr, top_alias, log_top, log_block);
  return draw_resolve(r, seed, s, pos, table[pos], log_block);
}

}  // namespace swr
}  // namespace pada
