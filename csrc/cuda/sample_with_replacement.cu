// CUDA kernel of pada::sample_with_replacement. Same math as the CPU kernel
// (csrc/common/sample_with_replacement.h), so for a given seed both backends
// return the same indices:
//   1. one warp per block of L <= 4096 weights: the block's mass in the
//      canonical lane order, validation, light/heavy lists in slot order
//      (ballot compaction), then lane 0 runs the sweep;
//   2. one warp builds the top-level table over the block masses the same way
//      (the total is the same lane-order sum);
//   3. one thread per draw.
// The lane logic of 1 and 2 and the draw grid are the PADA_HD functions of
// csrc/common/sample_with_replacement_warp.h, replayed on the host by
// tests/cpp/test_swr_warp_replay.cpp. The only host synchronisation is reading
// back the validation status (so the op cannot be captured in a CUDA graph).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "../common/sample_with_replacement_warp.h"
#include "../host/sample_with_replacement.h"

namespace pada {
namespace {

namespace warp = swr::warp;
constexpr unsigned kFull = warp::kFullMask;
constexpr int kMaxSlots = 1 << swr::kMaxLogBlock;

// The fold of step 2, from shuffles of this lane's partial.
__device__ __forceinline__ warp::Partial fold_warp(const warp::Partial& mine) {
  return warp::fold_lanes([&](int l) {
    return warp::Partial{__shfl_sync(kFull, mine.sum, l), __shfl_sync(kFull, mine.bad, l)};
  });
}

// Step 3 over `size` slots whose scaled masses are p(k), into `lists`.
template <typename Lists, typename P>
__device__ __forceinline__ warp::Counts compact_warp(int lane, int64_t size, const P& p,
                                                     const Lists& lists) {
  warp::Counts c{0, 0};
  for (int64_t base = 0; base < size; base += swr::kLanes) {
    const int64_t k = warp::round_slot(base, lane, size);
    const unsigned lights = __ballot_sync(kFull, k >= 0 && p(k) < 1.0);
    c = warp::compaction_round(lane, base, size, lights, lists, c);
  }
  __syncwarp();  // lane 0's sweep reads every lane's list entries
  return c;
}

// One warp per block of L = 2^log_block weights.
template <typename T>
__global__ void build_blocks_kernel(const T* __restrict__ w, int64_t n, int log_block,
                                    double* __restrict__ mass, uint64_t* __restrict__ table,
                                    unsigned long long* __restrict__ first_bad) {
  __shared__ uint16_t list_slots[kMaxSlots];  // 8 KiB: see SplitLists
  const int lane = threadIdx.x;
  const int64_t L = int64_t{1} << log_block;
  const int64_t b = blockIdx.x;
  const T* wb = w + b * L;
  const int64_t len = min(L, n - b * L);

  const warp::Partial f = fold_warp(warp::lane_partial(wb, len, lane));
  const double m = f.sum;
  if (lane == 0) {
    mass[b] = m;
    if (f.bad != INT64_MAX) atomicMin(first_bad, static_cast<unsigned long long>(b * L + f.bad));
  }
  uint64_t* tb = table + b * L;
  if (!(m > 0.0)) {
    warp::zero_fill_lane(tb, L, lane);  // never chosen by the top level
    return;
  }
  const double scale = static_cast<double>(L) / m;
  auto p = [&](int64_t k) -> double {
    return swr::block_slot_mass(wb, len, k, static_cast<double>(L), m, scale);
  };
  const warp::SplitLists<uint16_t> lists{list_slots, L};
  const warp::Counts c = compact_warp(lane, L, p, lists);
  if (lane == 0) swr::block_sweep(c.nl, warp::light_of(lists), c.nh, warp::heavy_of(lists), p, tb);
}

// One warp: the total over the block masses (the same lane-order sum as a
// block's mass), then the top-level lists; lane 0 runs the sweep, which is
// serial by nature (each step depends on the previous residual).
__global__ void build_top_kernel(const double* __restrict__ mass, int64_t num_blocks, int log_top,
                                 double* __restrict__ total_out, uint64_t* __restrict__ thr,
                                 int64_t* __restrict__ alias, int64_t* __restrict__ scratch) {
  const int lane = threadIdx.x;
  const double total = fold_warp(warp::lane_partial(mass, num_blocks, lane)).sum;
  if (lane == 0) *total_out = total;
  if (!(total > 0.0) || isinf(total)) return;
  const int64_t T = int64_t{1} << log_top;
  const double scale = static_cast<double>(T) / total;
  auto p = [&](int64_t b) -> double {
    return swr::top_slot_mass(mass, num_blocks, b, static_cast<double>(T), total, scale);
  };
  const warp::SplitLists<int64_t> lists{scratch, T};
  const warp::Counts c = compact_warp(lane, T, p, lists);
  if (lane == 0)
    swr::top_sweep(c.nl, warp::light_of(lists), c.nh, warp::heavy_of(lists), p, thr, alias);
}

__global__ void draw_kernel(const int64_t* __restrict__ seed_ptr, int64_t num_samples,
                            const uint64_t* __restrict__ top_thr,
                            const int64_t* __restrict__ top_alias, int log_top, int log_block,
                            const uint64_t* __restrict__ table, int64_t* __restrict__ out) {
  const uint64_t seed = static_cast<uint64_t>(*seed_ptr);
  const int64_t stride = warp::draw_stride(gridDim.x);
  for (int64_t s = warp::draw_first(blockIdx.x, threadIdx.x); s < num_samples; s += stride)
    out[s] = swr::draw_one(seed, static_cast<uint64_t>(s), top_thr, top_alias, log_top, log_block,
                           table);
}

at::Tensor sample_with_replacement_cuda(const at::Tensor& weights, int64_t num_samples,
                                        const at::Tensor& seed) {
  check_sample_with_replacement_args(weights, num_samples, seed);
  TORCH_CHECK(weights.is_cuda(), "sample_with_replacement_cuda: weights must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(weights.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor w = weights.contiguous();
  const swr::Layout layout = swr::make_layout(w.numel());
  const int64_t T = int64_t{1} << layout.log_top;
  const auto long_opts = w.options().dtype(at::kLong);

  // One allocation for the small per-call buffers: masses, status, top table
  // and the top level's lists (T entries).
  at::Tensor small = at::empty({layout.num_blocks + 2 + 3 * T}, long_opts);
  auto* mass = reinterpret_cast<double*>(small.data_ptr<int64_t>());
  auto* first_bad = reinterpret_cast<unsigned long long*>(mass + layout.num_blocks);
  auto* total = reinterpret_cast<double*>(first_bad + 1);
  auto* top_thr = reinterpret_cast<uint64_t*>(total + 1);
  auto* top_alias = reinterpret_cast<int64_t*>(top_thr + T);
  int64_t* scratch = top_alias + T;
  at::Tensor table = at::empty({layout.num_blocks << layout.log_block}, long_opts);
  auto* table_ptr = reinterpret_cast<uint64_t*>(table.data_ptr<int64_t>());

  // Validation must raise here, so the host waits for the status: that sync is
  // why the op is tagged cudagraph_unsafe (csrc/pada.cpp). Fail clearly rather
  // than let the capture break on the sync.
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &capturing));
  TORCH_CHECK(capturing == cudaStreamCaptureStatusNone,
              "sample_with_replacement cannot be captured in a CUDA graph: it reads the weights' "
              "validation status back to the host");

