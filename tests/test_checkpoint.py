"""Safe loading: a checkpoint that would run code, one from an incompatible config, and one
without its sentencepiece models all stop with one line naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import tiny_dates_config

import nmt
from nmt.rundir.checkpoint import load_checkpoint


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


def test_a_file_that_is_no_checkpoint_says_so(tmp_path, checkpoint, nmt_cli, one_line_error):
    """A config, a sentencepiece model, a checkpoint cut short: not what torch.save writes."""
    whole = tmp_path / "whole.pt"
    torch.save(checkpoint, whole)
    files = {
        "config.yaml": Path("configs/dates.yaml").read_bytes(),
        "spm.model": checkpoint["tokenizers"]["src"],
        "cut.pt": whole.read_bytes()[: whole.stat().st_size // 2],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        result = nmt_cli("translate", "-m", tmp_path / name, input="3 May 1979\n")
        message = one_line_error(result, "checkpoint error", 1)
        assert message == f"{tmp_path / name}: not a checkpoint, or one cut short (not a zip file of torch.save)"


def test_a_checkpoint_that_would_expand_beyond_the_limit_is_refused(tmp_path, checkpoint, monkeypatch):
    """The zip's declared sizes are checked before torch.load unpacks anything."""
    import zipfile

    from nmt.errors import CheckpointError
    from nmt.rundir import checkpoint as ckpt

    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb/data.pkl", b"\0" * (8 << 20))  # 8 MiB of zeros in a few kilobytes
    assert bomb.stat().st_size < 100_000
    monkeypatch.setattr(ckpt, "MAX_UNCOMPRESSED_BYTES", 4 << 20)
    with pytest.raises(CheckpointError, match=r"bomb.pt: refused to load: its entries would expand to"):
        load_checkpoint(bomb)
    good = tmp_path / "good.pt"
    torch.save(checkpoint, good)
    assert load_checkpoint(good)["progress"] == checkpoint["progress"]  # a real one is far below
    monkeypatch.setattr(ckpt, "MAX_UNCOMPRESSED_BYTES", 1000)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(good)


@pytest.mark.parametrize("pointer", [b"", b"\n", b"\xff\xfe garbage", b"runs/relative", b"/a\n/b\n"])
def test_an_empty_or_damaged_latest_run_pointer_means_no_latest_run(_state_dir, pointer, nmt_cli, one_line_error):
    _state_dir.mkdir(parents=True, exist_ok=True)
    (_state_dir / "latest_run").write_bytes(pointer)
    message = one_line_error(nmt_cli("translate", input="3 May 1979\n"), "checkpoint error", 1)
    assert message.startswith("no trained run found")


def test_a_step_file_holds_what_nmt_rundir_contents_defines(checkpoint):
    """One definition of a checkpoint's contents: a step file has the keys nmt.rundir.contents
    names (and no others), reads back through its functions, and can resume."""
    from nmt.rundir import contents
    from nmt.training.state import Progress

    assert set(checkpoint) == {"format", *contents.MODEL_KEYS, *contents.TRAINING_KEYS, "scaler", "rng_ranks"}
    assert contents.can_resume(checkpoint, Progress.saved_keys())
    assert contents.step_of(checkpoint) == 2
    src_model, tgt_model = contents.tokenizer_models(checkpoint)
    assert isinstance(src_model, bytes) and isinstance(tgt_model, bytes)  # the dates run: two vocabularies
    assert set(contents.model_part(checkpoint)) == set(contents.MODEL_KEYS)
    progress = Progress.from_state_dict(checkpoint["progress"])
    assert progress.dev_metrics == contents.dev_metrics(checkpoint) == checkpoint["progress"]["scores"]
    assert not contents.can_resume(contents.model_part(checkpoint), Progress.saved_keys())
