"""nmt.config: every key typed and range-checked, every error naming its key path."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from nmt.config import (
    Config,
    DataConfig,
    DecodingConfig,
    ModelConfig,
    TokenizerConfig,
    TrainingConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    reference_yaml,
    save_config,
)
from nmt.errors import ConfigError, NmtError


def config_error(raw, overrides=()) -> str:
    """The message of the ConfigError that config_from_dict raises."""
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def leaf_fields(cls: type = Config, prefix: str = "") -> list[tuple[str, object, dataclasses.Field]]:
    """(key path, type hint, field) of every non-section key, walking the dataclass tree."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += leaf_fields(tp, path)
        else:
            out.append((path, tp, f))
    return out


LEAVES = leaf_fields()
LEAF_PATHS = [path for path, _, _ in LEAVES]
LIST_PATHS = {path for path, tp, _ in LEAVES if typing.get_origin(tp) is tuple}
SECTIONS = ["data", "tokenizer", "model", "training", "decoding"]


def nested(path: str, value) -> dict:
    """{'a': {'b': value}} for 'a.b'."""
    *parents, last = path.split(".")
    raw = {last: value}
    for part in reversed(parents):
        raw = {part: raw}
    return raw


def get(cfg: Config, path: str):
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def is_optional(tp) -> bool:
    return type(None) in typing.get_args(tp)


# --- defaults ---------------------------------------------------------------------------------


def test_the_tree_is_what_the_tests_expect():
    assert len(LEAVES) > 50
    assert {p.split(".")[0] for p in LEAF_PATHS if "." in p} == set(SECTIONS)


@pytest.mark.parametrize("raw", [None, {}, {s: None for s in SECTIONS}, {s: {} for s in SECTIONS}])
def test_empty_config_gives_the_defaults(raw):
    cfg = config_from_dict(raw)
    assert cfg == Config()
    assert isinstance(cfg.training, TrainingConfig) and isinstance(cfg.data, DataConfig)
    assert isinstance(cfg.tokenizer, TokenizerConfig) and isinstance(cfg.model, ModelConfig)
    assert isinstance(cfg.decoding, DecodingConfig)


