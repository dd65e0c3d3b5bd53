// CUDA kernel of pada::sample_with_replacement. Same math as the CPU kernel
// (csrc/common/sample_with_replacement.h), so for a given seed both backends
// return the same indices:
//   1. one warp per block of L <= 4096 weights: the block's mass in the
//      canonical lane order, validation, light/heavy lists in slot order
//      (ballot compaction), then lane 0 runs the sweep;
//   2. one thread builds the top-level table over the block masses;
//   3. one thread per draw.
// The only host synchronisation is reading back the validation status.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/checks.h"
#include "../common/sample_with_replacement.h"

namespace pada {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxSlots = 1 << swr::kMaxLogBlock;

template <typename T>
__global__ void build_blocks_kernel(const T* __restrict__ w, int64_t n, int log_block,
                                    double* __restrict__ mass, uint64_t* __restrict__ table,
                                    unsigned long long* __restrict__ first_bad) {
  __shared__ uint16_t light[kMaxSlots];
  __shared__ uint16_t heavy[kMaxSlots];
  const int lane = threadIdx.x;
  const int64_t L = int64_t{1} << log_block;
  const int64_t b = blockIdx.x;
  const T* wb = w + b * L;
  const int64_t len = min(L, n - b * L);

  // Lane l sums slots l, l + 32, ... in order; lane sums are folded in lane order.
  double acc = 0.0;
  int64_t bad = INT64_MAX;
  for (int64_t k = lane; k < len; k += kWarp) {
    const T v = wb[k];
    if (swr::bad_weight(v) && k < bad) bad = k;
    acc = add_rn(acc, static_cast<double>(v));
  }
  double m = 0.0;
  for (int l = 0; l < kWarp; ++l) m = add_rn(m, __shfl_sync(0xffffffffu, acc, l));
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const int64_t other = __shfl_xor_sync(0xffffffffu, bad, off);
    bad = other < bad ? other : bad;
  }
  if (lane == 0) {
    mass[b] = m;
    if (bad != INT64_MAX) atomicMin(first_bad, static_cast<unsigned long long>(b * L + bad));
  }
  uint64_t* tb = table + b * L;
  if (!(m > 0.0)) {
    for (int64_t k = lane; k < L; k += kWarp) tb[k] = 0;
    return;
  }
  const double scale = static_cast<double>(L) / m;
  auto p = [&](int64_t k) -> double {
    return k < len ? swr::scaled_mass(static_cast<double>(wb[k]), L, m, scale) : 0.0;
  };

  // Order-preserving compaction: the rank of a slot among the lights (heavies)
  // of its 32-slot group is the number of lower lanes with the same class.
  int nl = 0, nh = 0;
  const unsigned lower = (1u << lane) - 1u;
  for (int64_t base = 0; base < L; base += kWarp) {
    const int64_t k = base + lane;
    const bool is_light = p(k) < 1.0;
    const unsigned lights = __ballot_sync(0xffffffffu, is_light);
    if (is_light)
      light[nl + __popc(lights & lower)] = static_cast<uint16_t>(k);
    else
      heavy[nh + __popc(~lights & lower)] = static_cast<uint16_t>(k);
    nl += __popc(lights);
    nh += kWarp - __popc(lights);
  }
  __syncwarp();
  if (lane != 0) return;
  swr::alias_sweep(
      nl, [&](int64_t i) -> int64_t { return light[i]; }, nh,
      [&](int64_t i) -> int64_t { return heavy[i]; }, p,
      [&](int64_t k, double own, int64_t alias) {
        tb[k] = (swr::local_threshold(own) << swr::kLocalAliasBits) | static_cast<uint64_t>(alias);
      });
}

// Sequential on purpose: the sum in block order is what the CPU computes.
__global__ void build_top_kernel(const double* __restrict__ mass, int64_t num_blocks, int log_top,
                                 double* __restrict__ total_out, uint64_t* __restrict__ thr,
                                 int64_t* __restrict__ alias, int64_t* __restrict__ scratch) {
  double total = 0.0;
  for (int64_t b = 0; b < num_blocks; ++b) total = add_rn(total, mass[b]);
  *total_out = total;
  if (!(total > 0.0) || isinf(total)) return;
  const int64_t T = int64_t{1} << log_top;
  swr::build_top(mass, num_blocks, log_top, total, thr, alias, scratch, scratch + T);
}

__global__ void draw_kernel(const int64_t* __restrict__ seed_ptr, int64_t num_samples,
                            const uint64_t* __restrict__ top_thr,
                            const int64_t* __restrict__ top_alias, int log_top, int log_block,
                            const uint64_t* __restrict__ table, int64_t* __restrict__ out) {
  const uint64_t seed = static_cast<uint64_t>(*seed_ptr);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; s < num_samples;
       s += stride) {
    const uint64_t us = static_cast<uint64_t>(s);
    const Philox4 r = philox_draw(seed, us, 0);
    const uint64_t pos = swr::draw_position(r, seed, us, top_thr, top_alias, log_top, log_block);
    out[s] = swr::draw_resolve(r, seed, us, pos, table[pos], log_block);
  }
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

  // One allocation for the small per-call buffers: masses, status, top table.
  at::Tensor small = at::empty({layout.num_blocks + 2 + 4 * T}, long_opts);
  auto* mass = reinterpret_cast<double*>(small.data_ptr<int64_t>());
  auto* first_bad = reinterpret_cast<unsigned long long*>(mass + layout.num_blocks);
  auto* total = reinterpret_cast<double*>(first_bad + 1);
  auto* top_thr = reinterpret_cast<uint64_t*>(total + 1);
  auto* top_alias = reinterpret_cast<int64_t*>(top_thr + T);
  int64_t* scratch = top_alias + T;
  at::Tensor table = at::empty({layout.num_blocks << layout.log_block}, long_opts);
  auto* table_ptr = reinterpret_cast<uint64_t*>(table.data_ptr<int64_t>());

  C10_CUDA_CHECK(cudaMemsetAsync(first_bad, 0x7F, sizeof(*first_bad), stream));  // "none"
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "sample_with_replacement_cuda", [&] {
    build_blocks_kernel<scalar_t><<<static_cast<unsigned>(layout.num_blocks), kWarp, 0, stream>>>(
        w.data_ptr<scalar_t>(), layout.n, layout.log_block, mass, table_ptr, first_bad);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  build_top_kernel<<<1, 1, 0, stream>>>(mass, layout.num_blocks, layout.log_top, total, top_thr,
                                        top_alias, scratch);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  struct {
    unsigned long long first_bad;
    double total;
  } status;
  C10_CUDA_CHECK(
      cudaMemcpyAsync(&status, first_bad, sizeof(status), cudaMemcpyDeviceToHost, stream));
  C10_CUDA_CHECK(cudaStreamSynchronize(stream));
  check_sample_with_replacement_status(
      w, static_cast<int64_t>(std::min<unsigned long long>(status.first_bad, w.numel())),
      status.total);

  at::Tensor out = at::empty({num_samples}, long_opts);
  if (num_samples > 0) {
    constexpr int kThreads = 256;
    const int64_t blocks = std::min<int64_t>((num_samples + kThreads - 1) / kThreads, 65536);
    draw_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        seed.data_ptr<int64_t>(), num_samples, top_thr, top_alias, layout.log_top, layout.log_block,
        table_ptr, out.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CUDA, m) {
  m.impl("sample_with_replacement", &sample_with_replacement_cuda);
}

}  // namespace pada
