"""training.tensorboard: the numbers of metrics.jsonl as TensorBoard events, read back with
TensorBoard's own reader; a resumed run drops what the killed run wrote past its checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import tiny_dates_config

import nmt
from nmt.config import config_from_dict, config_to_dict

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def scalars_of(run: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run / "events"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def scalars_in_metrics(run: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list] = {}
    step = 0
    for record in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()):
        step = record.get("step", step)
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "epoch"):
                out.setdefault(f"{record['kind']}/{key}", []).append((step, value))
    return out


def assert_same(events: dict, metrics: dict) -> None:
    assert set(events) == set(metrics) and {"train/loss", "valid/dev_loss", "valid/dev_bleu"} <= set(events)
    for tag, points in metrics.items():
        assert [s for s, _ in events[tag]] == [s for s, _ in points], tag
        assert [v for _, v in events[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag  # float32


def test_the_events_are_the_numbers_of_metrics_jsonl(tmp_path):
    cfg = tiny_dates_config(tmp_path, "run", max_steps=20, valid_every=10, log_every=5, batch_size=300)
    run = Path(nmt.train(config_from_dict(config_to_dict(cfg), ["training.tensorboard=true"])))
    assert_same(scalars_of(run), scalars_in_metrics(run))


def test_a_resumed_run_does_not_draw_a_step_twice(tmp_path):
    """A run stopped at step 20 whose files hold what a killed run wrote up to step 30, resumed
    from its step-20 checkpoint to 40: every step once, as in metrics.jsonl."""
    cfg = tiny_dates_config(tmp_path, "run", max_steps=30, valid_every=10, log_every=5, batch_size=300)
    cfg = config_from_dict(config_to_dict(cfg), ["training.tensorboard=true"])
    run = Path(nmt.train(cfg))
    for name in ("last.pt", "step-00000030.pt"):  # as if killed after writing step 30's records only
        (run / "checkpoints" / name).unlink()
    shutil.copyfile(run / "checkpoints" / "step-00000020.pt", run / "checkpoints" / "last.pt")
    nmt.train(config_from_dict(config_to_dict(cfg), ["training.max_steps=40"]), resume=True)
    events = scalars_of(run)
    assert [s for s, _ in events["valid/dev_loss"]] == [10, 20, 30, 40]
    assert_same(events, scalars_in_metrics(run))


def test_without_the_tensorboard_package_training_stops_before_it_starts(tmp_path, monkeypatch):
    import importlib.util

    from nmt.errors import MissingDependency

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    cfg = tiny_dates_config(tmp_path, "run", max_steps=20, valid_every=10, batch_size=300)
    with pytest.raises(MissingDependency, match=r"training.tensorboard: needs the tensorboard package: pip install"):
        nmt.train(config_from_dict(config_to_dict(cfg), ["training.tensorboard=true"]))
    assert not (tmp_path / "run").exists()


def test_a_new_run_clears_the_events_nmt_wrote_and_nothing_else(tmp_path):
    """The events folder is nmt's: --overwrite deletes its event files (and the folder); a file of
    anyone else's in it stops the new run before anything is deleted."""
    from nmt.errors import CheckpointError

    cfg = tiny_dates_config(tmp_path, "run", max_steps=10, valid_every=10, batch_size=300)
    run = Path(nmt.train(config_from_dict(config_to_dict(cfg), ["training.tensorboard=true"])))
    assert any((run / "events").iterdir())
    (run / "events" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="notes.txt was not written by nmt"):
        nmt.train(cfg, overwrite=True)
    assert (run / "checkpoints" / "last.pt").is_file()
    (run / "events" / "notes.txt").unlink()
    nmt.train(cfg, overwrite=True)
    assert not (run / "events").exists()


def test_a_full_disk_under_the_events_is_one_line_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    """TensorBoard's writing thread meets a full disk at its 5th record (as ENOSPC from the
    file's write): one line naming the events folder and the cause, exit 1, neither the thread's
    traceback nor nmt's; `--resume` finishes the run, each step drawn once."""
    import errno

    import yaml
    from tensorboard.summary.writer import record_writer

    from nmt.cli.main import main

    cfg = tiny_dates_config(tmp_path, "run", max_steps=20, valid_every=10, log_every=5, batch_size=300)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(config_to_dict(config_from_dict(config_to_dict(cfg), ["training.tensorboard=true"])))
    )
    write, records = record_writer.RecordWriter.write, []

    def full_at_the_fifth(self, data):
        records.append(data)
        if len(records) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", full_at_the_fifth)
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip().splitlines()[-1]
        == f"nmt: checkpoint error: {tmp_path / 'run' / 'events'}: cannot write (No space left on device)"
    )
    assert "Traceback" not in err and "Exception in thread" not in err, err
    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    assert main(["train", str(config), "--resume"]) == 0
    assert_same(scalars_of(tmp_path / "run"), scalars_in_metrics(tmp_path / "run"))
