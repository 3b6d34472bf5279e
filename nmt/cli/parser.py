"""The `nmt` command's arguments: its subcommands, their options, and the checks of option
values. The commands themselves are in nmt.cli (`COMMANDS`, by subcommand name)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from nmt import __version__

MODEL_HELP = "run directory or checkpoint (default: the most recently trained run)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nmt", description="Neural machine translation with the classic attention model.")
    p.add_argument("--version", action="version", version=f"nmt {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = (_add_train, _add_translate, _add_analyze, _add_tune, _add_plot, _add_evaluate, _add_bleu, _add_serve)
    for add in (*commands, _add_score, _add_average):
        add(sub)
    return p


def _model_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    q.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16", "int8"],
        help="the model's precision in search (int8: CPU); default: the run's decoding.precision",
    )


def _decoding_options(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--beam",
        type=_decoding_value("beam_size"),
        help="beam size (1 = greedy); default: the run's decoding.beam_size",
    )
    q.add_argument(
        "--alpha", type=_decoding_value("alpha"), help="length normalisation exponent; default: decoding.alpha"
    )
    _model_options(q)


def _eval_data_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("-m", "--model", help=MODEL_HELP)
    q.add_argument(
        "--split", choices=["dev", "test"], help="the run's own dev or test split (give this, or --src and --ref)"
    )
    q.add_argument("--src", help="source file (instead of a split; with --ref)")
    q.add_argument("--ref", help="reference file, aligned with --src")
    _model_options(q)


def _add_train(sub) -> None:
    helps = {
        "train": "train a model from a YAML config",
        "prepare": "what `nmt train` does before its first step (sentencepiece, the encoded corpus RUN_DIR/train.bin)",
    }
    for name, text in helps.items():
        t = sub.add_parser(name, help=text)
        t.add_argument("config", help="YAML config (see configs/reference.yaml)")
        t.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set training.lr=3e-4 (repeatable)",
        )
        t.add_argument("--overwrite", action="store_true", help="replace an existing run in run_dir")
        t.add_argument(
            "--resume",
            action="store_true",
            help="continue the run in run_dir from its last checkpoint (CONFIG may be that run directory)",
        )


def _add_translate(sub) -> None:
    tr = sub.add_parser("translate", help="translate lines (stdin to stdout by default)")
    tr.add_argument("-m", "--model", action="append", help=MODEL_HELP + "; repeated: their ensemble")
    _decoding_options(tr)
    tr.add_argument(
        "--n-best",
        type=_decoding_value("n_best"),
        help="print the K best as 'LINE ||| TEXT ||| SCORE' (K lines per input)",
    )
    tr.add_argument(
        "--no-unk",
        action="store_const",
        const=True,
        help="never output the unknown token (greedy and beam search; default: decoding.no_unk)",
    )
    tr.add_argument("-i", "--input", help="input file (default: stdin)")
    tr.add_argument("-o", "--output", help="output file (default: stdout)")
    tr.add_argument(
        "--sample",
        action="store_true",
        help="sample from the model instead of searching (--n-best K: K samples per line)",
    )
    tr.add_argument("--temperature", type=float, help="sampling: divide the logits by T (default 1)")
    tr.add_argument("--top-k", type=int, help="sampling: only among the K likeliest tokens (default 0: all)")
    tr.add_argument("--seed", type=int, help="sampling: random seed (same seed, same samples)")
    tr.add_argument("--plot-attention", metavar="DIR", help="write one attention heatmap PNG per input line into DIR")


def _add_analyze(sub) -> None:
    an = sub.add_parser("analyze", help="beam-search error analysis: search errors or model errors?")
    _eval_data_options(an)
    an.add_argument("--beam", type=_decoding_list("beam_size"), default=[1, 3, 5, 10], help="beam sizes, e.g. 1,3,5,10")
    an.add_argument(
        "--alpha", type=_decoding_value("alpha"), help="length normalisation exponent; default: decoding.alpha"
    )
    an.add_argument("--json", action="store_true", help="print JSON")
    an.add_argument("--per-sentence", action="store_true", help="with --json: every sentence's scores and kind")


def _add_tune(sub) -> None:
    tu = sub.add_parser("tune", help="choose beam size and alpha on dev data")
    _eval_data_options(tu)
    tu.add_argument("--beam", type=_decoding_list("beam_size"), default=[1, 3, 5, 10], help="beam sizes, e.g. 1,3,5,10")
    tu.add_argument(
        "--alpha",
        type=_decoding_list("alpha"),
        default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2],
        help="alphas, e.g. 0,0.5,1",
    )
    tu.add_argument("--plot", metavar="PNG", help="where to draw BLEU against alpha (default: RUN_DIR/tune.png)")
    tu.add_argument("--no-plot", action="store_true", help="draw nothing")
    tu.add_argument("--write", action="store_true", help="store the best pair as the run's decoding defaults")


def _add_plot(sub) -> None:
    pl = sub.add_parser("plot", help="draw a run's learning curves (loss, dev loss, dev BLEU) into a PNG")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("-o", "--output", help="PNG file (default: RUN_DIR/learning_curves.png)")


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="translate a config's test split and report BLEU and chrF")
    e.add_argument("target", metavar="CONFIG|RUN_DIR")
    _decoding_options(e)
    e.add_argument("--split", choices=["test", "dev"], default="test")
    e.add_argument("-o", "--output", help="hypothesis file (default: RUN_DIR/SPLIT.hyp)")
    e.add_argument(
        "-m",
        "--model",
        action="append",
        metavar="RUN_DIR|CHECKPOINT",
        help="evaluate this model (an averaged checkpoint, another run) instead of the run's own; with -o; "
        "repeated: their ensemble",
    )
    e.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (decoding.KEY: on the run's search defaults; --beam and --alpha on top)",
    )


def _add_bleu(sub) -> None:
    b = sub.add_parser("bleu", help="corpus BLEU (sacrebleu) with the pieces of the formula")
    b.add_argument("hyp", help="hypothesis file, one sentence a line")
    b.add_argument("refs", nargs="+", metavar="REF", help="reference file(s), aligned with HYP")
    b.add_argument("--chrf", action="store_true", help="also chrF")
    b.add_argument("--ter", action="store_true", help="also TER")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument("-w", "--width", type=_int_in(0, 20), default=1, help="decimals of the scores (as sacrebleu -w)")
    b.add_argument(
        "--compare",
        metavar="HYP_B",
        help="is HYP_B better than HYP? sacrebleu's paired bootstrap and approximate randomisation tests",
    )
    # upper bounds: sacrebleu's bootstrap holds resamples x sentences indices at once (10,000 x 3,000: 240 MB)
    b.add_argument(
        "--paired-bs-n", type=_int_in(1, 10_000), default=1000, help="--compare: bootstrap resamples (default 1000)"
    )
    b.add_argument(
        "--paired-ar-n", type=_int_in(1, 100_000), default=10000, help="--compare: randomisation trials (default 10000)"
    )


def _add_serve(sub) -> None:
    from nmt.serve import Limits

    d = Limits()
    s = sub.add_parser("serve", help="a translation server (HTTP, JSON) with a web page; needs nmt[serve]")
    s.add_argument("-m", "--model", action="append", help=MODEL_HELP + "; repeated: their ensemble")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=_int_in(0, 65535), default=8000, help="port (default 8000; 0: any free port)")
    limits = (
        ("--max-batch", _int_in(1, 10_000), "sentences per decoded batch"),
        ("--max-wait-ms", _number_in(0, 3_600_000), "most waiting for more after a batch"),
        ("--max-sentences", _int_in(1, 100_000), "sentences per request (more: 413)"),
        ("--max-bytes", _int_in(1, 2**31), "bytes of a request's body (more: 413)"),
        ("--max-queue", _int_in(1, 10**7), "sentences waiting (more: 503)"),
        ("--max-beam", _int_in(1, 1000), "the largest beam a request may ask for"),
        ("--max-pieces", _int_in(1, 100_000), "subwords of one input line (more: 413)"),
        ("--read-timeout-s", _number_in(0, 3600, above=True), "most seconds for a request's body (more: 408)"),
        ("--workers", _int_in(1, 64), "decoding workers, each its own batch (CPU: processes); one per core"),
    )
    for option, kind, text in limits:
        default = getattr(d, option[2:].replace("-", "_"))
        s.add_argument(option, type=kind, default=default, help=f"{text} (default {default})")
    s.add_argument(
        "--threads",
        type=_int_in(0, 1024),
        default=1,
        help="torch's CPU threads of each decoding worker (default 1: the other cores serve HTTP; 0: one per core)",
    )
    _model_options(s)


def _int_in(least: int, most: int):
    """An argparse type: an integer from least to most."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"expected an integer from {least} to {most}, got {value}")
        return value

    return parse


