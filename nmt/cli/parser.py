"""The `nmt` command's arguments: its subcommands, their options, and the checks of option
values. The commands themselves are in nmt.cli (`COMMANDS`, by subcommand name)."""

from __future__ import annotations

import argparse

from nmt import __version__
from nmt.cli.checks import decoding_list, decoding_value, int_in, number_in

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
    q.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where the model runs (default auto: CUDA when torch sees a GPU, else the CPU)",
    )
    q.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16", "int8"],
        help="the model's precision in search (int8: CPU); default: the run's decoding.precision",
    )


def _decoding_options(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--beam",
        type=decoding_value("beam_size"),
        help="beam size (1 = greedy); default: the run's decoding.beam_size",
    )
    q.add_argument(
        "--alpha",
        type=decoding_value("alpha"),
        help="length normalisation exponent; default: the run's decoding.alpha",
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
        "train": "train a model from a YAML config (or go on training a run: RUN_DIR --resume)",
        "prepare": "what `nmt train` does before its first step (sentencepiece, the encoded corpus RUN_DIR/train.bin)",
    }
    resume_help = {
        "train": "continue the run in run_dir from its last checkpoint, exactly (model, optimizer, schedule, data "
        "position); a new run when it has no checkpoint yet",
        "prepare": "keep the run in run_dir (its checkpoints and sentencepiece models; the config must match its "
        "training) and ready its corpus for `nmt train --resume`; without it a run there is refused "
        "(--overwrite replaces it)",
    }
    for name, text in helps.items():
        t = sub.add_parser(name, help=text)
        t.add_argument(
            "config",
            metavar="CONFIG|RUN_DIR",
            help="a YAML config (every key: configs/reference.yaml), or a run directory: its config.yaml, "
            "and the run stays in that directory",
        )
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
            help=resume_help[name],
        )


def _add_translate(sub) -> None:
    tr = sub.add_parser("translate", help="translate lines (stdin to stdout by default)")
    tr.add_argument("-m", "--model", action="append", help=MODEL_HELP + "; repeated: their ensemble")
    _decoding_options(tr)
    tr.add_argument(
        "--n-best",
        type=decoding_value("n_best"),
        metavar="K",
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
    tr.add_argument("--temperature", type=float, metavar="T", help="sampling: divide the logits by T (default 1)")
    tr.add_argument(
        "--top-k", type=int, metavar="K", help="sampling: only among the K likeliest tokens (default 0: all)"
    )
    tr.add_argument("--seed", type=int, help="sampling: random seed (same seed, same samples)")
    tr.add_argument("--plot-attention", metavar="DIR", help="write one attention heatmap PNG per input line into DIR")
    tr.add_argument(
        "--align",
        nargs="?",
        const="words",
        choices=["words", "pieces"],
        help="add ' ||| ' and word alignments from attention in the Pharaoh format (SRC-TGT, 0-based), "
        "one link per output word; --align pieces: one per output subword",
    )
    tr.add_argument(
        "--constraints",
        metavar="FILE",
        help="phrases each output must contain: one line per input line, phrases separated by tabs "
        "(an empty line: none); beam search with dynamic beam allocation",
    )
    tr.add_argument(
        "--prefix",
        metavar="FILE",
        help="one target prefix per input line (empty: none): each output begins with it; a last word "
        "without a space after it may be unfinished, and is completed",
    )
    tr.add_argument(
        "--trace",
        action="store_true",
        help="beam search step by step on stderr, per input line: the hypotheses kept and ended at each "
        "step, with their log-probabilities",
    )


def _beam_sizes_option(q: argparse.ArgumentParser, purpose: str) -> None:
    q.add_argument(
        "--beam",
        type=decoding_list("beam_size"),
        default=[1, 3, 5, 10],
        metavar="SIZES",
        help=f"beam sizes {purpose}, separated by commas (default 1,3,5,10)",
    )


def _add_analyze(sub) -> None:
    an = sub.add_parser("analyze", help="beam-search error analysis: search errors or model errors?")
    _eval_data_options(an)
    _beam_sizes_option(an, "to compare")
    an.add_argument(
        "--alpha",
        type=decoding_value("alpha"),
        help="length normalisation exponent; default: the run's decoding.alpha",
    )
    an.add_argument("--json", action="store_true", help="print JSON")
    an.add_argument("--per-sentence", action="store_true", help="with --json: every sentence's scores and kind")


def _add_tune(sub) -> None:
    tu = sub.add_parser("tune", help="choose beam size and alpha on dev data")
    _eval_data_options(tu)
    _beam_sizes_option(tu, "to try")
    tu.add_argument(
        "--alpha",
        type=decoding_list("alpha"),
        default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2],
        metavar="ALPHAS",
        help="alphas to try with each beam size, separated by commas (default 0,0.2,0.4,0.6,0.8,1,1.2)",
    )
    tu.add_argument("--plot", metavar="PNG", help="where to draw BLEU against alpha (default: RUN_DIR/tune.png)")
    tu.add_argument("--no-plot", action="store_true", help="draw nothing")
    tu.add_argument("--write", action="store_true", help="store the best pair as the run's decoding defaults")


