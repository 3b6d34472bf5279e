"""Analytic FLOP count of one training step, for the benchmark's MFU.

Only matrix products are counted (2 FLOPs per multiply-add), as is usual for MFU: the
elementwise work of gates, tanh and softmax is small beside them. The count follows what
the model executes, padded positions included (on Multi30k's token batches about 1% of
target and 15-20% of source positions are padding):

- encoder: every padded source position goes through both directions' recurrences (padding
  is masked, not skipped); per position, direction and layer: 2 * G * (input + H), with
  G = 4H (LSTM), 3H (GRU), H (RNN);
- attention keys U h_j (bahdanau) or W h_j (luong_general): every padded source position;
- bridge: once per sentence;
- decoder: every padded target position (the loop runs all rows): the embedding half of the
  first layer's input projection, the input-feeding and recurrent projections, upper layers,
  the attention query and scores over all S source positions, the context, W_c;
- output layer: every padded target position.

A training step is 3x the forward count: the backward pass of every product computes the
gradients of both its operands (2 products of the same size).
"""

from __future__ import annotations

from nmt.config import ModelConfig
from nmt.model.decoder import GATES


def encoder_flops(cfg: ModelConfig, B: int, S: int) -> int:
    """Matmul FLOPs of the encoder's recurrences over a (B, S) padded batch, both directions."""
    H, g_enc = cfg.enc_hidden_size, GATES[cfg.rnn_type] * cfg.enc_hidden_size
    inputs = [cfg.emb_size] + [2 * H] * (cfg.enc_layers - 1)
    return sum(2 * 2 * g_enc * (inp + H) * B * S for inp in inputs)


def forward_flops(cfg: ModelConfig, src_lengths: list[int], tgt_len: int, tgt_vocab: int) -> int:
    """Matmul FLOPs of one forward pass over a batch.

    src_lengths: real source lengths incl. EOS (B values); the padded length S is their max.
    tgt_len: padded target length T (BOS + tokens); tgt_vocab: V.
    """
    B, S, T = len(src_lengths), max(src_lengths), tgt_len
    E, H, Hd, A, V = cfg.emb_size, cfg.enc_hidden_size, cfg.dec_hidden_size, cfg.attention_size, tgt_vocab
    g_dec = GATES[cfg.rnn_type] * Hd

    encoder = encoder_flops(cfg, B, S)
    keys = {"bahdanau": 2 * 2 * H * A, "luong_general": 2 * 2 * H * Hd, "luong_dot": 0}[cfg.attention] * B * S
    bridge = 2 * 2 * H * cfg.dec_layers * Hd * B if cfg.bridge else 0

    per_step = 2 * E * g_dec + 2 * Hd * g_dec  # W_e (hoisted, same count) and W_hh
    if cfg.input_feeding:
        per_step += 2 * Hd * g_dec
    per_step += (cfg.dec_layers - 1) * 2 * (2 * Hd * g_dec)  # upper layers: W_ih and W_hh
    if cfg.attention == "bahdanau":
        per_step += 2 * Hd * A + 2 * A * S  # W s_t, then v^T over S positions
    else:
        per_step += 2 * Hd * S  # s_t . key_j
    per_step += 2 * S * 2 * H  # context = a_t . h
    per_step += 2 * (Hd + 2 * H) * Hd  # W_c
    decoder = per_step * B * T
    output = 2 * Hd * V * B * T
    return encoder + keys + bridge + decoder + output


def train_step_flops(cfg: ModelConfig, src_lengths: list[int], tgt_len: int, tgt_vocab: int) -> int:
    """Forward + backward: 3x the forward matmul FLOPs."""
    return 3 * forward_flops(cfg, src_lengths, tgt_len, tgt_vocab)
