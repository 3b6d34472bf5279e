"""The attention model (nmt.model): shapes, normalisation, decoder-loop consistency between
teacher forcing and step-by-step search, tied embeddings, gradients. Tiny random models only."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import typing

import pytest
import torch
import torch.nn.functional as F

from nmt.config import ModelConfig
from nmt.data.batching import make_batch
from nmt.data.tokenizer import BOS, EOS, PAD, UNK
from nmt.model import ENCODERS, FrozenSeq2Seq, Seq2Seq, build_model

ATTENTIONS = ["bahdanau", "luong_general", "luong_dot"]
DECODERS = ["luong", "bahdanau"]  # model.decoder: the two arrangements
RNN_TYPES = ["lstm", "gru", "rnn"]
ALL_ARCHS = list(itertools.product(RNN_TYPES, ATTENTIONS))
V = 7  # PAD UNK BOS EOS + 3 real tokens

SRC = [[4, 5, 6, 1], [6], [], [5, 5, 4, 6, 1, 4]]
TGT = [[5, 4], [6, 6, 1, 4, 5], [4], []]


def tiny_config(rnn_type: str = "lstm", attention: str = "bahdanau", **overrides) -> ModelConfig:
    enc = 4 if attention == "luong_dot" else 8  # luong_dot: decoder size = 2 * encoder size
    kw = dict(rnn_type=rnn_type, attention=attention, emb_size=8, enc_hidden_size=enc, dec_hidden_size=8)
    return ModelConfig(**{**kw, "attention_size": 8, "dropout": 0.0, **overrides})


def tiny_model(
    seed: int = 0,
    rnn_type: str = "lstm",
    attention: str = "bahdanau",
    src_vocab: int = V,
    tgt_vocab: int = V,
    **overrides,
) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = tiny_config(rnn_type, attention, **overrides)
    return build_model(cfg, src_vocab_size=src_vocab, tgt_vocab_size=tgt_vocab).eval()


VARIANTS = [
    dict(),
    dict(enc_layers=2, dec_layers=2),
    dict(input_feeding=False),
    dict(bridge=False),
    dict(enc_layers=3, dec_layers=2, input_feeding=False, bridge=False),
]


# --- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_forward_and_step_shapes(rnn_type, attention):
    model = tiny_model(1, rnn_type, attention, src_vocab=9, tgt_vocab=V, dec_layers=2)
    batch = make_batch([[4, 5, 8, 7, 1], [6]] + [[5]] * 1, TGT[:3], [0, 1, 2])
    B, S, T = batch.src.size(0), batch.src.size(1), batch.tgt_in.size(1)
    with torch.no_grad():
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        assert logits.shape == (B, T, V)  # target vocabulary, not the source's
        assert torch.isfinite(logits).all()
        memory, state = model.encode(batch.src, batch.src_lengths)
        assert memory.enc_out.shape == (B, S, 2 * (4 if attention == "luong_dot" else 8))
        assert memory.src_mask.shape == (B, S)
        assert len(state.h) == 2 and all(h.shape == (B, 8) for h in state.h)
        assert (state.c is None) == (rnn_type != "lstm")
        log_probs, state, weights = model.step(torch.full((B,), BOS), memory, state)
    assert log_probs.shape == (B, V)
    assert weights.shape == (B, S)
    assert state.att.shape == (B, 8)


@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_encoder_output_is_zero_at_padding(rnn_type, attention):
    model = tiny_model(2, rnn_type, attention)
    batch = make_batch(SRC, None, list(range(len(SRC))))
    with torch.no_grad():
        memory, _ = model.encode(batch.src, batch.src_lengths)
    padded = torch.arange(batch.src.size(1)).unsqueeze(0) >= batch.src_lengths.unsqueeze(1)
    assert padded.any()
    assert (memory.enc_out[padded] == 0).all()
    assert (memory.enc_out[~padded].abs().sum(dim=-1) > 0).all()


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("rnn_type", RNN_TYPES)
def test_encoder_final_state_is_last_forward_and_first_backward_output(rnn_type, layers):
    """final = [h_S(forward); h_1(backward)] of the top layer, at each sentence's own length."""
    model = tiny_model(10, rnn_type, enc_layers=layers)
    batch = make_batch(SRC, None, list(range(len(SRC))))
    with torch.no_grad():
        enc_out, final = model.encoder(model.src_embed(batch.src), batch.src_lengths)
    H = enc_out.size(-1) // 2
    last = enc_out[torch.arange(len(SRC)), batch.src_lengths - 1, :H]
    torch.testing.assert_close(final[:, :H], last, atol=1e-6, rtol=0)
    torch.testing.assert_close(final[:, H:], enc_out[:, 0, H:], atol=1e-6, rtol=0)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("rnn_type", RNN_TYPES)
