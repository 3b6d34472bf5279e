"""Several processes training one model: torch.distributed with DistributedDataParallel.

`torchrun --nproc_per_node N -m nmt train CONFIG` starts N copies of `nmt train` and tells each
its RANK, LOCAL_RANK and WORLD_SIZE (W) in environment variables; `start` joins them into one
process group (gloo for CPU tensors, NCCL for CUDA ones). A single `nmt train` is a group of one
and sends no messages at all. How the work is split (see nmt.training.job and nmt.training.trainer):

- Data: every rank computes the same epoch of batches (its order is a function of the seed and
  the epoch) and trains on every W-th one: optimizer step k trains rank r on batch kW + r, so one
  step sees W batches and the effective batch is W x training.batch_size.
- Gradients: DDP averages them over the ranks while the backward pass runs. Each rank scales its
  summed loss by W / (target tokens of all W batches), so the average is the gradient of the loss
  per target token of the W batches together: one step on W shards is one step on their union.
- The run directory belongs to rank 0: it reads the config and the data, trains the
  sentencepiece models, encodes the training corpus into RUN_DIR/train.bin, writes checkpoints,
  logs and metrics; the other ranks receive what they need (`on_main`): the config, the
  tokenizers, the dev split and the corpus's path, never the corpus itself. Every rank maps
  that one file (nmt.data.binary): the ranks on one machine share its pages in the page cache.
  On several machines, run_dir must be a folder every machine sees at the same path (a shared
  file system), or each machine must hold the same corpus there, made by `nmt prepare` with the
  same config and data (its content digest is checked). An error on rank 0 stops every rank.
- Validation is sharded: each rank scores every W-th dev batch and translates every W-th dev
  sentence; the sums and translations are gathered, so every rank computes the same dev score
  and takes the same decisions (best, patience, the plateau schedule) without further messages.
- Stopping: each step ends with one all-reduce of (loss, stop signal, time up), so a signal or
  `max_minutes` seen by one rank stops all of them after the same step.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout

from nmt.errors import NmtError, ProcessLost


@dataclass(frozen=True)
class Processes:
    """This process's place in the group: rank (0..W-1), local_rank (on its machine), world_size W,
    local_size (the processes on its machine)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: its own GPU (cuda:LOCAL_RANK) when training on CUDA. It does not
        make it the current CUDA device (a process-wide setting): training does that itself."""
        if device.type == "cuda" and self.distributed:
            gpus, here = torch.cuda.device_count(), max(self.local_size, self.local_rank + 1)
            if here > gpus:  # every rank on the machine finds it: none is left waiting for another
                error = NmtError(
                    f"torchrun started {here} processes on this machine, "
                    f"one per GPU, but torch sees {gpus} GPU(s): --nproc_per_node {gpus} at most, or device: cpu"
                )
                error.shown_by_rank0 = self.local_rank != 0  # one line per machine
                raise error
            device = torch.device("cuda", self.local_rank)
        return device

    def on_main(self, fn: Callable[..., Any], *args) -> Any:
        """fn(*args) computed on rank 0 and sent to every rank (picklable results only).

        A user error (NmtError) raised on rank 0 is raised on every rank, its `shown_by_rank0`
        set on the other ranks so that only rank 0 prints it; anything else stops the other
        ranks with a note."""
        if not self.distributed:
            return fn(*args)
        box: list = [None]
        failure = None
        if self.is_main:
            try:
                box[0] = (True, fn(*args))
            except NmtError as e:
                box[0], failure = (False, e), e
            except BaseException as e:
                box[0], failure = (False, NmtError(f"rank 0 failed ({type(e).__name__}); see its message")), e
        dist.broadcast_object_list(box, src=0)
        if failure is not None:
            raise failure
        ok, value = box[0]
        if not ok:
            value.shown_by_rank0 = True
            raise value
        return value

    @contextlib.contextmanager
    def stop_together(self):
        """Turn the error a collective raises when another process of the group is gone (killed,
        out of memory: gloo and NCCL see the connection close) into one line, ProcessLost; the
        process then ends as after any error, and the run resumes from its last checkpoint."""
        try:
            yield
        except RuntimeError as e:
            if not (self.distributed and _lost_a_process(e)):
                raise
            _leave_without_sigterm()
            raise ProcessLost(
                f"another process of the group stopped or cannot be reached ({_reason(e)}); "
                "continue from the last checkpoint: the same torchrun command with --resume"
            ) from None

    def all_sum(self, *values: float) -> list[float]:
        """The sums over all ranks of each value (float64, through gloo on the CPU)."""
        if not self.distributed:
            return [float(v) for v in values]
        sums = torch.tensor([float(v) for v in values], dtype=torch.float64)
        dist.all_reduce(sums)
        return sums.tolist()

    def gather(self, item: Any) -> list[Any]:
        """Every rank's `item`, in rank order (picklable objects)."""
        if not self.distributed:
            return [item]
        items: list = [None] * self.world_size
        dist.all_gather_object(items, item)
        return items

    def shard(self, items: list) -> list:
        """This rank's share of a list: items r, r + W, r + 2W, ..."""
        return items[self.rank :: self.world_size]

    def unshard(self, shares: list[list]) -> list:
        """The list that `shard` split, from every rank's share (in rank order)."""
        out = [None] * sum(len(s) for s in shares)
        for rank, share in enumerate(shares):
            out[rank :: self.world_size] = share
        return out


