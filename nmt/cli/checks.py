"""Checks of the `nmt` command's option values: argparse types for bounded numbers and for
decoding options (each checked by the config's own rule for its key, so `--beam 0` is refused
as `decoding.beam_size: 0` would be), and the checks of options used together (`bad_combination`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def int_in(least: int, most: int):
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


def number_in(least: float, most: float, above: bool = False):
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


def decoding_list(key: str):
    """An argparse type for comma-separated values of decoding.KEY, each checked as decoding_value checks one."""
    one = decoding_value(key)

    def parse(text: str) -> list:
        values = [one(v) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected values separated by commas, got {text!r}")
        return values

    return parse


def decoding_value(key: str):
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
    for option in ("input", "output", "target", "src", "ref", "plot", "plot_attention", "prefix", "constraints"):
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
    if args.trace:
        return "--trace: shows beam search's steps; not with --sample"
    if args.prefix is not None:
        return "--prefix: an option of search; not with --sample"
    if args.constraints is not None:
        return "--constraints: an option of search; not with --sample"
    if args.align:
        return "--align: aligns the search's outputs; not with --sample"
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
