"""Property-based fuzzing of everything nmt reads from anyone: configs and `--set` values, text
corpora (and `nmt bleu`), the JSON of `POST /translate`, and checkpoints. Each property is the
promise of docs/guarantees.md for that input: a result, or one line (an NmtError, an HTTP 4xx
with a reason), never a traceback, a 500 or code run from a file.

The number of examples comes from the hypothesis profile (tests/conftest.py): "ci" by default,
a few examples each in a fixed order; HYPOTHESIS_PROFILE=long for a nightly-style run. The
examples that found a defect are pinned with @example (or a plain test), so that they run in
every profile."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import os
import shutil
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
import yaml

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need the test extra: pip install -e '.[test]'")
from conftest import check_one_line_error  # noqa: E402
from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nmt.cli import main  # noqa: E402
from nmt.config import Config, config_from_dict, load_config  # noqa: E402
from nmt.config.parse import config_keys  # noqa: E402
from nmt.data.corpus import read_lines  # noqa: E402
from nmt.errors import CheckpointError, ConfigError, DataError, NmtError  # noqa: E402


def one_line(error: Exception) -> str:
    """The message of an nmt error, checked to be one line."""
    message = str(error)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    return message


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """`nmt ARGV` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def cli_error_line(code: int, stderr: str, kind: str, exit_code: int) -> str:
    """The message of a one-line `nmt: KIND: MESSAGE` error on stderr with status exit_code."""
    assert "Traceback" not in stderr, stderr
    assert code == exit_code, (code, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nmt: {kind}: "), stderr
    return lines[0][len(f"nmt: {kind}: ") :]


# --- configs: YAML documents and --set values --------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "1e-3", "nan", "inf", "-1", "0", "true", "null", "~", "unigram", "lstm", "tokens"])
)
#: any YAML value: scalars, lists and mappings of them
YAML_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)
#: the config's real key paths, sections included ("training", "training.lr", ...)
KEY_PATHS = [".".join(key.path) for key in config_keys()]


def nested(path: str, value) -> dict:
    """{"a": {"b": value}} for the path "a.b"."""
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


def merged(documents: list[dict]) -> dict:
    """One mapping with every document's keys (a later one wins where two disagree)."""
    out: dict = {}
    for document in documents:
        for key, value in document.items():
            if isinstance(out.get(key), dict) and isinstance(value, dict):
                out[key] = merged([out[key], value])
            else:
                out[key] = value
    return out


#: configs made of real keys with random values, and random mappings
CONFIG_DOCUMENTS = st.lists(st.builds(nested, st.sampled_from(KEY_PATHS), YAML_VALUES), max_size=6).map(merged) | (
    YAML_VALUES
)
#: `--set` items: a real or random key, '=', a value as YAML writes it or any text
OVERRIDES = st.builds(
    lambda key, value: f"{key}={value}",
    st.sampled_from(KEY_PATHS) | st.text(max_size=15),
    YAML_VALUES.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip())
    | st.text(max_size=20),
) | st.text(max_size=20)


def config_or_one_line(call) -> Config | None:
    """call() gives a Config or raises a one-line ConfigError; anything else fails the test."""
    try:
        cfg = call()
    except ConfigError as e:
        one_line(e)
        return None
    assert isinstance(cfg, Config)
    return cfg


@given(document=CONFIG_DOCUMENTS, overrides=st.lists(OVERRIDES, max_size=3))
@example(document={}, overrides=["name=\x08"])  # defect: PyYAML's ReaderError escaped load_yaml
def test_any_config_document_and_set_values_give_a_config_or_one_line(document, overrides):
    """config_from_dict: a Config, or a one-line ConfigError."""
    config_or_one_line(lambda: config_from_dict(document, overrides))


@given(text=st.text(max_size=200) | CONFIG_DOCUMENTS.map(yaml.safe_dump), raw=st.binary(max_size=40))
@example(text="training:\n  lr: 1\x07\n", raw=b"")  # defect: a control character gave a traceback
def test_any_config_file_gives_a_config_or_one_line_naming_it(tmp_path_factory, text, raw):
    """load_config of any text, and of any bytes: a Config, or a one-line ConfigError; one that
    is about the file itself (not UTF-8, not YAML) starts with the file's name."""
    path = tmp_path_factory.mktemp("configs") / "config.yaml"
    for data in (text.encode("utf-8", "surrogatepass"), raw + text.encode("utf-8", "surrogatepass")):
        path.write_bytes(data)
        try:
            load_config(path)
        except ConfigError as e:
            if not is_utf8_yaml(data):
                assert one_line(e).startswith(f"{path}"), e


