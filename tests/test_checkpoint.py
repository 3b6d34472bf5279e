"""Safe loading: a checkpoint that would run code, one from an incompatible config, and one
without its sentencepiece models all stop with one line naming the file."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import tiny_dates_config

import nmt
from nmt.checkpoint import load_checkpoint


class RunsCode:
    """Unpickling this calls os.system: what a hostile "checkpoint" would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ckpt")
    return load_checkpoint(nmt.train(tiny_dates_config(tmp, "run", max_steps=2)) / "checkpoints" / "last.pt")


def test_a_pickled_object_that_would_run_code_is_refused(tmp_path, checkpoint, nmt_cli, one_line_error):
    path, marker = tmp_path / "evil.pt", tmp_path / "PWNED"
    torch.save({**checkpoint, "payload": RunsCode(marker)}, path)
    message = one_line_error(nmt_cli("translate", "-m", path, input="3 May 1979\n"), "checkpoint error", 1)
    assert message.startswith(f"{path}: refused to load") and "could run code" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage,expect",
    [
        (lambda s: s["config"]["model"].update(emb_size=24), "weights do not fit its config"),
        (
            lambda s: s["tokenizers"].update(src=b"not a sentencepiece model"),
            "sentencepiece models are missing or corrupt",
        ),
        (lambda s: s.pop("tokenizers"), "incomplete checkpoint (no tokenizers)"),
    ],
    ids=["incompatible-config", "corrupt-sentencepiece", "no-sentencepiece"],
)
def test_a_checkpoint_that_does_not_fit_names_the_file(tmp_path, checkpoint, damage, expect, nmt_cli, one_line_error):
    state = {
        **checkpoint,
        "config": {k: dict(v) if isinstance(v, dict) else v for k, v in checkpoint["config"].items()},
        "tokenizers": dict(checkpoint["tokenizers"]),
    }
    damage(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    message = one_line_error(nmt_cli("translate", "-m", path, input="3 May 1979\n"), "checkpoint error", 1)
    assert message.startswith(str(path)) and expect in message, message
