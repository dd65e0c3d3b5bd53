// Replays the CUDA kernels of pada::grouped_grad_norm on the host, block by
// block and lane by lane, from the step functions they are written in
// (csrc/common/grouped_grad_norm.h) over the chunk table that the CUDA entry
// points plan (csrc/host/grouped_grad_norm.h), including the launch batches and the
// warp shuffles; the result must equal the CPU kernel's bit for bit.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstring>
#include <vector>

#include "check.h"
#include "host/grouped_grad_norm.h"

namespace {

using namespace pada::gnorm;

// block_tree of the CUDA file: tree_step in shared memory for s >= 32, then
// shuffle_step with __shfl_down_sync's rule (own value past the warp's end).
template <typename T>
T replay_block(const std::vector<T>& lanes) {
  std::vector<T> smem(lanes);
  for (int s = kLanes / 2; s >= kWarp; s /= 2) {
    for (int l = 0; l < kLanes; ++l) tree_step(smem.data(), l, s);
  }
  std::vector<T> v(smem.begin(), smem.begin() + kWarp);
  for (int s = kWarp / 2; s > 0; s /= 2) {
    std::vector<T> next(kWarp);
    for (int l = 0; l < kWarp; ++l) next[l] = shuffle_step(v[l], l + s < kWarp ? v[l + s] : v[l]);
    v = next;
  }
  return v[0];
}

// What run_plan_cuda's launches write into out (num_groups entries).
void replay_plan(const Plan& plan, int finish, float* out) {
  const int64_t num_rows = static_cast<int64_t>(plan.rows.size());
  const int64_t num_groups = static_cast<int64_t>(plan.group_begin.size()) - 1;
  std::vector<float> partials(std::max<int64_t>(num_rows, 1), -1.0f);
  std::vector<int> seen(num_rows, 0);
  for (int64_t k = 0; k < num_batches(num_rows, kBatchRows); ++k) {
    const RowBatch b = make_row_batch(plan.rows.data(), num_rows, k);
    PADA_CHECK(b.count > 0 && b.count <= kBatchRows, "batch ", k, " has ", b.count, " rows");
    for (int r = 0; r < b.count; ++r) {  // block r of launch k
      const ChunkRow& row = plan.rows[b.first + r];
      PADA_CHECK_EQ(batch_numel(b, r), row.numel);
      PADA_CHECK_EQ(batch_dtype(b, r), row.dtype);
      ++seen[b.first + r];
      std::vector<float> lanes(kLanes);
      for (int l = 0; l < kLanes; ++l) {
        lanes[l] = lane_partial_any(reinterpret_cast<const void*>(b.addr[r]), batch_numel(b, r),
                                    batch_dtype(b, r), l);
      }
      partials[b.first + r] = replay_block(lanes);
    }
  }
  for (int64_t c = 0; c < num_rows; ++c) PADA_CHECK_EQ(seen[c], 1, "chunk ", c);
  std::vector<int> done(num_groups, 0);
  for (int64_t k = 0; k < num_batches(num_groups, kBatchGroups); ++k) {
    const GroupBatch b = make_group_batch(plan.group_begin.data(), num_groups, k);
    for (int g = 0; g < b.count; ++g) {
      const int64_t begin = b.begin[g], n = b.begin[g + 1] - begin;
      std::vector<double> lanes(kLanes);
      for (int l = 0; l < kLanes; ++l) lanes[l] = group_lane_partial(partials.data() + begin, n, l);
      float* o = out + b.first + g;
      *o = finish_value(replay_block(lanes), finish == kAccumulate ? *o : 0.0f, finish);
      ++done[b.first + g];
    }
  }
  for (int64_t g = 0; g < num_groups; ++g) PADA_CHECK_EQ(done[g], 1, "group ", g);
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

void check_same_bits(const at::Tensor& cpu, const std::vector<float>& replay, const char* what) {
  PADA_CHECK_EQ(cpu.numel(), static_cast<int64_t>(replay.size()), what);
  const float* p = cpu.data_ptr<float>();
  for (size_t g = 0; g < replay.size(); ++g) {
    PADA_CHECK_EQ(bits(p[g]), bits(replay[g]), what, ": group ", g, ": cpu ", p[g], " replay ",
                  replay[g]);
  }
}

using NormFn = at::Tensor(at::TensorList, const at::Tensor&, int64_t, bool);
using SegFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool);
using AccFn = void(at::TensorList, const at::Tensor&, const at::Tensor&);

template <typename Fn>
c10::TypedOperatorHandle<Fn> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Fn>();
}

