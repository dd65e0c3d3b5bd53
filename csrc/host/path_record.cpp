// Argument checks and planning of pada::path_record_ (declared in host/path_record.h).
#include "path_record.h"

#include <ATen/core/Tensor.h>

#include <utility>
#include <vector>

#include "dtype_name.h"

namespace pada {
namespace path {

namespace {

constexpr const char* kOp = "path_record_";

// A table: `dtype`, contiguous, shaped like scores, on the scores' device.
void check_table(const char* name, const at::Tensor& t, at::ScalarType dtype,
                 const at::Tensor& scores) {
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, kOp, ": ", name, " must be ", dtype_name(dtype),
                   ", got ", dtype_name(t.scalar_type()));
  TORCH_CHECK_VALUE(t.sizes() == scores.sizes() && t.is_contiguous(), kOp, ": ", name,
                    " must be contiguous and shaped like scores ", scores.sizes(), ", got ",
                    t.sizes());
  TORCH_CHECK(t.device() == scores.device(), kOp, ": ", name, " is on ", t.device(),
              " but scores are on ", scores.device());
}

}  // namespace

RecordPlan plan_record(const c10::List<std::optional<at::Tensor>>& grads,
                       const at::Tensor& cell_index, const at::Tensor& weights,
                       const at::Tensor& scores, const at::Tensor& visited, const at::Tensor& count,
                       const at::Tensor& skipped, int64_t norm, int64_t rule, double decay,
                       const std::optional<at::Tensor>& grad_scale) {
  TORCH_CHECK_TYPE(scores.scalar_type() == at::kFloat, kOp, ": scores must be torch.float32, got ",
                   dtype_name(scores.scalar_type()));
  TORCH_CHECK_VALUE(scores.is_contiguous(), kOp, ": scores must be contiguous");
  check_table("visited", visited, at::kBool, scores);
  check_table("count", count, at::kFloat, scores);
  check_table("skipped", skipped, at::kLong, scores);
  check_table("weights", weights, at::kFloat, scores);
  if (grad_scale.has_value()) {
    const at::Tensor& s = *grad_scale;
    TORCH_CHECK_TYPE(s.scalar_type() == at::kFloat, kOp, ": grad_scale must be torch.float32, got ",
                     dtype_name(s.scalar_type()));
    TORCH_CHECK_VALUE(s.numel() == 1, kOp, ": grad_scale must have one element, got ", s.numel());
    TORCH_CHECK(s.device() == scores.device(), kOp, ": grad_scale is on ", s.device(),
                " but scores are on ", scores.device());
  }
  TORCH_CHECK_VALUE(valid_norm(norm), kOp, ": norm must be 0 (l2) or 1 (paper), got ", norm);
  TORCH_CHECK_VALUE(valid_rule(rule), kOp, ": rule must be 0 (paper), 1 (ema) or 2 (mean), got ",
                    rule);
  TORCH_CHECK_VALUE(decay >= 0.0 && decay <= 1.0, kOp, ": decay must be in [0, 1], got ", decay);
  const int64_t n = static_cast<int64_t>(grads.size());
  TORCH_CHECK_TYPE(cell_index.scalar_type() == at::kLong, kOp, ": cell_index must be int64, got ",
                   dtype_name(cell_index.scalar_type()));
  TORCH_CHECK_VALUE(cell_index.device().is_cpu(), kOp,
                    ": cell_index must be a CPU tensor (it is read on the host), got ",
                    cell_index.device());
  TORCH_CHECK_VALUE(cell_index.dim() == 1 && cell_index.numel() == n, kOp,
                    ": cell_index must be 1-D with one entry per gradient (", n, "), got shape ",
                    cell_index.sizes());
  const int64_t cells = scores.numel();
  const at::Tensor ci = cell_index.contiguous();
  const int64_t* cell = ci.data_ptr<int64_t>();
  RecordPlan plan;
  plan.tables = Tables{weights.data_ptr<float>(),
                       grad_scale.has_value() ? grad_scale->data_ptr<float>() : nullptr,
                       scores.data_ptr<float>(),
                       visited.data_ptr<bool>(),
                       count.data_ptr<float>(),
                       skipped.data_ptr<int64_t>(),
                       static_cast<int>(norm),
                       static_cast<int>(rule),
                       static_cast<float>(1.0 - decay)};
  plan.cell_begin.assign(cells + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK_INDEX(cell[i] >= 0 && cell[i] < cells, kOp, ": cell_index[", i, "] = ", cell[i],
                      " (for grads[", i, "]) is out of range for ", cells, " cells");
    ++plan.cell_begin[cell[i] + 1];
  }
  std::vector<int64_t> group(n);
  if (norm == kNormL2) {  // a group per cell: the kernel sums each cell's squares
    plan.finish = gnorm::kSquared;
    for (int64_t c = 0; c <= cells; ++c) plan.cell_begin[c] = c;
    for (int64_t i = 0; i < n; ++i) group[i] = cell[i];
  } else {  // a group per tensor, the groups of a cell together in list order
    plan.finish = gnorm::kNorm;
    for (int64_t c = 0; c < cells; ++c) plan.cell_begin[c + 1] += plan.cell_begin[c];
    std::vector<int64_t> next(plan.cell_begin.begin(), plan.cell_begin.end() - 1);
    for (int64_t i = 0; i < n; ++i) group[i] = next[cell[i]]++;
  }
  const int64_t num_groups = norm == kNormL2 ? cells : n;
  plan.norms = gnorm::plan_optional_tensors(kOp, grads, group.data(), num_groups, scores.device());
  return plan;
}

}  // namespace path
}  // namespace pada
