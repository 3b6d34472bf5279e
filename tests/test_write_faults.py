"""Every write nmt makes, failed in turn (SQLite's I/O-error injection): a write or an fsync
that fails with EIO or ENOSPC ends the command with one line naming the file and the cause,
exit 1, leaves no temporary file and no file that looks complete but is not, and `--resume`
finishes the run once writes work again.

The injection wraps the files nmt opens through its two writers, nmt.files (atomic writes:
checkpoints, the corpus, sentencepiece models, config.yaml, outputs) and nmt.rundir.log
(train.log and metrics.jsonl, appended), and counts their writes and fsyncs; a dry run lists
them, and each kind of file is then failed at its first and its last write and fsync.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import types
from pathlib import Path

import pytest
import yaml
from conftest import fill, tiny_dates_config

import nmt.files
import nmt.rundir.log
from nmt.cli.main import main
from nmt.config import config_to_dict
from nmt.rundir.checkpoint import load_checkpoint

CAUSES = {errno.EIO: "Input/output error", errno.ENOSPC: "No space left on device"}


def kind_of(path: str) -> str:
    """A file's kind: its name without the temporary-file decoration and with digits as N."""
    name = Path(path).name
    name = re.sub(r"^\.(.+)\.\w+\.tmp$", r"\1", name)
    return re.sub(r"\d+", "N", name)


class WriteFaults:
    """Counts the writes and fsyncs of nmt's files and fails number `fail_at` with `error`."""

    def __init__(self, fail_at: int | None = None, error: int = errno.EIO):
        self.fail_at, self.error = fail_at, error
        self.sites: list[tuple[str, str]] = []  # (kind of file, "write" or "fsync"), in order
        self.failed: str | None = None  # the file the failed write was for (an atomic write's target)

    def count(self, path: str, what: str) -> None:
        kind = kind_of(path)
        if os.path.isdir(path):  # the folder's fsync that makes an atomic write's rename last
            kind = f"folder of {self.sites[-1][0]}"
        self.sites.append((kind, what))
        if len(self.sites) == self.fail_at:
            self.failed = re.sub(r"/\.([^/]+)\.\w+\.tmp$", r"/\1", path)
            raise OSError(self.error, os.strerror(self.error), path)

    def fsync(self, fd: int) -> None:
        self.count(os.readlink(f"/proc/self/fd/{fd}"), "fsync")
        os.fsync(fd)


class CountedFile:
    """A file object whose writes are counted (and may fail) by a WriteFaults."""

    def __init__(self, file, faults: WriteFaults):
        self._file, self._faults = file, faults
        self._path = os.readlink(f"/proc/self/fd/{file.fileno()}")

    def write(self, data):
        self._faults.count(self._path, "write")
        return self._file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def __getattr__(self, name):
        return getattr(self._file, name)


@pytest.fixture
def inject(monkeypatch):
    """inject(faults): nmt's writers count (and fail) through `faults` until the test ends."""

    def install(faults: WriteFaults) -> WriteFaults:
        counted_os = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
        counted_os.fdopen = lambda *a, **k: CountedFile(os.fdopen(*a, **k), faults)
        counted_os.fsync = faults.fsync
        monkeypatch.setattr(nmt.files, "os", counted_os)
        monkeypatch.setattr(nmt.rundir.log, "os", counted_os)
        monkeypatch.setattr(nmt.rundir.log, "open", lambda *a, **k: CountedFile(open(*a, **k), faults), raising=False)
        return faults

    return install


def write_config(tmp_path: Path) -> Path:
    cfg = tiny_dates_config(tmp_path, "run", batch_size=300, valid_every=3, max_steps=4, log_every=2)
    cfg.data.test = cfg.data.dev  # a test report: test.hyp written too
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    return path


