// Autograd of pada::cross_entropy_with_grad_norm_fwd, in C++ for every device:
// the forward kernel already computed each row's log-sum-exp, so the backward
// is one call of cross_entropy_with_grad_norm_bwd. Kept out of Python because
// a Python autograd.Function costs more than the whole op on small batches.
#include "../host/cross_entropy_with_grad_norm.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>

namespace pada {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_op(const at::Tensor& logits,
                                                      const at::Tensor& target, int64_t reduction,
                                                      int64_t ignore_index,
                                                      double label_smoothing) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("pada::cross_entropy_with_grad_norm_fwd", "")
                             .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&, int64_t, int64_t, double)>();
  return op.call(logits, target, reduction, ignore_index, label_smoothing);
}

at::Tensor bwd_op(const at::Tensor& grad_loss, const at::Tensor& logits, const at::Tensor& target,
                  const at::Tensor& lse, int64_t reduction, int64_t ignore_index,
                  double label_smoothing) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("pada::cross_entropy_with_grad_norm_bwd", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, int64_t, int64_t, double)>();
  return op.call(grad_loss, logits, target, lse, reduction, ignore_index, label_smoothing);
}

class CrossEntropyWithGradNormFunction
    : public torch::autograd::Function<CrossEntropyWithGradNormFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits,
                               const at::Tensor& target, int64_t reduction, int64_t ignore_index,
                               double label_smoothing) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, grad_norm, lse] = fwd_op(logits, target, reduction, ignore_index, label_smoothing);
    ctx->save_for_backward({logits, target, lse});
    ctx->saved_data["reduction"] = reduction;
    ctx->saved_data["ignore_index"] = ignore_index;
    ctx->saved_data["label_smoothing"] = label_smoothing;
    ctx->mark_non_differentiable({grad_norm, lse});
    return {loss, grad_norm, lse};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const int64_t reduction = ctx->saved_data["reduction"].toInt();
    const int64_t ignore_index = ctx->saved_data["ignore_index"].toInt();
    const double label_smoothing = ctx->saved_data["label_smoothing"].toDouble();
    at::Tensor grad_logits;
    if (!grads[0].defined()) {
      // no gradient flows into the loss
    } else if (torch::autograd::GradMode::is_enabled()) {
      // create_graph=True: the gradient must itself be differentiable.
      grad_logits = differentiable_grad(grads[0], saved[0], saved[1], reduction, ignore_index,
                                        label_smoothing);
    } else {
      grad_logits =
          bwd_op(grads[0], saved[0], saved[1], saved[2], reduction, ignore_index, label_smoothing);
    }
    return {grad_logits, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }

 private:
  // The backward kernel's result, (softmax(z) - t) * g row by row, in ATen
  // ops that autograd can differentiate again (double backward); slower, and
  // only used under create_graph=True.
  static at::Tensor differentiable_grad(const at::Tensor& grad_loss, const at::Tensor& logits,
                                        const at::Tensor& target, int64_t reduction,
                                        int64_t ignore_index, double label_smoothing) {
    const int64_t C = logits.size(1);
    const at::Tensor keep = target.ne(ignore_index).unsqueeze(1);
    const at::Tensor safe = at::where(keep.squeeze(1), target, at::zeros_like(target));
    const at::Tensor t =
        at::one_hot(safe, C).to(at::kFloat) * (1.0 - label_smoothing) + label_smoothing / C;
    at::Tensor g = grad_loss.to(at::kFloat);
    if (reduction == xent::kReduceMean) g = g.div(keep.sum());
    if (reduction == xent::kReduceNone) g = g.unsqueeze(1);
    const at::Tensor d = (at::softmax(logits, 1, at::kFloat) - t).mul(g);
    return at::where(keep, d, at::zeros_like(d)).to(logits.scalar_type());
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_autograd(const at::Tensor& logits,
                                                            const at::Tensor& target,
                                                            int64_t reduction, int64_t ignore_index,
                                                            double label_smoothing) {
  const auto out = CrossEntropyWithGradNormFunction::apply(logits, target, reduction, ignore_index,
                                                           label_smoothing);
  return {out[0], out[1], out[2]};
}

// Under autocast, F.cross_entropy runs in float32 (it is on autocast's float32
// list: 16-bit logits are cast up, float64 is left alone), so this op does the
// same: a float16 sum over a large batch would otherwise overflow, and a
// bfloat16 loss lose its third digit. The cast is recorded by autograd, which
// runs below autocast, so the gradient comes back in the logits' dtype.
std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_autocast(const at::Tensor& logits,
                                                            const at::Tensor& target,
                                                            int64_t reduction, int64_t ignore_index,
                                                            double label_smoothing) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(
      c10::DispatchKeySet({c10::DispatchKey::AutocastCPU, c10::DispatchKey::AutocastCUDA}));
  const auto dt = logits.scalar_type();
  const bool up = dt == at::kHalf || dt == at::kBFloat16;
  return fwd_op(up ? logits.to(at::kFloat) : logits, target, reduction, ignore_index,
                label_smoothing);
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, Autograd, m) { m.impl("cross_entropy_with_grad_norm_fwd", &fwd_autograd); }
TORCH_LIBRARY_IMPL(pada, AutocastCPU, m) {
  m.impl("cross_entropy_with_grad_norm_fwd", &fwd_autocast);
}
TORCH_LIBRARY_IMPL(pada, AutocastCUDA, m) {
  m.impl("cross_entropy_with_grad_norm_fwd", &fwd_autocast);
}

}  // namespace pada
