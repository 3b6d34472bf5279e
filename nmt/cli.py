"""The `nmt` command: its subcommands, files and streams, one-line errors and exit codes.

Everything here is a thin layer over the library (nmt.run, nmt.translate, nmt.evaluate,
nmt.tuning, nmt.analysis, nmt.metrics); the options are defined in nmt.arguments. Library code
raises NmtError subclasses; `main` prints them as one line, `nmt: <kind>: <message>`, and
exits with their code (2 for config errors, 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nmt.arguments import bad_combination, build_parser
from nmt.errors import NmtError


def _read_input(path: str | None) -> list[str]:
    """Lines of a file, or of stdin for None/'-'; line endings removed, checked as UTF-8."""
    from nmt.data.corpus import decode_lines, read_lines

    if path and path != "-":
        return read_lines(path)
    return decode_lines(sys.stdin.buffer.read(), "<stdin>")


def _write_output(path: str | None, lines: list[str]) -> None:
    """Write lines to stdout, or to a file atomically (never half-written)."""
    if path and path != "-":
        from nmt.files import write_lines

        write_lines(path, lines)
        return
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def _load_translator(model: str | Path | None, args: argparse.Namespace):
    """The model of a decoding command (None: the latest run). The process is the command's own,
    so it opts into the allocator setting that makes decoding fast (nmt.runtime)."""
    from nmt.runtime import keep_freed_memory
    from nmt.translate import Translator

    keep_freed_memory()
    return Translator.load(model, device=args.device, precision=args.precision)


# --- subcommands ----------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from nmt.run import train

    train(args.config, args.set, overwrite=args.overwrite, resume=args.resume)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    translator = _load_translator(args.model, args)
    lines = _read_input(args.input)
    n = args.n_best or translator.cfg.decoding.n_best
    if args.sample:
        results = translator.sample(lines, n, args.temperature, args.top_k, args.seed)
    else:
        results = translator.search(
            lines, beam=args.beam, alpha=args.alpha, n_best=args.n_best, attention=bool(args.plot_attention)
        )
    if n > 1:
        out = [f"{i} ||| {t.text} ||| {t.score:.4f}" for i, nbest in enumerate(results) for t in nbest]
    else:
        out = [nbest[0].text for nbest in results]
    if args.plot_attention:
        _plot_attention(Path(args.plot_attention), lines, results)
    _write_output(args.output, out)
    _note_long_lines(translator, lines)
    return 0


def _note_long_lines(translator, lines: list[str]) -> None:
    """A stderr note per input line longer than the model's training data allowed (5 at most)."""
    long = translator.too_long(lines)
    limit = translator.cfg.data.max_src_length
    for index, n in long[:5]:
        print(
            f"nmt: note: input line {index + 1} has {n} subwords, more than the {limit} of the longest "
            "training source (data.max_src_length): translated whole, expect a poorer translation",
            file=sys.stderr,
        )
    if len(long) > 5:
        print(f"nmt: note: {len(long) - 5} more input lines are that long", file=sys.stderr)


def _plot_attention(folder: Path, lines: list[str], results: list) -> None:
    """One PNG per input line (its best translation): FOLDER/00001.png, ... (numbered from 1)."""
    from nmt.plots import attention_png

    width = max(5, len(str(len(lines))))
    for number, (line, nbest) in enumerate(zip(lines, results), 1):
        if nbest[0].attention is not None:  # empty lines have no picture
            attention_png(nbest[0], folder / f"{number:0{width}d}.png", title=f"{line[:60]}  ->  {nbest[0].text[:60]}")
    print(f"nmt: attention heatmaps in {folder}/", file=sys.stderr)


