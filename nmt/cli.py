"""The `nmt` command: its subcommands, files and streams, one-line errors and exit codes.

Everything here is a thin layer over the library (nmt.run, nmt.translate, nmt.evaluate,
nmt.tuning, nmt.analysis, nmt.metrics); the options are defined in nmt.arguments. Library code
raises NmtError subclasses; `main` prints them as one line, `nmt: <kind>: <message>`, and
exits with their code (2 for config errors, 1 otherwise). Output files are checked before any
model is loaded (nmt.files.check_output); pictures are drawn after the results are written, and
a picture that cannot be drawn is a note, not an error. A reader that goes away (`| head`) ends
the command quietly, with status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nmt.arguments import bad_combination, build_parser
from nmt.errors import ConfigError, DataError, NmtError
from nmt.files import check_folder, check_output, write_lines

#: what drawing a picture can fail with once the results are safe: no matplotlib
#: (MissingDependency), a figure too large to draw (matplotlib's ValueError), an unwritable place
DRAWING_FAILURES = (NmtError, ValueError, OSError, MemoryError)
#: an attention heatmap with more subwords than this on a side is not drawn: it would be a picture
#: of hundreds of megapixels (gigabytes of memory to render), and unreadable
MAX_HEATMAP_PIECES = 250


def _read_input(path: str | None) -> list[str]:
    """Lines of a file, or of stdin for None/'-'; line endings removed, checked as UTF-8."""
    from nmt.data.corpus import decode_lines, read_lines

    if path and path != "-":
        return read_lines(path)
    if sys.stdin is None:  # started with stdin closed (`<&-`)
        raise DataError("no standard input (it is closed): give the input file with -i")
    return decode_lines(sys.stdin.buffer.read(), "<stdin>")


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


def cmd_prepare(args: argparse.Namespace) -> int:
    from nmt.run import prepare

    prepare(args.config, args.set, overwrite=args.overwrite, resume=args.resume)
    return 0


def _note(message: str) -> None:
    print(f"nmt: note: {message}", file=sys.stderr)


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def cmd_translate(args: argparse.Namespace) -> int:
    check_output(args.output)
    if args.plot_attention:
        check_folder(args.plot_attention)
    translator = _load_translator(args.model, args)
    lines = _read_input(args.input)
    n = args.n_best or translator.cfg.decoding.n_best
    if args.sample:
        temperature = 1.0 if args.temperature is None else args.temperature
        results = translator.sample(lines, n, temperature, args.top_k or 0, args.seed)
    else:
        results = translator.search(
            lines, args.beam, args.alpha, args.n_best, attention=bool(args.plot_attention), no_unk=args.no_unk
        )
    if n > 1:
        out = [f"{i} ||| {t.text} ||| {t.score:.4f}" for i, nbest in enumerate(results) for t in nbest]
    else:
        out = [nbest[0].text for nbest in results]
    write_lines(args.output, out)  # the results first: drawing must not lose them
    _note_long_lines(translator, lines)
    if args.plot_attention:
        _plot_attention(Path(args.plot_attention), lines, results)
    return 0


def _note_long_lines(translator, lines: list[str]) -> None:
    """A stderr note per input line longer than the model's training data allowed (5 at most)."""
    long = translator.too_long(lines)
    limit = translator.cfg.data.max_src_length
    for index, n in long[:5]:
        _note(
            f"input line {index + 1} has {n} subwords, more than the {limit} of the longest "
            "training source (data.max_src_length): translated whole, expect a poorer translation"
        )
    if len(long) > 5:
        _note(f"{len(long) - 5} more input lines are that long")


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
            _note(f"no attention heatmaps: {e}")
            return
        except DRAWING_FAILURES as e:
            failed.append((number, _reason(e)))
    if failed:
        _note(f"{len(failed)} attention heatmap(s) not drawn (input line {failed[0][0]}: {failed[0][1]})")
    print(f"nmt: attention heatmaps in {folder}/", file=sys.stderr)


