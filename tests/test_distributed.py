"""Distributed training on the CPU: 2 processes with gloo (torch.multiprocessing, and the real
`torchrun -m nmt train`) train exactly as one process on the union of their batches, write one
run directory, stop together and resume."""

from __future__ import annotations

import json
import os
import re
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

from nmt.config import Config, load_config, save_config
from nmt.data.prepare import prepare_data
from nmt.errors import NmtError, ProcessLost
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
def test_two_processes_train_on_rank_0s_sampled_segmentations_and_resume_exactly(tmp_path):
    """Subword regularisation under torchrun: rank 0 makes each epoch's segmentation, every rank
    maps it; a run stopped inside its second epoch and resumed equals the run straight through."""

    def sampled(run: str, steps: int) -> str:
        cfg = load_config(write_config(tmp_path, run, max_steps=steps))
        cfg.tokenizer.sampling.alpha = 0.3
        save_config(cfg, tmp_path / f"{run}.yaml")
        return str(tmp_path / f"{run}.yaml")

    whole = torchrun(tmp_path, sampled("whole", 20))
    assert whole.returncode == 0, whole.stderr
    epochs = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["progress"]["epoch"]
    assert epochs >= 3
    first = torchrun(tmp_path, sampled("parts", 11))
    assert first.returncode == 0, first.stderr
    resumed = torchrun(tmp_path, str(tmp_path / "parts"), "--resume", "--set", "training.max_steps=20")
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "parts" / "checkpoints" / "last.pt")
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- a rank lost ------------------------------------------------------------------------------------


def rank_pid(config: Path, rank: int, seconds: float = 60) -> int:
    """The process id of `rank` among the `nmt train CONFIG` processes torchrun started."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        for pid in subprocess.run(
            ["pgrep", "-f", f"nmt train {config}"], capture_output=True, text=True
        ).stdout.split():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ and b"TORCHELASTIC_RUN_ID" in b"".join(environ):
                return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"no rank {rank} of {config} found")


def test_a_lost_process_is_one_line_that_torchruns_sigterm_does_not_cut():
    """A collective failing because a peer closed its connection becomes ProcessLost, and the
    process then ignores SIGTERM (torchrun sends it once it sees the lost rank: ended by it, the
    survivor left without its line, on a loaded CI machine); any other RuntimeError passes."""
    procs, previous = Processes(0, 0, 2, 2), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(RuntimeError, match="a bug"), procs.stop_together():
            raise RuntimeError("a bug")
        assert signal.getsignal(signal.SIGTERM) is previous
        with pytest.raises(ProcessLost, match=r"\(Read error .*Connection reset by peer\); continue from"):
            with procs.stop_together():
                raise RuntimeError("[pair.cc:537] Read error [127.0.0.1]:1: Connection reset by peer. This is ...")
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


MOMENTS = {  # when to kill: what the run directory shows (metrics.jsonl, train.log, checkpoints/)
    "before the first step": lambda run: "parameters, device" in _text(run / "train.log") and not _records(run),
    "in a step": lambda run: len(_records(run, "train")) >= 2,
    # step 4 validates (dev loss, translations, a checkpoint) before its train record is written
    "in a validation": lambda run: len(_records(run, "train")) >= 3 and not _records(run, "valid"),
    "while rank 0 saves": lambda run: _saving_before_the_last_step(run / "checkpoints"),
}


def _saving_before_the_last_step(checkpoints: Path) -> bool:
    """A checkpoint being written (.NAME.PID.tmp), not the one of step 12 (max_steps): after that
    the run leaves its training loop, a polling test can miss the earlier saves on a busy machine."""
    names = [p.name for p in checkpoints.glob("*")] + [p.name for p in checkpoints.glob(".*")]
    return any(n.endswith(".tmp") for n in names) and not any("step-00000012" in n for n in names)


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _records(run: Path, kind: str | None = None) -> list[dict]:
    lines = _text(run / "metrics.jsonl").splitlines()
    records = [json.loads(line) for line in lines if line.endswith("}")]
    return [r for r in records if kind is None or r["kind"] == kind]


@pytest.mark.slow  # (.ci/run runs it after the default suite)
@pytest.mark.parametrize(
    ("killed", "moment"),
    [
        (1, "before the first step"),
        (1, "in a step"),
        (0, "in a validation"),
        (0, "while rank 0 saves"),
        (1, "while rank 0 saves"),
    ],
)
def test_a_rank_killed_stops_the_others_with_one_line_and_the_run_resumes(tmp_path, moment, killed):
    """SIGKILL to one of 2 ranks (rank 0 or 1) at a given moment: the other stops within 60 s
    with one line and no traceback; the same torchrun command with --resume finishes the run,
    and it translates."""
    config = write_config(tmp_path, "run", max_steps=12, valid_every=4)
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [*TORCHRUN_TRAIN, str(config)],
        cwd=REPO_ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = rank_pid(config, killed)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and not MOMENTS[moment](run):
        time.sleep(0.001)
    if moment == "in a validation":
        time.sleep(0.05)  # into step 4: its validation is most of it
    assert proc.poll() is None, f"the run ended before {moment}"
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    _, stderr = proc.communicate(timeout=120)
    assert time.time() - killed_at < 60 and proc.returncode != 0
    ours = [line for line in stderr.splitlines() if line.startswith(("nmt: ", "[rank"))]
    assert not any("Traceback" in line for line in ours), stderr[-3000:]
    assert len([line for line in ours if line.startswith("nmt: ")]) == 1, stderr[-3000:]
    resumed = torchrun(tmp_path, str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"] == 12
    translated = subprocess.run(
        [sys.executable, "-m", "nmt", "translate", "-m", str(run), "-i", str(tmp_path / "dates" / "dev.src")],
        capture_output=True,
        text=True,
    )
    assert translated.returncode == 0 and len(translated.stdout.splitlines()) == 20, translated.stderr


# A wrapper of `nmt train` whose process RANK (or any, without torchrun) asks the CPU allocator
# for 40 TB in the step after step 5: the allocator's own failure, as a process that runs out of
# memory without being killed for it meets it (ulimit -v, a container without overcommit).
RUN_OUT_OF_MEMORY = """
import os, sys
import torch
from nmt.training.trainer import Trainer
from nmt.cli.main import main

