"""Corpus BLEU / chrF / TER, scored exactly as the ``sacrebleu`` command line does.

This is the library half of ``nmt bleu HYP REF [REF ...]``. Scores come from
sacrebleu's own metric classes (nothing is reimplemented), built with the same
defaults as the ``sacrebleu`` CLI, so ``format_report`` prints the very lines
``sacrebleu REF... -i HYP -m bleu [chrf ter] -f text`` prints, and
``json_report`` holds the same keys as its JSON output. On top of that the
report spells out the pieces of the course's BLEU formula::

    BLEU = BP * exp(sum_n 1/4 log p_n),  p_n = matched_n / total_n,
    BP = min(1, exp(1 - r/c))

Typical use::

    result = score_files("hyp.txt", ["ref.txt"], chrf=True)
    print(format_report(result))            # or json.dumps(json_report(result))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from os import PathLike
from typing import Any, Sequence, Union

from sacrebleu.metrics import BLEU, CHRF, TER

from nmt.data.corpus import read_lines
from nmt.errors import DataError

StrPath = Union[str, "PathLike[str]"]

#: Decimal places the sacrebleu CLI prints scores with by default (``-w 1``).
CLI_WIDTH = 1


# --------------------------------------------------------------------------- reports


@dataclass
class BleuReport:
    """Corpus BLEU and the pieces it is made of (sacrebleu's numbers, unrounded)."""

    score: float  #: 0..100
    signature: str  #: e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``
    precisions: list[float]  #: p1..p4 in percent (smoothed where a count is 0)
    counts: list[int]  #: clipped matched n-grams, n = 1..4
    totals: list[int]  #: hypothesis n-grams, n = 1..4
    bp: float  #: brevity penalty
    sys_len: int  #: c, hypothesis length in tokens
    ref_len: int  #: r, effective reference length in tokens
    ratio: float  #: c / r
    verbose: str  #: sacrebleu's ``93.8/86.4/... (BP = ... ref_len = ...)`` part
    name: str = "BLEU"


@dataclass
class ChrfReport:
    """Corpus chrF (sacrebleu defaults: chrF2, character 6-grams)."""

    score: float
    signature: str
    name: str = "chrF2"
    verbose: str = ""


@dataclass
class TerReport:
    """Corpus TER (sacrebleu defaults: case-insensitive, tercom tokenisation)."""

    score: float
    signature: str
    num_edits: float
    ref_length: float
    name: str = "TER"
    verbose: str = ""


Report = Union[BleuReport, ChrfReport, TerReport]


# --------------------------------------------------------------------------- scoring


def check_aligned(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    hyp_name: str = "hypothesis",
    ref_names: Sequence[str] | None = None,
) -> None:
    """Raise :class:`DataError` unless every reference stream has one line per hypothesis."""
    if not refs:
        raise DataError("no reference given")
    if ref_names is None:
        ref_names = [f"reference {i + 1}" for i in range(len(refs))]
    if len(hyps) == 0:
        raise DataError(f"{hyp_name}: no lines to score")
    for ref, ref_name in zip(refs, ref_names):
        if len(ref) != len(hyps):
            raise DataError(
                f"line counts differ: {hyp_name} has {len(hyps)} lines "
                f"but {ref_name} has {len(ref)}"
            )


def _prepare(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    hyp_name: str,
    ref_names: Sequence[str] | None,
) -> tuple[list[str], list[list[str]]]:
    # The sacrebleu CLI right-strips every line it reads; do the same so that
    # scores agree with it on the same files.
    check_aligned(hyps, refs, hyp_name, ref_names)
    return [h.rstrip() for h in hyps], [[r.rstrip() for r in ref] for ref in refs]


def bleu(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    hyp_name: str = "hypothesis",
    ref_names: Sequence[str] | None = None,
) -> BleuReport:
    """Corpus BLEU of ``hyps`` against reference streams ``refs`` (each aligned with ``hyps``).

    Uses ``sacrebleu.metrics.BLEU`` with the CLI defaults (13a, exp smoothing,
    mixed case). ``hyp_name``/``ref_names`` only label error messages.
    """
    h, r = _prepare(hyps, refs, hyp_name, ref_names)
    metric = BLEU()
    s = metric.corpus_score(h, r)
    return BleuReport(
        score=s.score,
        signature=metric.get_signature().format(),
        precisions=list(s.precisions),
        counts=list(s.counts),
        totals=list(s.totals),
        bp=s.bp,
        sys_len=s.sys_len,
        ref_len=s.ref_len,
        ratio=s.ratio,
        verbose=s._verbose,
        name=s.name,
    )


def chrf(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    hyp_name: str = "hypothesis",
    ref_names: Sequence[str] | None = None,
) -> ChrfReport:
    """Corpus chrF2 with the sacrebleu CLI defaults (``sacrebleu.metrics.CHRF``)."""
    h, r = _prepare(hyps, refs, hyp_name, ref_names)
    metric = CHRF()
    s = metric.corpus_score(h, r)
    return ChrfReport(
        score=s.score, signature=metric.get_signature().format(), name=s.name, verbose=s._verbose
    )


def ter(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    hyp_name: str = "hypothesis",
    ref_names: Sequence[str] | None = None,
) -> TerReport:
    """Corpus TER with the sacrebleu CLI defaults (``sacrebleu.metrics.TER``)."""
    h, r = _prepare(hyps, refs, hyp_name, ref_names)
    metric = TER()
    s = metric.corpus_score(h, r)
    return TerReport(
        score=s.score,
        signature=metric.get_signature().format(),
        num_edits=s.num_edits,
        ref_length=s.ref_length,
        name=s.name,
        verbose=s._verbose,
    )


_bleu, _chrf, _ter = bleu, chrf, ter  # score_files' flags shadow the names


def score_files(
    hyp_path: StrPath,
    ref_paths: Sequence[StrPath],
    chrf: bool = False,
    ter: bool = False,
) -> dict[str, Any]:
    """Read a hypothesis file and reference files, check alignment, and score them.

    Returns ``{"hyp": str, "refs": [str], "lines": int, "bleu": BleuReport,
    "chrf": ChrfReport (if asked), "ter": TerReport (if asked)}``, the input of
    :func:`format_report` and :func:`json_report`.
    """
    hyp_name = str(hyp_path)
    ref_names = [str(p) for p in ref_paths]
    if not ref_names:
        raise DataError("no reference file given")
    hyps = read_lines(hyp_name)
    refs = [read_lines(p) for p in ref_names]
    check_aligned(hyps, refs, hyp_name, ref_names)
    result: dict[str, Any] = {"hyp": hyp_name, "refs": ref_names, "lines": len(hyps)}
    result["bleu"] = _bleu(hyps, refs, hyp_name, ref_names)
    if chrf:
        result["chrf"] = _chrf(hyps, refs, hyp_name, ref_names)
    if ter:
        result["ter"] = _ter(hyps, refs, hyp_name, ref_names)
    return result


# --------------------------------------------------------------------------- output


def _reports(result: dict[str, Any]) -> list[Report]:
    # sacrebleu's CLI prints metrics sorted by name: BLEU, CHRF, TER.
    return [result[k] for k in ("bleu", "chrf", "ter") if result.get(k) is not None]


def cli_line(report: Report, width: int = CLI_WIDTH) -> str:
    """The line ``sacrebleu -f text -w WIDTH`` prints for this metric (unaligned)."""
    line = f"{report.name}|{report.signature} = {report.score:.{width}f}"
    return f"{line} {report.verbose}" if report.verbose else line


def cli_json(report: Report, width: int = CLI_WIDTH) -> dict[str, Any]:
    """The object ``sacrebleu -f json -w WIDTH`` prints for this metric."""
    d: dict[str, Any] = {
        "name": report.name,
        "score": float(f"{report.score:.{width}f}"),
        "signature": report.signature,
    }
    if report.verbose:
        d["verbose_score"] = report.verbose
    for pair in report.signature.split("|"):
        key, value = pair.split(":", 1)
        d[key] = value
    return d


def _formula(b: BleuReport) -> list[str]:
    out = ["BLEU formula: BLEU = BP * exp(sum_n 1/4 log p_n), p_n = matched_n / total_n"]
    smoothed = False
    for n, (m, t, p) in enumerate(zip(b.counts, b.totals, b.precisions), 1):
        note = ""
        if m == 0 and p > 0:
            note, smoothed = "  (0 matches: exp-smoothed)", True
        out.append(f"  p{n} = {m} / {t} = {p / 100:.4f}{note}")
    c, r = b.sys_len, b.ref_len
    out.append(f"  c = hyp_len = {c}, r = ref_len = {r}, ratio c/r = {b.ratio:.4f}")
    if c >= r:
        out.append("  BP = min(1, exp(1 - r/c)) = 1  (c >= r)")
    elif c == 0:
        out.append("  BP = 0  (empty hypothesis)")
    else:
        out.append(f"  BP = min(1, exp(1 - r/c)) = exp(1 - {r}/{c}) = {b.bp:.4f}")
    if all(p > 0 for p in b.precisions):
        mean_log = sum(math.log(p / 100) for p in b.precisions) / len(b.precisions)
        logs = " + ".join(f"log {p / 100:.4f}" for p in b.precisions)
        out.append(f"  BLEU = {b.bp:.4f} * exp(({logs}) / 4)")
        out.append(
            f"       = {b.bp:.4f} * exp({mean_log:.4f}) = {b.bp * math.exp(mean_log):.4f}"
            f"  ->  {b.score:.2f}"
        )
    else:
        out.append(f"  BLEU = 0  (some p_n = 0)  ->  {b.score:.2f}")
    if smoothed:
        out.append("  (sacrebleu's exp smoothing replaces a zero p_n by 1/(2^k * total_n))")
    if not b.signature.startswith("nrefs:1|"):
        out.append("  (several references: clipping uses the max count over references,")
        out.append("   r sums the reference length closest to each hypothesis)")
    return out


def format_report(result: dict[str, Any], width: int = CLI_WIDTH) -> str:
    """Human-readable report of a :func:`score_files` result.

    Starts with exactly the lines ``sacrebleu REF... -i HYP -m bleu [chrf ter]
    -f text -w WIDTH`` prints (aligned on ``=`` the same way), then a section
    spelling out the BLEU formula with the actual numbers.
    """
    lines = [cli_line(r, width) for r in _reports(result)]
    if len(lines) > 1:  # sacrebleu aligns several metrics on the '='
        w = max(line.index("=") - 1 for line in lines)
        lines = [f"{ln[: ln.index('=') - 1]:>{w}}{ln[ln.index('=') - 1:]}" for ln in lines]
    if "bleu" in result:
        lines.append("")
        lines.extend(_formula(result["bleu"]))
    return "\n".join(lines)


def json_report(result: dict[str, Any], width: int = CLI_WIDTH) -> dict[str, Any]:
    """JSON-serialisable form of a :func:`score_files` result for ``--json``.

    Each metric's object has the keys of sacrebleu's JSON output (``score``
    rounded to ``width`` like the CLI), plus ``exact_score`` and, for BLEU,
    the formula pieces (precisions, counts, totals, bp, sys_len, ref_len, ratio).
    """
    out: dict[str, Any] = {k: result[k] for k in ("hyp", "refs", "lines") if k in result}
    for key in ("bleu", "chrf", "ter"):
        report = result.get(key)
        if report is None:
            continue
        d = cli_json(report, width)
        d["exact_score"] = report.score
        extra = asdict(report)
        for k in ("score", "signature", "name", "verbose"):
            extra.pop(k)
        d.update(extra)
        out[key] = d
    return out
