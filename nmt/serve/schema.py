"""The JSON of POST /translate: the request checked field by field, and the response.

Request: {"src": ["...", ...], "beam": 5, "alpha": 1.0, "n_best": 1, "attention": false,
"prefix": ["...", ...], "align": false}; all but `src` optional (default: the run's decoding
section; `prefix`, one string per sentence, "" for none: what its translations begin with, as
`nmt translate --prefix`; `constraints`, a list of phrases per sentence that its translations
must contain, as `nmt translate --constraints` (each translation then says which it lacks, in
`unmet_constraints`); `align`: true or "pieces" adds each translation's `alignment`, a list
of [source, target] word (or subword) index pairs, as `nmt translate --align`). Response, one entry per input
line, in order (a blank line gives an empty entry):

    {"translations": [{"text", "score", "log_prob", "src_pieces", "tgt_pieces",
                       "attention" (T x S, only when asked), "n_best": [{"text", "score",
                       "log_prob", "tgt_pieces", "attention"}, ...]}],
     "model": NAME, "elapsed_ms": MS, "notes": ["..."]}

Problems are a `RequestError` with an HTTP status and a one-line reason: 400 for a body that is
not JSON (or not UTF-8), 422 for JSON of the wrong shape, types or values, 413 for too many
sentences (the body size is checked while it is read, in nmt.serve.app).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nmt.config import DecodingConfig
from nmt.errors import ConfigError, DataError
from nmt.translate import Translation, Translator
from nmt.translate.alignment import ALIGNMENTS

if TYPE_CHECKING:
    from nmt.serve import Limits

#: the request's decoding fields: the JSON's name -> the decoding key whose rule checks the value
DECODING_FIELDS = {"beam": "beam_size", "alpha": "alpha", "n_best": "n_best"}
FIELDS = ("src", *DECODING_FIELDS, "attention", "prefix", "constraints", "align")


class RequestError(Exception):
    """A request the server refuses: HTTP `status` and a one-line reason."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(" ".join(reason.split()))
        self.status, self.headers = status, headers or {}


@dataclass(frozen=True)
class TranslateRequest:
    src: list[str]
    decoding: DecodingConfig  # beam_size, alpha and n_best of this request, checked
    attention: bool
    prefix: list[str] | None = None  # one per line of src
    align: str | None = None  # "words" or "pieces" (nmt.translate.alignment.ALIGNMENTS)
    constraints: list[list[str]] | None = None  # one list of phrases per line of src


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    """The body as JSON, or a 400 RequestError (not UTF-8, not JSON, NaN or Infinity)."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise RequestError(400, f"invalid JSON: the body is not UTF-8 ({e.reason} at byte {e.start})") from None
    except ValueError as e:  # json.JSONDecodeError and NaN/Infinity
        raise RequestError(400, f"invalid JSON: {e}") from None
    except RecursionError:  # [[[[...]]]] nested deeper than Python's stack
        raise RequestError(400, "invalid JSON: nested too deeply") from None


def _typed(data: dict, key: str, kinds: tuple[type, ...], what: str) -> Any:
    """data[key] if it is of one of `kinds` (never a bool for a number), else a 422."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise RequestError(422, f"{key}: expected {what}, got {json.dumps(value)[:40]}")
    return value


