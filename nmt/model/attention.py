"""Attention: how much the decoder state s_t looks at each encoder state h_j.

All variants split the work the same way: `keys(enc_out)` runs once per batch (it does not
depend on the decoder), `forward` runs once per decoder step. A step's queries may be K per
sentence (beam search's hypotheses, K consecutive rows each) over one row of keys and encoder
states per sentence: the memory is never copied K times.
"""

from __future__ import annotations

import torch
from torch import nn


def attend(energies: torch.Tensor, src_mask: torch.Tensor, enc_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked softmax over source positions and the weighted sum of encoder states.

    energies: (B, K, S), the energies e of K queries per sentence (beam search's K hypotheses share
    their sentence's encoder states; K = 1 elsewhere); src_mask: (B, S) bool (True = real
    token); enc_out: (B, S, 2H). Returns the contexts c_t = sum_j a_tj h_j: (B*K, 2H), and the
    weights a_t: (B*K, S), query by query.
    """
    weights = torch.softmax(energies.masked_fill(~src_mask.unsqueeze(1), float("-inf")), dim=-1)
    context = torch.bmm(weights, enc_out)  # (B, K, 2H): one product per sentence for its K queries
    return context.flatten(0, 1), weights.flatten(0, 1)


def per_sentence(query: torch.Tensor, sentences: int) -> torch.Tensor:
    """Queries (B*K, X), K consecutive rows per sentence -> (B, K, X)."""
    return query.view(sentences, query.size(0) // sentences, query.size(1))


class BahdanauAttention(nn.Module):
    """Additive attention: e_tj = v^T tanh(W s_t + U h_j).

    Computed as e'_tj = 2 v^T sigmoid(2 (W s_t + U h_j)), which is e_tj + sum(v), because
    tanh(x) = 2 sigmoid(2x) - 1. The softmax over j ignores a constant, so the weights are the
    same, and sigmoid is cheaper than tanh on the CPU (this runs over a (B, S, A) tensor at
    every decoder step: the largest elementwise cost of the model). `TextbookBahdanauAttention`
    computes the tanh form itself.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int):
        super().__init__()
        self.W = nn.Linear(query_size, attention_size, bias=False)
        self.U = nn.Linear(key_size, attention_size, bias=True)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def keys(self, enc_out: torch.Tensor) -> torch.Tensor:
        """2 U h_j for every source position: (B, S, 2H) -> (B, S, A)."""
        return 2 * self.U(enc_out)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, enc_out: torch.Tensor, src_mask: torch.Tensor):
        """query s_t: (B*K, Hd); keys: (B, S, A). Returns context (B*K, 2H), weights (B*K, S).

        In bf16/fp16 (autocast) the constant sum(v) would be added before the energies are
        rounded, and a large one would swamp their differences: there the tanh form is used."""
        w_s = per_sentence(self.W(query), keys.size(0)).unsqueeze(2)  # (B, K, 1, A)
        pre = torch.add(keys.unsqueeze(1), w_s, alpha=2)  # 2 (W s_t + U h_j): (B, K, S, A)
        if pre.dtype in (torch.float32, torch.float64):
            energies = 2 * self.v(torch.sigmoid(pre)).squeeze(3)  # e_tj + sum(v): (B, K, S)
        else:
            energies = self.v(torch.tanh(0.5 * pre)).squeeze(3)  # e_tj
        return attend(energies, src_mask, enc_out)


class TextbookBahdanauAttention(BahdanauAttention):
    """The same parameters and weights, scored as written: e_tj = v^T tanh(W s_t + U h_j)."""

    def keys(self, enc_out: torch.Tensor) -> torch.Tensor:
        """U h_j: (B, S, 2H) -> (B, S, A)."""
        return self.U(enc_out)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, enc_out: torch.Tensor, src_mask: torch.Tensor):
        w_s = per_sentence(self.W(query), keys.size(0)).unsqueeze(2)  # (B, K, 1, A)
        energies = self.v(torch.tanh(w_s + keys.unsqueeze(1))).squeeze(3)  # (B, K, S)
        return attend(energies, src_mask, enc_out)


class LuongAttention(nn.Module):
    """Multiplicative attention: e_tj = s_t . h_j (dot) or s_t . W h_j (general)."""

    def __init__(self, query_size: int, key_size: int, kind: str):
        super().__init__()
        self.W = nn.Linear(key_size, query_size, bias=False) if kind == "general" else None

    def keys(self, enc_out: torch.Tensor) -> torch.Tensor:
        """h_j or W h_j: (B, S, 2H) -> (B, S, Hd)."""
        return enc_out if self.W is None else self.W(enc_out)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, enc_out: torch.Tensor, src_mask: torch.Tensor):
        """query s_t: (B*K, Hd); keys: (B, S, Hd). Returns context (B*K, 2H), weights (B*K, S)."""
        energies = torch.bmm(keys, per_sentence(query, keys.size(0)).transpose(1, 2))  # (B, S, K)
        return attend(energies.transpose(1, 2), src_mask, enc_out)


def make_attention(kind: str, query_size: int, key_size: int, attention_size: int, textbook: bool = False) -> nn.Module:
    """`bahdanau`, `luong_dot` or `luong_general` (textbook: bahdanau in its tanh form)."""
    if kind == "bahdanau":
        cls = TextbookBahdanauAttention if textbook else BahdanauAttention
        return cls(query_size, key_size, attention_size)
    return LuongAttention(query_size, key_size, kind.removeprefix("luong_"))
