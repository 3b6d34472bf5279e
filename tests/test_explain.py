"""Search that explains itself: error analysis, tuning, sampling, pictures (issue 4).

Tiny random models with a word-level sentencepiece vocabulary ("a".."e"), so that every id
sequence is a text and back, and exhaustive search over all short outputs is cheap: the best
output under the model is known exactly, and with it which search errors greedy search makes.
"""

from __future__ import annotations

import io
import itertools
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
import yaml

from nmt import analysis, tuning
from nmt.checkpoint import checkpoint_path, remember_run, save_checkpoint, write_decoding_defaults
from nmt.config import Config, DataConfig, ModelConfig, config_to_dict
from nmt.data.batching import make_batch
from nmt.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer
from nmt.errors import DataError
from nmt.evaluate import NO_SPLIT_TO_EVALUATE, eval_data
from nmt.model import build_model
from nmt.plots import attention_png, learning_curves_png, tune_png
from nmt.search import SearchOptions, greedy, max_lengths, sample
from nmt.translate import Translator

WORDS = ["a", "b", "c", "d", "e"]
L_MAX = 3  # outputs have at most this many words (then EOS)


def word_tokenizer() -> Tokenizer:
    """One piece per word: ids 4..8 are '▁a'..'▁e' in some order."""
    proto = io.BytesIO()
    lines = [" ".join(p) for p in itertools.permutations(WORDS)]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=proto, model_type="word",
                                   vocab_size=4 + len(WORDS), pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
                                   num_threads=1, minloglevel=2)
    tok = Tokenizer(proto.getvalue())
    assert len(tok) == 4 + len(WORDS)
    return tok


def tiny_translator(seed: int, alpha: float = 0.0) -> Translator:
    """A random model, sharpened so that short and long outputs compete; outputs <= L_MAX words."""
    tok = word_tokenizer()
    cfg = Config()
    cfg.model = ModelConfig(emb_size=8, enc_hidden_size=8, dec_hidden_size=8, attention_size=8, dropout=0.0)
    cfg.decoding.alpha, cfg.decoding.max_length_ratio, cfg.decoding.max_length_offset = alpha, 0.01, L_MAX
    torch.manual_seed(seed)
    model = build_model(cfg.model, len(tok), len(tok))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
        model.output.bias[EOS] -= 2.0
    return Translator(model, tok, tok, cfg, torch.device("cpu"))


def exhaustive_best(tr: Translator, source: str, alpha: float) -> tuple[str, str]:
    """(best output, worst output) of all outputs of at most L_MAX words, by exact score."""
    outputs = [" ".join(w) for n in range(L_MAX + 1) for w in itertools.product(WORDS, repeat=n)]
    scores = [s for _, s in tr.score([source] * len(outputs), outputs, alpha)]
    ranked = sorted(zip(scores, outputs), reverse=True)
    return ranked[0][1], ranked[-1][1]


def find_search_error(alpha: float):
    """A translator and a source whose greedy output is not the model's best output."""
    for seed in range(40):
        tr = tiny_translator(seed, alpha)
        for source in ["a b", "c", "d e a", "b b c", "e"]:
            best, worst = exhaustive_best(tr, source, alpha)
            if tr.translate([source], beam=1, alpha=alpha)[0] != best:
                return tr, source, best, worst
    pytest.fail("no random model where greedy search misses the best output")


# --- analysis ----------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_analysis_finds_the_known_search_error(alpha):
    tr, source, best, worst = find_search_error(alpha)
    # reference = the model's best output: greedy misses it (a search error); a beam that keeps
    # every hypothesis (5^3 + ... < 200) finds it (correct)
    greedy_run, exact_run = analysis.analyze(tr, [source], [best], beams=[1, 200], alpha=alpha)
    assert greedy_run.sentences[0].kind == analysis.SEARCH
    assert greedy_run.sentences[0].reference_score > greedy_run.sentences[0].output_score
    assert exact_run.sentences[0].kind == analysis.CORRECT
    assert exact_run.sentences[0].output == best
    # reference = the model's worst output: whatever the search does, the model is wrong
    for run in analysis.analyze(tr, [source], [worst], beams=[1, 200], alpha=alpha):
        assert run.sentences[0].kind == analysis.MODEL
    assert "search errors" in analysis.verdict(greedy_run)


