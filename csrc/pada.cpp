// Schemas of every pada:: operator. Kernels register themselves next to
// their code (csrc/cpu/*.cpp, csrc/cuda/*.cu) with TORCH_LIBRARY_IMPL.
#include <torch/library.h>

TORCH_LIBRARY(pada, m) {
  // Draws num_samples indices i.i.d. with P(i) = weights[i] / sum(weights).
  // `seed` is a one-element int64 tensor on the weights' device: the draw is a
  // pure function of (weights, num_samples, seed), whatever the thread count.
  m.def("sample_with_replacement(Tensor weights, int num_samples, Tensor seed) -> Tensor");
  // Per-row cross-entropy of logits [N, C] (float32/16, bfloat16) with int64
  // targets [N], in one read of the logits: the float32 loss, the L2 norm of
  // its gradient w.r.t. the row, and the row's log-sum-exp for the backward.
  // Ignored rows get 0 in all three. Reduction is left to the caller.
  m.def(
      "cross_entropy_with_grad_norm_fwd(Tensor logits, Tensor target, int ignore_index, "
      "float label_smoothing) -> (Tensor loss_per_row, Tensor grad_norm, Tensor lse)");
  // Gradient w.r.t. logits of sum_i grad_loss_per_row[i] * loss_per_row[i].
  m.def(
      "cross_entropy_with_grad_norm_bwd(Tensor grad_loss_per_row, Tensor logits, Tensor target, "
      "Tensor lse, int ignore_index, float label_smoothing) -> Tensor");
}
