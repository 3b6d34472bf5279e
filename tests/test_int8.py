"""`--precision int8`: dynamic int8 quantization of the layers where it gains, fp32 activations, same search.

int8 is for the CPU: every model here is loaded with device="cpu" (on a GPU machine auto means cuda)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_dates_config
from tiny_runs import LINES, shared_run

from nmt.cli import main
from nmt.config import config_from_dict, config_to_dict
from nmt.data.batching import make_batch
from nmt.data.tokenizer import BOS
from nmt.errors import ConfigError
from nmt.model import build_model
from nmt.runtime import autocast, check_precision
from nmt.translate import Translator
from nmt.translate.quantize import int8_layers, quantize_int8

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return shared_run(tmp_path_factory)


def _is_int8(module: torch.nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized.dynamic")


def test_the_chosen_layers_are_int8_and_the_rest_fp32(run):
    engine = torch.backends.quantized.engine
    fp32, int8 = Translator.load(run, device="cpu"), Translator.load(run, device="cpu", precision="int8")
    assert torch.backends.quantized.engine == engine  # the process's setting is left as it was
    assert int8.precision == "int8"
    with autocast(CPU, "int8"):  # activations stay fp32: no bf16 autocast
        assert not torch.is_autocast_enabled("cpu")
    layers = int8_layers(fp32.model.model)  # the frozen Seq2Seq's (nmt.model.frozen)
    decoder = ["decoder.w_hh", "decoder.w_feed", "decoder.w_cs", "decoder.w_cc"]  # W_e: search's table (fp32)
    assert layers == ["output", *decoder, "encoder.forward_rnns.0", "encoder.backward_rnns.0"]
    modules = dict(int8.model.model.named_modules())
    assert all(_is_int8(modules[name]) for name in layers)
    for name in ("decoder.attention.W", "decoder.w_emb"):
        assert not _is_int8(modules[name]) and modules[name].weight.dtype == torch.float32
    assert not any(_is_int8(m) for m in fp32.model.modules())  # the fp32 model is left as it was
    ensemble = Translator.load([run, run], device="cpu").model
    assert int8_layers(ensemble) == [f"members.{i}.model.{name}" for i in (0, 1) for name in layers]
    members = dict(Translator.load([run, run], device="cpu", precision="int8").model.named_modules())
    assert all(_is_int8(members[f"members.{i}.model.{name}"]) for i in (0, 1) for name in layers)
    w = fp32.model.model.output.weight
    assert torch.allclose(modules["output"].weight().dequantize(), w, atol=w.abs().max().item() / 100)


def test_int8_scores_stay_close_to_fp32(run):
    fp32, int8 = Translator.load(run, device="cpu"), Translator.load(run, device="cpu", precision="int8")
    results = fp32.search(LINES, beam=3, n_best=3)
    hyps = [(line, h) for line, nbest in zip(LINES, results) if line for h in nbest]
    sources, ids = [line for line, _ in hyps], [h.ids for _, h in hyps]
    ours = [lp for lp, _ in int8.score(sources, ids)]
    theirs = [h.log_prob for _, h in hyps]
    assert ours != theirs  # int8 products: not the same numbers
    assert ours == pytest.approx(theirs, rel=0.05, abs=0.05)
    translations = int8.search(LINES, beam=3, n_best=3)
    assert [len(n) for n in translations] == [3] * len(LINES) and translations[2][0].text == ""


def test_log_probs_stay_fp32(run):
    int8 = Translator.load(run, device="cpu", precision="int8")
    lines = [line for line in LINES if line]
    batch = make_batch(int8.src_tok.encode(lines), None, list(range(len(lines))))
    with int8._autocast():
        memory, state = int8.model.encode(batch.src, batch.src_lengths)
        log_probs, _, _ = int8.model.step(torch.full((len(lines),), BOS), memory, state)
    assert log_probs.dtype == torch.float32
    assert torch.allclose(log_probs.exp().sum(dim=1), torch.ones(len(lines)), atol=1e-4)


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
@pytest.mark.parametrize("textbook", [False, True])
@pytest.mark.parametrize("attention, rnn", [("bahdanau", "lstm"), ("luong_general", "gru"), ("bahdanau", "rnn")])
def test_every_decoder_arrangement_decodes_in_int8(tmp_path, decoder, textbook, attention, rnn):
    raw = config_to_dict(tiny_dates_config(tmp_path, "run"))
    settings = [f"model.decoder={decoder}", f"model.textbook={textbook}", f"model.attention={attention}"]
    cfg = config_from_dict(raw, [*settings, f"model.rnn_type={rnn}"])
    model = build_model(cfg.model, 30, 20).eval()
    int8 = quantize_int8(model, CPU)
    assert any(_is_int8(m) for m in int8.modules())
    src, lengths = torch.tensor([[5, 6, 7, 3], [5, 6, 3, 0]]), torch.tensor([4, 3])
    with torch.inference_mode():
        memory, state = int8.encode(src, lengths)
        log_probs, _, weights = int8.step(torch.full((2,), BOS), memory, state)
        logits = int8(src, lengths, torch.tensor([[BOS, 5, 6], [BOS, 7, 0]]))
        expected = model.step(torch.full((2,), BOS), *model.encode(src, lengths))[0]
    assert log_probs.shape == (2, 20) and weights.shape == (2, 4) and logits.shape == (2, 3, 20)
    assert torch.allclose(log_probs, expected, atol=0.05)


@pytest.mark.parametrize(
    "ties",
    [
        ["model.tie_embeddings=true"],
        ["model.tie_embeddings=true", "model.tie_source_embeddings=true", "tokenizer.joint=true"],
    ],
)
def test_tied_embeddings_decode_in_int8_and_stay_tied_in_fp32(tmp_path, ties):
    cfg = config_from_dict(config_to_dict(tiny_dates_config(tmp_path, "run")), ties)
    model = build_model(cfg.model, 20, 20).eval()
    int8 = quantize_int8(model, CPU)
    assert model.output.weight is model.tgt_embed.weight  # the fp32 model keeps its ties
    src, lengths = torch.tensor([[5, 6, 7, 3], [5, 6, 3, 0]]), torch.tensor([4, 3])
    with torch.inference_mode():
        log_probs = int8.step(torch.full((2,), BOS), *int8.encode(src, lengths))[0]
        expected = model.step(torch.full((2,), BOS), *model.encode(src, lengths))[0]
    assert torch.allclose(log_probs, expected, atol=0.05)


def test_cli_and_refusals(run, tmp_path, capsys):
    out = tmp_path / "out.txt"
    src = tmp_path / "in.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    args = ["-m", str(run), "--precision", "int8", "--device", "cpu", "-i", str(src), "-o", str(out)]
    assert main(["translate", *args]) == 0
    assert len(out.read_text(encoding="utf-8").split("\n")) == len(LINES) + 1
    with pytest.raises(ConfigError, match="--precision: int8 is for the CPU"):
        check_precision(torch.device("cuda"), "int8", "--precision")
    with pytest.raises(ConfigError, match="int8 is for the CPU"):
        quantize_int8(torch.nn.Linear(2, 2), torch.device("cuda"))
