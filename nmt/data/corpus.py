"""Plain-text parallel corpora: one sentence a line, files of one split aligned by line.

A split is named by a prefix; its files are `{prefix}.{lang}`, or `{prefix}.{lang}.gz`, which
is read transparently. Files are streamed in blocks of lines (`LineReader`, `parallel_blocks`):
a corpus of any size is read in bounded memory. Every problem raises a DataError naming the
file (and line).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

from nmt.errors import DataError

BLOCK_BYTES = 1 << 20  # read a file a megabyte at a time
BLOCK_LINES = 10_000  # lines per block of `parallel_blocks`


def split_path(prefix: str, lang: str) -> Path:
    """The file of one side of a split: `prefix.lang`, else `prefix.lang.gz`."""
    plain = Path(f"{prefix}.{lang}")
    for path in (plain, Path(f"{plain}.gz")):
        if path.is_file():
            return path
    if plain.is_dir():
        raise DataError(f"{plain}: is a folder; expected the split's file")
    raise DataError(f"{plain}: no such file (nor {plain}.gz)")


class LineReader:
    """The lines of a UTF-8 text file (`.gz` too), streamed in blocks: iterating yields lists
    of lines without their line endings ('\\n', '\\r\\n'; split on '\\n' only, as sacrebleu does).

    `lines` counts the lines yielded so far, `position` the bytes of the file (as stored, so
    compressed for .gz) read so far and `size` its size: the progress of a long read. A missing
    or unreadable file, a broken .gz or invalid UTF-8 raise a DataError naming the file (and the
    line)."""

    def __init__(self, path: str | Path):
        self.name = str(path)
        self.lines = self.position = self.size = 0

    def __iter__(self) -> Iterator[list[str]]:
        try:
            with open(self.name, "rb") as raw:
                self.size = max(1, Path(self.name).stat().st_size)
                f = gzip.GzipFile(fileobj=raw, mode="rb") if self.name.endswith(".gz") else raw
                yield from self._blocks(f, raw)
        except FileNotFoundError:
            raise DataError(f"{self.name}: no such file") from None
        except IsADirectoryError:
            raise DataError(f"{self.name}: is a directory, expected a text file") from None
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise DataError(f"{self.name}: not a valid gzip file ({e})") from None
        except OSError as e:
            raise DataError(f"{self.name}: cannot read ({e.strerror or e})") from None

    def _blocks(self, f, raw) -> Iterator[list[str]]:
        rest, seekable = b"", raw.seekable()  # a pipe (`<(zcat ref.gz)`) is not: count what it gave
        while True:
            data = f.read(BLOCK_BYTES)
            self.position = raw.tell() if seekable else self.position + len(data)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # no line ends in this block yet
                rest = data
                continue
            rest = data[cut:]
            yield self._decode(data[: cut - 1])
        if rest:  # the last line, without a newline
            yield self._decode(rest)

    def _decode(self, data: bytes) -> list[str]:
        """Complete lines (joined by '\\n') -> their text; bad UTF-8 names the file and the line."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = self.lines + data.count(b"\n", 0, e.start) + 1
            raise DataError(f"{self.name}: line {line:,}: invalid UTF-8 (byte 0x{data[e.start]:02x})") from None
        lines = text.split("\n")
        if "\r" in text:
            lines = [line.removesuffix("\r") for line in lines]
        self.lines += len(lines)
        return lines


def read_lines(path: str | Path) -> list[str]:
    """All the lines of a UTF-8 text file (`.gz` too), as LineReader reads them."""
    return [line for block in LineReader(path) for line in block]


def decode_lines(data: bytes, name: str) -> list[str]:
    """Bytes of UTF-8 text -> lines without '\\n' or '\\r\\n'; bad UTF-8 names `name` and the line."""
    reader = LineReader(name)
    lines = reader._decode(data)
    if lines[-1] == "":  # the newline that ends the last line (or an empty file)
        lines.pop()
    return lines


def _exact_blocks(reader: LineReader, size: int) -> Iterator[list[str]]:
    """The reader's lines in lists of exactly `size` (the last one shorter)."""
    pending: list[str] = []
    for block in reader:
        pending += block
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


def parallel_blocks(src: LineReader, tgt: LineReader, size: int = BLOCK_LINES) -> Iterator[tuple[list[str], list[str]]]:
    """Aligned blocks of source and target lines, streamed. Files of different lengths are found
    where the shorter one ends (both counts named); an empty source file is an error."""
    src_blocks, tgt_blocks = _exact_blocks(src, size), _exact_blocks(tgt, size)
    for a in src_blocks:
        b = next(tgt_blocks, [])
        if len(a) != len(b):
            break
        yield a, b
    for _ in src_blocks:  # the rest of both, counted (nothing is left when they match)
        pass
    for _ in tgt_blocks:
        pass
    if src.lines != tgt.lines:
        raise DataError(
            f"{src.name} has {src.lines:,} lines but {tgt.name} has {tgt.lines:,}: "
            "parallel files must be aligned line by line"
        )
    if not src.lines:
        raise DataError(f"{src.name}: the file is empty")


def read_parallel(prefix: str, src_lang: str, tgt_lang: str) -> tuple[list[str], list[str]]:
    """Source and target lines of one (small) split, checked to have the same number of lines."""
    src: list[str] = []
    tgt: list[str] = []
    for a, b in parallel_blocks(LineReader(split_path(prefix, src_lang)), LineReader(split_path(prefix, tgt_lang))):
        src += a
        tgt += b
    return src, tgt
