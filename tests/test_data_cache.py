"""The binarized training corpus (RUN_DIR/train.bin): encoded once by streaming, mapped from
disk, reused while its fingerprint holds, encoded again when an input changes, never left
looking complete by a kill; and the batches it gives equal those of the in-memory path it
replaced, on Multi30k."""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, tiny_dates_config

from nmt.data.batching import POOL_BATCHES, BatchSampler, ListCorpus, make_batch
from nmt.data.binary import BinaryCorpus, read_header
from nmt.data.corpus import read_parallel
from nmt.data.prepare import prepare_data
from nmt.data.tokenizer import train_on_sample, training_sample
from nmt.errors import DataError
from nmt.rundir.layout import CORPUS
from nmt.rundir.log import Log

SHARED = REPO_ROOT.parent / "shared" / "data" / "multi30k"


class Notes(Log):
    """A Log that keeps its messages."""

    def __init__(self):
        super().__init__(None)
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        self.lines.append(message)


def temporaries(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(f".{CORPUS}.")]


# --- the batches of the in-memory path that the binary corpus replaced ------------------------


def old_epoch_batches(src_ids, tgt_ids, size: int, by_tokens: bool, seed: int, epoch: int) -> list[list[int]]:
    """BatchSampler.epoch_batches before the binary corpus, verbatim, on lists of id lists."""
    src_lens, tgt_lens = [len(s) for s in src_ids], [len(t) for t in tgt_ids]
    cost = lambda i: max(src_lens[i], tgt_lens[i]) + 1  # noqa: E731
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(src_ids)))
    rng.shuffle(order)
    mean_cost = sum(map(cost, order)) / max(1, len(order))
    per_batch = max(1, int(size / mean_cost)) if by_tokens else size
    batches = []
    for start in range(0, len(order), per_batch * POOL_BATCHES):
        chunk = sorted(order[start : start + per_batch * POOL_BATCHES], key=lambda i: (tgt_lens[i], src_lens[i]))
        current, longest = [], 0
        for i in chunk:
            new_longest = max(longest, cost(i))
            fits = (len(current) + 1) * new_longest <= size if by_tokens else len(current) < size
            if current and not fits:
                batches.append(current)
                current, new_longest = [], cost(i)
            current.append(i)
            longest = new_longest
        batches.append(current)
    rng.shuffle(batches)
    return batches


def old_training_pairs(cfg, src_tok, tgt_tok) -> tuple[list[list[int]], list[list[int]]]:
    """The old prepare_data's training ids: all lines read, encoded, filtered by length."""
    src, tgt = read_parallel(cfg.data.train, cfg.data.src_lang, cfg.data.tgt_lang)
    src_ids, tgt_ids = src_tok.encode(src), tgt_tok.encode(tgt)
    d = cfg.data
    keep = [
        i
        for i in range(len(src))
        if 0 < len(src_ids[i]) <= d.max_src_length and 0 < len(tgt_ids[i]) <= d.max_tgt_length
    ]
    return [src_ids[i] for i in keep], [tgt_ids[i] for i in keep]


@pytest.mark.skipif(not (SHARED / "train.de.gz").is_file(), reason=f"no Multi30k corpus in {SHARED}")
def test_multi30k_batches_equal_the_in_memory_path(tmp_path):
    """The reference config on Multi30k: the same sentencepiece model as training on all lines in
    memory, and bit-identical batches (indices, order and tensors) for two epochs."""
    from nmt.config import load_config

    cfg = load_config(
        REPO_ROOT / "configs/multi30k_de_en.yaml",
        [f"data.train={SHARED}/train", "data.dev=''", f"run_dir={tmp_path}/run", "training.num_threads=1"],
    )
    (tmp_path / "run").mkdir()
    src_tok, tgt_tok, corpus, _ = prepare_data(cfg, Notes())
    # sentencepiece trained on what it was trained on before: all non-empty lines, in order
    src, tgt = read_parallel(cfg.data.train, "de", "en")
    sample = training_sample([Path(f"{SHARED}/train.de.gz"), Path(f"{SHARED}/train.en.gz")], 10**6, cfg.seed)
    assert sample == [line for line in src + tgt if line.strip()] and src_tok is tgt_tok
    src_ids, tgt_ids = old_training_pairs(cfg, src_tok, tgt_tok)
    assert len(corpus) == len(src_ids) == 29_000
    sampler = BatchSampler(corpus, cfg.training.batch_size, True, cfg.seed)
    for epoch in (1, 2):
        batches = sampler.epoch_batches(epoch)
        assert list(batches) == old_epoch_batches(src_ids, tgt_ids, cfg.training.batch_size, True, cfg.seed, epoch)
        for indices in batches if epoch == 1 else ():
            new = sampler.batch(indices)
            old = make_batch([src_ids[i] for i in indices], [tgt_ids[i] for i in indices], indices)
            for a, b in ((new.src, old.src), (new.src_lengths, old.src_lengths), (new.tgt_in, old.tgt_in)):
                assert a.dtype == b.dtype and torch.equal(a, b)
            assert torch.equal(new.tgt_out, old.tgt_out)
            assert sampler.target_tokens(indices) == old.n_tgt_tokens


