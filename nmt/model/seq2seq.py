"""The whole model: embeddings, encoder, decoder with attention, output layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nmt.config import ModelConfig
from nmt.data.tokenizer import PAD
from nmt.model.decoder import Decoder, DecoderState, Memory
from nmt.model.encoder import Encoder


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention. Training calls `forward`; search calls `encode` then `step`."""

    def __init__(self, cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int):
        super().__init__()
        self.src_embed = nn.Embedding(src_vocab_size, cfg.emb_size, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, cfg.emb_size, padding_idx=PAD)
        self.encoder = Encoder(cfg.rnn_type, cfg.emb_size, cfg.enc_hidden_size, cfg.enc_layers, cfg.dropout)
        self.decoder = Decoder(
            cfg.rnn_type, cfg.emb_size, cfg.dec_hidden_size, cfg.dec_layers, self.encoder.output_size,
            cfg.attention, cfg.attention_size, cfg.input_feeding, cfg.bridge, cfg.dropout,
        )
        self.output = nn.Linear(cfg.dec_hidden_size, tgt_vocab_size)  # W_o
        if cfg.tie_embeddings:
            self.output.weight = self.tgt_embed.weight
        self.dropout = nn.Dropout(cfg.dropout)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Memory, DecoderState]:
        """src: (B, S) long, src_lengths: (B,). Returns the decoder's memory and initial state."""
        enc_out, final = self.encoder(self.dropout(self.src_embed(src)), src_lengths)
        src_mask = torch.arange(src.size(1), device=src.device) < src_lengths.to(src.device).unsqueeze(1)
        memory = Memory(enc_out, self.decoder.attention.keys(enc_out), src_mask)
        return memory, self.decoder.init_state(final)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: src (B, S), tgt_in (B, T) starting with BOS -> (B, T, V)."""
        return self.output(self.attentional_vectors(src, src_lengths, tgt_in))  # one matmul over all steps

    def attentional_vectors(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing up to the output layer: ã_1..ã_T, (B, T, Hd). Training feeds them to
        `nmt.loss.output_loss`, which applies W_o and the loss together."""
        memory, state = self.encode(src, src_lengths)
        return self.decoder(self.dropout(self.tgt_embed(tgt_in)), memory, state)

    def step(self, prev: torch.Tensor, memory: Memory, state: DecoderState):
        """One search step. prev: (B,) previous tokens.

        Returns log P(y_t | y_<t, x): (B, V), the new state and attention weights (B, S).
        """
        att, state, weights = self.decoder.step(self.tgt_embed(prev), memory, state)
        return F.log_softmax(self.output(att).float(), dim=-1), state, weights  # fp32 under autocast too
