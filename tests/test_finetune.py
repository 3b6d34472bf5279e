"""Fine-tuning (`training.init_from`): a new run from a trained run's weights, with a fresh
optimizer, schedule, step count and patience; the parent read once and never written; a
resumed fine-tune bit-identical to an uninterrupted one; vocabularies remapped by piece."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from conftest import tiny_dates_config
from test_faults import start, train, wait_for
from test_resume import assert_same_training_state

import nmt
from nmt.config import config_from_dict, config_to_dict, save_config
from nmt.data.prepare import prepare_data
from nmt.data.tokenizer import Tokenizer
from nmt.rundir.checkpoint import load_checkpoint
from nmt.rundir.contents import step_of
from nmt.rundir.log import Log
from nmt.rundir.records import read_metrics
from nmt.training.finetune import open_parent, parent_tokenizers
from nmt.training.trainer import Trainer
from nmt.translate import Translator

FROZEN = "training.freeze=[embeddings, encoder, attention]"  # only the output layer and the decoder's RNN learn


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A tiny dates run of 30 steps, validated every 10 (its best.pt is what children start from)."""
    tmp = tmp_path_factory.mktemp("parent")
    return Path(nmt.train(tiny_dates_config(tmp, "parent", max_steps=30, valid_every=10, batch_size=300)))


def child_config(parent: Path, folder: Path, run: str = "child", *overrides: str, **training):
    cfg = tiny_dates_config(folder, run, **{"max_steps": 10, "valid_every": 10, "batch_size": 300, **training})
    return config_from_dict(config_to_dict(cfg), [f"training.init_from={parent}", *overrides])


def files_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def best(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "best.pt")


def test_before_its_first_update_a_child_is_its_parent(parent, tmp_path):
    """The trainer of a fine-tuning run, built: the parent's translations and dev loss, an empty
    optimizer at the config's learning rate, step 0 and no best score."""
    cfg = child_config(parent, tmp_path, "child", "training.lr=0.0005")
    found, _ = open_parent(cfg)
    Path(cfg.run_dir).mkdir()
    src_tok, tgt_tok, corpus, dev = prepare_data(cfg, Log(None), parent_tokenizers(found))
    trainer = Trainer(cfg, src_tok, tgt_tok, corpus, dev, Log(None), torch.device("cpu"), parent=found)
    lines = ["3 May 1979", "march 12th 1991", "28 FEB 2058"]
    child = Translator(trainer.model, src_tok, tgt_tok, cfg, torch.device("cpu"))
    assert child.search(lines, beam=3, n_best=3) == nmt.Translator.load(parent).search(lines, beam=3, n_best=3)
    parents = best(parent)
    parent_loss = next(
        r["dev_loss"] for r in read_metrics(parent / "metrics.jsonl") if r.get("step") == step_of(parents)
    )
    assert trainer.dev_loss() == pytest.approx(parent_loss, abs=1e-6)
    assert trainer.optimizer.state_dict()["state"] == {}
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.0005]
    assert (trainer.progress.step, trainer.progress.best, trainer.progress.dev_metrics) == (0, None, {})


def test_a_child_records_its_lineage_and_never_writes_to_its_parent(parent, tmp_path):
    before = files_hash(parent)
    child = Path(nmt.train(child_config(parent, tmp_path)))
    assert files_hash(parent) == before
    lineage = json.loads((child / "lineage.json").read_text())
    checkpoint = parent / "checkpoints" / "best.pt"
    assert lineage == {
        "init_from": str(parent),
        "checkpoint": str(checkpoint.resolve()),
        "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "step": step_of(best(parent)),
    }
    assert f"fine-tuning from {checkpoint.resolve()} (step {lineage['step']})" in (child / "train.log").read_text()


def test_a_child_trains_with_a_fresh_optimizer_schedule_and_step_count(parent, tmp_path):
    cfg = child_config(parent, tmp_path, "child", "training.lr_schedule=constant", "training.lr=0.0005")
    child = Path(nmt.train(cfg))
    state = load_checkpoint(child / "checkpoints" / "last.pt")
    assert state["progress"]["step"] == 10 and list(state["progress"]["scores"]) == ["10"]
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {10.0}  # Adam's own count
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [0.0005]
    assert not all(torch.equal(state["model"][k], w) for k, w in best(parent)["model"].items())


