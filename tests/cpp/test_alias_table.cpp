// The two-level alias table of csrc/common/sample_with_replacement.h realises
// exactly the requested distribution: for each slot, add up the probability
// that a draw ends there (its own kept share plus what every slot aliasing it
// passes on, at both levels) and compare with weights[i] / sum(weights).
//
// A draw keeps local slot k with probability thr52(k) / 2^52 and top block b
// with probability thr64(b) / 2^64 (see accept_local/accept_top), so these
// sums are exact integers; we accumulate them in 128 bits.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "common/sample_with_replacement.h"

namespace {

namespace swr = pada::swr;
using u128 = unsigned __int128;

constexpr long double kTwo52 = 4503599627370496.0L;
constexpr long double kTwo64 = 18446744073709551616.0L;
constexpr uint64_t kLocalAliasMask = (uint64_t{1} << swr::kLocalAliasBits) - 1;

// Realised probabilities of one level's slots, and the tolerance (in units of
// the average slot probability) they were checked with.
struct Level {
  std::vector<long double> prob;
  double tol;
};

struct Stats {
  double worst_local = 0, worst_top = 0;  // in units of the level's average slot probability
  double worst_ratio = 0;                 // largest error / tolerance
};

// Rounding bound, in units of one slot's average probability, for a level of
// n slots whose masses were scaled by a normaliser summed in `terms` float64
// additions. A fixed 1e-12 is too tight: 4096 equal weights already miss it.
//  * the sweep carries a residual below max_scaled + 1 through at most n
//    steps of two roundings each;
//  * the scaled masses sum to n only up to the normaliser's rounding (and two
//    more for the scale and the product); the last heavy slot absorbs that;
//  * a slot can receive the threshold truncation (one unit) of all n slots.
// Any real defect (a wrong alias, a misplaced threshold bit) is >= 2^-20.
double rounding_tolerance(int64_t n, double max_scaled, int64_t terms) {
  const double u = std::ldexp(1.0, -53);
  return 1e-15 + static_cast<double>(n) * u *
                     (2.0 * (1.0 + max_scaled) + static_cast<double>(terms + 2) + 2.0);
}

// Checks one level's realised probabilities got[k] / one (in units of the
// average slot probability 1 / n) against mass_of(k) * n / total; a slot of
// zero mass must be neither drawn nor an alias target. Returns P(slot).
template <typename MassOf>
std::vector<long double> check_slots(const std::vector<u128>& got,
                                     const std::vector<bool>& is_alias_target, MassOf mass_of,
                                     double total, long double one, double tol, const char* slot,
                                     const std::string& ctx, double& worst, Stats& stats) {
  const int64_t n = static_cast<int64_t>(got.size());
  std::vector<long double> prob(n);
  for (int64_t k = 0; k < n; ++k) {
    prob[k] = static_cast<long double>(got[k]) / (one * n);
    const double m = mass_of(k);
    if (m == 0.0) {
      PADA_CHECK(got[k] == 0, ctx, " zero-mass ", slot, " ", k, " is drawn");
      PADA_CHECK(!is_alias_target[k], ctx, " zero-mass ", slot, " ", k, " is an alias");
      continue;
    }
    const long double expected = static_cast<long double>(m) * n / total;
    const double err =
        static_cast<double>(std::fabs(static_cast<long double>(got[k]) / one - expected));
    worst = std::max(worst, err);
    stats.worst_ratio = std::max(stats.worst_ratio, err / tol);
    PADA_CHECK(err <= tol, ctx, " ", slot, " ", k, " realised ", static_cast<double>(prob[k] * n),
               " expected ", static_cast<double>(expected), " (x 1/", n, "), error ", err, " tol ",
               tol);
  }
  return prob;
}

// Realised in-block probabilities (scaled by L) of one block's table, checked
// against w[k] * L / mass. Returns P(slot | block) for every slot.
template <typename W>
Level check_block(const W* w, int64_t len, int log_block, double mass, const uint64_t* table,
                  const std::string& ctx, Stats& stats) {
  const int64_t L = int64_t{1} << log_block;
  std::vector<u128> got(L, 0);
  std::vector<bool> is_alias_target(L, false);
  for (int64_t j = 0; j < L; ++j) {
    const uint64_t thr = table[j] >> swr::kLocalAliasBits;
    const int64_t alias = static_cast<int64_t>(table[j] & kLocalAliasMask);
    PADA_CHECK(thr <= swr::kLocalFull, ctx, " slot ", j);
    PADA_CHECK(alias < L, ctx, " slot ", j, " alias ", alias, " L ", L);
    got[j] += thr;
    const uint64_t passed = (uint64_t{1} << swr::kLocalThrBits) - thr;
    got[alias] += passed;
    if (alias != j && passed > 0) is_alias_target[alias] = true;
  }
  double max_scaled = 0;
  for (int64_t k = 0; k < len; ++k)
    max_scaled = std::max(max_scaled, static_cast<double>(w[k]) * L / mass);
  // block_mass: len / 32 additions per lane, then 32 lane sums.
  const double tol = rounding_tolerance(L, max_scaled, len / swr::kLanes + swr::kLanes);
  auto weight = [&](int64_t k) { return k < len ? static_cast<double>(w[k]) : 0.0; };
  std::vector<long double> prob = check_slots(got, is_alias_target, weight, mass, kTwo52, tol,
                                              "slot", ctx, stats.worst_local, stats);
  u128 sum = 0;
  for (u128 g : got) sum += g;
  PADA_CHECK(sum == static_cast<u128>(L) << swr::kLocalThrBits, ctx,
             " probabilities do not sum to 1");
  return {prob, tol};
}

// Realised block probabilities of the top table, checked against mass / total.
Level check_top(const std::vector<double>& mass, int log_top, double total,
                const std::vector<uint64_t>& thr, const std::vector<int64_t>& alias,
                const std::string& ctx, Stats& stats) {
  const int64_t T = int64_t{1} << log_top;
  std::vector<u128> got(T, 0);
  std::vector<bool> is_alias_target(T, false);
  for (int64_t j = 0; j < T; ++j) {
    PADA_CHECK(alias[j] >= 0 && alias[j] < T, ctx, " block ", j, " alias ", alias[j], " T ", T);
    got[j] += thr[j];
    // Keeping is U < thr for a 64-bit U, so the alias gets 2^64 - thr of 2^64.
    const u128 passed = (u128{1} << 64) - thr[j];
    got[alias[j]] += passed;
    if (alias[j] != j && passed > 0) is_alias_target[alias[j]] = true;
  }
  double max_scaled = 0;
  for (double m : mass) max_scaled = std::max(max_scaled, m * T / total);
  const double tol = rounding_tolerance(T, max_scaled, static_cast<int64_t>(mass.size()));
  auto block_mass = [&](int64_t b) {
    return b < static_cast<int64_t>(mass.size()) ? mass[b] : 0.0;
  };
  std::vector<long double> prob = check_slots(got, is_alias_target, block_mass, total, kTwo64, tol,
                                              "block", ctx, stats.worst_top, stats);
  return {prob, tol};
}

// Builds both levels as the CPU kernel does and checks every slot's probability.
template <typename W>
void check_weights(const std::vector<W>& w, const std::string& ctx, Stats& stats) {
  const int64_t n = static_cast<int64_t>(w.size());
  const swr::Layout layout = swr::make_layout(n);
  const int64_t L = int64_t{1} << layout.log_block;
  PADA_CHECK(layout.num_blocks * L >= n && (layout.num_blocks - 1) * L < n, ctx);
  PADA_CHECK((int64_t{1} << layout.log_top) >= layout.num_blocks, ctx);

  std::vector<double> mass(layout.num_blocks), p(L);
  std::vector<uint16_t> light(L), heavy(L);
  std::vector<uint64_t> table(layout.num_blocks * L);
  for (int64_t b = 0; b < layout.num_blocks; ++b) {
    const int64_t len = std::min(L, n - b * L);
    int64_t bad = std::numeric_limits<int64_t>::max();
    mass[b] = swr::block_mass(w.data() + b * L, len, &bad);
    PADA_CHECK(bad == std::numeric_limits<int64_t>::max(), ctx, " valid weights reported bad");
    swr::build_block(w.data() + b * L, len, layout.log_block, mass[b], table.data() + b * L,
                     p.data(), light.data(), heavy.data());
  }
  const double total = swr::lane_order_sum(mass.data(), layout.num_blocks);

  const int64_t T = int64_t{1} << layout.log_top;
  std::vector<uint64_t> top_thr(T);
  std::vector<int64_t> top_alias(T), top_light(T), top_heavy(T);
  swr::build_top(mass.data(), layout.num_blocks, layout.log_top, total, top_thr.data(),
                 top_alias.data(), top_light.data(), top_heavy.data());
  const Level top = check_top(mass, layout.log_top, total, top_thr, top_alias, ctx, stats);

  for (int64_t b = 0; b < layout.num_blocks; ++b) {
    if (mass[b] == 0.0) continue;  // never chosen: checked by check_top
    const int64_t len = std::min(L, n - b * L);
    const std::string bctx = ctx + " block " + std::to_string(b);
    const Level local = check_block(w.data() + b * L, len, layout.log_block, mass[b],
                                    table.data() + b * L, bctx, stats);
    // P(slot) = P(block) P(slot | block): with both factors within their
    // tolerance, the product is within P(block) tol_local / L + P(slot | block)
    // tol_top / T, plus long double rounding.
    for (int64_t k = 0; k < len; ++k) {
      const long double pb = top.prob[b], ps = local.prob[k];
      const long double got = pb * ps;
      const long double expected = static_cast<long double>(w[b * L + k]) / total;
      const long double tol = pb * local.tol / L + ps * top.tol / T + 1e-15L * expected + 1e-300L;
      PADA_CHECK(std::fabs(got - expected) <= tol, bctx, " slot ", k,
                 " P = ", static_cast<double>(got), " expected ", static_cast<double>(expected));
      if (w[b * L + k] == 0) PADA_CHECK(got == 0.0L, bctx, " zero weight drawn");
    }
  }
}

// Weight patterns; all keep at least one positive weight.
template <typename W>
std::vector<W> make_weights(const std::string& kind, int64_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<W> w(n);
  const double c = u(rng) + 1e-3;
  for (int64_t i = 0; i < n; ++i) {
    const double x = u(rng);
    if (kind == "uniform") {
      w[i] = static_cast<W>(x);
    } else if (kind == "power_law") {
      // Pareto-like tail over ~12 decades: a few weights dominate their block.
      w[i] = static_cast<W>(std::pow(1.0 - x, -2.5));
    } else if (kind == "log_uniform") {
      w[i] = static_cast<W>(std::exp(-60.0 * x));
    } else if (kind == "many_zeros") {
      w[i] = x < 0.9 ? W(0) : static_cast<W>(u(rng));
    } else if (kind == "zero_blocks") {
      // Whole blocks of zeros (the first 8192 slots, then every other 4096).
      w[i] = (i < 8192 || (i / 4096) % 2 == 1) ? W(0) : static_cast<W>(x + 0.5);
    } else if (kind == "one_huge") {
      w[i] = static_cast<W>(1e-6 * x);
    } else if (kind == "equal") {
      w[i] = W(1);
    } else if (kind == "equal_c") {
      // Equal weights whose scaled masses round to just below or above 1.
      w[i] = static_cast<W>(c);
    } else if (kind == "near_equal") {
      w[i] = static_cast<W>(c * (1.0 + 1e-13 * x));
    } else {
      pada_test::fail(__FILE__, __LINE__, "unknown kind " + kind);
    }
  }
  if (kind == "one_huge") w[static_cast<size_t>(u(rng) * n)] = static_cast<W>(1e30);
  bool any = false;
  for (W x : w) any |= x > 0;
  if (!any) w[n - 1] = W(1);
  return w;
}

}  // namespace

int main() {
  const int64_t sizes[] = {1, 2, 3, 5, 31, 33, 4095, 4096, 4097, 12289, 100000};
  const char* kinds[] = {"uniform",  "power_law", "log_uniform", "many_zeros", "zero_blocks",
                         "one_huge", "equal",     "equal_c",     "near_equal"};
  std::mt19937_64 rng(20240917);
  Stats stats;
  int cases = 0;
  for (int64_t n : sizes)
    for (const char* kind : kinds)
      for (int rep = 0; rep < (n <= 4097 ? 3 : 1); ++rep) {
        const std::string ctx = std::string(kind) + " n=" + std::to_string(n);
        check_weights(make_weights<double>(kind, n, rng), ctx + " f64", stats);
        check_weights(make_weights<float>(kind, n, rng), ctx + " f32", stats);
        cases += 2;
      }
  std::printf(
      "test_alias_table: OK, %d weight vectors; worst error x average: local %.3g, top %.3g; "
      "worst error / tolerance %.3g\n",
      cases, stats.worst_local, stats.worst_top, stats.worst_ratio);
  return 0;
}
