"""The benchmark's analytic FLOP count (scripts/flops.py) against torch's own count of the products.

torch's FlopCounterMode does not see inside the fused whole-sequence RNN kernels the encoder
uses (it sees the GRU's and RNN's step products, not the LSTM's), so the encoder's
recurrences are counted on their step products with the modules' own weights, and the rest of
the model directly."""

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nmt.config import ModelConfig
from nmt.data.batching import make_batch
from nmt.model import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from flops import encoder_flops, forward_flops, train_step_flops  # noqa: E402 (the benchmark's module)


def outside_encoder(counter: FlopCounterMode) -> int:
    """What the counter saw outside the encoder module."""
    inside = counter.get_flop_counts().get("Seq2Seq.encoder", {})
    return counter.get_total_flops() - sum(inside.values())


SRC = [[4, 5, 6], [7], [8, 9, 4, 5, 6, 7, 8]]
TGT = [[4, 5], [6, 7, 8, 9], [5]]


@pytest.mark.parametrize(
    "rnn_type,attention,layers,input_feeding,bridge",
    [
        ("lstm", "bahdanau", 1, True, True),  # the reference model's shape
        ("lstm", "bahdanau", 2, True, True),
        ("gru", "luong_general", 2, False, True),
        ("rnn", "luong_dot", 1, True, False),
    ],
)
def test_analytic_flops_match_torch_flop_counter(rnn_type, attention, layers, input_feeding, bridge):
    dec = 16 if attention == "luong_dot" else 12
    cfg = ModelConfig(
        rnn_type=rnn_type,
        attention=attention,
        emb_size=10,
        enc_hidden_size=8,
        dec_hidden_size=dec,
        attention_size=7,
        enc_layers=layers,
        dec_layers=layers,
        input_feeding=input_feeding,
        bridge=bridge,
        dropout=0.0,
    )
    torch.manual_seed(0)
    model = build_model(cfg, 13, 11)
    batch = make_batch(SRC, TGT, list(range(len(SRC))))
    B, S = batch.src.shape
    counted = forward_flops(cfg, batch.src_lengths.tolist(), batch.tgt_in.size(1), 11)
    encoder = encoder_flops(cfg, B, S)

    with FlopCounterMode(display=False) as rnns:  # every (B, S) position, both directions, each layer
        for rnn in [*model.encoder.forward_rnns, *model.encoder.backward_rnns]:
            h = torch.zeros(B, rnn.hidden_size)
            for _ in range(S):  # the products of one step, with the module's own weights
                torch.zeros(B, rnn.input_size) @ rnn.weight_ih_l0.t() + h @ rnn.weight_hh_l0.t()
    assert encoder == rnns.get_total_flops() > 0

    with FlopCounterMode(display=False) as forward:
        model(batch.src, batch.src_lengths, batch.tgt_in)
    assert counted == outside_encoder(forward) + encoder

    with FlopCounterMode(display=False) as step:
        model(batch.src, batch.src_lengths, batch.tgt_in).sum().backward()
    # 3x forward is the convention; the products whose inputs need no gradient (the zero
    # first attentional vector) make the true backward a little smaller.
    train = train_step_flops(cfg, batch.src_lengths.tolist(), batch.tgt_in.size(1), 11)
    assert 0.95 * train <= outside_encoder(step) + 3 * encoder <= train
