"""Training output: messages to stderr and `train.log`, a live progress line on a terminal,
and metric records appended to `metrics.jsonl`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class Log:
    """Writes messages to stderr and the run's log file; metrics to metrics.jsonl.

    `Log(None)` says nothing: the log of the ranks other than 0 in distributed training."""

    def __init__(self, run_dir: Path | None):
        self.silent = run_dir is None
        self.file = None if self.silent else open(run_dir / "train.log", "a", encoding="utf-8")
        self.metrics = None if self.silent else open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self.tty = sys.stderr.isatty()
        self._progress_shown = False

    def __call__(self, message: str) -> None:
        """A message line (clears the progress line first)."""
        if self.silent:
            return
        if self._progress_shown:
            sys.stderr.write("\r\033[K")
            self._progress_shown = False
        print(message, file=sys.stderr, flush=True)
        self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        self.file.flush()

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
        """Append one JSON record to metrics.jsonl."""
        if self.silent:
            return
        self.metrics.write(json.dumps(fields) + "\n")
        self.metrics.flush()

    def close(self) -> None:
        if self.silent:
            return
        if self._progress_shown:
            sys.stderr.write("\n")
        self.file.close()
        self.metrics.close()
