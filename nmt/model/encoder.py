"""Encoders, and the bidirectional RNN encoder: h_j = [h→_j; h←_j].

Every encoder keeps one contract (`Encoder`), so the decoder and search never depend on which
one a model has: embedded source (B, S, E) and lengths (B,) in; states (B, S, D), zero at
padding, and a summary (B, D) for the decoder's initial state (or None) out. A new encoder
is one class with that `forward` and an `output_size`, and one entry in
`nmt.model.seq2seq.ENCODERS`.


One RNN reads the source left to right, another right to left, layer by layer. Batches are
padded on the right, and padding must never enter a sentence's states:

- the forward RNN runs over the padded batch as it is: padding comes after a sentence's last
  token, so it cannot change that sentence's states;
- the backward RNN reads each sentence reversed *within its own length* (x_n, ..., x_1, then the
  padding), so there too padding comes last; its outputs are put back in source order.

This gives exactly what `pack_padded_sequence` gives, with torch's fused whole-sequence RNN
kernels instead of its per-time-step packed path (slower on the CPU, and no bf16).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def reversal_index(src_lengths: torch.Tensor, S: int) -> torch.Tensor:
    """(B, S) long: position j holds n-1-j for j < n (the sentence's length), j after it."""
    j = torch.arange(S, device=src_lengths.device).unsqueeze(0)
    n = src_lengths.unsqueeze(1)
    return torch.where(j < n, n - 1 - j, j)


def gather_positions(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: (B, S, D), index: (B, S) -> out[b, j] = x[b, index[b, j]]."""
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.size(2)))


class Encoder(Protocol):
    """What every encoder is: an nn.Module with this forward and an output size D."""

    output_size: int

    def __call__(self, src_emb: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """src_emb (B, S, E), src_lengths (B,) long -> states (B, S, D), zero at padded
        positions, and a summary of the sentence (B, D) or None."""
        ...


class BiRNNEncoder(nn.Module):
    """One RNN per direction and layer (LSTM, GRU or vanilla RNN); D = 2H."""

    def __init__(self, rnn_type: str, emb_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        rnn = RNN_CLASSES[rnn_type]
        sizes = [emb_size] + [2 * hidden_size] * (num_layers - 1)  # input size of each layer
        self.forward_rnns = nn.ModuleList(rnn(n, hidden_size, batch_first=True) for n in sizes)
        self.backward_rnns = nn.ModuleList(rnn(n, hidden_size, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(dropout)  # between layers
        self.hidden_size, self.output_size = hidden_size, 2 * hidden_size

    def forward(self, src_emb: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src_emb: (B, S, E), src_lengths: (B,) long, each at least 1.

        Returns enc_out: (B, S, 2H), zero at padded positions, and final: (B, 2H), the top
        layer's last forward state (at each sentence's own end) and last backward state (at 1).
        """
        B, S, _ = src_emb.shape
        lengths = src_lengths.to(src_emb.device)
        reverse = reversal_index(lengths, S)
        real = (torch.arange(S, device=src_emb.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
        x = src_emb
        for layer, (fwd, bwd) in enumerate(zip(self.forward_rnns, self.backward_rnns)):
            if layer:
                x = self.dropout(x)
            ahead, _ = fwd(x)  # (B, S, H)
            back, _ = bwd(gather_positions(x, reverse))  # reversal is its own inverse
            x = torch.cat([ahead, gather_positions(back, reverse)], dim=2).masked_fill(~real, 0.0)
        H = self.hidden_size
        final = torch.cat([x[torch.arange(B, device=x.device), lengths - 1, :H], x[:, 0, H:]], dim=1)
        return x, final
