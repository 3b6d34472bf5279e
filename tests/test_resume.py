"""Training survives interruption: exact resume, SIGINT/SIGTERM checkpoints, refusing to mix runs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO_ROOT, tiny_dates_config

import nmt
from nmt.checkpoint import load_checkpoint
from nmt.config import Config, config_to_dict
from nmt.errors import CheckpointError, ConfigError


def tiny_config(tmp_path: Path, run: str, **training) -> Config:
    return tiny_dates_config(
        tmp_path, run, dropout=0.3, **{"batch_size": 300, "valid_every": 5, "log_every": 1, **training}
    )


def last(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")


def assert_same_training_state(a: dict, b: dict) -> None:
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for (i, sa), (j, sb) in zip(a["optimizer"]["state"].items(), b["optimizer"]["state"].items()):
        assert i == j and all(torch.equal(sa[k], sb[k]) for k in sa), i
    assert torch.equal(a["rng"], b["rng"])
    assert a["schedule"] == b["schedule"]
    for key in ("step", "epoch", "batches_done", "best", "bad_validations"):
        assert a["progress"][key] == b["progress"][key], key


def test_n_steps_then_resume_then_n_steps_equals_2n_steps(tmp_path):
    """Bitwise, on CPU: the stop falls inside an epoch (dropout on, a plateau schedule)."""
    whole = last(nmt.train(tiny_config(tmp_path, "whole", max_steps=14)))
    first = nmt.train(tiny_config(tmp_path, "parts", max_steps=7))
    assert last(first)["progress"]["batches_done"] > 0  # stopped within an epoch
    resumed = nmt.train(tiny_config(tmp_path, "parts", max_steps=14), resume=True)
    assert whole["progress"]["step"] == 14
    assert_same_training_state(whole, last(resumed))
    log = (resumed / "train.log").read_text()
    assert "resumed from" in log and log.count("run dates") == 2  # one log, appended


def test_resume_refuses_a_different_model_and_an_empty_run_dir(tmp_path):
    nmt.train(tiny_config(tmp_path, "run", max_steps=2))
    changed = tiny_config(tmp_path, "run", max_steps=4)
    changed.model.emb_size = 32
    with pytest.raises(ConfigError, match=r"model\.emb_size: the run in .* was trained with 16, this config says 32"):
        nmt.train(changed, resume=True)
    with pytest.raises(ConfigError, match="holds no checkpoints/last.pt"):
        nmt.train(tiny_config(tmp_path, "empty", max_steps=2), resume=True)
    with pytest.raises(ConfigError, match="pass --resume to continue it, --overwrite to replace it"):
        nmt.train(tiny_config(tmp_path, "run", max_steps=2))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, sig, nmt_cli, one_line_error):
    cfg = tiny_config(tmp_path, "run", max_steps=100_000)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    metrics = tmp_path / "run" / "metrics.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmt", "train", str(config)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or metrics.read_text().count('"train"') < 3):
        time.sleep(0.1)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    message = one_line_error(result, "interrupted", 130, only_line=False)
    step = last(tmp_path / "run")["progress"]["step"]
    assert message == (
        f"{sig.name} at step {step}: saved {tmp_path / 'run' / 'checkpoints' / 'last.pt'}; "
        f"continue with: nmt train {tmp_path / 'run'} --resume"
    )
    # the run directory form: its own config, a new limit
    resumed = nmt_cli("train", tmp_path / "run", "--resume", "--set", f"training.max_steps={step + 3}")
    assert resumed.returncode == 0, resumed.stderr
    assert last(tmp_path / "run")["progress"]["step"] == step + 3


def start_training(tmp_path: Path, run: str, **training) -> tuple[subprocess.Popen, Path]:
    """`nmt train` in a child process on a tiny config (a bigger model: slower checkpoint writes)."""
    cfg = tiny_config(tmp_path, run, **training)
    cfg.model.emb_size = cfg.model.enc_hidden_size = cfg.model.dec_hidden_size = 96
    config = tmp_path / f"{run}.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmt", "train", str(config)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, tmp_path / run / "checkpoints"


def wait_for(condition, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert proc.poll() is None, "training ended by itself"
        assert time.time() < deadline, "timed out"
        time.sleep(0.0005)


def kill_and_resume(tmp_path: Path, run: str, moment, nmt_cli) -> bool:
    """Start training, SIGKILL it at `moment` (seconds after the first checkpoint, or "while
    writing": as soon as a checkpoint's temporary file appears), then check that the last
    checkpoint loads and training resumes from it. Returns whether a write was cut short."""
    proc, checkpoints = start_training(tmp_path, run, max_steps=100_000, valid_every=1)
    wait_for(lambda: (checkpoints / "last.pt").is_file(), proc)
    if moment == "while writing":
        wait_for(lambda: any(name.endswith(".tmp") for name in os.listdir(checkpoints)), proc)
    else:
        time.sleep(moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    cut_short = any(name.endswith(".tmp") for name in os.listdir(checkpoints))
    step = last(checkpoints.parent)["progress"]["step"]  # loads: never half-written
    resumed = nmt_cli("train", checkpoints.parent, "--resume", "--set", f"training.max_steps={step + 2}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert last(checkpoints.parent)["progress"]["step"] == step + 2
    assert not any(name.endswith(".tmp") for name in os.listdir(checkpoints))  # the stale write is gone
    return cut_short


def test_sigkill_at_any_moment_leaves_a_checkpoint_that_loads_and_resumes(tmp_path, nmt_cli):
    # during a checkpoint write (the kill may land just after the rename: try again)
    assert any(kill_and_resume(tmp_path, f"writing{i}", "while writing", nmt_cli) for i in range(5))
    rng = random.Random(7)
    for i in range(3):  # and at random moments
        kill_and_resume(tmp_path, f"random{i}", rng.uniform(0, 3), nmt_cli)


def test_keeps_the_newest_and_the_best_step_checkpoints(tmp_path):
    cfg = tiny_config(tmp_path, "run", max_steps=12, valid_every=2, keep_last=2, keep_best=2)
    cfg.training.valid_metric = "loss"
    run = nmt.train(cfg)
    losses = {
        r["step"]: r["dev_loss"]
        for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if r["kind"] == "valid"
    }
    best_two = sorted(losses, key=losses.get)[:2]
    kept = sorted(int(p.stem.removeprefix("step-")) for p in (run / "checkpoints").glob("step-*.pt"))
    assert kept == sorted({10, 12} | set(best_two))
    assert os.path.samefile(run / "checkpoints" / "last.pt", run / "checkpoints" / "step-00000012.pt")
    assert last(run)["progress"]["step"] == 12
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["progress"]["step"] == min(losses, key=losses.get)


def test_a_checkpoint_without_resume_state_is_a_clear_error(tmp_path):
    run = nmt.train(tiny_config(tmp_path, "run", max_steps=2))
    state = last(run)
    del state["rng"]
    torch.save(state, run / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="could not resume runs"):
        nmt.train(tiny_config(tmp_path, "run", max_steps=4), resume=True)


def test_a_run_of_an_older_nmt_resumes_with_the_defaults_of_keys_added_since(tmp_path):
    """A config key added after a run was written (model.encoder, model.textbook) takes its
    default when the run resumes; the checkpoint's "progress" keeps the keys every version wrote."""
    run = nmt.train(tiny_config(tmp_path, "run", max_steps=2))
    state = last(run)
    assert list(state["progress"]) == [
        "step",
        "epoch",
        "best",
        "bad_validations",
        "batches_done",
        "last_valid",
        "best_saved",
        "scores",
        "seconds",
    ]
    for key in ("encoder", "textbook"):
        state["config"]["model"].pop(key, None)
    torch.save(state, run / "checkpoints" / "last.pt")
    nmt.train(tiny_config(tmp_path, "run", max_steps=4), resume=True)
    assert last(run)["progress"]["step"] == 4


def test_resume_may_switch_model_textbook_but_no_other_model_key(tmp_path):
    from nmt.run import _check_same_training

    cfg = tiny_config(tmp_path, "run")
    stored = config_to_dict(cfg)
    cfg.model.textbook = not cfg.model.textbook  # the same computation, another implementation
    _check_same_training(cfg, stored, tmp_path / "last.pt")
    cfg.model.dropout = 0.5
    with pytest.raises(ConfigError, match=r"model\.dropout: .* trained with 0\.3, this config says 0\.5"):
        _check_same_training(cfg, stored, tmp_path / "last.pt")
