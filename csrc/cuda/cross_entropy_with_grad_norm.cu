// CUDA kernels of pada::cross_entropy_with_grad_norm_{fwd,bwd}. Rows of up to
// kWarpRowMaxC classes get one warp each, longer rows a whole block (the
// mapping is xent::row_slot); a grid-stride loop covers any N. In the forward
// each thread runs an online softmax over a strided share of its row
// (coalesced loads), then the warp (and for long rows the block) merges the
// threads' RowStats and lane 0 finishes the row. Every step is a function of
// csrc/common/cross_entropy_with_grad_norm_math.h that tests/cpp/
// test_xent_replay.cpp replays lane by lane on the host.
// A target out of range triggers a device-side assert, as in torch's own
// cross-entropy (raising would need a host synchronisation per call); where
// asserts are compiled out the row gets a NaN loss and norm, never a stray read.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ne.h>
#include <ATen/ops/sum.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <tuple>

#include "../host/cross_entropy_with_grad_norm.h"

namespace pada {
namespace {

using xent::dispatch_dtype;
using xent::kBlockThreads;
using xent::kBlockWarps;
using xent::kWarpSize;
using xent::rows_unit_stride;
using xent::RowSlot;
using xent::RowStats;
using xent::Smooth;

__device__ __forceinline__ RowStats shfl_down(const RowStats& s, int delta) {
  return RowStats{
      __shfl_down_sync(0xffffffffu, s.m, delta), __shfl_down_sync(0xffffffffu, s.so, delta),
      __shfl_down_sync(0xffffffffu, s.s2o, delta), __shfl_down_sync(0xffffffffu, s.sz, delta)};
}

// The merged stats of the warp, valid in lane 0.
__device__ __forceinline__ RowStats warp_merge(RowStats st) {
  for (int d = xent::kFirstDelta; d > 0; d >>= 1) st = xent::merge(st, shfl_down(st, d));
  return st;
}

// The merged stats of the whole block, valid in thread 0. Ends with a barrier
// so that the next row of a grid-stride loop cannot overwrite the warp totals
// before warp 0 has read them.
__device__ RowStats block_merge(RowStats st, RowStats* warp_totals) {
  st = warp_merge(st);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  if (lane == 0) warp_totals[warp] = st;
  __syncthreads();
  if (warp == 0) st = warp_merge(xent::warp_total_or_empty(warp_totals, lane));
  __syncthreads();
  return st;
}

__device__ __forceinline__ bool target_ok(int64_t y, int64_t C) {
  CUDA_KERNEL_ASSERT(y >= 0 && y < C && "cross_entropy_with_grad_norm: target out of range");
  return y >= 0 && y < C;
}

// kWarpRows: one row per warp (no barriers) or one per block; every branch on
// the row is uniform over the threads that share it.
template <typename T, bool kSmooth, bool kWarpRows>
__global__ void __launch_bounds__(kBlockThreads)
    xent_fwd_kernel(const T* __restrict__ logits, int64_t row_stride,
                    const int64_t* __restrict__ target, int64_t N, int64_t C, int64_t ignore_index,
                    Smooth sm, float* __restrict__ loss, float* __restrict__ grad_norm,
                    float* __restrict__ lse) {
  __shared__ RowStats warp_totals[kBlockWarps];
  const int64_t nblocks = xent::row_blocks(N, kWarpRows);
  for (int64_t b = blockIdx.x; b < nblocks; b += gridDim.x) {
    const RowSlot slot = xent::row_slot(kWarpRows, b, static_cast<int>(threadIdx.x));
    const int64_t r = slot.row;
    if (r >= N) continue;  // only warps of the last block of warp rows
    const int64_t y = target[r];
    if (y == ignore_index || !target_ok(y, C)) {
      if (slot.lane == 0) {
        const float v = y == ignore_index ? 0.0f : NAN;
        loss[r] = grad_norm[r] = lse[2 * r] = lse[2 * r + 1] = v;
      }
      continue;
    }
    const T* z = logits + r * row_stride;
    const float zy = static_cast<float>(z[y]);
    const float ref = xent::smooth_ref(zy);
    RowStats st = xent::start_stats(zy);
    for (int64_t c = slot.lane; c < C; c += slot.width)
      xent::accumulate<kSmooth>(st, static_cast<float>(z[c]), c == y, ref);
    st = kWarpRows ? warp_merge(st) : block_merge(st, warp_totals);
    if (slot.lane == 0) {
      const xent::RowResult res = xent::finish_row(st, zy, C, sm);
      loss[r] = res.loss;
      grad_norm[r] = res.grad_norm;
      lse[2 * r] = res.m;
      lse[2 * r + 1] = res.log_s;
    }
  }
}

template <typename T, bool kWarpRows>
__global__ void __launch_bounds__(kBlockThreads)
    xent_bwd_kernel(const float* __restrict__ grad, int64_t grad_stride,
                    const T* __restrict__ logits, int64_t row_stride,
                    const int64_t* __restrict__ target, const float* __restrict__ lse, int64_t N,
                    int64_t C, int64_t ignore_index, Smooth sm, T* __restrict__ out) {
  const int64_t nblocks = xent::row_blocks(N, kWarpRows);
  for (int64_t b = blockIdx.x; b < nblocks; b += gridDim.x) {
    const RowSlot slot = xent::row_slot(kWarpRows, b, static_cast<int>(threadIdx.x));
    const int64_t r = slot.row;
    if (r >= N) continue;
    const int64_t y = target[r];
    T* o = out + r * C;
    if (y == ignore_index || !target_ok(y, C)) {
      const float v = y == ignore_index ? 0.0f : NAN;
      for (int64_t c = slot.lane; c < C; c += slot.width) o[c] = static_cast<T>(v);
      continue;
    }
    const T* z = logits + r * row_stride;
    const float g = grad[r * grad_stride], m = lse[2 * r], ls = lse[2 * r + 1];
    for (int64_t c = slot.lane; c < C; c += slot.width) {
      const float t = c == y ? sm.b : sm.a;
      o[c] = static_cast<T>(xent::grad_elem(static_cast<float>(z[c]), m, ls, t) * g);
    }
  }
}

// Blocks of a launch over N rows of C classes (N > 0).
unsigned grid_for(int64_t N, int64_t C) {
  const int64_t nblocks = xent::row_blocks(N, xent::warp_per_row(C));
  return static_cast<unsigned>(xent::grid_blocks(nblocks, xent::kMaxGridBlocks));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_cuda(const at::Tensor& logits_in,
                                                        const at::Tensor& target_in,
                                                        int64_t reduction, int64_t ignore_index,
                                                        double label_smoothing) {
  xent::check_args("cross_entropy_with_grad_norm_fwd", logits_in, target_in, reduction,
                   label_smoothing);
  TORCH_CHECK(logits_in.is_cuda(), "cross_entropy_with_grad_norm_fwd: expected CUDA tensors");
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = rows_unit_stride(logits_in), target = target_in.contiguous();
  const int64_t N = logits.size(0), C = logits.size(1);
  const auto opts = logits.options().dtype(at::kFloat);
  at::Tensor loss_rows = at::empty({N}, opts), grad_norm = at::empty({N}, opts),
             lse = at::empty({N, 2}, opts);
  if (N > 0) {
    const Smooth sm = xent::make_smooth(label_smoothing, C);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    dispatch_dtype(logits.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      const T* z = static_cast<const T*>(logits.data_ptr());
      const bool warp_rows = xent::warp_per_row(C);
      auto kernel =
          sm.eps == 0.0f
              ? (warp_rows ? xent_fwd_kernel<T, false, true> : xent_fwd_kernel<T, false, false>)
              : (warp_rows ? xent_fwd_kernel<T, true, true> : xent_fwd_kernel<T, true, false>);
      kernel<<<grid_for(N, C), kBlockThreads, 0, stream>>>(
          z, logits.stride(0), target.data_ptr<int64_t>(), N, C, ignore_index, sm,
          loss_rows.data_ptr<float>(), grad_norm.data_ptr<float>(), lse.data_ptr<float>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  // The reduction stays on the device (no host sync): a float32 sum, then the dtype.
  at::Tensor loss = loss_rows;
  if (reduction != xent::kReduceNone) {
    loss = loss_rows.sum();
    if (reduction == xent::kReduceMean) loss = loss.div(target.ne(ignore_index).sum());
  }
  return {loss.to(logits.scalar_type()), grad_norm, lse};
}

at::Tensor bwd_cuda(const at::Tensor& grad_loss, const at::Tensor& logits_in,
                    const at::Tensor& target_in, const at::Tensor& lse_in, int64_t reduction,
                    int64_t ignore_index, double label_smoothing) {
  xent::check_bwd_args(grad_loss, logits_in, target_in, lse_in, reduction, label_smoothing);
  TORCH_CHECK(logits_in.is_cuda(), "cross_entropy_with_grad_norm_bwd: expected CUDA tensors");
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = rows_unit_stride(logits_in);
  const at::Tensor target = target_in.contiguous(), lse = lse_in.contiguous();
  const int64_t N = logits.size(0), C = logits.size(1);
  at::Tensor out = at::empty({N, C}, logits.options().memory_format(at::MemoryFormat::Contiguous));
  if (N == 0) return out;
  // Each row's loss gradient, read with its stride (0 for mean and sum): no host sync.
  at::Tensor grad = grad_loss.to(at::kFloat);
  if (reduction == xent::kReduceMean) grad = grad.div(target.ne(ignore_index).sum());
  const int64_t grad_stride = reduction == xent::kReduceNone ? grad.stride(0) : 0;
  const Smooth sm = xent::make_smooth(label_smoothing, C);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_dtype(logits.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    auto kernel = xent::warp_per_row(C) ? xent_bwd_kernel<T, true> : xent_bwd_kernel<T, false>;
    kernel<<<grid_for(N, C), kBlockThreads, 0, stream>>>(
        grad.data_ptr<float>(), grad_stride, static_cast<const T*>(logits.data_ptr()),
        logits.stride(0), target.data_ptr<int64_t>(), lse.data_ptr<float>(), N, C, ignore_index, sm,
        static_cast<T*>(out.data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CUDA, m) {
  m.impl("cross_entropy_with_grad_norm_fwd", &fwd_cuda);
  m.impl("cross_entropy_with_grad_norm_bwd", &bwd_cuda);
}

}  // namespace pada
