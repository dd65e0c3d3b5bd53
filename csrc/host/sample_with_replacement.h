// Host checks of pada::sample_with_replacement, shared by the CPU and CUDA
// entry points: the arguments before any kernel, and the status the build of
// the table reports (first bad weight, total) turned into the errors users see.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>

#include "dtype_name.h"

namespace pada {

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
