// Host side of pada::path_record_, shared by the CPU and CUDA entry points
// (defined in host/path_record.cpp): the argument checks (the errors users
// see come from here) and the plan: the grouped-norm chunk table of the
// gradients and each cell's range of groups.
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "../common/path_record.h"
#include "grouped_grad_norm.h"

namespace pada {
namespace path {

struct RecordPlan {
  gnorm::Plan norms;                // l2: a group per cell; paper: a group per tensor
  int finish = gnorm::kSquared;     // what the groups hold: sums of squares or norms
  std::vector<int64_t> cell_begin;  // cell c's groups: [cell_begin[c], cell_begin[c + 1])
  Tables tables{};                  // what update_cell reads and writes
};

// Checks every argument (naming it) and plans the norms.
RecordPlan plan_record(const c10::List<std::optional<at::Tensor>>& grads,
                       const at::Tensor& cell_index, const at::Tensor& weights,
                       const at::Tensor& scores, const at::Tensor& visited, const at::Tensor& count,
                       const at::Tensor& skipped, int64_t norm, int64_t rule, double decay,
                       const std::optional<at::Tensor>& grad_scale);

}  // namespace path
}  // namespace pada
