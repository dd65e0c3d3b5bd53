// Math of pada::importance_update_ shared by the CPU and CUDA kernels: one
// visit of a table entry. The first visit stores the value as it is; a later
// one keeps `decay` of the old score: s <- decay * s + (1 - decay) * v.
// decay = 1/2 is the PA&DA authors' rule, 0 keeps the last value.
#pragma once

#include "macros.h"

namespace pada {

PADA_HD float importance_visit(float score, bool visited, double value, double decay) {
  if (!visited) return static_cast<float>(value);
  return static_cast<float>(
      add_rn(mul_rn(decay, static_cast<double>(score)), mul_rn(1.0 - decay, value)));
}

PADA_HD bool finite_value(double v) { return v - v == 0.0; }  // false for NaN and +-inf

}  // namespace pada
