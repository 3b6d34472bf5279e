"""A trained Seq2Seq frozen for search: its own copy of the weights, and two products of them
made once.

Search multiplies a few rows at a time by the same matrices, step after step. Two products
made once from the weights make a step faster:

- W_o^T stored row by row (Hd x V, contiguous): BLAS reads it about 1.7x faster than the
  transposed view of W_o (V x Hd, 8 MB for the reference model) at 5 rows (a beam of 5), and
  equally fast from about 160 rows on. The CPU only (cuBLAS reads either layout; not measured
  there); an int8 output layer (nmt.translate.quantize) keeps its own packed weights.
- The first decoder layer's input projection W_e E y + b depends on the previous token alone,
  so search looks it up in a table of every target token's, (V, G), instead of multiplying by
  W_e at every step: one product over the vocabulary. For the fast decoders with a plain W_e
  (not an int8 one), up to INPUT_TABLE_BYTES (the reference model's: 8,000 x 1,024 floats,
  32 MB).

Both are made in the product's dtype (autocast's under bf16), once per dtype.

A product of a weight is right only while the weight is as it was when the product was made.
Nothing here checks a weight for change (version counters and data pointers do not tell:
PyTorch's fused Adam updates parameters in place without bumping their version, and once
made validation decode with the output layer of its first validation). A FrozenSeq2Seq
instead holds weights that nothing else can change: a copy of the model made when it is
built, as inference tensors (changing one in place outside inference mode is an error), in
eval mode for good. Training freezes its model at each validation; a Translator freezes the
model it is given (nmt.translate).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nmt.model.decoder import DecoderState, Memory
from nmt.model.seq2seq import Seq2Seq

#: the largest table of input projections a frozen model keeps (`FrozenSeq2Seq._input_table`)
INPUT_TABLE_BYTES = 64 * 2**20


class FrozenSeq2Seq(nn.Module):
    """A copy of `model`'s weights as they are now, searched with the products above (the
    `nmt.search.SearchModel` protocol: encode, step, select; and teacher-forced `forward` for
    forced scoring). `model` itself is not changed or kept."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        with torch.inference_mode():
            self.model = copy.deepcopy(model).requires_grad_(False)
        self.model.eval()
        self._products: dict[tuple[str, torch.dtype], torch.Tensor | None] = {}  # (name, dtype) -> product

    def train(self, mode: bool = True) -> FrozenSeq2Seq:
        """Always eval mode: search never wants dropout."""
        return super().train(False)

    def _apply(self, fn, *args, **kwargs):
        """.to(), .half(), .cuda() make new weights: the products are made again from them."""
        self._products.clear()
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self) -> dict:
        """A copy (copy.deepcopy, pickle) starts without products: whoever copies a model may
        change its layers (nmt.translate.quantize replaces them in its copy)."""
        return {**super().__getstate__(), "_products": {}}

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Memory, DecoderState]:
        """src: (B, S) long, src_lengths: (B,). The model's memory and initial state (Seq2Seq.encode)."""
        return self.model.encode(src, src_lengths)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V), as Seq2Seq.forward (forced scoring)."""
        return self.model(src, src_lengths, tgt_in)

    def step(self, prev: torch.Tensor, memory: Memory, state: DecoderState):
        """Seq2Seq.step with the products: prev (B,) -> log P(y_t | y_<t, x) (B, V) in fp32, the
        new state, attention weights (B, S)."""
        m, table = self.model, self._input_table()
        if table is None:
            att, state, weights = m.decoder.step(m.tgt_embed(prev), memory, state)
        else:
            att, state, weights = m.decoder.step_from_input(table[prev], memory, state)
        return F.log_softmax(self._output(att).float(), dim=-1), state, weights

    select = staticmethod(Seq2Seq.select)

    def _input_table(self) -> torch.Tensor | None:
        """W_e E + b for every target token, (V, G), or None where search computes it at each step."""
        m = self.model
        w_emb, E = m.decoder.w_emb, m.tgt_embed.weight
        if m.textbook or type(w_emb) is not nn.Linear:
            return None
        dtype = _product_dtype(E)
        if E.size(0) * w_emb.out_features * dtype.itemsize > INPUT_TABLE_BYTES:
            return None
        return self._product("input table", dtype, lambda: w_emb(E))

    def _output(self, att: torch.Tensor) -> torch.Tensor:
        """W_o ã + b for one search step: att (B, Hd) -> logits (B, V)."""
        out = self.model.output
        if type(out) is not nn.Linear or att.device.type != "cpu":
            return out(att)
        dtype = _product_dtype(out.weight)
        w_t = self._product("W_o^T", dtype, lambda: out.weight.t().to(dtype).contiguous())
        return att @ w_t if out.bias is None else torch.addmm(out.bias, att, w_t)

    def _product(self, name: str, dtype: torch.dtype, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The product `name` in `dtype`, made by `make` the first time it is asked for."""
        if (name, dtype) not in self._products:
            with torch.inference_mode():
                self._products[name, dtype] = make()
        return self._products[name, dtype]


def _product_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype a product with `weight` has here: autocast's where it is on, else the weight's."""
    device = weight.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype


def frozen(model: nn.Module) -> nn.Module:
    """A Seq2Seq frozen (FrozenSeq2Seq); anything else (a frozen model, an ensemble of frozen
    members, another SearchModel) as it is, in eval mode."""
    return FrozenSeq2Seq(model) if isinstance(model, Seq2Seq) else model.eval()
