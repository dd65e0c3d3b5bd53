// CUDA kernel of pada::path_record_: the grouped norms of the gradients (the
// grouped_grad_norm kernels, csrc/cuda/grouped_grad_norm.cu) into a device
// buffer, then a thread per cell for the step and the update
// (csrc/common/path_record.h), on the current stream. The cell ranges go by
// value (GroupBatch, one launch per kBatchGroups cells): no host buffer, no
// copy, no host sync, so the op can be captured in a CUDA graph.
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>

#include "../common/path_record.h"
#include "../host/path_record.h"

namespace pada {
namespace path {
namespace {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads)
    path_record_kernel(const __grid_constant__ gnorm::GroupBatch cells,
                       const float* __restrict__ vals, int64_t num_vals, const Tables t) {
  const int i = blockIdx.x * kThreads + threadIdx.x;
  if (i >= cells.count) return;
  const bool poisoned = t.norm == kNormPaper && paper_poisoned(vals, num_vals);
  update_cell(t, cells.first + i, vals, cells.begin[i], cells.begin[i + 1], poisoned);
}

void path_record_cuda(const c10::List<std::optional<at::Tensor>>& grads,
                      const at::Tensor& cell_index, const at::Tensor& weights,
                      const at::Tensor& scores, const at::Tensor& visited, const at::Tensor& count,
                      const at::Tensor& skipped, int64_t norm, int64_t rule, double decay,
                      const std::optional<at::Tensor>& grad_scale) {
  const RecordPlan plan = plan_record(grads, cell_index, weights, scores, visited, count, skipped,
                                      norm, rule, decay, grad_scale);
  const int64_t cells = scores.numel();
  if (cells == 0) return;
  const c10::cuda::CUDAGuard guard(scores.device());
  const int64_t num_vals = static_cast<int64_t>(plan.norms.group_begin.size()) - 1;
  // From the caching allocator on the current stream: graph capture puts it in the graph's pool.
  at::Tensor vals = at::empty({std::max<int64_t>(num_vals, 1)},
                              at::TensorOptions().dtype(at::kFloat).device(scores.device()));
  gnorm::run_plan_cuda(plan.norms, scores.device(), plan.finish, vals.data_ptr<float>());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(scores.device().index());
  for (int64_t k = 0; k < gnorm::num_batches(cells, gnorm::kBatchGroups); ++k) {
    const gnorm::GroupBatch batch = gnorm::make_group_batch(plan.cell_begin.data(), cells, k);
    const unsigned blocks = static_cast<unsigned>((batch.count + kThreads - 1) / kThreads);
    path_record_kernel<<<blocks, kThreads, 0, stream>>>(batch, vals.data_ptr<float>(), num_vals,
                                                        plan.tables);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CUDA, m) { m.impl("path_record_", &path_record_cuda); }

}  // namespace path
}  // namespace pada