def cmd_analyze(args: argparse.Namespace) -> int:
    from nmt import analysis
    from nmt.evaluate import eval_data

    translator = _load_translator(args.model, args)
    src, ref, name = eval_data(translator.cfg.data, args.split, args.src, args.ref)
    results = analysis.analyze(translator, src, ref, args.beam, args.alpha)
    if args.json:
        print(json.dumps(analysis.to_json(results, with_sentences=args.per_sentence), indent=1, ensure_ascii=False))
        return 0
    print(f"{name}: {len(src)} sentences; scores are log P / T^alpha ({translator.cfg.decoding.length_penalty})")
    print(analysis.table(results))
    for r in results:
        print(analysis.verdict(r))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from nmt import tuning
    from nmt.evaluate import eval_data

    target = tuning.TuneTarget.find(args.model, write=args.write)
    translator = _load_translator(target.checkpoint, args)
    src, ref, name = eval_data(translator.cfg.data, args.split, args.src, args.ref)
    results = tuning.tune(translator, src, ref, args.beam, args.alpha)
    best = tuning.best(results)
    print(f"{name}: {len(src)} sentences")
    print(tuning.table(results))
    if not args.no_plot:
        from nmt.plots import tune_png

        print(f"plot: {tune_png(results, target.plot_path(args.plot))}")
    if args.write:
        print(f"best: beam {best.beam}, alpha {best.alpha:g} (BLEU {best.bleu:.2f}); stored in {target.store(best)}")
    else:
        print(f"best: beam {best.beam}, alpha {best.alpha:g} (BLEU {best.bleu:.2f}); --write stores it with the run")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from nmt.plots import learning_curves_png

    print(learning_curves_png(args.run_dir, args.output))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nmt.config import load_config
    from nmt.evaluate import NO_SPLIT_TO_EVALUATE, eval_data, translate_and_score

    target = Path(args.target)
    if target.is_dir():
        translator = _load_translator(target, args)
        run_dir, cfg = target, translator.cfg
    else:
        cfg = load_config(target, args.set)
        run_dir = Path(cfg.run_dir)
        translator = _load_translator(run_dir, args)
    # the split's prefix comes from CONFIG (or the run's config), its languages from the run
    src, ref, prefix = eval_data(translator.cfg.data, args.split, splits=cfg.data, missing=NO_SPLIT_TO_EVALUATE)
    out = Path(args.output) if args.output else run_dir / f"{args.split}.hyp"
    d = translator.decoding(args.beam, args.alpha)  # what the search will use
    scores, _ = translate_and_score(translator, src, ref, out, d.beam_size, d.alpha)
    print(f"{args.split} ({prefix}, {len(src)} sentences, beam {d.beam_size}, alpha {d.alpha:g}): hypotheses in {out}")
    print(f"BLEU = {scores.bleu:.2f}  {scores.bleu_signature}")
    print(f"chrF = {scores.chrf:.2f}  {scores.chrf_signature}")
    print(f"exact match = {100 * scores.accuracy:.2f}%")
    return 0


def cmd_bleu(args: argparse.Namespace) -> int:
    from nmt.metrics import format_report, json_report, score_files

    result = score_files(args.hyp, args.refs, chrf=args.chrf, ter=args.ter)
    if args.json:
        print(json.dumps(json_report(result, args.width), indent=1, ensure_ascii=False))
    else:
        print(format_report(result, args.width))
    return 0


COMMANDS = {
    "train": cmd_train,
    "translate": cmd_translate,
    "analyze": cmd_analyze,
    "tune": cmd_tune,
    "plot": cmd_plot,
    "evaluate": cmd_evaluate,
    "bleu": cmd_bleu,
}


def _rank_prefix() -> str:
    """'rank N: ' in the processes of distributed training other than rank 0 (torchrun sets RANK)."""
    rank = os.environ.get("RANK", "0")
    return "" if rank in ("", "0") else f"rank {rank}: "


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = bad_combination(args)
    if problem:
        parser.error(problem)  # usage line + message, exit 2
    try:
        return COMMANDS[args.command](args)
    except NmtError as e:
        if not e.shown_by_rank0:  # distributed training: rank 0 says it
            print(f"nmt: {_rank_prefix()}{e.kind}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("nmt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
