"""Output and input under faults (issue 13), with real processes: what `-o` does to devices,
symbolic links, FIFOs, folders and a full disk; readers that go away (`| head`); configs and
checkpoints written by anyone (an alias bomb under a memory limit, absurd sizes, a sentencepiece
model whose pieces are line breaks). Every failure is one line on stderr, never a traceback, and
never a destroyed file."""

from __future__ import annotations

import functools
import itertools
import os
import resource
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, check_one_line_error
from word_models import save_run, tiny_translator, word_tokenizer

from nmt.config import Config, ModelConfig, config_to_dict
from nmt.errors import CheckpointError, DataError
from nmt.files import check_output, write_lines
from nmt.model import build_model
from nmt.rundir.checkpoint import save_checkpoint
from nmt.rundir.layout import checkpoint_path
from nmt.translate import Translator

LINES = "a b\nc d e\n\nb\n"  # 4 lines, one of them empty


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny word-level run (no training): checkpoints/best.pt; large decoding batches, so
    that thousands of lines translate in a few seconds."""
    tr = tiny_translator(3)
    tr.cfg.decoding.batch_size = 2000
    return save_run(tr, tmp_path_factory.mktemp("faults") / "run")


def nmt_process(
    *args, input: bytes = b"", limits: dict | None = None, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`python -m nmt ARGS` with resource limits set in the child (resource.setrlimit) and
    environment changes (None: remove the variable); bytes in and out."""
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value

    def set_limits() -> None:
        for which, value in (limits or {}).items():
            resource.setrlimit(which, (value, value))

    return subprocess.run(
        [sys.executable, "-m", "nmt", *map(str, args)],
        input=input,
        capture_output=True,
        cwd=REPO_ROOT,
        env=child_env,
        preexec_fn=set_limits,
        timeout=timeout,
    )


def translate_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr


def no_temporary_files(folder: Path) -> bool:
    return not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# --- -o: devices, links, FIFOs ------------------------------------------------------------------


def test_output_to_a_character_device_writes_the_device(run_dir, tmp_path):
    """As root, `-o /dev/null` used to rename a temporary file over the device. Here a copy of
    /dev/null made with mknod (the real one is never risked)."""
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with open(null, "wb") as f:  # a file system mounted nodev refuses to open devices
            f.write(b"x")
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make and open a character device here ({e})")
    translate_ok(nmt_process("translate", "-m", run_dir, "-o", null, input=LINES.encode()))
    assert stat.S_ISCHR(null.lstat().st_mode) and null.lstat().st_rdev == os.makedev(1, 3)
    assert no_temporary_files(tmp_path)


def test_output_through_a_symlink_writes_its_target_atomically(run_dir, tmp_path):
    (tmp_path / "real.txt").write_text("old\n")
    (tmp_path / "link.txt").symlink_to("real.txt")
    (tmp_path / "dangling.txt").symlink_to("sub/new.txt")
    (tmp_path / "sub").mkdir()
    for name in ("link.txt", "dangling.txt"):
        translate_ok(nmt_process("translate", "-m", run_dir, "-o", tmp_path / name, input=LINES.encode()))
    assert (tmp_path / "link.txt").is_symlink() and os.readlink(tmp_path / "link.txt") == "real.txt"
    assert (tmp_path / "dangling.txt").is_symlink()
    expected = "\n".join(tiny_translator(3).translate(LINES.splitlines())) + "\n"
    assert (tmp_path / "real.txt").read_text() == expected == (tmp_path / "sub" / "new.txt").read_text()
    assert no_temporary_files(tmp_path) and no_temporary_files(tmp_path / "sub")