def test_sampler_equals_the_old_one_on_random_lengths_and_sentence_batches():
    rng = random.Random(5)
    src = [[4] * rng.randrange(1, 80) for _ in range(5000)]
    tgt = [[5] * rng.randrange(1, 80) for _ in range(5000)]
    for size, by_tokens in ((700, True), (4096, True), (3, False)):
        sampler = BatchSampler(ListCorpus(src, tgt), size, by_tokens, seed=11)
        assert list(sampler.epoch_batches(3)) == old_epoch_batches(src, tgt, size, by_tokens, 11, 3)


def test_streamed_sentencepiece_sample_is_the_in_memory_sample(tmp_path):
    """More lines than tokenizer.max_sentences: the streamed two-pass sample is exactly
    random.Random(seed).sample(non-empty lines, max_sentences), across two files (joint)."""
    rng = random.Random(1)
    a = [f"a{rng.randrange(10**6)}" if i % 7 else "  " for i in range(3000)]
    b = [f"b{rng.randrange(10**6)}" if i % 5 else "" for i in range(2000)]
    (tmp_path / "x.de").write_text("\n".join(a) + "\n")
    (tmp_path / "x.en.gz").write_bytes(gzip.compress(("\n".join(b) + "\n").encode()))
    lines = [line for line in a + b if line.strip()]
    for k in (100, len(lines) - 1, len(lines), 10**6):
        expected = random.Random(9).sample(lines, k) if k < len(lines) else lines
        assert training_sample([tmp_path / "x.de", tmp_path / "x.en.gz"], k, seed=9) == expected


# --- reuse and invalidation ---------------------------------------------------------------------


def test_corpus_is_reused_and_encoded_again_when_an_input_or_limit_changes(tmp_path):
    cfg = tiny_dates_config(tmp_path, "run")
    Path(cfg.run_dir).mkdir()
    notes = Notes()
    src_tok, tgt_tok, corpus, _ = prepare_data(cfg, notes)
    cache = Path(cfg.run_dir) / CORPUS
    assert any(line.startswith("encoded 400 pairs") for line in notes.lines), notes.lines
    src_ids, tgt_ids = old_training_pairs(cfg, src_tok, tgt_tok)
    assert corpus.rows("src", range(len(corpus))) == src_ids and corpus.rows("tgt", range(len(corpus))) == tgt_ids
    assert corpus.arrays["src_tokens"].dtype.name == "uint16"
    inode = cache.stat().st_ino

    notes = Notes()  # the same data and tokenizers (given, as on --resume): mapped, not encoded
    _, _, again, _ = prepare_data(cfg, notes, (src_tok, tgt_tok))
    assert not any(line.startswith("encoded") for line in notes.lines) and cache.stat().st_ino == inode
    assert any("encoded before" in line for line in notes.lines), notes.lines

    src_file = Path(cfg.data.train + ".src")
    lines = src_file.read_text().splitlines()
    src_file.write_text("\n".join(["17 March 1999"] + lines[1:]) + "\n")
    os.utime(src_file, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on a coarse clock
    notes = Notes()
    _, _, changed, _ = prepare_data(cfg, notes, (src_tok, tgt_tok))
    assert any(f"another {src_file}" in line and "encoding again" in line for line in notes.lines), notes.lines
    assert changed.rows("src", [0]) == [src_tok.encode(["17 March 1999"])[0]]
    assert again.rows("src", [0]) == [src_ids[0]]  # a corpus mapped before keeps its (old) file

    notes = Notes()
    shorter = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_src_length=8))
    _, _, short, _ = prepare_data(shorter, notes, (src_tok, tgt_tok))
    assert any("other length limits" in line for line in notes.lines), notes.lines
    assert 0 < len(short) < len(changed) and int(short.src_lengths.max()) <= 8
    assert temporaries(Path(cfg.run_dir)) == []