def test_some_defaults():
    cfg = Config()
    assert cfg.training.lr == 1e-3
    assert cfg.model.rnn_type == "lstm" and cfg.model.attention == "bahdanau"
    assert cfg.tokenizer.joint is True and cfg.tokenizer.model is None
    assert cfg.decoding.beam_size >= 1 and cfg.data.generate is None


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_gives_the_defaults(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(path) == Config()


@pytest.mark.parametrize("path,tp,f", LEAVES, ids=LEAF_PATHS)
def test_every_default_passes_its_own_checks(path, tp, f):
    """The default of each key, written out explicitly, is accepted and kept."""
    cfg = config_from_dict(nested(path, f.default))
    assert get(cfg, path) == f.default


def test_dates_config_loads(repo_root):
    cfg = load_config(repo_root / "configs" / "dates.yaml")
    assert cfg.name == "dates"
    assert cfg.data.generate == "dates"
    assert cfg.tokenizer.joint is False and cfg.tokenizer.split_digits is True
    assert cfg.model.emb_size == 64 and cfg.training.valid_metric == "accuracy"
    assert isinstance(cfg.training.lr, float) and cfg.training.lr == 0.003


def test_the_best_multi30k_recipe_is_the_reference_with_subword_regularisation_and_4k_pieces(repo_root):
    """configs/multi30k_de_en_best.yaml differs from the reference config (which benchmarks
    compare against) in its name, run directory and the levers the measurements chose alone."""

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in d.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    reference, best = (
        flat(config_to_dict(load_config(repo_root / "configs" / name)))
        for name in ("multi30k_de_en.yaml", "multi30k_de_en_best.yaml")
    )
    changed = {key: best[key] for key in best if best[key] != reference[key]}
    assert changed == {
        "name": "multi30k_de_en_best",
        "run_dir": "runs/multi30k_de_en_best",
        "tokenizer.sampling.alpha": 0.5,
        "tokenizer.vocab_size": 4000,
    }


def test_values_from_a_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nseed: 7\nmodel:\n  rnn_type: gru\n  dropout: 0\ntraining:\n  lr: 1e-4\n")
    cfg = load_config(path)
    assert (cfg.name, cfg.seed, cfg.model.rnn_type) == ("x", 7, "gru")
    assert cfg.training.lr == 1e-4 and isinstance(cfg.training.lr, float)  # YAML 1.1 reads '1e-4' as a string
    assert cfg.model.dropout == 0.0 and isinstance(cfg.model.dropout, float)  # int 0 widened to float
    assert cfg.model.emb_size == ModelConfig().emb_size  # untouched keys keep their defaults


def test_resolved_config_round_trips(tmp_path):
    """What a checkpoint stores (config_to_dict) and run_dir/config.yaml load back identically."""
    cfg = config_from_dict(
        {
            "name": "rt",
            "model": {"rnn_type": "gru", "attention": "luong_general"},
            "tokenizer": {"joint": False, "src_model": "a.model", "tgt_model": "b.model"},
            "training": {"lr": 3e-4, "max_minutes": 1.5},
            "data": {"generate": "dates"},
        }
    )
    assert config_from_dict(config_to_dict(cfg)) == cfg
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_config_from_dict_does_not_modify_its_argument():
    raw = {"training": {"lr": 0.1}, "model": {"rnn_type": "gru"}}
    config_from_dict(raw, ["training.lr=0.5", "training.batch_size=10", "decoding.beam_size=2"])
    assert raw == {"training": {"lr": 0.1}, "model": {"rnn_type": "gru"}}


# --- unknown keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,path",
    [
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"trainig": {"lr": 0.1}}, "trainig"),
        ({"training": {"learning_rate": 0.1}}, "training.learning_rate"),
        ({"model": {"hidden_size": 10}}, "model.hidden_size"),
        ({"decoding": {"beam": 3}}, "decoding.beam"),
        ({"data": {"src": "de"}}, "data.src"),
        ({"tokenizer": {"vocab": 10}}, "tokenizer.vocab"),
    ],
)
def test_unknown_key_names_its_path(raw, path):
    message = config_error(raw)
    assert message.startswith(f"{path}: unknown key"), message


def test_unknown_key_lists_the_keys_of_its_section():
    message = config_error({"training": {"learning_rate": 0.1}})
    assert "lr" in message.split("unknown key", 1)[1]
    assert "batch_size" in message


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("value", [3, "abc", [1, 2], True])
def test_section_that_is_not_a_mapping(section, value):
    message = config_error({section: value})
    assert message.startswith(f"{section}: expected a mapping"), message


@pytest.mark.parametrize("raw", [[1, 2], "abc", 3])
def test_top_level_that_is_not_a_mapping(raw):
    assert config_error(raw).startswith("config: expected a mapping")


def test_error_messages_are_one_line():
    message = config_error({"a\nb": 1})
    assert "\n" not in message
    assert str(NmtError("two\nlines   here")) == "two lines here"


# --- wrong types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,value",
    [
        ("training.batch_size", "abc"),  # string for int
        ("training.batch_size", "100"),  # a quoted number is still a string
        ("training.batch_size", 1.5),  # float for int
        ("training.batch_size", 100.0),  # even an integral float
        ("training.batch_size", True),  # bool for int (bool is an int subclass in Python)
        ("seed", False),
        ("training.lr", "abc"),  # string for float
        ("training.lr", [1e-3]),  # list for float
        ("training.lr", True),  # bool for float
        ("training.lr", {"value": 1}),
        ("model.dropout", "0.1.2"),
        ("model.input_feeding", "yes"),  # string for bool (YAML 1.1 `yes` is already a bool)
        ("model.input_feeding", 1),  # int for bool
        ("model.input_feeding", 0.0),
        ("tokenizer.joint", "true"),
        ("name", True),  # bool for string
        ("name", ["a"]),
        ("data.train", {"prefix": "x"}),
        ("tokenizer.model", ["a.model"]),  # Optional[str]
        ("data.generate", True),  # Optional[Literal]
        ("model.rnn_type", 1),
    ],
)
def test_wrong_type_names_key_and_value(path, value):
    message = config_error(nested(path, value))
    assert message.startswith(f"{path}: expected "), message
    assert repr(value) in message or str(value) in message, message


