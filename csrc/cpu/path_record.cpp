// CPU kernel of pada::path_record_: the grouped norms of the gradients (the
// grouped_grad_norm kernel, csrc/cpu/grouped_grad_norm.cpp), then each cell's
// step and update (csrc/common/path_record.h) in one pass over the tables.
#include "../host/path_record.h"

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>
#include <vector>

namespace pada {
namespace path {
namespace {

void path_record_cpu(const c10::List<std::optional<at::Tensor>>& grads,
                     const at::Tensor& cell_index, const at::Tensor& weights,
                     const at::Tensor& scores, const at::Tensor& visited, const at::Tensor& count,
                     const at::Tensor& skipped, int64_t norm, int64_t rule, double decay,
                     const std::optional<at::Tensor>& grad_scale) {
  const RecordPlan plan = plan_record(grads, cell_index, weights, scores, visited, count, skipped,
                                      norm, rule, decay, grad_scale);
  const int64_t num_groups = static_cast<int64_t>(plan.norms.group_begin.size()) - 1;
  std::vector<float> vals(num_groups);
  gnorm::run_plan(plan.norms, plan.finish, vals.data());
  const bool poisoned = norm == kNormPaper && paper_poisoned(vals.data(), num_groups);
  for (int64_t c = 0; c < scores.numel(); ++c)
    update_cell(plan.tables, c, vals.data(), plan.cell_begin[c], plan.cell_begin[c + 1], poisoned);
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CPU, m) { m.impl("path_record_", &path_record_cpu); }

}  // namespace path
}  // namespace pada
