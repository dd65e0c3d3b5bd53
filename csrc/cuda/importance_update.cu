// CUDA kernel of pada::importance_update_. A thread per batch entry; the
// thread holding the first occurrence of an index replays all of that index's
// visits in batch order, so duplicates give exactly the sequential result
// with no atomics on the scores. O(B^2) index comparisons in the worst case:
// fine for training batches (B = 4096 is 8M cached comparisons).
// An out-of-range index cannot raise without a host sync: it is skipped and
// counted in status[0], which the Python layer checks at the epoch boundary.
// Nothing here reads device memory on the host: no sync, capturable.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/importance_update.h"
#include "../host/importance_update.h"

namespace pada {
namespace {

// Entry i: out-of-range keys are counted; the owner of a key (its first
// occurrence) replays all of the key's visits (shared header, step 2).
template <typename V>
__global__ void importance_update_kernel(float* __restrict__ scores, bool* __restrict__ visited,
                                         unsigned long long* __restrict__ status,
                                         const int64_t* __restrict__ index,
                                         const V* __restrict__ values, int64_t n, int64_t size,
                                         double decay) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    const int64_t key = index[i];
    if (key < 0 || key >= size) {
      atomicAdd(status + kStatusOutOfRange, 1ull);
      continue;
    }
    if (!first_occurrence(index, i)) continue;
    const ImportanceSlot slot =
        replay_visits(index, values, n, i, ImportanceSlot{scores[key], visited[key], 0}, decay);
    scores[key] = slot.score;
    visited[key] = slot.visited;
    if (slot.skipped)
      atomicAdd(status + kStatusNonFinite, static_cast<unsigned long long>(slot.skipped));
  }
}

void importance_update_cuda(at::Tensor& scores, at::Tensor& visited, at::Tensor& status,
                            const at::Tensor& index, const at::Tensor& values, double decay) {
  check_importance_update_args(scores, visited, status, index, values, decay);
  const int64_t n = index.numel();
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(scores.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor idx = index.contiguous();
  const at::Tensor val = values.contiguous();
  constexpr int kThreads = 256;
  const unsigned blocks =
      static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, val.scalar_type(), "importance_update_cuda", [&] {
        importance_update_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            scores.data_ptr<float>(), visited.data_ptr<bool>(),
            reinterpret_cast<unsigned long long*>(status.data_ptr<int64_t>()),
            idx.data_ptr<int64_t>(), val.data_ptr<scalar_t>(), n, scores.numel(), decay);
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CUDA, m) { m.impl("importance_update_", &importance_update_cuda); }

}  // namespace pada
