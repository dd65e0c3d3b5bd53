// Host side of pada::grouped_grad_norm, grouped_sq_norm_accumulate_ and
// segment_grad_norm, shared by the CPU and CUDA entry points (defined in
// host/grouped_grad_norm.cpp): the argument checks (the errors users see come
// from here) and the chunk table that both backends' kernels walk.
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "../common/grouped_grad_norm.h"

namespace pada {
namespace gnorm {

struct Plan {
  std::vector<ChunkRow> rows;        // ordered by group
  std::vector<int64_t> group_begin;  // num_groups + 1 entries
  int64_t total_numel = 0;
  at::Device device = at::kCPU;    // of the inputs (CPU for an empty list)
  std::vector<at::Tensor> copies;  // contiguous copies of strided inputs, kept alive
};

// `tensors` grouped by `group_index` (a CPU int64 tensor, one entry per tensor).
Plan plan_tensors(const char* op, at::TensorList tensors, const at::Tensor& group_index,
                  int64_t num_groups);

// The same for a list with None entries (no elements): tensors[i] in group
// groups[i] (checked by the caller to have tensors.size() entries), each on
// `device`. For pada::path_record_, whose list is named grads.
Plan plan_optional_tensors(const char* op, const c10::List<std::optional<at::Tensor>>& tensors,
                           const int64_t* groups, int64_t num_groups, const at::Device& device);

// Segments [offsets[s], offsets[s + 1]) of the 1-D tensor `flat`, segment s
// in group group_of_segment[s]; offsets and group_of_segment are CPU int64.
Plan plan_segments(const char* op, const at::Tensor& flat, const at::Tensor& offsets,
                   const at::Tensor& group_of_segment, int64_t num_groups);

// out[g] <- finish(sum of squares of group g) for the plan's groups: the CPU
// kernel (csrc/cpu/grouped_grad_norm.cpp) on host memory, and the CUDA one
// (csrc/cuda/grouped_grad_norm.cu) on the current stream into device memory.
void run_plan(const Plan& plan, int finish, float* out);
void run_plan_cuda(const Plan& plan, const at::Device& device, int finish, float* out);

// Checks that `table` can receive the group sums of a plan on `device`.
void check_table(const char* op, const at::Tensor& table, const at::Device& device);

// The non-differentiable ops refuse inputs that require grad (in grad mode),
// rather than return results that silently have no gradient.
void check_no_grad(const char* op, const std::string& name, const at::Tensor& t);

// No tensor (nor the table) may require grad, then check_table.
void check_accumulate_args(const char* op, at::TensorList tensors, const at::Tensor& table);

}  // namespace gnorm
}  // namespace pada