def test_corpus_pickles_as_a_reference_to_its_file(tmp_path):
    """What distributed training sends to the other ranks: the path and the content digest,
    not the corpus; a file with another content is refused."""
    cfg = tiny_dates_config(tmp_path, "run")
    Path(cfg.run_dir).mkdir()
    _, _, corpus, _ = prepare_data(cfg, Notes())
    data = pickle.dumps(corpus)
    assert len(data) < 1000
    copy = pickle.loads(data)
    assert copy.rows("tgt", [5, 7]) == corpus.rows("tgt", [5, 7])
    other = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_src_length=8))
    prepare_data(other, Notes())  # replaces train.bin
    with pytest.raises(DataError, match="another corpus"):
        pickle.loads(data)


# --- bad input and kills ------------------------------------------------------------------------


def write_pairs(folder: Path, n: int, bad_line: int | None = None, tgt_lines: int | None = None) -> str:
    """n pairs of short random sentences in folder/big.de.gz and folder/big.en (the target
    shortened to tgt_lines); line `bad_line` of the source holds a Latin-1 byte."""
    rng = random.Random(0)
    words = ["haus", "katze", "mann", "frau", "ball", "rot", "grün", "läuft", "sitzt", "ein"]
    src = [" ".join(rng.choices(words, k=rng.randrange(1, 9))).encode() for _ in range(n)]
    if bad_line:
        src[bad_line - 1] = b"ein caf\xe9 rot"
    tgt = [f"the {i % 97} cat sits".encode() for i in range(n if tgt_lines is None else tgt_lines)]
    (folder / "big.de.gz").write_bytes(gzip.compress(b"\n".join(src) + b"\n", compresslevel=1))
    (folder / "big.en").write_bytes(b"\n".join(tgt) + b"\n")
    return str(folder / "big")


def big_config(tmp_path: Path, prefix: str, **data):
    cfg = tiny_dates_config(tmp_path, "run")
    cfg.data = dataclasses.replace(cfg.data, train=prefix, src_lang="de", tgt_lang="en", dev="", **data)
    cfg.tokenizer = dataclasses.replace(cfg.tokenizer, joint=True, vocab_size=40, max_sentences=2000)
    cfg.training.num_threads = 1
    Path(cfg.run_dir).mkdir(exist_ok=True)
    return cfg


@pytest.mark.parametrize("given_tokenizer", [False, True])
def test_invalid_utf8_deep_in_a_gz_is_named_by_file_and_line(tmp_path, given_tokenizer):
    """Found while sampling for sentencepiece, or (tokenizers given) while encoding; either way
    no corpus file and no temporary file are left."""
    prefix = write_pairs(tmp_path, 234_567, bad_line=234_561)
    cfg = big_config(tmp_path, prefix)
    toks = None
    if given_tokenizer:
        tok = train_on_sample(["ein haus", "the 3 cat sits", "rot grün"] * 30, cfg.tokenizer)
        toks = (tok, tok)
    with pytest.raises(DataError) as info:
        prepare_data(cfg, Notes(), toks)
    assert str(info.value) == f"{prefix}.de.gz: line 234,561: invalid UTF-8 (byte 0xe9)"
    assert not (Path(cfg.run_dir) / CORPUS).exists() and temporaries(Path(cfg.run_dir)) == []


def test_mismatched_line_counts_are_found_while_streaming(tmp_path):
    prefix = write_pairs(tmp_path, 25_000, tgt_lines=24_999)
    cfg = big_config(tmp_path, prefix)
    tok = train_on_sample(["ein haus", "the 3 cat sits", "rot grün"] * 30, cfg.tokenizer)
    with pytest.raises(DataError) as info:
        prepare_data(cfg, Notes(), (tok, tok))
    assert str(info.value) == (
        f"{prefix}.de.gz has 25,000 lines but {prefix}.en has 24,999: parallel files must be aligned line by line"
    )
    assert not (Path(cfg.run_dir) / CORPUS).exists() and temporaries(Path(cfg.run_dir)) == []


