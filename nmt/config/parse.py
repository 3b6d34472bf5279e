"""Reading a config: YAML (or a dict) onto the sections of nmt.config.sections, `--set
KEY=VALUE` overrides, and the checks of every value against its field's type and range.

A bad config stops with one line naming the key path: ``training.lr: expected a positive
number, got 'abc'``. `configs/reference.yaml` shows every key with its default
(`reference_yaml`) and is checked against the sections by the tests.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from nmt.config.sections import Config, expected
from nmt.errors import ConfigError
from nmt.files import atomic_write
from nmt.untrusted import load_yaml, short_repr


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
    if origin is tuple:
        return f"a list, each {_describe(typing.get_args(tp)[0])}"  # e.g. [encoder, embeddings]
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
    elif origin is tuple:  # tuple[X, ...]: a YAML list, each item an X
        if isinstance(value, (list, tuple)):
            try:
                return tuple(_coerce(item, typing.get_args(tp)[0], key) for item in value)
            except ConfigError:
                pass
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
            raise ConfigError(f"{path}: expected {expected(check, tp)}, got {short_repr(value)}") from None
        if check is not None and value is not None and not check[0](value):
            raise ConfigError(f"{path}: expected {expected(check, tp)}, got {short_repr(value)}")
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
    if m.tie_source_embeddings and not (m.tie_embeddings and cfg.tokenizer.joint):
        missing = "model.tie_embeddings: true" if not m.tie_embeddings else "tokenizer.joint: true"
        raise ConfigError(f"model.tie_source_embeddings: needs {missing} (one vocabulary, one matrix)")
    frozen = set(cfg.training.freeze)
    embeddings = "embeddings" in frozen or {"src_embeddings", "tgt_embeddings"} <= frozen
    if embeddings and {"encoder", "decoder", "output"} <= frozen:
        raise ConfigError("training.freeze: every part of the model is frozen: nothing would train")
    t = cfg.tokenizer
    if t.type != "unigram" and t.sampling.alpha > 0:
        raise ConfigError(
            f"tokenizer.sampling.alpha: subword regularisation needs tokenizer.type unigram, got {t.type} "
            "(BPE-dropout is not offered: see docs/better_models.md)"
        )
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
    data = yaml.safe_dump(config_to_dict(cfg), sort_keys=False).encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@dataclasses.dataclass(frozen=True)
class ConfigKey:
    """One entry of the reference (configs/reference.yaml, docs/reference/config.md): a section,
    or a key with its default, what it accepts and its help."""

    path: tuple[str, ...]  # ("training", "lr"); a section: ("training",)
    type: Any  # the type hint; a section's dataclass
    default: Any  # None for a section
    accepts: str  # what a value may be, in the words of the errors ("" for a section)
    help: str  # the key's help; a section's docstring

    @property
    def is_section(self) -> bool:
        return dataclasses.is_dataclass(self.type)


def config_keys(cls: type = Config, prefix: tuple[str, ...] = ()) -> list[ConfigKey]:
    """Every section and key of the config, in the order of nmt.config.sections (a section
    before its keys)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, path = hints[f.name], (*prefix, f.name)
        if dataclasses.is_dataclass(tp):
            keys.append(ConfigKey(path, tp, None, "", tp.__doc__ or ""))
            keys += config_keys(tp, path)
            continue
        check = f.metadata.get("check")
        accepts = _describe(tp) if check is None else expected(check, tp)
        keys.append(ConfigKey(path, tp, f.default, accepts, f.metadata.get("help", "")))
    return keys


def reference_yaml() -> str:
    """Every key with its default, allowed values and meaning: `configs/reference.yaml`
    (written by scripts/gen_docs.py, with docs/reference/config.md from the same config_keys)."""
    lines = [
        "# nmt reference config: every key, its default and what it means.",
        "# Generated from nmt/config/sections.py by `python scripts/gen_docs.py`; a test keeps them equal.",
        "# a config file only needs the keys it changes.",
        "",
    ]
    for key in config_keys():
        indent, name = "  " * (len(key.path) - 1), key.path[-1]
        if key.is_section:
            lines.append(f"{indent}{name}:  # {key.help.splitlines()[0]}")
        else:
            notes = "; ".join(n for n in (key.accepts, key.help) if n)
            lines.append(f"{indent}{name}: {_yaml_value(key.default)}  # {notes}")
    return "\n".join(lines) + "\n"
