"""The commands that use a model on text: `nmt translate`, `nmt score` (forced scoring) and
`nmt serve`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nmt.cli.streams import DRAWING_FAILURES, load_translator, note, read_input, reason, say
from nmt.data.corpus import read_lines
from nmt.errors import DataError
from nmt.files import check_folder, check_output, write_lines

#: an attention heatmap with more subwords than this on a side is not drawn: it would be a picture
#: of hundreds of megapixels (gigabytes of memory to render), and unreadable
MAX_HEATMAP_PIECES = 250


def cmd_translate(args: argparse.Namespace) -> int:
    check_output(args.output)
    if args.plot_attention:
        check_folder(args.plot_attention)
    prefixes = None if args.prefix is None else read_lines(args.prefix)
    terms = None if args.constraints is None else read_lines(args.constraints)
    translator = load_translator(args.model, args)
    lines = read_input(args.input)
    for given, path, what in ((prefixes, args.prefix, "prefixes"), (terms, args.constraints, "constraint lines")):
        if given is not None and len(given) != len(lines):
            raise DataError(f"{path}: {len(given)} {what} for {len(lines)} input lines: expected one per line")
    constraints = None if terms is None else _constraints(translator, terms, args.constraints)
    n = args.n_best or translator.cfg.decoding.n_best
    if args.sample:
        temperature = 1.0 if args.temperature is None else args.temperature
        results = translator.sample(lines, n, temperature, args.top_k or 0, args.seed)
    else:
        attention = bool(args.plot_attention or args.align)
        results = translator.search(
            lines, args.beam, args.alpha, args.n_best, attention, args.no_unk, prefixes, constraints
        )
    write_lines(args.output, output_lines(results, n, args.align))  # the results first: drawing must not lose them
    _note_unmet(results)
    _note_long_lines(translator, lines)
    if args.plot_attention:
        _plot_attention(Path(args.plot_attention), lines, results)
    if args.trace:
        for number, line in enumerate(lines, 1):
            for text in trace_lines(number, line, translator.trace(line, args.beam, args.alpha)):
                say(text)
    return 0


def output_lines(results: list[list], n_best: int, align: str | None) -> list[str]:
    """What `nmt translate` prints: a line per input line (TEXT), or n_best per input line
    (LINE ||| TEXT ||| SCORE); with `align` ("words" or "pieces"), ' ||| ' and the links last."""
    from nmt.translate.alignment import ALIGNMENTS, pharaoh  # here: torch is not needed to parse arguments

    def links(t) -> str:
        return "" if t.attention is None else pharaoh(ALIGNMENTS[align](t.src_pieces, t.tgt_pieces, t.attention))

    if n_best > 1:
        out = [(f"{i} ||| {t.text} ||| {t.search_score:.4f}", t) for i, nbest in enumerate(results) for t in nbest]
    else:
        out = [(nbest[0].text, nbest[0]) for nbest in results]
    return [f"{line} ||| {links(t)}" if align else line for line, t in out]


def trace_lines(number: int, line: str, steps: list) -> list[str]:
    """`nmt translate --trace`'s text for input line `number`: per output step t the hypotheses
    kept (summed log P, pieces so far) and those that ended (log P, search score, pieces)."""
    out = [f"trace of line {number}: {line.strip()!r}" + ("" if steps else " (blank: nothing searched)")]
    for s in steps:
        rows = [f"keep  log P {lp:9.4f}                    {' '.join(p)}" for p, lp in s.alive]
        rows += [f"end   log P {lp:9.4f}  score {sc:9.4f}  {' '.join(p)}" for p, lp, sc in s.finished]
        out += [f"  t={s.t:<3} {row}" if i == 0 else f"        {row}" for i, row in enumerate(rows)]
    return out


def _constraints(translator, lines: list[str], path: str) -> list[list[str]]:
    """The phrases of each line of a --constraints file (tab-separated; empty fields left out),
    each checked against the target vocabulary (a DataError naming the file and line)."""
    out = []
    for number, line in enumerate(lines, 1):
        phrases = [p.strip() for p in line.split("\t") if p.strip()]
        for phrase in phrases:
            try:
                translator.constraint(phrase)
            except DataError as e:
                raise DataError(f"{path} line {number}: {e}") from None
        out.append(phrases)
    return out


def _note_unmet(results: list[list]) -> None:
    """A stderr note per input line whose best output lacks some of its constraints (5 at most):
    the search reached the length limit without them."""
    unmet = [(i, nbest[0].unmet_constraints) for i, nbest in enumerate(results, 1) if nbest[0].unmet_constraints]
    for number, phrases in unmet[:5]:
        shown = ", ".join(repr(p) for p in phrases)
        note(f"input line {number}: no output within the length limit contains {shown}: the best without is given")
    if len(unmet) > 5:
        note(f"{len(unmet) - 5} more input lines without all their constraints")


def _note_long_lines(translator, lines: list[str]) -> None:
    """A stderr note per input line longer than the model's training data allowed (5 at most)."""
    long = translator.too_long(lines)
    limit = translator.cfg.data.max_src_length
    for index, n in long[:5]:
        note(
            f"input line {index + 1} has {n} subwords, more than the {limit} of the longest "
            "training source (data.max_src_length): translated whole, expect a poorer translation"
        )
    if len(long) > 5:
        note(f"{len(long) - 5} more input lines are that long")