def test_the_documented_message_for_a_string_lr():
    message = config_error({"training": {"lr": "abc"}})
    assert message.startswith("training.lr: expected") and message.endswith("got 'abc'"), message


@pytest.mark.parametrize(
    "path,value,expected",
    [
        ("training.lr", 1, 1.0),
        ("training.lr", "3e-4", 3e-4),
        ("training.lr", "0.5", 0.5),
        ("model.dropout", 0, 0.0),
        ("name", 123, "123"),  # numbers are fine where a string is expected (file names)
        ("data.train", 2024, "2024"),
    ],
)
def test_lenient_conversions(path, value, expected):
    got = get(config_from_dict(nested(path, value)), path)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "path,value",
    [
        ("training.lr", 10**400),  # an int too large for a float: YAML `lr: 1000...0`
    ],
)
def test_huge_integer_for_a_float_is_a_config_error(path, value):
    config_error(nested(path, value))


# --- ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,value",
    [
        ("training.lr", -1e-3),
        ("training.lr", 0),
        ("training.lr", "-3e-4"),
        ("training.lr", "nan"),
        ("model.dropout", 1.0),
        ("model.dropout", -0.1),
        ("training.label_smoothing", 1.0),
        ("tokenizer.vocab_size", 0),
        ("tokenizer.vocab_size", -5),
        ("training.batch_size", 0),
        ("training.weight_decay", -1),
        ("training.max_steps", -1),
        ("training.valid_every", 0),
        ("decoding.beam_size", 0),
        ("decoding.n_best", 0),
        ("decoding.max_length_ratio", 0),
        ("model.emb_size", 0),
        ("model.enc_layers", 0),
        ("data.max_src_length", 0),
        ("tokenizer.character_coverage", 0),
    ],
)
def test_out_of_range_names_key_and_value(path, value):
    message = config_error(nested(path, value))
    assert message.startswith(f"{path}: expected "), message
    assert "got " in message


@pytest.mark.parametrize(
    "path,value",
    [
        ("model.dropout", 0.0),
        ("model.dropout", 0.999),
        ("training.max_steps", 0),
        ("training.weight_decay", 0),
        ("training.clip_norm", 0),
        ("tokenizer.vocab_size", 1),
        ("decoding.beam_size", 1),
        ("training.lr", 1e-9),
        ("decoding.alpha", 0),
    ],
)
def test_boundary_values_are_accepted(path, value):
    assert get(config_from_dict(nested(path, value)), path) == value


def test_range_error_message_shape():
    assert config_error({"training": {"lr": -1}}) == "training.lr: expected a positive number, got -1.0"
    message = config_error({"tokenizer": {"vocab_size": 0}})
    assert message.startswith("tokenizer.vocab_size: expected an integer >= 1"), message
    assert message.endswith("got 0")


# --- upper bounds: what no machine allocates, or a decode without end --------------------------

UPPER_BOUNDS = [
    ("model.emb_size", 8192),
    ("model.enc_hidden_size", 8192),
    ("model.dec_hidden_size", 8192),
    ("model.attention_size", 8192),
    ("model.enc_layers", 16),
    ("model.dec_layers", 16),
    ("training.batch_size", 1_000_000),
    ("decoding.beam_size", 1000),
    ("decoding.n_best", 1000),
    ("decoding.batch_size", 10_000),
    ("decoding.max_length_ratio", 10.0),
    ("decoding.max_length_offset", 1000),
]


@pytest.mark.parametrize("path,high", UPPER_BOUNDS, ids=[p for p, _ in UPPER_BOUNDS])
def test_sizes_beams_batches_and_lengths_have_upper_bounds(path, high):
    raw = nested(path, high)
    if path == "decoding.n_best":
        raw["decoding"]["beam_size"] = high
    assert get(config_from_dict(raw), path) == high
    for too_large in (high + 1, 10**30):
        message = config_error(nested(path, too_large))
        bound = format(high, "," if isinstance(high, int) else "g")
        assert message.startswith(f"{path}: expected ") and bound in message, message


