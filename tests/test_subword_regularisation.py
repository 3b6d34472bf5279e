"""Subword regularisation (tokenizer.sampling): each epoch its own sampled segmentation, made
ahead, deterministic, length-filtered, resumable bit for bit; alpha = 0 changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_dates_config
from test_compat import DATA, FIXTURES
from test_resume import assert_same_training_state, last

import nmt
from nmt.config import Config, config_from_dict, save_config
from nmt.data.binary import BinaryCorpus, read_header
from nmt.data.dates import write_splits
from nmt.data.prepare import prepare_data
from nmt.data.sampling import SampledEpochs, WordSampler, block_seed
from nmt.data.tokenizer import Tokenizer, train_tokenizer
from nmt.errors import ConfigError, DataError
from nmt.rundir.log import Log


def sampled_config(tmp_path: Path, run: str, alpha: float = 0.3, **training) -> Config:
    cfg = tiny_dates_config(tmp_path, run, dropout=0.3, **{"batch_size": 300, "valid_every": 5, **training})
    cfg.tokenizer.sampling.alpha = alpha
    return cfg


def corpus_pairs(corpus: BinaryCorpus) -> list[tuple[list[int], list[int]]]:
    every = list(range(len(corpus)))
    return list(zip(corpus.rows("src", every), corpus.rows("tgt", every)))


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    from nmt.config import TokenizerConfig

    words = ["cat", "dog", "bird", "unbelievably", "catalogue", "dogmatic"]
    lines = [f"the {w} sat on the mat, {v} and {w}{v}" for w in words for v in words for _ in range(3)]
    return train_tokenizer(lines, TokenizerConfig(vocab_size=60), seed=1)


LINES = ["the cat sat on the mat, unbelievably dogmatic", "a dog", "", "catalogue bird"] * 25


def test_a_draw_spells_the_line_and_is_a_function_of_the_seed_in_any_process(tokenizer, tmp_path):
    """sentencepiece's own sampler salts its seed per process (absl's BitGen); these draws repeat
    in a new process."""
    best = tokenizer.encode(LINES)
    drawn = WordSampler(tokenizer, 0.3, 8).sample(best, np.random.default_rng(7))
    assert [tokenizer.decode(ids) for ids in drawn] == LINES
    assert drawn != best and len({tuple(ids) for ids in drawn[::4]}) > 1  # the same line, segmented apart
    assert WordSampler(tokenizer, 0.3, 8).sample(best, np.random.default_rng(8)) != drawn
    (tmp_path / "spm.model").write_bytes(tokenizer.model_proto)
    script = (
        "import sys, json, numpy as np\n"
        "from nmt.data.tokenizer import Tokenizer\nfrom nmt.data.sampling import WordSampler\n"
        "tok = Tokenizer.from_file(sys.argv[1])\n"
        "print(json.dumps(WordSampler(tok, 0.3, 8).sample(tok.encode(json.loads(sys.argv[2])), "
        "np.random.default_rng(7))))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "spm.model"), json.dumps(LINES)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(other.stdout) == drawn


def test_a_words_segmentations_are_drawn_in_proportion_to_p_to_the_alpha(tokenizer):
    """The frequencies of 20,000 draws of one word match P(x)^alpha over its n best (within
    four standard errors each), and a lower alpha spreads them."""
    word = " unbelievably"
    candidates = tokenizer.nbest(word, 8)
    scores = np.array(tokenizer.piece_scores())
    best = tokenizer.encode([word] * 20_000)
    for alpha in (0.2, 1.0):
        p = np.exp(alpha * np.array([scores[c].sum() for c in candidates]))
        p /= p.sum()
        drawn = WordSampler(tokenizer, alpha, 8).sample(best, np.random.default_rng(1))
        counts = np.array([sum(d == c for d in drawn) for c in candidates])
        assert counts.sum() == len(drawn)
        assert np.all(np.abs(counts / len(drawn) - p) <= 4 * np.sqrt(p * (1 - p) / len(drawn)) + 1e-9), alpha
        if alpha == 0.2:
            assert p[0] < 0.9 and len(candidates) > 2


def test_block_seeds_differ_by_epoch_side_and_block():
    seeds = {block_seed(1, e, side, b) for e in range(1, 4) for side in ("source", "target") for b in range(5)}
    assert len(seeds) == 30


def epochs_of(cfg: Config) -> tuple[SampledEpochs, BinaryCorpus]:
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    src_tok, tgt_tok, train, _ = prepare_data(cfg, Log(None))
    return SampledEpochs(cfg, (src_tok, tgt_tok), train, Log(None)), train


def test_each_epoch_is_segmented_afresh_and_the_same_epoch_again_is_the_same_file(tmp_path):
    cfg = sampled_config(tmp_path, "run")
    epochs, train = epochs_of(cfg)
    try:
        one = epochs.corpus(1)
        path, made = one.path, one.path.read_bytes()
        assert path == tmp_path / "run" / "segmentations" / "epoch-00001.bin"
        two = epochs.corpus(2)  # made ahead while epoch 1 "trained"
        assert not path.exists()  # only the current epoch's and the next one's are kept
        epochs.ahead[3].result()
        assert sorted(p.name for p in path.parent.iterdir()) == ["epoch-00002.bin", "epoch-00003.bin"]
        again = epochs.make(1)  # made afresh: the same bytes
        assert again.path.read_bytes() == made
        assert corpus_pairs(again) == corpus_pairs(one)
        assert corpus_pairs(one) != corpus_pairs(two) != corpus_pairs(train)
        # the text is the same, only its segmentation differs
        src_tok = epochs.tokenizers[0]
        sources = [src_tok.decode(s) for s, _ in corpus_pairs(one)]
        assert sources == [src_tok.decode(s) for s, _ in corpus_pairs(train)]
    finally:
        epochs.close()


def test_only_the_sampled_side_differs_from_the_best_segmentation(tmp_path):
    cfg = sampled_config(tmp_path, "run")
    cfg.tokenizer.sampling.sides = "source"  # (the dates' targets are digits and '-': one segmentation)
    epochs, train = epochs_of(cfg)
    try:
        sampled, best = corpus_pairs(epochs.corpus(1)), corpus_pairs(train)
        assert [t for _, t in sampled] == [t for _, t in best]
        assert [s for s, _ in sampled] != [s for s, _ in best]
    finally:
        epochs.close()


def test_the_length_limits_apply_to_the_sampled_lengths(tmp_path):
    cfg = sampled_config(tmp_path, "run", alpha=0.05)  # flat: long segmentations are likely
    _, best = epochs_of(cfg)
    limit = int(best.src_lengths.max())  # every pair fits with its best segmentation
    cfg.data.max_src_length = limit
    epochs, train = epochs_of(cfg)
    try:
        assert len(train) == len(best)
        sampled = epochs.corpus(1)
        assert int(sampled.src_lengths.max()) <= limit and len(sampled) < len(train)
        assert sampled.header["dropped"] == sampled.header["lines"] - len(sampled)
    finally:
        epochs.close()


def test_a_training_file_changed_during_the_run_is_named(tmp_path):
    cfg = sampled_config(tmp_path, "run")
    epochs, _ = epochs_of(cfg)
    try:
        path = Path(cfg.data.train + ".tgt")
        path.write_text(path.read_text() + "one more line\n")
        with pytest.raises(DataError, match=rf"^{path}: changed since this run's .*train.bin was made"):
            epochs.corpus(1)
    finally:
        epochs.close()


def test_the_same_seed_trains_on_the_same_segmentations_to_the_same_weights(tmp_path):
    def segmentations(run: Path) -> dict[str, str]:
        return {p.name: read_header(p)["content"] for p in (run / "segmentations").iterdir()}

    runs = [nmt.train(sampled_config(tmp_path, run, max_steps=6)) for run in ("a", "b")]
    assert_same_training_state(last(runs[0]), last(runs[1]))
    assert segmentations(runs[0]) == segmentations(runs[1]) and len(segmentations(runs[0])) == 2
    other = sampled_config(tmp_path, "other", max_steps=6)
    other.seed = 2
    theirs = segmentations(nmt.train(other))
    assert theirs.keys() == segmentations(runs[0]).keys() and theirs != segmentations(runs[0])


@pytest.mark.parametrize("files", [pytest.param("kept", marks=pytest.mark.slow), "deleted"])
def test_resuming_a_sampled_run_trains_exactly_as_going_on(tmp_path, files):
    """Across epoch boundaries (400 pairs in batches of 300 tokens: a few steps an epoch); the
    segmentations the stopped run made ahead are used, or made again when they are gone."""
    whole = last(nmt.train(sampled_config(tmp_path, "whole", max_steps=40)))
    assert whole["progress"]["epoch"] >= 3
    first = nmt.train(sampled_config(tmp_path, "parts", max_steps=17))
    assert last(first)["progress"]["batches_done"] > 0  # stopped within an epoch
    if files == "deleted":
        shutil.rmtree(first / "segmentations")
    resumed = nmt.train(sampled_config(tmp_path, "parts", max_steps=40), resume=True)
    assert_same_training_state(whole, last(resumed))
    left = sorted(p.name for p in (resumed / "segmentations").iterdir())
    assert len(left) <= 2 and all(name.startswith("epoch-") and name.endswith(".bin") for name in left)


def test_without_sampling_the_corpus_is_the_one_the_previous_version_wrote(tmp_path):
    """alpha = 0 (the default) leaves training as it was: train.bin's arrays byte for byte, and
    its header, as the fixture run's (written by d541370 from the same files); the header's
    record of the tokenizer settings has gained `remap` since (issue 29), and nothing else."""
    write_splits(DATA, only_missing=True)
    fixture = FIXTURES / "run_v2" / "train.bin"
    for stats in read_header(fixture)["fingerprint"]["inputs"]:
        os.utime(stats["path"], ns=(stats["mtime_ns"], stats["mtime_ns"]))
    cfg = nmt.config.load_config(FIXTURES / "run_v2" / "config.yaml")
    cfg.run_dir = str(tmp_path / "run")
    cfg.tokenizer.sampling.alpha = 0.0
    Path(cfg.run_dir).mkdir()
    corpus = prepare_data(cfg, Log(None))[2]
    header, old = read_header(corpus.path), read_header(fixture)
    assert header["recipe"]["tokenizer"].pop("remap") is False
    assert header == old
    arrays = max(a["offset"] + a["count"] * np.dtype(a["dtype"]).itemsize for a in header["arrays"].values())
    assert corpus.path.read_bytes()[:arrays] == fixture.read_bytes()[:arrays]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"type": "bpe", "sampling": {"alpha": 0.1}},
            "tokenizer.sampling.alpha: subword regularisation needs tokenizer.type unigram, got bpe",
        ),
        ({"sampling": {"nbest_size": 1}}, "tokenizer.sampling.nbest_size: expected an integer from 2 to 512, got 1"),
        ({"sampling": {"sides": "all"}}, "tokenizer.sampling.sides: expected one of both, source, target"),
    ],
)
def test_sampling_settings_are_checked(section, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"tokenizer": section})


@pytest.mark.slow  # (.ci/run runs it after the default suite)
def test_kill_9_while_the_next_epoch_is_drawn_then_resume_trains_exactly_as_going_on(tmp_path):
    """`nmt train` killed with SIGKILL while its background thread writes an epoch's segmentation
    (the file cut short), then `--resume`: the weights of the run straight through, bit for bit."""
    from test_faults import start, train

    def config(run: str, steps: int) -> Path:
        cfg = sampled_config(tmp_path, run, max_steps=steps, valid_every=4, num_threads=1, log_every=1)
        save_config(cfg, tmp_path / f"{run}.yaml")
        return tmp_path / f"{run}.yaml"

    assert train(config("whole", 40)).returncode == 0
    parts = config("parts", 40)
    segmentations = tmp_path / "parts" / "segmentations"
    for _ in range(3):  # a kill that lands while a segmentation is half-written (usually the first try)
        shutil.rmtree(tmp_path / "parts", ignore_errors=True)
        proc = start(parts, stderr=tmp_path / "parts.err")
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            if (tmp_path / "parts" / "checkpoints" / "last.pt").exists() and any(
                p.name.endswith(".tmp") for p in segmentations.glob(".*")
            ):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
        proc.wait(timeout=60)
        if proc.returncode == -signal.SIGKILL:
            break
    assert proc.returncode == -signal.SIGKILL, "never caught a segmentation being written"
    resumed = train(parts, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training_state(last(tmp_path / "whole"), last(tmp_path / "parts"))
    assert not [p for p in segmentations.iterdir() if p.name.endswith(".tmp")]  # the cut-short file is gone