def is_utf8_yaml(data: bytes) -> bool:
    """Whether PyYAML's safe loader reads data (UTF-8 text) without an error."""
    try:
        yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError):
        return False
    return True


def alias_bomb(fan_out: int, levels: int) -> str:
    """A YAML document whose aliases expand to fan_out ** levels strings ("billion laughs")."""
    items = ["&a0 [" + ", ".join(['"lol"'] * fan_out) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * fan_out) + "]" for i in range(1, levels)]
    return "name: [" + ", ".join(items) + "]\n"


def expanded_values(fan_out: int, levels: int) -> int:
    """The values (YAML nodes: mappings, lists, scalars) alias_bomb's document stands for with
    its aliases expanded: the mapping, its key, the outer list and every anchored list."""
    total, anchored = 3, 0
    for _ in range(levels):
        anchored = 1 + fan_out * max(anchored, 1)
        total += anchored
    return total


@given(fan_out=st.integers(2, 30), levels=st.integers(1, 12))
@example(fan_out=4, levels=8)  # (116,504 values: just past the limit)
def test_any_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path_factory, fan_out, levels):
    """Configs whose YAML aliases expand to up to 30**12 values: one line, in under two seconds
    and 20 MB, refused by name when they expand past nmt.untrusted.MAX_YAML_VALUES."""
    from nmt.untrusted import MAX_YAML_VALUES

    path = tmp_path_factory.mktemp("bombs") / "bomb.yaml"
    path.write_text(alias_bomb(fan_out, levels))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            load_config(path)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - start < 2 and peak < 20 * 2**20, (time.perf_counter() - start, peak)
    if expanded_values(fan_out, levels) > MAX_YAML_VALUES:
        assert one_line(info.value).startswith(f"{path}: refused: more than "), info.value
    else:  # small enough to read: `name` is not a list
        assert one_line(info.value).startswith("name: expected a string"), info.value


@pytest.mark.parametrize(
    "text",
    ["name: a\x08b\n", "model: !!python/object/apply:os.system ['touch PWNED']\n"],
    ids=["control-character", "python-tag"],
)
def test_nmt_train_with_a_bad_config_is_one_line_exit_2(tmp_path, nmt_cli, text):
    """The CLI end of the properties above: a subprocess, exit 2, one stderr line, no traceback."""
    config = tmp_path / "bad.yaml"
    config.write_text(text + f"run_dir: {tmp_path / 'run'}\n")
    check_one_line_error(nmt_cli("train", config, cwd=tmp_path), "config error", 2)
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "run").exists()


# --- text corpora and nmt bleu: bytes, encodings, line endings, line counts ---------------------------

LINE_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", " ", "\t", "a b", "\x00", "\x0b", "\x85", "\u2028", "é", "日本", "\ufeff"]
)
ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])


@st.composite
def text_files(draw) -> bytes:
    """The bytes of a text file: lines with mixed line endings, in some encoding (so sometimes not
    UTF-8), sometimes with random bytes spliced in or cut short."""
    lines = draw(st.lists(LINE_TEXT, max_size=6))
    text = "".join(line + draw(ENDINGS) for line in lines)
    if lines and draw(st.booleans()):
        text = text.rstrip("\r\n")  # no newline after the last line
    data = text.encode(draw(ENCODINGS), errors="replace")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=4)) + data[at:]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