def test_a_kill_during_preparation_leaves_no_corpus_that_looks_complete(tmp_path):
    """`nmt prepare` killed with SIGKILL while it writes the corpus: no train.bin, the partial
    temporary file is not a corpus; the next `nmt prepare` encodes it whole and tidies up."""
    prefix = write_pairs(tmp_path, 150_000)
    cfg = big_config(tmp_path, prefix)
    config = Path(cfg.run_dir).parent / "big.yaml"
    from nmt.config import save_config

    save_config(cfg, config)
    command = [sys.executable, "-m", "nmt", "prepare", str(config)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_dir, deadline = Path(cfg.run_dir), time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            partial = [run_dir / name for name in temporaries(run_dir)]
            if partial and partial[0].stat().st_size > 100_000:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "prepare ended before it could be killed: " + proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / CORPUS).exists()
    assert [read_header(run_dir / name) for name in temporaries(run_dir)] == [None]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert read_header(run_dir / CORPUS)["pairs"] == 150_000
    assert temporaries(run_dir) == []
    assert len(BinaryCorpus(run_dir / CORPUS)) == 150_000


@pytest.mark.slow  # three nmt processes: ~15 s on an idle 2-core machine
def test_nmt_prepare_then_train_and_resume_reuse_the_corpus(tmp_path, dates_dir, nmt_cli):
    """`nmt prepare` writes the config, the sentencepiece models and train.bin, and no checkpoint;
    `nmt train` then reuses both the models and the corpus, and so does `--resume`."""
    from conftest import train_args

    run_dir = tmp_path / "run"
    args = train_args(run_dir, dates_dir, "data.test=''", "training.max_steps=2", "training.valid_every=2")
    prepared = nmt_cli("prepare", *args[1:])
    assert prepared.returncode == 0, prepared.stderr
    assert "encoded 3,000 pairs" in prepared.stderr
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "spm.src.model", "spm.tgt.model", CORPUS}
    assert not (run_dir / "checkpoints").exists()
    corpus = (run_dir / CORPUS).stat()
    trained = nmt_cli(*args)
    assert trained.returncode == 0, trained.stderr
    assert "trained before on the same data" in trained.stderr and "encoded before" in trained.stderr
    assert "encoded 3,000" not in trained.stderr
    resumed = nmt_cli("train", str(run_dir), "--resume", "--set", "training.max_steps=3")
    assert resumed.returncode == 0, resumed.stderr
    assert "encoded before" in resumed.stderr and "resumed from" in resumed.stderr
    assert (run_dir / CORPUS).stat().st_ino == corpus.st_ino


def test_corpus_file_round_trip_uint16_and_int32(tmp_path):
    """Ids that fit 16 bits are stored as uint16, a larger vocabulary's as int32; pairs with an
    empty side or beyond the limits are left out; the header says what made the file."""
    from nmt.data.binary import CorpusWriter
    from nmt.files import atomic_write

    src = [[5, 65_535], [], [7] * 9, [70_000, 4]]
    tgt = [[6], [8], [9], [10, 11, 12]]
    path = tmp_path / CORPUS

    def write(f):
        writer = CorpusWriter(f, tmp_path, (80_000, 65_536), (8, 8))
        assert writer.add(src[:2], tgt[:2], (8, 8)) == 1
        assert writer.add(src[2:], tgt[2:], (8, 8)) == 1
        writer.finish({"fingerprint": {"made": "here"}})

    atomic_write(path, write)
    corpus = BinaryCorpus(path)
    assert len(corpus) == 2 and corpus.header["fingerprint"] == {"made": "here"}
    assert corpus.rows("src", [0, 1]) == [[5, 65_535], [70_000, 4]]
    assert corpus.rows("tgt", [1, 0]) == [[10, 11, 12], [6]]
    assert corpus.arrays["src_tokens"].dtype.name == "int32" and corpus.arrays["tgt_tokens"].dtype.name == "uint16"
    assert corpus.src_lengths.tolist() == [2, 2] and corpus.tgt_lengths.tolist() == [1, 3]
    path.write_bytes(path.read_bytes()[:-1])  # cut short: no longer a corpus
    assert read_header(path) is None
    with pytest.raises(DataError, match="not a complete training corpus"):
        BinaryCorpus(path)