def test_encoder_equals_torch_packed_bidirectional_rnn(rnn_type, layers):
    """Reversing within each length gives what torch's packed bidirectional RNN gives, with the
    same weights (torch's `weight_ih_l1_reverse` is our `backward_rnns.1.weight_ih_l0`)."""
    model = tiny_model(13, rnn_type, enc_layers=layers)
    enc = model.encoder
    packed_rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[rnn_type](
        8, enc.hidden_size, layers, batch_first=True, bidirectional=True
    )
    ours = {}
    for name, value in packed_rnn.state_dict().items():
        weight, layer = name.removesuffix("_reverse").rsplit("_l", 1)
        ours[f"{'backward' if name.endswith('_reverse') else 'forward'}_rnns.{layer}.{weight}_l0"] = value
    enc.load_state_dict(ours)  # strict: every weight of ours comes from the packed RNN
    with torch.no_grad():
        batch = make_batch(SRC, None, list(range(len(SRC))))
        emb = model.src_embed(batch.src)
        enc_out, final = enc(emb, batch.src_lengths)
        packed = torch.nn.utils.rnn.pack_padded_sequence(emb, batch.src_lengths, batch_first=True, enforce_sorted=False)
        out, hidden = packed_rnn(packed)
        want, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=emb.size(1))
    h_n = hidden[0] if rnn_type == "lstm" else hidden
    torch.testing.assert_close(enc_out, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(final, torch.cat([h_n[-2], h_n[-1]], dim=-1), atol=1e-6, rtol=0)


# --- normalisation and decoder-loop consistency ---------------------------------------------------


@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_step_log_probs_are_normalised(rnn_type, attention):
    model = tiny_model(3, rnn_type, attention)
    with torch.no_grad():
        model.output.weight.mul_(5.0)  # peaked: normalisation must hold away from uniform too
    batch = make_batch(SRC, None, list(range(len(SRC))))
    with torch.no_grad():
        memory, state = model.encode(batch.src, batch.src_lengths)
        prev = torch.full((len(SRC),), BOS)
        for tok in [4, 6, 1, 5]:
            log_probs, state, weights = model.step(prev, memory, state)
            assert (log_probs <= 0).all()
            torch.testing.assert_close(log_probs.exp().sum(dim=-1), torch.ones(len(SRC)), atol=1e-5, rtol=0)
            torch.testing.assert_close(weights.sum(dim=-1), torch.ones(len(SRC)), atol=1e-5, rtol=0)
            prev = torch.full((len(SRC),), tok)


@pytest.mark.parametrize("tie", [False, True])
def test_a_frozen_model_steps_as_the_model_and_keeps_the_weights_it_was_built_with(tie):
    """A FrozenSeq2Seq multiplies by its own copy of W_o^T and looks the first layer's input
    projection up in its own table of W_e E + b: it gives the model's log-probabilities (tied
    embeddings or not). It holds a copy of the weights: the model trained on afterwards, by
    an update that leaves the version counter alone as fused Adam's does, changes nothing in
    it, and a model frozen after the update gives the updated model's log-probabilities."""
    model = tiny_model(5, tie_embeddings=tie, emb_size=8)
    batch = make_batch(SRC, None, list(range(len(SRC))))
    prev = torch.full((len(SRC),), BOS)

    def step_log_probs(searched) -> torch.Tensor:
        with torch.inference_mode():
            memory, state = searched.encode(batch.src, batch.src_lengths)
            return searched.step(prev, memory, state)[0]

    frozen = FrozenSeq2Seq(model)
    before = step_log_probs(model)
    torch.testing.assert_close(step_log_probs(frozen), before, atol=1e-5, rtol=0)
    assert frozen._products["W_o^T", torch.float32].shape == (8, V)
    assert frozen._products["input table", torch.float32].shape == (V, model.decoder.w_emb.out_features)
    changed = [model.output.weight, model.decoder.w_emb.weight, model.decoder.w_emb.bias, model.tgt_embed.weight]
    with torch.no_grad():
        for i, weight in enumerate(changed):
            version = weight._version
            weight.data.mul_(2.0).add_(0.1 * i)  # through .data: the version counter stays
            assert weight._version == version
    after = step_log_probs(model)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(step_log_probs(frozen), before, atol=1e-5, rtol=0)  # its own weights
    torch.testing.assert_close(step_log_probs(FrozenSeq2Seq(model)), after, atol=1e-5, rtol=0)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        memory, state = frozen.encode(batch.src, batch.src_lengths)
        frozen.step(prev, memory, state)
    assert frozen._products["W_o^T", torch.bfloat16].dtype == torch.bfloat16  # the product's dtype, made once
    assert copy.deepcopy(frozen)._products == {}  # a copy's layers may be replaced (int8): it makes its own


def test_a_frozen_models_weights_cannot_be_trained_or_loaded_into():
    """Its weights are inference tensors without gradients: an update in place (an optimizer's
    step) or a load_state_dict on them is an error, not a silent change its products would miss."""
    frozen = FrozenSeq2Seq(tiny_model(1))
    assert not any(p.requires_grad for p in frozen.parameters())
    assert frozen.train().training is False and not frozen.model.training
    with pytest.raises(RuntimeError, match="[Ii]nference tensor"):
        frozen.model.load_state_dict(tiny_model(2).state_dict())
    with torch.no_grad(), pytest.raises(RuntimeError, match="[Ii]nference tensor"):
        frozen.model.output.weight.add_(1.0)  # what an optimizer's step does


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_teacher_forcing_equals_step_by_step(rnn_type, attention, variant, decoder):
    """log_softmax(forward(...))[:, t] is what `step` gives after feeding tgt_in[:, :t+1] one token
    at a time: training and search run the same decoder."""
    model = tiny_model(4, rnn_type, attention, decoder=decoder, **variant)
    batch = make_batch(SRC, TGT, list(range(len(SRC))))
    with torch.no_grad():
        forced = F.log_softmax(model(batch.src, batch.src_lengths, batch.tgt_in), dim=-1)
        memory, state = model.encode(batch.src, batch.src_lengths)
        for t in range(batch.tgt_in.size(1)):
            log_probs, state, _ = model.step(batch.tgt_in[:, t], memory, state)
            torch.testing.assert_close(log_probs, forced[:, t], atol=1e-5, rtol=0)


@pytest.mark.parametrize("rnn_type", RNN_TYPES)
def test_output_at_t_does_not_see_later_target_tokens(rnn_type):
    model = tiny_model(5, rnn_type)
    batch = make_batch(SRC, TGT, list(range(len(SRC))))
    tgt = batch.tgt_in.clone()
    tgt[:, 3:] = torch.randint(4, V, tgt[:, 3:].shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model(batch.src, batch.src_lengths, batch.tgt_in)
        b = model(batch.src, batch.src_lengths, tgt)
    torch.testing.assert_close(a[:, :3], b[:, :3], atol=0, rtol=0)
    assert not torch.allclose(a[:, 3:], b[:, 3:])  # and later outputs do depend on them


def test_eval_is_deterministic_and_train_applies_dropout():
    model = tiny_model(6, dropout=0.5)
    batch = make_batch(SRC, TGT, list(range(len(SRC))))
    with torch.no_grad():
        a = model(batch.src, batch.src_lengths, batch.tgt_in)
        torch.testing.assert_close(model(batch.src, batch.src_lengths, batch.tgt_in), a, atol=0, rtol=0)
        model.train()
        torch.manual_seed(0)
        b = model(batch.src, batch.src_lengths, batch.tgt_in)
        c = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert not torch.allclose(b, a) and not torch.allclose(b, c)


def reference_scores(attn, top: torch.Tensor, enc_out: torch.Tensor) -> torch.Tensor:
    """e_tj for query `top` (B, Hd) and encoder states (B, S, D): (B, S)."""
    if hasattr(attn, "v"):  # bahdanau: v^T tanh(W s + U h)
        return attn.v(torch.tanh(attn.W(top).unsqueeze(1) + attn.U(enc_out))).squeeze(2)
    if attn.W is None:  # luong dot: s . h
        return (enc_out * top.unsqueeze(1)).sum(-1)
    return (attn.W(enc_out) * top.unsqueeze(1)).sum(-1)  # luong general: s . W h


def reference_logits(
    model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
) -> torch.Tensor:
    """The decoder equations of nmt/model/decoder.py's docstring, written out with torch's own RNN
    cells for the first layer, reusing the model's weights. luong: s_t = RNN([E y_{t-1}; a~_{t-1}],
    s_{t-1}) stacked over layers, attention with the top layer's s_t as query,
    a~_t = tanh(W_c [s_t; c_t]), logits = W_o a~_t. bahdanau: attention with the top layer's
    s_{t-1}, s_t = RNN([E y_{t-1}; c_t], s_{t-1}), logits = W_o s_t."""
    dec, rnn_type, L = model.decoder, model.decoder.rnn_type, model.decoder.num_layers
    enc_out, final = model.encoder(model.src_embed(src), src_lengths)
    mask = torch.arange(src.size(1)).unsqueeze(0) < src_lengths.unsqueeze(1)
    Hd, E = dec.hidden_size, model.tgt_embed.embedding_dim
    course = hasattr(dec, "w_ctx")  # the bahdanau arrangement
    extra = dec.w_ctx if course else dec.w_feed  # the weights on x in W_ih [E y; x]
    cell = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[rnn_type](
        E + (0 if extra is None else extra.in_features), Hd
    ).double()
    w_ih = dec.w_emb.weight if extra is None else torch.cat([dec.w_emb.weight, extra.weight], dim=1)
    cell.weight_ih.data, cell.bias_ih.data = w_ih.clone(), dec.w_emb.bias.clone()
    cell.weight_hh.data, cell.bias_hh.data = (
        dec.w_hh.weight.clone(),
        (torch.zeros_like(cell.bias_hh) if dec.w_hh.bias is None else dec.w_hh.bias.clone()),
    )
    zeros = torch.zeros(src.size(0), Hd, dtype=enc_out.dtype)
    s = list(torch.tanh(dec.bridge(final)).split(Hd, dim=-1)) if dec.bridge is not None else [zeros] * L  # s_0
    c = [zeros] * L
    att = zeros  # a~_0
    attend = lambda top: (  # noqa: E731
        torch.softmax(reference_scores(dec.attention, top, enc_out).masked_fill(~mask, float("-inf")), dim=-1)
        .unsqueeze(2)
        .mul(enc_out)
        .sum(1)
    )
    out = []
    for t in range(tgt_in.size(1)):
        e_y = model.tgt_embed(tgt_in[:, t])
        if course:
            x = torch.cat([e_y, attend(s[-1])], dim=-1)  # c_t from s_{t-1}
        else:
            x = torch.cat([e_y, att], dim=-1) if extra is not None else e_y
        for layer in range(L):
            rnn = cell if layer == 0 else dec.upper[layer - 1]
            if rnn_type == "lstm":
                s[layer], c[layer] = rnn(x, (s[layer], c[layer]))
            else:
                s[layer] = rnn(x, s[layer])
            x = s[layer]
        if course:
            out.append(model.output(s[-1]))
            continue
        w_c = torch.cat([dec.w_cs.weight, dec.w_cc.weight], dim=1)  # W_c [s; c]
        att = torch.tanh(torch.cat([s[-1], attend(s[-1])], dim=-1) @ w_c.t())
        out.append(model.output(att))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_decoder_matches_its_equations(rnn_type, attention, variant, decoder):
    model = tiny_model(11, rnn_type, attention, decoder=decoder, **variant).double()
    batch = make_batch(SRC, TGT, list(range(len(SRC))))
    with torch.no_grad():
        got = model(batch.src, batch.src_lengths, batch.tgt_in)
        want = reference_logits(model, batch.src, batch.src_lengths, batch.tgt_in)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=0)


# --- tied embeddings ---------------------------------------------------------------------------


def test_tie_embeddings_shares_the_weight_tensor():
    model = tiny_model(7, tie_embeddings=True)
    assert model.output.weight is model.tgt_embed.weight
    names = [n for n, _ in model.named_parameters()]
    assert "output.weight" not in names or "tgt_embed.weight" not in names  # one parameter, listed once
    batch = make_batch(SRC, TGT, list(range(len(SRC))))
    # an optimiser step moves "both": they stay one tensor
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    logits = model.train()(batch.src, batch.src_lengths, batch.tgt_in)
    F.cross_entropy(logits.transpose(1, 2), batch.tgt_out, ignore_index=PAD).backward()
    opt.step()
    assert model.output.weight is model.tgt_embed.weight
    # and a reload of the state dict keeps them tied
    fresh = tiny_model(8, tie_embeddings=True)
    fresh.load_state_dict(model.state_dict())
    assert fresh.output.weight is fresh.tgt_embed.weight
    torch.testing.assert_close(fresh.output.weight, model.tgt_embed.weight, atol=0, rtol=0)
    untied = tiny_model(7)
    assert untied.output.weight is not untied.tgt_embed.weight
    three = tiny_model(7, tie_embeddings=True, tie_source_embeddings=True)
    assert three.src_embed.weight is three.tgt_embed.weight is three.output.weight
    fresh = tiny_model(9, tie_embeddings=True, tie_source_embeddings=True)
    fresh.load_state_dict(three.state_dict())
    assert fresh.src_embed.weight is fresh.output.weight
    torch.testing.assert_close(
        fresh(batch.src, batch.src_lengths, batch.tgt_in), three(batch.src, batch.src_lengths, batch.tgt_in)
    )


# --- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_every_parameter_gets_a_finite_nonzero_gradient(rnn_type, attention, tie, decoder):
    model = tiny_model(9, rnn_type, attention, enc_layers=2, dec_layers=2, tie_embeddings=tie, decoder=decoder)
    model.train()
    # every token (but PAD) appears on both sides, so every embedding row but PAD's has a gradient
    src = [[4, 5, 6, UNK, BOS, EOS], [6, 4], [5]]
    tgt = [[UNK, 5, EOS], [6, 4, 5, BOS], []]  # tgt_in = BOS + these: EOS must be in one
    batch = make_batch(src, tgt, [0, 1, 2])
    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    F.cross_entropy(logits.transpose(1, 2), batch.tgt_out, ignore_index=PAD).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        if name in ("src_embed.weight", "tgt_embed.weight"):
            assert (p.grad[PAD] == 0).all() or (tie and name == "tgt_embed.weight"), name
            assert (p.grad[PAD + 1 :].abs().sum(dim=1) > 0).all(), name  # every other row
        else:
            assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("rnn_type,attention", [("lstm", "bahdanau"), ("gru", "luong_general"), ("rnn", "luong_dot")])
def test_gradient_matches_finite_differences(rnn_type, attention):
    """d loss / d theta along random directions equals the central difference (float64): no
    path of the model is cut off from the gradient."""
    model = tiny_model(12, rnn_type, attention, enc_layers=2, dec_layers=2).double()
    batch = make_batch(SRC, TGT, list(range(len(SRC))))
    params = [p for p in model.parameters()]

    def loss() -> torch.Tensor:
        logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        return F.cross_entropy(logits.transpose(1, 2), batch.tgt_out, ignore_index=PAD)

    grads = torch.autograd.grad(loss(), params)
    g = torch.Generator().manual_seed(0)
    eps = 1e-6
    for _ in range(3):
        dirs = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        with torch.no_grad():
            for p, d in zip(params, dirs):
                p.add_(eps * d)
            up = loss()
            for p, d in zip(params, dirs):
                p.sub_(2 * eps * d)
            down = loss()
            for p, d in zip(params, dirs):
                p.add_(eps * d)
        numeric = (up - down) / (2 * eps)
        analytic = sum((gr * d).sum() for gr, d in zip(grads, dirs))
        assert float(analytic) == pytest.approx(float(numeric), rel=1e-5, abs=1e-7)
    # and per parameter: each one's own directional derivative agrees too
    for (name, p), gr in zip(model.named_parameters(), grads):
        d = torch.randn(p.shape, generator=g, dtype=p.dtype)
        with torch.no_grad():
            p.add_(eps * d)
            up = loss()
            p.sub_(2 * eps * d)
            down = loss()
            p.add_(eps * d)
        assert float((gr * d).sum()) == pytest.approx(float((up - down) / (2 * eps)), rel=1e-4, abs=1e-8), name


# --- the textbook forms beside the fast ones (model.textbook) ------------------------------------


def textbook_twin(model: Seq2Seq, cfg: ModelConfig, src_vocab: int = V, tgt_vocab: int = V) -> Seq2Seq:
    """The same weights in a model built with model.textbook: true."""
    twin = build_model(dataclasses.replace(cfg, textbook=True), src_vocab, tgt_vocab).to(next(model.parameters()).dtype)
    twin.load_state_dict(model.state_dict())  # strict: the same parameters by the same names
    return twin.eval()


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
@pytest.mark.parametrize("rnn_type,attention", ALL_ARCHS)
def test_textbook_decoder_computes_what_the_fast_one_computes(rnn_type, attention, variant, decoder):
    """torch's own cells over [E y; ã] (luong) or [E y; c] (bahdanau), tanh attention and W_c [s; c],
    against the hoisted, fused, sigmoid-form decoder: teacher forcing and step-by-step search, in float64."""
    model = tiny_model(12, rnn_type, attention, decoder=decoder, **variant).double()
    cfg = tiny_config(rnn_type, attention, decoder=decoder, **variant)
    twin = textbook_twin(model, cfg)
    name = {"luong": "TextbookDecoder", "bahdanau": "TextbookBahdanauDecoder"}[decoder]
    assert twin.textbook and type(twin.decoder).__name__ == name
    batch = make_batch(SRC, TGT, list(range(len(SRC))))
    with torch.no_grad():
        torch.testing.assert_close(
            twin(batch.src, batch.src_lengths, batch.tgt_in),
            model(batch.src, batch.src_lengths, batch.tgt_in),
            atol=1e-10,
            rtol=0,
        )
        memory_f, state_f = model.encode(batch.src, batch.src_lengths)
        memory_s, state_s = twin.encode(batch.src, batch.src_lengths)
        for t in range(batch.tgt_in.size(1)):
            log_probs_f, state_f, weights_f = model.step(batch.tgt_in[:, t], memory_f, state_f)
            log_probs_s, state_s, weights_s = twin.step(batch.tgt_in[:, t], memory_s, state_s)
            torch.testing.assert_close(log_probs_s, log_probs_f, atol=1e-10, rtol=0)
            torch.testing.assert_close(weights_s, weights_f, atol=1e-10, rtol=0)


def test_every_encoder_the_config_names_is_in_the_table():
    """model.encoder's choices (nmt/config/sections.py) and nmt.model.seq2seq.ENCODERS name the same encoders."""
    choices = typing.get_args(typing.get_type_hints(ModelConfig)["encoder"])
    assert set(choices) == set(ENCODERS) and "birnn" in choices


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_additive_attention_keeps_its_weights_in_half_precision(dtype):
    """With a large sum(v) the sigmoid form's constant would swamp the scores once rounded to
    bf16/fp16; under autocast the weights stay within 3e-3 of the float64 tanh form."""
    from nmt.model.attention import BahdanauAttention

    torch.manual_seed(0)
    att = BahdanauAttention(query_size=16, key_size=12, attention_size=64)
    with torch.no_grad():
        att.v.weight.fill_(1.5).add_(0.05 * torch.randn_like(att.v.weight))  # sum(v) about 96
    enc_out, query = torch.randn(3, 9, 12), torch.randn(3, 16)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    reference = att.double()
    with torch.no_grad():
        e = reference.v(torch.tanh(reference.W(query.double()).unsqueeze(1) + reference.U(enc_out.double())))
        want = torch.softmax(e.squeeze(2).masked_fill(~mask, float("-inf")), dim=-1)
        att = att.float()
        with torch.autocast("cpu", dtype=dtype):
            _, got = att(query, att.keys(enc_out), enc_out, mask)
    assert float(att.v.weight.detach().sum()) > 90
    assert (got.double() - want).abs().max() < 3e-3


def test_word_dropout_zeroes_whole_tokens_in_training_only_and_draws_nothing_when_off():
    """Each (sentence, position) loses its whole embedding vector with probability p, the rest
    scaled by 1 / (1 - p); evaluation is untouched; p = 0 draws no random number (runs without
    it stay bit-identical)."""
    from nmt.model.seq2seq import WordDropout

    embedded = torch.randn(64, 50, 8) + 5.0  # no element is zero by chance
    drop = WordDropout(0.25).train()
    out = drop(embedded)
    zeroed = (out == 0).all(dim=-1)
    assert ((out == 0).any(dim=-1) == zeroed).all()  # whole vectors, never parts of one
    assert 0.2 < zeroed.float().mean() < 0.3
    torch.testing.assert_close(out[~zeroed], embedded[~zeroed] / 0.75)
    assert torch.equal(drop.eval()(embedded), embedded)
    state = torch.random.get_rng_state()
    assert torch.equal(WordDropout(0.0).train()(embedded), embedded)
    assert torch.equal(torch.random.get_rng_state(), state)
    model = tiny_model(3, word_dropout=0.5).train()
    batch = make_batch(SRC, None, list(range(len(SRC))))
    tgt_in = torch.full((len(SRC), 4), BOS)
    torch.manual_seed(0)
    first = model.features(batch.src, batch.src_lengths, tgt_in)
    torch.manual_seed(0)
    assert torch.equal(model.features(batch.src, batch.src_lengths, tgt_in), first)  # the seed decides
    assert not torch.equal(model.features(batch.src, batch.src_lengths, tgt_in), first)  # and it does drop
