"""Distributed training on the CPU: 2 processes with gloo (torch.multiprocessing, and the real
`torchrun -m nmt train`) train exactly as one process on the union of their batches, write one
run directory, stop together and resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import REPO_ROOT, tiny_dates_config, validations_as_evaluated

from nmt.config import Config, save_config
from nmt.data.prepare import prepare_data
from nmt.errors import NmtError
from nmt.rundir.checkpoint import load_checkpoint
from nmt.rundir.log import Log
from nmt.training.distributed import Processes
from nmt.training.trainer import Trainer

TORCHRUN_TRAIN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
TORCHRUN_TRAIN += ["-m", "nmt", "train"]  # `torchrun --standalone --nproc_per_node 2 -m nmt train`


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_trainer(cfg: Config, procs: Processes = Processes()) -> Trainer:
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    log = Log(None)
    src_tok, tgt_tok, train, dev = prepare_data(cfg, log)
    torch.manual_seed(cfg.seed)
    return Trainer(cfg, src_tok, tgt_tok, train, dev, log, torch.device("cpu"), procs)


def two_steps_groups(trainer: Trainer) -> list[list[list[int]]]:
    """Two steps of two batches each, of different lengths (so with different padding)."""
    batches = sorted(trainer.sampler.epoch_batches(1), key=len)
    return [[batches[0], batches[-1]], [batches[1], batches[-2]]]


def _shard_worker(rank: int, cfg: Config, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from nmt.training import distributed

    procs, joined = distributed.start()
    assert joined and procs == Processes(rank, rank, 2)
    trainer = build_trainer(cfg, procs)
    losses = [trainer.train_step(group) for group in two_steps_groups(trainer)]
    totals = [procs.all_sum(loss)[0] for loss, _ in losses]
    if rank == 0:
        torch.save({"model": trainer.model.state_dict(), "losses": totals, "tokens": [n for _, n in losses]}, out)
    distributed.finish(joined, together=True)


def test_one_step_on_two_shards_equals_one_step_on_their_union(tmp_path):
    """Two optimizer steps (Adam, gradient clipping at the global norm) with 2 gloo processes,
    each on its own batch, give the parameters of one process stepping on both batches at once."""
    cfg = tiny_dates_config(tmp_path, "run", dropout=0.0, batch_size=300, clip_norm=0.5)
    out = tmp_path / "ranks.pt"
    mp.spawn(_shard_worker, args=(cfg, free_port(), str(out)), nprocs=2, join=True)
    shards = torch.load(out, weights_only=True)

    single = build_trainer(cfg)
    union = [single.train_step([a + b]) for a, b in two_steps_groups(single)]
    assert [n for _, n in union] == shards["tokens"]
    assert [loss for loss, _ in union] == pytest.approx(shards["losses"], rel=1e-5)
    start = build_trainer(cfg).model.state_dict()
    for name, value in single.model.state_dict().items():
        assert torch.allclose(value, shards["model"][name], rtol=1e-4, atol=1e-6), name
    assert max(float((v - start[k]).abs().max()) for k, v in single.model.state_dict().items()) > 1e-3  # it moved


def torchrun(tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [
            *TORCHRUN_TRAIN,
            *args,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_config(tmp_path: Path, run: str, **training) -> Path:
    """A tiny dates run for CPU processes (gloo), also on a machine with one GPU."""
    cfg = tiny_dates_config(
        tmp_path, run, dropout=0.3, **{"batch_size": 300, "valid_every": 4, "log_every": 1, **training}
    )
    cfg.device = "cpu"
    path = tmp_path / f"{run}.yaml"
    save_config(cfg, path)
    return path


@pytest.mark.slow  # (.ci/run runs it after the default suite)
def test_two_processes_write_one_run_and_resume_exactly(tmp_path):
    """torchrun with 2 processes: one set of checkpoints, logs and metrics (rank 0's); stopping
    after 6 steps and resuming to 10 gives bitwise the weights of 10 steps straight (every
    rank's dropout state is saved)."""
    whole = torchrun(tmp_path, str(write_config(tmp_path, "whole", max_steps=10)))
    assert whole.returncode == 0, whole.stderr
    parts = write_config(tmp_path, "parts", max_steps=6)
    first = torchrun(tmp_path, str(parts))
    assert first.returncode == 0, first.stderr
    run = tmp_path / "parts"
    steps = ["step-00000004.pt", "step-00000006.pt"]  # a validation at 4, the end at 6 (keep_last 5)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt", *steps]
    assert first.stderr.count("stopped after 6 steps") == 1  # rank 0 alone speaks
    assert "2 processes" in (run / "train.log").read_text()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if r["kind"] == "valid"] == [4, 6]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert len(state["rng_ranks"]) == 2 and not torch.equal(state["rng_ranks"][0]["cpu"], state["rng_ranks"][1]["cpu"])
    assert state["progress"]["batches_done"] == 12  # 6 steps of 2 batches

    resumed = torchrun(tmp_path, str(run), "--resume", "--set", "training.max_steps=10")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("resumed from") == 1
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    b = load_checkpoint(run / "checkpoints" / "last.pt")
    assert a["progress"]["step"] == b["progress"]["step"] == 10
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


@pytest.mark.slow  # (.ci/run runs it after the default suite)
def test_the_dev_scores_two_processes_log_are_those_of_each_steps_checkpoint(tmp_path, nmt_cli):
    """torchrun with 2 processes, each validating half of the dev set: every validation's
    logged greedy BLEU, chrF and exact match are what `nmt evaluate --beam 1` reports for that
    step's checkpoint, and they change from one validation to the next."""
    cfg = write_config(tmp_path, "run", max_steps=30, lr=0.01, keep_last=3, valid_every=10)
    result = torchrun(tmp_path, str(cfg))
    assert result.returncode == 0, result.stderr
    valid = validations_as_evaluated(tmp_path / "run", nmt_cli, tmp_path)
    assert [r["step"] for r in valid] == [10, 20, 30]
    assert len({(r["dev_bleu"], r["dev_chrf"]) for r in valid}) == 3


def test_an_error_on_rank_0_stops_both_and_is_said_once(tmp_path):
    cfg = write_config(tmp_path, "run", max_steps=2)
    text = cfg.read_text().replace(str(tmp_path / "dates" / "train"), str(tmp_path / "missing" / "train"))
    cfg.write_text(text)
    result = torchrun(tmp_path, str(cfg), timeout=120)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("nmt: ")]
    assert len(errors) == 1 and errors[0].startswith("nmt: data error: ") and "missing" in errors[0], result.stderr


def test_a_stop_signal_saves_once_and_all_processes_stop(tmp_path):
    """SIGTERM to torchrun (as a cluster scheduler sends): both ranks stop after the same step,
    rank 0 saves last.pt, and the run resumes."""
    cfg = write_config(tmp_path, "run", max_steps=100000, valid_every=100000)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [
            *TORCHRUN_TRAIN,
            str(cfg),
        ],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or metrics.read_text().count("\n") < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["progress"]["step"] >= 3
    assert stderr.count("nmt: interrupted: ") == 1, stderr
    resumed = torchrun(
        tmp_path, str(tmp_path / "run"), "--resume", "--set", f"training.max_steps={state['progress']['step'] + 2}"
    )
    assert resumed.returncode == 0, resumed.stderr


def test_early_stopping_stops_both_processes_at_the_same_step(tmp_path):
    """Validation is sharded and gathered, so both ranks see the same dev score and count the
    same patience: they leave the loop together (a rank left behind would wait forever)."""
    cfg = write_config(tmp_path, "run", lr=1e-9, min_lr=0.0, valid_every=2, patience=1, max_steps=1000)
    result = torchrun(tmp_path, str(cfg), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("no improvement in 1 validations (training.patience)") == 1
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["step"] == 4


def test_more_processes_than_gpus_is_a_one_line_error(monkeypatch):
    """torchrun --nproc_per_node 2 on a machine with one GPU: every rank on it raises the same
    error before any collective (none is left waiting), local rank 0 alone prints it."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cuda = torch.device("cuda")
    for local_rank in (0, 1):
        expected = r"started 2 processes on this machine.*sees 1 GPU\(s\): --nproc_per_node 1"
        with pytest.raises(NmtError, match=expected) as e:
            Processes(rank=local_rank, local_rank=local_rank, world_size=2, local_size=2).device(cuda)
        assert e.value.shown_by_rank0 == (local_rank == 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert Processes(rank=1, local_rank=1, world_size=2, local_size=2).device(cuda) == torch.device("cuda", 1)
    assert Processes(rank=3, local_rank=1, world_size=4, local_size=2).device(cuda) == torch.device("cuda", 1)
    assert Processes().device(cuda) == cuda  # one process: the config's device as it is
    assert Processes(world_size=2, local_size=2).device(torch.device("cpu")) == torch.device("cpu")
