// Host checks of pada::importance_update_, shared by the CPU and CUDA entry points.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "../common/importance_update.h"

namespace pada {

inline void check_importance_update_args(const at::Tensor& scores, const at::Tensor& visited,
                                         const at::Tensor& status, const at::Tensor& index,
                                         const at::Tensor& values, double decay) {
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.scalar_type() == at::kFloat,
                    "importance_update_: scores must be a 1-D float32 tensor");
  TORCH_CHECK_VALUE(
      visited.dim() == 1 && visited.scalar_type() == at::kBool && visited.numel() == scores.numel(),
      "importance_update_: visited must be a bool tensor shaped like scores");
  TORCH_CHECK_VALUE(status.numel() == kStatusSize && status.scalar_type() == at::kLong,
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
