"""Corpus BLEU / chrF / TER, scored and printed exactly as the ``sacrebleu`` command line does.

This is the library half of ``nmt bleu HYP REF [REF ...]``. Scores come from
sacrebleu's own metric classes (nothing is reimplemented), built with the same
defaults as the ``sacrebleu`` CLI, and are printed by sacrebleu's own
``Score.format``: ``format_report`` prints the very lines
``sacrebleu REF... -i HYP -m bleu [chrf ter] -f text`` prints, and
``json_report`` holds the same keys as its JSON output. On top of that the
report spells out the pieces of the course's BLEU formula::

    BLEU = BP * exp(sum_n 1/4 log p_n),  p_n = matched_n / total_n,     (the log: notes that
                                                                        write exp(1/4 sum p_n) drop it)
    BP = min(1, exp(1 - r/c))

Typical use::

    result = score_files("hyp.txt", ["ref.txt"], chrf=True)
    print(format_report(result))            # or json.dumps(json_report(result))
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any, ClassVar, Union

from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric, Score
from sacrebleu.metrics.bleu import BLEUScore
from sacrebleu.metrics.chrf import CHRFScore
from sacrebleu.metrics.ter import TERScore

from nmt.data.corpus import read_lines
from nmt.errors import DataError

StrPath = Union[str, "PathLike[str]"]

#: Decimal places the sacrebleu CLI prints scores with by default (``-w 1``).
CLI_WIDTH = 1


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True, eq=False)
class Report:
    """One corpus score: sacrebleu's score object and the signature of the metric that made it.

    The printed forms are sacrebleu's own (``Score.format``), so they cannot drift from
    what the ``sacrebleu`` CLI prints for the same score and signature.
    """

    sacrebleu: Score  #: sacrebleu's score object (unrounded ``score``, ``name``, fields)
    signature: str  #: e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``

    #: public fields of the score object that ``json_report`` adds to sacrebleu's JSON keys
    EXTRA_FIELDS: ClassVar[tuple[str, ...]] = ()

    @property
    def score(self) -> float:
        """The unrounded score, 0..100."""
        return self.sacrebleu.score

    @property
    def name(self) -> str:
        """The metric's name as sacrebleu prints it: ``BLEU``, ``chrF2``, ``TER``."""
        return self.sacrebleu.name

    def cli_line(self, width: int = CLI_WIDTH) -> str:
        """The line ``sacrebleu -f text -w WIDTH`` prints for this metric (unaligned)."""
        return self.sacrebleu.format(width, signature=self.signature)

    def cli_json(self, width: int = CLI_WIDTH) -> dict[str, Any]:
        """The object ``sacrebleu -f json -w WIDTH`` prints for this metric."""
        return json.loads(self.sacrebleu.format(width, signature=self.signature, is_json=True))

    def extra_fields(self) -> dict[str, Any]:
        """``EXTRA_FIELDS`` of the score object, by name."""
        return {key: getattr(self.sacrebleu, key) for key in self.EXTRA_FIELDS}


@dataclass(frozen=True, eq=False)
class BleuReport(Report):
    """Corpus BLEU and the pieces it is made of (sacrebleu's numbers, unrounded).

    ``sacrebleu.precisions``: p1..p4 in percent (smoothed where a count is 0);
    ``.counts``: clipped matched n-grams and ``.totals``: hypothesis n-grams, n = 1..4;
    ``.bp``: brevity penalty; ``.sys_len``: c, the hypothesis length in tokens;
    ``.ref_len``: r, the effective reference length in tokens; ``.ratio``: c / r.
    """

    sacrebleu: BLEUScore
    EXTRA_FIELDS = ("precisions", "counts", "totals", "bp", "sys_len", "ref_len", "ratio")


@dataclass(frozen=True, eq=False)
class ChrfReport(Report):
    """Corpus chrF (sacrebleu defaults: chrF2, character 6-grams)."""

    sacrebleu: CHRFScore


@dataclass(frozen=True, eq=False)
class TerReport(Report):
    """Corpus TER (sacrebleu defaults: case-insensitive, tercom tokenisation)."""

    sacrebleu: TERScore
    EXTRA_FIELDS = ("num_edits", "ref_length")


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
            raise DataError(f"line counts differ: {hyp_name} has {len(hyps)} lines but {ref_name} has {len(ref)}")


def _corpus_score(
    metric: Metric,
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    hyp_name: str,
    ref_names: Sequence[str] | None,
) -> tuple[Any, str]:
    """``metric``'s corpus score of the checked, right-stripped lines, and its signature."""
    check_aligned(hyps, refs, hyp_name, ref_names)
    # The sacrebleu CLI right-strips every line it reads; do the same so that
    # scores agree with it on the same files.
    h, r = [x.rstrip() for x in hyps], [[x.rstrip() for x in ref] for ref in refs]
    score = metric.corpus_score(h, r)
    return score, metric.get_signature().format()  # the signature needs the score's nrefs


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
    return BleuReport(*_corpus_score(BLEU(), hyps, refs, hyp_name, ref_names))


