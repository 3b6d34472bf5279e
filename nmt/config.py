"""Typed configuration: every key, its type, its default and its allowed range, in one place.

A YAML file maps onto these dataclasses one section at a time. `load_config` checks every
value against the field's type hint and the `check` in its metadata, so a bad config stops
with one line naming the key path: ``training.lr: expected a positive number, got 'abc'``.
`configs/reference.yaml` shows every key with its default and is checked against this file
by the tests.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nmt.errors import ConfigError
from nmt.untrusted import load_yaml, short_repr

# --- value checks used in field metadata ----------------------------------------------

# (predicate, what is expected of a float field, of an int field)
POSITIVE = (lambda x: x > 0, "a positive number", "a positive integer")
NON_NEGATIVE = (lambda x: x >= 0, "a number >= 0", "an integer >= 0")
PROBABILITY = (lambda x: 0 <= x < 1, "a number in [0, 1)", "")
AT_LEAST_ONE = (lambda x: x >= 1, "a number >= 1", "an integer >= 1")
FRACTION = (lambda x: 0 < x < 1, "a number in (0, 1)", "")
COVERAGE = (lambda x: 0 < x <= 1, "a number in (0, 1]", "")


def _up_to(high: int, low: int = 1) -> tuple:
    """An integer in [low, high]: upper bounds keep a config (or a checkpoint's: anyone's) from
    asking for a model, a batch or a search that no machine allocates, or a decode without end."""
    return (lambda x: low <= x <= high, f"a number in [{low:,}, {high:,}]", f"an integer from {low:,} to {high:,}")


SIZE = _up_to(8192)  # embedding, hidden and attention sizes
LAYERS = _up_to(16)
BEAM = _up_to(1000)
LENGTH_RATIO = (lambda x: 0 < x <= 10, "a number in (0, 10]", "")
ALPHA = (lambda x: 0 <= x <= 10, "a number in [0, 10]", "")  # lp(T) = T^10 is already 1e30 at T = 1000
LENGTH_OFFSET = _up_to(1000, low=0)
SEED = (lambda x: -(2**63) <= x < 2**63, "", "an integer in [-2^63, 2^63 - 1] (torch.manual_seed's range, with room)")


def _expected(check: tuple, tp: Any) -> str:
    """The words for what a checked field accepts."""
    return check[2] if tp is int else check[1]


def _f(default: Any, check: tuple | None = None, help: str = "") -> Any:
    """A dataclass field with a default, an optional range check and a help text."""
    return field(default=default, metadata={"check": check, "help": help})


# --- the sections ----------------------------------------------------------------------


@dataclass
class DataConfig:
    """Parallel text: each split is a prefix, its files are `{prefix}.{lang}` (or `.gz`)."""

    src_lang: str = _f("src", help="source file suffix, e.g. de")
    tgt_lang: str = _f("tgt", help="target file suffix, e.g. en")
    train: str = _f("", help="training prefix (required for nmt train)")
    dev: str = _f("", help="dev prefix: validation loss and BLEU, early stopping")
    test: str = _f("", help="test prefix: nmt evaluate, and the score after training")
    generate: Literal["dates"] | None = _f(
        None, help="write the built-in task's missing files where a prefix is DIR/train, DIR/dev or DIR/test"
    )
    max_src_length: int = _f(100, AT_LEAST_ONE, "drop training pairs with longer source (subwords)")
    max_tgt_length: int = _f(100, AT_LEAST_ONE, "drop training pairs with longer target (subwords)")


@dataclass
class TokenizerConfig:
    """SentencePiece, trained on the training data at the start of `nmt train` unless given."""

    type: Literal["unigram", "bpe"] = _f("unigram")
    vocab_size: int = _f(8000, AT_LEAST_ONE, "upper limit; small data may give fewer pieces")
    joint: bool = _f(True, help="one model for both languages (else one per side)")
    model: str | None = _f(None, help="existing joint .model file (skips training)")
    src_model: str | None = _f(None, help="existing source .model (joint: false)")
    tgt_model: str | None = _f(None, help="existing target .model (joint: false)")
    character_coverage: float = _f(1.0, COVERAGE, "fraction of characters the model covers")
    split_digits: bool = _f(False, help="one piece per digit (good for numbers and dates)")
    max_sentences: int = _f(1_000_000, AT_LEAST_ONE, "sample at most this many lines to train on")


@dataclass
class ModelConfig:
    """The attention model: BiRNN encoder, RNN decoder with attention (two arrangements)."""

    encoder: Literal["birnn"] = _f("birnn", help="the encoder (nmt.model.seq2seq.ENCODERS)")
    rnn_type: Literal["lstm", "gru", "rnn"] = _f("lstm")
    emb_size: int = _f(256, SIZE)
    enc_hidden_size: int = _f(256, SIZE, "per direction; encoder states are 2x this")
    enc_layers: int = _f(1, LAYERS)
    dec_hidden_size: int = _f(256, SIZE)
    dec_layers: int = _f(1, LAYERS)
    decoder: Literal["luong", "bahdanau"] = _f(
        "luong", help="luong: query s_t, predict from ã_t; bahdanau: query s_{t-1}, c_t into the RNN"
    )
    attention: Literal["bahdanau", "luong_dot", "luong_general"] = _f("bahdanau", help="the score e_tj")
    attention_size: int = _f(256, SIZE, "bahdanau: size of W s + U h")
    input_feeding: bool = _f(True, help="luong decoder: feed the previous attentional vector to the RNN")
    bridge: bool = _f(True, help="decoder initial state = tanh(W [enc final fwd; bwd])")
    dropout: float = _f(0.2, PROBABILITY)
    tie_embeddings: bool = _f(False, help="target embedding = output layer (emb = dec hidden)")
    textbook: bool = _f(
        False,
        help="compute as the equations read: torch's cells step by step, tanh "
        "attention, F.cross_entropy (same weights and results, slower)",
    )


@dataclass
class TrainingConfig:
    """Optimisation, batching, validation and stopping."""

    optimizer: Literal["adam", "adamw"] = _f("adam")
    lr: float = _f(1e-3, POSITIVE)
    weight_decay: float = _f(0.0, NON_NEGATIVE)
    clip_norm: float = _f(1.0, NON_NEGATIVE, "max gradient norm; 0 turns clipping off")
    label_smoothing: float = _f(0.1, PROBABILITY)
    batch_size: int = _f(4096, _up_to(1_000_000), "per batch and process: tokens or sentences, see batch_type")
    batch_type: Literal["tokens", "sentences"] = _f("tokens")
    lr_schedule: Literal["constant", "plateau", "inverse_sqrt", "linear"] = _f("plateau")
    warmup_steps: int = _f(0, NON_NEGATIVE, "linear warmup before the schedule")
    plateau_factor: float = _f(0.5, FRACTION, "plateau: lr *= factor when dev stalls")
    plateau_patience: int = _f(2, NON_NEGATIVE, "plateau: validations without gain")
    min_lr: float = _f(1e-5, NON_NEGATIVE)
    max_steps: int = _f(0, NON_NEGATIVE, "0 means no limit")
    max_epochs: int = _f(0, NON_NEGATIVE, "0 means no limit")
    max_minutes: float = _f(0.0, NON_NEGATIVE, "0 means no limit")
    keep_last: int = _f(1, AT_LEAST_ONE, "checkpoints/step-N.pt files kept: the newest ones")
    keep_best: int = _f(1, AT_LEAST_ONE, "... and the best ones by valid_metric (last.pt, best.pt always)")
    save_every: int = _f(0, NON_NEGATIVE, "steps between step-N.pt saves besides validations (nmt average); 0 off")
    valid_every: int = _f(500, AT_LEAST_ONE, "steps between validations")
    valid_metric: Literal["bleu", "accuracy", "loss"] = _f("bleu", help="for best and patience")
    patience: int = _f(0, NON_NEGATIVE, "stop after this many validations without gain; 0 off")
    log_every: int = _f(50, AT_LEAST_ONE, "steps between log lines when not on a terminal")
    show_examples: int = _f(3, NON_NEGATIVE, "dev/test translations printed")
    num_threads: int = _f(0, NON_NEGATIVE, "torch CPU threads; 0 keeps torch's default")
    precision: Literal["fp32", "bf16", "fp16"] = _f(
        "fp32", help="bf16/fp16: autocast the forward pass; fp16 scales the loss (GPUs without bf16)"
    )


@dataclass
class DecodingConfig:
    """Search defaults for translation, evaluation and the score after training."""

    beam_size: int = _f(5, BEAM, "1 means greedy")
    alpha: float = _f(1.0, ALPHA, "length normalisation exponent")
    length_penalty: Literal["average", "gnmt"] = _f("average", help="score/T^a or /((5+T)/6)^a")
    n_best: int = _f(1, BEAM)
    max_length_ratio: float = _f(1.5, LENGTH_RATIO, "max output length = ratio * source + offset")
    max_length_offset: int = _f(10, LENGTH_OFFSET)
    batch_size: int = _f(64, _up_to(10_000), "sentences per batch (x beam_size rows in beam search)")
    precision: Literal["fp32", "bf16", "fp16", "int8"] = _f("fp32", help="bf16/fp16: autocast; int8: CPU, nmt.quantize")
    stop: Literal["exact", "fast"] = _f(
        "exact",
        help="beam search stops when nothing can beat the n-best (exact), "
        "or when nothing is more probable (fast: the usual heuristic)",
    )
    no_unk: bool = _f(False, help="never output the unknown token (sampling never draws it anyway)")


@dataclass
class Config:
    """A whole experiment. `run_dir` will hold everything translation needs."""

    name: str = _f("nmt")
    run_dir: str = _f("runs/nmt", help="config, sentencepiece models, checkpoints, logs")
    seed: int = _f(1, SEED)
    device: Literal["auto", "cpu", "cuda"] = _f("auto")
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)


# --- building and checking ---------------------------------------------------------------


def _describe(tp: Any) -> str:
    """A type hint in the words of an error message."""
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(parts) + " or null"
    return str(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` converted to type hint `tp`, or a ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        try:  # strings too: YAML 1.1 reads 1e-3 as a string
            number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
        except (ValueError, OverflowError):
            number = None
        if number is not None and math.isfinite(number):
            return number
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{key}: expected {_describe(tp)}, got {short_repr(value)}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Instantiate dataclass `cls` from mapping `raw`, checking every key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {short_repr(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        name = key if isinstance(key, str) else short_repr(key)  # a key may be anything hashable
        name = name if len(name) <= 80 else name[:77] + "..."
        path = f"{prefix}.{name}" if prefix else name
        if not isinstance(key, str) or key not in fields:  # (a str: hashing anything else may not end)
            raise ConfigError(f"{path}: unknown key (expected one of: {', '.join(fields)})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            values[key] = _build(tp, value, path)
            continue
        if value is None and typing.get_origin(tp) not in (typing.Union, types.UnionType):
            raise ConfigError(f"{path}: expected {_describe(tp)}, got nothing")
        check = fields[key].metadata.get("check")
        try:
            value = _coerce(value, tp, path)
        except ConfigError:
            if check is None:
                raise
            raise ConfigError(f"{path}: expected {_expected(check, tp)}, got {short_repr(value)}") from None
        if check is not None and value is not None and not check[0](value):
            raise ConfigError(f"{path}: expected {_expected(check, tp)}, got {short_repr(value)}")
        values[key] = value
    return cls(**values)


def _validate(cfg: Config) -> None:
    """Checks that involve more than one key."""
    m = cfg.model
    if m.attention == "luong_dot" and m.dec_hidden_size != 2 * m.enc_hidden_size:
        raise ConfigError(
            "model.attention: luong_dot needs model.dec_hidden_size = 2 * enc_hidden_size "
            f"({2 * m.enc_hidden_size}), got {m.dec_hidden_size}; use luong_general or bahdanau"
        )
    if m.tie_embeddings and m.emb_size != m.dec_hidden_size:
        raise ConfigError(
            f"model.tie_embeddings: needs model.emb_size ({m.emb_size}) = model.dec_hidden_size ({m.dec_hidden_size})"
        )
    t = cfg.tokenizer
    if t.joint and (t.src_model or t.tgt_model):
        raise ConfigError("tokenizer.src_model: only with tokenizer.joint: false (use tokenizer.model)")
    if not t.joint and t.model:
        raise ConfigError("tokenizer.model: only with tokenizer.joint: true (use src_model/tgt_model)")
    if not t.joint and bool(t.src_model) != bool(t.tgt_model):
        raise ConfigError("tokenizer.src_model: give both src_model and tgt_model, or neither")


def replace_checked(section: Any, prefix: str, values: dict[str, Any]) -> Any:
    """A copy of config section `section` (e.g. cfg.decoding) with `values` set, each checked as
    it would be in a config file; errors name `prefix.key`."""
    return _build(type(section), {**dataclasses.asdict(section), **values}, prefix)


def _parse_override(item: str) -> tuple[list[str], Any]:
    """`'training.lr=3e-4'` -> (['training', 'lr'], 3e-4 as YAML reads it)."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected key.path=value")
    key, text = item.split("=", 1)
    try:
        value = load_yaml(text, f"--set {item}") if text.strip() else None
    except ConfigError:
        value = text
    return key.strip().split("."), value


