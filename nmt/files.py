"""Writing files so that nothing is ever half-written: a temporary file in the same folder,
flushed to disk, then renamed over the target."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from nmt.errors import DataError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a temporary file, fsync it and rename it to `path`.

    A kill at any moment leaves either the old file or the new one. The file gets the usual
    permissions (0666 less the umask). A missing folder or an unwritable place is a DataError.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise DataError(f"{path}: cannot write here ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_lines(path: str | Path, lines: list[str]) -> None:
    """Write one line per item, UTF-8, atomically."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    atomic_write(path, lambda f: f.write(data))
