"""The `nmt` command: argument parsing, files and streams, one-line errors and exit codes.

Everything here is a thin layer over the library (nmt.run, nmt.translate, nmt.evaluate,
nmt.tuning, nmt.analysis, nmt.metrics). Library code raises NmtError subclasses; `main` prints them as one line,
`nmt: <kind>: <message>`, and exits with their code (2 for config errors, 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nmt import __version__
from nmt.errors import DataError, NmtError


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
        results = translator.search(lines, beam=args.beam, alpha=args.alpha, n_best=args.n_best,
                                    attention=bool(args.plot_attention))
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
        print(f"nmt: note: input line {index + 1} has {n} subwords, more than the {limit} of the longest "
              "training source (data.max_src_length): translated whole, expect a poorer translation", file=sys.stderr)
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


# --- parser ---------------------------------------------------------------------------------


MODEL_HELP = "run directory or checkpoint (default: the most recently trained run)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nmt", description="Neural machine translation with the classic attention model.")
    p.add_argument("--version", action="version", version=f"nmt {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_translate, _add_analyze, _add_tune, _add_plot, _add_evaluate, _add_bleu):
        add(sub)
    return p


def _model_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    q.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                   help="the model's precision in search; default: the run's decoding.precision")


def _decoding_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("--beam", type=_decoding_value("beam_size"),
                   help="beam size (1 = greedy); default: the run's decoding.beam_size")
    q.add_argument("--alpha", type=_decoding_value("alpha"), help="length normalisation exponent; default: decoding.alpha")
    _model_options(q)


def _eval_data_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("-m", "--model", help=MODEL_HELP)
    q.add_argument("--split", choices=["dev", "test"], default="dev", help="the run's split (default: dev)")
    q.add_argument("--src", help="source file (instead of the run's split; with --ref)")
    q.add_argument("--ref", help="reference file, aligned with --src")
    _model_options(q)


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", help="YAML config (see configs/reference.yaml)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set training.lr=3e-4 (repeatable)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run in run_dir")
    t.add_argument("--resume", action="store_true", help="continue the run in run_dir from its last checkpoint "
                   "(CONFIG may be that run directory)")
    t.set_defaults(func=cmd_train)


def _add_translate(sub) -> None:
    tr = sub.add_parser("translate", help="translate lines (stdin to stdout by default)")
    tr.add_argument("-m", "--model", help=MODEL_HELP)
    _decoding_options(tr)
    tr.add_argument("--n-best", type=_decoding_value("n_best"),
                    help="print the K best as 'LINE ||| TEXT ||| SCORE' (K lines per input)")
    tr.add_argument("-i", "--input", help="input file (default: stdin)")
    tr.add_argument("-o", "--output", help="output file (default: stdout)")
    tr.add_argument("--sample", action="store_true", help="sample from the model instead of searching "
                    "(--n-best K: K samples per line)")
    tr.add_argument("--temperature", type=float, default=1.0, help="sampling: divide the logits by T (default 1)")
    tr.add_argument("--top-k", type=int, default=0, help="sampling: only among the K likeliest tokens (0: all)")
    tr.add_argument("--seed", type=int, help="sampling: random seed (same seed, same samples)")
    tr.add_argument("--plot-attention", metavar="DIR", help="write one attention heatmap PNG per input line into DIR")
    tr.set_defaults(func=cmd_translate)


def _add_analyze(sub) -> None:
    an = sub.add_parser("analyze", help="beam-search error analysis: search errors or model errors?")
    _eval_data_options(an)
    an.add_argument("--beam", type=_int_list, default=[1, 3, 5, 10], help="beam sizes, e.g. 1,3,5,10")
    an.add_argument("--alpha", type=_decoding_value("alpha"), help="length normalisation exponent; default: decoding.alpha")
    an.add_argument("--json", action="store_true", help="print JSON")
    an.add_argument("--per-sentence", action="store_true", help="with --json: every sentence's scores and kind")
    an.set_defaults(func=cmd_analyze)


def _add_tune(sub) -> None:
    tu = sub.add_parser("tune", help="choose beam size and alpha on dev data")
    _eval_data_options(tu)
    tu.add_argument("--beam", type=_int_list, default=[1, 3, 5, 10], help="beam sizes, e.g. 1,3,5,10")
    tu.add_argument("--alpha", type=_float_list, default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2],
                    help="alphas, e.g. 0,0.5,1")
    tu.add_argument("--plot", metavar="PNG", help="where to draw BLEU against alpha (default: RUN_DIR/tune.png)")
    tu.add_argument("--no-plot", action="store_true", help="draw nothing")
    tu.add_argument("--write", action="store_true", help="store the best pair as the run's decoding defaults")
    tu.set_defaults(func=cmd_tune)


def _add_plot(sub) -> None:
    pl = sub.add_parser("plot", help="draw a run's learning curves (loss, dev loss, dev BLEU) into a PNG")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("-o", "--output", help="PNG file (default: RUN_DIR/learning_curves.png)")
    pl.set_defaults(func=cmd_plot)


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="translate a config's test split and report BLEU and chrF")
    e.add_argument("target", metavar="CONFIG|RUN_DIR")
    _decoding_options(e)
    e.add_argument("--split", choices=["test", "dev"], default="test")
    e.add_argument("-o", "--output", help="hypothesis file (default: RUN_DIR/SPLIT.hyp)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    e.set_defaults(func=cmd_evaluate)


def _add_bleu(sub) -> None:
    b = sub.add_parser("bleu", help="corpus BLEU (sacrebleu) with the pieces of the formula")
    b.add_argument("hyp", help="hypothesis file, one sentence a line")
    b.add_argument("refs", nargs="+", metavar="REF", help="reference file(s), aligned with HYP")
    b.add_argument("--chrf", action="store_true", help="also chrF")
    b.add_argument("--ter", action="store_true", help="also TER")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument("-w", "--width", type=int, default=1, help="decimals of the scores (as sacrebleu -w)")
    b.set_defaults(func=cmd_bleu)


def _number_list(convert: type, least: int, what: str):
    """An argparse type for comma-separated values, each >= least: '1,3,5' -> [1, 3, 5]."""

    def parse(text: str) -> list:
        try:
            values = [convert(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} separated by commas, got {text!r}") from None
        if not values or min(values) < least:
            raise argparse.ArgumentTypeError(f"expected {what} >= {least} separated by commas, got {text!r}")
        return values

    return parse


_int_list = _number_list(int, 1, "integers")
_float_list = _number_list(float, 0, "numbers")


def _decoding_value(key: str):
    """An argparse type for an option that sets decoding.KEY for one call: parsed and checked
    by the config's own rule for that key (nmt.config), so `--beam 0` is refused as
    `decoding.beam_size: 0` would be."""
    from nmt.config import DecodingConfig, replace_checked
    from nmt.errors import ConfigError

    def parse(text: str):
        try:
            return getattr(replace_checked(DecodingConfig(), "decoding", {key: _number(text)}), key)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"decoding.{key}: ")) from None

    return parse


def _number(text: str) -> int | float | str:
    """'3' -> 3, '0.5' -> 0.5; anything else stays text, for the config's checks to refuse."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _bad_combination(args: argparse.Namespace) -> str | None:
    """A message for sampling options out of range or used together with what they exclude, or None."""
    if getattr(args, "temperature", 1.0) <= 0:
        return f"--temperature: expected a number > 0, got {args.temperature}"
    if getattr(args, "top_k", 0) < 0:
        return f"--top-k: expected an integer >= 0, got {args.top_k}"
    if getattr(args, "sample", False) and args.plot_attention:
        return "--plot-attention: draws the search's attention; not with --sample"
    return None


def _rank_prefix() -> str:
    """'rank N: ' in the processes of distributed training other than rank 0 (torchrun sets RANK)."""
    rank = os.environ.get("RANK", "0")
    return "" if rank in ("", "0") else f"rank {rank}: "


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = _bad_combination(args)
    if problem:
        parser.error(problem)  # usage line + message, exit 2
    try:
        return args.func(args)
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
