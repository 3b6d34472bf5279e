"""What the commands share: their input lines (a file or stdin), the model a decoding command
loads, notes and lines on stderr, and what drawing a picture may fail with.

Output files are checked before any model is loaded (nmt.files.check_output); pictures are
drawn after the results are written, and a picture that cannot be drawn is a note, not an error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nmt.errors import DataError, NmtError

#: what drawing a picture can fail with once the results are safe: no matplotlib
#: (MissingDependency), a figure too large to draw (matplotlib's ValueError), an unwritable place
DRAWING_FAILURES = (NmtError, ValueError, OSError, MemoryError)


def read_input(path: str | None) -> list[str]:
    """Lines of a file, or of stdin for None/'-'; line endings removed, checked as UTF-8."""
    from nmt.data.corpus import decode_lines, read_lines

    if path and path != "-":
        return read_lines(path)
    if sys.stdin is None:  # started with stdin closed (`<&-`)
        raise DataError("no standard input (it is closed): give the input file with -i")
    return decode_lines(sys.stdin.buffer.read(), "<stdin>")


def load_translator(model: str | Path | None, args: argparse.Namespace):
    """The model of a decoding command (None: the latest run). The process is the command's own,
    so it opts into the allocator setting that makes decoding fast (nmt.runtime)."""
    from nmt.runtime import keep_freed_memory
    from nmt.translate import Translator

    keep_freed_memory()
    return Translator.load(model, device=args.device, precision=args.precision)


def note(message: str) -> None:
    print(f"nmt: note: {message}", file=sys.stderr)


def reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def say(line: str) -> None:
    """A line on stderr, unless its reader has gone."""
    try:
        print(line, file=sys.stderr, flush=True)
    except BrokenPipeError:
        pass
    silence_broken_streams()


def silence_broken_streams() -> None:
    """Flush stdout and stderr; one whose reader has gone is pointed at /dev/null, so that the
    interpreter's own flush at exit neither complains nor turns the exit status into 120."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass
