// The CUDA cross-entropy kernels replayed on the host, lane by lane: the same
// row-to-thread mapping, per-thread accumulation and shuffle-tree merges
// (csrc/common/cross_entropy_with_grad_norm_math.h) as the device code, with
// __shfl_down_sync modelled exactly (a lane past the warp's end reads itself).
// Each replayed row is compared with the scalar one-thread math and with a
// float64 evaluation, for the target at every position, short (warp) and long
// (block) rows, partial warps, and NaN/inf rows.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "common/cross_entropy_with_grad_norm_math.h"

namespace {

using namespace pada::xent;

// One level-by-level pass of the warp's shuffle tree over 32 lanes.
void warp_replay(RowStats* lanes) {
  for (int d = kFirstDelta; d > 0; d >>= 1) {
    RowStats before[kWarpSize];
    for (int l = 0; l < kWarpSize; ++l) before[l] = lanes[l];
    for (int l = 0; l < kWarpSize; ++l) lanes[l] = merge(before[l], before[shfl_down_src(l, d)]);
  }
}

// The forward kernel on one row (row 0 of block 0): lane 0's result.
template <bool kSmooth>
RowResult replay_row(const std::vector<float>& z, int64_t y, const Smooth& sm) {
  const int64_t C = static_cast<int64_t>(z.size());
  const bool warp_rows = warp_per_row(C);
  const int width = warp_rows ? kWarpSize : kBlockThreads;
  std::vector<RowStats> st(kBlockThreads);
  const float zy = z[y], ref = smooth_ref(zy);
  for (int t = 0; t < width; ++t) {
    const RowSlot s = row_slot(warp_rows, 0, t);
    PADA_CHECK(s.row == 0 && s.lane == t && s.width == width, "C ", C, " thread ", t);
    st[t] = start_stats(zy);
    for (int64_t c = s.lane; c < C; c += s.width) accumulate<kSmooth>(st[t], z[c], c == y, ref);
  }
  for (int w = 0; w < width / kWarpSize; ++w) warp_replay(&st[w * kWarpSize]);
  RowStats total = st[0];
  if (!warp_rows) {
    RowStats totals[kBlockWarps], second[kWarpSize];
    for (int w = 0; w < kBlockWarps; ++w) totals[w] = st[w * kWarpSize];
    for (int l = 0; l < kWarpSize; ++l) second[l] = warp_total_or_empty(totals, l);
    warp_replay(second);
    total = second[0];
  }
  return finish_row(total, zy, C, sm);
}

// The same math on one thread, in class order.
template <bool kSmooth>
RowResult scalar_row(const std::vector<float>& z, int64_t y, const Smooth& sm) {
  RowStats st = start_stats(z[y]);
  const float ref = smooth_ref(z[y]);
  for (size_t c = 0; c < z.size(); ++c)
    accumulate<kSmooth>(st, z[c], static_cast<int64_t>(c) == y, ref);
  return finish_row(st, z[y], static_cast<int64_t>(z.size()), sm);
}

struct Exact {
  double loss, norm, lse;
  std::vector<double> grad;  // d loss / d z
};

Exact exact_row(const std::vector<float>& z, int64_t y, double eps) {
  const size_t C = z.size();
  double m = -INFINITY, sz = 0.0;
  for (float v : z) m = std::fmax(m, v), sz += v;
  double s = 0.0;
  for (float v : z) s += std::exp(v - m);
  const double lse = m + std::log(s), a = eps / C;
  double n2 = 0.0;
  std::vector<double> grad(C);
  for (size_t c = 0; c < C; ++c) {
    const double d = std::exp(z[c] - lse) - (a + (static_cast<int64_t>(c) == y ? 1.0 - eps : 0.0));
    grad[c] = d;
    n2 += d * d;
  }
  const double smooth = eps == 0.0 ? 0.0 : a * sz;  // 0 * -inf would be NaN
  return Exact{lse - (1.0 - eps) * z[y] - smooth, std::sqrt(n2), lse, grad};
}

bool close(double got, double want, double rtol, double atol) {
  return std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

template <bool kSmooth>
void check_row(const std::vector<float>& z, int64_t y, double eps, const char* what) {
  const int64_t C = static_cast<int64_t>(z.size());
  const Smooth sm = make_smooth(eps, C);
  const RowResult got = replay_row<kSmooth>(z, y, sm), one = scalar_row<kSmooth>(z, y, sm);
  const Exact want = exact_row(z, y, eps);
  const auto ctx = pada_test::str(what, " C ", C, " y ", y, " eps ", eps);
  PADA_CHECK(close(got.loss, want.loss, 1e-5, 1e-5), ctx, " loss ", got.loss, " vs ", want.loss);
  const double lse = static_cast<double>(got.m) + got.log_s;
  PADA_CHECK(close(lse, want.lse, 1e-5, 1e-5), ctx, " lse ", lse, " vs ", want.lse);
  PADA_CHECK(close(got.grad_norm, want.norm, 1e-4, 1e-6), ctx, " norm ", got.grad_norm, " vs ",
             want.norm);
  PADA_CHECK(
      close(got.loss, one.loss, 1e-5, 1e-5) && close(got.grad_norm, one.grad_norm, 1e-4, 1e-6), ctx,
      " replay vs one thread: ", got.loss, " ", one.loss, " / ", got.grad_norm, " ", one.grad_norm);
}

const int64_t kClasses[] = {1, 2, 3, 31, 32, 33, 63, 64, 65, 255, 256, 257, 1000, 1024, 1025, 4097};

std::vector<float> random_row(int64_t C, std::mt19937& gen, float scale) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> z(C);
  for (float& v : z) v = nd(gen);
  return z;
}

// Logits offset by a constant: the loss, norm and gradient (the backward's
// grad_elem from m and log s) keep float32 accuracy, as torch's do, and each
// gradient row sums to 0. lse - z_y formed directly was off by 5e-4 at 1e4.
void test_offset_rows() {
  std::mt19937 gen(5);
  for (int64_t C : {int64_t{2}, int64_t{33}, int64_t{1000}, int64_t{1025}}) {
    const std::vector<float> base = random_row(C, gen, 3.0f);
    for (float offset : {1e3f, 1e4f, 1e6f, -1e6f}) {
      std::vector<float> z = base;
      for (float& v : z) v += offset;
      for (double eps : {0.0, 0.1}) {
        const int64_t y = C / 2;
        const Smooth sm = make_smooth(eps, C);
        const RowResult got = eps == 0.0 ? replay_row<false>(z, y, sm) : replay_row<true>(z, y, sm);
        const Exact want = exact_row(z, y, eps);
        const auto ctx = pada_test::str("offset ", offset, " C ", C, " eps ", eps);
        PADA_CHECK(close(got.loss, want.loss, 2e-6, 2e-6), ctx, " loss ", got.loss, " vs ",
                   want.loss);
        PADA_CHECK(close(got.grad_norm, want.norm, 1e-5, 1e-7), ctx, " norm ", got.grad_norm,
                   " vs ", want.norm);
        double sum = 0.0;
        for (int64_t c = 0; c < C; ++c) {
          const float t = c == y ? sm.b : sm.a;
          const float g = grad_elem(z[c], got.m, got.log_s, t);
          sum += g;
          PADA_CHECK(close(g, want.grad[c], 1e-5, 1e-7), ctx, " grad[", c, "] ", g, " vs ",
                     want.grad[c]);
        }
        PADA_CHECK(std::fabs(sum) <= 1e-5, ctx, " gradient row sums to ", sum);
      }
    }
  }
}

void test_target_at_every_position() {
  std::mt19937 gen(7);
  for (int64_t C : kClasses) {
    const std::vector<float> z = random_row(C, gen, 4.0f);
    for (int64_t y = 0; y < C; ++y) {
      check_row<false>(z, y, 0.0, "random");
      check_row<true>(z, y, 0.1, "random");
    }
  }
}

// A confident row: the norm must keep its relative accuracy (no 1 - p_y).
void test_confident_rows() {
  for (int64_t C : kClasses) {
    if (C < 2) continue;
    for (int64_t y : {int64_t{0}, C / 2, C - 1}) {
      std::vector<float> z(C, 0.0f);
      z[y] = 30.0f;
      const Smooth sm = make_smooth(0.0, C);
      const RowResult got = replay_row<false>(z, y, sm);
      const double want = std::sqrt(double(C) * (C - 1)) / (std::exp(30.0) + C - 1);
      PADA_CHECK(close(got.grad_norm, want, 1e-5, 0.0), "C ", C, " y ", y, " norm ", got.grad_norm,
                 " vs ", want);
    }
  }
}

// NaN or +inf anywhere (the target, a lane boundary, the last element) gives
// a NaN loss and norm; -inf logits are masks and stay finite.
void test_non_finite_rows() {
  std::mt19937 gen(11);
  for (int64_t C : kClasses) {
    const std::vector<float> base = random_row(C, gen, 2.0f);
    const int64_t y = C / 3;
    for (int64_t k : {int64_t{0}, y, C - 1, std::min<int64_t>(31, C - 1),
                      std::min<int64_t>(32, C - 1), std::min<int64_t>(256, C - 1)}) {
      for (float bad : {NAN, INFINITY}) {
        std::vector<float> z = base;
        z[k] = bad;
        for (double eps : {0.0, 0.1}) {
          const Smooth sm = make_smooth(eps, C);
          const RowResult r = eps == 0.0 ? replay_row<false>(z, y, sm) : replay_row<true>(z, y, sm);
          PADA_CHECK(std::isnan(r.loss) && std::isnan(r.grad_norm), "C ", C, " bad at ", k,
                     " value ", bad, " eps ", eps, ": loss ", r.loss, " norm ", r.grad_norm);
        }
      }
    }
    std::vector<float> all_masked(C, -INFINITY);
    const RowResult r = replay_row<false>(all_masked, y, make_smooth(0.0, C));
    PADA_CHECK(std::isnan(r.grad_norm), "C ", C, " all -inf: norm ", r.grad_norm);
    if (C > 1) {
      std::vector<float> z = base;
      for (int64_t c = 0; c < C; c += 2)
        if (c != y) z[c] = -INFINITY;
      check_row<false>(z, y, 0.0, "masked");
    }
  }
}

// Every (row, class) of a launch is read by exactly one thread, for any N,
// with the grid capped (grid-stride loop) or not.
void test_row_mapping() {
  for (int64_t C : {int64_t{1}, int64_t{33}, kWarpRowMaxC, kWarpRowMaxC + 1}) {
    const bool warp_rows = warp_per_row(C);
    PADA_CHECK(warp_rows == (C <= kWarpRowMaxC));
    for (int64_t N : {0, 1, 7, 8, 9, 33, 1000}) {
      const int64_t nblocks = row_blocks(N, warp_rows);
      for (int64_t cap : {int64_t{1}, int64_t{3}, kMaxGridBlocks}) {
        const int64_t grid = grid_blocks(nblocks, cap);
        std::vector<int> seen(static_cast<size_t>(N * C), 0);
        for (int64_t bx = 0; bx < grid; ++bx)
          for (int64_t b = bx; b < nblocks; b += grid)
            for (int t = 0; t < kBlockThreads; ++t) {
              const RowSlot s = row_slot(warp_rows, b, t);
              if (s.row >= N) {
                PADA_CHECK(warp_rows && b == nblocks - 1, "row ", s.row, " past N ", N);
                continue;
              }
              for (int64_t c = s.lane; c < C; c += s.width) ++seen[s.row * C + c];
            }
        for (int64_t i = 0; i < N * C; ++i)
          PADA_CHECK(seen[i] == 1, "N ", N, " C ", C, " cap ", cap, " row ", i / C, " class ",
                     i % C, " read ", seen[i], " times");
      }
    }
  }
  // Any N fits one launch: the grid never exceeds the x-dimension limit.
  for (int64_t N : {int64_t{1} << 31, int64_t{1} << 40}) {
    for (bool warp_rows : {false, true}) {
      const int64_t grid = grid_blocks(row_blocks(N, warp_rows), kMaxGridBlocks);
      PADA_CHECK(grid >= 1 && grid <= 2147483647, "N ", N, " grid ", grid);
    }
  }
}

}  // namespace

int main() {
  test_row_mapping();
  test_target_at_every_position();
  test_confident_rows();
  test_non_finite_rows();
  test_offset_rows();
  std::printf("test_xent_replay: ok\n");
  return 0;
}