void check_list(const std::vector<at::Tensor>& ts, const std::vector<int64_t>& groups,
                int64_t num_groups, const char* what) {
  const at::Tensor gi = at::tensor(groups, at::kLong);
  for (bool squared : {false, true}) {
    const at::Tensor cpu = op<NormFn>("pada::grouped_grad_norm").call(ts, gi, num_groups, squared);
    std::vector<float> replay(num_groups);
    replay_plan(plan_tensors(what, ts, gi, num_groups), squared ? kSquared : kNorm, replay.data());
    check_same_bits(cpu, replay, what);
  }
  at::Tensor table = at::rand({num_groups});
  std::vector<float> replay(table.data_ptr<float>(), table.data_ptr<float>() + num_groups);
  op<AccFn>("pada::grouped_sq_norm_accumulate_").call(ts, gi, table);
  replay_plan(plan_tensors(what, ts, gi, num_groups), kAccumulate, replay.data());
  check_same_bits(table, replay, what);
}

std::vector<at::Tensor> make(const std::vector<int64_t>& sizes, int seed) {
  at::manual_seed(seed);
  const at::ScalarType types[] = {at::kFloat, at::kHalf, at::kBFloat16};
  std::vector<at::Tensor> ts;
  for (size_t i = 0; i < sizes.size(); ++i)
    ts.push_back((at::randn({sizes[i]}) * (1 + i % 5)).to(types[i % 3]));
  return ts;
}

void test_sizes_and_dtypes() {
  const std::vector<int64_t> sizes = {0,   1,    31,    32,    33,    255,   256,
                                      257, 1000, 65535, 65536, 65537, 200003};
  std::vector<int64_t> groups;
  for (size_t i = 0; i < sizes.size(); ++i) groups.push_back(i % 4);
  check_list(make(sizes, 1), groups, 5, "sizes");
}

void test_many_batches() {
  // 700 tensors (> 2 row batches), 1000 groups (> 2 group batches, most empty),
  // and one group of 300 chunks (more chunks than lanes).
  std::vector<int64_t> sizes, groups;
  for (int i = 0; i < 700; ++i) {
    sizes.push_back((i * 97) % 3000);
    groups.push_back((i * 7) % 1000);
  }
  sizes.push_back(300 * kChunk - 5);
  groups.push_back(999);
  check_list(make(sizes, 2), groups, 1000, "many");
}

void test_non_finite_and_views() {
  at::Tensor a = at::randn({64, 48});
  a[3][4] = std::numeric_limits<float>::infinity();
  at::Tensor b = at::randn({70000});
  b[69999] = std::numeric_limits<float>::quiet_NaN();
  std::vector<at::Tensor> ts = {a, a.t(), a.slice(1, 0, 48, 3), b.to(at::kHalf), at::zeros({0})};
  check_list(ts, {0, 1, 1, 2, 2}, 3, "views");
  // Large float32 values overflow their float32 squares: inf, not NaN.
  check_list({at::full({1000}, 3e38f)}, {0}, 1, "overflow");
}

void test_segments() {
  at::manual_seed(3);
  for (at::ScalarType t : {at::kFloat, at::kHalf, at::kBFloat16}) {
    const at::Tensor flat = at::randn({200000}).to(t);
    const at::Tensor offsets = at::tensor(std::vector<int64_t>{3, 3, 8, 70008, 70009, 199999});
    const at::Tensor groups = at::tensor(std::vector<int64_t>{1, 0, 2, 0, 1});
    const at::Tensor cpu =
        op<SegFn>("pada::segment_grad_norm").call(flat, offsets, groups, 3, false);
    std::vector<float> replay(3);
    replay_plan(plan_segments("segments", flat, offsets, groups, 3), kNorm, replay.data());
    check_same_bits(cpu, replay, "segments");
  }
}

void test_batch_layout() {
  static_assert(sizeof(RowBatch) <= 4096 - 16 && sizeof(GroupBatch) <= 4096 - 32);
  PADA_CHECK_EQ(num_batches(0, kBatchRows), 0);
  PADA_CHECK_EQ(num_batches(kBatchRows, kBatchRows), 1);
  PADA_CHECK_EQ(num_batches(kBatchRows + 1, kBatchRows), 2);
  const ChunkRow row{0x7fff12345678, kChunk, kBF16};
  const RowBatch b = make_row_batch(&row, 1, 0);
  PADA_CHECK(b.count == 1 && b.first == 0 && b.addr[0] == row.addr);
  PADA_CHECK(batch_numel(b, 0) == kChunk && batch_dtype(b, 0) == kBF16);
}

}  // namespace

int main() {
  test_batch_layout();
  test_sizes_and_dtypes();
  test_many_batches();
  test_non_finite_and_views();
  test_segments();
  std::printf("test_gnorm_replay: ok\n");
  return 0;
}
