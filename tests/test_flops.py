"""The benchmark's analytic FLOP count (nmt/flops.py) against torch's own count of the products."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nmt.config import ModelConfig
from nmt.data.batching import make_batch
from nmt.flops import forward_flops, train_step_flops
from nmt.model import Seq2Seq

SRC = [[4, 5, 6], [7], [8, 9, 4, 5, 6, 7, 8]]
TGT = [[4, 5], [6, 7, 8, 9], [5]]


@pytest.mark.parametrize("rnn_type,attention,layers,input_feeding,bridge", [
    ("lstm", "bahdanau", 1, True, True),   # the reference model's shape
    ("lstm", "bahdanau", 2, True, True),
    ("gru", "luong_general", 2, False, True),
    ("rnn", "luong_dot", 1, True, False),
])
def test_analytic_flops_match_torch_flop_counter(rnn_type, attention, layers, input_feeding, bridge):
    dec = 16 if attention == "luong_dot" else 12
    cfg = ModelConfig(rnn_type=rnn_type, attention=attention, emb_size=10, enc_hidden_size=8,
                      dec_hidden_size=dec, attention_size=7, enc_layers=layers, dec_layers=layers,
                      input_feeding=input_feeding, bridge=bridge, dropout=0.0)
    torch.manual_seed(0)
    model = Seq2Seq(cfg, 13, 11)
    batch = make_batch(SRC, TGT, list(range(len(SRC))))
    counted = forward_flops(cfg, batch.src_lengths.tolist(), batch.tgt_in.size(1), 11)

    with FlopCounterMode(display=False) as forward:
        model(batch.src, batch.src_lengths, batch.tgt_in)
    assert counted == forward.get_total_flops()

    with FlopCounterMode(display=False) as step:
        model(batch.src, batch.src_lengths, batch.tgt_in).sum().backward()
    # 3x forward is the convention; the products whose inputs need no gradient (the zero
    # first attentional vector) make the true backward a little smaller.
    assert 0.95 * train_step_flops(cfg, batch.src_lengths.tolist(), batch.tgt_in.size(1), 11) \
        <= step.get_total_flops() <= train_step_flops(cfg, batch.src_lengths.tolist(), batch.tgt_in.size(1), 11)
