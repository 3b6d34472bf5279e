"""Training survives interruption: exact resume, SIGINT/SIGTERM checkpoints, refusing to mix runs."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
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
from nmt.config import Config, config_to_dict
from nmt.errors import CheckpointError, ConfigError, DataError
from nmt.rundir.checkpoint import load_checkpoint


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


@pytest.mark.parametrize("word_dropout", [0.0, 0.2])
def test_n_steps_then_resume_then_n_steps_equals_2n_steps(tmp_path, word_dropout):
    """Bitwise, on CPU: the stop falls inside an epoch (dropout on, a plateau schedule; whole
    words dropped too, or not)."""

    def config(run: str, steps: int) -> Config:
        cfg = tiny_config(tmp_path, run, max_steps=steps)
        cfg.model.word_dropout = word_dropout
        return cfg

    whole = last(nmt.train(config("whole", 14)))
    first = nmt.train(config("parts", 7))
    assert last(first)["progress"]["batches_done"] > 0  # stopped within an epoch
    resumed = nmt.train(config("parts", 14), resume=True)
    assert whole["progress"]["step"] == 14
    assert_same_training_state(whole, last(resumed))
    log = (resumed / "train.log").read_text()
    assert "resumed from" in log and log.count("run dates") == 2  # one log, appended


def test_resume_refuses_a_different_model_and_a_plain_train_refuses_a_run(tmp_path):
    nmt.train(tiny_config(tmp_path, "run", max_steps=2))
    changed = tiny_config(tmp_path, "run", max_steps=4)
    changed.model.emb_size = 32
    said = r"model\.emb_size: the run in .* was"
    said += r" trained with 16 \(its checkpoint .*last\.pt says so\), this config says 32"
    with pytest.raises(ConfigError, match=said):
        nmt.train(changed, resume=True)
    with pytest.raises(ConfigError, match="pass --resume to continue it, --overwrite to replace it"):
        nmt.train(tiny_config(tmp_path, "run", max_steps=2))


def test_resume_with_nothing_to_resume_starts_a_new_run(tmp_path):
    """A scheduler's restart loop runs `nmt train CFG --resume` from the start: no run directory
    yet, or one killed before its first checkpoint, is a new run."""
    run = nmt.train(tiny_config(tmp_path, "new", max_steps=2), resume=True)
    assert "nothing to resume" in (run / "train.log").read_text()
    (tmp_path / "killed" / "checkpoints").mkdir(parents=True)  # killed before its first checkpoint:
    (tmp_path / "killed" / "train.log").write_text("an earlier attempt\n")  # its own files only
    (tmp_path / "killed" / "config.yaml").write_text("name: other\n")
    run = nmt.train(tiny_config(tmp_path, "killed", max_steps=2), resume=True)
    assert last(run)["progress"]["step"] == 2 and "an earlier attempt" not in (run / "train.log").read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_stop_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, sig, nmt_cli, one_line_error):
    """The run directory is relative to the working directory of `nmt train`; the command the
    message gives works from any other (absolute paths)."""
    cfg = tiny_config(tmp_path, "run", max_steps=100_000)
    cfg.run_dir = "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    metrics = tmp_path / "run" / "metrics.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmt", "train", "run.yaml"],
        cwd=tmp_path,
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
    # the command as given, from another directory: the run directory's own config, a new limit
    command = shlex.split(message.split("continue with: ")[1])
    assert command[:2] == ["nmt", "train"]
    resumed = nmt_cli(*command[1:], "--set", f"training.max_steps={step + 3}", cwd=REPO_ROOT)
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


@pytest.mark.slow  # (.ci/run runs it after the default suite)
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


def test_save_every_writes_step_files_between_validations_that_resume_exactly(tmp_path):
    """training.save_every=3 with validations every 4 steps: step files at 3, 6 and 9 too (for
    nmt average), the newest keep_last kept; the saves change nothing in the training, and a
    run resumed from the step-6 file (no validation there) ends where an uninterrupted one does."""
    plain = last(nmt.train(tiny_config(tmp_path, "plain", max_steps=9, valid_every=4)))
    cfg = tiny_config(tmp_path, "run", max_steps=9, valid_every=4, save_every=3, keep_last=3)
    run = nmt.train(cfg)
    checkpoints = run / "checkpoints"
    kept = {int(p.stem.removeprefix("step-")) for p in checkpoints.glob("step-*.pt")}
    assert {6, 8, 9} <= kept and 3 not in kept  # 3: neither among the 3 newest nor scored
    assert "6" not in load_checkpoint(checkpoints / "step-00000006.pt")["progress"]["scores"]
    assert_same_training_state(plain, last(run))
    for name in ("last.pt", "best.pt", "step-00000008.pt", "step-00000009.pt"):
        (checkpoints / name).unlink(missing_ok=True)
    resumed = nmt.train(cfg, resume=True)
    assert f"resumed from {checkpoints / 'last.pt'}: step 6" in (resumed / "train.log").read_text()
    assert_same_training_state(plain, last(resumed))


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
    from nmt.training.job import _check_same_training

    cfg = tiny_config(tmp_path, "run")
    stored = config_to_dict(cfg)
    cfg.model.textbook = not cfg.model.textbook  # the same computation, another implementation
    _check_same_training(cfg, stored, tmp_path / "last.pt")
    cfg.model.dropout = 0.5
    with pytest.raises(
        ConfigError, match=r"model\.dropout: .* trained with 0\.3 \(its checkpoint .*\), this config says 0\.5"
    ):
        _check_same_training(cfg, stored, tmp_path / "last.pt")


# --- which directory is the run, and from where ------------------------------------------------


@pytest.mark.slow
def test_the_run_directory_named_is_the_run_and_resumes_from_anywhere(tmp_path, nmt_cli, one_line_error):
    """`cp -r runs/a runs/b; nmt train runs/b --resume` trains b, not the run_dir b's config.yaml
    names; relative data paths were stored absolute, so b resumes from another directory."""
    tiny_config(tmp_path, "unused")  # the data in tmp_path/dates
    raw = config_to_dict(tiny_config(tmp_path, "unused", max_steps=2))
    raw["run_dir"] = "runs/a"
    raw["data"].update(train="dates/train", dev="dates/dev")
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(raw))
    first = nmt_cli("train", "a.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    stored = yaml.safe_load((tmp_path / "runs" / "a" / "config.yaml").read_text())
    assert stored["data"]["train"] == str(tmp_path / "dates" / "train")
    shutil.copytree(tmp_path / "runs" / "a", tmp_path / "runs" / "b")
    a_files = {p.name: p.read_bytes() for p in (tmp_path / "runs" / "a").rglob("*") if p.is_file()}
    resumed = nmt_cli("train", tmp_path / "runs" / "b", "--resume", "--set", "training.max_steps=4", cwd=REPO_ROOT)
    assert resumed.returncode == 0, resumed.stderr
    assert last(tmp_path / "runs" / "b")["progress"]["step"] == 4
    assert {p.name: p.read_bytes() for p in (tmp_path / "runs" / "a").rglob("*") if p.is_file()} == a_files
    moved = nmt_cli("train", tmp_path / "runs" / "b", "--resume", "--set", "run_dir=runs/c")
    assert "trains in" in one_line_error(moved, "config error", 2)


# --- what --resume picks, and what it repairs -------------------------------------------------


def metrics_steps(run_dir: Path) -> dict[str, list[int]]:
    steps: dict[str, list[int]] = {}
    for record in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()):
        steps.setdefault(record["kind"], []).append(record.get("step"))
    return steps


@pytest.mark.parametrize("damage", ["last.pt missing", "last.pt and the newest step file do not load"])
def test_resume_falls_back_to_the_newest_step_file_that_loads(tmp_path, damage):
    whole = last(nmt.train(tiny_config(tmp_path, "whole", max_steps=8, valid_every=2)))
    run = nmt.train(tiny_config(tmp_path, "run", max_steps=6, valid_every=2, keep_last=3))
    checkpoints = run / "checkpoints"
    (checkpoints / "last.pt").unlink()
    start = 6
    if damage != "last.pt missing":
        (checkpoints / "last.pt").write_bytes(b"not a checkpoint")
        (checkpoints / "step-00000006.pt").write_bytes(b"PK\x03\x04 torn")
        start = 4
    resumed = nmt.train(tiny_config(tmp_path, "run", max_steps=8, valid_every=2, keep_last=3), resume=True)
    assert f"resumed from {checkpoints / 'last.pt'}: step {start}" in (resumed / "train.log").read_text()
    assert_same_training_state(whole, last(resumed))
    assert all(steps == sorted(set(steps)) for steps in metrics_steps(run).values())


def test_best_is_linked_before_last(tmp_path, monkeypatch):
    """A kill between the two links (simulated: the last.pt link fails at step 4) leaves best.pt
    on a model at least as good as the best one last.pt records; the run then resumes exactly."""
    from nmt.rundir import checkpoint

    link = checkpoint.link_checkpoint

    def killed_at_step_4(source, name):
        if name.name == "last.pt" and source.name == "step-00000004.pt":
            raise KeyboardInterrupt  # as a kill -9 would stop it
        link(source, name)

    cfg = tiny_config(tmp_path, "run", max_steps=8, valid_every=2, valid_metric="loss", keep_last=3)
    monkeypatch.setattr(checkpoint, "link_checkpoint", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        nmt.train(cfg)
    monkeypatch.setattr(checkpoint, "link_checkpoint", link)
    checkpoints = tmp_path / "run" / "checkpoints"
    recorded = last(tmp_path / "run")["progress"]
    best = load_checkpoint(checkpoints / "best.pt")["progress"]
    assert recorded["step"] == 2 and best["step"] == 4
    assert best["best_saved"] <= recorded["best_saved"]  # dev loss: lower is better
    nmt.train(tiny_config(tmp_path, "run", max_steps=8, valid_every=2, valid_metric="loss", keep_last=3), resume=True)
    whole = nmt.train(tiny_config(tmp_path, "whole", max_steps=8, valid_every=2, valid_metric="loss", keep_last=3))
    assert_same_training_state(last(whole), last(tmp_path / "run"))
    assert (
        load_checkpoint(checkpoints / "best.pt")["progress"]["step"]
        == load_checkpoint(whole / "checkpoints" / "best.pt")["progress"]["step"]
    )


def test_a_stop_signal_at_a_validation_step_saves_at_once_and_the_resumed_run_validates(tmp_path, monkeypatch):
    """The scheduled validation of the step a signal came in waits for the resumed run, which
    then trains exactly as one that was never stopped."""
    from nmt.errors import Interrupted
    from nmt.training.trainer import Trainer

    step = Trainer.train_step

    def signal_at_step_4(self, group):
        result = step(self, group)
        if self.progress.step == 4:
            self.interrupted = "SIGTERM"
        return result

    monkeypatch.setattr(Trainer, "train_step", signal_at_step_4)
    with pytest.raises(Interrupted, match="SIGTERM at step 4"):
        nmt.train(tiny_config(tmp_path, "run", max_steps=8, valid_every=2))
    monkeypatch.setattr(Trainer, "train_step", step)
    run = tmp_path / "run"
    assert metrics_steps(run)["valid"] == [2] and "4" not in last(run)["progress"]["scores"]
    nmt.train(tiny_config(tmp_path, "run", max_steps=8, valid_every=2), resume=True)
    whole = nmt.train(tiny_config(tmp_path, "whole", max_steps=8, valid_every=2))
    assert_same_training_state(last(whole), last(run))
    assert metrics_steps(run) == metrics_steps(whole)


def test_resume_drops_the_metrics_past_the_checkpoint_and_a_torn_last_line(tmp_path):
    run = nmt.train(tiny_config(tmp_path, "run", max_steps=4, valid_every=2))
    with (run / "metrics.jsonl").open("a") as f:  # logged by a run killed after its checkpoint
        f.write(json.dumps({"kind": "train", "step": 5, "loss": 1.0}) + "\n")
        f.write(json.dumps({"kind": "valid", "step": 6, "dev_loss": 1.0, "dev_bleu": 0.0}) + "\n")
        f.write('{"kind": "train", "st')  # and torn by a full disk
    nmt.train(tiny_config(tmp_path, "run", max_steps=6, valid_every=2), resume=True)
    assert metrics_steps(run) == {"train": [1, 2, 3, 4, 5, 6], "valid": [2, 4, 6]}
    assert "dropped 2 records past step 4 and a torn last line" in (run / "train.log").read_text()


def test_the_learning_curves_skip_a_torn_last_line_with_a_note(tmp_path, capsys):
    from nmt.errors import DataError
    from nmt.rundir.records import read_metrics

    good = json.dumps({"kind": "train", "step": 1, "loss": 2.0})
    (tmp_path / "metrics.jsonl").write_text(good + '\n{"kind": "tr')
    assert read_metrics(tmp_path / "metrics.jsonl") == [json.loads(good)]
    assert "line 2: skipped a torn last record" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"kind": "tr\n' + good + "\n")
    with pytest.raises(DataError, match="line 1: not a JSON record"):
        read_metrics(tmp_path / "metrics.jsonl")


# --- --overwrite ---------------------------------------------------------------------------------


def run_files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_overwrite_checks_the_new_run_before_deleting_the_old_one(tmp_path):
    run = nmt.train(tiny_config(tmp_path, "run", max_steps=2))
    before = run_files(run)
    typo = tiny_config(tmp_path, "run", max_steps=2)
    typo.data.train = str(tmp_path / "typo" / "train")
    with pytest.raises(DataError, match="typo/train.src: no such file"):
        nmt.train(typo, overwrite=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.src").write_text("1 May 2000\n2 May 2000\n")
    (tmp_path / "bad" / "train.tgt").write_text("2000-05-01\n")
    misaligned = tiny_config(tmp_path, "run", max_steps=2)
    misaligned.data.train = str(tmp_path / "bad" / "train")
    with pytest.raises(DataError, match="aligned"):
        nmt.train(misaligned, overwrite=True)
    given = tiny_config(tmp_path, "run", max_steps=2)
    given.tokenizer.src_model, given.tokenizer.tgt_model = str(tmp_path / "typo.model"), str(run / "spm.tgt.model")
    with pytest.raises(ConfigError, match="tokenizer.src_model: .*typo.model: no such readable file"):
        nmt.train(given, overwrite=True)
    assert run_files(run) == before  # the old run is whole after every refusal


def test_overwrite_deletes_only_what_nmt_wrote(tmp_path):
    run = nmt.train(tiny_config(tmp_path, "run", max_steps=2))
    (run / "decoding.yaml").write_text("beam_size: 7\n")
    for foreign in ("notes.txt", "checkpoints/step-500-good.pt", "extra/"):
        (run / foreign.rstrip("/")).mkdir() if foreign.endswith("/") else (run / foreign).write_text("mine")
        before = run_files(run)
        with pytest.raises(CheckpointError, match=re.escape(f"{run / foreign.rstrip('/')} was not written by nmt")):
            nmt.train(tiny_config(tmp_path, "run", max_steps=3), overwrite=True)
        assert run_files(run) == before
        path = run / foreign.rstrip("/")
        path.rmdir() if path.is_dir() else path.unlink()
    nmt.train(tiny_config(tmp_path, "run", max_steps=3), overwrite=True)
    assert last(run)["progress"]["step"] == 3 and not (run / "decoding.yaml").exists()
    assert metrics_steps(run)["train"] == [1, 2, 3]
