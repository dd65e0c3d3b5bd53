// Argument checks and chunk planning of pada::grouped_grad_norm,
// grouped_sq_norm_accumulate_ and segment_grad_norm, shared by the CPU and
// CUDA entry points (declared in host/grouped_grad_norm.h).
#include "grouped_grad_norm.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <string>
#include <vector>

#include "dtype_name.h"

namespace pada {
namespace gnorm {

namespace {

bool dtype_code(at::ScalarType t, int64_t* code) {
  switch (t) {
    case at::kFloat:
      *code = kF32;
      return true;
    case at::kHalf:
      *code = kF16;
      return true;
    case at::kBFloat16:
      *code = kBF16;
      return true;
    default:
      return false;
  }
}

void check_index_tensor(const char* op, const char* name, const at::Tensor& t, int64_t len) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ",
                   dtype_name(t.scalar_type()));
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": ", name,
                    " must be a CPU tensor (it is read on the host), got ", t.device());
  TORCH_CHECK_VALUE(t.dim() == 1 && t.numel() == len, op, ": ", name, " must be 1-D with ", len,
                    " entries, got shape ", t.sizes());
}

// Fills plan.rows in group order from per-item (address, numel, dtype, group).
struct Item {
  int64_t addr, numel, dtype, group;
};

void place_rows(const std::vector<Item>& items, int64_t num_groups, Plan& plan) {
  plan.group_begin.assign(num_groups + 1, 0);
  for (const Item& it : items) plan.group_begin[it.group + 1] += num_chunks(it.numel);
  for (int64_t g = 0; g < num_groups; ++g) plan.group_begin[g + 1] += plan.group_begin[g];
  plan.rows.resize(plan.group_begin[num_groups]);
  std::vector<int64_t> next(plan.group_begin.begin(), plan.group_begin.end() - 1);
  for (const Item& it : items) {
    int64_t& r = next[it.group];
    const int64_t size = it.dtype == kF32 ? 4 : 2;
    for (int64_t off = 0; off < it.numel; off += kChunk) {
      plan.rows[r++] = ChunkRow{it.addr + off * size, std::min(kChunk, it.numel - off), it.dtype};
    }
    plan.total_numel += it.numel;
  }
}

}  // namespace

namespace {

// The chunk item of tensors[i] (in group g), checked; strided tensors are
// copied into plan.copies.
Item tensor_item(const char* op, const char* list, int64_t i, const at::Tensor& t, int64_t g,
                 int64_t num_groups, Plan& plan) {
  int64_t code = 0;
  TORCH_CHECK_TYPE(dtype_code(t.scalar_type(), &code), op, ": ", list, "[", i, "] has dtype ",
                   dtype_name(t.scalar_type()), "; supported are float32, float16 and bfloat16");
  TORCH_CHECK_INDEX(g >= 0 && g < num_groups, op, ": group_index[", i, "] = ", g, " (for ", list,
                    "[", i, "]) is out of range for num_groups = ", num_groups);
  // A dense tensor in any dimension order covers exactly numel slots from
  // its data pointer, and the order of the terms is ours to fix: no copy.
  const void* ptr = nullptr;
  if (t.numel() > 0) {
    if (t.is_non_overlapping_and_dense()) {
      ptr = t.data_ptr();
    } else {
      plan.copies.push_back(t.contiguous());
      ptr = plan.copies.back().data_ptr();
    }
  }
  return Item{reinterpret_cast<int64_t>(ptr), t.numel(), code, g};
}

}  // namespace

Plan plan_tensors(const char* op, at::TensorList tensors, const at::Tensor& group_index,
                  int64_t num_groups) {
  TORCH_CHECK_VALUE(num_groups >= 0, op, ": num_groups must be >= 0, got ", num_groups);
  const int64_t n = static_cast<int64_t>(tensors.size());
  check_index_tensor(op, "group_index", group_index, n);
  const at::Tensor gi = group_index.contiguous();
  const int64_t* groups = gi.data_ptr<int64_t>();
  Plan plan;
  std::vector<Item> items(n);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& t = tensors[i];
    if (i == 0) plan.device = t.device();
    TORCH_CHECK(t.device() == plan.device, op, ": all tensors must be on one device; tensors[", i,
                "] is on ", t.device(), " but tensors[0] is on ", plan.device);
    items[i] = tensor_item(op, "tensors", i, t, groups[i], num_groups, plan);
  }
  if (n == 0) plan.device = group_index.device();
  place_rows(items, num_groups, plan);
  return plan;
}

Plan plan_optional_tensors(const char* op, const c10::List<std::optional<at::Tensor>>& tensors,
                           const int64_t* groups, int64_t num_groups, const at::Device& device) {
  const int64_t n = static_cast<int64_t>(tensors.size());
  Plan plan;
  plan.device = device;
  std::vector<Item> items;
  items.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    const std::optional<at::Tensor> t = tensors.get(i);
    if (!t.has_value() || !t->defined()) continue;
    TORCH_CHECK(t->device() == device, op, ": grads[", i, "] is on ", t->device(),
                " but the tables are on ", device);
    items.push_back(tensor_item(op, "grads", i, *t, groups[i], num_groups, plan));
  }
  place_rows(items, num_groups, plan);
  return plan;
}

Plan plan_segments(const char* op, const at::Tensor& flat, const at::Tensor& offsets,
                   const at::Tensor& group_of_segment, int64_t num_groups) {
  TORCH_CHECK_VALUE(num_groups >= 0, op, ": num_groups must be >= 0, got ", num_groups);
  int64_t code = 0;
  TORCH_CHECK_TYPE(dtype_code(flat.scalar_type(), &code), op, ": flat has dtype ",
                   dtype_name(flat.scalar_type()), "; supported are float32, float16 and bfloat16");
  TORCH_CHECK_VALUE(flat.dim() == 1 && flat.is_contiguous(), op,
                    ": flat must be a contiguous 1-D tensor, got shape ", flat.sizes());
  const int64_t s = group_of_segment.numel();
  check_index_tensor(op, "offsets", offsets, s + 1);
  check_index_tensor(op, "group_of_segment", group_of_segment, s);
  const at::Tensor off_c = offsets.contiguous(), grp_c = group_of_segment.contiguous();
  const int64_t* off = off_c.data_ptr<int64_t>();
  const int64_t* grp = grp_c.data_ptr<int64_t>();
  TORCH_CHECK_INDEX(off[0] >= 0 && off[s] <= flat.numel(), op, ": offsets must lie in [0, ",
                    flat.numel(), "], got offsets[0] = ", off[0], ", offsets[", s, "] = ", off[s]);
  Plan plan;
  plan.device = flat.device();
  std::vector<Item> items(s);
  const int64_t base = reinterpret_cast<int64_t>(flat.data_ptr());
  const int64_t size = code == kF32 ? 4 : 2;
  for (int64_t i = 0; i < s; ++i) {
    TORCH_CHECK_VALUE(off[i + 1] >= off[i], op, ": offsets must be non-decreasing, but offsets[",
                      i + 1, "] = ", off[i + 1], " < offsets[", i, "] = ", off[i]);
    TORCH_CHECK_INDEX(grp[i] >= 0 && grp[i] < num_groups, op, ": group_of_segment[", i,
                      "] = ", grp[i], " is out of range for num_groups = ", num_groups);
    items[i] = Item{base + off[i] * size, off[i + 1] - off[i], code, grp[i]};
  }
  place_rows(items, num_groups, plan);
  return plan;
}

void check_table(const char* op, const at::Tensor& table, const at::Device& device) {
  TORCH_CHECK_TYPE(table.scalar_type() == at::kFloat, op, ": table must be float32, got ",
                   dtype_name(table.scalar_type()));
  TORCH_CHECK_VALUE(table.dim() == 1 && table.is_contiguous(), op,
                    ": table must be a contiguous 1-D tensor, got shape ", table.sizes());
  TORCH_CHECK(table.device() == device, op, ": table is on ", table.device(),
              " but the tensors are on ", device);
}

void check_no_grad(const char* op, const std::string& name, const at::Tensor& t) {
  TORCH_CHECK(!(at::GradMode::is_enabled() && t.requires_grad()), op,
              " is not differentiable, but ", name,
              " requires grad: detach it or call it under torch.no_grad() "
              "(grouped_grad_norm is differentiable)");
}

void check_accumulate_args(const char* op, at::TensorList tensors, const at::Tensor& table) {
  for (size_t i = 0; i < tensors.size(); ++i)
    check_no_grad(op, "tensors[" + std::to_string(i) + "]", tensors[i]);
  check_no_grad(op, "table", table);
  check_table(op, table, tensors.empty() ? table.device() : tensors[0].device());
}

}  // namespace gnorm
}  // namespace pada
