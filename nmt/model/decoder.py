"""RNN decoders with attention, in two arrangements (`model.decoder`).

`luong` (Luong et al. 2015 with an additive score; what Joey NMT and OpenNMT call "Bahdanau"):
at output step t, with y_{t-1} the previous target token and ã_{t-1} the previous attentional
vector (zero at t = 1),

    s_t   = RNN([E y_{t-1}; ã_{t-1}], s_{t-1})       the decoder state (top layer); input feeding
    a_t   = softmax_j(e_tj),  c_t = sum_j a_tj h_j     attention with query s_t
    ã_t   = tanh(W_c [s_t; c_t])                      the attentional vector
    P(y_t | y_<t, x) = softmax(W_o ã_t)               (W_o lives in Seq2Seq)

`bahdanau` (Bahdanau et al. 2014 and the course: attention before the RNN step):

    a_t   = softmax_j(e_tj),  c_t = sum_j a_tj h_j     attention with query s_{t-1} (s_0: the bridge)
    s_t   = RNN([E y_{t-1}; c_t], s_{t-1})            the context goes into the RNN
    P(y_t | y_<t, x) = softmax(W_o s_t)

The first layer's input projection is split in two: W_ih [E y; x] = W_e E y + W_x x. The
embedding half does not depend on the previous step, so in training it is computed for all
steps at once before the loop (`forward`); only W_x x and the recurrent W_hh s remain per step.
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

    def select(self, index: torch.Tensor) -> Memory:
        """Rows `index` (for beam search: repeat, reorder or drop sentences)."""
        return Memory(self.enc_out[index], self.keys[index], self.src_mask[index])


@dataclass
class DecoderState:
    """h, c: one (B, Hd) tensor per layer (c is None unless LSTM); att: ã_{t-1}, (B, Hd)."""

    h: tuple[torch.Tensor, ...]
    c: tuple[torch.Tensor, ...] | None
    att: torch.Tensor

    def select(self, index: torch.Tensor) -> DecoderState:
        """Rows `index` of every tensor."""
        pick = lambda ts: None if ts is None else tuple(t[index] for t in ts)  # noqa: E731
        return DecoderState(pick(self.h), pick(self.c), self.att[index])


def plus_product(x: torch.Tensor, layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """x + W inputs for a bias-free linear layer W: x (B, G), inputs (B, D) -> (B, G). One fused
    addmm from W's weight, or, when W is no plain nn.Linear (an int8 layer, nmt.translate.quantize), the
    layer's own product added to x."""
    if type(layer) is nn.Linear:
        return torch.addmm(x, inputs, layer.weight.t())
    return x + layer(inputs)


