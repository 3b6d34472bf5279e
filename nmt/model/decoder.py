"""RNN decoder with attention and input feeding.

At output step t, with y_{t-1} the previous target token and ã_{t-1} the previous
attentional vector (zero at t = 1):

    s_t   = RNN([E y_{t-1}; ã_{t-1}], s_{t-1})       the decoder state (top layer)
    a_t   = softmax_j(e_tj),  c_t = sum_j a_tj h_j     attention with query s_t
    ã_t   = tanh(W_c [s_t; c_t])                      the attentional vector
    P(y_t | y_<t, x) = softmax(W_o ã_t)               (W_o lives in Seq2Seq)

The first layer's input projection is split in two: W_ih [E y; ã] = W_e E y + W_a ã. The
embedding half does not depend on the previous step, so in training it is computed for all
steps at once before the loop (`forward`); only W_a ã and the recurrent W_hh s remain per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nmt.model.attention import make_attention

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}


@dataclass
class Memory:
    """What the decoder reads from the encoder, computed once per batch.

    enc_out: (B, S, 2H); keys: (B, S, A) attention keys; src_mask: (B, S) bool, True = token.
    """

    enc_out: torch.Tensor
    keys: torch.Tensor
    src_mask: torch.Tensor

    def select(self, index: torch.Tensor) -> "Memory":
        """Rows `index` (for beam search: repeat, reorder or drop sentences)."""
        return Memory(self.enc_out[index], self.keys[index], self.src_mask[index])


@dataclass
class DecoderState:
    """h, c: one (B, Hd) tensor per layer (c is None unless LSTM); att: ã_{t-1}, (B, Hd)."""

    h: tuple[torch.Tensor, ...]
    c: tuple[torch.Tensor, ...] | None
    att: torch.Tensor

    def select(self, index: torch.Tensor) -> "DecoderState":
        """Rows `index` of every tensor."""
        pick = lambda ts: None if ts is None else tuple(t[index] for t in ts)  # noqa: E731
        return DecoderState(pick(self.h), pick(self.c), self.att[index])


class Decoder(nn.Module):
    def __init__(self, rnn_type: str, emb_size: int, hidden_size: int, num_layers: int, enc_size: int,
                 attention: str, attention_size: int, input_feeding: bool, bridge: bool, dropout: float):
        super().__init__()
        self.rnn_type, self.hidden_size, self.num_layers = rnn_type, hidden_size, num_layers
        gates = GATES[rnn_type] * hidden_size
        self.w_emb = nn.Linear(emb_size, gates)  # W_e and layer 1's bias: hoisted out of the loop
        self.w_feed = nn.Linear(hidden_size, gates, bias=False) if input_feeding else None  # W_a
        # recurrent weights of layer 1; a GRU's reset gate multiplies W_hn h + b_hn, so it keeps that bias
        self.w_hh = nn.Linear(hidden_size, gates, bias=rnn_type == "gru")
        self.upper = nn.ModuleList(CELLS[rnn_type](hidden_size, hidden_size) for _ in range(num_layers - 1))
        self.bridge = nn.Linear(enc_size, num_layers * hidden_size) if bridge else None
        self.attention = make_attention(attention, hidden_size, enc_size, attention_size)
        # W_c [s; c] = W_cs s + W_cc c: two products instead of a concatenation and one product
        self.w_cs = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w_cc = nn.Linear(enc_size, hidden_size, bias=False)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, enc_final: torch.Tensor) -> DecoderState:
        """s_0 = tanh(W_b [h_S(forward); h_1(backward)]) per layer (zeros without bridge); c_0 = 0."""
        B, H = enc_final.size(0), self.hidden_size
        zeros = enc_final.new_zeros(B, H)
        if self.bridge is None:
            h = (zeros,) * self.num_layers
        else:
            h = tuple(torch.tanh(self.bridge(enc_final)).split(H, dim=-1))
        c = (zeros,) * self.num_layers if self.rnn_type == "lstm" else None
        return DecoderState(h, c, zeros)

    def _first_layer(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
        """One step of layer 1 given its input part x = W_e E y + b (+ W_a ã): (B, G)."""
        if self.rnn_type == "lstm":
            i, f, g, o = torch.addmm(x, h, self.w_hh.weight.t()).chunk(4, dim=1)  # x + W_hh h in one product
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        hp = self.w_hh(h)
        if self.rnn_type == "gru":
            xr, xz, xn = x.chunk(3, dim=1)
            hr, hz, hn = hp.chunk(3, dim=1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            return (1 - z) * torch.tanh(xn + r * hn) + z * h, None
        return torch.tanh(x + hp), None

    def _step(self, x_emb: torch.Tensor, memory: Memory, state: DecoderState):
        """One output step from the precomputed embedding part x_emb: (B, G).

        Returns ã_t: (B, Hd), the new state, and the attention weights a_t: (B, S).
        """
        x = x_emb if self.w_feed is None else torch.addmm(x_emb, state.att, self.w_feed.weight.t())
        h, c = self._first_layer(x, state.h[0], None if state.c is None else state.c[0])
        hs, cs = [h], [c]
        for layer, cell in enumerate(self.upper, start=1):
            if state.c is None:
                h = cell(self.dropout(h), state.h[layer])
            else:
                h, c = cell(self.dropout(h), (state.h[layer], state.c[layer]))
            hs.append(h)
            cs.append(c)
        context, weights = self.attention(h, memory.keys, memory.enc_out, memory.src_mask)
        att = self.dropout(torch.tanh(torch.addmm(self.w_cs(h), context, self.w_cc.weight.t())))
        return att, DecoderState(tuple(hs), None if state.c is None else tuple(cs), att), weights

    def forward(self, tgt_emb: torch.Tensor, memory: Memory, state: DecoderState) -> torch.Tensor:
        """Teacher forcing: tgt_emb (B, T, E) -> attentional vectors ã_1..ã_T: (B, T, Hd)."""
        x_emb = self.w_emb(tgt_emb)  # (B, T, G), all steps in one matmul
        outputs = []
        for x_t in x_emb.unbind(1):  # (not x_emb[:, t]: its backward would zero a (B, T, G) tensor every step)
            att, state, _ = self._step(x_t, memory, state)
            outputs.append(att)
        return torch.stack(outputs, dim=1)

    def step(self, emb: torch.Tensor, memory: Memory, state: DecoderState):
        """Search: one step from the previous token's embedding (B, E). See `_step`."""
        return self._step(self.w_emb(emb), memory, state)
