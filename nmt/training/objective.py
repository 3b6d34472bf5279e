"""The training objective: label-smoothed cross-entropy per real target token, computed by the
model's fused output layer (nmt.model.output) under the training precision."""

from __future__ import annotations

import torch

from nmt import runtime
from nmt.data.batching import Batch
from nmt.model import Seq2Seq


class TrainingLoss(torch.nn.Module):
    """The model with its training objective, one module for DistributedDataParallel to wrap.

    forward(src (B, S), src_lengths (B,), tgt_in (B, T), tgt_out (B, T)) -> the label-smoothed
    cross-entropy summed over the real target tokens (scalar, fp32), under autocast for bf16/fp16."""

    def __init__(self, model: Seq2Seq, label_smoothing: float, precision: str = "fp32"):
        super().__init__()
        self.model, self.label_smoothing, self.precision = model, label_smoothing, precision

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor
    ) -> torch.Tensor:
        with runtime.autocast(src.device, self.precision):
            features = self.model.features(src, src_lengths, tgt_in)
            return self.model.output_loss(features, tgt_out, self.label_smoothing)


def training_loss(model: Seq2Seq, batch: Batch, label_smoothing: float, precision: str = "fp32") -> torch.Tensor:
    """The loss that training minimises: label-smoothed cross-entropy per real target token."""
    loss = TrainingLoss(model, label_smoothing, precision)
    return loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out) / batch.n_tgt_tokens
