"""CLI paths no other test runs: `nmt analyze --json/--per-sentence --split`, sampling in
`nmt translate`, `nmt bleu --json/--chrf/--ter/-w`, `nmt evaluate CONFIG --set`, the stopping
rules of `nmt train` (max_minutes, max_epochs, patience) and the resumes that are refused.

One tiny dates run (24 steps, one thread) is trained once for the module; the stopping-rule
runs are tiny too, and the refused resumes stop before any training.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import sacrebleu
import yaml
from conftest import tiny_dates_config

from nmt.config import config_to_dict
from nmt.data.corpus import read_lines
from nmt.data.dates import write_splits

NBEST = re.compile(r"^(\d+) \|\|\| (.*) \|\|\| (-?\d+\.\d{4})$")
KINDS = {"correct", "search error", "model error", "unreachable", "blank"}
DEV, TEST = 20, 12  # sentences in the tiny run's dev and test splits (told apart by their sizes)


def write_config(base: Path, run: str, test: bool = False, **training) -> Path:
    """tiny_dates_config written as YAML (base/RUN.yaml), one torch thread; `test`: with a test split."""
    data = base / "dates"
    if not (data / "train.src").exists():
        write_splits(data, sizes={"train": 400, "dev": DEV, "test": TEST})
    cfg = tiny_dates_config(base, run, **{"num_threads": 1, **training})
    if test:
        cfg.data.test = str(data / "test")
    path = base / f"{run}.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, nmt_cli):
    """A barely trained dates run (24 steps of a 16-unit model): its outputs vary with the seed."""
    base = tmp_path_factory.mktemp("cli-paths")
    config = write_config(base, "run", test=True, max_steps=24, valid_every=12, log_every=12)
    state = base / "state"
    result = nmt_cli("train", config, state_dir=state, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"training failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return SimpleNamespace(base=base, config=config, run_dir=base / "run", data=base / "dates", state=state)


# --- nmt analyze ----------------------------------------------------------------------------------


def test_analyze_json_per_sentence_on_the_dev_split(tiny, nmt_cli):
    result = nmt_cli("analyze", "-m", tiny.run_dir, "--split", "dev", "--beam", "1,2", "--json", "--per-sentence")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["beam"] for r in records] == [1, 2]
    for r in records:
        assert r["sentences"] == DEV and sum(r["counts"].values()) == DEV
        assert set(r["counts"]) <= KINDS
        assert abs(sum(r["fractions"].values()) - 1) < 1e-9
        assert 0 <= r["bleu"] <= 100
        sentences = r["per_sentence"]
        assert [s["index"] for s in sentences] == list(range(DEV))
        assert {s["kind"] for s in sentences} <= KINDS
        assert all(isinstance(s["output_score"], float) for s in sentences)
        assert sum(s["kind"] == "correct" for s in sentences) == r["counts"].get("correct", 0)
    # beam 1 is greedy search: the same outputs as `nmt translate --beam 1` on the dev sources
    greedy = nmt_cli("translate", "-m", tiny.run_dir, "--beam", "1", "-i", tiny.data / "dev.src")
    assert greedy.returncode == 0, greedy.stderr
    assert [s["output"] for s in records[0]["per_sentence"]] == greedy.stdout.splitlines()


def test_analyze_json_without_per_sentence_and_text_on_the_test_split(tiny, nmt_cli):
    result = nmt_cli("analyze", "-m", tiny.run_dir, "--split", "test", "--beam", "1", "--json")
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["beam"] == 1 and record["sentences"] == TEST  # the test split, not dev
    assert "per_sentence" not in record
    assert isinstance(record["verdict"], str) and record["verdict"]

    text = nmt_cli("analyze", "-m", tiny.run_dir, "--split", "test", "--beam", "1")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"{tiny.data / 'test'}: {TEST} sentences"), text.stdout
    assert record["verdict"] in text.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.stdout)


# --- nmt translate --sample -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tiny) -> str:
    return "".join(line + "\n" for line in read_lines(tiny.data / "dev.src")[:6])


def test_sampling_with_a_seed_is_reproducible_and_the_seed_matters(tiny, nmt_cli, sources):
    args = ("translate", "-m", tiny.run_dir, "--sample", "--temperature", "1.5", "--top-k", "0")
    one = nmt_cli(*args, "--seed", "3", input=sources)
    two = nmt_cli(*args, "--seed", "3", input=sources)
    other = nmt_cli(*args, "--seed", "4", input=sources)
    for r in (one, two, other):
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.splitlines()) == 6
    assert one.stdout == two.stdout
    assert one.stdout != other.stdout  # a barely trained model, sampled hot: 6 lines all alike is unlikely


def test_sampling_top_1_is_greedy_search(tiny, nmt_cli, sources):
    sampled = nmt_cli("translate", "-m", tiny.run_dir, "--sample", "--top-k", "1", "--seed", "9", input=sources)
    greedy = nmt_cli("translate", "-m", tiny.run_dir, "--beam", "1", "--no-unk", input=sources)
    assert sampled.returncode == 0 and greedy.returncode == 0, sampled.stderr + greedy.stderr
    assert sampled.stdout == greedy.stdout


def test_sampling_n_best_gives_n_lines_per_input(tiny, nmt_cli, sources):
    result = nmt_cli(
        "translate", "-m", tiny.run_dir, "--sample", "--n-best", "3", "--seed", "5", "--top-k", "5", input=sources
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    matches = [NBEST.match(line) for line in lines]
    assert all(matches), lines
    assert [int(m.group(1)) for m in matches] == [i for i in range(6) for _ in range(3)]
    assert all(float(m.group(3)) <= 0 for m in matches)  # log probabilities


# --- nmt bleu ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bleu_files(tmp_path_factory):
    """A hypothesis file (references with some words changed) and two reference files."""
    d = tmp_path_factory.mktemp("bleu")
    refs = [f"the {w} cat sat on the mat number {i} today" for i, w in enumerate(["black", "white", "red"] * 10)]
    edits = [lambda r: r.replace("sat", "sits"), lambda r: r.replace(" today", ""), lambda r: r]
    hyps = [edits[i % 3](r) for i, r in enumerate(refs)]
    refs2 = [r.replace("the mat", "a mat") for r in refs]
    paths = {name: d / f"{name}.txt" for name in ("hyp", "ref", "ref2")}
    for name, lines in (("hyp", hyps), ("ref", refs), ("ref2", refs2)):
        paths[name].write_text("".join(line + "\n" for line in lines))
    return paths, hyps, refs, refs2


def test_bleu_json_chrf_ter_width_3_match_sacrebleu(nmt_cli, bleu_files):
    paths, hyps, refs, _ = bleu_files
    result = nmt_cli("bleu", paths["hyp"], paths["ref"], "--json", "--chrf", "--ter", "-w", "3")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["lines"] == len(hyps)
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    chrf = sacrebleu.metrics.CHRF().corpus_score(hyps, [refs])
    ter = sacrebleu.metrics.TER().corpus_score(hyps, [refs])
    for key, score in (("bleu", bleu), ("chrf", chrf), ("ter", ter)):
        assert out[key]["score"] == round(score.score, 3), key
        assert out[key]["exact_score"] == pytest.approx(score.score, abs=1e-9), key
    assert 0 < bleu.score < 100 and 0 < ter.score  # the files do differ
    assert out["bleu"]["counts"] == bleu.counts and out["bleu"]["totals"] == bleu.totals
    assert out["bleu"]["bp"] == pytest.approx(bleu.bp) and out["bleu"]["sys_len"] == bleu.sys_len
    assert out["bleu"]["ref_len"] == bleu.ref_len


def test_bleu_text_width_3_and_two_references(nmt_cli, bleu_files):
    paths, hyps, refs, refs2 = bleu_files
    result = nmt_cli("bleu", paths["hyp"], paths["ref"], paths["ref2"], "--chrf", "--ter", "-w", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    want = {
        "BLEU": sacrebleu.corpus_bleu(hyps, [refs, refs2]).score,
        "chrF2": sacrebleu.metrics.CHRF().corpus_score(hyps, [refs, refs2]).score,
        "TER": sacrebleu.metrics.TER().corpus_score(hyps, [refs, refs2]).score,
    }
    for i, (name, score) in enumerate(want.items()):
        assert lines[i].lstrip().startswith(f"{name}|nrefs:2|"), lines[i]
        got = re.search(r"= (-?\d+\.\d+)", lines[i])
        assert got and got.group(1) == f"{score:.3f}", (lines[i], score)


# --- nmt evaluate CONFIG --set ----------------------------------------------------------------------


def test_evaluate_config_with_set_run_dir_and_test_prefix(tiny, nmt_cli, tmp_path):
    """--set points CONFIG at a copy of the run and its test split at the dev files."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny.run_dir, copy)
    (copy / "test.hyp").unlink()
    dev = tiny.data / "dev"
    result = nmt_cli("evaluate", tiny.config, "--set", f"run_dir={copy}", "--set", f"data.test={dev}", "--beam", "1")
    assert result.returncode == 0, result.stderr
    hyp = copy / "test.hyp"
    assert result.stdout.startswith(f"test ({dev}, {DEV} sentences, beam 1, alpha "), result.stdout
    assert f"hypotheses in {hyp}" in result.stdout
    hyps, refs = read_lines(hyp), read_lines(tiny.data / "dev.tgt")
    assert len(hyps) == DEV
    bleu = re.search(r"^BLEU = (\d+\.\d+) ", result.stdout, re.M)
    assert bleu and float(bleu.group(1)) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=0.006)
    assert read_lines(tiny.run_dir / "test.hyp") and len(read_lines(tiny.run_dir / "test.hyp")) == TEST  # untouched