def test_frozen_parts_keep_the_parents_weights(parent, tmp_path):
    child = Path(nmt.train(child_config(parent, tmp_path, "child", "training.freeze=[encoder, embeddings]")))
    state, parents = load_checkpoint(child / "checkpoints" / "last.pt")["model"], best(parent)["model"]
    frozen = [k for k in parents if k.startswith(("encoder.", "src_embed.", "tgt_embed."))]
    assert frozen and all(torch.equal(state[k], parents[k]) for k in frozen)
    assert not torch.equal(state["output.weight"], parents["output.weight"])


def test_a_model_key_that_differs_from_the_parents_stops_with_one_line(parent, tmp_path, nmt_cli, one_line_error):
    cfg = child_config(parent, tmp_path, "child", "model.enc_hidden_size=32")
    (tmp_path / "child.yaml").write_text(json.dumps(config_to_dict(cfg)))
    message = one_line_error(nmt_cli("train", tmp_path / "child.yaml"), "config error", 2)
    checkpoint = (parent / "checkpoints" / "best.pt").resolve()
    assert message.startswith(f"model.enc_hidden_size: this config says 32, the parent {checkpoint} has 16;")
    assert not (tmp_path / "child" / "checkpoints").exists()


@pytest.mark.slow
def test_a_resumed_fine_tune_equals_an_uninterrupted_one_without_reading_the_parent(parent, tmp_path):
    """A fine-tune killed (SIGKILL) after its first checkpoint, its parent deleted, then resumed:
    it ends bit-identical to one that ran straight through."""
    copy = shutil.copytree(parent, tmp_path / "parent-copy")
    configs = {}
    for run in ("whole", "parts"):
        cfg = child_config(copy, tmp_path, run, "training.num_threads=1", max_steps=40, valid_every=5)
        configs[run] = tmp_path / f"{run}.yaml"
        save_config(cfg, configs[run])
    assert train(configs["whole"]).returncode == 0
    proc = start(configs["parts"], "--resume", stderr=tmp_path / "parts.err")
    last = tmp_path / "parts" / "checkpoints" / "last.pt"
    assert wait_for(last.is_file, proc, 120), (tmp_path / "parts.err").read_text()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shutil.rmtree(copy)  # a resumed child never reads its parent again
    assert load_checkpoint(last)["progress"]["step"] < 40
    resumed = train(configs["parts"], "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (load_checkpoint(tmp_path / run / "checkpoints" / "last.pt") for run in ("whole", "parts"))
    assert_same_training_state(a, b)


def test_remap_copies_the_rows_of_the_pieces_both_vocabularies_know(parent, tmp_path):
    frozen = "training.freeze=[embeddings, encoder, output]"  # the rows stay as copied; the decoder learns
    remap = ("tokenizer.remap=true", "tokenizer.type=bpe", "tokenizer.vocab_size=120")
    child = Path(nmt.train(child_config(parent, tmp_path, "child", frozen, *remap)))
    parents, state = best(parent), load_checkpoint(child / "checkpoints" / "last.pt")
    log = (child / "train.log").read_text()
    for side, keys in (("src", ["src_embed.weight"]), ("tgt", ["tgt_embed.weight", "output.weight", "output.bias"])):
        old, new = Tokenizer(parents["tokenizers"][side]), Tokenizer(state["tokenizers"][side])
        old_ids = {p: i for i, p in enumerate(old.pieces(list(range(len(old)))))}
        shared = [(i, old_ids[p]) for i, p in enumerate(new.pieces(list(range(len(new))))) if p in old_ids]
        assert 4 < len(shared) and (side == "tgt" or len(shared) < len(new))  # source: new pieces too
        for key in keys:
            assert all(torch.equal(state["model"][key][i], parents["model"][key][j]) for i, j in shared), key
        assert f"copied {len(shared)} of {len(new)} rows" in log


def test_without_remap_the_child_uses_and_records_its_parents_tokenizers(parent, tmp_path):
    child = Path(nmt.train(child_config(parent, tmp_path, "child", FROZEN, "tokenizer.vocab_size=60")))
    assert "the parent's sentencepiece models are used" in (child / "train.log").read_text()
    assert load_checkpoint(child / "checkpoints" / "last.pt")["tokenizers"] == best(parent)["tokenizers"]
    stored = config_from_dict(json.loads(json.dumps(load_checkpoint(child / "checkpoints" / "last.pt")["config"])))
    assert stored.tokenizer.vocab_size == 200 and not stored.tokenizer.remap


def test_a_parent_inside_the_childs_own_run_directory_is_refused(parent, tmp_path, nmt_cli, one_line_error):
    run = shutil.copytree(parent, tmp_path / "run")
    cfg = child_config(run, tmp_path, "run")
    (tmp_path / "child.yaml").write_text(json.dumps(config_to_dict(cfg)))
    message = one_line_error(nmt_cli("train", tmp_path / "child.yaml", "--overwrite"), "config error", 2)
    assert message.startswith("training.init_from: ") and "lies in this run's own directory" in message
    assert (run / "checkpoints" / "best.pt").is_file()


NEW_FORMATS = ["slashed_mdy", "dotted_dmy", "compact"]  # told apart only by their separators: unguessable


def exact_match(run: Path, data: Path) -> float:
    sources, references = (data.joinpath(f"test.{side}").read_text().splitlines() for side in ("src", "tgt"))
    outputs = nmt.Translator.load(run).translate(sources)
    return sum(o == r for o, r in zip(outputs, references)) / len(references)


@pytest.mark.slow  # (.ci/run runs it after the default suite; about 3 minutes on 2 cores)
def test_fine_tuning_teaches_a_parent_new_date_formats_and_keeps_the_old(tmp_path):
    """docs/fine_tuning.md's walk-through, smaller: a parent that never saw three numeric formats
    gets them wrong; fine-tuned on 3,000 pairs of all formats it learns them and keeps the rest."""
    from nmt.data.dates import formats_named, write_splits

    new, old = formats_named(NEW_FORMATS), formats_named(NEW_FORMATS, without=True)
    write_splits(tmp_path / "old", sizes={"train": 12000, "dev": 300, "test": 0}, formats=old)
    write_splits(tmp_path / "mixed", seed=7, sizes={"train": 3000, "dev": 300, "test": 0})
    write_splits(tmp_path / "test_new", seed=8, sizes={"train": 0, "dev": 0, "test": 300}, formats=new)
    write_splits(tmp_path / "test_old", seed=9, sizes={"train": 0, "dev": 0, "test": 300}, formats=old)

    def config(run: str, data: str, *overrides: str):
        cfg = tiny_dates_config(tmp_path, run, num_threads=2, valid_every=100, patience=3, max_steps=1500)
        sets = [f"data.train={tmp_path / data}/train", f"data.dev={tmp_path / data}/dev", *overrides]
        sets += ["model.emb_size=32", "model.enc_hidden_size=64", "model.dec_hidden_size=64", "model.attention_size=64"]
        return config_from_dict(config_to_dict(cfg), sets)

    parent = Path(nmt.train(config("parent", "old")))
    child = Path(nmt.train(config("child", "mixed", f"training.init_from={parent}", "training.max_steps=400")))
    before = exact_match(parent, tmp_path / "test_new"), exact_match(parent, tmp_path / "test_old")
    after = exact_match(child, tmp_path / "test_new"), exact_match(child, tmp_path / "test_old")
    print(f"exact match, new formats {before[0]:.3f} -> {after[0]:.3f}; old formats {before[1]:.3f} -> {after[1]:.3f}")
    assert before[0] < 0.1 and before[1] > 0.95
    assert after[0] > 0.6 and after[1] > 0.95


def test_tokenizer_files_other_than_the_parents_are_refused_without_remap(parent, tmp_path, nmt_cli, one_line_error):
    other = tmp_path / "other.model"
    other.write_bytes(load_checkpoint(parent / "checkpoints" / "best.pt")["tokenizers"]["tgt"])  # a real model
    cfg = child_config(parent, tmp_path, "child", f"tokenizer.src_model={other}", f"tokenizer.tgt_model={other}")
    (tmp_path / "child.yaml").write_text(json.dumps(config_to_dict(cfg)))
    message = one_line_error(nmt_cli("train", tmp_path / "child.yaml"), "config error", 2)
    assert message.startswith(f"tokenizer.src_model: {other} is not a sentencepiece model of the parent ")