def test_the_bounds_are_in_the_reference_config():
    text = reference_yaml()
    assert "emb_size: 256  # an integer from 1 to 8,192" in text
    assert "max_length_ratio: 1.5  # a number in (0, 10]" in text


@pytest.mark.parametrize("seed", [2**63, 2**64, -(2**63) - 1, 10**30])
def test_seed_outside_torchs_range_is_refused(seed):
    message = config_error({"seed": seed})
    assert message.startswith("seed: expected an integer in [-2^63, 2^63 - 1]"), message


@pytest.mark.parametrize("seed", [0, -1, 2**63 - 1, -(2**63)])
def test_seeds_torch_takes_are_accepted(seed):
    import torch

    assert config_from_dict({"seed": seed}).seed == seed
    torch.Generator().manual_seed(seed + 1 + 1000 * 10**6)  # training adds the rank and 1000 x step


def test_cli_seed_out_of_range_is_one_line(tmp_path, nmt_cli, one_line_error):
    config = tmp_path / "c.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\n")
    message = one_line_error(nmt_cli("train", config, "--set", f"seed={2**64}"), "config error", 2)
    assert message.startswith("seed: expected an integer in [-2^63, 2^63 - 1]"), message


# --- choices ----------------------------------------------------------------------------------

LITERALS = [
    (path, tp)
    for path, tp, _ in LEAVES
    if typing.get_origin(tp) is typing.Literal
    or any(typing.get_origin(a) is typing.Literal for a in typing.get_args(tp))
]


