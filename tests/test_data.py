"""nmt.data: reading corpora, batching by tokens with length buckets, sentencepiece models."""

from __future__ import annotations

import gzip
import io
import random
import tracemalloc

import numpy as np
import pytest
import sentencepiece as spm
import torch

from nmt.config import TokenizerConfig
from nmt.data.batching import (
    BatchSampler,
    ListCorpus,
    cut_ends,
    make_batch,
    sorted_batches,
)
from nmt.data.corpus import read_lines, read_parallel, split_path
from nmt.data.dates import write_splits
from nmt.data.tokenizer import (
    BOS,
    EOS,
    PAD,
    UNK,
    Tokenizer,
    build_tokenizers,
    save_tokenizers,
    train_tokenizer,
)
from nmt.errors import CheckpointError, ConfigError, DataError

# --- read_lines -------------------------------------------------------------------------------


def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "data,lines",
    [
        (b"a\nb c\n", ["a", "b c"]),
        (b"a\nb c", ["a", "b c"]),  # no final newline
        (b"a\r\nb\r\n", ["a", "b"]),  # CRLF
        (b"a\r\nb", ["a", "b"]),  # CRLF, no final newline
        (b"", []),  # empty file
        (b"\n", [""]),  # one empty line
        (b"\n\n", ["", ""]),
        (b"a\n\nb\n", ["a", "", "b"]),  # empty lines inside are kept (alignment!)
        (b"  \n\t\n", ["  ", "\t"]),  # whitespace is kept as is
        (b"a\rb\n", ["a\rb"]),  # a lone CR is not a line break
        ("x\u2028y\x85z\x0cw\n".encode(), ["x\u2028y\x85z\x0cw"]),  # nor are Unicode separators
        ("Grüße, 世界 ☃\n".encode(), ["Grüße, 世界 ☃"]),
    ],
)
def test_read_lines(tmp_path, data, lines):
    assert read_lines(write(tmp_path / "f.txt", data)) == lines
    gz = tmp_path / "f.txt.gz"
    gz.write_bytes(gzip.compress(data))
    assert read_lines(gz) == lines
    assert read_lines(str(gz)) == lines  # str or Path


def test_read_lines_matches_str_splitlines_on_plain_text(tmp_path):
    rng = random.Random(0)
    lines = [" ".join(rng.choice(["a", "bb", "ç", "日本"]) for _ in range(rng.randrange(0, 6))) for _ in range(200)]
    path = write(tmp_path / "f", "".join(line + "\n" for line in lines).encode())
    assert read_lines(path) == lines


