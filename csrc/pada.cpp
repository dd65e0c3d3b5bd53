// Schemas of every pada:: operator. Kernels register themselves next to
// their code (csrc/cpu/*.cpp, csrc/cuda/*.cu) with TORCH_LIBRARY_IMPL.
#include <torch/library.h>

#include <type_traits>
#include <vector>

namespace {

// cudagraph_unsafe where this torch has the tag (newer torch only): detected,
// not version-guessed, so any torch >= 2.4 builds.
template <typename Tag, typename = void>
struct HasCudagraphUnsafe : std::false_type {};
template <typename Tag>
struct HasCudagraphUnsafe<Tag, std::void_t<decltype(Tag::cudagraph_unsafe)>> : std::true_type {};

template <typename Tag = at::Tag>
std::vector<at::Tag> cudagraph_unsafe_tags() {
  if constexpr (HasCudagraphUnsafe<Tag>::value)
    return {Tag::cudagraph_unsafe};
  else
    return {};
}

}  // namespace

TORCH_LIBRARY(pada, m) {
  // Draws num_samples indices i.i.d. with P(i) = weights[i] / sum(weights).
  // `seed` is a one-element int64 tensor on the weights' device: the draw is a
  // pure function of (weights, num_samples, seed), whatever the thread count.
  // It validates the weights on the host (a sync on CUDA): cudagraph_unsafe.
  const std::vector<at::Tag> sync_tags = cudagraph_unsafe_tags();  // an lvalue: not a kernel
  m.def("sample_with_replacement(Tensor weights, int num_samples, Tensor seed) -> Tensor",
        sync_tags);

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
  // One PathSampler.record, with no host sync: the step score of every cell
  // (row, op) of the score tables from the gradients of the path's ops, folded
  // into the tables in place. grads[i] (None: no gradient, as zeros) belongs to
  // cell cell_index[i] (a CPU int64 tensor, read on the host); weights (shaped
  // like scores) is 1 / the decisions that chose the cell's op (1 unshared)
  // on the path, 0 off it (those cells are left alone). Steps: norm 0 (l2)
  // sqrt(weight * sum of squares of the cell's gradients), 1 (paper) weight *
  // the sum of their L2 norms (in float64; NaN everywhere if any norm is not
  // finite: an overflowed step), divided by grad_scale (AMP) if given. Rules: 0 (paper) s <- (s +
  // step) / 2 where 0 < step < inf; 1 (ema) a first step is stored, later ones s <- lerp(s, step, 1
  // - decay); 2 (mean) count += 1, s <- s + (step - s) / count; ema and mean take finite steps.
  // visited marks the cells a step went into; a non-finite step of a cell on
  // the path is left out and counted in skipped. csrc/common/path_record.h has
  // the rounding.
  m.def(
      "path_record_(Tensor?[] grads, Tensor cell_index, Tensor weights, Tensor(a!) scores, "
      "Tensor(b!) visited, Tensor(c!) count, Tensor(d!) skipped, int norm, int rule, float decay, "
      "Tensor? grad_scale=None) -> ()");
  // Cross-entropy of logits [N, C] (float32/16, bfloat16) with int64 targets
  // [N], in one read of the logits: the loss reduced as torch's (reduction:
  // 0 none, 1 mean, 2 sum, as at::Reduction) in the logits' dtype, the L2 norm
  // of each row's gradient (float32 [N]) and, for the backward, each row's max
  // and log-sum-exp of the row shifted by it (lse: float32 [N, 2], apart so
  // that the backward stays exact at any offset of the logits). Ignored rows
  // get 0 norm and lse. Differentiable w.r.t. logits (a C++ autograd kernel,
  // csrc/autograd/); under autocast 16-bit logits run in float32, as torch's.
  m.def(
      "cross_entropy_with_grad_norm_fwd(Tensor logits, Tensor target, int reduction, "
      "int ignore_index, float label_smoothing) -> (Tensor loss, Tensor grad_norm, Tensor lse)");
  // Gradient w.r.t. logits of the forward's loss, given the gradient of that
  // loss (a scalar for mean and sum, [N] for none).
  m.def(
      "cross_entropy_with_grad_norm_bwd(Tensor grad_loss, Tensor logits, Tensor target, "
      "Tensor lse, int reduction, int ignore_index, float label_smoothing) -> Tensor");
}