def choices(tp) -> tuple:
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) is tuple:  # a list of choices (training.freeze)
        return typing.get_args(typing.get_args(tp)[0])
    (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
    return typing.get_args(inner)


def test_rnn_type_foo():
    message = config_error({"model": {"rnn_type": "foo"}})
    assert message.startswith("model.rnn_type: expected one of"), message
    assert all(c in message for c in ("lstm", "gru", "rnn")) and message.endswith("got 'foo'")


@pytest.mark.parametrize("path,tp", LITERALS, ids=[p for p, _ in LITERALS])
def test_every_choice_is_accepted_and_others_are_not(path, tp):
    valid = choices(tp)
    assert valid
    listed = typing.get_origin(tp) is tuple  # a list of choices: each given as a list of one
    for value in valid:
        raw = nested(path, [value] if listed else value)
        if path == "model.attention" and value == "luong_dot":
            raw["model"].update(enc_hidden_size=128, dec_hidden_size=256)
        if path == "training.lr_schedule" and value == "linear":
            raw.setdefault("training", {})["max_steps"] = 10
        assert get(config_from_dict(raw), path) == ((value,) if listed else value)
    for bad in ("foo", valid[0].upper(), f" {valid[0]}"):
        message = config_error(nested(path, [bad] if listed else bad))
        assert message.startswith(f"{path}: expected {'a list, each ' if listed else ''}one of"), message


# --- null -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [p for p, tp, _ in LEAVES if not is_optional(tp)])
def test_null_for_a_required_key_names_it(path):
    message = config_error(nested(path, None))
    assert message.startswith(f"{path}: expected "), message
    assert "nothing" in message


@pytest.mark.parametrize("path", [p for p, tp, _ in LEAVES if is_optional(tp)])
def test_null_for_an_optional_key_is_none(path):
    assert get(config_from_dict(nested(path, None)), path) is None


# --- the fuzz: every leaf with a wrong type -----------------------------------------------------


@pytest.mark.parametrize("path", LEAF_PATHS)
@pytest.mark.parametrize("bad", [[1, 2], {"a": 1}, [], object()], ids=["list", "dict", "empty-list", "object"])
def test_every_leaf_rejects_a_wrong_type_naming_exactly_its_path(path, bad):
    if bad == [] and path in LIST_PATHS:
        return  # an empty list is a list key's "none" (training.freeze: [])
    message = config_error(nested(path, bad))
    assert message.split(":", 1)[0] == path, message


@pytest.mark.parametrize("path", LEAF_PATHS)
def test_every_leaf_rejects_a_wrong_type_given_with_set(path):
    message = config_error({}, [f"{path}=[1, 2]"])
    assert message.split(":", 1)[0] == path, message


@pytest.mark.parametrize("path,tp,f", LEAVES, ids=LEAF_PATHS)
def test_every_leaf_rejects_a_value_of_another_type(path, tp, f):
    """A value of a type the key does not take: bool for numbers/strings, a string for the rest."""
    inner = tp if not is_optional(tp) else next(a for a in typing.get_args(tp) if a is not type(None))
    if inner is bool:
        bad = "maybe"
    elif inner in (int, float, str) or typing.get_origin(inner) in (typing.Literal, tuple):
        bad = True
    else:  # pragma: no cover - a new kind of type hint: the tests must learn it
        pytest.fail(f"{path}: unexpected type {tp}")
    message = config_error(nested(path, bad))
    assert message.split(":", 1)[0] == path, message


# --- --set overrides --------------------------------------------------------------------------


def test_set_parses_values_as_yaml():
    cfg = config_from_dict(
        {},
        [
            "training.batch_size=100",
            "model.input_feeding=false",
            "name=my run",
            "training.lr=0.5",
            "data.generate=dates",
            "tokenizer.model=null",
            'run_dir="123"',
            "seed=42",
        ],
    )
    assert cfg.training.batch_size == 100
    assert cfg.model.input_feeding is False
    assert cfg.name == "my run"
    assert cfg.training.lr == 0.5
    assert cfg.data.generate == "dates"
    assert cfg.tokenizer.model is None
    assert cfg.run_dir == "123" and cfg.seed == 42


@pytest.mark.parametrize("text,value", [("3e-4", 3e-4), ("1e-3", 1e-3), ("3.0e-4", 3e-4), ("5E-5", 5e-5), ("2", 2.0)])
def test_set_lr_in_exponent_notation(text, value):
    """YAML 1.1 reads `3e-4` as a string; a float key must still take it."""
    cfg = config_from_dict({}, [f"training.lr={text}"])
    assert cfg.training.lr == pytest.approx(value) and isinstance(cfg.training.lr, float)


def test_set_overrides_file_values_and_later_sets_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 0.1\n  batch_size: 64\nmodel:\n  rnn_type: gru\n")
    cfg = load_config(path, ["training.lr=0.2", "model.rnn_type=rnn", "training.lr=0.3"])
    assert cfg.training.lr == 0.3 and cfg.model.rnn_type == "rnn"
    assert cfg.training.batch_size == 64  # a sibling in the file is kept


def test_set_creates_a_missing_section():
    cfg = config_from_dict({"name": "x"}, ["decoding.beam_size=7"])
    assert cfg.decoding.beam_size == 7 and cfg.name == "x"


def test_set_into_a_section_left_empty_in_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n")  # an empty section is valid on its own
    assert load_config(path) == Config()
    assert load_config(path, ["training.lr=0.2"]).training.lr == 0.2


def test_set_value_may_contain_equals_signs():
    assert config_from_dict({}, ["data.train=a=b"]).data.train == "a=b"


def test_set_key_is_stripped():
    assert config_from_dict({}, [" training.lr =0.25"]).training.lr == 0.25


@pytest.mark.parametrize(
    "item,start",
    [
        ("training.lr", "--set training.lr"),  # no '='
        ("training.lr=abc", "training.lr: expected"),
        ("training.lr=", "training.lr: expected"),  # empty means null
        ("training.foo=1", "training.foo: unknown key"),
        ("foo.bar=1", "foo: unknown key"),
        ("foo=1", "foo: unknown key"),
        ("model.rnn_type=foo", "model.rnn_type: expected one of"),
        ("decoding.beam_size=0", "decoding.beam_size: expected"),
        ("training.batch_size=1.5", "training.batch_size: expected"),
        ("training=3", "training: expected a mapping"),
        ("run_dir.x=1", "run_dir"),
        ("training.lr=[1", "training.lr: expected"),  # not YAML: taken as a string
    ],
)
def test_bad_set(item, start):
    message = config_error({}, [item])
    assert message.startswith(start), message


# --- checks across keys -------------------------------------------------------------------------


def test_luong_dot_needs_matching_sizes():
    message = config_error({"model": {"attention": "luong_dot"}})  # defaults: dec 256 != 2 * enc 256
    assert message.startswith("model.attention:"), message
    assert "dec_hidden_size" in message
    cfg = config_from_dict({"model": {"attention": "luong_dot", "enc_hidden_size": 64, "dec_hidden_size": 128}})
    assert cfg.model.attention == "luong_dot"
    # the other attentions do not care
    for attention in ("bahdanau", "luong_general"):
        config_from_dict({"model": {"attention": attention, "enc_hidden_size": 64, "dec_hidden_size": 100}})


def test_tie_embeddings_needs_emb_equal_to_decoder_size():
    message = config_error({"model": {"tie_embeddings": True, "emb_size": 64, "dec_hidden_size": 128}})
    assert message.startswith("model.tie_embeddings:"), message
    assert "64" in message and "128" in message
    cfg = config_from_dict({"model": {"tie_embeddings": True, "emb_size": 128, "dec_hidden_size": 128}})
    assert cfg.model.tie_embeddings
    config_from_dict({"model": {"tie_embeddings": False, "emb_size": 64, "dec_hidden_size": 128}})


def test_tie_source_embeddings_needs_target_tying_and_a_joint_vocabulary():
    for raw, missing in (
        ({"model": {"tie_source_embeddings": True}}, "model.tie_embeddings: true"),
        ({"model": {"tie_source_embeddings": True, "tie_embeddings": True}, "tokenizer": {"joint": False}}, "joint"),
    ):
        message = config_error(raw)
        assert message.startswith("model.tie_source_embeddings: needs ") and missing in message, message
    cfg = config_from_dict({"model": {"tie_source_embeddings": True, "tie_embeddings": True}})
    assert cfg.model.tie_source_embeddings and cfg.tokenizer.joint


@pytest.mark.parametrize(
    "tok,key",
    [
        ({"joint": True, "src_model": "a.model"}, "tokenizer.src_model"),
        ({"joint": True, "tgt_model": "b.model"}, "tokenizer."),
        ({"joint": True, "src_model": "a.model", "tgt_model": "b.model"}, "tokenizer.src_model"),
        ({"joint": False, "model": "j.model"}, "tokenizer.model"),
        ({"joint": False, "src_model": "a.model"}, "tokenizer.src_model"),
        ({"joint": False, "tgt_model": "b.model"}, "tokenizer."),
    ],
)
def test_tokenizer_model_combinations_that_are_refused(tok, key):
    message = config_error({"tokenizer": tok})
    assert message.startswith(key), message


@pytest.mark.parametrize(
    "tok",
    [
        {"joint": True},
        {"joint": True, "model": "j.model"},
        {"joint": False},
        {"joint": False, "src_model": "a.model", "tgt_model": "b.model"},
    ],
)
def test_tokenizer_model_combinations_that_are_fine(tok):
    cfg = config_from_dict({"tokenizer": tok})
    assert cfg.tokenizer.joint is tok["joint"]


def test_cross_checks_see_overrides():
    config_error(
        {"model": {"enc_hidden_size": 64, "dec_hidden_size": 128}},
        ["model.attention=luong_dot", "model.enc_hidden_size=32"],
    )
    cfg = config_from_dict({"model": {"attention": "luong_dot"}}, ["model.dec_hidden_size=512"])
    assert cfg.model.dec_hidden_size == 512


# --- files ------------------------------------------------------------------------------------


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "no such config file" in str(info.value)


def test_directory_or_non_utf8_config(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(tmp_path) in str(info.value)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize(
    "text,lines",
    [
        ("name: x\n  bad: indent\n", {2}),
        ("name: x\ntraining:\n\tlr: 1\n", {3}),
        ("name: x\ntraining:\n  lr: [1, 2\nmodel:\n  emb_size: 3\n", {3, 4}),
        ("name: x\nseed: 1\nrun_dir: 'open\n", {3, 4}),
    ],
)
def test_invalid_yaml_names_file_and_line(tmp_path, text, lines):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path} line "), message
    assert int(message[len(f"{path} line ") :].split(":")[0]) in lines, message
    assert "not valid YAML" in message


@pytest.mark.parametrize(
    "text,line,key",
    [
        ("training:\n  lr: 0.1\ndata:\n  train: x\ntraining:\n  max_steps: 7\n", 5, "training"),
        ("training:\n  lr: 0.1\n  batch_size: 64\n  lr: 0.2\n", 4, "lr"),
    ],
)
def test_a_key_twice_is_an_error_not_the_last_one_winning(tmp_path, text, line, key):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path} line {line}: not valid YAML (the key {key!r} appears twice)"


