"""The commands that measure: `nmt evaluate` (a split translated and scored), `nmt bleu`
(sacrebleu's scores and paired tests), `nmt analyze` (search errors) and `nmt tune` (beam, alpha)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nmt.cli.streams import DRAWING_FAILURES, load_translator, note, reason
from nmt.errors import ConfigError
from nmt.files import check_output
from nmt.rundir.layout import hypotheses


def cmd_analyze(args: argparse.Namespace) -> int:
    from nmt.evaluation import analysis
    from nmt.evaluation.inputs import check_eval_choice, eval_data

    check_eval_choice(args.split, args.src, args.ref)  # before the model is loaded
    translator = load_translator(args.model, args)
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
    from nmt.evaluation import tuning
    from nmt.evaluation.inputs import check_eval_choice, eval_data

    if args.plot and not args.no_plot and not args.plot.lower().endswith(".png"):
        raise ConfigError(f"--plot: expected a file name ending in .png, got {args.plot!r}")
    if args.plot and not args.no_plot:
        check_output(args.plot)
    check_eval_choice(args.split, args.src, args.ref)  # before the model is loaded
    target = tuning.TuneTarget.find(args.model, write=args.write)
    translator = load_translator(target.checkpoint, args)
    src, ref, name = eval_data(translator.cfg.data, args.split, args.src, args.ref)
    results = tuning.tune(translator, src, ref, args.beam, args.alpha)
    best = tuning.best(results)
    print(f"{name}: {len(src)} sentences")
    print(tuning.table(results))
    chosen = f"best: beam {best.beam_size}, alpha {best.alpha:g} (BLEU {best.bleu:.2f})"
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
        note(f"no plot {path}: {reason(e)}")
        return
    print(f"plot: {drawn}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nmt.config import config_from_dict, config_to_dict, load_config
    from nmt.evaluation.inputs import NO_SPLIT_TO_EVALUATE, eval_data
    from nmt.evaluation.splits import translate_and_score

    check_output(args.output)  # before the config and the model are loaded
    target = Path(args.target)
    cfg = None if target.is_dir() else load_config(target, args.set)
    run_dir = target if cfg is None else Path(cfg.run_dir)
    if args.model and not args.output:  # the run's SPLIT.hyp holds its own model's translations
        raise ConfigError("-m: give -o FILE for the hypotheses of another model")
    out = Path(args.output) if args.output else run_dir / hypotheses(args.split)
    translator = load_translator(args.model or run_dir, args)
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
    from nmt.evaluation.metrics import format_report, json_report, score_files

    if args.compare:
        return _compare(args)
    result = score_files(args.hyp, args.refs, chrf=args.chrf, ter=args.ter)
    if args.json:
        print(json.dumps(json_report(result, args.width), indent=1, ensure_ascii=False))
    else:
        print(format_report(result, args.width))
    return 0


def _compare(args: argparse.Namespace) -> int:
    """`nmt bleu HYP REF --compare HYP_B`: sacrebleu's paired tests, in its format (nmt.evaluation.significance)."""
    from nmt.evaluation.significance import compare_files, format_comparison, json_comparison

    samples = {"paired_bs": args.paired_bs_n, "paired_ar": args.paired_ar_n}
    result = compare_files(args.hyp, args.compare, args.refs, chrf=args.chrf, ter=args.ter, samples=samples)
    if args.json:
        print(json.dumps(json_comparison(result), indent=1, ensure_ascii=False))
    else:
        print(format_comparison(result, args.width))
    return 0


EVALUATION_COMMANDS = {"evaluate": cmd_evaluate, "bleu": cmd_bleu, "analyze": cmd_analyze, "tune": cmd_tune}