def cmd_analyze(args: argparse.Namespace) -> int:
    from nmt import analysis
    from nmt.evaluate import check_eval_choice, eval_data

    check_eval_choice(args.split, args.src, args.ref)  # before the model is loaded
    translator = _load_translator(args.model, args)
    src, ref, name = eval_data(translator.cfg.data, args.split, args.src, args.ref)
    results = analysis.analyze(translator, src, ref, args.beam, args.alpha)
    if args.json:
        print(json.dumps(analysis.to_json(results, with_sentences=args.per_sentence), indent=1, ensure_ascii=False))
        return 0
    d = translator.decoding(alpha=args.alpha)
    print(analysis.header(name, len(src), d.length_penalty, d.alpha))
    print(analysis.table(results))
    for r in results:
        print(analysis.verdict(r))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from nmt import tuning
    from nmt.evaluate import check_eval_choice, eval_data

    if args.plot and not args.no_plot and not args.plot.lower().endswith(".png"):
        raise ConfigError(f"--plot: expected a file name ending in .png, got {args.plot!r}")
    if args.plot and not args.no_plot:
        check_output(args.plot)
    check_eval_choice(args.split, args.src, args.ref)  # before the model is loaded
    target = tuning.TuneTarget.find(args.model, write=args.write)
    translator = _load_translator(target.checkpoint, args)
    src, ref, name = eval_data(translator.cfg.data, args.split, args.src, args.ref)
    results = tuning.tune(translator, src, ref, args.beam, args.alpha)
    best = tuning.best(results)
    print(f"{name}: {len(src)} sentences")
    print(tuning.table(results))
    chosen = f"best: beam {best.beam}, alpha {best.alpha:g} (BLEU {best.bleu:.2f})"
    if args.write:  # stored before drawing: a picture that fails must not lose the choice
        print(f"{chosen}; stored in {target.store(best)}")
    else:
        print(f"{chosen}; --write stores it with the run")
    if not args.no_plot:
        _draw_tune(results, target.plot_path(args.plot))
    return 0


def _draw_tune(results: list, path: str | Path) -> None:
    """BLEU against alpha into `path`; a note instead when it cannot be drawn."""
    from nmt.plots import tune_png

    sys.stdout.flush()  # the results stay above the note
    try:
        drawn = tune_png(results, path)
    except DRAWING_FAILURES as e:
        _note(f"no plot {path}: {_reason(e)}")
        return
    print(f"plot: {drawn}")


def cmd_plot(args: argparse.Namespace) -> int:
    from nmt.plots import learning_curves_png

    check_output(args.output)
    print(learning_curves_png(args.run_dir, args.output))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nmt.config import config_from_dict, config_to_dict, load_config
    from nmt.evaluate import NO_SPLIT_TO_EVALUATE, eval_data, translate_and_score

    check_output(args.output)  # before the config and the model are loaded
    target = Path(args.target)
    cfg = None if target.is_dir() else load_config(target, args.set)
    run_dir = target if cfg is None else Path(cfg.run_dir)
    if args.model and not args.output:  # the run's SPLIT.hyp holds its own model's translations
        raise ConfigError("-m: give -o FILE for the hypotheses of another model")
    out = Path(args.output) if args.output else run_dir / f"{args.split}.hyp"
    translator = _load_translator(args.model or run_dir, args)
    if not args.output:
        check_output(out)  # the run's own file, once the run is known to be there: before decoding
    if cfg is None and args.set:  # RUN_DIR --set KEY=VALUE: on the run's own config, checked as a config's
        cfg = config_from_dict(config_to_dict(translator.cfg), args.set)
    _set_decoding(translator, [item for item in args.set if item.strip().startswith("decoding.")])
    # the split's prefix comes from CONFIG (or the run's config), its languages from the run
    splits = translator.cfg.data if cfg is None else cfg.data
    src, ref, prefix = eval_data(translator.cfg.data, args.split, splits=splits, missing=NO_SPLIT_TO_EVALUATE)
    d = translator.decoding(args.beam, args.alpha)  # what the search will use
    scores, _ = translate_and_score(translator, src, ref, out, d.beam_size, d.alpha)
    print(f"{args.split} ({prefix}, {len(src)} sentences, beam {d.beam_size}, alpha {d.alpha:g}): hypotheses in {out}")
    print(f"BLEU = {scores.bleu:.2f}  {scores.bleu_signature}")
    print(f"chrF = {scores.chrf:.2f}  {scores.chrf_signature}")
    print(f"exact match = {100 * scores.accuracy:.2f}%")
    return 0


