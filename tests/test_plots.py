"""nmt.plots: attention heatmaps, learning curves and the tuning plot (real PNG files), and the
one-line error when matplotlib is missing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from word_models import png_size, save_run, tiny_translator

from nmt.evaluation import tuning
from nmt.plots import attention_png, learning_curves_png, tune_png

# --- pictures ----------------------------------------------------------------------------------


def test_attention_png(tmp_path):
    tr = tiny_translator(7)
    t = tr.search(["a b c d e a b"], beam=2, attention=True)[0][0]
    S, T = len(t.src_pieces), len(t.tgt_pieces)
    assert t.attention.shape == (T, S)
    path = attention_png(t, tmp_path / "att.png", title="a b c")
    assert png_size(path) == (int(100 * max(4.0, 0.45 * S + 2.0)), int(100 * max(3.0, 0.4 * T + 1.5)))


def test_learning_curves_png(tmp_path):
    records = [{"kind": "train", "step": s, "loss": 5 - s / 100} for s in range(10, 300, 10)]
    records += [
        {"kind": "valid", "step": s, "dev_loss": 4 - s / 200, "dev_bleu": s / 10, "best": True} for s in (100, 200, 300)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert png_size(learning_curves_png(tmp_path)) == (1000, 400)
    assert (tmp_path / "learning_curves.png").is_file()


@pytest.mark.parametrize(
    "line,number",
    [
        ("[1, 2]", 1),  # JSON, not a record
        ('{"kind": "train", "step": 3}', 1),  # a train record without its loss
        ('{"kind": "valid", "step": 3, "dev_loss": 1.0, "dev_bleu": "high"}', 1),
    ],
)
def test_a_garbled_metrics_line_is_named(tmp_path, nmt_cli, one_line_error, line, number):
    good = json.dumps({"kind": "train", "step": 1, "loss": 2.0})
    (tmp_path / "metrics.jsonl").write_text(f"{line}\n{good}\n")
    message = one_line_error(nmt_cli("plot", tmp_path), "data error", 1)
    assert message == f"{tmp_path / 'metrics.jsonl'} line {number}: not a JSON record of a step"


def test_plot_output_that_cannot_be_a_file_is_refused_before_drawing(tmp_path, nmt_cli, one_line_error):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "loss": 2.0}) + "\n")
    (tmp_path / "afile").write_text("x")
    for output, expected in (
        (tmp_path, "is a folder"),
        (tmp_path / "afile" / "x.png", "is a file, not a folder"),
    ):
        assert expected in one_line_error(nmt_cli("plot", tmp_path, "-o", output), "data error", 1)
    assert not (tmp_path / "learning_curves.png").exists()


def test_tune_png(tmp_path):
    results = [tuning.TuneResult(b, a, 20 + b - a, 1.0, 10.0) for b in (1, 5) for a in (0.0, 0.5, 1.0)]
    assert png_size(tune_png(results, tmp_path / "t.png")) == (600, 400)


def test_cli_plot_attention_and_plot(tmp_path, nmt_cli):
    run = save_run(tiny_translator(8), tmp_path / "run")
    result = nmt_cli("translate", "-m", run, "--plot-attention", tmp_path / "pics", input="a b\n\nc d e\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 3  # one line per input line, the empty one included
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["00001.png", "00003.png"]
    png_size(tmp_path / "pics" / "00003.png")

    (run / "metrics.jsonl").write_text(
        json.dumps({"kind": "valid", "step": 1, "dev_loss": 2.0, "dev_bleu": 3.0}) + "\n"
    )
    result = nmt_cli("plot", run)
    assert result.returncode == 0 and png_size(run / "learning_curves.png") == (1000, 400)


def test_without_matplotlib_the_drawing_commands_say_how_to_get_it(tmp_path):
    run = save_run(tiny_translator(9), tmp_path / "run")
    (run / "metrics.jsonl").write_text(
        json.dumps({"kind": "valid", "step": 1, "dev_loss": 2.0, "dev_bleu": 3.0}) + "\n"
    )
    code = (
        "import sys; sys.modules['matplotlib'] = None; from nmt.cli import main; "
        f"sys.exit(main(['plot', {str(run)!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "nmt: missing dependency: drawing needs matplotlib: pip install 'nmt[plot]' (or pip install matplotlib)"
    ]


def test_plot_attention_into_a_file_is_refused_before_translating(tmp_path, nmt_cli, one_line_error):
    (tmp_path / "afile").write_text("x")
    afile = tmp_path / "afile"
    for folder, expected in ((afile, "is a file"), (afile / "pics", f"{afile} is a file")):
        result = nmt_cli("translate", "-m", tmp_path / "no-such-run", "--plot-attention", folder, input="a b\n")
        assert one_line_error(result, "data error", 1) == f"{folder}: {expected}; expected a folder"


def test_plot_attention_writes_the_translations_first(tmp_path):
    """Without matplotlib, --plot-attention still writes every translation; a note says why
    there are no pictures; exit 0."""
    run = save_run(tiny_translator(8), tmp_path / "run")
    (tmp_path / "in.txt").write_text("a b\n\nc d e\n")
    args = ["translate", "-m", str(run), "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.txt")]
    args += ["--plot-attention", str(tmp_path / "pics")]
    code = f"import sys; sys.modules['matplotlib'] = None; from nmt.cli import main; sys.exit(main({args!r}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text().count("\n") == 3
    assert result.stderr.splitlines() == [
        "nmt: note: no attention heatmaps: drawing needs matplotlib: "
        "pip install 'nmt[plot]' (or pip install matplotlib)"
    ]


def test_plot_attention_skips_a_figure_too_large_to_draw(tmp_path, nmt_cli):
    run = save_run(tiny_translator(8), tmp_path / "run")
    lines = "a b\n" + "a b c d e " * 60 + "\nc d\n"  # line 2: 300 source subwords
    result = nmt_cli("translate", "-m", run, "--beam", "1", "--plot-attention", tmp_path / "pics", input=lines)
    assert result.returncode == 0 and result.stdout.count("\n") == 3, result.stderr
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["00001.png", "00003.png"]
    notes = [line for line in result.stderr.splitlines() if "not drawn" in line]
    assert len(notes) == 1 and notes[0].startswith("nmt: note: 1 attention heatmap(s) not drawn (input line 2: 301 x ")
    assert notes[0].endswith(" subwords, too large to draw (at most 250 a side))"), notes