@pytest.mark.parametrize(
    "data,line,byte",
    [
        (b"\xff\n", 1, 0xFF),
        (b"ok\nfine\nbad \xe9 latin-1\nok\n", 3, 0xE9),
        (b"a\r\nb\r\n\x80", 3, 0x80),
        (b"ok\n" + "é".encode()[:1] + b"\n", 2, 0xC3),  # a truncated 2-byte sequence
    ],
)
@pytest.mark.parametrize("compressed", [False, True])
def test_read_lines_invalid_utf8_names_file_and_line(tmp_path, data, line, byte, compressed):
    path = tmp_path / ("f.txt.gz" if compressed else "f.txt")
    path.write_bytes(gzip.compress(data) if compressed else data)
    with pytest.raises(DataError) as info:
        read_lines(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line {line}: "), message
    assert "UTF-8" in message and f"0x{byte:02x}" in message


def test_read_lines_missing_directory_and_bad_gzip(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match="no such file") as info:
        read_lines(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(DataError) as info:
        read_lines(tmp_path)
    assert str(tmp_path) in str(info.value)
    fake = write(tmp_path / "fake.gz", b"plain text, not gzip\n")
    with pytest.raises(DataError) as info:
        read_lines(fake)
    assert str(fake) in str(info.value)
    truncated = write(tmp_path / "cut.gz", gzip.compress(b"a\n" * 1000)[:30])
    with pytest.raises(DataError) as info:
        read_lines(truncated)
    assert str(truncated) in str(info.value)


# --- split_path / read_parallel ------------------------------------------------------------------


def test_split_path_prefers_plain_then_gz(tmp_path):
    prefix = str(tmp_path / "train")
    gz = tmp_path / "train.de.gz"
    gz.write_bytes(gzip.compress(b"gz\n"))
    assert split_path(prefix, "de") == gz
    plain = write(tmp_path / "train.de", b"plain\n")
    assert split_path(prefix, "de") == plain
    assert read_lines(split_path(prefix, "de")) == ["plain"]


def test_split_path_missing_names_the_file(tmp_path):
    prefix = str(tmp_path / "train")
    with pytest.raises(DataError) as info:
        split_path(prefix, "en")
    message = str(info.value)
    assert message.startswith(f"{prefix}.en: "), message
    assert f"{prefix}.en.gz" in message
    (tmp_path / "train.en").mkdir()
    with pytest.raises(DataError, match=f"^{prefix}.en: is a folder; expected the split's file$"):
        split_path(prefix, "en")


def test_split_path_ignores_directories(tmp_path):
    (tmp_path / "train.en").mkdir()
    with pytest.raises(DataError):
        split_path(str(tmp_path / "train"), "en")


def test_read_parallel(tmp_path):
    write(tmp_path / "t.de", b"eins\nzwei\n")
    (tmp_path / "t.en.gz").write_bytes(gzip.compress(b"one\r\ntwo"))
    assert read_parallel(str(tmp_path / "t"), "de", "en") == (["eins", "zwei"], ["one", "two"])


def test_read_parallel_line_count_mismatch_names_both_files_and_counts(tmp_path):
    src = write(tmp_path / "t.de", b"a\nb\nc\n")
    tgt = write(tmp_path / "t.en", b"a\nb\n")
    with pytest.raises(DataError) as info:
        read_parallel(str(tmp_path / "t"), "de", "en")
    message = str(info.value)
    assert f"{src} has 3 lines" in message, message
    assert f"{tgt} has 2" in message, message


def test_read_parallel_mismatch_from_a_missing_final_line_only(tmp_path):
    """'a\\nb' has 2 lines and 'a\\nb\\n\\n' has 3: an extra blank line is a real line."""
    write(tmp_path / "t.de", b"a\nb")
    write(tmp_path / "t.en", b"a\nb\n\n")
    with pytest.raises(DataError, match="has 2 lines but .* has 3"):
        read_parallel(str(tmp_path / "t"), "de", "en")


def test_read_parallel_empty_and_missing(tmp_path):
    write(tmp_path / "e.de", b"")
    write(tmp_path / "e.en", b"")
    with pytest.raises(DataError, match="empty"):
        read_parallel(str(tmp_path / "e"), "de", "en")
    write(tmp_path / "m.de", b"a\n")
    with pytest.raises(DataError) as info:
        read_parallel(str(tmp_path / "m"), "de", "en")
    assert f"{tmp_path / 'm'}.en" in str(info.value)


# --- make_batch -------------------------------------------------------------------------------


def test_special_ids():
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)


def test_make_batch_shapes_eos_bos_and_padding():
    b = make_batch([[5, 6], [7]], [[8], [9, 10, 11]], [4, 2])
    assert b.src.tolist() == [[5, 6, EOS], [7, EOS, PAD]]
    assert b.src_lengths.tolist() == [3, 2]
    assert b.tgt_in.tolist() == [[BOS, 8, PAD, PAD], [BOS, 9, 10, 11]]
    assert b.tgt_out.tolist() == [[8, EOS, PAD, PAD], [9, 10, 11, EOS]]
    assert b.indices == [4, 2]
    assert b.n_tgt_tokens == 6  # real tokens + one EOS each, no padding
    for t in (b.src, b.src_lengths, b.tgt_in, b.tgt_out):
        assert t.dtype == torch.long


def test_make_batch_invariants_on_random_data():
    rng = random.Random(3)
    for _ in range(50):
        n = rng.randrange(1, 9)
        src = [[rng.randrange(4, 50) for _ in range(rng.randrange(0, 12))] for _ in range(n)]
        tgt = [[rng.randrange(4, 50) for _ in range(rng.randrange(0, 12))] for _ in range(n)]
        b = make_batch(src, tgt, list(range(n)))
        assert b.src.shape == (n, max(map(len, src)) + 1)
        assert b.tgt_in.shape == b.tgt_out.shape == (n, max(map(len, tgt)) + 1)
        for r in range(n):
            s, t = len(src[r]), len(tgt[r])
            assert b.src_lengths[r] == s + 1
            assert b.src[r, :s].tolist() == src[r] and b.src[r, s] == EOS
            assert (b.src[r, s + 1 :] == PAD).all()
            assert b.tgt_in[r, 0] == BOS and b.tgt_in[r, 1 : t + 1].tolist() == tgt[r]
            assert b.tgt_out[r, :t].tolist() == tgt[r] and b.tgt_out[r, t] == EOS
            assert (b.tgt_in[r, t + 1 :] == PAD).all() and (b.tgt_out[r, t + 1 :] == PAD).all()
        assert b.n_tgt_tokens == sum(map(len, tgt)) + n


def test_make_batch_without_target_and_with_empty_source():
    b = make_batch([[], [5]], None, [0, 1])
    assert b.src.tolist() == [[EOS, PAD], [5, EOS]]
    assert b.src_lengths.tolist() == [1, 2]
    assert b.tgt_in is None and b.tgt_out is None and b.n_tgt_tokens == 0
    moved = b.to(torch.device("cpu"))
    assert moved.tgt_in is None and torch.equal(moved.src, b.src)


# --- BatchSampler -------------------------------------------------------------------------------


def random_corpus(n: int, seed: int = 0, max_len: int = 60) -> tuple[list[list[int]], list[list[int]]]:
    """Id lists of very different lengths, as in real data."""
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        s = rng.randrange(1, max_len)
        t = max(1, int(s * rng.uniform(0.7, 1.4)))
        src.append([rng.randrange(4, 100) for _ in range(s)])
        tgt.append([rng.randrange(4, 100) for _ in range(t)])
    return src, tgt


def cost(src, tgt, i) -> int:
    return max(len(src[i]), len(tgt[i])) + 1


def padded_size(src, tgt, batch) -> int:
    return len(batch) * max(cost(src, tgt, i) for i in batch)


def padding_fraction(src, tgt, batches) -> float:
    """Share of padding in the source and target tensors of the batches."""
    pad = total = 0
    for batch in batches:
        b = make_batch([src[i] for i in batch], [tgt[i] for i in batch], batch)
        for t in (b.src, b.tgt_out):
            pad += int((t == PAD).sum())
            total += t.numel()
    return pad / total


SRC, TGT = random_corpus(3000)


@pytest.mark.parametrize("size,by_tokens", [(1000, True), (4096, True), (200, True), (32, False), (1, False)])
def test_every_index_exactly_once_per_epoch(size, by_tokens):
    sampler = BatchSampler(ListCorpus(SRC, TGT), size, by_tokens, seed=1)
    for epoch in (1, 2, 3):
        batches = sampler.epoch_batches(epoch)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(SRC)))
        assert all(batches)  # no empty batch


