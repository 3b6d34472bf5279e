"""The whole model: embeddings, encoder, decoder with attention, output layer; `build_model`."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nmt.config import ModelConfig
from nmt.data.tokenizer import PAD
from nmt.loss import output_loss, plain_output_loss
from nmt.model.decoder import DECODERS, Decoder, DecoderState, Memory
from nmt.model.encoder import BiRNNEncoder, Encoder

#: the largest table of input projections search keeps per model (`Seq2Seq._input_table`)
INPUT_TABLE_BYTES = 64 * 2**20

# model.encoder -> the encoder it names (see the contract in nmt.model.encoder)
ENCODERS: dict[str, Callable[[ModelConfig], Encoder]] = {
    "birnn": lambda m: BiRNNEncoder(m.rnn_type, m.emb_size, m.enc_hidden_size, m.enc_layers, m.dropout),
}


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention.

    Training calls `features` and `output_loss`; search calls `encode`, then `step` once per
    output token, and `select` to keep, repeat or reorder rows (the `nmt.search.SearchModel`
    protocol)."""

    def __init__(
        self,
        src_embed: nn.Embedding,
        tgt_embed: nn.Embedding,
        encoder: Encoder,
        decoder: Decoder,
        output: nn.Linear,
        dropout: float,
        textbook: bool = False,
    ):
        super().__init__()
        self.src_embed, self.tgt_embed = src_embed, tgt_embed
        self.encoder, self.decoder = encoder, decoder
        self.output = output  # W_o
        self.dropout = nn.Dropout(dropout)  # on the embeddings
        self.textbook = textbook
        self._w_o_t: tuple = (None, None)  # search's copy of W_o^T and what it was made from (`_search_output`)
        self._inputs: tuple = (None, None)  # search's table of W_e E y + b and what it was made from (`_input_table`)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Memory, DecoderState]:
        """src: (B, S) long, src_lengths: (B,). Returns the decoder's memory and initial state."""
        states, summary = self.encoder(self.dropout(self.src_embed(src)), src_lengths)
        src_mask = torch.arange(src.size(1), device=src.device) < src_lengths.to(src.device).unsqueeze(1)
        memory = self.decoder.memory(states, src_mask)
        return memory, self.decoder.init_state(summary, memory)

    def features(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing up to the output layer: src (B, S), tgt_in (B, T) starting with BOS ->
        the decoder's output vectors ã_1..ã_T, (B, T, Hd). Training feeds them to `output_loss`."""
        memory, state = self.encode(src, src_lengths)
        return self.decoder(self.dropout(self.tgt_embed(tgt_in)), memory, state)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: src (B, S), tgt_in (B, T) starting with BOS -> (B, T, V)."""
        return self.output(self.features(src, src_lengths, tgt_in))  # one matmul over all steps

    def output_loss(self, features: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Label-smoothed cross-entropy of softmax(W_o ã_t) summed over the real (non-PAD) targets
        of tgt_out (B, T); features: (B, T, Hd). Scalar, fp32. The fused blocked computation of
        nmt.loss, or with `model.textbook` PyTorch's F.cross_entropy on the whole logits."""
        loss = plain_output_loss if self.textbook else output_loss
        return loss(features, self.output, tgt_out, label_smoothing)

    def step(self, prev: torch.Tensor, memory: Memory, state: DecoderState):
        """One search step. prev: (B,) previous tokens.

        Returns log P(y_t | y_<t, x): (B, V), the new state and attention weights (B, S).
        """
        table = self._input_table()
        if table is None:
            att, state, weights = self.decoder.step(self.tgt_embed(prev), memory, state)
        else:
            att, state, weights = self.decoder.step_from_input(table[prev], memory, state)
        return F.log_softmax(self._search_output(att).float(), dim=-1), state, weights  # fp32 under autocast too

    def _input_table(self) -> torch.Tensor | None:
        """Search's table of the decoder's input projection for every target token: W_e E + b,
        (V, G), or None where search computes it at each step.

        The first decoder layer's input part W_e E y_{t-1} + b depends on the previous token
        alone, so search looks it up (one row per hypothesis) instead of multiplying by W_e at
        every step: one product over the vocabulary, made again when E or W_e change (data
        pointers and version counters). Only under inference mode, for the fast decoders with a
        plain W_e (not an int8 one) and tables up to INPUT_TABLE_BYTES (the reference model's:
        8,000 x 1,024 floats, 32 MB), in the product's dtype (autocast's under bf16)."""
        w_emb, E = self.decoder.w_emb, self.tgt_embed.weight
        if self.textbook or type(w_emb) is not nn.Linear or not torch.is_inference_mode_enabled():
            return None
        dtype = _product_dtype(E)
        if E.size(0) * w_emb.out_features * dtype.itemsize > INPUT_TABLE_BYTES:
            return None
        return self._search_copy("_inputs", (E, w_emb.weight, w_emb.bias), dtype, lambda: w_emb(E))

    def _search_output(self, att: torch.Tensor) -> torch.Tensor:
        """W_o ã + b for one search step: att (B, Hd) -> logits (B, V).

        Search multiplies a few rows by W_o, the largest matrix (V x Hd, 8 MB for the reference
        model). BLAS reads W_o^T stored row by row (Hd x V, contiguous) about 1.7x faster than
        the transposed view of W_o at 5 rows (a beam of 5), and equally fast from about 160 rows
        on, so search keeps such a copy, made again whenever W_o changes (its data pointer or
        version counter: training updates it in place). Only under inference mode, where search
        runs, and on the CPU (cuBLAS reads either layout; not measured there). The copy is in the
        product's dtype (autocast's under bf16). An int8 output layer (nmt.quantize) keeps its own
        packed weights."""
        out, device = self.output, att.device.type
        if type(out) is not nn.Linear or device != "cpu" or not torch.is_inference_mode_enabled():
            return out(att)
        w = out.weight
        dtype = _product_dtype(w)
        w_t = self._search_copy("_w_o_t", (w,), dtype, lambda: w.t().to(dtype).contiguous())
        return att @ w_t if out.bias is None else torch.addmm(out.bias, att, w_t)

    def _search_copy(self, slot: str, sources: tuple, dtype: torch.dtype, make: Callable[[], torch.Tensor]):
        """Search's copy in attribute `slot` (a (key, tensor) pair): made by `make` from the
        tensors `sources`, and made again when one of them changes (its data pointer or version
        counter: training updates weights in place) or the product's dtype does."""
        key = (*((t.data_ptr(), t._version) for t in sources), dtype)
        if getattr(self, slot)[0] != key:
            setattr(self, slot, (key, make()))
        return getattr(self, slot)[1]

    @staticmethod
    def select(rows: Memory | DecoderState, index: torch.Tensor) -> Memory | DecoderState:
        """Rows `index` (B',) of a memory or a decoder state (search repeats, reorders and drops rows)."""
        return rows.select(index)


def _product_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype a product with `weight` has here: autocast's where it is on, else the weight's."""
    device = weight.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype


def build_model(cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    """The model a config describes, with fresh weights (torch's default initialisation, drawn
    from torch's global generator in the order the parts are made here)."""
    src_embed = nn.Embedding(src_vocab_size, cfg.emb_size, padding_idx=PAD)
    tgt_embed = nn.Embedding(tgt_vocab_size, cfg.emb_size, padding_idx=PAD)
    encoder = ENCODERS[cfg.encoder](cfg)
    decoder = DECODERS[cfg.decoder, cfg.textbook](
        cfg.rnn_type,
        cfg.emb_size,
        cfg.dec_hidden_size,
        cfg.dec_layers,
        encoder.output_size,
        cfg.attention,
        cfg.attention_size,
        cfg.input_feeding,
        cfg.bridge,
        cfg.dropout,
    )
    output = nn.Linear(cfg.dec_hidden_size, tgt_vocab_size)
    if cfg.tie_embeddings:
        output.weight = tgt_embed.weight
    return Seq2Seq(src_embed, tgt_embed, encoder, decoder, output, cfg.dropout, cfg.textbook)
