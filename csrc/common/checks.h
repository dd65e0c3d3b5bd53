// Argument checks shared by the CPU and CUDA entry points of each op.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <string>

namespace pada {

// A dtype as Python prints it ("torch.float32"), so that the compiled kernels'
// messages are those of the Python checks of the other backends.
inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "torch.float32";
    case at::kDouble:
      return "torch.float64";
    case at::kHalf:
      return "torch.float16";
    case at::kBFloat16:
      return "torch.bfloat16";
    case at::kLong:
      return "torch.int64";
    case at::kInt:
      return "torch.int32";
    case at::kShort:
      return "torch.int16";
    case at::kChar:
      return "torch.int8";
    case at::kByte:
      return "torch.uint8";
    case at::kBool:
      return "torch.bool";
    case at::kComplexFloat:
      return "torch.complex64";
    case at::kComplexDouble:
      return "torch.complex128";
    default:
      return std::string("torch.") + c10::toString(t);
  }
}

// The rules of pada_ext/_sample_with_replacement_checks.py (the other
// backends' copy): change both together.
inline void check_sample_with_replacement_args(const at::Tensor& weights, int64_t num_samples,
                                               const at::Tensor& seed) {
  TORCH_CHECK_VALUE(weights.dim() == 1, "sample_with_replacement: weights must be 1-D, got shape ",
                    weights.sizes());
  TORCH_CHECK_VALUE(weights.numel() > 0, "sample_with_replacement: weights is empty");
  TORCH_CHECK_TYPE(weights.scalar_type() == at::kFloat || weights.scalar_type() == at::kDouble,
                   "sample_with_replacement: weights must be float32 or float64, got ",
                   dtype_name(weights.scalar_type()));
  TORCH_CHECK_VALUE(num_samples >= 0, "sample_with_replacement: num_samples must be >= 0, got ",
                    num_samples);
  TORCH_CHECK_VALUE(seed.numel() == 1 && seed.scalar_type() == at::kLong,
                    "sample_with_replacement: seed must be a one-element int64 tensor");
  TORCH_CHECK(seed.device() == weights.device(),
              "sample_with_replacement: seed must be on the weights' device (", weights.device(),
              "), got ", seed.device());
}

// Turns the status the kernels report into the errors users see.
inline void check_sample_with_replacement_status(const at::Tensor& weights, int64_t first_bad,
                                                 double total) {
  if (first_bad < weights.numel()) {
    const double v = weights.select(0, first_bad).item<double>();
    const char* what = std::isnan(v) ? "NaN" : (std::isinf(v) ? "infinite" : "negative");
    TORCH_CHECK_VALUE(false, "sample_with_replacement: weights[", first_bad, "] is ", what, " (", v,
                      "); weights must be finite and >= 0");
  }
  TORCH_CHECK_VALUE(total > 0.0, "sample_with_replacement: all weights are zero");
  TORCH_CHECK_VALUE(std::isfinite(total),
                    "sample_with_replacement: the sum of the weights overflows float64; "
                    "divide them by their maximum first");
}

}  // namespace pada

namespace pada {

inline void check_importance_update_args(const at::Tensor& scores, const at::Tensor& visited,
                                         const at::Tensor& status, const at::Tensor& index,
                                         const at::Tensor& values, double decay) {
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.scalar_type() == at::kFloat,
                    "importance_update_: scores must be a 1-D float32 tensor");
  TORCH_CHECK_VALUE(
      visited.dim() == 1 && visited.scalar_type() == at::kBool && visited.numel() == scores.numel(),
      "importance_update_: visited must be a bool tensor shaped like scores");
  TORCH_CHECK_VALUE(status.numel() == 2 && status.scalar_type() == at::kLong,
                    "importance_update_: status must be a two-element int64 tensor");
  TORCH_CHECK_VALUE(scores.is_contiguous() && visited.is_contiguous() && status.is_contiguous(),
                    "importance_update_: scores, visited and status must be contiguous");
  TORCH_CHECK_VALUE(index.dim() == 1 && index.scalar_type() == at::kLong,
                    "importance_update_: index must be a 1-D int64 tensor");
  TORCH_CHECK_VALUE(values.dim() == 1 && values.numel() == index.numel(),
                    "importance_update_: values must be 1-D with one value per index, got ",
                    values.numel(), " values for ", index.numel(), " indices");
  TORCH_CHECK_TYPE(at::isFloatingType(values.scalar_type()),
                   "importance_update_: values must be floating point, got ", values.scalar_type());
  TORCH_CHECK_VALUE(decay >= 0.0 && decay <= 1.0,
                    "importance_update_: decay must be in [0, 1], got ", decay);
  for (const at::Tensor* t : {&visited, &status, &index, &values})
    TORCH_CHECK(t->device() == scores.device(),
                "importance_update_: all tensors must be on the scores' device (", scores.device(),
                "), got ", t->device());
}

}  // namespace pada