def test_epochs_are_deterministic_and_differ():
    a = BatchSampler(ListCorpus(SRC, TGT), 2000, True, seed=7)
    b = BatchSampler(ListCorpus(SRC, TGT), 2000, True, seed=7)
    assert list(a.epoch_batches(1)) == list(b.epoch_batches(1))
    assert list(a.epoch_batches(2)) == list(a.epoch_batches(2))  # calling again does not advance a hidden state
    assert list(a.epoch_batches(1)) != list(a.epoch_batches(2))
    assert list(a.epoch_batches(1)) != list(BatchSampler(ListCorpus(SRC, TGT), 2000, True, seed=8).epoch_batches(1))
    # not only the order of the batches: their contents change too
    first = {tuple(sorted(x)) for x in a.epoch_batches(1)}
    second = {tuple(sorted(x)) for x in a.epoch_batches(2)}
    assert first != second


@pytest.mark.parametrize("size", [64, 150, 1000, 4096])
def test_token_budget(size):
    """sentences x (longest + 1) <= batch_size, unless one sentence alone exceeds it."""
    sampler = BatchSampler(ListCorpus(SRC, TGT), size, True, seed=1)
    batches = sampler.epoch_batches(1)
    for batch in batches:
        if len(batch) > 1:
            assert padded_size(SRC, TGT, batch) <= size, batch
        else:
            assert padded_size(SRC, TGT, batch) <= size or cost(SRC, TGT, batch[0]) > size
    # the batches are reasonably full: no budget wasted on tiny batches
    used = sum(padded_size(SRC, TGT, b) for b in batches) / (len(batches) * size)
    if size >= 1000:
        assert used > 0.8, used


