// CUDA kernels of pada::cross_entropy_with_grad_norm_{fwd,bwd}: one block per
// row. In the forward each thread runs an online softmax over a strided share
// of the row (coalesced loads), then the block merges the threads' RowStats
// (csrc/common/cross_entropy_with_grad_norm.h) and one thread finishes the row.
// A target out of range triggers a device-side assert, as in torch's own
// cross-entropy: raising would need a host synchronisation per call.
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

#include "../common/cross_entropy_with_grad_norm.h"

namespace pada {
namespace {

using xent::dispatch_dtype;
using xent::rows_unit_stride;
using xent::RowStats;
using xent::Smooth;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ RowStats shfl_down(const RowStats& s, int delta) {
  return RowStats{
      __shfl_down_sync(0xffffffffu, s.m, delta), __shfl_down_sync(0xffffffffu, s.so, delta),
      __shfl_down_sync(0xffffffffu, s.s2o, delta), __shfl_down_sync(0xffffffffu, s.sz, delta)};
}

// The merged stats of the whole block, valid in thread 0.
__device__ RowStats block_merge(RowStats st) {
  __shared__ RowStats warp_stats[kWarps];
  for (int d = 16; d > 0; d >>= 1) st = xent::merge(st, shfl_down(st, d));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_stats[warp] = st;
  __syncthreads();
  if (warp == 0) {
    st = lane < kWarps ? warp_stats[lane] : xent::empty_stats();
    for (int d = 16; d > 0; d >>= 1) st = xent::merge(st, shfl_down(st, d));
  }
  return st;
}

template <typename T, bool kSmooth>
__global__ void __launch_bounds__(kThreads)
    xent_fwd_kernel(const T* __restrict__ logits, int64_t row_stride,
                    const int64_t* __restrict__ target, int64_t C, int64_t ignore_index, Smooth sm,
                    float* __restrict__ loss, float* __restrict__ grad_norm,
                    float* __restrict__ lse) {
  const int64_t r = blockIdx.x;
  const int64_t y = target[r];
  if (y == ignore_index) {  // the whole block leaves together
    if (threadIdx.x == 0) loss[r] = grad_norm[r] = lse[r] = 0.0f;
    return;
  }
  CUDA_KERNEL_ASSERT(y >= 0 && y < C && "cross_entropy_with_grad_norm: target out of range");
  const T* z = logits + r * row_stride;
  const float zy = static_cast<float>(z[y]);
  // Starting every thread's max at z_y keeps exp(z_y - m) <= 1 at the end.
  RowStats st{zy, 0.0f, 0.0f, 0.0f};
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const float v = static_cast<float>(z[c]);
    if constexpr (kSmooth) st.sz += v;
    if (c == y) continue;
    xent::rescale(st, v);
    const float e = xent::exp_f32(v - (st.m == -INFINITY ? 0.0f : st.m));
    st.so += e;
    st.s2o += e * e;
  }
  st = block_merge(st);
  if (threadIdx.x == 0) {
    const xent::RowResult res = xent::finish_row(st, zy, C, sm);
    loss[r] = res.loss;
    grad_norm[r] = res.grad_norm;
    lse[r] = res.lse;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    xent_bwd_kernel(const float* __restrict__ grad, int64_t grad_stride,
                    const T* __restrict__ logits, int64_t row_stride,
                    const int64_t* __restrict__ target, const float* __restrict__ lse, int64_t C,
                    int64_t ignore_index, Smooth sm, T* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const int64_t y = target[r];
  T* o = out + r * C;
  if (y == ignore_index) {
    for (int64_t c = threadIdx.x; c < C; c += kThreads) o[c] = static_cast<T>(0.0f);
    return;
  }
  CUDA_KERNEL_ASSERT(y >= 0 && y < C && "cross_entropy_with_grad_norm: target out of range");
  const T* z = logits + r * row_stride;
  const float g = grad[r * grad_stride], l = lse[r];
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const float t = c == y ? sm.b : sm.a;
    o[c] = static_cast<T>(xent::grad_elem(static_cast<float>(z[c]), l, t) * g);
  }
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
             lse = at::empty({N}, opts);
  if (N > 0) {
    const Smooth sm = xent::make_smooth(label_smoothing, C);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    dispatch_dtype(logits.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      const T* z = static_cast<const T*>(logits.data_ptr());
      auto kernel = sm.eps == 0.0f ? xent_fwd_kernel<T, false> : xent_fwd_kernel<T, true>;
      kernel<<<static_cast<unsigned>(N), kThreads, 0, stream>>>(
          z, logits.stride(0), target.data_ptr<int64_t>(), C, ignore_index, sm,
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
    xent_bwd_kernel<T><<<static_cast<unsigned>(N), kThreads, 0, stream>>>(
        grad.data_ptr<float>(), grad_stride, static_cast<const T*>(logits.data_ptr()),
        logits.stride(0), target.data_ptr<int64_t>(), lse.data_ptr<float>(), C, ignore_index, sm,
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
