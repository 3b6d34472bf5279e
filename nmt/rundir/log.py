"""A run's log (training and data preparation): messages to stderr and `train.log`, a live
progress line on a terminal, and metric records appended to `metrics.jsonl` (each one flushed
and fsynced: an append-only log whose last line a kill or a full disk can tear, and which
nmt.rundir.records mends on resume). With `events`, each record's numbers go to TensorBoard's
event files too: what is logged is what is written, in both."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from nmt.errors import CheckpointError, MissingDependency
from nmt.rundir.layout import EVENTS, LOG, METRICS
from nmt.rundir.records import read_metrics, record_line


class Log:
    """Writes messages to stderr and the run's log file; metrics to metrics.jsonl.

    The files open with `open()`, once the run directory is ready (a new run clears it first);
    messages said before are written to train.log then. A failed write (a full disk) is a
    CheckpointError. `Log(None)` says nothing: the log of the ranks other than 0 in distributed
    training."""

    def __init__(self, run_dir: Path | None):
        self.run_dir = run_dir
        self.silent = run_dir is None
        self.file = self.metrics = self.writer = None
        self.step = 0  # the step of the last record that named one (test records do not)
        self._early: list[str] = []  # train.log lines said before `open`
        self.tty = sys.stderr.isatty()
        self._progress_shown = False
        self._excepthook = None  # threading's, while TensorBoard writes (see `events`)

    def open(self) -> None:
        """Start appending to RUN_DIR/train.log and RUN_DIR/metrics.jsonl."""
        if self.silent or self.file is not None:
            return
        path = self.run_dir / LOG
        try:
            self.file = open(path, "a", encoding="utf-8")
            path = self.run_dir / METRICS
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

    def events(self, resumed: bool) -> None:
        """Write every record's numbers to RUN_DIR/events too, as KIND/FIELD scalars at the
        record's step. A resumed run draws metrics.jsonl again (trimmed to its checkpoint by
        then) after a purge of every earlier step (TensorBoard's purge_step): the events are
        metrics.jsonl's, whatever the run that stopped wrote or failed to write (a full disk
        loses the records in its writer's queue)."""
        if self.silent:
            return
        if missing := tensorboard_missing():
            raise MissingDependency(missing)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.run_dir / EVENTS), purge_step=1 if resumed else None)
        self._excepthook = previous = threading.excepthook  # its thread's failed write: said by `draw`
        threading.excepthook = lambda args: _quiet_events_thread(args, previous)
        if resumed:
            for fields in read_metrics(self.run_dir / METRICS, note=self):
                if isinstance(fields.get("kind"), str):
                    self.step = fields.get("step", self.step)
                    self.draw(fields)

    def record(self, **fields) -> None:
        """Append one JSON record to metrics.jsonl, flushed and fsynced (and to TensorBoard)."""
        if self.silent:
            return
        self.open()
        self._write(self.metrics, record_line(fields), sync=True)
        self.step = fields.get("step", self.step)
        self.draw(fields)

    def draw(self, fields: dict) -> None:
        """A record's numbers as TensorBoard scalars at the current step (with `events`)."""
        if self.writer is None:
            return
        try:
            for key, value in fields.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{fields['kind']}/{key}", value, self.step)
            self.writer.flush()  # raises what the writer's thread met (a full disk)
        except OSError as e:
            raise CheckpointError(f"{self.run_dir / EVENTS}: cannot write ({e.strerror or e})") from None

    def close(self) -> None:
        """Close the files; never fails (it runs while another error may be on its way out)."""
        if self.silent:
            return
        if self._progress_shown:
            sys.stderr.write("\n")
        for file in (self.file, self.metrics, self.writer):
            if file is not None:
                try:
                    file.close()
                except OSError:
                    pass
        self.file = self.metrics = self.writer = None
        if self._excepthook is not None:
            threading.excepthook, self._excepthook = self._excepthook, None


def _quiet_events_thread(args, previous) -> None:
    """threading.excepthook once TensorBoard writes: an OSError of its writing thread is not
    printed there (the next `flush` raises it again, and `Log.record` says it in one line)."""
    if type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(args.exc_type, OSError):
        return
    previous(args)


def tensorboard_missing() -> str | None:
    """What to install for training.tensorboard, or None when TensorBoard's writer imports."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return "training.tensorboard: needs the tensorboard package: pip install 'nmt[tensorboard]'"
    return None
