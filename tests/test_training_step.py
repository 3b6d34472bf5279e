"""The optimised training step against a straightforward implementation of the same model.

The fast path (nmt.training.objective.training_loss) runs the encoder's backward direction on sentences
reversed within their lengths instead of packing, hoists the embedding half of the first
layer's input projection out of the decoder loop, accumulates the gates with addmm, scores
additive attention in its sigmoid form, splits W_c in two, and fuses the output layer with the
label-smoothed loss a block of rows at a time (gradients computed in the forward pass). The
reference below is the textbook model written from the equations with plain tensor operations,
one time step at a time, and PyTorch's own cross-entropy, on the same parameters. Loss and every
gradient must agree within 1e-5 in float32.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nmt.config import ModelConfig
from nmt.data.batching import make_batch
from nmt.data.tokenizer import PAD
from nmt.model import Seq2Seq, build_model
from nmt.model import output as output_module
from nmt.model.output import output_loss
from nmt.training.objective import training_loss

SRC_V, TGT_V = 29, 23


def lstm_cell(rnn: torch.nn.LSTM, x, h, c):
    """One step of a one-layer torch LSTM from its weights: the gate equations written out."""
    gates = x @ rnn.weight_ih_l0.t() + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.t() + rnn.bias_hh_l0
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def reference_encoder(model: Seq2Seq, x, src_lengths):
    """h→_j = LSTM(x_j, h→_{j-1}) for j = 1..n; h←_j = LSTM(x_j, h←_{j+1}) for j = n..1; zero after n."""
    enc = model.encoder
    B, S, H = x.size(0), x.size(1), enc.hidden_size
    real = (torch.arange(S).unsqueeze(0) < src_lengths.unsqueeze(1)).unsqueeze(2)  # (B, S, 1)
    ahead, back = [None] * S, [None] * S
    for rnn, out, steps in ((enc.forward_rnns[0], ahead, range(S)), (enc.backward_rnns[0], back, reversed(range(S)))):
        h = c = x.new_zeros(B, H)
        for j in steps:  # a padded position leaves the state as it is
            h_new, c_new = lstm_cell(rnn, x[:, j], h, c)
            h, c = torch.where(real[:, j], h_new, h), torch.where(real[:, j], c_new, c)
            out[j] = h
    enc_out = torch.cat([torch.stack(ahead, 1), torch.stack(back, 1)], dim=2) * real
    last_forward = enc_out[torch.arange(B), src_lengths - 1, :H]
    return enc_out, torch.cat([last_forward, enc_out[:, 0, H:]], dim=1)


def reference_loss(model: Seq2Seq, src, src_lengths, tgt_in, tgt_out, smoothing: float) -> torch.Tensor:
    """s_t = LSTM([E y_{t-1}; ã_{t-1}], s_{t-1}); e_tj = v^T tanh(W s_t + U h_j);
    c_t = softmax(e_t) . h; ã_t = tanh(W_c [s_t; c_t]); loss = cross-entropy(W_o ã_t)."""
    dec, att_mod = model.decoder, model.decoder.attention
    enc_out, final = reference_encoder(model, model.src_embed(src), src_lengths)
    mask = torch.arange(src.size(1)).unsqueeze(0) < src_lengths.unsqueeze(1)
    w_ih = torch.cat([dec.w_emb.weight, dec.w_feed.weight], dim=1)  # W_ih acting on [E y; ã]
    w_c = torch.cat([dec.w_cs.weight, dec.w_cc.weight], dim=1)  # W_c acting on [s; c]
    s = torch.tanh(dec.bridge(final))
    c = torch.zeros_like(s)
    att = torch.zeros_like(s)
    logits = []
    for t in range(tgt_in.size(1)):
        x = torch.cat([model.tgt_embed(tgt_in[:, t]), att], dim=-1)
        gates = x @ w_ih.t() + dec.w_emb.bias + s @ dec.w_hh.weight.t()
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        s = torch.sigmoid(o) * torch.tanh(c)
        e = torch.tanh(att_mod.W(s).unsqueeze(1) + att_mod.U(enc_out)) @ att_mod.v.weight.squeeze(0)  # (B, S)
        a = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=-1)
        context = (a.unsqueeze(2) * enc_out).sum(dim=1)
        att = torch.tanh(torch.cat([s, context], dim=-1) @ w_c.t())
        logits.append(att @ model.output.weight.t() + model.output.bias)
    return mean_cross_entropy(torch.stack(logits, dim=1), tgt_out, smoothing)


def mean_cross_entropy(logits: torch.Tensor, tgt_out: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label-smoothed cross-entropy of logits (B, T, V) per real target token: PyTorch's own."""
    total = F.cross_entropy(
        logits.reshape(-1, TGT_V), tgt_out.reshape(-1), ignore_index=PAD, label_smoothing=smoothing, reduction="sum"
    )
    return total / (tgt_out != PAD).sum()


def reference_loss_course(model: Seq2Seq, src, src_lengths, tgt_in, tgt_out, smoothing: float) -> torch.Tensor:
    """model.decoder: bahdanau, as the course writes it: e_tj = v^T tanh(W s_{t-1} + U h_j);
    c_t = softmax(e_t) . h; s_t = LSTM([E y_{t-1}; c_t], s_{t-1}); loss = cross-entropy(W_o s_t)."""
    dec, att_mod = model.decoder, model.decoder.attention
    enc_out, final = reference_encoder(model, model.src_embed(src), src_lengths)
    mask = torch.arange(src.size(1)).unsqueeze(0) < src_lengths.unsqueeze(1)
    w_ih = torch.cat([dec.w_emb.weight, dec.w_ctx.weight], dim=1)  # W_ih acting on [E y; c]
    s = torch.tanh(dec.bridge(final))  # s_0
    c = torch.zeros_like(s)
    logits = []
    for t in range(tgt_in.size(1)):
        e = torch.tanh(att_mod.W(s).unsqueeze(1) + att_mod.U(enc_out)) @ att_mod.v.weight.squeeze(0)  # (B, S)
        a = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=-1)
        context = (a.unsqueeze(2) * enc_out).sum(dim=1)
        x = torch.cat([model.tgt_embed(tgt_in[:, t]), context], dim=-1)
        i, f, g, o = (x @ w_ih.t() + dec.w_emb.bias + s @ dec.w_hh.weight.t()).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        s = torch.sigmoid(o) * torch.tanh(c)
        logits.append(s @ model.output.weight.t() + model.output.bias)
    return mean_cross_entropy(torch.stack(logits, dim=1), tgt_out, smoothing)