def test_sentences_too_long_for_the_budget_get_a_batch_each():
    src, tgt = random_corpus(500, seed=2)
    size = 40
    long = {i for i in range(len(src)) if cost(src, tgt, i) > size}
    assert long
    for batch in BatchSampler(ListCorpus(src, tgt), size, True, seed=1).epoch_batches(1):
        if long & set(batch):
            assert len(batch) == 1


def test_batch_type_sentences():
    for batch in BatchSampler(ListCorpus(SRC, TGT), 50, False, seed=1).epoch_batches(1):
        assert 1 <= len(batch) <= 50
    sizes = [len(b) for b in BatchSampler(ListCorpus(SRC, TGT), 50, False, seed=1).epoch_batches(1)]
    assert sizes.count(50) >= len(SRC) // 50 - 1  # full batches except at the end of each pool


def test_bucketing_pads_less_than_random_batching():
    sampler = BatchSampler(ListCorpus(SRC, TGT), 2000, True, seed=1)
    batches = sampler.epoch_batches(1)
    bucketed = padding_fraction(SRC, TGT, batches)
    # the same batch sizes, filled with random sentences
    rng = random.Random(0)
    order = list(range(len(SRC)))
    rng.shuffle(order)
    random_batches, start = [], 0
    for b in batches:
        random_batches.append(order[start : start + len(b)])
        start += len(b)
    randomly = padding_fraction(SRC, TGT, random_batches)
    assert bucketed < 0.2, bucketed
    assert randomly > 0.3, randomly
    assert bucketed < randomly / 3


class LengthsOnly:
    """A PairCorpus of lengths alone: the sampler's order needs nothing else."""

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.src_lengths = rng.integers(1, 60, n).astype(np.uint8)
        self.tgt_lengths = rng.integers(1, 60, n).astype(np.uint8)

    def __len__(self) -> int:
        return len(self.src_lengths)


def test_an_epoch_takes_about_4_bytes_per_pair():
    """At millions of pairs an epoch's order must not be Python lists (~42 bytes a pair): every
    rank holds one. 500k pairs: the epoch's batches take under 6 bytes a pair (traced)."""
    sampler = BatchSampler(LengthsOnly(500_000, seed=3), 4096, True, seed=1)
    tracemalloc.start()
    try:
        batches = sampler.epoch_batches(1)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 6 * 500_000, held
    assert sum(len(b) for b in batches) == 500_000 and isinstance(batches[0], list)
    assert batches[2:4] == [batches[2], batches[3]] and batches[-1] == batches[len(batches) - 1]


def test_sampler_batch_matches_make_batch():
    sampler = BatchSampler(ListCorpus(SRC[:10], TGT[:10]), 1000, True, seed=1)
    b = sampler.batch([3, 1])
    ref = make_batch([SRC[3], SRC[1]], [TGT[3], TGT[1]], [3, 1])
    assert torch.equal(b.src, ref.src) and torch.equal(b.tgt_out, ref.tgt_out) and b.indices == [3, 1]