def parse_request(data: Any, translator: Translator, limits: Limits) -> TranslateRequest:
    """A checked TranslateRequest from parsed JSON, or a RequestError (422; 413 for too many
    lines, or a line of more subwords than limits.max_pieces: a search's time grows with the
    square of a line's length, and one line must not hold a worker for minutes)."""
    max_sentences, max_beam = limits.max_sentences, limits.max_beam
    if not isinstance(data, dict):
        raise RequestError(422, f"expected a JSON object with the field 'src', got {type(data).__name__}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(422, f"unknown field {unknown[0]!r} (expected some of: {', '.join(FIELDS)})")
    src = data.get("src")
    if not isinstance(src, list) or not all(isinstance(s, str) for s in src):
        raise RequestError(422, "src: expected a list of strings (one sentence each)")
    if len(src) > max_sentences:
        raise RequestError(413, f"src: {len(src)} sentences, more than this server takes ({max_sentences})")
    _check_lines(src, translator, limits.max_pieces)
    beam = _typed(data, "beam", (int,), "an integer")  # JSON's types here; their ranges: the config's
    alpha = _typed(data, "alpha", (int, float), "a number")
    n_best = _typed(data, "n_best", (int,), "an integer")
    attention = _typed(data, "attention", (bool,), "true or false")
    if beam is not None and beam > max_beam:
        raise RequestError(422, f"beam: at most {max_beam} on this server (nmt serve --max-beam), got {beam}")
    if alpha is not None and not math.isfinite(_as_float(alpha)):
        raise RequestError(422, f"alpha: expected a finite number, got {json.dumps(alpha)[:40]}")
    try:
        decoding = translator.decoding(beam, alpha, n_best)
    except ConfigError as e:  # "decoding.beam_size: expected ..." in the request's words
        message = str(e).removeprefix("decoding.")
        for name, key in DECODING_FIELDS.items():
            message = name + message.removeprefix(key) if message.startswith(f"{key}:") else message
        raise RequestError(422, message) from None
    constraints = _constraints(data, src, translator, limits.max_pieces)
    return TranslateRequest(src, decoding, bool(attention), _prefixes(data, src), _align(data), constraints)


def _constraints(data: dict, src: list[str], translator: Translator, max_pieces: int) -> list[list[str]] | None:
    """The request's `constraints`: a list of phrases per sentence of src, each phrase one the
    target vocabulary can spell (422 otherwise), a sentence's together at most max_pieces
    subwords (413 otherwise: each lengthens the search by its length)."""
    given = data.get("constraints")
    if given is None:
        return None
    shape = isinstance(given, list) and len(given) == len(src)
    if not shape or not all(isinstance(c, list) and all(isinstance(p, str) for p in c) for c in given):
        raise RequestError(422, f"constraints: expected a list of {len(src)} lists of strings, one per sentence of src")
    for i, phrases in enumerate(given):
        _check_lines(phrases, None, 0, f"constraints[{i}]")
        pieces = 0
        for j, phrase in enumerate(phrases):
            try:
                pieces += translator.constraint(phrase).length
            except DataError as e:
                raise RequestError(422, f"constraints[{i}][{j}]: {e}") from None
        if pieces > max_pieces:
            message = f"constraints[{i}]: {pieces} subwords, more than this server takes in a line ({max_pieces})"
            raise RequestError(413, message)
    return given


def _align(data: dict) -> str | None:
    """The request's `align`: true (words), "pieces", or false / absent (none); a 422 otherwise."""
    value = data.get("align", False)
    if value is True or value == "pieces":
        return "words" if value is True else "pieces"
    if value is False or value is None:
        return None
    raise RequestError(422, f'align: expected true, false or "pieces", got {json.dumps(value)[:40]}')


def _prefixes(data: dict, src: list[str]) -> list[str] | None:
    """The request's `prefix` list: strings, one per sentence of src (422 otherwise)."""
    prefix = data.get("prefix")
    if prefix is None:
        return None
    if not isinstance(prefix, list) or not all(isinstance(p, str) for p in prefix) or len(prefix) != len(src):
        raise RequestError(422, f"prefix: expected a list of {len(src)} strings, one per sentence of src")
    _check_lines(prefix, None, 0, "prefix")
    return prefix


def _as_float(number: int | float) -> float:
    """The number as a float; inf for an integer too large for one (JSON allows 400 digits)."""
    try:
        return float(number)
    except OverflowError:
        return math.inf


def _check_lines(src: list[str], translator: Translator | None, max_pieces: int, name: str = "src") -> None:
    """422 for a line that is not Unicode text (a lone surrogate such as "\\ud800", which JSON
    allows and UTF-8 does not), 413 for one longer than max_pieces subwords (with a translator)."""
    for i, line in enumerate(src):
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as e:
            raise RequestError(422, f"{name}[{i}]: not Unicode text ({e.reason} at character {e.start})") from None
    for i, ids in enumerate(translator.src_tok.encode(src) if translator is not None else ()):
        if len(ids) > max_pieces:
            message = f"src[{i}]: {len(ids)} subwords, more than this server takes in a line ({max_pieces})"
            raise RequestError(413, message)


def _weights(t: Translation) -> list[list[float]]:
    return [] if t.attention is None else [[round(w, 4) for w in row] for row in t.attention.tolist()]


def _hypothesis(t: Translation, attention: bool, align: str | None, constrained: bool = False) -> dict:
    out: dict[str, Any] = {"text": t.text, "score": t.search_score, "log_prob": t.log_prob, "tgt_pieces": t.tgt_pieces}
    if constrained:
        out["unmet_constraints"] = t.unmet_constraints
    if attention:
        out["attention"] = _weights(t)
    if align:
        links = [] if t.attention is None else ALIGNMENTS[align](t.src_pieces, t.tgt_pieces, t.attention)
        out["alignment"] = [list(link) for link in links]
    return out


def translation_json(
    nbest: list[Translation], attention: bool, align: str | None = None, constrained: bool = False
) -> dict:
    """One input line's entry: its best translation, with the n-best list (and, with `align`,
    the alignment of each: "words" or "pieces"; `constrained`: the constraints each lacks)."""
    best = nbest[0]
    entry = {**_hypothesis(best, attention, align, constrained), "src_pieces": best.src_pieces}
    entry["n_best"] = [_hypothesis(t, attention, align, constrained) for t in nbest]
    return entry


def too_long_notes(translator: Translator, results: list[list[Translation]]) -> list[str]:
    """A note per line longer than any training source (translated whole all the same),
    counted from the results' source pieces (without EOS): no second encoding."""
    limit = translator.cfg.data.max_src_length
    return [
        f"src[{i}]: {len(nbest[0].src_pieces) - 1} subwords, more than the {limit} of the longest training source "
        "(data.max_src_length): translated whole, expect a poorer translation"
        for i, nbest in enumerate(results)
        if len(nbest[0].src_pieces) - 1 > limit
    ]
