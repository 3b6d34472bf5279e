"""Real data: the Multi30k pipeline end to end on the shared corpus.

The corpus lies in ../shared/data/multi30k beside the project on the project's machines and in
CI; elsewhere these tests are skipped. `scripts/get_multi30k.sh --from` copies it; the reference
config trains a few steps with its own sentencepiece model; translation and the benchmark run
on the real test split. (The full 60-minute run and its scores are in the README.)
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, validations_as_evaluated

SHARED = REPO_ROOT.parent / "shared" / "data" / "multi30k"
LINES = {"train": 29_000, "val": 1_014, "test_2016_flickr": 1_000}

pytestmark = pytest.mark.skipif(not (SHARED / "train.de.gz").is_file(), reason=f"no Multi30k corpus in {SHARED}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "multi30k"
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts/get_multi30k.sh"), "--from", str(SHARED), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return out


def data_overrides(corpus: Path) -> list[str]:
    return [
        "--set",
        f"data.train={corpus}/train",
        "--set",
        f"data.dev={corpus}/val",
        "--set",
        f"data.test={corpus}/test_2016_flickr",
    ]


def test_get_multi30k_copies_every_split_and_language(corpus):
    for split, n in LINES.items():
        for lang in ("de", "en", "fr", "cs"):
            with gzip.open(corpus / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                assert sum(1 for _ in f) == n, (split, lang)


@pytest.mark.slow  # (.ci/run runs it after the default suite)
def test_reference_config_trains_and_translates_real_data(corpus, tmp_path, nmt_cli):
    run = tmp_path / "run"
    result = nmt_cli(
        "train",
        "configs/multi30k_de_en.yaml",
        *data_overrides(corpus),
        "--set",
        f"run_dir={run}",
        "--set",
        "training.max_steps=30",
        "--set",
        "training.valid_every=15",
        "--set",
        "training.log_every=10",
        "--set",
        "decoding.beam_size=2",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "8000 source / 8000 target pieces" in result.stderr  # the joint 8k vocabulary
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 3 and losses[-1] < losses[0] - 1.0  # it learns: 10 -> 30 steps
    assert [r["step"] for r in records if r["kind"] == "valid"] == [15, 30]
    test = [r for r in records if r["kind"] == "test"]
    assert len(test) == 1 and test[0]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert len((run / "test.hyp").read_text(encoding="utf-8").splitlines()) == LINES["test_2016_flickr"]

    lines = ["Ein Mann fährt Fahrrad.", "", "Zwei Hunde spielen im Schnee.", "   ", "Ein Kind."]
    out = nmt_cli("translate", "-m", run, "--beam", "3", input="\n".join(lines) + "\n")
    assert out.returncode == 0, out.stderr
    got = out.stdout.split("\n")[:-1]
    assert len(got) == len(lines) and got[1] == "" and all(got[i] for i in (0, 2, 4))


@pytest.mark.slow  # (.ci/run runs it after the default suite)
def test_benchmark_reports_every_key_on_real_data(corpus, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts/bench.py"),
            "--config",
            str(REPO_ROOT / "configs/multi30k_de_en.yaml"),
            *data_overrides(corpus),
            "--steps",
            "2",
            "--warmup",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    for key in (
        "train_tgt_tokens_per_s",
        "mfu",
        "greedy_sents_per_s",
        "beam5_sents_per_s",
        "peak_rss_mb",
        "fp32_peak_gflops",
    ):
        assert report[key] > 0, key
        assert key in result.stdout  # the printed table
    assert 0 < report["mfu"] < 1.5  # a FLOP count far off would show here
    assert report["decode_sentences"] == LINES["test_2016_flickr"]
    # bf16: measured where the CPU has bf16 kernels, else said why not
    assert (report["train_tgt_tokens_per_s_bf16"] or 0) > 0 or "bf16_note" in report


@pytest.mark.slow  # (.ci/run runs it after the default suite)
def test_the_dev_bleu_training_logs_is_that_of_the_steps_checkpoint(corpus, tmp_path, nmt_cli):
    """The reference model a few hundred sentences' worth of steps on the real corpus, three
    validations on 300 dev sentences: each validation's logged greedy BLEU, chrF and exact
    match are what `nmt evaluate RUN --split dev --beam 1` reports for that step's
    checkpoint. (Validation once decoded with the first validation's output layer from the
    second on, while every loss was right.)"""
    dev = tmp_path / "dev"
    for lang in ("de", "en"):
        with gzip.open(corpus / f"val.{lang}.gz", "rt", encoding="utf-8") as f:
            Path(f"{dev}.{lang}").write_text("".join(f.readlines()[:300]), encoding="utf-8")
    run = tmp_path / "run"
    steps = ["training.max_steps=60", "training.valid_every=20", "training.keep_last=3", "training.batch_size=2000"]
    sets = [item for s in [f"run_dir={run}", f"data.dev={dev}", "data.test=''", *steps] for item in ("--set", s)]
    result = nmt_cli("train", "configs/multi30k_de_en.yaml", *data_overrides(corpus), *sets, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    valid = validations_as_evaluated(run, nmt_cli, tmp_path)
    assert [r["step"] for r in valid] == [20, 40, 60]
    assert len({round(r["dev_bleu"], 2) for r in valid}) == 3  # the model's output changes from one to the next
