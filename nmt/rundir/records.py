"""A run's metrics.jsonl: one JSON record per line (kind train, valid or test, with its step
and numbers), appended by training (nmt.rundir.log, each record flushed and fsynced), read
back by the learning curves (nmt.plots), and trimmed when a run resumes (`trim_metrics`: the
records a killed run logged after its checkpoint, and a torn last line)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from nmt.errors import CheckpointError, DataError
from nmt.files import atomic_write


def record_line(fields: dict) -> str:
    """One record as the line metrics.jsonl holds."""
    return json.dumps(fields) + "\n"


def _note(message: str) -> None:
    print(f"nmt: note: {message}", file=sys.stderr)


def read_metrics(path: str | Path, note: Callable[[str], None] | None = None) -> list[dict]:
    """The records of a run's metrics.jsonl. A torn last line (a write cut short by a kill or a
    full disk) is skipped, with a `note` (default: a line on stderr); a bad line before it is a
    DataError."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read the run's metrics ({e.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(_record(line))
            except ValueError:  # json.JSONDecodeError is one
                if number < len(lines):
                    raise DataError(f"{path} line {number}: not a JSON record of a step") from None
                (note or _note)(f"{path} line {number}: skipped a torn last record (a write cut short)")
    return records


# what each kind of record must hold, to be drawn
RECORD_FIELDS = {"train": ("step", "loss"), "valid": ("step", "dev_loss", "dev_bleu")}


def _record(line: str) -> dict:
    """One line of metrics.jsonl: a JSON object; a train or valid record has its numbers."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("not an object")
    for key in RECORD_FIELDS.get(record.get("kind"), ()):
        if not isinstance(record.get(key), (int, float)) or isinstance(record.get(key), bool):
            raise ValueError(f"no number {key}")
    return record


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
