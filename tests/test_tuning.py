"""nmt.evaluation.tuning and the run's stored decoding defaults (`nmt tune --write`), and the choice of
evaluation data (nmt.evaluation.inputs.eval_data)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sacrebleu
import yaml
from word_models import png_size, save_run, tiny_translator

from nmt.config import DataConfig
from nmt.errors import DataError
from nmt.evaluation import tuning
from nmt.evaluation.inputs import NO_DATA, NO_SPLIT_TO_EVALUATE, eval_data
from nmt.rundir.defaults import remember_run, write_decoding_defaults
from nmt.rundir.layout import checkpoint_path
from nmt.translate import Translator

# --- tuning and stored decoding defaults ------------------------------------------------------


def test_tune_table_best_and_stored_defaults(tmp_path):
    tr = tiny_translator(5, alpha=1.0)
    sources = ["a b", "c", "d e a", "b b c"]
    refs = tr.translate(sources, beam=3, alpha=0.0)
    results = tuning.tune(tr, sources, refs, beams=[1, 3], alphas=[0.0, 1.0])
    assert [(r.beam_size, r.alpha) for r in results] == [(1, 0.0), (1, 1.0), (3, 0.0), (3, 1.0)]
    assert results[0].bleu == results[1].bleu  # greedy ignores alpha
    assert tuning.best(results).bleu == max(r.bleu for r in results)
    assert "<- best" in tuning.table(results)

    run = save_run(tr, tmp_path / "run")
    assert Translator.load(run).cfg.decoding.beam_size == 5  # the checkpoint's default
    write_decoding_defaults(run, 3, 0.25)
    loaded = Translator.load(run)
    assert (loaded.cfg.decoding.beam_size, loaded.cfg.decoding.alpha) == (3, 0.25)


@pytest.mark.slow
def test_cli_tune_write_then_translate_uses_it(tmp_path, nmt_cli):
    tr = tiny_translator(6)
    run = save_run(tr, tmp_path / "run")
    sources = ["a b", "c", "d e a", "b b c", "e a"]
    refs = tr.translate(sources, beam=2, alpha=0.5)
    (tmp_path / "src.txt").write_text("\n".join(sources) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n")
    result = nmt_cli(
        "tune",
        "-m",
        run,
        "--src",
        tmp_path / "src.txt",
        "--ref",
        tmp_path / "ref.txt",
        "--beam",
        "1,2",
        "--alpha",
        "0,0.5",
        "--write",
    )
    assert result.returncode == 0, result.stderr
    assert "stored in" in result.stdout and png_size(run / "tune.png") == (600, 400)
    stored = (run / "decoding.yaml").read_text()
    chosen = yaml.safe_load(stored)
    assert set(chosen) == {"beam_size", "alpha"}
    default = nmt_cli("translate", "-m", run, "-i", tmp_path / "src.txt")
    explicit = nmt_cli(
        "translate",
        "-m",
        run,
        "-i",
        tmp_path / "src.txt",
        "--beam",
        str(chosen["beam_size"]),
        "--alpha",
        str(chosen["alpha"]),
    )
    assert default.returncode == 0 and default.stdout == explicit.stdout
    override = nmt_cli("translate", "-m", run, "-i", tmp_path / "src.txt", "--beam", "1")
    assert override.stdout == "\n".join(tr.translate(sources, beam=1)) + "\n"


def test_tune_target_checkpoint_run_dir_and_plot_path(tmp_path, monkeypatch):
    run = save_run(tiny_translator(0), tmp_path / "run")
    target = tuning.TuneTarget.find(run)
    assert (target.checkpoint, target.run_dir) == (checkpoint_path(run, "best"), run)
    assert target.plot_path() == run / "tune.png" and target.plot_path("x.png") == "x.png"
    monkeypatch.setenv("NMT_STATE_DIR", str(tmp_path / "state"))
    remember_run(run)
    assert tuning.TuneTarget.find(None, write=True) == target  # the latest run
    choice = tuning.TuneResult(3, 0.5, 10.0, 1.0, 1.0)
    assert target.store(choice) == run / "decoding.yaml"
    assert yaml.safe_load((run / "decoding.yaml").read_text()) == {"beam_size": 3, "alpha": 0.5}

    loose = tmp_path / "loose.pt"
    loose.write_bytes(checkpoint_path(run, "best").read_bytes())
    outside = tuning.TuneTarget.find(loose)
    assert outside.run_dir is None and outside.plot_path() == tmp_path / "tune.png"
    with pytest.raises(DataError, match="--write: .*loose.pt is not inside a run directory"):
        tuning.TuneTarget.find(loose, write=True)
    with pytest.raises(DataError, match="not inside a run directory"):
        outside.store(choice)


def test_eval_data_files_or_split(tmp_path):
    (tmp_path / "s.txt").write_text("a b\nc\n")
    (tmp_path / "r.txt").write_text("b\nc\n")
    (tmp_path / "short.txt").write_text("b\n")
    data = DataConfig(src_lang="de", tgt_lang="en", dev=str(tmp_path / "dev"))
    src, ref = str(tmp_path / "s.txt"), str(tmp_path / "r.txt")
    assert eval_data(data, "dev", src, ref) == (["a b", "c"], ["b", "c"], src)
    for one in ({"src": src}, {"ref": ref}):
        with pytest.raises(DataError, match="^--src and --ref go together: give both files$"):
            eval_data(data, "dev", **one)
    with pytest.raises(DataError, match="s.txt has 2 lines but .*short.txt has 1: expected aligned files"):
        eval_data(data, "dev", src, str(tmp_path / "short.txt"))

    (tmp_path / "dev.de").write_text("x\n")
    (tmp_path / "dev.en").write_text("y\n")
    assert eval_data(data, "dev") == (["x"], ["y"], str(tmp_path / "dev"))
    with pytest.raises(DataError, match="^data.test: the run's config names no test split; pass --src and --ref$"):
        eval_data(data, "test")
    with pytest.raises(DataError, match="^no data named: pass --split dev|test .* or --src FILE --ref FILE$"):
        eval_data(data, None)  # the run's split is read only when it is asked for
    assert NO_DATA.startswith("no data named")
    with pytest.raises(DataError, match="^data.test: this config names no test split to evaluate$"):
        eval_data(data, "test", missing=NO_SPLIT_TO_EVALUATE)
    # the prefixes from one config (nmt evaluate CONFIG), the languages from the run's
    other = DataConfig(src_lang="xx", tgt_lang="yy", test=str(tmp_path / "dev"))
    assert eval_data(data, "test", splits=other) == (["x"], ["y"], str(tmp_path / "dev"))


def test_bad_stored_defaults_are_a_one_line_error(tmp_path, nmt_cli, one_line_error):
    run = save_run(tiny_translator(0), tmp_path / "run")
    (run / "decoding.yaml").write_text("alpha: -3\n")
    result = nmt_cli("translate", "-m", run, input="a b\n")
    message = one_line_error(result, "config error", 2)
    assert "decoding.yaml" in message and "decoding.alpha" in message


# --- drawing never loses the result; a checkpoint's paths are read only when named ----------


def test_tune_plot_that_is_not_a_png_is_refused_before_anything_is_loaded(tmp_path, nmt_cli, one_line_error):
    """No model at -m: the option is checked first, so the error is the option's."""
    result = nmt_cli("tune", "-m", tmp_path / "nothing", "--split", "dev", "--plot", tmp_path / "x.txt")
    message = one_line_error(result, "config error", 2)
    assert message == f"--plot: expected a file name ending in .png, got '{tmp_path / 'x.txt'}'"
    assert nmt_cli("tune", "-m", tmp_path / "nothing", "--split", "dev", "--plot", "x.txt", "--no-plot").returncode == 1


