// CUDA kernels of pada::grouped_grad_norm, grouped_sq_norm_accumulate_ and
// segment_grad_norm. The host builds the chunk table (csrc/cpu/grouped_grad_norm.cpp),
// stages it with the group ranges in one pinned buffer and copies it with one
// async copy; then two launches on the current stream, no host sync:
//   1. a block per chunk writes the chunk's float32 sum of squares;
//   2. a block per group combines its chunks' partials in float64.
// No atomics: the summation order is the one fixed in the shared header, so
// results are reproducible and equal to the CPU kernel's.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <cstring>

#include "../common/grouped_grad_norm.h"

namespace pada {
namespace gnorm {
namespace {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// The halving tree of tree_reduce over the block's kLanes values: in shared
// memory down to a warp, then warp shuffles (lane l < s adds lane l + s).
// The result is valid in thread 0.
template <typename T>
__device__ __forceinline__ T block_tree(T v, T* smem) {
  const int l = threadIdx.x;
  smem[l] = v;
  __syncthreads();
  for (int s = kLanes / 2; s >= 32; s /= 2) {
    if (l < s) smem[l] = smem[l] + smem[l + s];
    __syncthreads();
  }
  if (l < 32) {
    v = smem[l];
    for (int s = 16; s > 0; s /= 2) v = v + __shfl_down_sync(0xffffffffu, v, s);
  }
  return v;
}

// Thread l is lane l: elements l, l + kLanes, ... (coalesced loads).
template <typename E>
__device__ __forceinline__ float lane_sum(const E* p, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kLanes) acc = sq_add(acc, to_float(p[i]));
  return acc;
}

__global__ void __launch_bounds__(kLanes)
    chunk_partials_kernel(const ChunkRow* __restrict__ rows, float* __restrict__ partials) {
  __shared__ float smem[kLanes];
  const ChunkRow r = rows[blockIdx.x];
  const void* p = reinterpret_cast<const void*>(r.addr);
  float acc;  // the dtype is uniform over the block: no divergence
  if (r.dtype == kF32) {
    acc = lane_sum(static_cast<const float*>(p), r.numel);
  } else if (r.dtype == kF16) {
    acc = lane_sum(static_cast<const __half*>(p), r.numel);
  } else {
    acc = lane_sum(static_cast<const __nv_bfloat16*>(p), r.numel);
  }
  const float total = block_tree(acc, smem);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kLanes)
    finish_groups_kernel(const float* __restrict__ partials,
                         const int64_t* __restrict__ group_begin, int finish, float* out) {
  __shared__ double smem[kLanes];
  const int64_t b = group_begin[blockIdx.x], n = group_begin[blockIdx.x + 1] - b;
  double acc = 0.0;
  for (int64_t c = threadIdx.x; c < n; c += kLanes) acc += partials[b + c];
  const double total = block_tree(acc, smem);
  if (threadIdx.x == 0) {
    const float previous = finish == kAccumulate ? out[blockIdx.x] : 0.0f;
    out[blockIdx.x] = finish_value(total, previous, finish);
  }
}

void run_plan_cuda(const Plan& plan, const at::Device& device, int finish, float* out) {
  const int64_t num_rows = static_cast<int64_t>(plan.rows.size());
  const int64_t num_groups = static_cast<int64_t>(plan.group_begin.size()) - 1;
  if (num_groups == 0) return;
  const int64_t words = num_rows * kRowWords + num_groups + 1;
  at::Tensor host = at::empty({words}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  int64_t* h = host.data_ptr<int64_t>();
  std::memcpy(h, plan.rows.data(), num_rows * sizeof(ChunkRow));
  std::memcpy(h + num_rows * kRowWords, plan.group_begin.data(),
              (num_groups + 1) * sizeof(int64_t));
  // Pinned source: the copy is async and the host allocator keeps the buffer
  // until the stream has consumed it.
  at::Tensor table = at::empty({words}, at::TensorOptions().dtype(at::kLong).device(device));
  table.copy_(host, /*non_blocking=*/true);
  const int64_t* d = table.data_ptr<int64_t>();
  at::Tensor partials = at::empty({std::max<int64_t>(num_rows, 1)},
                                  at::TensorOptions().dtype(at::kFloat).device(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index());
  if (num_rows > 0) {
    chunk_partials_kernel<<<static_cast<unsigned>(num_rows), kLanes, 0, stream>>>(
        reinterpret_cast<const ChunkRow*>(d), partials.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  finish_groups_kernel<<<static_cast<unsigned>(num_groups), kLanes, 0, stream>>>(
      partials.data_ptr<float>(), d + num_rows * kRowWords, finish, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor grouped_grad_norm_cuda(at::TensorList tensors, const at::Tensor& group_index,
                                  int64_t num_groups, bool squared) {
  const Plan plan = plan_tensors("grouped_grad_norm", tensors, group_index, num_groups);
  const c10::cuda::CUDAGuard guard(plan.device);
  at::Tensor out =
      at::empty({num_groups}, at::TensorOptions().dtype(at::kFloat).device(plan.device));
  run_plan_cuda(plan, plan.device, squared ? kSquared : kNorm, out.data_ptr<float>());
  return out;
}

void grouped_sq_norm_accumulate_cuda(at::TensorList tensors, const at::Tensor& group_index,
                                     const at::Tensor& table) {
  const char* op = "grouped_sq_norm_accumulate_";
  check_table(op, table, tensors.empty() ? table.device() : tensors[0].device());
  const Plan plan = plan_tensors(op, tensors, group_index, table.numel());
  const c10::cuda::CUDAGuard guard(table.device());
  run_plan_cuda(plan, table.device(), kAccumulate, table.data_ptr<float>());
}

at::Tensor segment_grad_norm_cuda(const at::Tensor& flat, const at::Tensor& offsets,
                                  const at::Tensor& group_of_segment, int64_t num_groups,
                                  bool squared) {
  const Plan plan = plan_segments("segment_grad_norm", flat, offsets, group_of_segment, num_groups);
  const c10::cuda::CUDAGuard guard(flat.device());
  at::Tensor out = at::empty({num_groups}, flat.options().dtype(at::kFloat));
  run_plan_cuda(plan, flat.device(), squared ? kSquared : kNorm, out.data_ptr<float>());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CUDA, m) {
  m.impl("grouped_grad_norm", &grouped_grad_norm_cuda);
  m.impl("grouped_sq_norm_accumulate_", &grouped_sq_norm_accumulate_cuda);
  m.impl("segment_grad_norm", &segment_grad_norm_cuda);
}

}  // namespace gnorm
}  // namespace pada
