"""The rules of a run directory: who trains in it (the lock), starting a new run in it, and
picking the checkpoint to resume from.

nmt owns the files nmt.rundir.layout names (OWNED_FILES, and OWNED_FOLDERS' files), plus the
temporary files of its atomic writes (.NAME.XXXX.tmp), which a kill can leave behind. A new
run deletes exactly those, file by file (except train.bin, which it has just checked or made
for itself), and refuses to start in a directory holding anything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable
from pathlib import Path

from nmt.errors import CheckpointError, ConfigError
from nmt.rundir.checkpoint import link_checkpoint, load_checkpoint, step_files
from nmt.rundir.contents import TRAINING_KEYS, can_resume, dev_metrics, step_of, training_state_problem
from nmt.rundir.layout import CHECKPOINT_FILE, CHECKPOINTS, CORPUS, LOCK, OWNED_FILES, OWNED_FOLDERS, checkpoint_path

TEMPORARY = re.compile(r"\.(.+)\.\w+\.tmp")  # .NAME.XXXX.tmp: an atomic write of NAME cut short


@contextlib.contextmanager
def writing(path: Path):
    """Turn an OSError (a full disk, no permission) while writing `path` (a file, or files in a
    folder) into a one-line CheckpointError naming the file."""
    try:
        yield
    except OSError as e:
        raise CheckpointError(f"{e.filename or path}: cannot write ({e.strerror or e})") from None


class RunLock:
    """An exclusive lock on a run directory: fcntl.flock on RUN_DIR/train.lock, which also holds
    the owner's process id, kept from the start of `nmt train` to its end. A second trainer
    refuses at once; the kernel drops the lock when its process dies however it dies (kill -9
    too), so a lock file left behind never blocks. Where the file system has no flock, training
    goes on unlocked. Under torchrun only rank 0 takes it."""

    def __init__(self):
        self.fd: int | None = None

    def acquire(self, run_dir: Path) -> None:
        path = run_dir / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise CheckpointError(f"run_dir: cannot write in {run_dir} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise CheckpointError(
                f"run_dir: {run_dir} is being trained by {who} (lock: {path}); "
                "wait for it to end or stop it, or choose another run_dir"
            ) from None
        except OSError:
            pass  # no locks on this file system
        with contextlib.suppress(OSError):  # the pid is for the message only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock
            self.fd = None


def _top_level(name: str) -> bool:
    return name in OWNED_FILES


def _in_folder(folder: str) -> Callable[[str], bool]:
    """Whether nmt writes a file of a name in one of OWNED_FOLDERS."""
    return lambda name: bool(OWNED_FOLDERS[folder].fullmatch(name))


def _owned_folder(entry: Path) -> bool:
    return entry.name in OWNED_FOLDERS and entry.is_dir() and not entry.is_symlink()


def _is_temporary(name: str, owned: Callable[[str], bool]) -> bool:
    """Whether `name` is the temporary file of an atomic write of an `owned` name."""
    match = TEMPORARY.fullmatch(name)
    return bool(match) and owned(match[1])


def _is_owned(entry: Path, owned: Callable[[str], bool] = _top_level) -> bool:
    """Whether nmt writes a file of this name (`owned`: in RUN_DIR, or in checkpoints/)."""
    if entry.is_dir() and not entry.is_symlink():
        return False
    return owned(entry.name) or _is_temporary(entry.name, owned)


def foreign_entry(run_dir: Path) -> Path | None:
    """The first thing in `run_dir` that nmt did not write (None: everything is nmt's)."""
    for entry in sorted(run_dir.iterdir()):
        if _owned_folder(entry):
            inner = next((e for e in sorted(entry.iterdir()) if not _is_owned(e, _in_folder(entry.name))), None)
            if inner is not None:
                return inner
        elif not _is_owned(entry):
            return entry
    return None


def check_new_run(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start a new run in `run_dir` when it holds a run (unless `overwrite`) or
    anything nmt did not write (always: nmt deletes only its own files)."""
    checkpoints = run_dir / CHECKPOINTS
    if checkpoints.is_dir() and any(CHECKPOINT_FILE.fullmatch(name) for name in os.listdir(checkpoints)):
        if not overwrite:
            raise ConfigError(
                f"run_dir: {run_dir} holds a run already; pass --resume to continue it, --overwrite "
                "to replace it, or set another run_dir (--set run_dir=...)"
            )
    foreign = foreign_entry(run_dir)
    if foreign is not None:
        raise CheckpointError(
            f"run_dir: {foreign} was not written by nmt, and a new run replaces only nmt's own files: "
            "move it away or choose another run_dir"
        )


def clear_run(run_dir: Path) -> None:
    """Delete what an earlier run left in `run_dir` (checked by check_new_run), nmt's files one
    by one, checkpoints first: a kill half-way leaves nothing to resume from. The lock stays, and
    so does the training corpus (the new run's own, made or checked by nmt.data.prepare)."""
    with writing(run_dir):
        for folder in map(run_dir.joinpath, OWNED_FOLDERS):  # checkpoints first
            if _owned_folder(folder):
                for entry in folder.iterdir():
                    if _is_owned(entry, _in_folder(folder.name)):
                        entry.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    folder.rmdir()
        for entry in run_dir.iterdir():
            if entry.name not in (LOCK, CORPUS) and not _owned_folder(entry) and _is_owned(entry):
                entry.unlink(missing_ok=True)


def find_resumable(run_dir: Path, required: frozenset[str]) -> tuple[Path, dict, str | None] | None:
    """The checkpoint to resume from, its state and a note: last.pt, else (missing, or it does not
    load) the newest step-N.pt that loads. None when there is none at all (a new run). A
    checkpoint without the resume state (`required` progress keys, random states) is an error."""
    last = checkpoint_path(run_dir, "last")
    steps = step_files(run_dir / CHECKPOINTS)
    candidates = [last] + [steps[n] for n in sorted(steps, reverse=True)]
    failure = None
    for path in candidates:
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as e:
            failure = failure or e
            continue
        problem = all(key in state for key in TRAINING_KEYS) and training_state_problem(state)
        if problem:  # damaged (or crafted): as one that does not load
            failure = failure or CheckpointError(f"{path}: cannot resume from it: {problem}")
            continue
        if not can_resume(state, required):
            raise CheckpointError(
                f"{path}: written by an nmt that could not resume runs; it translates, but cannot "
                "continue training (start a new run)"
            )
        note = None if failure is None else f"{failure}; resuming from {path} instead"
        return path, state, note
    if failure is not None:
        raise failure
    return None


def tidy_for_resume(run_dir: Path, path: Path, state: dict) -> None:
    """Before resuming from `path` (with `state`): remove the temporary files of writes a kill cut
    short and the step files past the resumed step (written after it by the run that was killed);
    point last.pt at `path`, and best.pt at the best step file when a kill came between writing
    it and linking."""
    folder, step = run_dir / CHECKPOINTS, step_of(state)
    with writing(run_dir):
        for place, owned in ((run_dir, _top_level), (folder, _in_folder(CHECKPOINTS))):
            for name in os.listdir(place):
                if _is_temporary(name, owned):
                    (place / name).unlink(missing_ok=True)
        for n, file in step_files(folder).items():
            if n > step:
                file.unlink(missing_ok=True)
    last, best = checkpoint_path(run_dir, "last"), checkpoint_path(run_dir, "best")
    if path != last:
        link_checkpoint(path, last)
    metrics = dev_metrics(state)
    if metrics:
        best_step = max(metrics, key=lambda s: (metrics[s], -int(s)))  # the first of equals, as validation keeps
        source = step_files(folder).get(int(best_step))
        if source is not None and not (best.is_file() and os.path.samefile(best, source)):
            link_checkpoint(source, best)
