// Replays the CUDA alias-table builds of pada::sample_with_replacement on the
// host: the lane functions of csrc/common/sample_with_replacement_warp.h run
// for all 32 lanes in lockstep, with ballots and shuffles emulated from the
// lanes' values, in the loops of csrc/cuda/sample_with_replacement.cu. The
// block tables, block masses, first bad index, total and top-level table must
// equal the CPU build (block_mass/build_block/lane_order_sum/build_top) entry
// for entry, and no lane may write past its table. The draw grid must visit
// every draw exactly once.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "common/sample_with_replacement_warp.h"

namespace {

namespace swr = pada::swr;
namespace warp = pada::swr::warp;
constexpr int kLanes = swr::kLanes;
constexpr uint64_t kSentinel = 0xA5A5A5A5A5A5A5A5ull;
constexpr int64_t kNone = std::numeric_limits<int64_t>::max();

// fold_warp(): each lane folds the shuffled partials of all lanes.
warp::Partial replay_fold(const warp::Partial (&mine)[kLanes], const std::string& ctx) {
  warp::Partial r{};
  for (int lane = 0; lane < kLanes; ++lane) {
    const warp::Partial f = warp::fold_lanes([&](int l) { return mine[l]; });
    if (lane == 0) r = f;
    PADA_CHECK(f.bad == r.bad && std::memcmp(&f.sum, &r.sum, sizeof(double)) == 0, ctx,
               " lanes disagree on the fold");
  }
  return r;
}

template <typename T>
warp::Partial replay_sum(const T* x, int64_t len, const std::string& ctx) {
  warp::Partial mine[kLanes];
  for (int lane = 0; lane < kLanes; ++lane) mine[lane] = warp::lane_partial(x, len, lane);
  return replay_fold(mine, ctx);
}

// compact_warp(): per round, every lane's predicate, the ballot, then every
// lane's compaction_round on the same counts. `a` holds size + kLanes guard
// entries set to `guard`, which must stay untouched.
template <typename Index, typename P>
warp::Counts replay_compact(int64_t size, const P& p, const warp::SplitLists<Index>& lists,
                            Index guard, const std::string& ctx) {
  warp::Counts c{0, 0};
  for (int64_t base = 0; base < size; base += kLanes) {
    unsigned lights = 0;
    for (int lane = 0; lane < kLanes; ++lane) {
      const int64_t k = warp::round_slot(base, lane, size);
      if (k >= 0 && p(k) < 1.0) lights |= 1u << lane;
    }
    warp::Counts next{};
    for (int lane = 0; lane < kLanes; ++lane) {
      const warp::Counts got = warp::compaction_round(lane, base, size, lights, lists, c);
      if (lane == 0) next = got;
      PADA_CHECK(got.nl == next.nl && got.nh == next.nh, ctx, " lanes disagree on the counts");
    }
    c = next;
  }
  PADA_CHECK_EQ(c.nl + c.nh, size, ctx, " lists do not partition the slots");
  for (int64_t i = size; i < size + kLanes; ++i)
    PADA_CHECK(lists.a[i] == guard, ctx, " list entry ", i, " written past ", size);
  // Each list in slot order, and every slot once.
  std::vector<int> seen(size, 0);
  for (int64_t i = 0; i < c.nl; ++i) {
    PADA_CHECK(lists.light(i) >= 0 && lists.light(i) < size, ctx, " light ", i);
    PADA_CHECK(i == 0 || lists.light(i) > lists.light(i - 1), ctx, " light list out of order");
    PADA_CHECK(p(lists.light(i)) < 1.0, ctx, " heavy slot in the light list");
    ++seen[lists.light(i)];
  }
  for (int64_t i = 0; i < c.nh; ++i) {
    PADA_CHECK(lists.heavy(i) >= 0 && lists.heavy(i) < size, ctx, " heavy ", i);
    PADA_CHECK(i == 0 || lists.heavy(i) > lists.heavy(i - 1), ctx, " heavy list out of order");
    PADA_CHECK(!(p(lists.heavy(i)) < 1.0), ctx, " light slot in the heavy list");
    ++seen[lists.heavy(i)];
  }
  for (int64_t k = 0; k < size; ++k) PADA_CHECK_EQ(seen[k], 1, ctx, " slot ", k, " listed");
  return c;
}

struct Build {
  std::vector<double> mass;
  int64_t first_bad = kNone;
  double total = 0;
  std::vector<uint64_t> table, top_thr;
  std::vector<int64_t> top_alias;
};

// build_blocks_kernel + build_top_kernel, replayed. Each block's table and
// the lists get guard entries past their end, which must stay untouched.
template <typename W>
Build replay_gpu(const std::vector<W>& w, const std::string& ctx) {
  const swr::Layout layout = swr::make_layout(static_cast<int64_t>(w.size()));
  const int64_t L = int64_t{1} << layout.log_block;
  Build out;
  out.mass.resize(layout.num_blocks);
  out.table.assign(layout.num_blocks * L, kSentinel);
  for (int64_t b = 0; b < layout.num_blocks; ++b) {
    const std::string bctx = ctx + " block " + std::to_string(b);
    const W* wb = w.data() + b * L;
    const int64_t len = std::min(L, layout.n - b * L);
    const warp::Partial f = replay_sum(wb, len, bctx);
    out.mass[b] = f.sum;
    if (f.bad != kNone && b * L + f.bad < out.first_bad) out.first_bad = b * L + f.bad;
    // The lists and the table, each with a guard past L.
    std::vector<uint16_t> a(L + kLanes, 0xFFFF);
    const warp::SplitLists<uint16_t> lists{a.data(), L};
    std::vector<uint64_t> tb(L + kLanes, kSentinel);
    if (!(f.sum > 0.0)) {
      for (int lane = 0; lane < kLanes; ++lane) warp::zero_fill_lane(tb.data(), L, lane);
    } else {
      const double m = f.sum, scale = static_cast<double>(L) / m;
      auto p = [&](int64_t k) -> double {
        return swr::block_slot_mass(wb, len, k, static_cast<double>(L), m, scale);
      };
      const warp::Counts c = replay_compact(L, p, lists, uint16_t{0xFFFF}, bctx);
      swr::block_sweep(c.nl, warp::light_of(lists), c.nh, warp::heavy_of(lists), p, tb.data());
    }
    for (int64_t k = L; k < L + kLanes; ++k)
      PADA_CHECK(tb[k] == kSentinel, bctx, " table entry ", k, " written past L = ", L);
    std::copy(tb.begin(), tb.begin() + L, out.table.begin() + b * L);
  }

  out.total = replay_sum(out.mass.data(), layout.num_blocks, ctx + " top").sum;
  if (!(out.total > 0.0) || std::isinf(out.total)) return out;
  const int64_t T = int64_t{1} << layout.log_top;
  out.top_thr.assign(T + kLanes, kSentinel);
  out.top_alias.assign(T + kLanes, -7);
  std::vector<int64_t> a(T + kLanes, -7);
  const warp::SplitLists<int64_t> lists{a.data(), T};
  const double scale = static_cast<double>(T) / out.total;
  auto p = [&](int64_t b) -> double {
    return swr::top_slot_mass(out.mass.data(), layout.num_blocks, b, static_cast<double>(T),
                              out.total, scale);
  };
  const warp::Counts c = replay_compact(T, p, lists, int64_t{-7}, ctx + " top");
  swr::top_sweep(c.nl, warp::light_of(lists), c.nh, warp::heavy_of(lists), p, out.top_thr.data(),
                 out.top_alias.data());
  for (int64_t i = T; i < T + kLanes; ++i)
    PADA_CHECK(out.top_thr[i] == kSentinel && out.top_alias[i] == -7, ctx, " top entry ", i,
               " written past T");
  out.top_thr.resize(T);
  out.top_alias.resize(T);
  return out;
}

// The CPU kernel's build (csrc/cpu/sample_with_replacement.cpp).
template <typename W>
Build cpu_build(const std::vector<W>& w) {
  const swr::Layout layout = swr::make_layout(static_cast<int64_t>(w.size()));
  const int64_t L = int64_t{1} << layout.log_block;
  Build out;
  out.mass.resize(layout.num_blocks);
  out.table.resize(layout.num_blocks * L);
  std::vector<double> p(L);
  std::vector<uint16_t> light(L), heavy(L);
  for (int64_t b = 0; b < layout.num_blocks; ++b) {
    const int64_t len = std::min(L, layout.n - b * L);
    int64_t bad = kNone;
    out.mass[b] = swr::block_mass(w.data() + b * L, len, &bad);
    if (bad != kNone && b * L + bad < out.first_bad) out.first_bad = b * L + bad;
    swr::build_block(w.data() + b * L, len, layout.log_block, out.mass[b], out.table.data() + b * L,
                     p.data(), light.data(), heavy.data());
  }
  out.total = swr::lane_order_sum(out.mass.data(), layout.num_blocks);
  if (!(out.total > 0.0) || std::isinf(out.total)) return out;
  const int64_t T = int64_t{1} << layout.log_top;
  out.top_thr.resize(T);
  out.top_alias.resize(T);
  std::vector<int64_t> tl(T), th(T);
  swr::build_top(out.mass.data(), layout.num_blocks, layout.log_top, out.total, out.top_thr.data(),
                 out.top_alias.data(), tl.data(), th.data());
  return out;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

template <typename W>
void check_same(const std::vector<W>& w, const std::string& ctx) {
  const Build g = replay_gpu(w, ctx), c = cpu_build(w);
  PADA_CHECK_EQ(g.first_bad, c.first_bad, ctx);
  for (size_t b = 0; b < c.mass.size(); ++b)
    PADA_CHECK(same_bits(g.mass[b], c.mass[b]), ctx, " block ", b, " mass ", g.mass[b], " vs ",
               c.mass[b]);
  PADA_CHECK(same_bits(g.total, c.total), ctx, " total ", g.total, " vs ", c.total);
  if (c.first_bad != kNone) return;  // the op raises: no table is used
  const int64_t L = int64_t{1} << swr::make_layout(static_cast<int64_t>(w.size())).log_block;
  for (size_t k = 0; k < c.table.size(); ++k) {
    if (!(c.mass[k / L] > 0.0)) {
      PADA_CHECK_EQ(g.table[k], uint64_t{0}, ctx, " entry ", k, " of an empty block");
      continue;
    }
    PADA_CHECK_EQ(g.table[k], c.table[k], ctx, " local entry ", k);
  }
  PADA_CHECK_EQ(g.top_thr.size(), c.top_thr.size(), ctx);
  for (size_t b = 0; b < c.top_thr.size(); ++b) {
    PADA_CHECK_EQ(g.top_thr[b], c.top_thr[b], ctx, " top threshold ", b);
    PADA_CHECK_EQ(g.top_alias[b], c.top_alias[b], ctx, " top alias ", b);
  }
}

void check_both(const std::vector<double>& w, const std::string& ctx) {
  check_same(w, ctx + " f64");
  check_same(std::vector<float>(w.begin(), w.end()), ctx + " f32");
}

// draw_kernel's grid-stride loop visits each draw exactly once.
void check_draw_grid(int64_t num_samples) {
  const int64_t blocks = warp::draw_blocks(num_samples);
  if (num_samples == 0) return;  // no launch
  PADA_CHECK(blocks >= 1 && blocks <= warp::kMaxDrawBlocks, num_samples);
  std::vector<uint8_t> hits(num_samples, 0);
  const int64_t stride = warp::draw_stride(blocks);
  for (int64_t b = 0; b < blocks; ++b)
    for (int t = 0; t < warp::kDrawThreads; ++t)
      for (int64_t s = warp::draw_first(b, t); s < num_samples; s += stride) ++hits[s];
  for (int64_t s = 0; s < num_samples; ++s)
    PADA_CHECK_EQ(int{hits[s]}, 1, "draw ", s, " of ", num_samples);
}

}  // namespace

int main() {
  std::mt19937_64 rng(20261202);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  int cases = 0;
  auto random_vec = [&](int64_t n, int kind) {
    std::vector<double> w(n);
    for (auto& x : w) {
      const double v = u(rng);
      x = kind == 0 ? v : (kind == 1 ? std::pow(1.0 - v, -2.5) : (v < 0.6 ? 0.0 : v));
    }
    w[static_cast<size_t>(u(rng) * n)] = 1.0;  // not all zero
    return w;
  };
  // Every size around the one-round and lane-count boundaries.
  for (int64_t n = 1; n <= 40; ++n)
    for (int kind = 0; kind < 3; ++kind, cases += 2)
      check_both(random_vec(n, kind), "n=" + std::to_string(n));
  for (int64_t n : {4095, 4096, 4097, 5000, 4096 * 33 + 7})
    for (int kind = 0; kind < 3; ++kind, cases += 2)
      check_both(random_vec(n, kind), "n=" + std::to_string(n));
  // Uniform weights: a block narrower than a warp must still draw slot 0.
  for (int64_t n : {1, 2, 4, 8, 16, 32, 64, 4096, 8192}) {
    check_both(std::vector<double>(n, 1.0), "uniform n=" + std::to_string(n));
    cases += 2;
  }
  // Small random integer weights (zeros included), where exact ties abound.
  std::uniform_int_distribution<int> small(0, 4), size(1, 40);
  for (int rep = 0; rep < 3000; ++rep, cases += 2) {
    std::vector<double> w(size(rng));
    double sum = 0;
    for (auto& x : w) sum += (x = small(rng));
    if (sum == 0) w[0] = 3;
    check_both(w, "small ints rep " + std::to_string(rep));
  }
  // Zero blocks, a bad weight in a later block, blocks whose masses overflow.
  {
    std::vector<double> w(3 * 4096 + 5, 0.0);
    for (int64_t i = 4096; i < 2 * 4096; ++i) w[i] = u(rng);
    check_both(w, "zero blocks");
    w[2 * 4096 + 3] = std::nan("");
    w[4096 + 4000] = -1.0;
    check_both(w, "bad weights");
    std::vector<double> big(2 * 4096, 1e305);
    check_same(big, "overflowing total");
    cases += 5;
  }
  for (int64_t m : {int64_t{0}, int64_t{1}, int64_t{255}, int64_t{256}, int64_t{257},
                    int64_t{100000}, warp::kMaxDrawBlocks * warp::kDrawThreads + 1,
                    2 * warp::kMaxDrawBlocks * warp::kDrawThreads + 77})
    check_draw_grid(m);
  std::printf("test_swr_warp_replay: OK, %d weight vectors replayed lane by lane\n", cases);
  return 0;
}
