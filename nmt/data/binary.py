"""The binarized training corpus: one file, RUN_DIR/train.bin, mapped into memory.

Training pairs encoded once are stored as flat arrays, one per side: the token ids of every
sentence one after another (uint16 when the vocabulary has at most 65,536 pieces, else int32),
the offsets where each sentence starts (int64, N + 1 of them) and the lengths (N). Nothing is
read into memory: the arrays are views of the file mapped with mmap, so the pages a process
touches come from the operating system's page cache, shared by every process that maps the
file (the ranks of distributed training hold one copy between them).

Layout: the arrays (each at a multiple of 64 bytes), then a JSON header (what made the corpus:
its fingerprint; the arrays' places, dtypes and sizes; a digest of their content), then the
header's length (8 bytes, little endian) and the magic `NMTBIN01`. The magic is the last thing
written, and the file is written under a temporary name and renamed when complete
(nmt.files.atomic_write), so a file that a kill cut short never looks like a corpus.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import mmap
import os
import struct
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nmt.errors import DataError

MAGIC = b"NMTBIN01"
FORMAT = 1
ALIGN = 64
SIDES = ("src", "tgt")


def smallest_dtype(largest: int) -> np.dtype:
    """uint16 when every value up to `largest` fits, else int32."""
    return np.dtype(np.uint16 if largest <= np.iinfo(np.uint16).max else np.int32)


def read_header(path: Path) -> dict | None:
    """The header of a complete corpus file; None when there is no file, or one that is not a
    complete corpus (cut short, another format)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size < 16:
                return None
            f.seek(size - 16)
            length, magic = struct.unpack("<Q8s", f.read(16))
            if magic != MAGIC or length > size - 16:
                return None
            f.seek(size - 16 - length)
            header = json.loads(f.read(length))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return None
    return header


class BinaryCorpus:
    """A training corpus mapped from a corpus file: N pairs of id sequences (no BOS/EOS).

    src_lengths, tgt_lengths: (N,) arrays; `rows(side, indices)` gives sentences as id lists.
    It pickles as its path and content digest: a process that unpickles it maps the same file
    (distributed training sends it so), and refuses a file with another content."""

    def __init__(self, path: str | Path, content: str | None = None):
        self.path = Path(path)
        self.header = read_header(self.path)
        if self.header is None:
            raise DataError(f"{self.path}: no such file, or not a complete training corpus")
        if content is not None and self.header["content"] != content:
            raise DataError(f"{self.path}: holds another corpus than the one expected (a different content digest)")
        with open(self.path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.header["pairs"] else None
        self.arrays = {name: self._array(spec) for name, spec in self.header["arrays"].items()}
        self.src_lengths, self.tgt_lengths = self.arrays["src_lengths"], self.arrays["tgt_lengths"]

    def _array(self, spec: dict) -> np.ndarray:
        if not spec["count"]:
            return np.zeros(0, dtype=spec["dtype"])
        return np.frombuffer(self._map, dtype=spec["dtype"], count=spec["count"], offset=spec["offset"])

    def __reduce__(self):
        return _mapped, (str(self.path), self.header["content"])

    def __len__(self) -> int:
        return self.header["pairs"]

    def rows(self, side: str, indices: list[int]) -> list[list[int]]:
        """The id lists of sentences `indices` of one side ("src" or "tgt")."""
        tokens, offsets = self.arrays[f"{side}_tokens"], self.arrays[f"{side}_offsets"]
        return [tokens[offsets[i] : offsets[i + 1]].tolist() for i in indices]


class CorpusWriter:
    """Writes a corpus file while pairs are encoded, in bounded memory: source ids go straight
    into the file `f`, target ids into an unnamed temporary file in `folder` (gone with the
    process, however it ends) appended at the end; only the lengths are kept in memory."""

    def __init__(self, f: BinaryIO, folder: Path, vocab_sizes: tuple[int, int], max_lengths: tuple[int, int]):
        self.f, self.tgt = f, tempfile.TemporaryFile(dir=folder)
        self.dtypes = [smallest_dtype(v - 1) for v in vocab_sizes]
        self.length_dtypes = [smallest_dtype(m) for m in max_lengths]
        self.lengths: tuple[list, list] = ([], [])
        self.digests = [hashlib.blake2b(digest_size=16) for _ in SIDES]
        self.pairs = self.tokens = 0

    def add(self, src: list[list[int]], tgt: list[list[int]], max_lengths: tuple[int, int]) -> int:
        """Append the pairs of `src` and `tgt` whose sides are non-empty and within the lengths;
        returns how many were kept."""
        lengths = [np.fromiter(map(len, ids), np.int64, len(ids)) for ids in (src, tgt)]
        keep = np.ones(len(src), dtype=bool)
        for n, limit in zip(lengths, max_lengths):
            keep &= (n > 0) & (n <= limit)
        for side, (ids, n, out) in enumerate(zip((src, tgt), lengths, (self.f, self.tgt))):
            flat = np.fromiter(itertools.chain.from_iterable(ids), self.dtypes[side], int(n.sum()))
            data = flat[np.repeat(keep, n)].tobytes()
            out.write(data)
            self.digests[side].update(data)
            self.lengths[side].append(n[keep].astype(self.length_dtypes[side]))
        kept = int(keep.sum())
        self.pairs += kept
        self.tokens += int(lengths[0][keep].sum() + lengths[1][keep].sum())
        return kept

    def finish(self, header: dict) -> dict:
        """Append the target ids, lengths, offsets and the header (with the arrays' places and
        the content digest added); returns the header."""
        f, arrays = self.f, {}
        arrays["src_tokens"] = self._place(0, f.tell() // self.dtypes[0].itemsize, self.dtypes[0])
        self._pad()
        self.tgt.seek(0)
        start = f.tell()
        while chunk := self.tgt.read(1 << 22):
            f.write(chunk)
        arrays["tgt_tokens"] = self._place(start, (f.tell() - start) // self.dtypes[1].itemsize, self.dtypes[1])
        self.tgt.close()
        content = hashlib.blake2b(digest_size=16)
        for side, name in enumerate(SIDES):
            parts = self.lengths[side] or [np.zeros(0, self.length_dtypes[side])]
            lengths = np.concatenate(parts)
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            for kind, array in (("lengths", lengths), ("offsets", offsets)):
                arrays[f"{name}_{kind}"] = self._write_array(array)
                content.update(array.tobytes())
            content.update(self.digests[side].digest())
        header = {**header, "format": FORMAT, "pairs": self.pairs, "arrays": arrays, "content": content.hexdigest()}
        data = json.dumps(header, sort_keys=True).encode()
        f.write(data + struct.pack("<Q8s", len(data), MAGIC))  # the magic last: only now is it complete
        return header

    def _pad(self) -> None:
        self.f.write(b"\0" * (-self.f.tell() % ALIGN))

    @staticmethod
    def _place(offset: int, count: int, dtype: np.dtype) -> dict:
        return {"offset": offset, "count": int(count), "dtype": dtype.name}

    def _write_array(self, array: np.ndarray) -> dict:
        self._pad()
        place = self._place(self.f.tell(), len(array), array.dtype)
        self.f.write(array.tobytes())
        return place


def _mapped(path: str, content: str) -> BinaryCorpus:
    """A corpus another process sent (distributed training): the same file, mapped here."""
    try:
        return BinaryCorpus(path, content)
    except DataError as e:
        raise DataError(
            f"{e}; under torchrun every rank maps the corpus rank 0 wrote: on several machines, run_dir "
            "must be a folder they all share, or `nmt prepare` must have made the same corpus on each"
        ) from None