def test_yaml_merge_keys_still_override(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("training: &t {lr: 0.1, batch_size: 64}\ndecoding:\n  beam_size: 2\n")
    assert load_config(path).training.lr == 0.1
    from nmt.untrusted import load_yaml

    assert load_yaml("a: &x {b: 1}\nc:\n  <<: *x\n  b: 2\n", "m") == {"a": {"b": 1}, "c": {"b": 2}}


def test_yaml_that_is_a_list_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_nested_error_from_a_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"training": {"lr": "abc"}}))
    with pytest.raises(ConfigError, match=r"^training\.lr: expected"):
        load_config(path)


# --- configs from anyone: bounded aliases, bounded messages ------------------------------------


def billion_laughs(levels: int) -> str:
    items = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "name: [" + ", ".join(items) + "]\n"


def test_yaml_whose_aliases_expand_past_the_limit_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs(9))  # 10**9 strings from 450 bytes
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: refused: more than 100,000 values once its YAML aliases are expanded"


def test_a_few_aliases_are_fine_and_their_errors_are_short(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(billion_laughs(4))  # 10**4 strings: under the limit
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith("name: expected a string, got [") and len(message) < 150, message
    path.write_text("defaults: &d {lr: 0.5}\n")  # an anchor of an ordinary size is still YAML
    with pytest.raises(ConfigError, match="^defaults: unknown key"):
        load_config(path)
    path.write_text("training: &t {lr: 0.5}\n")
    assert load_config(path).training.lr == 0.5


def shared_lists(levels: int):
    value = ["lol"] * 10
    for _ in range(levels - 1):
        value = [value] * 10
    return value


@pytest.mark.parametrize(
    "raw,start",
    [
        ({"name": shared_lists(9)}, "name: expected a string, got [[[["),
        ({"model": {"emb_size": shared_lists(9)}}, "model.emb_size: expected an integer from 1 to 8,192, got [[["),
        ({"training": shared_lists(9)}, "training: expected a mapping of keys, got [[[["),
        ({"name": "x" * 10**6 + "y", "seed": "z" * 10**6}, "seed: expected an integer in"),
        ({"name": b"\x00" * 10**8}, "name: expected a string, got b'\\x00"),
        ({"seed": 10**5000}, "seed: expected an integer in"),
        ({"data": {("k",) * 10**6: 1}}, "data.('k', 'k', 'k'"),
    ],
    ids=["list", "checked", "section", "long-string", "bytes", "huge-int", "tuple-key"],
)
def test_error_messages_show_a_bounded_repr_of_any_value(raw, start):
    """A config from a checkpoint (a pickle) may share its lists: a billion values in a few
    bytes. Every message shows a value in about 80 characters, without walking it."""
    message = config_error(raw)
    assert message.startswith(start) and len(message) < 250, message


@pytest.mark.parametrize(
    "text,says",
    [
        ("seed: " + "1" * 5000 + "\n", "not valid YAML (Exceeds the limit"),
        ("name: " + "[" * 5000 + "]" * 5000 + "\n", "not valid YAML (nested too deeply)"),
        ("name: &a [*a]\n", None),  # a list that contains itself: an ordinary type error
    ],
    ids=["long-int", "deep", "recursive"],
)
def test_yaml_that_python_cannot_hold_is_one_line(tmp_path, text, says):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {says}" if says else "name: expected a string, got [["), message


# --- through the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,sets,key",
    [
        ("training:\n  lr: abc\n", [], "training.lr"),
        ("training:\n  learning_rate: 0.1\n", [], "training.learning_rate"),
        ("model:\n  rnn_type: foo\n", [], "model.rnn_type"),
        ("name: x\n", ["training.lr=-1"], "training.lr"),
        ("name: x\n", ["model.dropout=1.0"], "model.dropout"),
        ("name: x\n", ["decoding.beam_size=[1, 2]"], "decoding.beam_size"),
    ],
)
def test_cli_train_bad_config_is_one_line_exit_2(tmp_path, nmt_cli, one_line_error, text, sets, key):
    config = tmp_path / "bad.yaml"
    run_dir = tmp_path / "run"
    config.write_text(text + f"run_dir: {run_dir}\n")
    args = ["train", str(config)]
    for s in sets:
        args += ["--set", s]
    result = nmt_cli(*args)
    message = one_line_error(result, "config error", 2)
    assert message.startswith(f"{key}: "), message
    assert result.stdout == ""
    assert not run_dir.exists()  # nothing was started


def test_cli_train_missing_and_invalid_config_files(tmp_path, nmt_cli, one_line_error):
    missing = tmp_path / "nope.yaml"
    message = one_line_error(nmt_cli("train", missing), "config error", 2)
    assert str(missing) in message
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntraining:\n\tlr: 1\n")
    message = one_line_error(nmt_cli("train", bad), "config error", 2)
    assert message.startswith(f"{bad} line 3"), message


def test_cli_set_without_equals(tmp_path, nmt_cli, one_line_error):
    config = tmp_path / "c.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\n")
    message = one_line_error(nmt_cli("train", config, "--set", "training.lr"), "config error", 2)
    assert "training.lr" in message


# --- fuzzing through the command line ---------------------------------------------------------


def fuzz_values(tp, f) -> list[tuple[str, object]]:
    """(kind, value) pairs that key must refuse: a wrong type, out of range, missing (null)."""
    values = [("wrong type", [1, 2])]
    inner = tp if not is_optional(tp) else next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(inner) is typing.Literal:
        values.append(("out of range", "no-such-choice"))
    elif typing.get_origin(inner) is tuple:
        values.append(("out of range", ["no-such-choice"]))
    elif f.metadata.get("check") is not None:
        accepts = f.metadata["check"][0]
        values.append(("out of range", -1 if not accepts(-1) else 2**64))  # seed takes negatives
    if not is_optional(tp):
        values.append(("missing", None))
    return values


FUZZ = [(path, kind, value) for path, tp, f in LEAVES for kind, value in fuzz_values(tp, f)]


@pytest.mark.parametrize("path,kind,value", FUZZ, ids=[f"{p}-{k}" for p, k, _ in FUZZ])
def test_nmt_train_refuses_every_bad_value_with_one_line_naming_the_key(path, kind, value, tmp_path, capsys):
    """Every key of the reference config, with a wrong type, an out-of-range and a missing value:
    `nmt train` exits with status 2 and one line on stderr that names the key; no traceback."""
    from nmt.cli import main

    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {**nested(path, value), "run_dir": str(tmp_path / "run")} if path != "run_dir" else nested(path, value)
        )
    )
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"nmt: config error: {path}: "), err


def test_reference_config_is_generated_from_the_defaults():
    text = (Path(__file__).resolve().parents[1] / "configs" / "reference.yaml").read_text(encoding="utf-8")
    assert text == reference_yaml(), "regenerate configs/reference.yaml from nmt.config.reference_yaml()"
    assert config_from_dict(yaml.safe_load(text)) == Config()