def test_cut_ends_keeps_order_and_budget():
    src_lens = [1, 2, 3, 10, 2, 30]
    tgt_lens = [1, 1, 5, 2, 2, 1]
    ends = cut_ends([max(s, t) + 1 for s, t in zip(src_lens, tgt_lens)], 12, True)
    batches = [list(range(start, end)) for start, end in zip([0, *ends], ends)]
    assert ends[-1] == 6 and all(start < end for start, end in zip([0, *ends], ends))
    for b in batches:
        longest = max(max(src_lens[i], tgt_lens[i]) + 1 for i in b)
        assert len(b) * longest <= 12 or len(b) == 1
    assert batches[-1] == [5]  # 31 > 12: alone


# --- sorted_batches -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 64, 5000])
@pytest.mark.parametrize("with_target", [True, False])
def test_sorted_batches_keep_every_index(size, with_target):
    src, tgt = SRC[:500], TGT[:500]
    batches = sorted_batches(src, tgt if with_target else None, size)
    flat = [i for b in batches for i in b.indices]
    assert sorted(flat) == list(range(len(src)))
    assert all(1 <= len(b.indices) <= size for b in batches)
    assert [len(src[i]) for i in flat] == sorted(len(s) for s in src)  # by source length
    for b in batches:
        for row, i in enumerate(b.indices):
            assert b.src[row, : len(src[i])].tolist() == src[i]
            if with_target:
                assert b.tgt_out[row, : len(tgt[i])].tolist() == tgt[i]
            else:
                assert b.tgt_out is None


def test_sorted_batches_of_nothing():
    assert sorted_batches([], None, 8) == []


# --- tokenizers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dates_text(tmp_path_factory):
    out = tmp_path_factory.mktemp("dates")
    write_splits(out, sizes={"train": 1500, "dev": 50, "test": 50})
    src, tgt = read_parallel(str(out / "train"), "src", "tgt")
    dev_src, dev_tgt = read_parallel(str(out / "dev"), "src", "tgt")
    return src, tgt, dev_src, dev_tgt


def check_special_ids(tok: Tokenizer, lines: list[str]):
    sp = tok.sp
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD, UNK, BOS, EOS)
    assert tok.pieces([PAD, UNK, BOS, EOS]) == ["<pad>", "<unk>", "<s>", "</s>"]
    for line_ids in tok.encode(lines):
        assert line_ids and all(i > EOS for i in line_ids)  # no specials inside a sentence


def test_joint_tokenizer(dates_text):
    src, tgt, dev_src, dev_tgt = dates_text
    cfg = TokenizerConfig(vocab_size=120, joint=True, split_digits=True)
    s, t = build_tokenizers(cfg, src, tgt, seed=1)
    assert s is t
    check_special_ids(s, src[:50] + tgt[:50])
    assert 4 < len(s) <= 120
    for lines in (src[:200], tgt[:200], dev_src, dev_tgt):  # seen and unseen text
        assert [s.decode(ids) for ids in s.encode(lines)] == lines


def test_separate_tokenizers(dates_text):
    src, tgt, dev_src, dev_tgt = dates_text
    cfg = TokenizerConfig(vocab_size=120, joint=False, split_digits=True)
    s, t = build_tokenizers(cfg, src, tgt, seed=1)
    assert s is not t
    for tok, train, dev in ((s, src, dev_src), (t, tgt, dev_tgt)):
        check_special_ids(tok, train[:50])
        assert [tok.decode(ids) for ids in tok.encode(train[:200] + dev)] == train[:200] + dev
    assert len(t) < len(s)  # the ISO side has far fewer distinct pieces
    assert all(piece.strip("▁").isdigit() or piece.strip("▁") in "-" for piece in t.pieces(t.encode(["2001-02-03"])[0]))


def test_tokenizer_is_deterministic_and_small_data_gives_fewer_pieces(dates_text):
    src, tgt, _, _ = dates_text
    cfg = TokenizerConfig(vocab_size=8000, split_digits=True)  # far more than the data has
    a = train_tokenizer(src[:300], cfg, seed=1)
    b = train_tokenizer(src[:300], cfg, seed=1)
    assert a.model_proto == b.model_proto
    assert len(a) < 8000


