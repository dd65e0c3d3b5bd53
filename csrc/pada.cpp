// Schemas of every pada:: operator. Kernels register themselves next to
// their code (csrc/cpu/*.cpp, csrc/cuda/*.cu) with TORCH_LIBRARY_IMPL.
#include <torch/library.h>

TORCH_LIBRARY(pada, m) {
  // Draws num_samples indices i.i.d. with P(i) = weights[i] / sum(weights).
  // `seed` is a one-element int64 tensor on the weights' device: the draw is a
  // pure function of (weights, num_samples, seed), whatever the thread count.
  m.def("sample_with_replacement(Tensor weights, int num_samples, Tensor seed) -> Tensor");

  // Visits scores[index[i]] with values[i] for i in batch order: a first visit
  // (visited false) stores the value, a later one keeps `decay` of the score.
  // Non-finite values are skipped and counted in status[1]; on CUDA an
  // out-of-range index is skipped and counted in status[0] (the CPU raises).
  m.def(
      "importance_update_(Tensor(a!) scores, Tensor(b!) visited, Tensor(c!) status, "
      "Tensor index, Tensor values, float decay) -> ()");
}
