"""The documentation cannot lie: the generated references are what the code generates
(scripts/gen_docs.py), every `nmt ...` command line of README.md and docs/ parses with the real
parser, every Python example runs, every test the docs cite exists, the README stays short and
undated, and (where mkdocs is installed) the site builds with --strict.

Which blocks are read: fenced blocks of README.md and docs/**/*.md. ```bash, ```sh, ```shell and
```console blocks are command lines (only the lines after `$ ` when a block has any; `\\`
continues a line; `|`, `&&`, `||` and `;` separate commands); ```python blocks run, page by page,
the blocks of a page in order in one namespace. ```py and ```text blocks are shown, not run.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import SMALL_MODEL

from nmt.cli.checks import bad_combination
from nmt.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "python scripts/gen_docs.py"
SHELL = {"bash", "sh", "shell", "console", "zsh"}
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")", "|&"}
REDIRECTIONS = {">", ">>", "<", ">&", "&>", "<&", ">|", "<<", "<<<", "&>>"}


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


class Block(NamedTuple):
    lang: str
    line: int  # of the block's first line of code, 1-based
    lines: list[str]


def fenced_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text (``` or ~~~, indented ones in lists too)."""
    blocks, fence, lines = [], None, []
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None:
            m = re.match(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)", line)
            if m:
                fence, indent, lang, start, lines = m[2], len(m[1]), m[3].lower(), number + 1, []
        elif re.fullmatch(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
            blocks.append(Block(lang, start, lines))
            fence = None
        else:
            lines.append(line.lstrip() if line[:indent].strip() else line[indent:])
    return blocks


def _without_comment(line: str) -> str:
    """A shell line without its `# comment` (a # outside quotes, at the start of a word)."""
    quote, escaped = None, False
    for i, c in enumerate(line):
        if escaped:
            escaped = False
        elif c == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def shell_lines(block: Block) -> list[tuple[int, str]]:
    """(line number, command line) of a shell block: continuations joined, comments and prompts
    taken off, output lines (in a block with `$ ` prompts) and here-documents left out."""
    prompts = any(line.lstrip().startswith("$ ") for line in block.lines)
    out, pending, heredoc = [], None, None
    for number, line in enumerate(block.lines, block.line):
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if pending is not None:
            start, text = pending
            text += " " + line.strip().removeprefix("> ")
        elif prompts and not line.lstrip().startswith("$ "):
            continue
        else:
            start, text = number, line.lstrip().removeprefix("$ ") if prompts else line
        text = _without_comment(text)
        if text.rstrip().endswith("\\"):
            pending = (start, text.rstrip()[:-1])
            continue
        pending = None
        if m := re.search(r"<<-?\s*['\"]?(\w+)", text):
            heredoc = m[1]
        if text.strip():
            out.append((start, text.strip()))
    return out


def nmt_argvs(command_line: str) -> list[list[str]]:
    """The arguments of every `nmt` (or `python -m nmt`, `torchrun ... -m nmt`) command in a line."""
    text = re.sub(r"(?<=\s)\d+(?=[<>])", "", command_line)  # 2>&1 -> >&1
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    commands, words, skip = [], [], False
    for token in lexer:
        if skip:
            skip = False
        elif token in SEPARATORS:
            commands.append(words)
            words = []
        elif token in REDIRECTIONS:
            skip = True
        else:
            words.append(token)
    argvs = []
    for command in [*commands, words]:
        while command and (re.match(r"^[A-Za-z_]\w*=", command[0]) or command[0] in ("time", "env", "nohup", "exec")):
            command = command[1:]
        if command[:1] == ["nmt"]:
            argvs.append(command[1:])
        elif "-m" in command[:-1] and command[command.index("-m") + 1] == "nmt":
            argvs.append(command[command.index("-m") + 2 :])
    return argvs


def parse_problem(argv: list[str]) -> str | None:
    """What the real parser says against `nmt ARGV` (and its checks of combinations), or None."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit as e:
        return None if e.code == 0 else (errors.getvalue().strip().splitlines() or ["exit " + str(e.code)])[-1]
    return bad_combination(args)


def test_the_command_line_reader_finds_every_nmt_command():
    block = Block(
        "bash",
        10,
        [
            'echo "3 May 1979" | nmt translate --beam 3 2>&1 > out.txt   # the run\'s answer',
            "nmt train configs/dates.yaml --set training.max_steps=60 \\",
            "    --set training.lr=3e-4 && nmt evaluate runs/dates --split dev",
            "NMT_STATE_DIR=/tmp/s python -m nmt bleu hyp.txt ref.txt; ls",
            "torchrun --standalone --nproc_per_node 2 -m nmt train runs/x --resume",
            "cat <<EOF",
            "nmt this is text, not a command",
            "EOF",
        ],
    )
    found = [(n, argv) for n, line in shell_lines(block) for argv in nmt_argvs(line)]
    assert found == [
        (10, ["translate", "--beam", "3"]),
        (11, ["train", "configs/dates.yaml", "--set", "training.max_steps=60", "--set", "training.lr=3e-4"]),
        (11, ["evaluate", "runs/dates", "--split", "dev"]),
        (13, ["bleu", "hyp.txt", "ref.txt"]),
        (14, ["train", "runs/x", "--resume"]),
    ]
    console = Block("console", 1, ["$ nmt translate --bem 3", "nmt translate --invented"])
    assert [parse_problem(argv) for _, line in shell_lines(console) for argv in nmt_argvs(line)] == [
        "nmt: error: unrecognized arguments: --bem 3"
    ]


def test_every_nmt_command_in_the_docs_parses():
    problems, count = [], 0
    for page in pages():
        for block in fenced_blocks(page.read_text(encoding="utf-8")):
            if block.lang not in SHELL:
                continue
            for number, line in shell_lines(block):
                try:
                    argvs = nmt_argvs(line)
                except ValueError as e:  # shlex: an unclosed quote
                    problems.append(f"{where(page, number)}: {line}\n    cannot read it: {e}")
                    continue
                for argv in argvs:
                    count += 1
                    if problem := parse_problem(argv):
                        problems.append(f"{where(page, number)}: {line}\n    {problem}")
    assert count, "no `nmt` command found in README.md and docs/: is the reader broken?"
    assert not problems, "commands the parser refuses:\n" + "\n".join(problems)


# --- the generated references ------------------------------------------------------------------


def gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_references_are_what_the_code_generates():
    gen = gen_docs()
    stale = gen.stale(gen.pages())
    assert not stale, f"{', '.join(stale)}: not what the code generates; run `{REGENERATE}`"


def test_a_default_computed_from_the_machine_must_be_put_in_words(monkeypatch):
    import nmt.cli.parser as parser_module

    real = parser_module.build_parser

    def build():
        parser = real()
        sub = next(a for a in parser._actions if a.choices and "plot" in a.choices)
        sub.choices["plot"].add_argument("--jobs", type=int, default=os.cpu_count())
        return parser

    with monkeypatch.context() as patch, pytest.raises(SystemExit, match="plot --jobs"):
        patch.setattr(parser_module, "build_parser", build)
        gen_docs().machine_neutral_commands()
    text = gen_docs().cli_page()  # --workers: in words, whatever this machine's count
    assert "--workers WORKERS`: decoding workers" in text and gen_docs().MACHINE_DEFAULTS["serve --workers"] in text


def test_every_option_has_help_that_gives_its_default():
    gen = gen_docs()
    missing = []
    for name, _, parser, words in gen.machine_neutral_commands():
        for action in gen._options(parser):
            term = f"nmt {name} {(action.option_strings or [action.dest])[-1]}"
            if not action.help:
                missing.append(f"{term}: no help")
            elif gen._default(action, words) and "default" not in action.help and action.dest not in words:
                missing.append(f"{term}: its help does not say its default ({action.default!r})")
    assert not missing, "\n".join(missing)


# --- the Python examples --------------------------------------------------------------------


def python_pages() -> list[Path]:
    return [p for p in pages() if any(b.lang == "python" for b in fenced_blocks(p.read_text(encoding="utf-8")))]


@pytest.fixture(scope="module")
def docs_workdir(tmp_path_factory) -> Path:
    """A working directory as the docs assume one: configs/dates.yaml, the dates data (made by
    nmt itself, data.generate) and a short dates run in runs/dates."""
    base = tmp_path_factory.mktemp("docs-work")
    (base / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "dates.yaml", base / "configs")
    sets = [*SMALL_MODEL, "training.max_steps=60", "training.valid_every=30", "training.num_threads=1"]
    sets += ["training.max_minutes=0", "training.patience=0"]
    env = {**os.environ, "NMT_STATE_DIR": str(base / "state"), "MPLBACKEND": "Agg"}
    argv = [sys.executable, "-m", "nmt", "train", "configs/dates.yaml", *(x for s in sets for x in ("--set", s))]
    result = subprocess.run(argv, cwd=base, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"training the docs' dates run failed:\n{result.stderr[-3000:]}")
    return base


@pytest.mark.parametrize("page", python_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_python_examples_run(page, docs_workdir, tmp_path, monkeypatch):
    from nmt.rundir.defaults import remember_run

    work = tmp_path / "work"
    shutil.copytree(docs_workdir, work, symlinks=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    remember_run(work / "runs" / "dates")  # the latest run, in this test's NMT_STATE_DIR
    namespace = {"__name__": "__docs__"}
    for block in fenced_blocks(page.read_text(encoding="utf-8")):
        if block.lang != "python":
            continue
        source = "\n".join(block.lines)
        try:
            exec(compile(source, where(page, block.line), "exec"), namespace)
        except Exception:
            pytest.fail(f"the example at {where(page, block.line)} fails:\n{traceback.format_exc(limit=-3)}")


# --- what the pages say -----------------------------------------------------------------------

CITED_TEST = re.compile(r"tests/(test_\w+\.py)::(\w+)(?:::(\w+))?")


def test_every_test_the_docs_cite_exists():
    missing, cited = [], 0
    for page in pages():
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for m in CITED_TEST.finditer(line):
                cited += 1
                file = ROOT / "tests" / m[1]
                text = file.read_text(encoding="utf-8") if file.is_file() else ""
                names = [m[2]] if m[3] is None else [m[2], m[3]]
                kinds = ["def"] if m[3] is None else ["class", "def"]
                if not all(re.search(rf"^\s*(async )?{k} {n}\b", text, re.M) for k, n in zip(kinds, names)):
                    missing.append(f"{where(page, number)}: {m[0]}")
    assert not missing, "cited tests that do not exist:\n" + "\n".join(missing)
    guarantees = ROOT / "docs" / "guarantees.md"
    if guarantees.is_file():
        assert CITED_TEST.search(guarantees.read_text(encoding="utf-8")), "docs/guarantees.md cites no test"


def measurement_dates(line: str) -> list[str]:
    """The ISO dates of a line that can date a measurement: from 2020 up to today, and not the
    dates task's own (a line that also gives the date in words, `3 May 2021 -> 2021-05-03`)."""
    found = []
    for m in re.finditer(r"(?<![\d-])(20\d\d)-[01]\d-[0-3]\d(?![\d-])", line):
        in_words = re.search(rf"(?<![\d-]){m[1]}(?![\d-])", line[: m.start()] + line[m.end() :])
        if 2020 <= int(m[1]) <= datetime.date.today().year and not in_words:
            found.append(m[0])
    return found


def test_the_readme_is_short_and_undated():
    assert measurement_dates("measured 2024-03-14 on a laptop") == ["2024-03-14"]
    assert measurement_dates("echo 3 May 2021 | nmt translate  # 2021-05-03") == []
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; at most 200 (the rest belongs in docs/)"
    dated = [f"README.md:{n}: {line.strip()}" for n, line in enumerate(lines, 1) if measurement_dates(line)]
    assert not dated, "dated lines (a measurement goes to docs/ with its commit and machine):\n" + "\n".join(dated)


def test_the_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip('mkdocs is not installed (pip install -e ".[docs]"); .ci/run builds the site itself')
    assert (ROOT / "mkdocs.yml").is_file(), "mkdocs.yml is missing"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mkdocs build --strict:\n{result.stderr[-4000:]}"
