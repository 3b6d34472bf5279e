"""Label-smoothed cross-entropy over real target tokens, summed.

With z the logits of one target position (V of them), y the reference token and ε the
label smoothing, the loss of that position is

    -(1 - ε) log p_y - (ε / V) sum_v log p_v  =  logsumexp(z) - (1 - ε) z_y - ε mean(z)

and its gradient with respect to z is softmax(z) - (1 - ε) onehot(y) - ε / V. Positions whose
reference is PAD count for nothing.

`token_loss` computes exactly what `F.cross_entropy(..., label_smoothing=ε, reduction="sum",
ignore_index=PAD)` computes, but with the (N, V) logits as the only (N, V) tensor: PyTorch's
version builds log_softmax, its gradient and a zero-filled one-hot, each (N, V); with an 8k
vocabulary and 4k tokens a batch that is 130 MB a tensor, and each pass over one costs about as
much as a tenth of the output layer's product. In training, the forward pass overwrites the
logits with their log-softmax and the backward pass turns that into the gradient, in place:
the logits are consumed (the output layer's backward does not need them, and the training step
never reads them again).
"""

from __future__ import annotations

import torch

from nmt.data.tokenizer import PAD


def _summed_loss(log_probs: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """log_probs (N, V), target (N,) -> the summed loss over non-PAD targets, a scalar."""
    rows = -(1 - smoothing) * log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
    if smoothing:
        rows = rows - smoothing * log_probs.mean(dim=-1)
    return (rows * (target != PAD)).sum()


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
        log_probs = torch.log_softmax(logits, dim=-1, out=logits)  # (N, V), in the logits' storage
        ctx.smoothing = smoothing
        ctx.save_for_backward(log_probs, target)
        return _summed_loss(log_probs, target, smoothing)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        log_probs, target = ctx.saved_tensors
        s = ctx.smoothing
        g = log_probs.exp_()  # softmax, in place: (N, V)
        if s:
            g.sub_(s / g.size(1))
        g.scatter_add_(1, target.unsqueeze(1), torch.full_like(g[:, 0], s - 1).unsqueeze(1))
        g.mul_((grad * (target != PAD)).unsqueeze(1))
        return g, None, None


def token_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed cross-entropy over real (non-PAD) target tokens. logits (B, T, V), target (B, T).

    When the logits need a gradient they are consumed: overwritten by the log-softmax now and
    by their gradient in the backward pass (see the module's docstring).
    """
    flat, target = logits.reshape(-1, logits.size(-1)), target.reshape(-1)
    if not flat.requires_grad:  # evaluation: nothing to keep for a backward pass
        return _summed_loss(torch.log_softmax(flat, dim=-1), target, label_smoothing)
    if logits.is_leaf:  # overwritten in place below: never a tensor the caller owns
        flat = flat.clone()
    return _SmoothedCrossEntropy.apply(flat, target, label_smoothing)
