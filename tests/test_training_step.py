"""The optimised training step against a straightforward implementation of the same model.

The fast path (nmt.training.training_loss) hoists the embedding half of the first layer's input
projection out of the decoder loop, accumulates the gates with addmm, scores additive attention
in its sigmoid form, splits W_c in two and computes the label-smoothed loss in place. The
reference below is the textbook model written from the equations with plain tensor operations
and PyTorch's own cross-entropy, on the same parameters. Loss and every gradient must agree
within 1e-5 in float32.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nmt.config import ModelConfig
from nmt.data.batching import make_batch
from nmt.data.tokenizer import PAD
from nmt.loss import token_loss
from nmt.model import Seq2Seq
from nmt.training import training_loss

SRC_V, TGT_V = 29, 23


def reference_loss(model: Seq2Seq, src, src_lengths, tgt_in, tgt_out, smoothing: float) -> torch.Tensor:
    """s_t = LSTM([E y_{t-1}; ã_{t-1}], s_{t-1}); e_tj = v^T tanh(W s_t + U h_j);
    c_t = softmax(e_t) . h; ã_t = tanh(W_c [s_t; c_t]); loss = cross-entropy(W_o ã_t)."""
    dec, att_mod = model.decoder, model.decoder.attention
    enc_out, final = model.encoder(model.src_embed(src), src_lengths)  # torch's packed LSTM
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
    logits = torch.stack(logits, dim=1)
    n_tokens = (tgt_out != PAD).sum()
    return F.cross_entropy(logits.reshape(-1, TGT_V), tgt_out.reshape(-1), ignore_index=PAD,
                           label_smoothing=smoothing, reduction="sum") / n_tokens


def random_batch(seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    lengths = lambda top: torch.randint(1, top, (n,), generator=g).tolist()  # noqa: E731
    src = [torch.randint(4, SRC_V, (k,), generator=g).tolist() for k in lengths(12)]
    tgt = [torch.randint(4, TGT_V, (k,), generator=g).tolist() for k in lengths(10)]
    return make_batch(src, tgt, list(range(n)))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimised_step_matches_the_textbook_model(seed, smoothing):
    torch.manual_seed(seed)
    cfg = ModelConfig(emb_size=16, enc_hidden_size=12, dec_hidden_size=14, attention_size=10, dropout=0.0)
    model = Seq2Seq(cfg, SRC_V, TGT_V)  # the reference architecture: LSTM, Bahdanau, feeding, bridge
    with torch.no_grad():  # larger weights than the default init: sharp attention, saturating gates
        for p in model.parameters():
            p.uniform_(-0.6, 0.6)
    batch = random_batch(seed)
    assert (batch.tgt_out == PAD).any() and (batch.src == PAD).any()  # padding on both sides

    fast = training_loss(model, batch, smoothing)
    fast_grads = torch.autograd.grad(fast, list(model.parameters()))
    slow = reference_loss(model, batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, smoothing)
    slow_grads = torch.autograd.grad(slow, list(model.parameters()), allow_unused=True)

    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    for (name, _), got, want in zip(model.named_parameters(), fast_grads, slow_grads):
        if want is None:  # not used by the reference: the hoisted path must not use it either
            assert not got.abs().any(), name
            continue
        assert got.abs().sum() > 0, name  # every parameter takes part
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_token_loss_equals_torch_cross_entropy(smoothing):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 7, 11, generator=g, dtype=torch.float64)
    target = torch.randint(0, 11, (4, 7), generator=g)
    target[1, 4:] = PAD
    want_loss = F.cross_entropy(logits.reshape(-1, 11), target.reshape(-1), ignore_index=PAD,
                                label_smoothing=smoothing, reduction="sum")
    leaf = logits.clone().requires_grad_()
    want = F.cross_entropy(leaf.reshape(-1, 11), target.reshape(-1), ignore_index=PAD,
                           label_smoothing=smoothing, reduction="sum")
    want_grad, = torch.autograd.grad(want * 0.7, leaf)

    # evaluation (no gradient): the logits are left alone
    before = logits.clone()
    torch.testing.assert_close(token_loss(logits, target, smoothing), want_loss, rtol=1e-12, atol=1e-12)
    assert torch.equal(logits, before)

    # a leaf the caller owns: not overwritten, gradient exact
    got = token_loss(leaf, target, smoothing)
    (got * 0.7).backward()
    torch.testing.assert_close(got, want_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(leaf.grad, want_grad, rtol=1e-12, atol=1e-12)
    assert torch.equal(leaf.detach(), before)

    # an intermediate (the training step's case): consumed in place, same loss and gradient
    leaf.grad = None
    got = token_loss(leaf * 1.0, target, smoothing)
    (got * 0.7).backward()
    torch.testing.assert_close(got, want_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(leaf.grad, want_grad, rtol=1e-12, atol=1e-12)
    assert not leaf.grad[1, 4:].any()  # PAD targets give nothing
