"""The training commands: `nmt train`, `nmt prepare`, `nmt plot` (learning curves) and
`nmt average` (checkpoints)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nmt.files import check_output


def cmd_train(args: argparse.Namespace) -> int:
    from nmt.training.job import train

    train(args.config, args.set, overwrite=args.overwrite, resume=args.resume)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from nmt.training.job import prepare

    prepare(args.config, args.set, overwrite=args.overwrite, resume=args.resume)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from nmt.plots import learning_curves_png

    check_output(args.output)
    print(learning_curves_png(args.run_dir, args.output))
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from nmt.rundir.average import average, choose_steps

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


TRAINING_COMMANDS = {"train": cmd_train, "prepare": cmd_prepare, "plot": cmd_plot, "average": cmd_average}
