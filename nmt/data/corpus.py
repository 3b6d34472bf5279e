"""Plain-text parallel corpora: one sentence a line, files of one split aligned by line.

A split is named by a prefix; its files are `{prefix}.{lang}`, or `{prefix}.{lang}.gz`, which
is read transparently. Every problem raises a DataError naming the file (and line).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from nmt.errors import DataError


def split_path(prefix: str, lang: str) -> Path:
    """The file of one side of a split: `prefix.lang`, else `prefix.lang.gz`."""
    plain = Path(f"{prefix}.{lang}")
    for path in (plain, Path(f"{plain}.gz")):
        if path.is_file():
            return path
    raise DataError(f"{plain}: no such file (nor {plain}.gz)")


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (`.gz` too), without their line endings ('\\n', '\\r\\n').

    Lines are split on '\\n' only, as sacrebleu does. A missing or unreadable file, or
    invalid UTF-8, raises a DataError naming the file (and the line).
    """
    name = str(path)
    try:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, expected a text file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{name}: not a valid gzip file ({e})") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read ({e.strerror or e})") from None
    return decode_lines(data, name)


def decode_lines(data: bytes, name: str) -> list[str]:
    """Bytes of UTF-8 text -> lines without '\\n' or '\\r\\n'; bad UTF-8 names `name` and the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{name}: line {line}: invalid UTF-8 (byte 0x{data[e.start]:02x})") from None
    lines = text.split("\n")
    if lines[-1] == "":  # the newline that ends the last line (or an empty file)
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_parallel(prefix: str, src_lang: str, tgt_lang: str) -> tuple[list[str], list[str]]:
    """Source and target lines of one split, checked to have the same number of lines."""
    src_path, tgt_path = split_path(prefix, src_lang), split_path(prefix, tgt_lang)
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
            "parallel files must be aligned line by line"
        )
    if not src:
        raise DataError(f"{src_path}: the file is empty")
    return src, tgt
