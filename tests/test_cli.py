"""The `nmt` command end to end, as a user runs it: a tiny dates run, then translate/evaluate/bleu,
and the one-line errors (`nmt: <kind>: <message>`, exit 2 for config errors, 1 otherwise).

Training happens once per module (about a minute on a laptop CPU); every call is a subprocess
with its own NMT_STATE_DIR in tmp.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
from conftest import train_args

from nmt.config import load_config
from nmt.data.corpus import read_lines

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NBEST = re.compile(r"^(\d+) \|\|\| (.*) \|\|\| (-?\d+\.\d{4})$")


@pytest.fixture
def run_nmt(trained, nmt_cli):
    """nmt_cli with the trained run as the latest run."""
    _, _, state, _ = trained

    def run(*args, **kw):
        kw.setdefault("state_dir", state)
        return nmt_cli(*args, **kw)

    return run


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in read_lines(run_dir / "metrics.jsonl")]


# --- the training run ---------------------------------------------------------------------------


def test_train_succeeds_without_traceback(trained):
    _, _, _, result = trained
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    assert "nmt: " not in result.stderr  # no error line
    assert result.stdout == ""  # the log goes to stderr


def test_run_dir_contents(trained):
    run_dir, data, _, _ = trained
    for name in (
        "config.yaml",
        "spm.src.model",
        "spm.tgt.model",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "metrics.jsonl",
        "train.log",
        "test.hyp",
    ):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "spm.model").exists()  # dates.yaml has joint: false
    cfg = load_config(run_dir / "config.yaml")
    assert cfg.run_dir == str(run_dir)
    assert cfg.data.train == f"{data}/train"
    assert cfg.training.max_steps == 300 and cfg.model.emb_size == 32
    assert cfg.name == "dates"
    assert len(read_lines(run_dir / "test.hyp")) == len(read_lines(data / "test.src")) == 100


def test_metrics_show_learning(trained):
    run_dir, _, _, _ = trained
    recs = records(run_dir)
    kinds = {r["kind"] for r in recs}
    assert {"train", "valid", "test"} <= kinds
    train = [r for r in recs if r["kind"] == "train"]
    valid = [r for r in recs if r["kind"] == "valid"]
    test = [r for r in recs if r["kind"] == "test"]
    assert [r["step"] for r in train] == list(range(25, 301, 25))
    assert [r["step"] for r in valid] == [100, 200, 300]
    assert len(test) == 1
    assert train[-1]["loss"] < 0.5 * train[0]["loss"], (train[0]["loss"], train[-1]["loss"])
    assert valid[-1]["dev_loss"] < valid[0]["dev_loss"]
    assert valid[-1]["dev_accuracy"] > 0.5, valid[-1]
    assert max(r["dev_accuracy"] for r in valid) > 0.5
    assert test[0]["accuracy"] > 0.4 and test[0]["bleu"] > 50, test[0]


def test_test_hyp_is_the_test_translation(trained):
    run_dir, data, _, _ = trained
    hyps = read_lines(run_dir / "test.hyp")
    refs = read_lines(data / "test.tgt")
    assert sum(h == r for h, r in zip(hyps, refs)) > 40
    assert sum(bool(ISO.match(h)) for h in hyps) > 90


def test_latest_run_is_remembered(trained):
    run_dir, _, state, _ = trained
    assert (state / "latest_run").read_text().strip() == str(run_dir.resolve())


# --- translate --------------------------------------------------------------------------------------

LINES = ["3 May 1979", "", "   ", "Tuesday, March 12 1991", "12.03.1991", "\t", "2001-2-3"]


def test_translate_stdin_uses_the_latest_run(run_nmt):
    result = run_nmt("translate", input="".join(line + "\n" for line in LINES))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout.split("\n")
    assert out[-1] == ""  # ends with a newline
    out = out[:-1]
    assert len(out) == len(LINES)
    for src, hyp in zip(LINES, out):
        if src.strip():
            assert ISO.match(hyp), (src, hyp)
        else:
            assert hyp == "", (src, hyp)
    correct = ["1979-05-03", "", "", "1991-03-12", "1991-03-12", "", "2001-02-03"]
    assert sum(h == c for h, c in zip(out, correct) if c) >= 2, out


@pytest.mark.slow
def test_translate_in_bf16_agrees_with_fp32_and_fp16_is_refused_on_the_cpu(trained, run_nmt, one_line_error):
    """decoding.precision: the search's model under bf16 autocast gives (nearly) the fp32
    translations, one line per input; fp16 is for GPUs."""
    _, data, _, _ = trained
    lines = read_lines(data / "test.src")
    out = {
        p: run_nmt("translate", "--precision", p, "--beam", "3", input="".join(x + "\n" for x in lines))
        for p in ("fp32", "bf16")
    }
    assert all(r.returncode == 0 for r in out.values()), out["bf16"].stderr
    fp32, bf16 = (out[p].stdout.splitlines() for p in ("fp32", "bf16"))
    assert len(bf16) == len(fp32) == len(lines)
    assert sum(a == b for a, b in zip(fp32, bf16)) >= 0.9 * len(lines)
    message = one_line_error(
        run_nmt("translate", "--device", "cpu", "--precision", "fp16", input="3 May 1979\n"), "config error", 2
    )
    assert message == "--precision: fp16 is for GPUs; on the CPU use bf16 (or fp32)"


def test_translate_line_endings_and_counts(run_nmt):
    """No final newline, CRLF, only empty lines: always one output line per input line."""
    for text, n in [("3 May 1979\r\n\r\n \r\n4 June 2001", 4), ("", 0)]:
        result = run_nmt("translate", "--beam", "1", input=text)
        assert result.returncode == 0, result.stderr
        out = result.stdout.splitlines()
        assert len(out) == n, (text, result.stdout)
        assert "\r" not in result.stdout


def test_translate_a_line_far_longer_than_training_gives_one_line_and_a_note(run_nmt, tmp_path):
    """A file mixing CRLF, blank lines, control characters and a line of 780 characters (far past
    the longest training source), with no final newline: one output line each, in order."""
    text = "3 May 1979\r\n\n" + "12 June 2001 " * 60 + "\n\x07 4 july 1990\x1b\n   \n5.6.2007"
    (tmp_path / "in.txt").write_bytes(text.encode("utf-8"))
    result = run_nmt("translate", "--beam", "2", "-i", tmp_path / "in.txt", "-o", tmp_path / "out.txt")
    assert result.returncode == 0, result.stderr
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")
    assert len(out) == 7 and out[-1] == ""  # 6 lines, each ended by a newline
    assert out[0] == "1979-05-03" and out[1] == "" and out[2] and out[4] == "" and out[5] == "2007-06-05"
    notes = [line for line in result.stderr.splitlines() if line.startswith("nmt: note: input line")]
    assert len(notes) == 1 and notes[0].startswith("nmt: note: input line 3 has ")
    assert "Traceback" not in result.stderr


def test_translate_files_and_explicit_model(trained, run_nmt, tmp_path):
    run_dir, _, _, _ = trained
    src = tmp_path / "in.txt"
    src.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    out = tmp_path / "out.txt"
    result = run_nmt("translate", "-m", run_dir, "-i", src, "-o", out, state_dir=tmp_path / "empty-state")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    hyps = read_lines(out)
    assert len(hyps) == len(LINES)
    assert [h == "" for h in hyps] == [not line.strip() for line in LINES]
    # the same as stdin -> stdout with the latest run, and as the best checkpoint given as a file
    piped = run_nmt("translate", input=src.read_text())
    assert piped.stdout.splitlines() == hyps
    ckpt = run_nmt("translate", "-m", run_dir / "checkpoints" / "best.pt", "-i", src)
    assert ckpt.stdout.splitlines() == hyps
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_translate_n_best(run_nmt):
    lines = ["3 May 1979", "Tuesday, March 12 1991", "12.03.1991"]
    result = run_nmt("translate", "--n-best", "2", "--beam", "3", input="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == 2 * len(lines), out
    parsed = [NBEST.match(line) for line in out]
    assert all(parsed), out
    assert [int(m.group(1)) for m in parsed] == [0, 0, 1, 1, 2, 2]
    for i in range(len(lines)):
        (a, b) = parsed[2 * i], parsed[2 * i + 1]
        assert float(a.group(3)) >= float(b.group(3))  # best first
        assert a.group(2) != b.group(2)  # two different hypotheses
        assert float(a.group(3)) <= 0
    # the 1-best of the n-best list is the plain translation with the same beam
    plain = run_nmt("translate", "--beam", "3", input="\n".join(lines) + "\n").stdout.splitlines()
    assert plain == [parsed[2 * i].group(2) for i in range(len(lines))]


def test_translate_n_best_empty_lines_still_k_lines(run_nmt):
    result = run_nmt("translate", "--n-best", "2", "--beam", "3", input="3 May 1979\n\n   \n")
    assert result.returncode == 0, result.stderr
    indices = [int(NBEST.match(line).group(1)) for line in result.stdout.splitlines()]
    assert indices == [0, 0, 1, 1, 2, 2]


def test_translate_n_best_larger_than_beam_is_a_config_error(run_nmt, one_line_error):
    message = one_line_error(
        run_nmt("translate", "--n-best", "4", "--beam", "2", input="3 May 1979\n"), "config error", 2
    )
    assert "n_best" in message


@pytest.mark.parametrize("option,value", [("--beam", "0"), ("--n-best", "0"), ("--alpha", "-1")])
def test_translate_bad_numeric_option(run_nmt, option, value):
    result = run_nmt("translate", option, value, input="3 May 1979\n")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and option in result.stderr
    assert result.stdout == ""


def test_translate_output_into_missing_directory(run_nmt, tmp_path, one_line_error):
    out = tmp_path / "no" / "such" / "dir" / "out.txt"
    message = one_line_error(run_nmt("translate", "-o", out, input="3 May 1979\n"), "data error", 1)
    assert str(out) in message


def test_translate_output_file_permissions_follow_the_umask(run_nmt, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    out.chmod(0o644)
    result = run_nmt("translate", "-o", out, input="3 May 1979\n")
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o644


# --- evaluate and bleu --------------------------------------------------------------------------------


def test_evaluate_run_dir(trained, run_nmt):
    run_dir, data, _, _ = trained
    hyp = run_dir / "test.hyp"
    written_by_train = hyp.read_text()
    hyp.unlink()
    result = run_nmt("evaluate", run_dir)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    bleu = re.search(r"^BLEU = (\d+\.\d+) ", result.stdout, re.M)
    assert bleu, result.stdout
    assert re.search(r"^chrF = \d+\.\d+", result.stdout, re.M)
    assert str(hyp) in result.stdout
    hyps = read_lines(hyp)
    refs = read_lines(data / "test.tgt")
    assert len(hyps) == len(refs)
    assert float(bleu.group(1)) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=0.006)
    assert float(bleu.group(1)) > 50
    assert hyp.read_text() == written_by_train  # the same decoding defaults as the score after training


def test_evaluate_dev_split_to_a_file(trained, run_nmt, tmp_path):
    run_dir, data, _, _ = trained
    out = tmp_path / "dev.hyp"
    result = run_nmt("evaluate", run_dir, "--split", "dev", "--beam", "1", "-o", out)
    assert result.returncode == 0, result.stderr
    assert len(read_lines(out)) == len(read_lines(data / "dev.src"))
    assert "BLEU = " in result.stdout


def test_evaluate_output_into_missing_directory(trained, run_nmt, tmp_path, one_line_error):
    run_dir, _, _, _ = trained
    out = tmp_path / "no" / "dir" / "x.hyp"
    message = one_line_error(run_nmt("evaluate", run_dir, "-o", out), "data error", 1)
    assert str(out) in message


def test_evaluate_set_applies_to_the_search_and_is_checked(trained, run_nmt, tmp_path, one_line_error):
    """--set on a run directory: decoding keys change the search (--beam/--alpha still on top),
    unknown keys and bad values are errors, as they are with a config."""
    run_dir, _, _, _ = trained
    out = tmp_path / "dev.hyp"
    sets = ("--set", "decoding.beam_size=1", "--set", "decoding.alpha=0")
    result = run_nmt("evaluate", run_dir, "--split", "dev", *sets, "-o", out)
    assert result.returncode == 0 and ", beam 1, alpha 0)" in result.stdout, result.stdout + result.stderr
    greedy = run_nmt("translate", "-m", run_dir, "--beam", "1", "--alpha", "0", "-i", f"{trained[1]}/dev.src")
    assert out.read_text() == greedy.stdout
    result = run_nmt("evaluate", run_dir, "--split", "dev", *sets, "--beam", "2", "-o", out)
    assert ", beam 2, alpha 0)" in result.stdout, result.stdout + result.stderr
    for bad, expected in (("no.such.key=1", "no: unknown key"), ("decoding.beam_size=0", "decoding.beam_size: ")):
        message = one_line_error(run_nmt("evaluate", run_dir, "--set", bad, "-o", out), "config error", 2)
        assert message.startswith(expected), message


def test_help_usage_errors_and_bleu_do_not_import_torch(tmp_path):
    """Commands that need no model answer without loading PyTorch (two seconds of every start)."""
    (tmp_path / "hyp.txt").write_text("a cat sat\n")
    code = (
        "import sys, contextlib, io\n"
        "from nmt.cli import main\n"
        f"assert main(['bleu', {str(tmp_path / 'hyp.txt')!r}, {str(tmp_path / 'hyp.txt')!r}]) == 0\n"
        "with contextlib.redirect_stderr(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['translate', '--beam', '0'])\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "[]", result.stdout + result.stderr


def test_bleu_matches_sacrebleu_cli(trained, run_nmt):
    run_dir, data, _, _ = trained
    hyp, ref = run_dir / "test.hyp", data / "test.tgt"
    ours = run_nmt("bleu", hyp, ref)
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run(
        [sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp), "-f", "text"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout.splitlines()[0] == theirs.stdout.splitlines()[0]


# --- run directories ---------------------------------------------------------------------------------


def test_train_refuses_an_existing_run_unless_overwrite(trained, nmt_cli, tmp_path, one_line_error):
    run_dir, data, _, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = (copy / "checkpoints" / "best.pt").read_bytes()
    args = train_args(copy, data, "training.max_steps=20", "training.valid_every=10", "data.test=''")
    result = nmt_cli(*args)
    message = one_line_error(result, "config error", 2)
    assert message.startswith("run_dir: ") and str(copy) in message and "--overwrite" in message
    assert (copy / "checkpoints" / "best.pt").read_bytes() == before  # untouched

    result = nmt_cli(*args, "--overwrite")
    assert result.returncode == 0, result.stderr
    recs = records(copy)
    assert [r["step"] for r in recs if r["kind"] == "valid"] == [10, 20]  # only the new run's records
    assert not any(r["kind"] == "test" for r in recs)
    assert not (copy / "test.hyp").exists()  # the old run's test output is gone
    assert (copy / "checkpoints" / "best.pt").read_bytes() != before
    assert load_config(copy / "config.yaml").training.max_steps == 20


@pytest.mark.parametrize(
    "test_files,expected",
    [
        ({}, "no such file"),  # no test split at that prefix
        ({"src": b"1 May 1990\n\xe9t\xe9\n", "tgt": b"1990-05-01\nx\n"}, "line 2: invalid UTF-8"),
        ({"src": b"1 May 1990\n2 May 1990\n", "tgt": b"1990-05-01\n"}, "2 lines"),
    ],
)
def test_overwrite_with_a_bad_test_split_deletes_nothing(
    trained, nmt_cli, tmp_path, one_line_error, test_files, expected
):
    """The test split is read only after training; --overwrite checks it before the old run goes."""
    run_dir, data, _, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = {path: path.read_bytes() for path in copy.rglob("*") if path.is_file() and path.name != "train.lock"}
    for side, content in test_files.items():
        (tmp_path / f"broken.{side}").write_bytes(content)
    result = nmt_cli(*train_args(copy, data, f"data.test={tmp_path}/broken", "training.max_steps=20"), "--overwrite")
    assert expected in one_line_error(result, "data error", 1)
    assert {path: path.read_bytes() for path in before} == before  # nothing deleted, replaced or trained


# --- data errors ---------------------------------------------------------------------------------------


def test_train_missing_training_file(nmt_cli, tmp_path, one_line_error):
    prefix = tmp_path / "nope" / "train"
    result = nmt_cli(
        *train_args(tmp_path / "run", tmp_path / "nope", "data.generate=null", "data.dev=''", "data.test=''")
    )
    message = one_line_error(result, "data error", 1, only_line=False)
    assert str(prefix) + ".src" in message, message


def test_train_mismatched_line_counts(nmt_cli, tmp_path, one_line_error):
    data = tmp_path / "d"
    data.mkdir()
    (data / "train.src").write_text("a\nb\nc\n")
    (data / "train.tgt").write_text("a\nb\n")
    result = nmt_cli(*train_args(tmp_path / "run", data, "data.generate=null", "data.dev=''", "data.test=''"))
    message = one_line_error(result, "data error", 1, only_line=False)
    assert f"{data}/train.src" in message and f"{data}/train.tgt" in message, message
    assert "3" in message and "2" in message


def test_failed_run_does_not_block_the_next_try(nmt_cli, tmp_path, one_line_error):
    args = train_args(tmp_path / "run", tmp_path / "nope", "data.generate=null", "data.dev=''", "data.test=''")
    one_line_error(nmt_cli(*args), "data error", 1, only_line=False)
    one_line_error(nmt_cli(*args), "data error", 1, only_line=False)  # the same error again


def test_translate_missing_input_file(run_nmt, tmp_path, one_line_error):
    missing = tmp_path / "missing.txt"
    message = one_line_error(run_nmt("translate", "-i", missing), "data error", 1)
    assert str(missing) in message


def test_translate_invalid_utf8_on_stdin(run_nmt, one_line_error):
    result = run_nmt("translate", input=b"3 May 1979\n4 June 2001\nbad \xff byte\n")
    message = one_line_error(result, "data error", 1)
    assert message.startswith("<stdin>: line 3: "), message
    assert "UTF-8" in message
    assert result.stdout == b""


def test_translate_invalid_utf8_in_input_file(run_nmt, tmp_path, one_line_error):
    src = tmp_path / "in.txt"
    src.write_bytes(b"ok\n\xc3\n")
    message = one_line_error(run_nmt("translate", "-i", src), "data error", 1)
    assert message.startswith(f"{src}: line 2: "), message


# --- checkpoint errors ---------------------------------------------------------------------------------


def test_translate_nonexistent_model(nmt_cli, one_line_error):
    message = one_line_error(nmt_cli("translate", "-m", "/nonexistent", input="3 May 1979\n"), "checkpoint error", 1)
    assert "/nonexistent" in message


def test_translate_without_any_trained_run(nmt_cli, one_line_error):
    """A fresh NMT_STATE_DIR: no latest run to fall back on."""
    message = one_line_error(nmt_cli("translate", input="3 May 1979\n"), "checkpoint error", 1)
    assert "-m" in message


def test_translate_run_dir_without_checkpoints(nmt_cli, tmp_path, one_line_error):
    message = one_line_error(nmt_cli("translate", "-m", tmp_path, input="x\n"), "checkpoint error", 1)
    assert str(tmp_path) in message


def test_corrupt_checkpoints(trained, nmt_cli, tmp_path, one_line_error):
    run_dir, _, _, _ = trained
    good = (run_dir / "checkpoints" / "best.pt").read_bytes()
    rng = random.Random(1234)
    cases = {
        "random.pt": bytes(rng.randrange(256) for _ in range(4096)),
        "truncated.pt": good[: len(good) // 2],
        "empty.pt": b"",
        "zeros.pt": bytes(1000),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        message = one_line_error(nmt_cli("translate", "-m", path, input="3 May 1979\n"), "checkpoint error", 1)
        assert str(path) in message, (name, message)
    # a run directory whose best checkpoint is corrupt
    broken = tmp_path / "broken-run"
    shutil.copytree(run_dir, broken)
    (broken / "checkpoints" / "best.pt").write_bytes(cases["random.pt"])
    message = one_line_error(nmt_cli("translate", "-m", broken, input="3 May 1979\n"), "checkpoint error", 1)
    assert str(broken / "checkpoints" / "best.pt") in message


def test_corrupt_checkpoint_pickle_opcodes(nmt_cli, tmp_path, one_line_error):
    cases = [
        b"this is not a checkpoint\n",  # 't': pop_mark on an empty stack -> IndexError
        b"R",  # REDUCE on an empty stack -> IndexError
        b"h\x05",  # BINGET of a memo entry that does not exist -> KeyError
        bytes(random.Random(15).randrange(256) for _ in range(1977)),
    ]
    for i, data in enumerate(cases):
        path = tmp_path / f"bad{i}.pt"
        path.write_bytes(data)
        message = one_line_error(nmt_cli("translate", "-m", path, input="x\n"), "checkpoint error", 1)
        assert str(path) in message


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["translate", "--sample", "--temperature", "inf"],
            "--temperature: expected a number from 0.001 to 1000, got inf",
        ),
        (
            ["translate", "--sample", "--temperature", "nan"],
            "--temperature: expected a number from 0.001 to 1000, got nan",
        ),
        (["translate", "--temperature", "0.5"], "--temperature: an option of sampling; add --sample"),
        (["translate", "--top-k", "3"], "--top-k: an option of sampling; add --sample"),
        (["translate", "--seed", "3"], "--seed: an option of sampling; add --sample"),
        (["translate", "--sample", "--beam", "5"], "--beam: an option of beam search; --sample draws instead"),
        (["translate", "--sample", "--trace"], "--trace: shows beam search's steps; not with --sample"),
        (["translate", "--sample", "--prefix", "p.txt"], "--prefix: an option of search; not with --sample"),
        (["translate", "--prefix", ""], "--prefix: expected a file name, got ''"),
        (["translate", "--alpha", "1e308"], "argument --alpha: expected a number in [0, 10], got 1e+308"),
        (["score", "--alpha", "inf"], "argument --alpha: expected a number in [0, 10], got inf"),
        (
            ["tune", "--split", "dev", "--alpha", "0,1e308"],
            "argument --alpha: expected a number in [0, 10], got 1e+308",
        ),
        (["analyze", "--split", "dev", "--beam", "1,5000"], "--beam: expected an integer from 1 to 1,000, got 5000"),
        (["analyze", "--split", "dev", "--src", "a", "--ref", "b"], "--split dev and --src: one or the other"),
        (["translate", "-i", ""], "--input: expected a file name, got ''"),
        (["translate", "-o", ""], "--output: expected a file name, got ''"),
    ],
)
def test_option_values_and_combinations_are_checked_before_the_model_is_loaded(nmt_cli, tmp_path, args, message):
    """No model at -m: the options are checked first, so the error is theirs (exit 2, one line)."""
    result = nmt_cli(args[0], "-m", tmp_path / "no-such-run", *args[1:], input="")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith(message), result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["-w", "-1"], "argument -w/--width: expected an integer from 0 to 20, got -1"),
        (
            ["--compare", "{hyp}", "--paired-bs-n", "99999999999"],
            "expected an integer from 1 to 10000, got 99999999999",
        ),
        (
            ["--compare", "{hyp}", "--paired-ar-n", "0"],
            "argument --paired-ar-n: expected an integer from 1 to 100000, got 0",
        ),
    ],
)
def test_bleu_option_values_are_bounded(nmt_cli, tmp_path, args, message):
    hyp = tmp_path / "h.txt"
    hyp.write_text("a b\n")
    result = nmt_cli("bleu", hyp, hyp, *[a.format(hyp=hyp) for a in args])
    assert result.returncode == 2 and result.stderr.splitlines()[-1].endswith(message), result.stderr


def test_a_closed_stdin_is_a_one_line_error(trained, one_line_error):
    """`nmt translate <&-`: Python starts with sys.stdin None."""
    run_dir, _, state, _ = trained
    for command in ("translate", "score"):
        line = f"{shlex.quote(sys.executable)} -m nmt {command} -m {shlex.quote(str(run_dir))} <&-"
        result = subprocess.run(
            ["bash", "-c", line], env={**os.environ, "NMT_STATE_DIR": str(state)}, capture_output=True, text=True
        )
        message = one_line_error(result, "data error", 1)
        assert message == "no standard input (it is closed): give the input file with -i", message


def test_an_empty_training_file_is_named(nmt_cli, tmp_path, one_line_error):
    for side in ("src", "tgt"):
        (tmp_path / f"train.{side}").write_text("\n  \n")
    sets = ("data.generate=null", "data.dev=''", "data.test=''")
    result = nmt_cli(*train_args(tmp_path / "run", tmp_path, *sets))
    message = one_line_error(result, "data error", 1, only_line=False)
    assert message == f"{tmp_path / 'train.src'}: no non-empty line to train sentencepiece on"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_never_prints_a_traceback_for_usage_errors(nmt_cli):
    for args in (["frobnicate"], ["translate", "--beam", "x"], []):
        result = nmt_cli(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr
