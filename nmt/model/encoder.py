"""Bidirectional RNN encoder."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class Encoder(nn.Module):
    """Reads the source both ways: h_j = [h_j(forward); h_j(backward)].

    Sequences are packed, so padding never enters the recurrence.
    """

    def __init__(self, rnn_type: str, emb_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.rnn = RNN_CLASSES[rnn_type](
            emb_size, hidden_size, num_layers, batch_first=True, bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.output_size = 2 * hidden_size

    def forward(self, src_emb: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src_emb: (B, S, E), src_lengths: (B,) long on CPU.

        Returns enc_out: (B, S, 2H), zero at padded positions, and final: (B, 2H), the last
        layer's final forward and backward hidden states.
        """
        packed = pack_padded_sequence(src_emb, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        # oneDNN's CPU LSTM has no bf16 kernel for packed input (torch 2.13): the encoder's
        # recurrence stays in fp32 under bf16 autocast
        with torch.autocast(src_emb.device.type, enabled=src_emb.device.type != "cpu"):
            out, hidden = self.rnn(packed)
        enc_out, _ = pad_packed_sequence(out, batch_first=True, total_length=src_emb.size(1))
        h_n = hidden[0] if isinstance(hidden, tuple) else hidden  # (layers * 2, B, H)
        final = torch.cat([h_n[-2], h_n[-1]], dim=-1)
        return enc_out, final