def test_tune_plot_that_cannot_be_written_is_refused_before_anything_is_loaded(tmp_path, nmt_cli, one_line_error):
    (tmp_path / "d.png").mkdir()
    (tmp_path / "afile").write_text("x")
    for plot, expected in (
        (tmp_path / "d.png", "is a folder"),
        (tmp_path / "afile" / "x.png", "is a file, not a folder"),
    ):
        result = nmt_cli("tune", "-m", tmp_path / "nothing", "--split", "dev", "--plot", plot)
        assert expected in one_line_error(result, "data error", 1)


def test_empty_input_files_are_named(tmp_path, nmt_cli, one_line_error):
    run = save_run(tiny_translator(6), tmp_path / "run")
    empty = tmp_path / "e.txt"
    empty.write_text("")
    for command in ("tune", "analyze"):
        result = nmt_cli(command, "-m", run, "--src", empty, "--ref", empty, "--beam", "1")
        assert one_line_error(result, "data error", 1) == f"{empty}: no lines to translate"


def test_tune_write_stores_the_choice_before_drawing(tmp_path):
    """Without matplotlib: the choice is stored, the table printed, one note; exit 0."""
    tr = tiny_translator(6)
    run = save_run(tr, tmp_path / "run")
    (tmp_path / "src.txt").write_text("a b\nc\n")
    (tmp_path / "ref.txt").write_text("\n".join(tr.translate(["a b", "c"], beam=2)) + "\n")
    args = ["tune", "-m", str(run), "--src", str(tmp_path / "src.txt"), "--ref", str(tmp_path / "ref.txt")]
    args += ["--beam", "1,2", "--alpha", "0,1", "--write"]
    code = f"import sys; sys.modules['matplotlib'] = None; from nmt.cli import main; sys.exit(main({args!r}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((run / "decoding.yaml").read_text()).keys() == {"beam_size", "alpha"}
    assert "stored in" in result.stdout and not (run / "tune.png").exists()
    assert result.stderr.splitlines() == [
        f"nmt: note: no plot {run / 'tune.png'}: drawing needs matplotlib: "
        "pip install 'nmt[plot]' (or pip install matplotlib)"
    ]