step = Trainer.train_step

def train_step(self, group):
    if self.progress.step == 5 and os.environ.get("RANK", "0") == sys.argv[1]:
        torch.empty(10**13)
    return step(self, group)

Trainer.train_step = train_step
sys.exit(main(["train", *sys.argv[2:]]))
"""


def _out_of_memory_line(stderr: str) -> str:
    """The one line that says so; no traceback through nmt's code (torchrun, when it runs the
    processes, prints its own when one fails)."""
    ours = [line for line in stderr.splitlines() if line.startswith("nmt: ") and "out of memory" in line]
    assert len(ours) == 1, stderr[-3000:]
    assert not re.search(r'File ".*/nmt/', stderr), stderr[-3000:]
    return ours[0]


@pytest.mark.slow
def test_running_out_of_memory_is_one_line_and_the_run_resumes(tmp_path):
    """The allocator fails in step 6 of a one-process run: one line that says out of memory, at
    which step, and what to do; exit 1; `--resume` continues from the step-4 checkpoint."""
    config = write_config(tmp_path, "run", max_steps=8)
    script = tmp_path / "oom.py"
    script.write_text(RUN_OUT_OF_MEMORY)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    failed = subprocess.run([sys.executable, str(script), "0", str(config)], capture_output=True, text=True, env=env)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    line = _out_of_memory_line(failed.stderr)
    assert line.startswith("nmt: out of memory: after step 5 (") and "can't allocate memory" in line
    assert "lower training.batch_size (300 tokens)" in line and "--resume" in line
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["step"] == 4
    resumed = subprocess.run(
        [sys.executable, "-m", "nmt", "train", str(config), "--resume"], capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["step"] == 8


@pytest.mark.slow  # (.ci/run runs it after the default suite)
def test_a_rank_out_of_memory_says_so_the_other_stops_and_the_run_resumes(tmp_path):
    """Under torchrun, rank 1's allocator fails in step 6: rank 1 says out of memory in one line,
    rank 0 stops with one line (it was waiting for rank 1's gradients), no traceback; the same
    torchrun command with --resume finishes the run."""
    config = write_config(tmp_path, "run", max_steps=8)
    script = tmp_path / "oom.py"
    script.write_text(RUN_OUT_OF_MEMORY)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONWARNINGS", None)
    started = time.time()
    failed = subprocess.run(
        [*launcher, str(script), "1", str(config)], capture_output=True, text=True, env=env, timeout=240
    )
    assert failed.returncode != 0 and time.time() - started < 180
    assert _out_of_memory_line(failed.stderr).startswith("nmt: rank 1: out of memory: after step 5 (")
    stopped = [line for line in failed.stderr.splitlines() if line.startswith("nmt: ") and "out of memory" not in line]
    assert len(stopped) == 1 and "stopped: another process of the group stopped" in stopped[0], failed.stderr[-3000:]
    resumed = torchrun(tmp_path, str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["step"] == 8


# `nmt train` whose process RANK kills itself with SIGKILL in the step after step 5 of torchrun's
# first attempt (TORCHELASTIC_RESTART_COUNT 0), as the kernel's OOM killer or an operator would.
KILLED_IN_FIRST_ATTEMPT = """
import os, signal, sys
from nmt.training.trainer import Trainer
from nmt.cli.main import main

step = Trainer.train_step

def train_step(self, group):
    first_attempt = os.environ["TORCHELASTIC_RESTART_COUNT"] == "0"
    if self.progress.step == 5 and os.environ["RANK"] == sys.argv[1] and first_attempt:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, group)

Trainer.train_step = train_step
sys.exit(main(["train", *sys.argv[2:]]))
"""


@pytest.mark.slow  # (.ci/run runs it after the default suite)
def test_torchruns_own_restart_after_a_rank_is_killed_finishes_the_run(tmp_path):
    """`torchrun --max-restarts 1 ... nmt train CONFIG --resume` with 3 processes, rank 2 killed
    in step 6: torchrun starts the group again, it resumes from step 4 and finishes (the
    restarted processes found the previous attempt's addresses in torchrun's store and gloo
    failed to connect, 3 runs in 4, before the store's keys were kept apart per attempt)."""
    config = write_config(tmp_path, "run", max_steps=8)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_IN_FIRST_ATTEMPT)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONWARNINGS", None)
    command = [*launcher, "--max-restarts", "1", str(script), "2", str(config), "--resume"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "connectFullMesh" not in result.stderr
    assert "resumed from" in result.stderr and "step 4" in result.stderr, result.stderr[-3000:]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["step"] == 8
    translated = subprocess.run(
        [
            sys.executable,
            "-m",
            "nmt",
            "translate",
            "-m",
            str(tmp_path / "run"),
            "-i",
            str(tmp_path / "dates" / "dev.src"),
        ],
        capture_output=True,
        text=True,
    )
    assert translated.returncode == 0 and len(translated.stdout.splitlines()) == 20, translated.stderr
