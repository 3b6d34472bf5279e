"""The `nmt` command: argument parsing, files and streams, one-line errors and exit codes.

Everything here is a thin layer over the library (nmt.training, nmt.translate, nmt.evaluate,
nmt.metrics). Library code raises NmtError subclasses; `main` prints them as one line,
`nmt: <kind>: <message>`, and exits with their code (2 for config errors, 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
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


# --- subcommands ----------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from nmt.training import train

    train(args.config, args.set, overwrite=args.overwrite)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from nmt.translate import Translator

    translator = Translator.load(args.model, device=args.device)
    lines = _read_input(args.input)
    results = translator.search(lines, beam=args.beam, alpha=args.alpha, n_best=args.n_best)
    if (args.n_best or translator.cfg.decoding.n_best) > 1:
        out = [f"{i} ||| {t.text} ||| {t.score:.4f}" for i, nbest in enumerate(results) for t in nbest]
    else:
        out = [nbest[0].text for nbest in results]
    _write_output(args.output, out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nmt.config import load_config
    from nmt.evaluate import evaluate_split
    from nmt.translate import Translator

    target = Path(args.target)
    if target.is_dir():
        translator = Translator.load(target, device=args.device)
        run_dir, cfg = target, translator.cfg
    else:
        cfg = load_config(target, args.set)
        run_dir = Path(cfg.run_dir)
        translator = Translator.load(run_dir, device=args.device)
    prefix = getattr(cfg.data, args.split)
    if not prefix:
        raise DataError(f"data.{args.split}: this config names no {args.split} split to evaluate")
    out = Path(args.output) if args.output else run_dir / f"{args.split}.hyp"
    scores, src, _, _ = evaluate_split(translator, prefix, out, args.beam, args.alpha)
    d = translator.cfg.decoding
    beam = args.beam or d.beam_size
    alpha = d.alpha if args.alpha is None else args.alpha
    print(f"{args.split} ({prefix}, {len(src)} sentences, beam {beam}, alpha {alpha:g}): hypotheses in {out}")
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nmt", description="Neural machine translation with the classic attention model.")
    p.add_argument("--version", action="version", version=f"nmt {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", help="YAML config (see configs/reference.yaml)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set training.lr=3e-4 (repeatable)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run in run_dir")
    t.set_defaults(func=cmd_train)

    def decoding_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--beam", type=int, help="beam size (1 = greedy); default: the run's decoding.beam_size")
        q.add_argument("--alpha", type=float, help="length normalisation exponent; default: decoding.alpha")
        q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    tr = sub.add_parser("translate", help="translate lines (stdin to stdout by default)")
    tr.add_argument("-m", "--model", help="run directory or checkpoint (default: the most recently trained run)")
    decoding_options(tr)
    tr.add_argument("--n-best", type=int, help="print the K best as 'LINE ||| TEXT ||| SCORE' (K lines per input)")
    tr.add_argument("-i", "--input", help="input file (default: stdin)")
    tr.add_argument("-o", "--output", help="output file (default: stdout)")
    tr.set_defaults(func=cmd_translate)

    e = sub.add_parser("evaluate", help="translate a config's test split and report BLEU and chrF")
    e.add_argument("target", metavar="CONFIG|RUN_DIR")
    decoding_options(e)
    e.add_argument("--split", choices=["test", "dev"], default="test")
    e.add_argument("-o", "--output", help="hypothesis file (default: RUN_DIR/SPLIT.hyp)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("bleu", help="corpus BLEU (sacrebleu) with the pieces of the formula")
    b.add_argument("hyp", help="hypothesis file, one sentence a line")
    b.add_argument("refs", nargs="+", metavar="REF", help="reference file(s), aligned with HYP")
    b.add_argument("--chrf", action="store_true", help="also chrF")
    b.add_argument("--ter", action="store_true", help="also TER")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument("-w", "--width", type=int, default=1, help="decimals of the scores (as sacrebleu -w)")
    b.set_defaults(func=cmd_bleu)
    return p


def _bad_number(args: argparse.Namespace) -> str | None:
    """A message for an out-of-range numeric option, or None."""
    for name in ("beam", "n_best"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            return f"--{name.replace('_', '-')}: expected an integer >= 1, got {value}"
    alpha = getattr(args, "alpha", None)
    if alpha is not None and alpha < 0:
        return f"--alpha: expected a number >= 0, got {alpha}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = _bad_number(args)
    if problem:
        parser.error(problem)  # usage line + message, exit 2
    try:
        return args.func(args)
    except NmtError as e:
        print(f"nmt: {e.kind}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("nmt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
