"""A run written by an earlier nmt loads, translates and resumes unchanged (tests/fixtures/README.md
says how tests/fixtures/run_v2 was made, and by which commit)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from nmt.data.binary import read_header
from nmt.data.dates import write_splits
from nmt.rundir.checkpoint import load_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: where the fixture's config says its data lies (absolute, as every run stores it)
DATA = Path("/tmp/nmt-compat-fixture/dates")


def copied_run(tmp_path: Path) -> Path:
    """A copy of the fixture run (nothing writes into the repository)."""
    return Path(shutil.copytree(FIXTURES / "run_v2", tmp_path / "run"))


def nbest(lines: list[str]) -> list[tuple[str, str, float]]:
    """`i ||| text ||| score` lines -> (i, text, score)."""
    return [(i, text, float(score)) for i, text, score in (line.split(" ||| ") for line in lines)]


def test_an_earlier_runs_model_translates_as_it_did(tmp_path, nmt_cli):
    run = copied_run(tmp_path)
    inputs = FIXTURES / "run_v2_inputs.txt"
    result = nmt_cli("translate", "-m", run, "--beam", "3", "--n-best", "2", "-i", inputs)
    assert result.returncode == 0, result.stderr
    expected = nbest((FIXTURES / "run_v2_expected.txt").read_text(encoding="utf-8").splitlines())
    got = nbest(result.stdout.splitlines())
    assert [(i, text) for i, text, _ in got] == [(i, text) for i, text, _ in expected]
    assert all(abs(a[2] - b[2]) <= 2e-4 for a, b in zip(got, expected))  # scores as printed (4 decimals)


def test_an_earlier_run_resumes(tmp_path, nmt_cli):
    """`nmt train RUN --resume` goes on from the run's step 300 with its own data, tokenizers,
    encoded corpus (train.bin, read as it is) and optimizer state, and writes the later steps
    beside the earlier ones."""
    write_splits(DATA, only_missing=True)  # the same bytes the run was trained on
    run = copied_run(tmp_path)
    for stats in read_header(run / "train.bin")["fingerprint"]["inputs"]:
        assert Path(stats["path"]).stat().st_size == stats["size"]
        os.utime(stats["path"], ns=(stats["mtime_ns"], stats["mtime_ns"]))  # the files it encoded: reused
    result = nmt_cli("train", run, "--resume", "--set", "training.max_steps=320", "--set", "training.valid_every=10")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr and "encoding again" not in result.stderr
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["progress"]["step"] == 320
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "valid"][-3:] == [300, 310, 320]
