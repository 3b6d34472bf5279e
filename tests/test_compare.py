"""`nmt bleu A REF --compare B`: sacrebleu's paired tests, printed exactly as the sacrebleu command prints them."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nmt.cli import main
from nmt.evaluation.significance import compare_files

REFS = [
    "A group of men are loading cotton onto a truck",
    "A man sleeping in a green room on a couch.",
    "A boy wearing headphones sits on a woman's shoulders.",
    "Two men setting up a blue ice fishing hut on an iced over lake",
    "A balding man wearing a red life jacket is sitting in a small boat.",
    "A brown dog is running after the black dog.",
    "A young boy wearing a Giants jersey swings a baseball bat at an incoming pitch.",
    "A man in a cluttered office is using the telephone",
    "A smiling woman in a peach tank top stands holding a mountain bike",
    "A young child is standing alone on some jagged rocks.",
    "A person on a snowmobile in mid jump.",
    "Three young children stand around a blue and white barrel.",
] * 5  # 60 lines
SAMPLES = ("--paired-bs-n", "200", "--paired-ar-n", "500")  # few, for speed; the same for both commands


def _drop_words(line: str, rng: random.Random, p: float) -> str:
    return " ".join(w for w in line.split() if rng.random() > p)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    """ref, a (poor: many words dropped), b (better), a_close (another draw of a's kind)."""
    rng = random.Random(7)
    texts = {
        "ref": REFS,
        "a": [_drop_words(r, rng, 0.4) for r in REFS],
        "b": [_drop_words(r, rng, 0.05) for r in REFS],
    }
    texts["a_close"] = [_drop_words(r, rng, 0.4) for r in REFS]  # as poor as a, other words dropped
    paths = {}
    for name, lines in texts.items():
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def _sacrebleu(ref: Path, a: Path, b: Path, test: str, *args: str, bleu_only: bool = False) -> str:
    exe = shutil.which("sacrebleu")
    cmd = [exe] if exe else [sys.executable, "-m", "sacrebleu"]
    n = SAMPLES[1] if test == "--paired-bs" else SAMPLES[3]
    cmd += [str(ref), "-i", str(a), str(b), test, f"{test}-n", n, "-m", "bleu", *([] if bleu_only else ["chrf"]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ref.parent).stdout


def _nmt(capsys, *args: str) -> str:
    assert main(["bleu", *map(str, args)]) == 0
    return capsys.readouterr().out


def test_text_is_what_sacrebleu_prints_for_both_tests(files, capsys, monkeypatch):
    monkeypatch.chdir(files["ref"].parent)  # sacrebleu names the systems by the names given
    ours = _nmt(capsys, "a.txt", "ref.txt", "--compare", "b.txt", "--chrf", "-w", "2", *SAMPLES)
    bs = _sacrebleu(files["ref"], Path("a.txt"), Path("b.txt"), "--paired-bs", "-f", "text", "-w", "2")
    ar = _sacrebleu(files["ref"], Path("a.txt"), Path("b.txt"), "--paired-ar", "-f", "text", "-w", "2")
    assert ours == bs + "\n" + ar
    assert "Baseline: a.txt" in ours and "(p = " in ours and "μ ± 95% CI" in ours


def test_json_holds_sacrebleus_json(files, capsys, monkeypatch):
    monkeypatch.chdir(files["ref"].parent)
    ours = json.loads(_nmt(capsys, "a.txt", "ref.txt", "--compare", "b.txt", "--json", *SAMPLES))
    assert (ours["hyp"], ours["compare"], ours["lines"]) == ("a.txt", "b.txt", len(REFS))
    for test, flag in (("paired_bs", "--paired-bs"), ("paired_ar", "--paired-ar")):
        theirs = json.loads(_sacrebleu(files["ref"], Path("a.txt"), Path("b.txt"), flag, "-f", "json", bleu_only=True))
        assert ours[test]["systems"] == theirs
        assert f"{flag.removeprefix('--paired-')}:{ours[test]['samples']}" in ours[test]["signatures"]["BLEU"]


def test_json_with_chrf(files, capsys):
    """sacrebleu's own JSON printer fails on chrF's numbers (numpy float32); ours gives them."""
    ours = json.loads(_nmt(capsys, files["a"], files["ref"], "--compare", files["b"], "--chrf", "--json", *SAMPLES))
    chrf = ours["paired_bs"]["systems"][1]["chrF2"]
    assert isinstance(chrf["score"], float) and 0 < chrf["p_value"] < 0.05 and chrf["ci"] > 0


def test_p_values_tell_a_real_difference_from_a_tiny_one(files):
    samples = {"paired_bs": 200, "paired_ar": 500}
    better = compare_files(files["a"], files["b"], [files["ref"]], samples=samples)
    close = compare_files(files["a"], files["a_close"], [files["ref"]], samples=samples)
    for test in ("paired_bs", "paired_ar"):
        baseline, system = better[test][1]["BLEU"]
        assert system.score > baseline.score + 10
        assert system.p_value < 0.05
        assert close[test][1]["BLEU"][1].p_value > 0.05  # the same process: no evidence of a difference
    baseline, system = better["paired_bs"][1]["BLEU"]
    assert baseline.ci > 0 and system.ci > 0  # bootstrap: confidence intervals for both systems


@pytest.mark.parametrize(
    "compare, message",
    [("missing.txt", "missing.txt: no such file"), ("short.txt", "short.txt has 3 lines but {ref} has 60")],
)
def test_bad_input_is_one_line(files, nmt_cli, one_line_error, compare, message):
    folder = files["ref"].parent
    (folder / "short.txt").write_text("a\nb\nc\n", encoding="utf-8")
    result = nmt_cli("bleu", files["a"], files["ref"], "--compare", folder / compare)
    assert one_line_error(result, "data error", 1).endswith(message.format(ref=files["ref"]))
    assert result.stdout == ""


def test_sample_counts_must_be_positive(files, nmt_cli):
    result = nmt_cli("bleu", files["a"], files["ref"], "--compare", files["b"], "--paired-ar-n", "0")
    assert result.returncode == 2 and "--paired-ar-n: expected an integer from 1 to 100000, got 0" in result.stderr
    assert "Traceback" not in result.stderr
