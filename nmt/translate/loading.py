"""Loading a trained model for translation: a run directory, a checkpoint file or the latest
run; the run's stored decoding defaults on top of the checkpoint's; the tokenizers it carries;
int8 layers; several models as one ensemble. `Translator.load` is the door to all of it."""

from __future__ import annotations

from pathlib import Path

from nmt.config import config_from_dict, config_to_dict
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError, ConfigError
from nmt.model import build_model
from nmt.rundir.checkpoint import load_checkpoint, resolve_checkpoint
from nmt.rundir.contents import tokenizer_models
from nmt.rundir.defaults import latest_run, read_decoding_defaults
from nmt.rundir.layout import DECODING, run_dir_of
from nmt.runtime import check_precision, resolve_device
from nmt.translate.ensemble import combine
from nmt.translate.quantize import quantize_int8
from nmt.translate.translator import Translator


def from_checkpoint(state: dict, device: str = "auto", precision: str | None = None) -> Translator:
    """The Translator of a loaded checkpoint dict (nmt.rundir.checkpoint). precision: fp32, bf16, fp16
    or int8 (CPU) for the search (default: the config's decoding.precision)."""
    cfg = config_from_dict(state["config"], [f"decoding.precision={precision}"] if precision else [])
    src_tok, tgt_tok = checkpoint_tokenizers(state)
    model = build_model(cfg.model, len(src_tok), len(tgt_tok))
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"its weights do not fit its config ({str(e).splitlines()[0]})") from None
    dev = resolve_device(device)
    if precision:
        check_precision(dev, precision, "--precision")
    if cfg.decoding.precision == "int8":  # int8 weight matrices (nmt.translate.quantize)
        model = quantize_int8(model, dev)
    return Translator(model.to(dev), src_tok, tgt_tok, cfg, dev)


def load_states(
    path: str | Path | list | None = None, device: str = "auto", precision: str | None = None
) -> list[tuple[str, Path, dict]]:
    """What `Translator.load` builds from: (path as given, checkpoint file, checkpoint state with the
    run's stored decoding defaults applied) for each model. A wrong precision is refused
    first (the option is the user's, not the checkpoint's)."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    if precision:
        check_precision(resolve_device(device), precision, "--precision")
    states = []
    for given in paths or [None]:
        ckpt = resolve_checkpoint(latest_run() if given is None else given)
        state = load_checkpoint(ckpt)  # its errors name the file
        run_dir = run_dir_of(ckpt)
        if run_dir is not None:
            state = with_stored_decoding(state, run_dir)
        states.append((str(given), ckpt, state))
    return states


def from_states(states: list[tuple[str, Path, dict]], device: str = "auto", precision: str | None = None) -> Translator:
    """The translator of `load_states`'s list: one model, or the ensemble of several."""
    translators = []
    for _, ckpt, state in states:
        try:
            translators.append(from_checkpoint(state, device, precision))
        except (ConfigError, CheckpointError) as e:
            raise CheckpointError(f"{ckpt}: {e}") from None
    if len(translators) == 1:
        return translators[0]
    ensemble, lead = combine(translators, [given for given, _, _ in states])
    return Translator(ensemble, lead.src_tok, lead.tgt_tok, lead.cfg, lead.device)


def with_stored_decoding(state: dict, run_dir: Path) -> dict:
    """The checkpoint state with the run's stored decoding defaults (decoding.yaml) applied."""
    stored = read_decoding_defaults(run_dir)
    if not stored or not isinstance(state.get("config"), dict):
        return state
    try:
        config = config_to_dict(config_from_dict(state["config"], stored))
    except ConfigError as e:
        raise ConfigError(f"{run_dir / DECODING}: {e}") from None
    return {**state, "config": config}


def checkpoint_tokenizers(state: dict) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) sentencepiece tokenizers of a loaded checkpoint (one object if joint)."""
    try:
        src_model, tgt_model = tokenizer_models(state)
        src = Tokenizer(src_model)
        return src, src if tgt_model is None else Tokenizer(tgt_model)
    except (RuntimeError, TypeError, KeyError):
        raise CheckpointError("its sentencepiece models are missing or corrupt") from None
