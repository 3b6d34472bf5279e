"""Choosing beam size and α on dev data, and storing the choice with the run.

`tune` decodes the dev set for every (beam, α) pair and scores it; `best` picks the highest
BLEU (ties: the smaller beam, it is faster, then the smaller α); `TuneTarget` is what `nmt tune`
works on: the checkpoint, its run directory, where the plot goes, and `store`, which writes a
choice to RUN_DIR/decoding.yaml (nmt.rundir.defaults' `write_decoding_defaults`), which
`Translator.load` (so `nmt translate` and `nmt evaluate`) applies on top of the checkpoint's
decoding section.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nmt.errors import DataError
from nmt.evaluation import metrics
from nmt.rundir.checkpoint import resolve_checkpoint
from nmt.rundir.defaults import latest_run, write_decoding_defaults
from nmt.rundir.layout import TUNE_PLOT, run_dir_of
from nmt.translate import Translator


@dataclass
class TuneResult:
    beam_size: int
    alpha: float
    bleu: float
    length_ratio: float  # output length / reference length (sacrebleu tokens)
    sents_per_s: float


def tune(
    translator: Translator, sources: list[str], references: list[str], beams: list[int], alphas: list[float]
) -> list[TuneResult]:
    """BLEU, length ratio and speed of every (beam, alpha) pair. Greedy search (beam 1) does not
    depend on alpha, so it is decoded once and reported for every alpha."""
    results = []
    for beam in beams:
        greedy_run = None
        for alpha in alphas:
            if beam == 1 and greedy_run is not None:
                results.append(TuneResult(1, alpha, *greedy_run))
                continue
            t0 = time.perf_counter()
            outputs = translator.translate(sources, beam=beam, alpha=alpha)
            speed = len(sources) / max(time.perf_counter() - t0, 1e-9)
            b = metrics.bleu(outputs, [references]).sacrebleu
            measured = (b.score, b.sys_len / max(1, b.ref_len), speed)
            results.append(TuneResult(beam, alpha, *measured))
            if beam == 1:
                greedy_run = measured
    return results


def best(results: list[TuneResult]) -> TuneResult:
    """Highest BLEU; among equals the smaller beam, then the smaller alpha."""
    return max(results, key=lambda r: (round(r.bleu, 2), -r.beam_size, -r.alpha))


def table(results: list[TuneResult]) -> str:
    top = best(results)
    lines = [f"{'beam':>4}  {'alpha':>5}  {'BLEU':>6}  {'len ratio':>9}  {'sent/s':>7}"]
    for r in results:
        mark = "  <- best" if r is top else ""
        lines.append(
            f"{r.beam_size:>4}  {r.alpha:>5g}  {r.bleu:>6.2f}  {r.length_ratio:>9.3f}  {r.sents_per_s:>7.0f}{mark}"
        )
    return "\n".join(lines)


@dataclass
class TuneTarget:
    """The checkpoint `nmt tune` decodes with, and the run directory it lies in (None: a loose file)."""

    checkpoint: Path
    run_dir: Path | None

    @classmethod
    def find(cls, model: str | Path | None = None, write: bool = False) -> TuneTarget:
        """`model` (a run directory: its best checkpoint, else its last; or a checkpoint file),
        else the most recently trained run. With `write` (the choice is to be stored with the
        run), a checkpoint outside a run directory is a DataError, before any decoding."""
        checkpoint = resolve_checkpoint(model or latest_run())
        target = cls(checkpoint, run_dir_of(checkpoint))
        if write:
            target._require_run()
        return target

    def _require_run(self) -> Path:
        if self.run_dir is None:
            raise DataError(
                f"--write: {self.checkpoint} is not inside a run directory (RUN_DIR/checkpoints/); "
                "the defaults are stored with a run"
            )
        return self.run_dir

    def plot_path(self, plot: str | Path | None = None) -> str | Path:
        """`plot` if given, else RUN_DIR/tune.png (tune.png beside a checkpoint outside a run)."""
        return plot or (self.run_dir or self.checkpoint.parent) / TUNE_PLOT

    def store(self, choice: TuneResult) -> Path:
        """Store `choice`'s beam and alpha as the run's decoding defaults; returns RUN_DIR/decoding.yaml."""
        return write_decoding_defaults(self._require_run(), choice.beam_size, choice.alpha)