def random_batch(seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    lengths = lambda top: torch.randint(1, top, (n,), generator=g).tolist()  # noqa: E731
    src = [torch.randint(4, SRC_V, (k,), generator=g).tolist() for k in lengths(12)]
    tgt = [torch.randint(4, TGT_V, (k,), generator=g).tolist() for k in lengths(10)]
    return make_batch(src, tgt, list(range(n)))


@pytest.mark.parametrize("decoder,reference", [("luong", reference_loss), ("bahdanau", reference_loss_course)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimised_step_matches_the_textbook_model(seed, smoothing, decoder, reference):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        emb_size=16, enc_hidden_size=12, dec_hidden_size=14, attention_size=10, dropout=0.0, decoder=decoder
    )
    model = build_model(cfg, SRC_V, TGT_V)  # the reference architecture: LSTM, Bahdanau score, bridge
    with torch.no_grad():  # larger weights than the default init: sharp attention, saturating gates
        for p in model.parameters():
            p.uniform_(-0.6, 0.6)
    batch = random_batch(seed)
    assert (batch.tgt_out == PAD).any() and (batch.src == PAD).any()  # padding on both sides

    fast = training_loss(model, batch, smoothing)
    fast_grads = torch.autograd.grad(fast, list(model.parameters()))
    slow = reference(model, batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, smoothing)
    slow_grads = torch.autograd.grad(slow, list(model.parameters()), allow_unused=True)

    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    for (name, _), got, want in zip(model.named_parameters(), fast_grads, slow_grads):
        if want is None:  # not used by the reference: the hoisted path must not use it either
            assert not got.abs().any(), name
            continue
        assert got.abs().sum() > 0, name  # every parameter takes part
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_textbook_switch_trains_the_same_model(rnn_type, smoothing, decoder):
    """model.textbook: true (torch's cells step by step, tanh attention, F.cross_entropy on the
    whole logits) gives the fast path's loss and gradients, parameter by parameter."""
    cfg = ModelConfig(
        rnn_type=rnn_type,
        emb_size=16,
        enc_hidden_size=12,
        dec_hidden_size=14,
        attention_size=10,
        dropout=0.0,
        dec_layers=2,
        decoder=decoder,
    )
    torch.manual_seed(5)
    fast = build_model(cfg, SRC_V, TGT_V)
    textbook = build_model(dataclasses.replace(cfg, textbook=True), SRC_V, TGT_V)
    textbook.load_state_dict(fast.state_dict())
    batch = random_batch(4)
    losses, grads = [], []
    for model in (fast, textbook):
        loss = training_loss(model, batch, smoothing)
        losses.append(loss)
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (name, _), got, want in zip(fast.named_parameters(), grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_output_loss_equals_torch_cross_entropy(smoothing, dtype, monkeypatch):
    """Loss and gradients of the fused output layer + loss, with blocks that do not divide the rows."""
    monkeypatch.setattr(output_module, "BLOCK_ELEMENTS", 3 * 11)  # blocks of 3 rows of 11 logits
    g = torch.Generator().manual_seed(3)
    out = torch.nn.Linear(5, 11).to(dtype)
    att = torch.randn(4, 7, 5, generator=g, dtype=dtype, requires_grad=True)
    target = torch.randint(0, 11, (4, 7), generator=g)
    target[1, 4:] = PAD
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)

    want = F.cross_entropy(
        out(att).reshape(-1, 11), target.reshape(-1), ignore_index=PAD, label_smoothing=smoothing, reduction="sum"
    )
    want_grads = torch.autograd.grad(want * 0.7, [att, out.weight, out.bias])
    got = output_loss(att, out, target, smoothing)
    got_grads = torch.autograd.grad(got * 0.7, [att, out.weight, out.bias])
    torch.testing.assert_close(got.to(dtype), want, **tol)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, **tol)
    assert not got_grads[0][1, 4:].any()  # PAD targets give nothing
    with torch.no_grad():  # evaluation: the loss alone, same value
        torch.testing.assert_close(output_loss(att, out, target, smoothing).to(dtype), want, **tol)


def test_output_loss_under_bf16_autocast_is_close_to_fp32():
    """training.precision: bf16 runs the products in bf16; the loss stays fp32 and close."""
    g = torch.Generator().manual_seed(4)
    out = torch.nn.Linear(32, 50)
    att = torch.randn(6, 9, 32, generator=g, requires_grad=True)
    target = torch.randint(4, 50, (6, 9), generator=g)
    want = output_loss(att, out, target, 0.1)
    want_grads = torch.autograd.grad(want, [att, out.weight, out.bias])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = output_loss(att, out, target, 0.1)
    got_grads = torch.autograd.grad(got, [att, out.weight, out.bias])
    assert got.dtype == torch.float32 and all(a.dtype == b.dtype for a, b in zip(got_grads, want_grads))
    torch.testing.assert_close(got, want, rtol=1e-2, atol=0)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=3e-2 * float(b.abs().max()))
