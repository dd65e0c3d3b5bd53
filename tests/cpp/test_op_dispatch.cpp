// pada::sample_with_replacement called through the dispatcher, as torch.ops
// does: the schema from csrc/pada.cpp with the CPU kernel behind it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "check.h"

namespace {

using SampleFn = at::Tensor(const at::Tensor&, int64_t, const at::Tensor&);

c10::TypedOperatorHandle<SampleFn> sample_op() {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow("pada::sample_with_replacement", "")
      .typed<SampleFn>();
}

at::Tensor sample(const at::Tensor& w, int64_t m, int64_t seed) {
  return sample_op().call(w, m, at::full({1}, seed, at::kLong));
}

void test_registered() {
  const auto& op =
      c10::Dispatcher::singleton().findSchemaOrThrow("pada::sample_with_replacement", "");
  PADA_CHECK(op.hasKernelForDispatchKey(c10::DispatchKey::CPU));
}

void test_shape_dtype_range() {
  for (auto dtype : {at::kFloat, at::kDouble}) {
    const at::Tensor w = at::rand({10007}, at::TensorOptions().dtype(dtype)) + 0.01;
    const at::Tensor out = sample(w, 5000, 7);
    PADA_CHECK(out.dim() == 1 && out.size(0) == 5000, "shape ", out.sizes());
    PADA_CHECK(out.scalar_type() == at::kLong, "dtype ", out.scalar_type());
    PADA_CHECK(out.device().is_cpu());
    PADA_CHECK(out.min().item<int64_t>() >= 0 && out.max().item<int64_t>() < 10007);
  }
  const at::Tensor w = at::ones({5}, at::kDouble);
  PADA_CHECK(sample(w, 0, 1).numel() == 0, "num_samples = 0 gives an empty tensor");
}

void test_zero_weights_never_drawn() {
  // Odd slots zero: none of them may appear.
  at::Tensor w = at::rand({9000}, at::kDouble) + 0.1;
  w.slice(0, 1, c10::nullopt, 2).zero_();
  const at::Tensor out = sample(w, 200000, 3);
  PADA_CHECK(out.remainder(2).eq(1).sum().item<int64_t>() == 0, "a zero-weight slot was drawn");
}

void test_frequencies() {
  // Small support, many draws: every count within 5 standard deviations.
  const std::vector<double> weights = {1, 2, 3, 4, 0, 10};
  const at::Tensor w = at::tensor(weights, at::kDouble);
  const int64_t m = 1000000;
  const at::Tensor counts = at::bincount(sample(w, m, 11), {}, 6);
  double total = 0;
  for (double x : weights) total += x;
  for (int i = 0; i < 6; ++i) {
    const double p = weights[i] / total, expect = m * p;
    const double sd = std::sqrt(m * p * (1 - p));
    const double got = static_cast<double>(counts[i].item<int64_t>());
    PADA_CHECK(std::fabs(got - expect) <= 5 * sd + 1e-9, "slot ", i, " count ", got, " expected ",
               expect, " sd ", sd);
  }
}

void test_seed_determinism() {
  const at::Tensor w = at::rand({50000}, at::kFloat);
  const at::Tensor a = sample(w, 100000, 42), b = sample(w, 100000, 42);
  PADA_CHECK(at::equal(a, b), "same seed, different output");
  const at::Tensor c = sample(w, 100000, 43);
  PADA_CHECK(!at::equal(a, c), "different seeds, same output");
  // Negative seeds are valid int64 seeds.
  PADA_CHECK(at::equal(sample(w, 1000, -5), sample(w, 1000, -5)));
}

void test_thread_count_invariance() {
  // Large enough that both the table build (blocks of 4096, grain 16) and
  // the draws (grain 4096) split across threads.
  const at::Tensor w = at::rand({300000}, at::kDouble).pow(4);
  const int64_t m = 400000;
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  PADA_CHECK(at::get_num_threads() == 1);
  const at::Tensor one = sample(w, m, 123456789);
  at::set_num_threads(2);
  PADA_CHECK(at::get_num_threads() == 2);
  const at::Tensor two = sample(w, m, 123456789);
  at::set_num_threads(before);
  PADA_CHECK(at::equal(one, two), "1 thread and 2 threads differ in ",
             one.ne(two).sum().item<int64_t>(), " of ", m, " draws");
}

template <typename E>
void expect_throws(const std::function<void()>& f, const char* what) {
  try {
    f();
  } catch (const E&) {
    return;
  }
  pada_test::fail(__FILE__, __LINE__, std::string("no expected exception: ") + what);
}

void test_errors() {
  const at::Tensor seed = at::full({1}, 1, at::kLong);
  auto op = sample_op();
  expect_throws<c10::ValueError>([&] { op.call(at::tensor({1.0, -1.0}), 3, seed); }, "negative");
  expect_throws<c10::ValueError>([&] { op.call(at::tensor({1.0, NAN}), 3, seed); }, "NaN");
  expect_throws<c10::ValueError>([&] { op.call(at::zeros({4}), 3, seed); }, "all zero");
  expect_throws<c10::ValueError>([&] { op.call(at::ones({2, 2}), 3, seed); }, "2-D");
  expect_throws<c10::ValueError>([&] { op.call(at::ones({3}), -1, seed); }, "num_samples < 0");
  expect_throws<c10::TypeError>([&] { op.call(at::ones({3}, at::kInt), 3, seed); }, "int32");
  expect_throws<c10::ValueError>([&] { op.call(at::ones({3}), 3, at::ones({1})); }, "float seed");
}

}  // namespace

int main() {
  test_registered();
  test_shape_dtype_range();
  test_zero_weights_never_drawn();
  test_frequencies();
  test_seed_determinism();
  test_thread_count_invariance();
  test_errors();
  std::printf("test_op_dispatch: OK\n");
  return 0;
}
