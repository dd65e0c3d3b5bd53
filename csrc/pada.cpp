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

  // Per-group L2 norms (or, with squared, sums of squares) of many tensors in
  // one pass, as float32[num_groups]; tensors[i] belongs to group
  // group_index[i]. group_index is a CPU int64 tensor: it is read on the host
  // to build the chunk table, so CUDA inputs need no host sync.
  m.def(
      "grouped_grad_norm(Tensor[] tensors, Tensor group_index, int num_groups, "
      "bool squared=False) -> Tensor");
  // table[g] += sum of squares of the tensors of group g (num_groups = table.numel()).
  m.def(
      "grouped_sq_norm_accumulate_(Tensor[] tensors, Tensor group_index, Tensor(a!) table) -> ()");
  // The same over segments [offsets[s], offsets[s + 1]) of one flat buffer.
  m.def(
      "segment_grad_norm(Tensor flat, Tensor offsets, Tensor group_of_segment, int num_groups, "
      "bool squared=False) -> Tensor");
}
