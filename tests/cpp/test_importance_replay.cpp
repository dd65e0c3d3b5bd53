// Replays the CUDA kernel of pada::importance_update_ on the host from its
// step functions (csrc/common/importance_update.h): every batch entry as one
// thread, the threads in several orders (the GPU runs them in any order); the
// table must equal the CPU kernel's sequential loop bit for bit.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "check.h"
#include "common/importance_update.h"

namespace {

using UpdateFn = void(at::Tensor&, at::Tensor&, at::Tensor&, const at::Tensor&, const at::Tensor&,
                      double);

struct Table {
  std::vector<float> scores;
  std::vector<uint8_t> visited;  // bool slots
  uint64_t out_of_range = 0, skipped = 0;
};

// importance_update_kernel with threads run in `order`.
template <typename V>
Table replay(Table t, const std::vector<int64_t>& index, const std::vector<V>& values, double decay,
             const std::vector<int64_t>& order) {
  const int64_t n = static_cast<int64_t>(index.size());
  const int64_t size = static_cast<int64_t>(t.scores.size());
  for (int64_t i : order) {
    const int64_t key = index[i];
    if (key < 0 || key >= size) {
      ++t.out_of_range;
      continue;
    }
    if (!pada::first_occurrence(index.data(), i)) continue;
    const pada::ImportanceSlot slot =
        pada::replay_visits(index.data(), values.data(), n, i,
                            pada::ImportanceSlot{t.scores[key], t.visited[key] != 0, 0}, decay);
    t.scores[key] = slot.score;
    t.visited[key] = slot.visited;
    t.skipped += slot.skipped;
  }
  return t;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

template <typename V>
void check_case(int64_t size, int64_t batch, double decay, at::ScalarType vtype, unsigned seed) {
  std::mt19937_64 rng(seed);
  Table start;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int64_t k = 0; k < size; ++k) {
    start.scores.push_back(u(rng));
    start.visited.push_back(rng() % 2);
  }
  std::vector<int64_t> index(batch);
  std::vector<double> raw(batch);
  for (int64_t i = 0; i < batch; ++i) {
    index[i] = static_cast<int64_t>(rng() % size);  // many repeats when size < batch
    raw[i] = 3.0 * u(rng);
    if (i % 17 == 5) raw[i] = std::numeric_limits<double>::quiet_NaN();
    if (i % 23 == 7) raw[i] = -std::numeric_limits<double>::infinity();
  }
  // The values as the kernel reads them: in their own dtype.
  const at::Tensor vals = at::tensor(raw, at::kDouble).to(vtype);
  std::vector<V> values(vals.data_ptr<V>(), vals.data_ptr<V>() + batch);

  at::Tensor scores = at::tensor(start.scores, at::kFloat);
  at::Tensor visited =
      at::tensor(std::vector<int64_t>(start.visited.begin(), start.visited.end()), at::kLong)
          .to(at::kBool);
  at::Tensor status = at::zeros({2}, at::kLong);
  c10::Dispatcher::singleton()
      .findSchemaOrThrow("pada::importance_update_", "")
      .typed<UpdateFn>()
      .call(scores, visited, status, at::tensor(index, at::kLong), vals, decay);

  std::vector<int64_t> order(batch);
  std::iota(order.begin(), order.end(), 0);
  std::vector<std::vector<int64_t>> orders = {order, {order.rbegin(), order.rend()}};
  std::shuffle(order.begin(), order.end(), rng);
  orders.push_back(order);
  for (const auto& o : orders) {
    const Table got = replay(start, index, values, decay, o);
    PADA_CHECK_EQ(got.out_of_range, 0u);
    PADA_CHECK_EQ(static_cast<int64_t>(got.skipped), status[1].item<int64_t>());
    for (int64_t k = 0; k < size; ++k) {
      PADA_CHECK_EQ(bits(got.scores[k]), bits(scores[k].item<float>()), "slot ", k, " size ", size,
                    " batch ", batch, " decay ", decay, " dtype ", vtype);
      PADA_CHECK_EQ(got.visited[k] != 0, visited[k].item<bool>(), "slot ", k);
    }
  }
}

void test_out_of_range_counted() {
  // The CPU kernel raises; the CUDA kernel (replayed) skips and counts.
  const Table t{{0.5f, 0.25f}, {0, 1}};
  const std::vector<int64_t> index = {1, -1, 2, 1, 0};
  const std::vector<float> values = {2.0f, 9.0f, 9.0f, 4.0f, 8.0f};
  const Table got = replay(t, index, values, 0.5, {4, 3, 2, 1, 0});
  PADA_CHECK_EQ(got.out_of_range, 2u);
  PADA_CHECK_EQ(got.scores[0], 8.0f);
  PADA_CHECK_EQ(got.scores[1], 2.5625f);  // ((0.25 + 2) / 2 + 4) / 2, in batch order
}

}  // namespace

int main() {
  for (double decay : {0.0, 0.5, 0.9, 0.3, 1.0}) {
    for (auto [size, batch] :
         {std::pair<int64_t, int64_t>{1, 5}, {10, 64}, {1000, 256}, {50, 2000}}) {
      check_case<float>(size, batch, decay, at::kFloat, 1);
      check_case<double>(size, batch, decay, at::kDouble, 2);
      check_case<at::Half>(size, batch, decay, at::kHalf, 3);
      check_case<at::BFloat16>(size, batch, decay, at::kBFloat16, 4);
    }
  }
  test_out_of_range_counted();
  std::printf("test_importance_replay: ok\n");
  return 0;
}