def test_tune_reads_the_runs_split_only_when_asked(tmp_path, nmt_cli, one_line_error):
    """The dev split a checkpoint's config names is read with --split dev, never by default."""
    tr = tiny_translator(2)
    (tmp_path / "dev.src").write_text("a b\nc\n")
    (tmp_path / "dev.tgt").write_text("b\nc\n")
    tr.cfg.data.dev = str(tmp_path / "dev")
    run = save_run(tr, tmp_path / "run")
    message = one_line_error(nmt_cli("tune", "-m", run, "--beam", "1", "--no-plot"), "data error", 1)
    assert message == NO_DATA
    result = nmt_cli("tune", "-m", run, "--beam", "1", "--alpha", "0", "--no-plot", "--split", "dev")
    assert result.returncode == 0 and result.stdout.startswith(f"{tmp_path / 'dev'}: 2 sentences"), result.stderr


def test_best_is_the_highest_bleu_then_the_smaller_beam_then_the_smaller_alpha():
    results = [
        tuning.TuneResult(1, 0.0, 20.0, 0.9, 100.0),
        tuning.TuneResult(3, 0.5, 25.0, 1.0, 50.0),
        tuning.TuneResult(5, 1.0, 22.0, 1.0, 30.0),
        tuning.TuneResult(5, 0.5, 25.0, 1.0, 30.0),
        tuning.TuneResult(3, 1.0, 25.0, 1.0, 50.0),
    ]
    best = tuning.best(results)
    assert (best.beam_size, best.alpha) == (3, 0.5)
    table = tuning.table(results).splitlines()
    assert table[2].endswith("<- best") and sum("<- best" in line for line in table) == 1


def test_tune_on_a_trained_run_finds_the_pair_with_the_highest_bleu(reversal_run, nmt_cli, tmp_path):
    """On a trained model whose pairs really differ, every BLEU in the table is sacrebleu's BLEU of
    that pair's translations, `best` is the highest, and `--write` stores that pair."""
    run, sources, references = reversal_run
    tr = Translator.load(run)
    beams, alphas = [1, 3, 5], [0.0, 1.0, 2.0]
    results = tuning.tune(tr, sources, references, beams=beams, alphas=alphas)
    assert len({round(r.bleu, 1) for r in results}) >= 3, tuning.table(results)  # the pairs differ
    for r in (max(results, key=lambda r: r.bleu), min(results, key=lambda r: r.bleu)):
        outputs = tr.translate(sources, beam=r.beam_size, alpha=r.alpha)
        assert r.bleu == pytest.approx(sacrebleu.corpus_bleu(outputs, [references]).score, abs=1e-9)
    top = max(r.bleu for r in results)
    winner = min((r for r in results if round(r.bleu, 2) == round(top, 2)), key=lambda r: (r.beam_size, r.alpha))
    assert (tuning.best(results).beam_size, tuning.best(results).alpha) == (winner.beam_size, winner.alpha)

    (tmp_path / "src.txt").write_text("\n".join(sources) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(references) + "\n")
    args = ["--src", tmp_path / "src.txt", "--ref", tmp_path / "ref.txt", "--beam", "1,3,5", "--alpha", "0,1,2"]
    result = nmt_cli("tune", "-m", run, *args, "--write", "--no-plot")
    assert result.returncode == 0, result.stderr
    (best_row,) = [line for line in result.stdout.splitlines() if "<- best" in line]
    assert best_row.split()[:3] == [str(winner.beam_size), f"{winner.alpha:g}", f"{winner.bleu:.2f}"]
    stored = Translator.load(run).cfg.decoding
    assert (stored.beam_size, stored.alpha) == (winner.beam_size, winner.alpha)