def test_evaluate_config_with_a_bad_set_is_a_config_error(tiny, nmt_cli, one_line_error):
    message = one_line_error(nmt_cli("evaluate", tiny.config, "--set", "decoding.no_such_key=1"), "config error", 2)
    assert "no_such_key" in message


# --- training stops ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "training,reason",
    [
        (dict(max_minutes=0.001, valid_every=1000), "reached training.max_minutes (0.001)"),
        (dict(max_epochs=1, valid_every=1000), "reached training.max_epochs (1)"),
        (
            dict(lr=1e-9, min_lr=0.0, valid_every=2, patience=1, max_steps=1000),
            "no improvement in 1 validations (training.patience)",
        ),
    ],
    ids=["max_minutes", "max_epochs", "patience"],
)
def test_training_stops(tmp_path, nmt_cli, training, reason):
    config = write_config(tmp_path, "run", **training)
    result = nmt_cli("train", config, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "run" / "train.log").read_text()
    stopped = [line for line in log.splitlines() if "stopped after" in line]
    assert len(stopped) == 1 and stopped[0].endswith(f": {reason}"), log[-2000:]
    steps, epochs = map(int, re.search(r"stopped after (\d+) steps, (\d+) epochs", stopped[0]).groups())
    if "max_epochs" in training:
        assert epochs == 1 and steps > 1
    if "patience" in training:
        assert steps == 4  # validations at 2 (the best) and 4 (no better)
    if "max_minutes" in training:
        assert steps < 1000


# --- refused resumes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting,target",
    [
        ("seed=2", "run_dir"),
        ("training.batch_size=1024", "config"),
        ("training.optimizer=adamw", "run_dir"),
        ("training.precision=bf16", "config"),
        ("tokenizer.vocab_size=150", "run_dir"),
    ],
)
def test_resume_refuses_a_changed_key(tiny, nmt_cli, one_line_error, setting, target):
    key = setting.split("=")[0]
    last = tiny.run_dir / "checkpoints" / "last.pt"
    before = (last.read_bytes(), (tiny.run_dir / "train.log").read_text())
    where = tiny.run_dir if target == "run_dir" else tiny.config
    result = nmt_cli("train", where, "--resume", "--set", setting, "--set", "training.max_steps=30")
    message = one_line_error(result, "config error", 2)
    assert message.startswith(f"{key}: the run in {tiny.run_dir} was trained with "), message
    assert "a resumed run may change only limits and schedules" in message
    assert (last.read_bytes(), (tiny.run_dir / "train.log").read_text()) == before  # nothing trained or logged