def _leave_without_sigterm() -> None:
    """This process is leaving because another one is lost. torchrun sends it SIGTERM once it
    sees the lost one (within a second): that must not end it by default before it has said its
    one line (it did, on a loaded machine). If leaving hangs, torchrun's SIGKILL follows 30 s later."""
    if threading.current_thread() is threading.main_thread():  # (signals belong to the main thread)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _lost_a_process(error: RuntimeError) -> bool:
    """Whether a collective failed because a peer went away (rather than a bug or a bad tensor)."""
    text = str(error)
    return isinstance(error, dist.DistError) or any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer")
    )


def _reason(error: RuntimeError) -> str:
    """The backend's words, short: gloo's "[.../pair.cc:537] Read error [127.0.0.1]:39658:
    Connection reset by peer. This is typically caused by..." -> "Read error ...: Connection
    reset by peer"."""
    text = " ".join(str(error).split())
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)  # the source location
    return text.split(". ")[0][:200] or type(error).__name__


def from_environment() -> Processes:
    """The group torchrun describes in the environment; a group of one without torchrun."""
    try:
        rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        return Processes(rank, local_rank, world_size, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    except ValueError:
        names = "RANK, LOCAL_RANK, WORLD_SIZE and LOCAL_WORLD_SIZE"
        raise NmtError(f"{names}: expected integers (set by torchrun)") from None


def start() -> tuple[Processes, bool]:
    """Join the process group torchrun set up; returns it and whether this call created it
    (then `finish` leaves it). Nothing happens for a single process or an existing group."""
    procs = from_environment()
    if not procs.distributed or dist.is_initialized():
        return procs, False
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        dist.init_process_group(backend)  # torch's own error says what is missing
        return procs, True
    dist.init_process_group(backend, store=_attempt_store(procs), rank=procs.rank, world_size=procs.world_size)
    return procs, True


def _attempt_store(procs: Processes) -> dist.Store:
    """The group's key-value store (torchrun's, or one rank 0 serves at MASTER_ADDR:MASTER_PORT),
    with keys of their own for each of torchrun's restarts (TORCHELASTIC_RESTART_COUNT).

    torchrun --max-restarts keeps one store across restarts, and the processes of a restarted
    group found there the addresses the previous attempt's processes had listened on: gloo
    tried to connect to them, "connectFullMesh failed ... Connection refused" (pytorch issue
    135712 describes the same for NCCL's ids). Under torchrun on several machines each machine's
    agent counts its restarts: they agree when the whole group restarts together, as it does
    when a process fails."""
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun serves the store
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        procs.world_size,
        is_master=not agent and procs.rank == 0,
        timeout=default_pg_timeout,
    )
    return dist.PrefixStore(f"nmt/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def finish(created: bool, together: bool = False) -> bool:
    """Leave the process group `start` created; `together`: first wait until every rank is
    here (a rank that leaves while another still talks to it can abort in gloo's teardown).
    Returns False: the group is no longer this caller's to leave.

    Objects in reference cycles that hold the group (DistributedDataParallel in a trainer the
    caller has let go of) are collected first, so the group is destroyed here rather than as
    the interpreter shuts down, where gloo's threads can abort the process ("terminate called
    without an active exception": pytorch issue 190489)."""
    if created and dist.is_initialized():
        gc.collect()
        if together:
            dist.barrier()
        dist.destroy_process_group()
    return False