def _number_in(least: float, most: float, above: bool = False):
    """An argparse type: a number from least (above it: `above`) to most; nan is refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (least < value if above else least <= value) or not value <= most:
            low = f"above {least:,}" if above else f"from {least:,}"
            raise argparse.ArgumentTypeError(f"expected a number {low} to {most:,}, got {text!r}")
        return value

    return parse


def _add_score(sub) -> None:
    sc = sub.add_parser(
        "score", help="the model's log-probability of given translations: LOGPROB<TAB>SCORE<TAB>TOKENS per pair"
    )
    sc.add_argument("-m", "--model", action="append", help=MODEL_HELP + "; repeated: their ensemble")
    sc.add_argument("-i", "--input", help="source file (with -t); default: SOURCE<TAB>TARGET lines on stdin")
    sc.add_argument("-t", "--target", help="target file, aligned with -i")
    sc.add_argument("-o", "--output", help="output file (default: stdout)")
    sc.add_argument(
        "--alpha", type=_decoding_value("alpha"), help="length normalisation exponent; default: decoding.alpha"
    )
    _model_options(sc)


def _add_average(sub) -> None:
    av = sub.add_parser("average", help="average the weights of several checkpoints of a run into one checkpoint")
    av.add_argument("sources", nargs="+", metavar="RUN_DIR|CHECKPOINT", help="a run directory, or checkpoint files")
    which = av.add_mutually_exclusive_group()
    which.add_argument("--last", type=int, metavar="N", help="the run's N newest step checkpoints")
    which.add_argument("--best", type=int, metavar="N", help="the run's N best step checkpoints by the dev metric")
    av.add_argument("-o", "--output", required=True, metavar="FILE.pt", help="the averaged checkpoint")
    av.add_argument("--int8", action="store_true", help="store the weight matrices in int8: a quarter of the size")


def _decoding_list(key: str):
    """An argparse type for comma-separated values of decoding.KEY, each checked as _decoding_value checks one."""
    one = _decoding_value(key)

    def parse(text: str) -> list:
        values = [one(v) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected values separated by commas, got {text!r}")
        return values

    return parse


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


def bad_combination(args: argparse.Namespace) -> str | None:
    """A message for options out of range, empty file names, or options used together with what
    they exclude; or None."""
    for option in ("input", "output", "target", "src", "ref", "plot", "plot_attention"):
        if getattr(args, option, None) == "":
            return f"--{option.replace('_', '-')}: expected a file name, got ''"
    if args.command == "translate":
        return _bad_translate(args)
    if getattr(args, "max_queue", 1) < getattr(args, "max_sentences", 0):
        return f"--max-queue ({args.max_queue}) must hold one request of --max-sentences ({args.max_sentences})"
    if args.command == "score" and (args.input is None) != (args.target is None):
        return "-i and -t go together (or give SOURCE<TAB>TARGET lines on stdin)"
    if args.command == "average":
        return _bad_average(args)
    if getattr(args, "src", None) and getattr(args, "split", None):
        return f"--split {args.split} and --src: one or the other"
    return None


def _bad_translate(args: argparse.Namespace) -> str | None:
    """`nmt translate`: the sampling options only with --sample, in range; search's without it."""
    sampling = {"--temperature": args.temperature, "--top-k": args.top_k, "--seed": args.seed}
    if not args.sample:
        given = [name for name, value in sampling.items() if value is not None]
        return f"{given[0]}: an option of sampling; add --sample" if given else None
    if args.beam is not None:
        return "--beam: an option of beam search; --sample draws instead"
    if args.plot_attention:
        return "--plot-attention: draws the search's attention; not with --sample"
    if args.temperature is not None:
        from nmt.translate import temperature_error

        if error := temperature_error(args.temperature):
            return f"--{error}"
    if args.top_k is not None and args.top_k < 0:
        return f"--top-k: expected an integer >= 0, got {args.top_k}"
    return None


def _bad_average(args: argparse.Namespace) -> str | None:
    """`nmt average`: a run directory with --last or --best N >= 1, or checkpoint files without them."""
    n = args.last if args.last is not None else args.best
    option = "--last" if args.last is not None else "--best"
    if n is not None and n < 1:
        return f"{option}: expected an integer >= 1, got {n}"
    if len(args.sources) == 1 and n is None and Path(args.sources[0]).is_dir():
        return "give --last N or --best N with a run directory (or checkpoint files)"
    if len(args.sources) > 1 and n is not None:
        return f"{option}: chooses from one run directory; not with several checkpoint files"
    return None