def _set_decoding(translator, overrides: list[str]) -> None:
    """`--set decoding.KEY=VALUE ...` on the search defaults of the model (the run's, with what
    `nmt tune --write` stored); --beam and --alpha still come on top."""
    if overrides:
        from nmt.config import config_from_dict, config_to_dict

        translator.cfg.decoding = config_from_dict(config_to_dict(translator.cfg), overrides).decoding


def cmd_bleu(args: argparse.Namespace) -> int:
    from nmt.metrics import format_report, json_report, score_files

    if args.compare:
        return _compare(args)
    result = score_files(args.hyp, args.refs, chrf=args.chrf, ter=args.ter)
    if args.json:
        print(json.dumps(json_report(result, args.width), indent=1, ensure_ascii=False))
    else:
        print(format_report(result, args.width))
    return 0


def _compare(args: argparse.Namespace) -> int:
    """`nmt bleu HYP REF --compare HYP_B`: sacrebleu's paired tests, in its format (nmt.significance)."""
    from nmt.significance import compare_files, format_comparison, json_comparison

    samples = {"paired_bs": args.paired_bs_n, "paired_ar": args.paired_ar_n}
    result = compare_files(args.hyp, args.compare, args.refs, chrf=args.chrf, ter=args.ter, samples=samples)
    if args.json:
        print(json.dumps(json_comparison(result), indent=1, ensure_ascii=False))
    else:
        print(format_comparison(result, args.width))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """`nmt serve`: the packages first, then the port (connections wait while the model loads),
    then the model and the decoding workers; serves until a signal."""
    from nmt.runtime import configure, keep_freed_memory
    from nmt.serve import Limits, listen, require, serve
    from nmt.serve.workers import load_workers

    require()
    sock = listen(args.host, args.port)
    configure(args.threads)
    keep_freed_memory()
    limits = Limits.from_args(args)
    translator, workers = load_workers(args.model, args.device, args.precision, args.threads, limits.workers)
    try:
        stopped = serve(translator, sock, limits, args.model, [w.search for w in workers])
    finally:
        for worker in workers:
            worker.close()
    if stopped:
        _say(f"nmt: server stopped ({stopped}): finished the requests in flight")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from nmt.scoring import read_pairs, score_pairs

    check_output(args.output)
    stdin = None if args.input else _read_input(None)
    sources, targets = read_pairs(args.input, args.target, stdin)  # bad input: before the model loads
    translator = _load_translator(args.model, args)
    scores = score_pairs(translator, sources, targets, args.alpha)
    write_lines(args.output, ["" if s is None else s.line() for s in scores])
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from nmt.average import average, choose_steps

    check_output(args.output)
    if args.last or args.best:
        paths = choose_steps(args.sources[0], args.last, args.best)
    else:
        paths = [Path(p) for p in args.sources]
    summary = average(paths, args.output, int8=args.int8)
    steps = ", ".join(str(s) for s in summary["steps"])
    stored = " (weight matrices in int8)" if args.int8 else ""
    print(f"averaged {len(paths)} checkpoint(s) (steps {steps}) into {args.output}{stored}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "prepare": cmd_prepare,
    "translate": cmd_translate,
    "analyze": cmd_analyze,
    "tune": cmd_tune,
    "plot": cmd_plot,
    "evaluate": cmd_evaluate,
    "bleu": cmd_bleu,
    "score": cmd_score,
    "average": cmd_average,
    "serve": cmd_serve,
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
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, where a reader that went away is caught, not at the interpreter's exit
        return code
    except NmtError as e:
        if not e.shown_by_rank0:  # distributed training: rank 0 says it
            _say(f"nmt: {_rank_prefix()}{e.kind}: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        _say("nmt: interrupted")
        return 130
    except BrokenPipeError:  # the reader of stdout or stderr went away (e.g. `| head`): not an error
        _silence_broken_streams()
        return 0


def _say(line: str) -> None:
    """A line on stderr, unless its reader has gone."""
    try:
        print(line, file=sys.stderr, flush=True)
    except BrokenPipeError:
        pass
    _silence_broken_streams()


def _silence_broken_streams() -> None:
    """Flush stdout and stderr; one whose reader has gone is pointed at /dev/null, so that the
    interpreter's own flush at exit neither complains nor turns the exit status into 120."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass
