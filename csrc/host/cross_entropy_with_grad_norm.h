// Host code of pada::cross_entropy_with_grad_norm shared by the CPU and CUDA
// entry points: dtype dispatch, layout, argument checks. The per-row math (no
// torch needed, so host tests replay it) is in csrc/common/..._math.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include "../common/cross_entropy_with_grad_norm_math.h"

namespace pada {
namespace xent {

// Calls f(T{}) with T the element type of the (already checked) logits.
template <typename F>
void dispatch_dtype(at::ScalarType dt, const F& f) {
  if (dt == at::kHalf) return f(c10::Half{});
  if (dt == at::kBFloat16) return f(c10::BFloat16{});
  return f(float{});
}

// Rows are read with their stride; only a non-unit class stride costs a copy.
inline at::Tensor rows_unit_stride(const at::Tensor& logits) {
  return logits.size(1) <= 1 || logits.stride(1) == 1 ? logits : logits.contiguous();
}

// Argument checks shared by the CPU and CUDA entry points (host only), and
// mirrored with the same messages by pada_ext/fake.py (xent_check_args), which
// the fake and the Triton op run: one validation for every backend. The
// target range is checked by each backend: it needs the target values.
inline void check_args(const char* op, const at::Tensor& logits, const at::Tensor& target,
                       int64_t reduction, double label_smoothing) {
  TORCH_CHECK_VALUE(logits.dim() == 2, op, ": logits must be 2-D [N, C], got ", logits.dim(),
                    " dimensions");
  const auto dt = logits.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, op,
                   ": logits must be float32, float16 or bfloat16, got ", dt);
  TORCH_CHECK_VALUE(logits.size(1) >= 1, op, ": logits need at least one class");
  TORCH_CHECK_TYPE(target.scalar_type() == at::kLong, op, ": target must be int64, got ",
                   target.scalar_type());
  TORCH_CHECK_VALUE(target.dim() == 1 && target.size(0) == logits.size(0), op,
                    ": target must have shape [N] = [", logits.size(0), "], got ", target.sizes());
  TORCH_CHECK_VALUE(target.device() == logits.device(), op, ": target is on ", target.device(),
                    " but logits are on ", logits.device());
  TORCH_CHECK_VALUE(reduction == kReduceNone || reduction == kReduceMean || reduction == kReduceSum,
                    op, ": reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
  TORCH_CHECK_VALUE(label_smoothing >= 0.0 && label_smoothing <= 1.0, op,
                    ": label_smoothing must be in [0, 1], got ", label_smoothing);
}

inline void check_bwd_args(const at::Tensor& grad_loss, const at::Tensor& logits,
                           const at::Tensor& target, const at::Tensor& lse, int64_t reduction,
                           double label_smoothing) {
  constexpr const char* op = "cross_entropy_with_grad_norm_bwd";
  check_args(op, logits, target, reduction, label_smoothing);
  const int64_t n = logits.size(0);
  TORCH_CHECK_VALUE(lse.dim() == 2 && lse.size(0) == n && lse.size(1) == 2, op, ": lse must be [",
                    n, ", 2], got ", lse.sizes());
  TORCH_CHECK_TYPE(lse.scalar_type() == at::kFloat, op, ": lse must be float32");
  if (reduction == kReduceNone) {
    TORCH_CHECK_VALUE(grad_loss.dim() == 1 && grad_loss.size(0) == n, op, ": grad_loss must be [",
                      n, "] for reduction none, got ", grad_loss.sizes());
  } else {
    TORCH_CHECK_VALUE(grad_loss.dim() == 0, op,
                      ": grad_loss must be a scalar for reduction mean or sum, got ",
                      grad_loss.sizes());
  }
  TORCH_CHECK_TYPE(at::isFloatingType(grad_loss.scalar_type()), op,
                   ": grad_loss must be floating point, got ", grad_loss.scalar_type());
  for (const at::Tensor* t : {&grad_loss, &lse}) {
    TORCH_CHECK_VALUE(t->device() == logits.device(), op, ": tensors on ", t->device(), " and ",
                      logits.device());
  }
}

}  // namespace xent
}  // namespace pada