def test_tokenizer_skips_blank_lines_and_samples(dates_text):
    src, _, _, _ = dates_text
    tok = train_tokenizer(["", "   "] + src[:300] + ["\t"], TokenizerConfig(vocab_size=100, max_sentences=100), seed=3)
    check_special_ids(tok, src[:20])
    assert tok.encode([""]) == [[]]


def test_unknown_characters_become_unk(dates_text):
    src, _, _, _ = dates_text
    tok = train_tokenizer(src[:300], TokenizerConfig(vocab_size=100), seed=1)
    assert UNK in tok.encode(["☃"])[0]


def test_save_and_load_tokenizers(tmp_path, dates_text):
    src, tgt, dev_src, _ = dates_text
    joint = train_tokenizer(src[:300] + tgt[:300], TokenizerConfig(vocab_size=80), seed=1)
    save_tokenizers(joint, joint, tmp_path)
    assert (tmp_path / "spm.model").is_file() and not (tmp_path / "spm.src.model").exists()
    loaded = Tokenizer.from_file(tmp_path / "spm.model")
    assert loaded.encode(dev_src) == joint.encode(dev_src)
    # an existing model named in the config is loaded, not retrained
    s, t = build_tokenizers(TokenizerConfig(model=str(tmp_path / "spm.model")), ["x"], ["y"], seed=1)
    assert s is t and s.model_proto == joint.model_proto

    other = tmp_path / "sep"
    other.mkdir()
    s_tok = train_tokenizer(src[:300], TokenizerConfig(vocab_size=70), seed=1)
    t_tok = train_tokenizer(tgt[:300], TokenizerConfig(vocab_size=70), seed=1)
    save_tokenizers(s_tok, t_tok, other)
    assert {p.name for p in other.iterdir()} == {"spm.src.model", "spm.tgt.model"}
    cfg = TokenizerConfig(joint=False, src_model=str(other / "spm.src.model"), tgt_model=str(other / "spm.tgt.model"))
    s, t = build_tokenizers(cfg, ["x"], ["y"], seed=1)
    assert s.model_proto == s_tok.model_proto and t.model_proto == t_tok.model_proto


def test_bad_tokenizer_files(tmp_path):
    missing = tmp_path / "nope.model"
    with pytest.raises(CheckpointError) as info:
        Tokenizer.from_file(missing)
    assert str(missing) in str(info.value)
    garbage = write(tmp_path / "garbage.model", b"\x00\x01 not a model")
    with pytest.raises(CheckpointError) as info:
        Tokenizer.from_file(garbage)
    assert str(garbage) in str(info.value)


def test_model_with_other_special_ids_is_refused(tmp_path, dates_text):
    src, _, _, _ = dates_text
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(src[:300]), model_writer=proto, vocab_size=100, hard_vocab_limit=False, minloglevel=2
    )  # sentencepiece's defaults: unk 0
    with pytest.raises(ConfigError, match="0/1/2/3"):
        Tokenizer(proto.getvalue())


def test_vocab_size_below_the_character_count_is_a_config_error(dates_text):
    src, _, _, _ = dates_text
    with pytest.raises(ConfigError, match="tokenizer.vocab_size"):
        train_tokenizer(src[:300], TokenizerConfig(vocab_size=10), seed=1)


@pytest.mark.parametrize("compressed", [False, True])
def test_read_lines_from_a_pipe(tmp_path, compressed):
    """A named pipe (what `nmt bleu hyp <(zcat ref.gz)` passes) is read like a file, gzip too."""
    import os
    import threading

    fifo = tmp_path / ("ref.gz" if compressed else "ref")
    os.mkfifo(fifo)
    text = "".join(f"line {i}\n" for i in range(50_000))
    data = gzip.compress(text.encode()) if compressed else text.encode()
    writer = threading.Thread(target=fifo.write_bytes, args=(data,), daemon=True)
    writer.start()
    assert read_lines(fifo) == text.splitlines()
    writer.join(10)