def chrf(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    hyp_name: str = "hypothesis",
    ref_names: Sequence[str] | None = None,
) -> ChrfReport:
    """Corpus chrF2 with the sacrebleu CLI defaults (``sacrebleu.metrics.CHRF``)."""
    return ChrfReport(*_corpus_score(CHRF(), hyps, refs, hyp_name, ref_names))


def ter(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    hyp_name: str = "hypothesis",
    ref_names: Sequence[str] | None = None,
) -> TerReport:
    """Corpus TER with the sacrebleu CLI defaults (``sacrebleu.metrics.TER``)."""
    return TerReport(*_corpus_score(TER(), hyps, refs, hyp_name, ref_names))


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


def _formula(report: BleuReport) -> list[str]:
    """The course's formula with this score's numbers: p_n, c, r, BP and BLEU."""
    b = report.sacrebleu
    out = [
        "BLEU formula: BLEU = BP * exp(sum_n 1/4 log p_n), p_n = matched_n / total_n",
        "  (the geometric mean of p_1..p_4, as in Papineni et al. and sacrebleu: the mean of their logs;",
        "   notes that write exp(1/4 sum p_n) drop the log)",
    ]
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
        out.append(f"       = {b.bp:.4f} * exp({mean_log:.4f}) = {b.bp * math.exp(mean_log):.4f}  ->  {b.score:.2f}")
    else:
        out.append(f"  BLEU = 0  (some p_n = 0)  ->  {b.score:.2f}")
    if smoothed:
        out.append("  (sacrebleu's exp smoothing replaces a zero p_n by 1/(2^k * total_n))")
    if not report.signature.startswith("nrefs:1|"):
        out.append("  (several references: clipping uses the max count over references,")
        out.append("   r sums the reference length closest to each hypothesis)")
    return out


def format_report(result: dict[str, Any], width: int = CLI_WIDTH) -> str:
    """Human-readable report of a :func:`score_files` result.

    Starts with exactly the lines ``sacrebleu REF... -i HYP -m bleu [chrf ter]
    -f text -w WIDTH`` prints (aligned on ``=`` the same way), then a section
    spelling out the BLEU formula with the actual numbers.
    """
    lines = [r.cli_line(width) for r in _reports(result)]
    if len(lines) > 1:  # sacrebleu aligns several metrics on the '='
        w = max(line.index("=") - 1 for line in lines)
        lines = [f"{ln[: ln.index('=') - 1]:>{w}}{ln[ln.index('=') - 1 :]}" for ln in lines]
    if "bleu" in result:
        lines.append("")
        lines.extend(_formula(result["bleu"]))
    return "\n".join(lines)


def json_report(result: dict[str, Any], width: int = CLI_WIDTH) -> dict[str, Any]:
    """JSON-serialisable form of a :func:`score_files` result for ``--json``.

    Each metric's object has the keys of sacrebleu's JSON output (``score``
    rounded to ``width`` like the CLI), plus ``exact_score`` and the report's
    ``EXTRA_FIELDS``: for BLEU the formula pieces (precisions, counts, totals,
    bp, sys_len, ref_len, ratio), for TER num_edits and ref_length.
    """
    out: dict[str, Any] = {k: result[k] for k in ("hyp", "refs", "lines") if k in result}
    for key in ("bleu", "chrf", "ter"):
        report = result.get(key)
        if report is None:
            continue
        d = report.cli_json(width)
        d["exact_score"] = report.score
        d.update(report.extra_fields())
        out[key] = d
    return out


@dataclass
class CorpusMetrics:
    """Corpus metrics of hypotheses against one reference per line (not a model's scores: those
    are log-probabilities, nmt.translate)."""

    bleu_report: BleuReport
    chrf_report: ChrfReport
    accuracy: float  # fraction of lines equal to the reference (whitespace-trimmed)

    @property
    def bleu(self) -> float:
        return self.bleu_report.score

    @property
    def chrf(self) -> float:
        return self.chrf_report.score

    @property
    def bleu_signature(self) -> str:
        return self.bleu_report.signature

    @property
    def chrf_signature(self) -> str:
        return self.chrf_report.signature

    def line(self) -> str:
        return f"BLEU {self.bleu:.2f}  chrF {self.chrf:.2f}  exact match {100 * self.accuracy:.2f}%"


def corpus_metrics(hyps: list[str], refs: list[str]) -> CorpusMetrics:
    """BLEU, chrF and accuracy of `hyps` against `refs` (aligned by line)."""
    exact = sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / max(1, len(refs))
    return CorpusMetrics(bleu(hyps, [refs]), chrf(hyps, [refs]), exact)