class Decoder(nn.Module):
    """The `luong` decoder of the module docstring, computed the fast way (see `TextbookDecoder`
    for the same computation written as the equations read)."""

    textbook = False
    feeds_back = True  # the arrangement feeds ã_{t-1} back when model.input_feeding asks for it

    def __init__(
        self,
        rnn_type: str,
        emb_size: int,
        hidden_size: int,
        num_layers: int,
        enc_size: int,
        attention: str,
        attention_size: int,
        input_feeding: bool,
        bridge: bool,
        dropout: float,
    ):
        super().__init__()
        self.rnn_type, self.hidden_size, self.num_layers = rnn_type, hidden_size, num_layers
        gates = GATES[rnn_type] * hidden_size
        self.w_emb = nn.Linear(emb_size, gates)  # W_e and layer 1's bias: hoisted out of the loop
        feed = input_feeding and self.feeds_back
        self.w_feed = nn.Linear(hidden_size, gates, bias=False) if feed else None  # W_a
        # recurrent weights of layer 1; a GRU's reset gate multiplies W_hn h + b_hn, so it keeps that bias
        self.w_hh = nn.Linear(hidden_size, gates, bias=rnn_type == "gru")
        self.upper = nn.ModuleList(CELLS[rnn_type](hidden_size, hidden_size) for _ in range(num_layers - 1))
        self.bridge = nn.Linear(enc_size, num_layers * hidden_size) if bridge else None
        self.attention = make_attention(attention, hidden_size, enc_size, attention_size, self.textbook)
        self._make_output_side(hidden_size, enc_size, gates)
        self.dropout = nn.Dropout(dropout)

    def _make_output_side(self, hidden_size: int, enc_size: int, gates: int) -> None:
        """W_c [s; c] = W_cs s + W_cc c: two products instead of a concatenation and one product."""
        self.w_cs = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w_cc = nn.Linear(enc_size, hidden_size, bias=False)

    def memory(self, enc_out: torch.Tensor, src_mask: torch.Tensor) -> Memory:
        """What the decoder reads at every step: the encoder states (B, S, D), their attention
        keys (computed here, once per batch) and the mask (B, S)."""
        return Memory(enc_out, self.attention.keys(enc_out), src_mask)

    def init_state(self, summary: torch.Tensor | None, memory: Memory) -> DecoderState:
        """s_0 = tanh(W_b summary) per layer, the summary being the encoder's [h→_S; h←_1]
        (zeros without bridge, or when the encoder gives no summary); c_0 = 0, ã_0 = 0."""
        B, H = memory.enc_out.size(0), self.hidden_size
        zeros = memory.enc_out.new_zeros(B, H)
        if self.bridge is None or summary is None:
            h = (zeros,) * self.num_layers
        else:
            h = tuple(torch.tanh(self.bridge(summary)).split(H, dim=-1))
        c = (zeros,) * self.num_layers if self.rnn_type == "lstm" else None
        return DecoderState(h, c, zeros)

    def _first_layer(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
        """One step of layer 1 given its input part x = W_e E y + b (+ W_a ã): (B, G)."""
        if self.rnn_type == "lstm":
            i, f, g, o = plus_product(x, self.w_hh, h).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        hp = self.w_hh(h)
        if self.rnn_type == "gru":  # PyTorch's (and cuDNN's) GRU: n = tanh(W_n x + r * (U_n h + b_hn)); Cho
            # et al. and the course's notes apply the reset gate first, n = tanh(W_n x + U_n (r * h))
            xr, xz, xn = x.chunk(3, dim=1)
            hr, hz, hn = hp.chunk(3, dim=1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            return (1 - z) * torch.tanh(xn + r * hn) + z * h, None
        return torch.tanh(x + hp), None

    def _step(self, x_emb: torch.Tensor, memory: Memory, state: DecoderState):
        """One output step from the precomputed embedding part x_emb: (B, G).

        Returns ã_t: (B, Hd), the new state, and the attention weights a_t: (B, S).
        """
        x = x_emb if self.w_feed is None else plus_product(x_emb, self.w_feed, state.att)
        first = self._first_layer(x, state.h[0], None if state.c is None else state.c[0])
        return self._attend(first, memory, state)

    def _upper_layers(self, first: tuple, state: DecoderState) -> tuple[tuple, tuple | None]:
        """Layers 2..L (torch's cells) from layer 1's new (h, c): every layer's new h and c."""
        h, c = first
        hs, cs = [h], [c]
        for layer, cell in enumerate(self.upper, start=1):
            if state.c is None:
                h = cell(self.dropout(h), state.h[layer])
            else:
                h, c = cell(self.dropout(h), (state.h[layer], state.c[layer]))
            hs.append(h)
            cs.append(c)
        return tuple(hs), None if state.c is None else tuple(cs)

    def _attend(self, first: tuple, memory: Memory, state: DecoderState):
        """The rest of a step from layer 1's new (h, c): layers 2..L, attention with the top
        layer's s_t, and ã_t. Returns ã_t, the new state, the weights a_t (B, S)."""
        hs, cs = self._upper_layers(first, state)
        context, weights = self.attention(hs[-1], memory.keys, memory.enc_out, memory.src_mask)
        att = self.dropout(self._attentional(hs[-1], context))
        return att, DecoderState(hs, cs, att), weights

    def _attentional(self, s: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """ã_t = tanh(W_cs s_t + W_cc c_t): (B, Hd)."""
        return torch.tanh(plus_product(self.w_cs(s), self.w_cc, context))

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

    def step_from_input(self, x_emb: torch.Tensor, memory: Memory, state: DecoderState):
        """Search: one step from the previous token's input projection W_e E y + b, (B, G),
        looked up rather than computed (`FrozenSeq2Seq._input_table`). See `_step`."""
        return self._step(x_emb, memory, state)


class StepByStep:
    """What both textbook decoders share: teacher forcing one `step` at a time, and layer 1 as
    torch's own cell (nn.LSTMCell, GRUCell or RNNCell) over a concatenated input."""

    def forward(self, tgt_emb: torch.Tensor, memory: Memory, state: DecoderState) -> torch.Tensor:
        """Teacher forcing: tgt_emb (B, T, E) -> the output vectors (B, T, Hd), one `step` at a time."""
        outputs = []
        for e_t in tgt_emb.unbind(1):
            out, state, _ = self.step(e_t, memory, state)
            outputs.append(out)
        return torch.stack(outputs, dim=1)

    def _cell(self, x: torch.Tensor, w_ih: torch.Tensor, state: DecoderState) -> tuple:
        """Layer 1 as torch's cell with weight_ih = w_ih (G, x's width) on x: (B, width).
        Returns the new (h, c), c None unless LSTM."""
        cell = CELLS[self.rnn_type](x.size(1), self.hidden_size, device="meta")  # shape only: weights below
        b_hh = self.w_hh.bias if self.w_hh.bias is not None else torch.zeros_like(self.w_emb.bias)
        weights = {"weight_ih": w_ih, "bias_ih": self.w_emb.bias, "weight_hh": self.w_hh.weight, "bias_hh": b_hh}
        hx = state.h[0] if state.c is None else (state.h[0], state.c[0])
        out = torch.func.functional_call(cell, weights, (x, hx))
        return out if state.c is not None else (out, None)


class TextbookDecoder(StepByStep, Decoder):
    """The same decoder, with the same parameters, computed as the equations read: layer 1 is
    torch's own cell over the concatenated input [E y_{t-1}; ã_{t-1}] with W_ih = [W_e W_a],
    every step on its own; attention in its tanh form; W_c applied to [s_t; c_t]. Slower;
    `model.textbook: true` selects it, and the tests check that both decoders compute the same."""

    textbook = True

    def step(self, emb: torch.Tensor, memory: Memory, state: DecoderState):
        """One step from the previous token's embedding E y_{t-1}: (B, E). Returns ã_t (B, Hd),
        the new state and the attention weights (B, S)."""
        if self.w_feed is None:
            return self._attend(self._cell(emb, self.w_emb.weight, state), memory, state)
        x = torch.cat([emb, state.att], dim=1)  # [E y_{t-1}; ã_{t-1}]
        w_ih = torch.cat([self.w_emb.weight, self.w_feed.weight], dim=1)
        return self._attend(self._cell(x, w_ih, state), memory, state)

    def _attentional(self, s: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """ã_t = tanh(W_c [s_t; c_t])."""
        w_c = torch.cat([self.w_cs.weight, self.w_cc.weight], dim=1)
        return torch.tanh(torch.cat([s, context], dim=1) @ w_c.t())


class BahdanauDecoder(Decoder):
    """The `bahdanau` decoder of the module docstring (the course's): attention with the previous
    state s_{t-1}, the context c_t fed into the RNN, the prediction from s_t. Input feeding does
    not apply (the context takes its place); the fast form, `TextbookBahdanauDecoder` the plain one."""

    feeds_back = False  # model.input_feeding does not apply: c_t is what the RNN reads

    def _make_output_side(self, hidden_size: int, enc_size: int, gates: int) -> None:
        """W_ih [E y; c] = W_e E y + W_x c: the context's half of layer 1's input projection."""
        self.w_ctx = nn.Linear(enc_size, gates, bias=False)

    def _step(self, x_emb: torch.Tensor, memory: Memory, state: DecoderState):
        """One output step from the precomputed embedding part x_emb: (B, G).

        Returns the output vector s_t (dropout applied): (B, Hd), the new state, the weights a_t (B, S).
        """
        context, weights = self.attention(state.h[-1], memory.keys, memory.enc_out, memory.src_mask)
        x = plus_product(x_emb, self.w_ctx, context)
        first = self._first_layer(x, state.h[0], None if state.c is None else state.c[0])
        return self._after_first_layer(first, state, weights)

    def _after_first_layer(self, first: tuple, state: DecoderState, weights: torch.Tensor):
        """Layers 2..L, and the top layer's s_t as the output vector (kept in `att` too)."""
        hs, cs = self._upper_layers(first, state)
        out = self.dropout(hs[-1])
        return out, DecoderState(hs, cs, out), weights


class TextbookBahdanauDecoder(StepByStep, BahdanauDecoder):
    """The `bahdanau` decoder as its equations read: tanh attention with s_{t-1}, then torch's cell
    over [E y_{t-1}; c_t] with W_ih = [W_e W_x]. Same parameters and results as the fast form."""

    textbook = True

    def step(self, emb: torch.Tensor, memory: Memory, state: DecoderState):
        """One step from E y_{t-1}: (B, E). Returns s_t (B, Hd), the new state, the weights (B, S)."""
        context, weights = self.attention(state.h[-1], memory.keys, memory.enc_out, memory.src_mask)
        w_ih = torch.cat([self.w_emb.weight, self.w_ctx.weight], dim=1)
        first = self._cell(torch.cat([emb, context], dim=1), w_ih, state)  # [E y_{t-1}; c_t]
        return self._after_first_layer(first, state, weights)


# model.decoder and model.textbook -> the decoder class
DECODERS = {
    ("luong", False): Decoder,
    ("luong", True): TextbookDecoder,
    ("bahdanau", False): BahdanauDecoder,
    ("bahdanau", True): TextbookBahdanauDecoder,
}
