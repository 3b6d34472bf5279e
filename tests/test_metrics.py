"""nmt.evaluation.metrics must print what the sacrebleu CLI prints, and its BLEU pieces must add up."""

from __future__ import annotations

import gzip
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nmt.data.corpus import read_lines
from nmt.errors import DataError
from nmt.evaluation.metrics import (
    BleuReport,
    ChrfReport,
    bleu,
    check_aligned,
    chrf,
    corpus_metrics,
    format_report,
    json_report,
    score_files,
)

# The first 24 lines of Multi30k val.en (shared/data/multi30k/val.en.gz), kept
# here so the test does not depend on the data directory.
REFS = """\
A group of men are loading cotton onto a truck
A man sleeping in a green room on a couch.
A boy wearing headphones sits on a woman's shoulders.
Two men setting up a blue ice fishing hut on an iced over lake
A balding man wearing a red life jacket is sitting in a small boat.
A lady in a red coat, holding a bluish hand bag likely of asian descent, jumping off the ground for a snapshot.
A brown dog is running after the black dog.
A young boy wearing a Giants jersey swings a baseball bat at an incoming pitch.
A man in a cluttered office is using the telephone
A smiling woman in a peach tank top stands holding a mountain bike
A young child is standing alone on some jagged rocks.
A person on a snowmobile in mid jump.
Three young children stand around a blue and white barrel.
A woman is sitting by her dried flower display at an outside market.
A female playing a song on her violin.
Three people on two dirt-bikes and one four-wheeler are riding through brown grass.
A half naked man is sleeping on his chair outdoors.
A group of people standing in front of a hut in a parking lot.
A young woman is making rugs in the rain forest
Three girls make faces as one takes a drink while they stand in a busy street.
A single man in a black t-shirt standing above the crowd at a busy bar.
Woman and man walking across wooden rope bridge with a caution sign beside it.
A man in a skirt is jumping while juggling knives.
An Asian girl in a green hat and apron is serving drinks on a tray.
""".splitlines()

SWAPS = {
    "A": "The",
    "a": "the",
    "man": "guy",
    "woman": "lady",
    "young": "little",
    "is": "was",
    "in": "inside",
    "on": "upon",
    "standing": "stands",
    "Three": "3",
}


def perturb(line: str, rng: random.Random, p: float) -> str:
    """A 'system output': swap/drop some words, sometimes lose the final period."""
    words = []
    for w in line.split():
        r = rng.random()
        if r < p / 3:
            continue  # dropped
        words.append(SWAPS.get(w, w) if r < p else w)
    if rng.random() < 0.3:
        words.append("here")
    out = " ".join(words)
    return out.rstrip(".") if rng.random() < 0.5 else out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rng = random.Random(13)
    d = tmp_path_factory.mktemp("bleu")
    hyps = [perturb(r, rng, 0.35) for r in REFS]
    hyps[3] += "  \t"  # trailing whitespace: the CLI rstrips, so must we
    ref2 = [perturb(r, rng, 0.2) for r in REFS]
    paths = {"hyp": d / "hyp.txt", "ref1": d / "ref1.en", "ref2": d / "ref2.en", "hyp_gz": d / "hyp.txt.gz"}
    paths["hyp"].write_text("\n".join(hyps) + "\n", encoding="utf-8")
    paths["ref1"].write_text("\n".join(REFS) + "\n", encoding="utf-8")
    # CRLF and no final newline in the second reference: handled like the CLI.
    paths["ref2"].write_bytes("\r\n".join(ref2).encode("utf-8"))
    with gzip.open(paths["hyp_gz"], "wt", encoding="utf-8") as fh:
        fh.write("\n".join(hyps) + "\n")
    return paths


