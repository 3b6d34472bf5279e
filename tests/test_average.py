"""`nmt average`: the element-wise mean of step checkpoints, an ordinary checkpoint; incompatible ones refused."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from conftest import tiny_dates_config
from tiny_runs import LINES, shared_run

import nmt
from nmt.cli import main
from nmt.config import Config
from nmt.errors import CheckpointError, DataError
from nmt.rundir.average import average, choose_steps
from nmt.rundir.checkpoint import load_checkpoint, save_checkpoint, step_files
from nmt.translate import Translator


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return shared_run(tmp_path_factory)


def test_last_n_is_the_mean_of_the_newest_step_files(run, tmp_path, capsys):
    out = tmp_path / "avg.pt"
    assert main(["average", str(run), "--last", "3", "-o", str(out)]) == 0
    assert "averaged 3 checkpoint(s) (steps 20, 30, 40)" in capsys.readouterr().out
    files = step_files(run / "checkpoints")
    states = [load_checkpoint(files[s])["model"] for s in (20, 30, 40)]
    averaged = torch.load(out, map_location="cpu", weights_only=True)  # an ordinary, safe checkpoint
    assert set(averaged) == {"format", "config", "tokenizers", "model", "averaged"}  # no optimizer: not resumable
    for key, value in averaged["model"].items():
        expected = (states[0][key] + states[1][key] + states[2][key]) / 3
        assert torch.allclose(value, expected, atol=1e-6), key
    assert averaged["config"] == load_checkpoint(files[40])["config"]
    assert len(Translator.load(out).translate(LINES, beam=2)) == len(LINES)


def test_best_n_follows_the_recorded_dev_scores(run):
    files = step_files(run / "checkpoints")
    scores = load_checkpoint(files[max(files)])["progress"]["scores"]
    kept = [s for s in files if str(s) in scores]
    best = sorted(sorted(kept, key=lambda s: -scores[str(s)])[:2])
    assert choose_steps(run, best=2) == [files[s] for s in best]
    assert choose_steps(run, last=2) == [files[s] for s in sorted(files)[-2:]]


def test_evaluate_takes_the_average(run, tmp_path, capsys):
    out, hyp = tmp_path / "avg.pt", tmp_path / "dev.hyp"
    average(choose_steps(run, last=2), out)
    assert main(["evaluate", str(run), "-m", str(out), "--split", "dev", "-o", str(hyp), "--beam", "2"]) == 0
    assert "BLEU = " in capsys.readouterr().out and len(hyp.read_text().splitlines()) == 20


def _altered_copy(source: Path, target: Path, change) -> Path:
    state = load_checkpoint(source)
    change(state)
    state.pop("format")
    save_checkpoint(state, target)
    return target


@pytest.mark.parametrize(
    "change, differs",
    [
        (lambda s: s["config"]["model"].update(rnn_type="gru"), "model.rnn_type differs"),
        (lambda s: s["config"].update(seed=99), "seed differs"),
        (lambda s: s["tokenizers"].update(tgt=b"x"), "its tgt sentencepiece model differs"),
        (lambda s: s["model"].pop(next(iter(s["model"]))), "weight "),
    ],
)
def test_incompatible_checkpoints_are_one_line_errors_and_write_nothing(run, tmp_path, change, differs):
    first = step_files(run / "checkpoints")[40]
    other = _altered_copy(first, tmp_path / "other.pt", change)
    out = tmp_path / "avg.pt"
    with pytest.raises(CheckpointError, match=f"{other}: cannot average with {first}: {differs}"):
        average([first, other], out)
    assert not out.exists()


def test_too_few_step_files_and_trainings_own_names(run, tmp_path, nmt_cli, one_line_error):
    result = nmt_cli("average", run, "--last", "5", "-o", tmp_path / "avg.pt")
    message = one_line_error(result, "checkpoint error", 1)
    assert f"{len(step_files(run / 'checkpoints'))} step checkpoint(s), fewer than the 5 to average" in message
    assert "--set training.keep_last=5" in message
    assert not (tmp_path / "avg.pt").exists()
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(DataError, match="one of training's own checkpoints"):
        average(choose_steps(copy, last=2), copy / "checkpoints" / "last.pt")
    assert (copy / "checkpoints" / "last.pt").read_bytes() == before
    # however the path is written: relative from inside the folder, or through a link to it
    (tmp_path / "link").symlink_to(copy / "checkpoints")
    for cwd, output in (
        (copy / "checkpoints", "best.pt"),
        (copy / "checkpoints", "./last.pt"),
        (tmp_path, "link/last.pt"),
    ):
        result = nmt_cli("average", copy, "--last", "1", "-o", output, cwd=cwd)
        assert "one of training's own checkpoints" in one_line_error(result, "data error", 1)
    assert (copy / "checkpoints" / "last.pt").read_bytes() == before


def test_a_run_directory_needs_last_or_best(run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["average", str(run), "-o", str(tmp_path / "avg.pt")])
    assert exit_.value.code == 2 and "give --last N or --best N" in capsys.readouterr().err
    for option in ("--last", "--best"):
        with pytest.raises(SystemExit) as exit_:
            main(["average", str(run), option, "0", "-o", str(tmp_path / "avg.pt")])
        assert exit_.value.code == 2 and f"{option}: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_int8_storage_is_a_quarter_of_the_size_and_loads_as_fp32(run, tmp_path, capsys):
    fp32, int8 = tmp_path / "fp32.pt", tmp_path / "int8.pt"
    average(choose_steps(run, last=2), fp32)
    assert main(["average", str(run), "--last", "2", "--int8", "-o", str(int8)]) == 0
    assert "(weight matrices in int8)" in capsys.readouterr().out
    with warnings.catch_warnings():  # torch's notes on quantized tensors
        warnings.simplefilter("ignore")
        stored = torch.load(int8, map_location="cpu", weights_only=True)["model"]
    matrices = [k for k, v in stored.items() if v.dim() >= 2]
    assert matrices and all(stored[k].dtype == torch.qint8 for k in matrices)
    assert all(not v.is_quantized and v.dtype == torch.float32 for k, v in stored.items() if v.dim() < 2)
    weights = load_checkpoint(fp32)["model"]
    for key, value in load_checkpoint(int8)["model"].items():  # dequantized on load
        assert value.dtype == torch.float32
        row_max = weights[key].abs().amax(dim=-1, keepdim=True) if value.dim() >= 2 else 0
        assert torch.all((value - weights[key]).abs() <= row_max / 127 / 2 + 1e-7), key
    fp32_bytes = sum(weights[k].numel() * 4 for k in matrices)
    int8_bytes = sum(weights[k].numel() + 16 * weights[k].size(0) for k in matrices)  # + a scale, a zero per row
    saved = fp32.stat().st_size - int8.stat().st_size
    # the zip's headers and 64-byte alignment of two more records (scales, zero points) per matrix
    assert saved > fp32_bytes - int8_bytes - 600 * len(matrices)
    assert len(Translator.load(int8).translate(LINES)) == len(LINES)


def test_a_run_trained_with_the_default_keep_settings_can_be_averaged(tmp_path, nmt_cli):
    """training.keep_last's default keeps the newest step files: `nmt average RUN --last 2` works
    on a run whose config says nothing of checkpoints."""
    cfg = tiny_dates_config(tmp_path, "run", max_steps=30, valid_every=10, batch_size=300)
    assert cfg.training.keep_last == Config().training.keep_last >= 2
    run = nmt.train(cfg)
    assert sorted(step_files(run / "checkpoints")) == [10, 20, 30]
    result = nmt_cli("average", run, "--last", "2", "-o", tmp_path / "avg.pt")
    assert result.returncode == 0 and "steps 20, 30" in result.stdout, result.stderr
