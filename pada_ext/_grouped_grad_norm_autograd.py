"""The gradient of pada::grouped_grad_norm, registered here for every kernel of
the op (compiled or Triton).

out[g] = ||(tensors of group g)||, so d out[g] / d t = t / out[g] for each
tensor t of group g: 0 where out[g] is 0, as torch.linalg.vector_norm's
gradient; squared: 2 t. Each gradient has its tensor's dtype (computed in
float32). The backward copies the (CPU) group indices to the device without
waiting for it.
"""

import torch


def setup_context(ctx, inputs, output):
    tensors, group_index, _num_groups, squared = inputs
    ctx.squared = squared
    ctx.save_for_backward(group_index, output, *tensors)


def backward(ctx, grad):
    group_index, out, *tensors = ctx.saved_tensors
    if ctx.squared:
        scale = 2 * grad
    else:
        scale = torch.where(out == 0, torch.zeros_like(grad), grad / out)
    per_tensor = scale.index_select(0, group_index.to(scale.device, non_blocking=True))
    needs = ctx.needs_input_grad[0]
    grads = [
        (t.float() * per_tensor[i]).to(t.dtype) if need else None
        for i, (t, need) in enumerate(zip(tensors, needs))
    ]
    # The dispatcher drops arguments left at their default (squared=False):
    # one None per argument actually passed after the tensors.
    return (grads, *[None] * (len(ctx.needs_input_grad) - 1))


torch.library.register_autograd("pada::grouped_grad_norm", backward, setup_context=setup_context)
