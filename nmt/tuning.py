"""Choosing beam size and α on dev data, and storing the choice with the run.

`tune` decodes the dev set for every (beam, α) pair and scores it; `best` picks the highest
BLEU (ties: the smaller beam, it is faster, then the smaller α); `write_decoding_defaults`
(nmt.checkpoint) stores a choice in RUN_DIR/decoding.yaml, which `Translator.load` (so `nmt translate` and
`nmt evaluate`) applies on top of the checkpoint's decoding section.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nmt import metrics
from nmt.translate import Translator


@dataclass
class TuneResult:
    beam: int
    alpha: float
    bleu: float
    length_ratio: float  # output length / reference length (sacrebleu tokens)
    sents_per_s: float


def tune(translator: Translator, sources: list[str], references: list[str], beams: list[int],
         alphas: list[float]) -> list[TuneResult]:
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
            b = metrics.bleu(outputs, [references])
            measured = (b.score, b.sys_len / max(1, b.ref_len), speed)
            results.append(TuneResult(beam, alpha, *measured))
            if beam == 1:
                greedy_run = measured
    return results


def best(results: list[TuneResult]) -> TuneResult:
    """Highest BLEU; among equals the smaller beam, then the smaller alpha."""
    return max(results, key=lambda r: (round(r.bleu, 2), -r.beam, -r.alpha))


def table(results: list[TuneResult]) -> str:
    top = best(results)
    lines = [f"{'beam':>4}  {'alpha':>5}  {'BLEU':>6}  {'len ratio':>9}  {'sent/s':>7}"]
    for r in results:
        mark = "  <- best" if r is top else ""
        lines.append(f"{r.beam:>4}  {r.alpha:>5g}  {r.bleu:>6.2f}  {r.length_ratio:>9.3f}  {r.sents_per_s:>7.0f}{mark}")
    return "\n".join(lines)
