// CUDA kernels of pada::grouped_grad_norm, grouped_sq_norm_accumulate_ and
// segment_grad_norm. The host builds the chunk table (csrc/host/grouped_grad_norm.cpp)
// and hands it to the kernels by value, in batches (RowBatch, GroupBatch in
// the shared header): no host buffer, no copy, no host sync, so the ops can
// be captured in a CUDA graph. On the current stream:
//   1. a block per chunk writes the chunk's float32 sum of squares
//      (one launch per kBatchRows chunks);
//   2. a block per group combines its chunks' partials in float64
//      (one launch per kBatchGroups groups).
// No atomics: the summation order is the one fixed in the shared header, and
// the kernels are its step functions, so results are reproducible and equal
// to the CPU kernel's.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../host/grouped_grad_norm.h"

namespace pada {
namespace gnorm {
namespace {

// The halving tree over the block's kLanes values: tree_step in shared
// memory down to a warp, then shuffle_step. The result is valid in thread 0.
template <typename T>
__device__ __forceinline__ T block_tree(T v, T* smem) {
  const int l = threadIdx.x;
  smem[l] = v;
  __syncthreads();
  for (int s = kLanes / 2; s >= kWarp; s /= 2) {
    tree_step(smem, l, s);
    __syncthreads();
  }
  if (l < kWarp) {
    v = smem[l];
    for (int s = kWarp / 2; s > 0; s /= 2) v = shuffle_step(v, __shfl_down_sync(0xffffffffu, v, s));
  }
  return v;
}

// __grid_constant__: the batch is read in place from the parameter space,
// never copied per thread (blockIdx.x indexes into it).
__global__ void __launch_bounds__(kLanes)
    chunk_partials_kernel(const __grid_constant__ RowBatch batch, float* __restrict__ partials) {
  __shared__ float smem[kLanes];
  const int r = blockIdx.x;
  const void* p = reinterpret_cast<const void*>(batch.addr[r]);
  // The dtype is uniform over the block: no divergence.
  const float acc = lane_partial_any(p, batch_numel(batch, r), batch_dtype(batch, r), threadIdx.x);
  const float total = block_tree(acc, smem);
  if (threadIdx.x == 0) partials[batch.first + r] = total;
}

__global__ void __launch_bounds__(kLanes)
    finish_groups_kernel(const __grid_constant__ GroupBatch batch,
                         const float* __restrict__ partials, int finish, float* out) {
  __shared__ double smem[kLanes];
  const int g = blockIdx.x;
  const int64_t b = batch.begin[g], n = batch.begin[g + 1] - b;
  const double total = block_tree(group_lane_partial(partials + b, n, threadIdx.x), smem);
  if (threadIdx.x == 0) {
    float* o = out + batch.first + g;
    *o = finish_value(total, finish == kAccumulate ? *o : 0.0f, finish);
  }
}

}  // namespace

void run_plan_cuda(const Plan& plan, const at::Device& device, int finish, float* out) {
  const int64_t num_rows = static_cast<int64_t>(plan.rows.size());
  const int64_t num_groups = static_cast<int64_t>(plan.group_begin.size()) - 1;
  if (num_groups == 0) return;
  // From the caching allocator on the current stream: graph capture puts it in the graph's pool.
  at::Tensor partials = at::empty({std::max<int64_t>(num_rows, 1)},
                                  at::TensorOptions().dtype(at::kFloat).device(device));
  float* part = partials.data_ptr<float>();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index());
  for (int64_t k = 0; k < num_batches(num_rows, kBatchRows); ++k) {
    const RowBatch batch = make_row_batch(plan.rows.data(), num_rows, k);
    chunk_partials_kernel<<<static_cast<unsigned>(batch.count), kLanes, 0, stream>>>(batch, part);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  for (int64_t k = 0; k < num_batches(num_groups, kBatchGroups); ++k) {
    const GroupBatch batch = make_group_batch(plan.group_begin.data(), num_groups, k);
    finish_groups_kernel<<<static_cast<unsigned>(batch.count), kLanes, 0, stream>>>(batch, part,
                                                                                    finish, out);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

namespace {

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
  check_accumulate_args(op, tensors, table);
  const Plan plan = plan_tensors(op, tensors, group_index, table.numel());
  const c10::cuda::CUDAGuard guard(table.device());
  run_plan_cuda(plan, table.device(), kAccumulate, table.data_ptr<float>());
}

at::Tensor segment_grad_norm_cuda(const at::Tensor& flat, const at::Tensor& offsets,
                                  const at::Tensor& group_of_segment, int64_t num_groups,
                                  bool squared) {
  check_no_grad("segment_grad_norm", "flat", flat);
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