def test_analysis_counts_verdict_and_json():
    tr = tiny_translator(0)
    sources = ["a b", "c", "d e a", "b b c", "e", "a"]
    refs = tr.translate(sources[:3], beam=1) + ["e e e", "d", "c c"]  # 3 correct at beam 1
    result, = analysis.analyze(tr, sources, refs, beams=[1])
    assert result.counts[analysis.CORRECT] >= 3
    assert sum(result.counts.values()) == len(sources)
    record, = analysis.to_json([result], with_sentences=True)
    assert record["beam"] == 1 and len(record["per_sentence"]) == len(sources)
    assert abs(sum(record["fractions"].values()) - 1) < 1e-9
    assert record["verdict"] == analysis.verdict(result)
    assert "beam" in analysis.table([result]).splitlines()[0]


@pytest.mark.parametrize("search,model,expect", [
    (0, 10, "a wider beam will not help"), (9, 1, "try a wider beam"), (4, 6, "can fix only the search errors"),
])
def test_verdict_wording(search, model, expect):
    r = analysis.BeamResult(5, 1.0, 20.0, 1.0, {analysis.CORRECT: 3, analysis.SEARCH: search, analysis.MODEL: model}, [])
    assert expect in analysis.verdict(r)


# --- sampling ----------------------------------------------------------------------------------

def test_sampling_is_reproducible_with_a_seed():
    tr = tiny_translator(2)
    lines = ["a b c", "", "d"]
    one = [[t.text for t in n] for n in tr.sample(lines, n=4, seed=7)]
    two = [[t.text for t in n] for n in tr.sample(lines, n=4, seed=7)]
    other = [[t.text for t in n] for n in tr.sample(lines, n=4, seed=8)]
    assert one == two
    assert one != other
    assert one[1] == [""] * 4 and all(len(n) == 4 for n in one)


def test_low_temperature_and_top_1_are_greedy():
    tr = tiny_translator(3)
    batch = make_batch([[4, 5, 6], [7], [8, 4]], None, [0, 1, 2])
    limit = max_lengths(batch.src_lengths, 1.5, 4)
    want = [h[0].tokens for h in greedy(tr.model, batch.src, batch.src_lengths, limit)]
    for kw in [dict(temperature=1e-4), dict(top_k=1)]:
        for seed in range(3):
            g = torch.Generator().manual_seed(seed)
            got = [h[0].tokens for h in sample(tr.model, batch.src, batch.src_lengths, limit,
                                                SearchOptions(generator=g, **kw))]
            assert got == want, kw


def test_samples_follow_the_model_distribution():
    """The first token's sampled frequencies match the model's probabilities."""
    tr = tiny_translator(4)
    batch = make_batch([[4, 5]] * 3000, None, list(range(3000)))
    limit = torch.full((3000,), 1)
    g = torch.Generator().manual_seed(0)
    samples = sample(tr.model, batch.src, batch.src_lengths, limit, SearchOptions(generator=g))
    first = [h[0].tokens[0] if h[0].tokens else EOS for h in samples]
    with torch.no_grad():
        memory, state = tr.model.encode(batch.src[:1], batch.src_lengths[:1])
        log_probs, _, _ = tr.model.step(torch.tensor([BOS]), memory, state)
    p = log_probs[0].exp()
    p[PAD] = p[BOS] = 0
    p = p / p.sum()
    for token in range(4, len(tr.src_tok)):
        assert abs(first.count(token) / 3000 - float(p[token])) < 0.04


# --- tuning and stored decoding defaults ------------------------------------------------------

def save_run(tr: Translator, run_dir: Path) -> Path:
    state = {"config": config_to_dict(tr.cfg), "tokenizers": {"src": tr.src_tok.model_proto, "tgt": None},
             "model": tr.model.state_dict()}
    (run_dir / "checkpoints").mkdir(parents=True)
    save_checkpoint(state, checkpoint_path(run_dir, "best"))
    return run_dir