def expected_lines(data: bytes) -> list[str]:
    """What the corpus reader promises for UTF-8 data: the text split on '\\n' only (as
    sacrebleu splits), a '\\r' before it dropped, no line after a final newline."""
    lines = data.decode("utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def first_bad_line(data: bytes) -> int | None:
    """The 1-based line of the first byte that is not UTF-8 (None: it all is)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return data.count(b"\n", 0, e.start) + 1
    return None


@given(data=text_files() | st.binary(max_size=64), compressed=st.booleans())
@example(data=b"a\r\nb\rc\n\xff", compressed=False)
def test_the_corpus_reader_gives_the_lines_or_one_line_naming_the_file_and_line(tmp_path_factory, data, compressed):
    """read_lines (what training, evaluate and bleu read with): the lines of UTF-8 text (.gz too),
    else a one-line DataError naming the file and the line of the first bad byte."""
    path = tmp_path_factory.mktemp("corpus") / ("text.gz" if compressed else "text")
    path.write_bytes(gzip.compress(data) if compressed else data)
    bad = first_bad_line(data)
    try:
        lines = read_lines(path)
    except DataError as e:
        assert bad is not None, e
        assert one_line(e).startswith(f"{path}: line {bad:,}: invalid UTF-8"), e
        return
    assert bad is None and lines == expected_lines(data)


@given(src=text_files(), tgt=text_files(), block=st.integers(1, 4))
@example(src=b"a\nb\n", tgt=b"a\n", block=1)
def test_a_parallel_split_gives_aligned_lines_or_one_line_naming_the_files(tmp_path_factory, src, tgt, block):
    """parallel_blocks (how training streams a split), in blocks of any size: aligned lines, or a
    one-line DataError: the file and line of bytes that are not UTF-8, both files and their
    line counts when these differ, the source when it is empty."""
    from nmt.data.corpus import LineReader, parallel_blocks

    folder = tmp_path_factory.mktemp("split")
    (folder / "train.de").write_bytes(src)
    (folder / "train.en").write_bytes(tgt)
    readers = LineReader(folder / "train.de"), LineReader(folder / "train.en")
    try:
        pairs = [pair for a, b in parallel_blocks(*readers, size=block) for pair in zip(a, b)]
    except DataError as e:
        message = one_line(e)
        if first_bad_line(src) or first_bad_line(tgt):
            assert ": invalid UTF-8 (byte 0x" in message, message
        elif len(expected_lines(src)) != len(expected_lines(tgt)):
            counts = (
                f"has {len(expected_lines(src)):,} lines but {folder / 'train.en'} has {len(expected_lines(tgt)):,}"
            )
            assert message == f"{folder / 'train.de'} {counts}: parallel files must be aligned line by line", message
        else:
            assert message == f"{folder / 'train.de'}: the file is empty", message
        return
    assert pairs == list(zip(expected_lines(src), expected_lines(tgt))) and pairs


@given(data=st.binary(min_size=1, max_size=64), cut=st.integers(1, 30))
def test_a_damaged_gzip_corpus_is_one_line_naming_the_file(tmp_path_factory, data, cut):
    """A .gz cut short (by 1 to 30 of its bytes; an empty file is an empty corpus): a one-line
    DataError naming the file."""
    path = tmp_path_factory.mktemp("corpus") / "text.gz"
    packed = gzip.compress(data)
    path.write_bytes(packed[: max(1, len(packed) - cut)])
    with pytest.raises(DataError) as info:
        read_lines(path)
    assert one_line(info.value).startswith(f"{path}: "), info.value


@given(
    hyp=text_files(),
    refs=st.lists(text_files(), min_size=1, max_size=2),
    options=st.sampled_from([[], ["--chrf", "--ter"], ["--json"]]),
)
@example(hyp=b"a b\n", refs=[b"a b\nc\n"], options=[])
@example(hyp=b"", refs=[b""], options=[])
def test_nmt_bleu_gives_scores_or_one_line_naming_the_file(tmp_path_factory, hyp, refs, options):
    """`nmt bleu HYP REF...` on any files: exit 0 with the scores, or exit 1 with one line that
    names the file at fault (and its line, for bytes that are not UTF-8)."""
    folder = tmp_path_factory.mktemp("bleu")
    files = [folder / "hyp", *(folder / f"ref{i}" for i in range(len(refs)))]
    for path, data in zip(files, [hyp, *refs]):
        path.write_bytes(data)
    code, out, err = run_main(["bleu", *files, *options])
    if code == 0:
        assert err == "" and ("BLEU" in out or '"bleu"' in out.lower()), (out, err)
        return
    message = cli_error_line(code, err, "data error", 1)
    bad = [(path, first_bad_line(data)) for path, data in zip(files, [hyp, *refs]) if first_bad_line(data)]
    if bad:
        assert message.startswith(f"{bad[0][0]}: line {bad[0][1]:,}: invalid UTF-8"), message
    else:
        assert str(files[0]) in message, message


# --- POST /translate: any JSON, any bytes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny trained dates run, shared with the other test files of the session (tests/tiny_runs.py)."""
    from tiny_runs import shared_run

    return shared_run(tmp_path_factory)


class InProcessApp:
    """nmt serve's ASGI app driven in this process (its lifespan started once, its decoding
    workers threads): a request costs what decoding it costs, so many examples can run."""

    def __init__(self, app):
        self.app, self.loop = app, asyncio.new_event_loop()
        self._shutdown = asyncio.Event()
        self._started = self.loop.create_future()
        self._lifespan = self.loop.create_task(
            self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, *self._lifespan_channel())
        )
        self.loop.run_until_complete(asyncio.wait_for(self._started, 60))

    def _lifespan_channel(self):
        messages = iter([{"type": "lifespan.startup"}])

        async def receive():
            message = next(messages, None)
            if message is None:
                await self._shutdown.wait()
                return {"type": "lifespan.shutdown"}
            return message

        async def send(message):
            if message["type"] == "lifespan.startup.complete" and not self._started.done():
                self._started.set_result(None)
            elif message["type"] == "lifespan.startup.failed":
                self._started.set_exception(RuntimeError(message.get("message")))

        return receive, send

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of one request; the client stays connected until the response ends."""
        return self.loop.run_until_complete(asyncio.wait_for(self._request(method, path, body), 120))

    async def _request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        }  # fmt: skip
        pending, done, status, chunks = (
            [{"type": "http.request", "body": body, "more_body": False}],
            asyncio.Event(),
            [],
            [],
        )

        async def receive():
            if pending:
                return pending.pop()
            await done.wait()  # connected until the response is sent
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    done.set()

        await self.app(scope, receive, send)
        return status[0], b"".join(chunks)

    def close(self) -> None:
        self._shutdown.set()
        self.loop.run_until_complete(asyncio.wait_for(self._lifespan, 60))
        self.loop.close()


@pytest.fixture(scope="module")
def app(tiny_run):
    """The tiny run served in process with nmt serve's small limits (two worker threads)."""
    pytest.importorskip("starlette", reason="nmt serve needs the serve extra: pip install -e '.[serve]'")
    from nmt.serve import Limits
    from nmt.serve.app import create_app
    from nmt.translate import Translator

    limits = Limits(max_sentences=4, max_bytes=4000, max_beam=4, max_pieces=60, workers=2)
    served = InProcessApp(create_app(Translator.load(tiny_run), "fuzz", [str(tiny_run)], limits))
    yield served
    served.close()


JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
SENTENCES = st.lists(st.text(max_size=15) | st.sampled_from(["3 May 1979", "", "12/05/1943", "\ud800"]), max_size=3)
#: request objects: the API's fields with values of the right shape or not, and unknown fields
REQUESTS = st.fixed_dictionaries(
    {"src": SENTENCES | JSON_VALUES},
    optional={
        "beam": st.integers(-2, 6) | JSON_VALUES,
        "alpha": st.floats(-1, 12, allow_nan=False) | st.integers(-(10**400), 10**400) | JSON_VALUES,
        "n_best": st.integers(-1, 6) | JSON_VALUES,
        "attention": st.booleans() | JSON_VALUES,
        "prefix": SENTENCES | JSON_VALUES,
        "constraints": st.lists(st.lists(st.text(max_size=8) | st.just("1979"), max_size=2), max_size=3) | JSON_VALUES,
        "align": st.sampled_from([True, False, "pieces", "words", None]) | JSON_VALUES,
    },
)
BODIES = (
    (REQUESTS | JSON_VALUES).map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=40)
    | st.sampled_from(
        [b'{"src": ["a"], "alpha": NaN}', b'{"src": ["a"], "beam": Infinity}', b"[" * 100_000, b'"\\ud800"']
    )
)


def check_answer(status: int, body: bytes) -> None:
    """200 with translations, or a 4xx whose JSON body gives a one-line reason; never a 5xx."""
    assert status == 200 or 400 <= status < 500, (status, body[:300])
    data = json.loads(body)
    if status == 200:
        assert isinstance(data["translations"], list), data
    else:
        assert isinstance(data["error"], str) and data["error"] and "\n" not in data["error"], data