def _plot_attention(folder: Path, lines: list[str], results: list) -> None:
    """One PNG per input line (its best translation): FOLDER/00001.png, ... (numbered from 1).
    A picture that cannot be drawn (too large, an unwritable folder) is skipped and said in one
    note; without matplotlib none is drawn, and a note says so."""
    from nmt.errors import MissingDependency
    from nmt.plots import attention_png

    width = max(5, len(str(len(lines))))
    failed: list[tuple[int, str]] = []
    for number, (line, nbest) in enumerate(zip(lines, results), 1):
        if nbest[0].attention is None:  # empty lines have no picture
            continue
        T, S = nbest[0].attention.shape
        if max(T, S) > MAX_HEATMAP_PIECES:
            failed.append((number, f"{S} x {T} subwords, too large to draw (at most {MAX_HEATMAP_PIECES} a side)"))
            continue
        try:
            attention_png(nbest[0], folder / f"{number:0{width}d}.png", title=f"{line[:60]}  ->  {nbest[0].text[:60]}")
        except MissingDependency as e:
            note(f"no attention heatmaps: {e}")
            return
        except DRAWING_FAILURES as e:
            failed.append((number, reason(e)))
    if failed:
        note(f"{len(failed)} attention heatmap(s) not drawn (input line {failed[0][0]}: {failed[0][1]})")
    print(f"nmt: attention heatmaps in {folder}/", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    """`nmt serve`: the packages first, then the port (connections wait while the model loads),
    then the model and the decoding workers; serves until a signal."""
    from nmt.runtime import configure, keep_freed_memory
    from nmt.serve import Limits, listen, read_token, require, serve
    from nmt.serve.workers import load_workers

    require()
    token = read_token(args.token_file)
    sock = listen(args.host, args.port)
    configure(args.threads)
    keep_freed_memory()
    limits = Limits.from_args(args)
    translator, workers = load_workers(args.model, args.device, args.precision, args.threads, limits.workers)
    try:
        stopped = serve(translator, sock, limits, args.model, [w.search for w in workers], token)
    finally:
        for worker in workers:
            worker.close()
    if stopped:
        say(f"nmt: server stopped ({stopped}): finished the requests in flight")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from nmt.translate.scoring import read_pairs, score_pairs

    check_output(args.output)
    stdin = None if args.input else read_input(None)
    sources, targets = read_pairs(args.input, args.target, stdin)  # bad input: before the model loads
    translator = load_translator(args.model, args)
    scores = score_pairs(translator, sources, targets, args.alpha)
    write_lines(args.output, ["" if s is None else s.line() for s in scores])
    return 0


TRANSLATION_COMMANDS = {"translate": cmd_translate, "score": cmd_score, "serve": cmd_serve}