def test_tune_table_best_and_stored_defaults(tmp_path):
    tr = tiny_translator(5, alpha=1.0)
    sources = ["a b", "c", "d e a", "b b c"]
    refs = tr.translate(sources, beam=3, alpha=0.0)
    results = tuning.tune(tr, sources, refs, beams=[1, 3], alphas=[0.0, 1.0])
    assert [(r.beam, r.alpha) for r in results] == [(1, 0.0), (1, 1.0), (3, 0.0), (3, 1.0)]
    assert results[0].bleu == results[1].bleu  # greedy ignores alpha
    assert tuning.best(results).bleu == max(r.bleu for r in results)
    assert "<- best" in tuning.table(results)

    run = save_run(tr, tmp_path / "run")
    assert Translator.load(run).cfg.decoding.beam_size == 5  # the checkpoint's default
    write_decoding_defaults(run, 3, 0.25)
    loaded = Translator.load(run)
    assert (loaded.cfg.decoding.beam_size, loaded.cfg.decoding.alpha) == (3, 0.25)


def test_cli_tune_write_then_translate_uses_it(tmp_path, nmt_cli):
    tr = tiny_translator(6)
    run = save_run(tr, tmp_path / "run")
    sources = ["a b", "c", "d e a", "b b c", "e a"]
    refs = tr.translate(sources, beam=2, alpha=0.5)
    (tmp_path / "src.txt").write_text("\n".join(sources) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n")
    result = nmt_cli("tune", "-m", run, "--src", tmp_path / "src.txt", "--ref", tmp_path / "ref.txt",
                     "--beam", "1,2", "--alpha", "0,0.5", "--write")
    assert result.returncode == 0, result.stderr
    assert "stored in" in result.stdout and png_size(run / "tune.png") == (600, 400)
    stored = (run / "decoding.yaml").read_text()
    chosen = yaml.safe_load(stored)
    assert set(chosen) == {"beam_size", "alpha"}
    default = nmt_cli("translate", "-m", run, "-i", tmp_path / "src.txt")
    explicit = nmt_cli("translate", "-m", run, "-i", tmp_path / "src.txt", "--beam", str(chosen["beam_size"]),
                       "--alpha", str(chosen["alpha"]))
    assert default.returncode == 0 and default.stdout == explicit.stdout
    override = nmt_cli("translate", "-m", run, "-i", tmp_path / "src.txt", "--beam", "1")
    assert override.stdout == "\n".join(tr.translate(sources, beam=1)) + "\n"


def test_tune_target_checkpoint_run_dir_and_plot_path(tmp_path, monkeypatch):
    run = save_run(tiny_translator(0), tmp_path / "run")
    target = tuning.TuneTarget.find(run)
    assert (target.checkpoint, target.run_dir) == (checkpoint_path(run, "best"), run)
    assert target.plot_path() == run / "tune.png" and target.plot_path("x.png") == "x.png"
    monkeypatch.setenv("NMT_STATE_DIR", str(tmp_path / "state"))
    remember_run(run)
    assert tuning.TuneTarget.find(None, write=True) == target  # the latest run
    choice = tuning.TuneResult(3, 0.5, 10.0, 1.0, 1.0)
    assert target.store(choice) == run / "decoding.yaml"
    assert yaml.safe_load((run / "decoding.yaml").read_text()) == {"beam_size": 3, "alpha": 0.5}

    loose = tmp_path / "loose.pt"
    loose.write_bytes(checkpoint_path(run, "best").read_bytes())
    outside = tuning.TuneTarget.find(loose)
    assert outside.run_dir is None and outside.plot_path() == tmp_path / "tune.png"
    with pytest.raises(DataError, match="--write: .*loose.pt is not inside a run directory"):
        tuning.TuneTarget.find(loose, write=True)
    with pytest.raises(DataError, match="not inside a run directory"):
        outside.store(choice)


def test_eval_data_files_or_split(tmp_path):
    (tmp_path / "s.txt").write_text("a b\nc\n")
    (tmp_path / "r.txt").write_text("b\nc\n")
    (tmp_path / "short.txt").write_text("b\n")
    data = DataConfig(src_lang="de", tgt_lang="en", dev=str(tmp_path / "dev"))
    src, ref = str(tmp_path / "s.txt"), str(tmp_path / "r.txt")
    assert eval_data(data, "dev", src, ref) == (["a b", "c"], ["b", "c"], src)
    for one in ({"src": src}, {"ref": ref}):
        with pytest.raises(DataError, match="^--src and --ref go together: give both files$"):
            eval_data(data, "dev", **one)
    with pytest.raises(DataError, match="s.txt has 2 lines but .*short.txt has 1: expected aligned files"):
        eval_data(data, "dev", src, str(tmp_path / "short.txt"))

    (tmp_path / "dev.de").write_text("x\n")
    (tmp_path / "dev.en").write_text("y\n")
    assert eval_data(data, "dev") == (["x"], ["y"], str(tmp_path / "dev"))
    with pytest.raises(DataError, match="^data.test: the run's config names no test split; pass --src and --ref$"):
        eval_data(data, "test")
    with pytest.raises(DataError, match="^data.test: this config names no test split to evaluate$"):
        eval_data(data, "test", missing=NO_SPLIT_TO_EVALUATE)
    # the prefixes from one config (nmt evaluate CONFIG), the languages from the run's
    other = DataConfig(src_lang="xx", tgt_lang="yy", test=str(tmp_path / "dev"))
    assert eval_data(data, "test", splits=other) == (["x"], ["y"], str(tmp_path / "dev"))


def test_bad_stored_defaults_are_a_one_line_error(tmp_path, nmt_cli, one_line_error):
    run = save_run(tiny_translator(0), tmp_path / "run")
    (run / "decoding.yaml").write_text("alpha: -3\n")
    result = nmt_cli("translate", "-m", run, input="a b\n")
    message = one_line_error(result, "config error", 2)
    assert "decoding.yaml" in message and "decoding.alpha" in message


# --- pictures ----------------------------------------------------------------------------------

def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header; fails unless the file is a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_attention_png(tmp_path):
    tr = tiny_translator(7)
    t = tr.search(["a b c d e a b"], beam=2, attention=True)[0][0]
    S, T = len(t.src_pieces), len(t.tgt_pieces)
    assert t.attention.shape == (T, S)
    path = attention_png(t, tmp_path / "att.png", title="a b c")
    assert png_size(path) == (int(100 * max(4.0, 0.45 * S + 2.0)), int(100 * max(3.0, 0.4 * T + 1.5)))


def test_learning_curves_png(tmp_path):
    records = [{"kind": "train", "step": s, "loss": 5 - s / 100} for s in range(10, 300, 10)]
    records += [{"kind": "valid", "step": s, "dev_loss": 4 - s / 200, "dev_bleu": s / 10, "best": True}
                for s in (100, 200, 300)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert png_size(learning_curves_png(tmp_path)) == (1000, 400)
    assert (tmp_path / "learning_curves.png").is_file()


def test_tune_png(tmp_path):
    results = [tuning.TuneResult(b, a, 20 + b - a, 1.0, 10.0) for b in (1, 5) for a in (0.0, 0.5, 1.0)]
    assert png_size(tune_png(results, tmp_path / "t.png")) == (600, 400)


def test_cli_plot_attention_and_plot(tmp_path, nmt_cli):
    run = save_run(tiny_translator(8), tmp_path / "run")
    result = nmt_cli("translate", "-m", run, "--plot-attention", tmp_path / "pics", input="a b\n\nc d e\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 3  # one line per input line, the empty one included
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["00001.png", "00003.png"]
    png_size(tmp_path / "pics" / "00003.png")

    (run / "metrics.jsonl").write_text(json.dumps({"kind": "valid", "step": 1, "dev_loss": 2.0, "dev_bleu": 3.0}) + "\n")
    result = nmt_cli("plot", run)
    assert result.returncode == 0 and png_size(run / "learning_curves.png") == (1000, 400)


def test_without_matplotlib_the_drawing_commands_say_how_to_get_it(tmp_path):
    run = save_run(tiny_translator(9), tmp_path / "run")
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "valid", "step": 1, "dev_loss": 2.0, "dev_bleu": 3.0}) + "\n")
    code = ("import sys; sys.modules['matplotlib'] = None; from nmt.cli import main; "
            f"sys.exit(main(['plot', {str(run)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "nmt: missing dependency: drawing needs matplotlib: pip install 'nmt[plot]' (or pip install matplotlib)"]
