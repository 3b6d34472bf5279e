"""Shared test set-up: a private NMT_STATE_DIR for every test, one torch thread, and a runner
for the `nmt` CLI.

The CLI remembers the latest trained run in `$NMT_STATE_DIR/latest_run`; no test may touch
the user's real state directory, so the variable always points into pytest's tmp space:
for the whole session (module- and session-scoped fixtures included) and, per test, to that
test's own tmp dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


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
