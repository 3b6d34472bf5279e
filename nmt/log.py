"""Training output: messages to stderr and `train.log`, a live progress line on a terminal,
and metric records appended to `metrics.jsonl` (each one flushed and fsynced: an append-only
log whose last line a kill or a full disk can tear, and which `trim_metrics` mends on resume)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from nmt.errors import CheckpointError
from nmt.files import atomic_write


class Log:
    """Writes messages to stderr and the run's log file; metrics to metrics.jsonl.

    The files open with `open()`, once the run directory is ready (a new run clears it first);
    messages said before are written to train.log then. A failed write (a full disk) is a
    CheckpointError. `Log(None)` says nothing: the log of the ranks other than 0 in distributed
    training."""

    def __init__(self, run_dir: Path | None):
        self.run_dir = run_dir
        self.silent = run_dir is None
        self.file = self.metrics = None
        self._early: list[str] = []  # train.log lines said before `open`
        self.tty = sys.stderr.isatty()
        self._progress_shown = False

    def open(self) -> None:
        """Start appending to RUN_DIR/train.log and RUN_DIR/metrics.jsonl."""
        if self.silent or self.file is not None:
            return
        path = self.run_dir / "train.log"
        try:
            self.file = open(path, "a", encoding="utf-8")
            path = self.run_dir / "metrics.jsonl"
            self.metrics = open(path, "a", encoding="utf-8")
        except OSError as e:
            raise CheckpointError(f"{path}: cannot write ({e.strerror})") from None
        self._write(self.file, "".join(self._early))
        self._early = []

    def _write(self, file, text: str, sync: bool = False) -> None:
        try:
            file.write(text)
            file.flush()
            if sync:
                os.fsync(file.fileno())
        except OSError as e:
            raise CheckpointError(f"{file.name}: cannot write ({e.strerror})") from None

    def __call__(self, message: str) -> None:
        """A message line (clears the progress line first)."""
        if self.silent:
            return
        if self._progress_shown:
            sys.stderr.write("\r\033[K")
            self._progress_shown = False
        print(message, file=sys.stderr, flush=True)
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n"
        if self.file is None:
            self._early.append(line)
        else:
            self._write(self.file, line)

    def progress(self, text: str, every: bool) -> None:
        """On a terminal, redraw the progress line; elsewhere, log it when `every` is True."""
        if self.silent:
            return
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
            self._progress_shown = True
        elif every:
            self(text)

    def record(self, **fields) -> None:
        """Append one JSON record to metrics.jsonl, flushed and fsynced."""
        if self.silent:
            return
        self.open()
        self._write(self.metrics, json.dumps(fields) + "\n", sync=True)

    def close(self) -> None:
        """Close the files; never fails (it runs while another error may be on its way out)."""
        if self.silent:
            return
        if self._progress_shown:
            sys.stderr.write("\n")
        for file in (self.file, self.metrics):
            if file is not None:
                try:
                    file.close()
                except OSError:
                    pass
        self.file = self.metrics = None


def trim_metrics(path: Path, step: int) -> str | None:
    """Make RUN_DIR/metrics.jsonl fit a run resumed at `step`: keep the records of steps up to
    it (and those without a step), drop the later ones (the killed run logged them after its
    checkpoint) and a torn last line; rewritten atomically. Returns a note, or None."""
    try:
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    kept, dropped, torn = [], 0, False
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # a write cut short
                torn = True
            else:
                kept.append(line)  # not ours to judge: kept as it is
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] > step:
            dropped += 1
        else:
            kept.append(line)
    if not dropped and not torn:
        return None
    data = "".join(line + "\n" for line in kept).encode("utf-8")
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write ({e.strerror})") from None
    parts = [f"{dropped} records past step {step}"] * bool(dropped) + ["a torn last line"] * torn
    return f"{path}: dropped {' and '.join(parts)}"