def test_output_to_a_fifo_is_written_in_place(run_dir, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    translate_ok(nmt_process("translate", "-m", run_dir, "-o", fifo, input=LINES.encode(), timeout=60))
    reader.join(timeout=30)
    assert received and received[0].count(b"\n") == 4, received
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_output_on_a_full_device_is_one_line(run_dir, tmp_path):
    """/dev/full (through a link in tmp): every write fails with ENOSPC."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    (tmp_path / "full").symlink_to("/dev/full")
    result = nmt_process("translate", "-m", run_dir, "-o", tmp_path / "full", input=LINES.encode())
    message = check_one_line_error(result, "data error", 1)
    assert message.startswith(f"{tmp_path / 'full'}: cannot write (") and "space" in message, message
    assert (tmp_path / "full").is_symlink() and stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_output_file_on_a_full_disk_leaves_the_old_file_and_no_partial_one(run_dir, tmp_path):
    """A file size limit (RLIMIT_FSIZE) makes a write fail part way, as a full disk does."""
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    lines = ("a b c d\n" * 3000).encode()
    result = nmt_process(
        "translate", "-m", run_dir, "--beam", "1", "-o", out, input=lines, limits={resource.RLIMIT_FSIZE: 4096}
    )
    message = check_one_line_error(result, "data error", 1)
    assert message.startswith(f"{out}: cannot write ("), message
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


# --- -o: checked before any work ------------------------------------------------------------------


def unwritable_folder(folder: Path) -> None:
    """Make `folder` refuse new files: chmod for an ordinary user; root ignores modes, so
    there the immutable attribute (chattr +i), if this file system and container allow it."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("as root, and chattr +i is not permitted here: no folder root cannot write")


def writable_again(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


@pytest.mark.parametrize("case", ["folder/", "folder", "missing/out.txt", "file.txt/out.txt", "unwritable/out.txt"])
def test_unwritable_output_is_refused_before_the_model_is_loaded(tmp_path, nmt_cli, case):
    """The run directory holds no model: the output is checked first, so the error is the output's."""
    (tmp_path / "empty-run").mkdir()
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x\n")
    (tmp_path / "unwritable").mkdir()
    if case.startswith("unwritable"):
        unwritable_folder(tmp_path / "unwritable")
    out = f"{tmp_path}/{case}"
    try:
        for command in (["translate", "-m", tmp_path / "empty-run"], ["evaluate", tmp_path / "empty-run"]):
            result = nmt_cli(*command, "-o", out, input="a b\n")
            message = check_one_line_error(result, "data error", 1)
            assert message.startswith(f"{out}: "), message
    finally:
        writable_again(tmp_path / "unwritable")
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == []


# --- readers that go away -------------------------------------------------------------------------


def closed_early(args, close: str, lines: bytes, unbuffered: bool) -> tuple[int, bytes]:
    """Run nmt with stdout and stderr on pipes, close the read end of `close` ('stdout' or
    'stderr') before nmt writes; returns (exit status, what the other stream got)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not unbuffered:
        env.pop("PYTHONUNBUFFERED")
    p = subprocess.Popen(
        [sys.executable, "-m", "nmt", *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    getattr(p, close).close()
    other = p.stderr if close == "stdout" else p.stdout
    p.stdin.write(lines)
    p.stdin.close()
    got = other.read()
    return p.wait(timeout=120), got


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED"])
def test_stdout_closed_early_exits_0_quietly(run_dir, tmp_path, unbuffered):
    """`nmt translate | head`: a few lines and many lines; and a command that prints little
    (which Python would only flush at exit, and then exit 120 with 'Exception ignored')."""
    for lines in (b"a b\n" * 3, b"a b c\n" * 5000):
        status, err = closed_early(["translate", "-m", run_dir, "--beam", "1"], "stdout", lines, unbuffered)
        assert (status, err) == (0, b""), err
    (tmp_path / "h.txt").write_text("a b\n")
    status, err = closed_early(["bleu", tmp_path / "h.txt", tmp_path / "h.txt"], "stdout", b"", unbuffered)
    assert (status, err) == (0, b""), err


def test_stderr_closed_early_with_notes_to_say_exits_0(run_dir):
    """Lines longer than any training source give notes on stderr: its reader has gone."""
    long = ("a b c d e " * 30 + "\n").encode()
    for unbuffered in (False, True):
        status, out = closed_early(["translate", "-m", run_dir, "--beam", "1"], "stderr", long * 3, unbuffered)
        assert status == 0 and out.count(b"\n") == 3, out


def test_head_reads_one_line_of_many(run_dir):
    """A real `| head -1`: the reader takes one line and leaves while nmt still writes."""
    code = f"import sys; from nmt.cli import main; sys.exit(main(['translate', '-m', {str(run_dir)!r}, '--beam', '1']))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    threading.Thread(target=lambda: (p.stdin.write(b"a b c\n" * 20000), p.stdin.close()), daemon=True).start()
    first = p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=120) == 0 and first.strip() and err == b"", err


# --- configs and checkpoints from anyone -----------------------------------------------------------


def alias_bomb(levels: int = 9) -> str:
    """A 'billion laughs' YAML config: 10**levels strings from a few hundred bytes."""
    items = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "name: [" + ", ".join(items) + "]\n"


def nested_bomb(levels: int = 9) -> list:
    """The same as Python lists that share their elements (what a pickle's memo gives)."""
    value: list = ["lol"] * 10
    for _ in range(levels - 1):
        value = [value] * 10
    return value


@functools.cache
def memory_limit() -> dict:
    """2 GiB of address space, or what importing torch maps here plus 1 GiB where that is more (a
    CUDA build maps several GiB of libraries): torch loads and nmt runs; a billion laughs does not."""
    code = "import torch; print(next(l for l in open('/proc/self/status') if l.startswith('VmPeak')).split()[1])"
    kib = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    return {resource.RLIMIT_AS: max(2 * 2**30, kib * 1024 + 2**30)}


def test_alias_bomb_config_under_a_memory_limit_is_one_line(tmp_path):
    config = tmp_path / "bomb.yaml"
    config.write_text(alias_bomb() + f"run_dir: {tmp_path / 'run'}\n")
    assert len(config.read_bytes()) < 1024
    for command in (["train", config], ["evaluate", config]):
        result = nmt_process(*command, limits=memory_limit())
        message = check_one_line_error(result, "config error", 2)
        assert message.startswith(f"{config}: refused: more than "), message
    assert not (tmp_path / "run").exists()


def test_checkpoint_whose_config_is_a_bomb_is_one_line_under_a_memory_limit(tmp_path):
    """A checkpoint's config with shared lists: loading is small, a repr of it is not."""
    tr = tiny_translator(0)
    config = config_to_dict(tr.cfg)
    config["name"] = nested_bomb()
    path = tmp_path / "bomb.pt"
    save_checkpoint({"config": config, "tokenizers": {"src": tr.src_tok.model_proto, "tgt": None}, "model": {}}, path)
    assert path.stat().st_size < 10**6
    result = nmt_process("translate", "-m", path, input=b"a b\n", limits=memory_limit())
    message = check_one_line_error(result, "checkpoint error", 1)
    assert message.startswith(f"{path}: name: expected a string, got [[[") and len(message) < 250, message


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("model", "emb_size", 10**9),
        ("model", "enc_layers", 10**6),
        ("decoding", "beam_size", 10**7),
        ("decoding", "batch_size", 10**9),
        ("decoding", "max_length_ratio", 1e300),
        ("decoding", "max_length_offset", 10**12),
    ],
)
def test_checkpoint_with_absurd_sizes_is_refused_before_any_allocation(tmp_path, nmt_cli, section, key, value):
    tr = tiny_translator(0)
    config = config_to_dict(tr.cfg)
    config[section][key] = value
    path = tmp_path / "big.pt"
    state = {"config": config, "tokenizers": {"src": tr.src_tok.model_proto, "tgt": None}, "model": {}}
    save_checkpoint(state, path)
    message = check_one_line_error(nmt_cli("translate", "-m", path, input="a b\n", timeout=60), "checkpoint error", 1)
    assert message.startswith(f"{path}: {section}.{key}: expected "), message


# --- a sentencepiece model whose pieces are line breaks ---------------------------------------------

BREAKS = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def line_break_translator(favoured: list[str]) -> Translator:
    """A random model over a word sentencepiece model with one piece per line break (a real
    model: user_defined_symbols), pushed to output the `favoured` breaks."""
    lines = [" ".join(p) for p in itertools.permutations("abc")]
    tok = word_tokenizer(lines, vocab_size=30, hard_vocab_limit=False, user_defined_symbols=BREAKS)
    cfg = Config(model=ModelConfig(emb_size=8, enc_hidden_size=8, dec_hidden_size=8, attention_size=8, dropout=0.0))
    cfg.decoding.max_length_ratio, cfg.decoding.max_length_offset = 0.01, 4
    torch.manual_seed(0)
    model = build_model(cfg.model, len(tok), len(tok))
    ids = [tok.sp.piece_to_id(b) for b in favoured]
    assert tok.decode(ids) == "".join(favoured)  # the pieces really decode to the breaks
    with torch.no_grad():
        model.output.bias[ids] += 20.0
    return Translator(model, tok, tok, cfg, torch.device("cpu"))


def test_every_vertical_whitespace_a_model_outputs_becomes_a_space():
    for brk in BREAKS:
        tr = line_break_translator([brk])
        (best,) = tr.search(["a b"], beam=2, n_best=1)[0]
        assert brk in tr.tgt_tok.decode(best.ids)  # what the model said, unchanged
        assert best.text.strip() == "" and len(best.text) >= 1 and best.text.splitlines() == [best.text]


def test_translate_gives_one_line_per_input_line_whatever_the_pieces(tmp_path, nmt_cli):
    run = save_run(line_break_translator(["\n", "\r", "\u2028"]), tmp_path / "run")
    result = nmt_cli("translate", "-m", run, "--beam", "3", input=LINES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 4 and len(result.stdout.splitlines()) == 4, repr(result.stdout)
    result = nmt_cli("translate", "-m", run, "--beam", "3", "--n-best", "2", "-o", tmp_path / "nbest.txt", input=LINES)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "nbest.txt").read_text(encoding="utf-8")
    assert len(text.splitlines()) == 8 and [line.split(" ||| ")[0] for line in text.splitlines()] == list("00112233")


# --- nmt.files in process -----------------------------------------------------------------------


def test_check_output_and_write_lines(tmp_path):
    check_output(tmp_path / "new.txt")
    assert list(tmp_path.iterdir()) == []  # the check leaves nothing behind
    refused = [(tmp_path, "is a folder"), (tmp_path / "no" / "x", "no such folder"), (f"{tmp_path}/x/", "is a folder")]
    for bad, says in refused:
        with pytest.raises(DataError, match=f"^{bad}: {says}"):
            check_output(bad)
    os.mkfifo(tmp_path / "fifo")
    check_output(tmp_path / "fifo")  # never opened: that would wait for a reader
    write_lines(tmp_path / "a.txt", ["x", "y"])
    assert (tmp_path / "a.txt").read_text() == "x\ny\n"
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")
    write_lines(tmp_path / "link", ["z"])
    assert (tmp_path / "link").is_symlink() and (tmp_path / "a.txt").read_text() == "z\n"


def test_no_model_is_built_for_a_checkpoint_config_out_of_bounds(tmp_path):
    """The bounds are config checks: config_from_dict refuses before build_model allocates."""
    tr = tiny_translator(0)
    config = config_to_dict(tr.cfg)
    config["model"]["dec_hidden_size"] = 2**40
    save_checkpoint(
        {"config": config, "tokenizers": {"src": tr.src_tok.model_proto, "tgt": None}, "model": {}},
        checkpoint_path(tmp_path / "run", "best"),
    )
    with pytest.raises(CheckpointError, match=r"model\.dec_hidden_size: expected an integer from 1 to 8,192"):
        Translator.load(tmp_path / "run")
