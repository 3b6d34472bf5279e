"""The whole model: embeddings, encoder, decoder with attention, output layer; `build_model`."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nmt.config import ModelConfig
from nmt.data.tokenizer import PAD
from nmt.model.decoder import DECODERS, Decoder, DecoderState, Memory
from nmt.model.encoder import BiRNNEncoder, Encoder
from nmt.model.output import output_loss, plain_output_loss

# model.encoder -> the encoder it names (see the contract in nmt.model.encoder)
ENCODERS: dict[str, Callable[[ModelConfig], Encoder]] = {
    "birnn": lambda m: BiRNNEncoder(m.rnn_type, m.emb_size, m.enc_hidden_size, m.enc_layers, m.dropout),
}


class WordDropout(nn.Module):
    """Whole tokens dropped (Gal & Ghahramani, 2016; Sennrich & Zhang, 2019): in training, each
    token's embedding (B, T, E) is zeroed with probability p, the others scaled by 1 / (1 - p);
    nothing in evaluation, and with p = 0 no random number is drawn."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return embedded
        keep = torch.empty(embedded.shape[:-1] + (1,), device=embedded.device).bernoulli_(1 - self.p)
        return embedded * (keep / (1 - self.p)).to(embedded.dtype)


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
        word_dropout: float = 0.0,
    ):
        super().__init__()
        self.src_embed, self.tgt_embed = src_embed, tgt_embed
        self.encoder, self.decoder = encoder, decoder
        self.output = output  # W_o
        self.dropout = nn.Dropout(dropout)  # on the embeddings
        self.word_dropout = WordDropout(word_dropout)  # whole input tokens, before that
        self.textbook = textbook

    def embedded(self, embed: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens -> (B, T, E) embeddings as the encoder and decoder read them: whole
        tokens dropped, then dropout (both only in training)."""
        return self.dropout(self.word_dropout(embed(tokens)))

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Memory, DecoderState]:
        """src: (B, S) long, src_lengths: (B,). Returns the decoder's memory and initial state."""
        states, summary = self.encoder(self.embedded(self.src_embed, src), src_lengths)
        src_mask = torch.arange(src.size(1), device=src.device) < src_lengths.to(src.device).unsqueeze(1)
        memory = self.decoder.memory(states, src_mask)
        return memory, self.decoder.init_state(summary, memory)

    def features(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing up to the output layer: src (B, S), tgt_in (B, T) starting with BOS ->
        the decoder's output vectors ã_1..ã_T, (B, T, Hd). Training feeds them to `output_loss`."""
        memory, state = self.encode(src, src_lengths)
        return self.decoder(self.embedded(self.tgt_embed, tgt_in), memory, state)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: src (B, S), tgt_in (B, T) starting with BOS -> (B, T, V)."""
        return self.output(self.features(src, src_lengths, tgt_in))  # one matmul over all steps

    def output_loss(self, features: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Label-smoothed cross-entropy of softmax(W_o ã_t) summed over the real (non-PAD) targets
        of tgt_out (B, T); features: (B, T, Hd). Scalar, fp32. The fused blocked computation of
        nmt.model.output, or with `model.textbook` PyTorch's F.cross_entropy on the whole logits."""
        loss = plain_output_loss if self.textbook else output_loss
        return loss(features, self.output, tgt_out, label_smoothing)

    def step(self, prev: torch.Tensor, memory: Memory, state: DecoderState):
        """One search step. prev: (B,) previous tokens.

        Returns log P(y_t | y_<t, x): (B, V), the new state and attention weights (B, S).
        A trained model searches faster frozen (`nmt.model.frozen.FrozenSeq2Seq`: the same
        step with two products made once)."""
        att, state, weights = self.decoder.step(self.tgt_embed(prev), memory, state)
        return F.log_softmax(self.output(att).float(), dim=-1), state, weights  # fp32 under autocast too

    def parts(self) -> dict[str, list[nn.Module]]:
        """The model's parts by the names `training.freeze` takes (nmt.config.sections.MODEL_PARTS)."""
        return {
            "embeddings": [self.src_embed, self.tgt_embed],
            "src_embeddings": [self.src_embed],
            "tgt_embeddings": [self.tgt_embed],
            "encoder": [self.encoder],
            "decoder": [self.decoder],
            "attention": [self.decoder.attention],
            "output": [self.output],
        }

    @staticmethod
    def select(rows: Memory | DecoderState, index: torch.Tensor) -> Memory | DecoderState:
        """Rows `index` (B',) of a memory or a decoder state (search repeats, reorders and drops rows)."""
        return rows.select(index)


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
    if cfg.tie_embeddings:  # Press & Wolf (2017): one matrix for the output layer and the target embedding
        output.weight = tgt_embed.weight
    if cfg.tie_source_embeddings:  # and, with a joint vocabulary, the source embedding (checked by the config)
        src_embed.weight = tgt_embed.weight
    return Seq2Seq(src_embed, tgt_embed, encoder, decoder, output, cfg.dropout, cfg.textbook, cfg.word_dropout)
