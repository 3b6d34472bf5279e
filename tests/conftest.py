"""Shared test set-up: a private NMT_STATE_DIR for every test, one torch thread, and a runner
for the `nmt` CLI.

The CLI remembers the latest trained run in `$NMT_STATE_DIR/latest_run`; no test may touch
the user's real state directory, so the variable always points into pytest's tmp space:
for the whole session (module- and session-scoped fixtures included) and, per test, to that
test's own tmp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _register_hypothesis_profiles() -> None:
    """Property tests (tests/test_fuzz.py): "ci", the default, runs few examples in a fixed order
    (derandomized: a failure in CI reproduces); "long" runs many, for a nightly-style run:
    HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz.py."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # the test extra is not installed: test_fuzz.py skips itself
        return
    quiet = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
    common = {"deadline": None, "suppress_health_check": quiet, "database": None}  # no .hypothesis/ in the tree
    settings.register_profile("ci", max_examples=15, derandomize=True, **common)
    settings.register_profile("long", max_examples=1000, print_blob=True, **common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_register_hypothesis_profiles()


@pytest.fixture(autouse=True, scope="session")
def _session_state_dir(tmp_path_factory: pytest.TempPathFactory):
    """Before anything else runs: NMT_STATE_DIR in tmp for the whole session."""
    old = os.environ.get("NMT_STATE_DIR")
    os.environ["NMT_STATE_DIR"] = str(tmp_path_factory.mktemp("nmt-state-session"))
    yield
    if old is None:
        os.environ.pop("NMT_STATE_DIR", None)
    else:
        os.environ["NMT_STATE_DIR"] = old


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test: NMT_STATE_DIR in its own tmp dir (a test cannot see another's latest run)."""
    state = tmp_path / "nmt-state"
    monkeypatch.setenv("NMT_STATE_DIR", str(state))
    return state


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The models in tests are tiny: more intra-op threads only add synchronisation, and stall
    badly when the machine is busy. (Subprocesses choose their own threads.)"""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def nmt_cli() -> Callable[..., subprocess.CompletedProcess]:
    """Run `python -m nmt ARGS` in the repo root; returns the CompletedProcess (bytes or text).

    state_dir: NMT_STATE_DIR for the child (default: the current test's, read at call time).
    input: str or bytes for stdin (bytes gives bytes back).
    """

    def run(
        *args: str,
        input: str | bytes | None = None,
        state_dir: str | Path | None = None,
        timeout: float = 300,
        cwd: str | Path | None = None,
    ) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env["NMT_STATE_DIR"] = str(state_dir) if state_dir is not None else os.environ["NMT_STATE_DIR"]
        env.pop("PYTHONWARNINGS", None)
        text = not isinstance(input, bytes)
        return subprocess.run(
            [sys.executable, "-m", "nmt", *map(str, args)],
            input=input if input is not None else ("" if text else b""),
            capture_output=True,
            text=text,
            encoding="utf-8" if text else None,
            cwd=str(cwd or REPO_ROOT),
            env=env,
            timeout=timeout,
        )

    return run


def check_one_line_error(result: subprocess.CompletedProcess, kind: str, exit_code: int, only_line: bool = True) -> str:
    """Assert the user-facing error format; return the message after `nmt: KIND: `.

    only_line: stderr is exactly that one line (else: it is the last line, and the only
    `nmt:` line; earlier lines are allowed, e.g. `nmt train`'s log).
    """
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    assert result.returncode == exit_code, (result.returncode, stderr)
    lines = stderr.splitlines()
    assert lines, "nothing on stderr"
    if only_line:
        assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    prefix = f"nmt: {kind}: "
    assert lines[-1].startswith(prefix), stderr
    assert sum(line.startswith("nmt: ") for line in lines) == 1, stderr
    return lines[-1][len(prefix) :]


@pytest.fixture(scope="session")
def one_line_error() -> Callable[..., str]:
    """`one_line_error(result, "config error", 2)` -> the message (see check_one_line_error)."""
    return check_one_line_error


def tiny_dates_config(tmp_path: Path, run: str, dropout: float | None = None, **training):
    """The dates config shrunk for tests: 400 generated training pairs in tmp_path/dates, a
    16-unit model, run_dir tmp_path/RUN, no time limit or patience; `training` keys override."""
    import yaml

    from nmt.config import config_from_dict
    from nmt.data.dates import write_splits

    data = tmp_path / "dates"
    if not (data / "train.src").exists():
        write_splits(data, sizes={"train": 400, "dev": 20, "test": 20})
    raw = yaml.safe_load((REPO_ROOT / "configs" / "dates.yaml").read_text())
    raw["run_dir"] = str(tmp_path / run)
    raw["data"].update(train=str(data / "train"), dev=str(data / "dev"), test="", generate=None)
    raw["model"].update(emb_size=16, enc_hidden_size=16, dec_hidden_size=16, attention_size=16)
    if dropout is not None:
        raw["model"]["dropout"] = dropout
    raw["training"].update({"max_minutes": 0, "patience": 0, **training})
    return config_from_dict(raw)


# A smaller model than configs/dates.yaml's, so that the run takes about half a minute on a CPU
# (one thread: these tiny matrices gain nothing from more); 300 steps of it reach about 98% exact
# match on the dev set.
SMALL_MODEL = ["model.emb_size=32", "model.enc_hidden_size=64", "model.dec_hidden_size=64", "model.attention_size=64"]


def train_args(run_dir: Path, data: Path, *sets: str) -> list[str]:
    args = [
        "train",
        "configs/dates.yaml",
        "--set",
        f"run_dir={run_dir}",
        "--set",
        f"data.train={data}/train",
        "--set",
        f"data.dev={data}/dev",
        "--set",
        f"data.test={data}/test",
    ]
    for s in (*SMALL_MODEL, "training.max_minutes=0", "training.num_threads=1", *sets):
        args += ["--set", s]
    return args


@pytest.fixture(scope="session")
def dates_dir(tmp_path_factory) -> Path:
    from nmt.data.dates import write_splits

    data = tmp_path_factory.mktemp("dates")
    write_splits(data, sizes={"train": 3000, "dev": 100, "test": 100})
    return data


@pytest.fixture(scope="session")
def trained(tmp_path_factory, dates_dir, nmt_cli):
    """One tiny dates run, trained once per session (tests/test_cli.py, tests/test_serve.py): (run_dir,
    data_dir, state_dir, the train CompletedProcess); about 98% exact match on its dev set."""
    base = tmp_path_factory.mktemp("trained")
    run_dir, state = base / "run", base / "state"
    result = nmt_cli(
        *train_args(run_dir, dates_dir, "training.max_steps=300", "training.valid_every=100", "training.log_every=25"),
        state_dir=state,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"training failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return run_dir, dates_dir, state, result


@pytest.fixture(scope="session")
def reversal_run(tmp_path_factory):
    """(run dir, dev sources, dev references) of a tiny trained word-reversal model (tests/word_models.py)."""
    from word_models import train_reversal

    return train_reversal(tmp_path_factory.mktemp("reversal"))


def validations_as_evaluated(run: Path, nmt_cli, out: Path) -> list[dict]:
    """The validation records of a finished run's metrics.jsonl, each checked against `nmt
    evaluate RUN --split dev --beam 1` of its step's checkpoint (checkpoints/step-N.pt, kept
    by training.keep_last): the same BLEU, chrF and exact match (as evaluate prints them).
    Hypotheses go to out/dev-N.hyp."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["kind"] == "valid"]
    for record in valid:
        step = record["step"]
        checkpoint = run / "checkpoints" / f"step-{step:08d}.pt"
        result = nmt_cli(
            "evaluate", run, "--split", "dev", "--beam", "1", "-m", checkpoint, "-o", out / f"dev-{step}.hyp"
        )
        assert result.returncode == 0, result.stderr
        logged = [
            f"BLEU = {record['dev_bleu']:.2f}",
            f"chrF = {record['dev_chrf']:.2f}",
            f"exact match = {100 * record['dev_accuracy']:.2f}%",
        ]
        printed = [line.split("  ")[0] for line in result.stdout.splitlines()[1:4]]
        assert printed == logged, f"validation at step {step}: logged {logged}, evaluated {printed}"
    return valid


# --- a full disk: a small tmpfs, filled -------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """mount(path, *options): a small tmpfs at `path`, unmounted after the test; the test is
    skipped where mounting fails (not root, no mount(8), a container without the right)."""
    mounted = []

    def mount(path: Path, *options: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)], capture_output=True, text=True
            )
        except OSError as e:
            pytest.skip(f"cannot mount a tmpfs here ({e})")
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of `folder` but `leave` bytes (less than a checkpoint, more than the logs need)."""
    stats = os.statvfs(folder)
    size = stats.f_bavail * stats.f_frsize - leave
    filler = folder / "filler"
    with filler.open("wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(b"\0" * (1 << 20))
        f.write(b"\0" * (size % (1 << 20)))
    return filler