@given(body=BODIES)
@example(body=json.dumps({"src": ["3 May 1979"], "beam": 2, "n_best": 2, "align": "pieces"}).encode())
def test_any_body_to_post_translate_is_200_or_a_4xx_with_a_reason(app, body):
    """POST /translate with any bytes, any JSON, any request of the API's shape: 200, or a 4xx
    with a one-line reason; never a 500, and the server goes on answering."""
    check_answer(*app.request("POST", "/translate", body))


def test_after_the_fuzzed_requests_the_server_is_healthy(app):
    """(Runs after the property above, on the same app.) /health still says ok."""
    status, body = app.request("GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok", body


# --- checkpoints: truncated, bit-flipped, crafted -------------------------------------------------------


class RunsCode:
    """Unpickling this calls os.system: what a hostile "checkpoint" would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def good_checkpoint(tiny_run) -> tuple[dict, bytes]:
    """The tiny run's last.pt: (its state, its bytes)."""
    from nmt.rundir.checkpoint import load_checkpoint

    path = tiny_run / "checkpoints" / "last.pt"
    return load_checkpoint(path), path.read_bytes()


def loads_or_one_line(path: Path) -> None:
    """What translate, evaluate, score and serve do with a checkpoint (Translator.load, then a
    translation): it works, or a one-line NmtError that names the file."""
    from nmt.translate import Translator

    try:
        translator = Translator.load(path, device="cpu")
    except NmtError as e:
        assert one_line(e).startswith(str(path)), e
        return
    assert len(translator.translate(["3 May 1979", ""], beam=2)) == 2


@given(cut=st.integers(0, 10**9))
def test_a_truncated_checkpoint_is_one_line_naming_it(tmp_path_factory, good_checkpoint, cut):
    """A checkpoint cut short at any length: a one-line CheckpointError naming the file."""
    _, data = good_checkpoint
    path = tmp_path_factory.mktemp("cut") / "model.pt"
    path.write_bytes(data[: cut % len(data)])
    from nmt.translate import Translator

    with pytest.raises(CheckpointError) as info:
        Translator.load(path, device="cpu")
    assert one_line(info.value).startswith(str(path))


#: a byte anywhere, or among the first or last bytes (the pickle, the zip's directory), where flips do most
POSITIONS = st.integers(0, 10**9) | st.integers(0, 6000) | st.integers(-6000, -1)


@given(flips=st.lists(st.tuples(POSITIONS, st.integers(0, 7)), min_size=1, max_size=4))
def test_a_bit_flipped_checkpoint_loads_and_translates_or_is_one_line(tmp_path_factory, good_checkpoint, flips):
    """A checkpoint with bits flipped anywhere (zip headers, the pickle, the weights, the
    sentencepiece models): it loads and translates, or one line naming the file."""
    _, data = good_checkpoint
    damaged = bytearray(data)
    for position, bit in flips:
        damaged[position % len(damaged)] ^= 1 << bit
    path = tmp_path_factory.mktemp("flipped") / "model.pt"
    path.write_bytes(bytes(damaged))
    loads_or_one_line(path)


PLAIN_VALUES = (
    YAML_VALUES
    | st.binary(max_size=8)
    | st.builds(
        lambda shape, dtype, fill: torch.full(shape, fill).to(dtype),
        st.lists(st.integers(0, 3), max_size=3).map(tuple),
        st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool, torch.float16]),
        st.sampled_from([0.0, 1.0, float("nan"), float("inf")]),
    )
)


@st.composite
def crafted_states(draw, state: dict) -> dict:
    """A copy of a real training checkpoint's state with one to three values replaced by anything
    plain (a scalar, a list, a mapping, bytes, a tensor of any shape and dtype, NaN) or removed:
    at the top, in the config, the tokenizers, the weights, the progress, the schedule."""
    state = {key: dict(value) if isinstance(value, dict) else value for key, value in state.items()}
    for _ in range(draw(st.integers(1, 3))):
        sections = [key for key, value in state.items() if isinstance(value, dict) and value]
        section = draw(st.sampled_from([None, *sections]))
        target = state if section is None else state[section]
        key = draw(st.sampled_from(sorted(target, key=str)))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key)
        else:
            target[key] = draw(PLAIN_VALUES)
    return state


def average_or_one_line(paths: list[Path], output: Path) -> None:
    """`nmt average` of the checkpoints: an averaged file, or a one-line error naming a file."""
    from nmt.rundir.average import average

    try:
        average(paths, output)
    except NmtError as e:
        assert any(one_line(e).startswith(str(path)) for path in [*paths, output]), e


def resumes_or_one_line(run: Path, state: dict, folder: Path) -> None:
    """`nmt train RUN --resume` from a copy of the run whose last.pt holds `state` (its step
    files removed): it resumes, or exits 1 with one line naming the checkpoint, or (a value the
    run may not change differs from config.yaml's: nmt cannot tell which file is wrong) exits 2
    with one line naming the key and the checkpoint that holds the other value."""
    copy = folder / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.pt"))
    checkpoint = copy / "checkpoints" / "last.pt"
    torch.save(state, checkpoint)
    code, _, err = run_main(["train", copy, "--resume"])
    line = err.splitlines()[-1] + "\n" if err else err
    if code == 2:
        message = cli_error_line(code, line, "config error", 2)
        assert f"(its checkpoint {checkpoint} says so)" in message, message
    elif code != 0:
        message = cli_error_line(code, line, "checkpoint error", 1)
        assert message.startswith(str(copy / "checkpoints")), message


@given(data=st.data())
def test_a_crafted_checkpoint_is_translated_averaged_and_resumed_or_one_line(
    tmp_path_factory, tiny_run, good_checkpoint, data
):
    """A checkpoint whose values are replaced by anything plain: translate (and so evaluate,
    score, serve), average and resume each work, or stop with one line naming the file."""
    state = data.draw(crafted_states(good_checkpoint[0]), label="state")
    folder = tmp_path_factory.mktemp("crafted")
    torch.save(state, folder / "crafted.pt")
    loads_or_one_line(folder / "crafted.pt")
    average_or_one_line([tiny_run / "checkpoints" / "last.pt", folder / "crafted.pt"], folder / "avg.pt")
    average_or_one_line([folder / "crafted.pt", tiny_run / "checkpoints" / "last.pt"], folder / "avg.pt")
    resumes_or_one_line(tiny_run, state, folder)


def damaged(state: dict, section: str | None, key: str, value) -> dict:
    """A copy of `state` with state[section][key] (state[key] for section None) set to value."""
    state = {k: dict(v) if isinstance(v, dict) else v for k, v in state.items()}
    (state if section is None else state[section])[key] = value
    return state


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("progress", "step", "x"),  # defect: ValueError from int() in tidy_for_resume
        ("progress", "scores", 5),  # defect: TypeError
        ("schedule", "scale", None),  # defect: accepted, then a TypeError in training
        (None, "optimizer", "junk"),  # defect: AttributeError in optimizer.load_state_dict
        (None, "rng_ranks", [{"cpu": torch.zeros(3)}]),  # defect: TypeError from torch.set_rng_state
        ("model", "src_embed.weight", torch.zeros(2)),  # defect: RuntimeError from load_state_dict
        ("tokenizers", "src", b"not a sentencepiece model"),  # defect: the one line did not name the file
        (None, "rng_ranks", torch.zeros(0)),  # the long profile's find: "Boolean value of Tensor" traceback
    ],
)
def test_a_resume_from_a_damaged_training_state_is_one_line_naming_the_file(
    tmp_path, tiny_run, good_checkpoint, section, key, value
):
    """`nmt train RUN --resume` whose last.pt has a damaged value: exit 1, one line naming last.pt."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("*.pt"))
    torch.save(damaged(good_checkpoint[0], section, key, value), copy / "checkpoints" / "last.pt")
    code, _, err = run_main(["train", copy, "--resume"])
    message = cli_error_line(code, err.splitlines()[-1] + "\n", "checkpoint error", 1)
    assert message.startswith(f"{copy / 'checkpoints' / 'last.pt'}: cannot resume from it: "), message


def test_a_resume_whose_checkpoint_config_lost_a_section_names_the_checkpoint(tmp_path, tiny_run, good_checkpoint):
    """The long profile's find: last.pt's config without its data section reads as data.train ''
    (a default), unlike config.yaml's: exit 2 naming the key and last.pt (it named the run only)."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("*.pt"))
    state = dict(good_checkpoint[0], config={k: v for k, v in good_checkpoint[0]["config"].items() if k != "data"})
    torch.save(state, copy / "checkpoints" / "last.pt")
    code, _, err = run_main(["train", copy, "--resume"])
    message = cli_error_line(code, err.splitlines()[-1] + "\n", "config error", 2)
    assert message.startswith(f"data.train: the run in {copy} was trained with '' (its checkpoint "), message
    assert f"{copy / 'checkpoints' / 'last.pt'} says so), this config says " in message, message


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("model", "src_embed.weight", [1, 2]),
        ("tokenizers", "src", None),
        (None, "config", "x"),
        (None, "model", 5),
        (None, "tokenizers", {"src": b"x"}),  # the long profile's find: no "tgt" was a KeyError in nmt average
        ("config", "data", torch.zeros(0)),  # the long profile's find: a traceback comparing configs in average
        ("config", "data", {0: None}),  # the long profile's find: a traceback sorting its keys in average
    ],
)
def test_a_checkpoint_with_contents_of_the_wrong_type_is_one_line_for_every_loader(
    tmp_path, tiny_run, good_checkpoint, section, key, value
):
    """Weights that are not tensors, tokenizers without a model, a config that is not a mapping
    (defects: AttributeError and KeyError in `nmt average`): refused as damaged where it loads."""
    from nmt.rundir.average import average
    from nmt.rundir.checkpoint import load_checkpoint

    path = tmp_path / "bad.pt"
    torch.save(damaged(good_checkpoint[0], section, key, value), path)
    with pytest.raises(CheckpointError, match=rf"^{path}: damaged checkpoint \({section or key}"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=rf"^{path}: damaged checkpoint"):
        average([tiny_run / "checkpoints" / "last.pt", path], tmp_path / "avg.pt")


def test_a_checkpoint_whose_format_is_a_tensor_is_not_an_nmt_checkpoint(tmp_path, good_checkpoint):
    """The long profile's find: a tensor as the format number was a traceback (its comparison)."""
    from nmt.rundir.checkpoint import load_checkpoint

    path = tmp_path / "bad.pt"
    torch.save(damaged(good_checkpoint[0], None, "format", torch.zeros(0)), path)
    with pytest.raises(CheckpointError, match=rf"^{path}: not an nmt checkpoint"):
        load_checkpoint(path)


# --- every command that loads a checkpoint, as a subprocess: one line, no code run -----------------------


def command_with_checkpoint(command: str, checkpoint: Path, run: Path, folder: Path) -> tuple[list[str], str]:
    """(the arguments of `nmt COMMAND` that load `checkpoint`, its stdin); for average and
    --resume a copy of `run` in folder whose checkpoints are that file."""
    copy = folder / "run"
    if command in ("average", "resume"):
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.pt"))
        target = copy / "checkpoints" / ("step-00000040.pt" if command == "average" else "last.pt")
        shutil.copyfile(checkpoint, target)
    return {
        "translate": (["translate", "-m", checkpoint], "3 May 1979\n"),
        "evaluate": (["evaluate", run, "-m", checkpoint, "--split", "dev", "-o", folder / "dev.hyp"], ""),
        "score": (["score", "-m", checkpoint], "3 May 1979\t1979-05-03\n"),
        "serve": (["serve", "-m", checkpoint, "--port", "0"], ""),
        "average": (["average", copy, "--last", "1", "-o", folder / "avg.pt"], ""),
        "resume": (["train", copy, "--resume"], ""),
    }[command]


@pytest.mark.parametrize("command", ["translate", "evaluate", "score", "serve", "average", "resume"])
def test_every_command_refuses_a_checkpoint_that_would_run_code_with_one_line(
    tmp_path, tiny_run, good_checkpoint, nmt_cli, command
):
    """A pickle whose loading would run `touch MARKER`, given to each command that loads a
    checkpoint: exit 1, one line on stderr naming the file, no traceback, the marker never made."""
    marker, evil = tmp_path / "PWNED", tmp_path / "evil.pt"
    torch.save({**good_checkpoint[0], "payload": RunsCode(marker)}, evil)
    args, stdin = command_with_checkpoint(command, evil, tiny_run, tmp_path)
    result = nmt_cli(*args, input=stdin, timeout=120)
    message = check_one_line_error(result, "checkpoint error", 1, only_line=command != "resume")
    assert "refused to load" in message and "could run code" in message, message
    assert not marker.exists()