def _add_plot(sub) -> None:
    pl = sub.add_parser("plot", help="draw a run's learning curves (loss, dev loss, dev BLEU) into a PNG")
    pl.add_argument("run_dir", metavar="RUN_DIR", help="the run whose metrics.jsonl to draw")
    pl.add_argument("-o", "--output", help="PNG file (default: RUN_DIR/learning_curves.png)")


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="translate a run's test or dev split and report BLEU, chrF and exact match")
    e.add_argument(
        "target",
        metavar="CONFIG|RUN_DIR",
        help="a run directory, or the config of a run (its run_dir; the split's files as the config names them)",
    )
    _decoding_options(e)
    e.add_argument(
        "--split", choices=["test", "dev"], default="test", help="which split of the config to translate (default test)"
    )
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
    b.add_argument(
        "-w", "--width", type=int_in(0, 20), default=1, help="decimals of the scores, as sacrebleu -w (default 1)"
    )
    b.add_argument(
        "--compare",
        metavar="HYP_B",
        help="is HYP_B better than HYP? sacrebleu's paired bootstrap and approximate randomisation tests",
    )
    # upper bounds: sacrebleu's bootstrap holds resamples x sentences indices at once (10,000 x 3,000: 240 MB)
    b.add_argument(
        "--paired-bs-n", type=int_in(1, 10_000), default=1000, help="--compare: bootstrap resamples (default 1000)"
    )
    b.add_argument(
        "--paired-ar-n", type=int_in(1, 100_000), default=10000, help="--compare: randomisation trials (default 10000)"
    )


def _add_serve(sub) -> None:
    from nmt.serve import Limits

    d = Limits()
    s = sub.add_parser("serve", help="a translation server (HTTP, JSON) with a web page; needs nmt[serve]")
    s.add_argument("-m", "--model", action="append", help=MODEL_HELP + "; repeated: their ensemble")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int_in(0, 65535), default=8000, help="port (default 8000; 0: any free port)")
    s.add_argument(
        "--token-file",
        metavar="FILE",
        help="a file whose first line is the API's token (or the environment's NMT_SERVE_TOKEN): "
        "/translate, /info and /metrics then need 'Authorization: Bearer TOKEN'; /health and the page stay open",
    )
    limits = (
        ("--max-batch", int_in(1, 10_000), "sentences per decoded batch"),
        ("--max-wait-ms", number_in(0, 3_600_000), "most waiting for more after a batch"),
        ("--max-sentences", int_in(1, 100_000), "sentences per request (more: 413)"),
        ("--max-bytes", int_in(1, 2**31), "bytes of a request's body (more: 413)"),
        ("--max-queue", int_in(1, 10**7), "sentences waiting (more: 503)"),
        ("--max-beam", int_in(1, 1000), "the largest beam a request may ask for"),
        ("--max-pieces", int_in(1, 100_000), "subwords of one input line (more: 413)"),
        ("--read-timeout-s", number_in(0, 3600, above=True), "most seconds for a request's body (more: 408)"),
        ("--workers", int_in(1, 64), "decoding workers, each its own batch (CPU: processes); one per core"),
    )
    for option, kind, text in limits:
        default = getattr(d, option[2:].replace("-", "_"))
        s.add_argument(option, type=kind, default=default, help=f"{text} (default {default})")
    s.add_argument(
        "--threads",
        type=int_in(0, 1024),
        default=1,
        help="torch's CPU threads of each decoding worker (default 1: the other cores serve HTTP; 0: one per core)",
    )
    _model_options(s)


def _add_score(sub) -> None:
    sc = sub.add_parser(
        "score", help="the model's log-probability of given translations: LOGPROB<TAB>SCORE<TAB>TOKENS per pair"
    )
    sc.add_argument("-m", "--model", action="append", help=MODEL_HELP + "; repeated: their ensemble")
    sc.add_argument("-i", "--input", help="source file (with -t); default: SOURCE<TAB>TARGET lines on stdin")
    sc.add_argument("-t", "--target", help="target file, aligned with -i")
    sc.add_argument("-o", "--output", help="output file (default: stdout)")
    sc.add_argument(
        "--alpha",
        type=decoding_value("alpha"),
        help="length normalisation exponent; default: the run's decoding.alpha",
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