def check_run_after(run: Path) -> None:
    """What a failed write may leave: no temporary file, and every checkpoint there loads."""
    leftovers = [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    for checkpoint in (run / "checkpoints").glob("*.pt") if (run / "checkpoints").is_dir() else ():
        load_checkpoint(checkpoint)


def injection_points(sites: list[tuple[str, str]]) -> dict[int, tuple[str, str]]:
    """The first and last write and fsync of each kind of file: {1-based count: site}."""
    points: dict[int, tuple[str, str]] = {}
    for site in dict.fromkeys(sites):
        numbers = [n for n, s in enumerate(sites, 1) if s == site]
        points[numbers[0]] = points[numbers[-1]] = site
    return points


@pytest.mark.slow  # (.ci/run runs it after the default suite): ~30 trainings, minutes
@pytest.mark.parametrize("error", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
def test_each_write_of_a_training_run_failed_in_turn_is_one_line_and_the_run_resumes(tmp_path, inject, capsys, error):
    config = write_config(tmp_path)
    dry = inject(WriteFaults())
    assert main(["train", str(config)]) == 0
    kinds = {kind for kind, _ in dry.sites}
    assert {"train.bin", "spm.src.model", "config.yaml", "train.log", "metrics.jsonl", "step-N.pt", "test.hyp"} <= kinds
    capsys.readouterr()
    for number, (kind, what) in injection_points(dry.sites).items():
        shutil.rmtree(tmp_path / "run")
        faults = inject(WriteFaults(number, error))
        code = main(["train", str(config)])
        err = capsys.readouterr().err.strip().splitlines()
        where = f"{kind} {what} (#{number})"
        if kind.endswith("learning_curves.png"):  # drawing the curves never fails a finished training
            assert code == 0 and any("learning curves not drawn" in line for line in err), where
            continue
        if kind.endswith("latest_run"):  # outside the run: only a convenience (`-m` still works)
            assert code == 0, where
            continue
        assert code == 1, (where, err[-3:])
        message = err[-1]
        assert message.startswith("nmt: ") and faults.failed in message and CAUSES[error] in message, (where, message)
        assert not any("Traceback" in line for line in err), where
        check_run_after(tmp_path / "run")
        inject(WriteFaults())  # writes work again: the same command with --resume finishes the run
        assert main(["train", str(config), "--resume"]) == 0, (where, capsys.readouterr().err[-2000:])
        assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["step"] == 4, where
        capsys.readouterr()


def test_each_write_of_nmt_prepare_failed_in_turn_is_one_line_and_prepare_resume_finishes(tmp_path, inject, capsys):
    """`nmt prepare` (the sentencepiece models, config.yaml, the binary corpus train.bin, the
    log): the first and last write and fsync of each file failed with EIO in turn: one line that
    names the file, exit 1, no temporary file; `nmt prepare CONFIG --resume` then readies the
    run, and its corpus is the one a prepare without faults writes."""
    config = write_config(tmp_path)
    dry = inject(WriteFaults())
    assert main(["prepare", str(config)]) == 0
    assert {"train.bin", "spm.src.model", "spm.tgt.model", "config.yaml"} <= {kind for kind, _ in dry.sites}
    expected = (tmp_path / "run" / "train.bin").read_bytes()
    capsys.readouterr()
    for number, (kind, what) in injection_points(dry.sites).items():
        shutil.rmtree(tmp_path / "run")
        faults = inject(WriteFaults(number, errno.EIO))
        code = main(["prepare", str(config)])
        err = capsys.readouterr().err.strip().splitlines()
        where = f"{kind} {what} (#{number})"
        if kind.endswith("latest_run"):  # outside the run: only a convenience
            assert code == 0, where
            continue
        assert code == 1 and err[-1].startswith("nmt: ") and faults.failed in err[-1], (where, err[-3:])
        assert CAUSES[errno.EIO] in err[-1] and not any("Traceback" in line for line in err), where
        check_run_after(tmp_path / "run")
        inject(WriteFaults())
        assert main(["prepare", str(config), "--resume"]) == 0, (where, capsys.readouterr().err[-2000:])
        assert (tmp_path / "run" / "train.bin").read_bytes() == expected, where
        capsys.readouterr()


@pytest.mark.parametrize(
    "error", [pytest.param(errno.EIO, marks=pytest.mark.slow), errno.ENOSPC], ids=["EIO", "ENOSPC"]
)
def test_a_failed_write_of_a_translation_or_an_average_keeps_the_old_file(tmp_path, inject, capsys, error):
    """Every write and fsync of the output failed in turn: one line, exit 1, the old file as it
    was; except when only the folder's fsync after the rename fails: the new file is then whole
    in place (not yet durable), and the command still says it failed."""
    config = write_config(tmp_path)
    assert main(["train", str(config)]) == 0
    run, sources = tmp_path / "run", tmp_path / "dates" / "dev.src"
    commands = {
        "translation": ["translate", "-m", str(run), "-i", str(sources), "-o"],
        "averaged model": ["average", str(run), "--last", "2", "-o"],
    }
    complete = {
        "translation": lambda path: len(path.read_text().splitlines()) == len(sources.read_text().splitlines()),
        "averaged model": lambda path: load_checkpoint(path)["model"] is not None,
    }
    for what, command in commands.items():
        out = tmp_path / f"{what}.out"
        out.write_bytes(b"the old file\n")
        dry = inject(WriteFaults())
        assert main([*command, str(out)]) == 0
        capsys.readouterr()
        for number in range(1, len(dry.sites) + 1):
            out.write_bytes(b"the old file\n")
            faults = inject(WriteFaults(number, error))
            assert main([*command, str(out)]) == 1, (what, number)
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and str(out) in err[0] and CAUSES[error] in err[0], (what, number, err)
            assert faults.failed is not None, (what, number)
            if faults.sites[-1][0].startswith("folder of"):  # renamed, only not yet durable: the new file, whole
                assert complete[what](out), (what, number)
            else:
                assert out.read_bytes() == b"the old file\n", (what, number)
            assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], (what, number)


# --- a real full file system ---------------------------------------------------------------------


@pytest.mark.slow  # (.ci/run runs it after the default suite)
def test_a_real_full_disk_fails_the_corpus_and_the_outputs_with_one_line_and_resume_finishes(
    tmp_path, tmpfs, inject, capsys
):
    """A tmpfs of a few MB, filled: a run's file that does not fit (the sentencepiece models, for
    this tiny corpus), a translation and an averaged model that do not fit: one line naming the
    file and "No space left on device", exit 1, nothing half-written; with the space back, the
    same `--resume` finishes the run."""
    disk = tmpfs(tmp_path / "disk", "size=8m")
    config = write_config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["run_dir"] = str(disk / "run")
    config.write_text(yaml.safe_dump(cfg))
    filler = fill(disk, leave=64 << 10)  # room for the small files, not for the sentencepiece models
    assert main(["train", str(config)]) == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    full = r"cannot write \(No space left on device\)"
    assert re.fullmatch(rf"nmt: checkpoint error: {disk / 'run'}/[\w.]+: {full}", message), message
    check_run_after(disk / "run")
    filler.unlink()
    assert main(["train", str(config), "--resume"]) == 0
    capsys.readouterr()
    filler = fill(disk, leave=4 << 10)
    for command in (
        ["translate", "-m", str(disk / "run"), "-i", str(tmp_path / "dates" / "dev.src")],
        ["average", str(disk / "run"), "--last", "2"],
    ):
        out = disk / "out"
        out.write_bytes(b"old\n")
        assert main([*command, "-o", str(out)]) == 1, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{out}: cannot write" in err[0] and "No space left on device" in err[0], err
        assert out.read_bytes() == b"old\n" and not [p for p in disk.iterdir() if p.name.endswith(".tmp")]
