"""Writing files so that nothing is ever half-written or put in the wrong place.

A regular file (or a new one) is written atomically: a temporary file in the same folder,
flushed to disk, then renamed over the target. A symbolic link is followed: its target is
written (atomically when that is a regular file), the link stays. A device or a FIFO
(`/dev/null`, `/dev/stdout`, a named pipe) is opened and written in place, as a shell's `>`
would; renaming a file over it would replace the device. `check_output` says before any work
whether `write_output` will be able to write a path.
"""

from __future__ import annotations

import os
import sys
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
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            e.filename, e.filename2 = str(path), None  # the file being written, not its temporary name
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _target(path: Path) -> Path:
    """What writing `path` writes: the file a symbolic link points to (resolved through every
    link, dangling or not), else `path` itself."""
    return path.resolve() if path.is_symlink() else path


def _in_place(target: Path) -> bool:
    """True for something that exists and is neither a regular file nor a folder: a device, a
    FIFO, a socket. It is opened and written, never replaced."""
    return target.exists() and not target.is_file() and not target.is_dir()


def check_output(path: str | Path | None) -> None:
    """Before any work: a DataError naming `path` unless `write_output` can write it. A folder
    (or a name ending in '/'), a missing folder, a folder where no file can be created and a
    device or FIFO without write permission are refused. None or '-' is stdout: nothing to check."""
    if path is None or str(path) == "-":
        return
    name, path = str(path), Path(path)
    target = _target(path)
    if name.endswith(("/", os.sep)) or target.is_dir():
        raise DataError(f"{name}: is a folder; expected a file name")
    if _in_place(target):
        if not os.access(target, os.W_OK):
            raise DataError(f"{name}: cannot write it (permission denied)")
        return
    folder = target.parent
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{name}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise DataError(f"{name}: no such folder {folder}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise DataError(f"{name}: cannot create a file in {folder} ({e.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def check_folder(path: str | Path) -> None:
    """Before any work: a DataError naming `path` unless it is a folder, or one can be made there
    (its nearest existing ancestor is a folder)."""
    name, path = str(path), Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise DataError(f"{name}: {'is' if existing == path else f'{existing} is'} a file; expected a folder")
    if not os.access(existing, os.W_OK):
        raise DataError(f"{name}: cannot write in {existing} (permission denied)")


def write_output(path: str | Path, data: bytes) -> None:
    """Write `data` to `path`: atomically to a regular or new file (through a symbolic link, to
    its target), in place to a device or FIFO. A failure (a full disk) is a DataError naming
    the path and leaves no partial file; a reader that went away (BrokenPipeError) is left to
    the caller, as on stdout."""
    target = _target(Path(path))
    try:
        if _in_place(target):
            with os.fdopen(os.open(target, os.O_WRONLY | os.O_NOCTTY), "wb") as f:
                f.write(data)
        else:
            atomic_write(target, lambda f: f.write(data))
    except BrokenPipeError:
        raise
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror or e})") from None


def write_lines(path: str | Path | None, lines: list[str]) -> None:
    """Write one line per item, UTF-8 (see `write_output`); to stdout for None or '-'."""
    text = "".join(line + "\n" for line in lines)
    if path is None or str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_output(path, text.encode("utf-8"))
