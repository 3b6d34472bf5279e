"""Is system B better than system A? sacrebleu's own paired significance tests (`nmt bleu A REF --compare B`).

Nothing here computes a statistic: the tests are sacrebleu's `PairedTest` (paired bootstrap
resampling, Koehn 2004, and paired approximate randomisation, Riezler and Maxwell 2005), run
exactly as ``sacrebleu REF -i A B --paired-bs`` / ``--paired-ar`` runs them (the same metric
objects, the same seed: ``SACREBLEU_SEED``, default 12345), and the tables are printed by
sacrebleu's own ``print_results_table``, so the text is the text the sacrebleu command prints
(``-f text``, no colours) and the JSON holds its keys. A is the baseline; each table gives both
systems' scores, B's p-value, and (bootstrap) each system's bootstrap mean and 95% confidence
interval.

Typical use::

    result = compare_files("a.hyp", "b.hyp", ["ref.txt"])
    print(format_comparison(result))        # or json.dumps(json_comparison(result))
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Sequence
from typing import Any

from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.significance import PairedTest
from sacrebleu.utils import Color, print_results_table

from nmt.data.corpus import read_lines
from nmt.errors import DataError
from nmt.evaluation.metrics import CLI_WIDTH, StrPath, check_aligned

#: test name -> (sacrebleu's test type, its command-line flag); bootstrap first, as in docs/after_training.md
TESTS = {"paired_bs": ("bs", "--paired-bs"), "paired_ar": ("ar", "--paired-ar")}
#: sacrebleu's default number of bootstrap resamples and of randomisation trials
DEFAULT_SAMPLES = {"paired_bs": 1000, "paired_ar": 10000}


def _metrics(refs: list[list[str]], chrf: bool, ter: bool) -> dict[str, Any]:
    """The metric objects of the sacrebleu CLI's `-m bleu [chrf ter]`, references cached as it does."""
    metrics: dict[str, Any] = {"BLEU": BLEU(references=refs)}
    if chrf:
        metrics["CHRF"] = CHRF(references=refs)
    if ter:
        metrics["TER"] = TER(references=refs)
    return metrics


def compare_files(
    hyp_a: StrPath,
    hyp_b: StrPath,
    ref_paths: Sequence[StrPath],
    chrf: bool = False,
    ter: bool = False,
    samples: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Run both paired tests of system B (`hyp_b`) against the baseline A (`hyp_a`).

    samples: test name (TESTS) -> resamples / trials (default DEFAULT_SAMPLES). Returns
    ``{"hyp": A, "compare": B, "refs": [...], "lines": n, "paired_bs": (signatures, scores),
    "paired_ar": (...)}``, where (signatures, scores) is what sacrebleu's PairedTest returns:
    metric name -> Signature, and "System" / metric name -> one entry per system (Result).
    """
    names = [str(hyp_a), str(hyp_b)]
    refs = [[x.rstrip() for x in read_lines(p)] for p in ref_paths]
    if not refs:
        raise DataError("no reference file given")
    systems = [[x.rstrip() for x in read_lines(name)] for name in names]
    for name, hyps in zip(names, systems):
        check_aligned(hyps, refs, name, [str(p) for p in ref_paths])
    named = [(f"Baseline: {names[0]}", systems[0]), (names[1], systems[1])]  # as sacrebleu names them
    result: dict[str, Any] = {"hyp": names[0], "compare": names[1], "refs": [str(p) for p in ref_paths]}
    result["lines"] = len(systems[0])
    for test, (kind, _) in TESTS.items():
        n = (samples or {}).get(test, DEFAULT_SAMPLES[test])
        if n < 1:
            raise DataError(f"{test}: expected a number of samples >= 1, got {n}")
        paired = PairedTest(named, _metrics(refs, chrf, ter), references=None, test_type=kind, n_samples=n)
        result[test] = (*paired(), n)
    return result


def _sacrebleu_table(signatures: dict, scores: dict, test: str, n: int, width: int) -> str:
    """What sacrebleu's print_results_table prints for one test (``-f text``), without colours."""
    args = argparse.Namespace(
        format="text",
        width=width,
        paired_bs=test == "paired_bs",
        paired_ar=test == "paired_ar",
        paired_bs_n=n,
        paired_ar_n=n,
    )
    sigs = {name: sig.format() for name, sig in signatures.items()}
    out, colours = io.StringIO(), Color.ENABLE_COLORS
    Color.ENABLE_COLORS = False
    try:
        with contextlib.redirect_stdout(out):
            print_results_table({k: list(v) for k, v in scores.items()}, sigs, args)
    finally:
        Color.ENABLE_COLORS = colours
    return out.getvalue()


def format_comparison(result: dict[str, Any], width: int = CLI_WIDTH) -> str:
    """Both tests as the sacrebleu command prints them (``-f text -w WIDTH``), bootstrap first."""
    tables = []
    for test in TESTS:
        signatures, scores, n = result[test]
        tables.append(_sacrebleu_table(signatures, scores, test, n, width))
    return "\n".join(tables).rstrip("\n")


def _json_systems(scores: dict) -> list[dict[str, Any]]:
    """sacrebleu's ``-f json`` list for one test: {"system": name, METRIC: {score, p_value, mean,
    ci}} per system. Built here, key for key, because sacrebleu's own printer fails on chrF's
    numpy float32 numbers (not JSON serialisable); they are converted to floats."""

    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    out = []
    for i, name in enumerate(scores["System"]):
        entry: dict[str, Any] = {"system": name}
        for metric in (m for m in scores if m != "System"):
            r = scores[metric][i]
            entry[metric] = {key: number(getattr(r, key)) for key in ("score", "p_value", "mean", "ci")}
        out.append(entry)
    return out


def json_comparison(result: dict[str, Any]) -> dict[str, Any]:
    """The files, and for each test sacrebleu's JSON (one object per system, unrounded as
    sacrebleu's) with the number of samples and the metrics' signatures."""
    out: dict[str, Any] = {k: result[k] for k in ("hyp", "compare", "refs", "lines")}
    for test in TESTS:
        signatures, scores, n = result[test]
        out[test] = {
            "samples": n,
            "systems": _json_systems(scores),
            "signatures": {name: sig.format() for name, sig in signatures.items()},
        }
    return out