  C10_CUDA_CHECK(cudaMemsetAsync(first_bad, 0x7F, sizeof(*first_bad), stream));  // "none"
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "sample_with_replacement_cuda", [&] {
    build_blocks_kernel<scalar_t>
        <<<static_cast<unsigned>(layout.num_blocks), swr::kLanes, 0, stream>>>(
            w.data_ptr<scalar_t>(), layout.n, layout.log_block, mass, table_ptr, first_bad);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  build_top_kernel<<<1, swr::kLanes, 0, stream>>>(mass, layout.num_blocks, layout.log_top, total,
                                                  top_thr, top_alias, scratch);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // (first_bad, total) into pinned memory: a pageable destination would make
  // the copy itself synchronous and staged.
  const at::Tensor status =
      at::empty({2}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  C10_CUDA_CHECK(cudaMemcpyAsync(status.data_ptr<int64_t>(), first_bad, 2 * sizeof(int64_t),
                                 cudaMemcpyDeviceToHost, stream));
  C10_CUDA_CHECK(cudaStreamSynchronize(stream));
  unsigned long long status_bad;
  double status_total;
  std::memcpy(&status_bad, status.data_ptr<int64_t>(), sizeof(status_bad));
  std::memcpy(&status_total, status.data_ptr<int64_t>() + 1, sizeof(status_total));
  check_sample_with_replacement_status(
      w, static_cast<int64_t>(std::min<unsigned long long>(status_bad, w.numel())), status_total);

  at::Tensor out = at::empty({num_samples}, long_opts);
  if (num_samples > 0) {
    draw_kernel<<<static_cast<unsigned>(warp::draw_blocks(num_samples)), warp::kDrawThreads, 0,
                  stream>>>(seed.data_ptr<int64_t>(), num_samples, top_thr, top_alias,
                            layout.log_top, layout.log_block, table_ptr, out.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CUDA, m) {
  m.impl("sample_with_replacement", &sample_with_replacement_cuda);
}

}  // namespace pada
