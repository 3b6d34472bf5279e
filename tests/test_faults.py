"""Fault injection with real `nmt train` processes: kill -9 at random moments across a
scheduler's restart loop, two trainers on one run directory, a full disk while a checkpoint is
written, and run directories nmt cannot use. Every failure is one line (never a traceback), and
no fault loses a checkpoint that was written."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, check_one_line_error, fill, tiny_dates_config

import nmt
from nmt.config import save_config
from nmt.rundir.checkpoint import load_checkpoint


def write_config(tmp_path: Path, run: str, **training) -> Path:
    """The tiny dates config (one thread, a metrics record per step) as a file; run_dir tmp_path/RUN."""
    cfg = tiny_dates_config(tmp_path, run, **{"batch_size": 300, "log_every": 1, "num_threads": 1, **training})
    path = tmp_path / f"{run}.yaml"
    save_config(cfg, path)
    return path


def start(config: Path, *args: str, stderr: Path) -> subprocess.Popen:
    """`nmt train CONFIG ARGS` in a child process, its stderr into a file (a pipe could fill and block it)."""
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    with stderr.open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "nmt", "train", str(config), *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def train(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, "-m", "nmt", "train", str(config), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, seconds: float) -> bool:
    """Poll until `condition` holds (True), the process ends or the time is up (False)."""
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.0005)
    return False


def temporary_files(folder: Path) -> list[str]:
    try:
        return [name for name in os.listdir(folder) if name.endswith(".tmp")]
    except FileNotFoundError:
        return []


def result_of(proc: subprocess.Popen, stderr: Path) -> subprocess.CompletedProcess:
    proc.wait(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr.read_text())


# --- kill -9 in a restart loop ------------------------------------------------------------------


@pytest.mark.slow  # (.ci/run runs it after the default suite)
def test_a_restart_loop_killed_at_random_moments_ends_in_a_finished_run(tmp_path):
    """The same `nmt train CFG --resume`, from an empty directory, killed (SIGKILL) at random
    moments 20 times and more: during start-up, sentencepiece, training, checkpoint writes,
    resumes. Then it runs to the end: every checkpoint loads, the metrics never repeat a step."""
    max_steps = 300
    config = write_config(tmp_path, "run", max_steps=max_steps, valid_every=10, keep_last=2)
    run, rng = tmp_path / "run", random.Random(13)
    first = start(config, "--resume", stderr=tmp_path / "life0.err")  # how long until a checkpoint here
    t0 = time.time()
    assert wait_for(lambda: (run / "checkpoints" / "last.pt").is_file(), first, 120), "no first checkpoint"
    first.send_signal(signal.SIGKILL)
    first.wait()
    span, kills, life = time.time() - t0, 1, 0
    while kills < 22 and life < 40:
        life += 1
        err = tmp_path / f"life{life}.err"
        proc = start(config, "--resume", stderr=err)
        if life % 4 == 0:  # while a checkpoint is being written
            wait_for(lambda: bool(temporary_files(run / "checkpoints")), proc, 2 * span)
        else:
            wait_for(lambda: False, proc, rng.uniform(0.05, 1.5) * span)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        else:  # it ended by itself: only by finishing
            assert proc.returncode == 0, err.read_text()[-3000:]
    assert kills >= 20
    final = train(config, "--resume")
    assert final.returncode == 0 and "Traceback" not in final.stderr, final.stderr[-3000:]
    checkpoints = sorted((run / "checkpoints").iterdir())
    assert checkpoints and not temporary_files(run) and not temporary_files(run / "checkpoints")
    for path in checkpoints:
        torch.load(path, map_location="cpu", weights_only=True)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"] == max_steps
    steps: dict[str, list[int]] = {}
    for record in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()):
        steps.setdefault(record["kind"], []).append(record["step"])
    for kind in ("train", "valid"):
        assert steps[kind] == sorted(set(steps[kind])) and steps[kind][-1] == max_steps, (kind, steps[kind])


# --- two trainers ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_trainer_on_a_run_directory_in_use_refuses_naming_the_first(tmp_path):
    config = write_config(tmp_path, "run", max_steps=100_000, valid_every=5)
    first = start(config, stderr=tmp_path / "first.err")
    try:
        assert wait_for(lambda: (tmp_path / "run" / "checkpoints" / "last.pt").is_file(), first, 120)
        refusals = [train(config, *args) for args in (("--resume",), ("--overwrite",))]
        assert first.poll() is None  # untouched
    finally:
        first.send_signal(signal.SIGTERM)
    for refused in refusals:
        message = check_one_line_error(refused, "checkpoint error", 1)
        assert f"is being trained by process {first.pid}" in message, message
    assert first.wait(timeout=120) == 130  # saved on SIGTERM, and the lock went with it
    load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")


# --- a full disk ------------------------------------------------------------------------------------


@pytest.mark.slow  # (.ci/run runs it after the default suite)
@pytest.mark.parametrize("moment", ["validation", "SIGTERM"])
@pytest.mark.parametrize("limit", ["full tmpfs", "file size limit"])
def test_a_full_disk_while_writing_a_checkpoint_is_one_line_and_keeps_the_last_one(tmp_path, tmpfs, limit, moment):
    """The checkpoint of a validation, or of a SIGTERM, cannot be written (a tmpfs filled up, or
    a file-size limit: the same failed write without mounting anything): one line, exit 1, the
    previous checkpoint whole and no temporary file left."""
    if limit == "full tmpfs":
        tmpfs(tmp_path / "disk", "size=16m")
        run = "disk/run"
    else:
        run = "run"
    config = write_config(tmp_path, run, max_steps=5, valid_every=5)
    first = train(config)  # the checkpoint to keep: step 5
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir, valid_every = tmp_path / run, "20" if moment == "validation" else "100000"
    err = tmp_path / "second.err"
    proc = start(
        config,
        "--resume",
        "--set",
        "training.max_steps=100000",
        "--set",
        f"training.valid_every={valid_every}",
        stderr=err,
    )
    metrics = run_dir / "metrics.jsonl"
    assert wait_for(lambda: '"step": 7,' in metrics.read_text(), proc, 120), err.read_text()  # training again
    if limit == "full tmpfs":
        fill(run_dir.parent, leave=256 << 10)
    else:
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))
    if moment == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    message = check_one_line_error(result_of(proc, err), "checkpoint error", 1, only_line=False)
    assert "cannot write the checkpoint" in message and "the ones before it are unchanged" in message, message
    assert ("No space left on device" if limit == "full tmpfs" else "File too large") in message
    assert not temporary_files(run_dir / "checkpoints")
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["progress"]["step"] == 5


# --- run directories nmt cannot use -----------------------------------------------------------------


def test_a_run_dir_that_is_a_file_or_unwritable_is_one_line(tmp_path, tmpfs):
    config = write_config(tmp_path, "run", max_steps=2)
    (tmp_path / "a_file").write_text("")
    message = check_one_line_error(train(config, "--set", f"run_dir={tmp_path / 'a_file'}"), "checkpoint error", 1)
    assert message == f"run_dir: {tmp_path / 'a_file'} is a file, not a directory"
    if os.geteuid() == 0:  # root writes through permissions: a read-only file system
        readonly = tmpfs(tmp_path / "readonly", "ro", "size=1m")
    else:
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o555)
    message = check_one_line_error(train(config, "--set", f"run_dir={readonly / 'run'}"), "checkpoint error", 1)
    assert message.startswith(f"run_dir: cannot create {readonly / 'run'} (")
    message = check_one_line_error(train(config, "--set", f"run_dir={readonly}"), "checkpoint error", 1)
    assert message.startswith(f"run_dir: cannot write in {readonly} (")
    assert not (tmp_path / "run").exists()


def test_foreign_files_in_checkpoints_do_not_upset_pruning_or_resume(tmp_path):
    """A `step-500-good.pt` kept by hand beside training's step files is neither pruned, nor
    parsed as a step, nor resumed from."""
    cfg = tiny_dates_config(tmp_path, "run", batch_size=300, max_steps=4, valid_every=2, keep_last=1)
    run = nmt.train(cfg)
    shutil.copyfile(run / "checkpoints" / "last.pt", run / "checkpoints" / "step-500-good.pt")
    (run / "checkpoints" / "notes").write_text("mine")
    cfg.training.max_steps = 8
    nmt.train(cfg, resume=True)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"] == 8
    names = set(os.listdir(run / "checkpoints"))
    assert {"best.pt", "last.pt", "notes", "step-00000008.pt", "step-500-good.pt"} <= names
    assert len([name for name in names if re.fullmatch(r"step-\d+\.pt", name)]) <= 2  # keep_last 1, keep_best 1