def config_from_dict(raw: Any, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A checked Config from a nested mapping plus `key.path=value` overrides."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {type(raw).__name__}")
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        path, value = _parse_override(item)
        node = raw
        for part in path[:-1]:
            if node.get(part) is None:  # absent, or a section left empty in the file
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {part} is not a section")
        node[path[-1]] = value
    cfg = _build(Config, raw, "")
    _validate(cfg)
    return cfg


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config file, apply `--set` overrides and check everything."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config ({e})") from None
    return config_from_dict(load_yaml(text, str(path)), overrides)  # aliases expand boundedly


def config_to_dict(cfg: Config) -> dict:
    """The resolved config as plain data (what `run_dir/config.yaml` holds)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (a temporary file, fsync, rename)."""
    from nmt.files import atomic_write

    data = yaml.safe_dump(config_to_dict(cfg), sort_keys=False).encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def reference_yaml() -> str:
    """Every key with its default, allowed values and meaning: `configs/reference.yaml`."""
    lines = [
        "# nmt reference config: every key, its default and what it means.",
        "# Generated from nmt/config.py (nmt.config.reference_yaml); a test keeps them equal.",
        "# a config file only needs the keys it changes.",
        "",
    ]

    def section(cls: type, indent: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                lines.append(f"{indent}{f.name}:  # {tp.__doc__.splitlines()[0]}")
                section(tp, indent + "  ")
                continue
            check = f.metadata.get("check")
            notes = [_describe(tp) if check is None else _expected(check, tp), f.metadata.get("help", "")]
            lines.append(f"{indent}{f.name}: {_yaml_value(f.default)}  # " + "; ".join(n for n in notes if n))

    section(Config, "")
    return "\n".join(lines) + "\n"