def sacrebleu_cli(refs: list[Path], hyp: Path, *args: str, metrics: tuple[str, ...] = ("bleu", "chrf", "ter")) -> str:
    """stdout of the sacrebleu command line on these files."""
    exe = shutil.which("sacrebleu")
    cmd = [exe] if exe else [sys.executable, "-m", "sacrebleu"]
    cmd += [str(r) for r in refs] + ["-i", str(hyp), "-m", *metrics, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return proc.stdout


REF_SETS = {"1ref": ["ref1"], "2refs": ["ref1", "ref2"]}


@pytest.mark.parametrize("refs", REF_SETS.values(), ids=REF_SETS.keys())
def test_json_matches_cli(corpus: dict[str, Path], refs: list[str]) -> None:
    ref_paths = [corpus[r] for r in refs]
    result = score_files(corpus["hyp"], ref_paths, chrf=True, ter=True)
    for width in (1, 4):  # 1 is the CLI default
        cli = json.loads(sacrebleu_cli(ref_paths, corpus["hyp"], "-f", "json", "-w", str(width)))
        ours = [result[k].cli_json(width) for k in ("bleu", "chrf", "ter")]
        assert ours == cli  # same name, rounded score, signature, verbose part, fields
        full = json_report(result, width)
        for key, c in zip(("bleu", "chrf", "ter"), cli):
            assert {k: full[key][k] for k in c} == c
            assert round(full[key]["exact_score"], width) == pytest.approx(c["score"])
    assert result["bleu"].signature.startswith(f"nrefs:{len(refs)}|")
    json.dumps(json_report(result))  # serialisable


@pytest.mark.parametrize("refs", REF_SETS.values(), ids=REF_SETS.keys())
def test_text_matches_cli(corpus: dict[str, Path], refs: list[str]) -> None:
    ref_paths = [corpus[r] for r in refs]
    cli = sacrebleu_cli(ref_paths, corpus["hyp"], "-f", "text").rstrip("\n").split("\n")
    report = format_report(score_files(corpus["hyp"], ref_paths, chrf=True, ter=True))
    assert report.split("\n")[:3] == cli
    assert "BLEU = BP * exp(sum_n 1/4 log p_n)" in report
    # BLEU alone: exactly the CLI's single line
    cli1 = sacrebleu_cli(ref_paths, corpus["hyp"], "-f", "text", metrics=("bleu",))
    only_bleu = format_report(score_files(corpus["hyp"], ref_paths)).split("\n")[0]
    assert only_bleu == cli1.rstrip("\n")


def test_bleu_pieces_add_up(corpus: dict[str, Path]) -> None:
    for refs in REF_SETS.values():
        report = score_files(corpus["hyp"], [corpus[r] for r in refs])["bleu"]
        b = report.sacrebleu  # sacrebleu's BLEUScore, the numbers the report prints
        assert report.score == b.score
        assert len(b.precisions) == len(b.counts) == len(b.totals) == 4
        assert all(c > 0 for c in b.counts)  # so no smoothing is involved
        for p, c, t in zip(b.precisions, b.counts, b.totals):
            assert p == pytest.approx(100 * c / t, abs=1e-9)
        c, r = b.sys_len, b.ref_len
        assert b.ratio == pytest.approx(c / r)
        assert b.bp == pytest.approx(min(1.0, math.exp(1 - r / c)), abs=1e-12)
        recomputed = 100 * b.bp * math.exp(sum(math.log(p / 100) for p in b.precisions) / 4)
        assert abs(recomputed - b.score) < 1e-6
        assert 0 < b.bp < 1  # the fixture's hypotheses are shorter than the references


def test_zero_precision_report_does_not_crash() -> None:
    b = bleu(["a b c d e", "x y"], [["a b z d e", "x y"]])
    assert b.sacrebleu.counts[3] == 0
    text = format_report({"bleu": b})
    assert "exp-smoothed" in text


def test_evaluate_scores_keep_the_metric_reports() -> None:
    hyps, refs = ["a b c d e", "x y"], ["a b z d e", "x y "]
    s = corpus_metrics(hyps, refs)
    b, c = bleu(hyps, [refs]), chrf(hyps, [refs])
    assert isinstance(s.bleu_report, BleuReport) and isinstance(s.chrf_report, ChrfReport)
    assert (s.bleu, s.bleu_signature) == (b.score, b.signature)
    assert (s.chrf, s.chrf_signature) == (c.score, c.signature)
    assert s.accuracy == 0.5  # whitespace-trimmed equality
    assert s.line() == f"BLEU {b.score:.2f}  chrF {c.score:.2f}  exact match 50.00%"


def test_line_count_mismatch_names_both_files(corpus: dict[str, Path], tmp_path: Path) -> None:
    short = tmp_path / "short.ref"
    short.write_text("\n".join(REFS[:-2]) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        score_files(corpus["hyp"], [corpus["ref1"], short])
    msg = str(err.value)
    assert str(corpus["hyp"]) in msg and str(short) in msg
    assert str(len(REFS)) in msg and str(len(REFS) - 2) in msg
    with pytest.raises(DataError):
        check_aligned(["a"], [["a", "b"]])
    with pytest.raises(DataError):
        check_aligned([], [[]])


def test_gz_hypothesis(corpus: dict[str, Path]) -> None:
    refs = [corpus["ref1"], corpus["ref2"]]
    assert read_lines(corpus["hyp_gz"]) == read_lines(corpus["hyp"])
    plain = score_files(corpus["hyp"], refs, ter=True)
    gz = score_files(corpus["hyp_gz"], refs, ter=True)
    for key in ("bleu", "ter"):
        assert json_report(gz)[key] == json_report(plain)[key]
    cli = json.loads(sacrebleu_cli(refs, corpus["hyp_gz"], "-f", "json", metrics=("bleu",)))
    assert gz["bleu"].cli_json() == cli


def test_read_lines(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_bytes(b"one\r\ntwo  \n\nthree\x0bfour\nlast")
    assert read_lines(f) == ["one", "two  ", "", "three\x0bfour", "last"]
    f.write_bytes(b"")
    assert read_lines(f) == []

    with pytest.raises(DataError, match="nope.txt"):
        read_lines(tmp_path / "nope.txt")

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\nfine\nbro\xffken\n")
    with pytest.raises(DataError) as err:
        read_lines(bad)
    assert "bad.txt" in str(err.value) and "line 3" in str(err.value)
    assert "\n" not in str(err.value)

    notgz = tmp_path / "plain.gz"
    notgz.write_bytes(b"not gzip\n")
    with pytest.raises(DataError, match="plain.gz"):
        read_lines(notgz)


def test_every_number_of_the_report_against_a_hand_computed_case(tmp_path: Path) -> None:
    """c = 5 < r = 7 with every n-gram matched: p_n = 1, BP = exp(1 - 7/5) = exp(-0.4) = 0.67032,
    BLEU = 67.03; each printed line, digit for digit."""
    (tmp_path / "hyp").write_text("the cat sat on the\n")
    (tmp_path / "ref").write_text("the cat sat on the mat today\n")
    lines = format_report(score_files(tmp_path / "hyp", [tmp_path / "ref"])).splitlines()
    assert lines[0].endswith(" = 67.0 100.0/100.0/100.0/100.0 (BP = 0.670 ratio = 0.714 hyp_len = 5 ref_len = 7)")
    assert lines[5:] == [
        "  p1 = 5 / 5 = 1.0000",
        "  p2 = 4 / 4 = 1.0000",
        "  p3 = 3 / 3 = 1.0000",
        "  p4 = 2 / 2 = 1.0000",
        "  c = hyp_len = 5, r = ref_len = 7, ratio c/r = 0.7143",
        "  BP = min(1, exp(1 - r/c)) = exp(1 - 7/5) = 0.6703",
        "  BLEU = 0.6703 * exp((log 1.0000 + log 1.0000 + log 1.0000 + log 1.0000) / 4)",
        "       = 0.6703 * exp(0.0000) = 0.6703  ->  67.03",
    ]


def test_formula_lines_with_precisions_below_one(tmp_path: Path) -> None:
    """c = r = 6; p1..p4 = 5/6, 3/5, 2/4, 1/3; BLEU = exp((ln 5/6 + ln 3/5 + ln 1/2 + ln 1/3) / 4)
    = exp(-0.62123) = 0.53728: the mean of the four logs, computed by hand."""
    (tmp_path / "hyp").write_text("the cat sat on the mat\n")
    (tmp_path / "ref").write_text("the cat sat on a mat\n")
    lines = format_report(score_files(tmp_path / "hyp", [tmp_path / "ref"])).splitlines()
    assert lines[5:] == [
        "  p1 = 5 / 6 = 0.8333",
        "  p2 = 3 / 5 = 0.6000",
        "  p3 = 2 / 4 = 0.5000",
        "  p4 = 1 / 3 = 0.3333",
        "  c = hyp_len = 6, r = ref_len = 6, ratio c/r = 1.0000",
        "  BP = min(1, exp(1 - r/c)) = 1  (c >= r)",
        "  BLEU = 1.0000 * exp((log 0.8333 + log 0.6000 + log 0.5000 + log 0.3333) / 4)",
        "       = 1.0000 * exp(-0.6212) = 0.5373  ->  53.73",
    ]
