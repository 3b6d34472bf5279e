"""The output layer and its label-smoothed cross-entropy, fused, without the (N, V) logits.

For one target position with attentional vector ã (Hd), logits z = W_o ã + b (V of them),
reference token y and label smoothing ε, the loss is

    -(1 - ε) log p_y - (ε / V) sum_v log p_v  =  logsumexp(z) - (1 - ε) z_y - ε mean(z)

and its gradient with respect to z is g = softmax(z) - (1 - ε) onehot(y) - ε / V. (Label
smoothing, Szegedy et al. 2016, is not in the course's notes: ε = 0 is their plain
cross-entropy, -log p_y.) Positions
whose reference is PAD count for nothing. From g the output layer's gradients follow:
dã = g W_o,  dW_o = gᵀ ã,  db = sum of g over positions.

`output_loss` computes exactly what `F.cross_entropy(W_o ã + b, y, label_smoothing=ε,
reduction="sum", ignore_index=PAD)` computes, but a block of rows at a time: since g is known as
soon as z is, the gradients are computed in the forward pass and kept (they are small: N x Hd
and V x Hd), and each block's logits are dropped before the next block. The (N, V) logits, their
log-softmax and their gradient, each 130 MB for an 8k vocabulary and 4k tokens, never exist;
a block stays in the CPU's cache, and the process never asks the kernel for fresh pages of
that size (page faults on fresh memory are expensive: see docs/results.md, training and decoding speed).
`plain_output_loss` is the textbook computation, kept beside it (`model.textbook: true`).
The training objective built on it is nmt.training.objective.

Under autocast (training.precision: bf16) the three products run in bf16; the softmax and the
loss are always computed in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nmt.data.tokenizer import PAD

BLOCK_ELEMENTS = 2**21  # logits per block: 8 MB in fp32


def _block_loss(z: torch.Tensor, target: torch.Tensor, real: torch.Tensor, smoothing: float) -> torch.Tensor:
    """z (n, V) logits (fp32 or wider), target (n,), real (n,) bool -> summed loss of the real rows (scalar).

    Leaves z - logsumexp(z) = log softmax(z) in z."""
    z.sub_(torch.logsumexp(z, dim=1, keepdim=True))
    rows = -(1 - smoothing) * z.gather(1, target.unsqueeze(1)).squeeze(1)
    if smoothing:
        rows = rows - smoothing * z.mean(dim=1)
    return (rows * real).sum()


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class _OutputLayerLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, att, weight, bias, target, smoothing):
        dtype = _compute_dtype(att)
        with torch.autocast(att.device.type, enabled=False):
            a, w, b = att.to(dtype), weight.to(dtype), bias.to(dtype)
            N, V = a.size(0), w.size(0)
            real = target != PAD
            acc = torch.promote_types(dtype, torch.float32)  # softmax, loss and sums: fp32 at least
            grad_att = torch.empty_like(a)
            grad_w = torch.zeros(w.shape, dtype=acc, device=w.device)
            grad_b = torch.zeros(V, dtype=acc, device=w.device)
            loss = torch.zeros((), dtype=acc, device=a.device)
            step = max(1, BLOCK_ELEMENTS // V)
            for i in range(0, N, step):
                rows, y, keep = a[i : i + step], target[i : i + step], real[i : i + step]
                z = torch.addmm(b, rows, w.t()).to(acc)  # (n, V) logits
                loss += _block_loss(z, y, keep, smoothing)
                g = z.exp_()  # softmax, in place
                if smoothing:
                    g.sub_(smoothing / V)
                g.scatter_add_(1, y.unsqueeze(1), torch.full_like(g[:, :1], smoothing - 1))
                g.mul_(keep.unsqueeze(1))  # (n, V): d loss / d z
                grad_b += g.sum(dim=0)
                g = g.to(dtype)
                torch.mm(g, w, out=grad_att[i : i + step])
                if dtype == acc:
                    grad_w.addmm_(g.t(), rows)
                else:
                    grad_w += torch.mm(g.t(), rows).to(acc)
        ctx.save_for_backward(grad_att, grad_w, grad_b)
        ctx.dtypes = att.dtype, weight.dtype, bias.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_att, grad_w, grad_b = ctx.saved_tensors
        att_dtype, w_dtype, b_dtype = ctx.dtypes
        return (
            (grad_att * grad_loss).to(att_dtype),
            (grad_w * grad_loss).to(w_dtype),
            (grad_b * grad_loss).to(b_dtype),
            None,
            None,
        )


def output_loss(
    att: torch.Tensor, output: torch.nn.Linear, target: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Summed label-smoothed cross-entropy of softmax(output(att)) over real (non-PAD) targets.

    att: (B, T, Hd) attentional vectors; output: the layer W_o, b (V x Hd); target: (B, T).
    Returns a scalar (fp32, or fp64 for fp64 inputs). When gradients are needed, they are computed here, in the forward
    pass (see the module's docstring).
    """
    att, target = att.reshape(-1, att.size(-1)), target.reshape(-1)
    if torch.is_grad_enabled() and (att.requires_grad or output.weight.requires_grad):
        return _OutputLayerLoss.apply(att, output.weight, output.bias, target, label_smoothing)
    dtype = _compute_dtype(att)
    with torch.autocast(att.device.type, enabled=False):
        a, w, b = att.to(dtype), output.weight.to(dtype), output.bias.to(dtype)
        acc, step = torch.promote_types(dtype, torch.float32), max(1, BLOCK_ELEMENTS // w.size(0))
        return sum(
            (
                _block_loss(
                    torch.addmm(b, a[i : i + step], w.t()).to(acc),
                    target[i : i + step],
                    target[i : i + step] != PAD,
                    label_smoothing,
                )
                for i in range(0, a.size(0), step)
            ),
            torch.zeros((), dtype=acc, device=a.device),
        )


def plain_output_loss(
    att: torch.Tensor, output: torch.nn.Linear, target: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """What `output_loss` computes, as PyTorch computes it: the (B, T, V) logits W_o ã + b, then
    F.cross_entropy (log-softmax and loss in fp32). att: (B, T, Hd), target: (B, T). Scalar."""
    logits = output(att).float()
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        target.reshape(-1),
        ignore_index=PAD,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
