// CPU kernel of pada::path_record_: the grouped norms of the gradients (the
// grouped_grad_norm kernel, csrc/cpu/grouped_grad_norm.cpp), then each cell's
// step and update (csrc/common/path_record.h) in one pass over the tables.
#include "../host/path_record.h"

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
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
  const float* w = weights.data_ptr<float>();
  float* s = scores.data_ptr<float>();
  bool* v = visited.data_ptr<bool>();
  float* n = count.data_ptr<float>();
  int64_t* k = skipped.data_ptr<int64_t>();
  const float* scale = grad_scale.has_value() ? grad_scale->data_ptr<float>() : nullptr;
  const bool poisoned = norm == kNormPaper && paper_poisoned(vals.data(), num_groups);
  for (int64_t c = 0; c < scores.numel(); ++c) {
    if (!(w[c] > 0.0f)) continue;  // off the path
    float step = cell_step(vals.data(), plan.cell_begin[c], plan.cell_begin[c + 1], w[c],
                           static_cast<int>(norm));
    if (poisoned) step = NAN;
    if (scale != nullptr) step = div_rn(step, *scale);
    const Cell out = record_cell(Cell{s[c], v[c], n[c], k[c]}, step, static_cast<int>(rule),
                                 plan.one_minus_decay);
    s[c] = out.score;
    v[c] = out.visited;
    n[c] = out.count;
    k[c] = out.skipped;
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CPU, m) { m.impl("path_record_", &path_record_cpu); }

}  // namespace path
}  // namespace pada
