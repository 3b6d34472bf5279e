"""Translation: a run directory (or checkpoint) in, text out, exactly one result per input line."""

from __future__ import annotations

import dataclasses
import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from nmt.config import Config, DecodingConfig, replace_checked
from nmt.data.batching import sorted_batches
from nmt.data.tokenizer import EOS, UNK, Tokenizer
from nmt.errors import ConfigError, DataError
from nmt.model.frozen import frozen
from nmt.runtime import autocast
from nmt.search import STRATEGIES, BeamStep, Hypothesis, SearchOptions, max_lengths, sample_seed, sequence_log_probs
from nmt.search.constraints import Constraint
from nmt.search.prefix import WORD_START, Prefix, split_prefix

#: line breaks and the other vertical whitespace str.splitlines splits on: a sentencepiece model
#: (from a checkpoint or a config: anyone's) may have pieces that decode to them
_LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", " "))
# sampling's temperatures: at 0.001 sampling is greedy search already, at 1000 a uniform draw
# (log-probabilities / T are within 0.03 of each other); beyond, z / T leaves fp32's range
TEMPERATURES = (1e-3, 1e3)


def temperature_error(temperature: float) -> str | None:
    """What is wrong with a sampling temperature (outside TEMPERATURES, nan), or None."""
    low, high = TEMPERATURES
    if low <= temperature <= high:
        return None
    return f"temperature: expected a number from {low:g} to {high:g}, got {temperature:g}"


def one_line(text: str) -> str:
    """`text` with every line break (and other vertical whitespace) a space: one output line."""
    return text.translate(_LINE_BREAKS)


@dataclass
class Translation:
    """One output for one input line.

    search_score: length-normalised log-probability (what beam search ranks by); log_prob: the sum.
    src_pieces / tgt_pieces: subwords, each ending with "</s>"; attention: (T, S) weights,
    rows = tgt_pieces, columns = src_pieces (only when asked for); ids: the target subword ids
    (without EOS); unmet_constraints: the constraints it does not meet (the search reached the
    length limit without them; empty: all met, or none asked for).
    """

    text: str  # one line: line breaks a model's pieces decode to are spaces (`one_line`)
    search_score: float
    log_prob: float
    src_pieces: list[str]
    tgt_pieces: list[str]
    attention: torch.Tensor | None = None
    ids: list[int] = field(default_factory=list)
    unmet_constraints: list[str] = field(default_factory=list)  # phrases asked for and not in it

    @property
    def score(self) -> float:
        """search_score's name before nmt 0.2 (kept for code written then)."""
        return self.search_score


@dataclass
class TraceStep:
    """Beam search's step t for one line (`Translator.trace`): alive, the hypotheses that go on,
    best first, as (target pieces so far, summed log-probability); finished, those that ended at
    step t, as (pieces ending with "</s>", summed log-probability, search score)."""

    t: int
    alive: list[tuple[list[str], float]]
    finished: list[tuple[list[str], float, float]]


class Translator:
    """A trained model ready to translate: `Translator.load("runs/dates").translate(["3 May 1979"])`.

    It translates with the weights `model` has when the Translator is built: a Seq2Seq is
    frozen (copied, nmt.model.frozen), so training it further changes nothing here."""

    def __init__(self, model: nn.Module, src_tok: Tokenizer, tgt_tok: Tokenizer, cfg: Config, device: torch.device):
        self.model, self.src_tok, self.tgt_tok, self.cfg, self.device = frozen(model), src_tok, tgt_tok, cfg, device

    @classmethod
    def load(
        cls, path: str | Path | list | None = None, device: str = "auto", precision: str | None = None
    ) -> Translator:
        """Load a run directory (its best checkpoint), a checkpoint file, or (None) the latest run;
        a list of several: their ensemble (nmt.translate.ensemble; the first one's decoding options).

        Decoding defaults stored with the run by `nmt tune --write` (RUN_DIR/decoding.yaml)
        replace the checkpoint's.
        """
        from nmt.translate.loading import from_states, load_states  # (loading builds Translators)

        return from_states(load_states(path, device, precision), device, precision)

    def decoding(
        self,
        beam: int | None = None,
        alpha: float | None = None,
        n_best: int | None = None,
        no_unk: bool | None = None,
    ) -> DecodingConfig:
        """The decoding options of a call: the run's decoding section with the given values (None:
        the run's default), checked as config keys are (one ConfigError naming the key)."""
        chosen = {"beam_size": beam, "alpha": alpha, "n_best": n_best, "no_unk": no_unk}
        d = replace_checked(self.cfg.decoding, "decoding", {k: v for k, v in chosen.items() if v is not None})
        if d.n_best > d.beam_size:
            raise ConfigError(f"n_best: expected at most the beam size ({d.beam_size}), got {d.n_best}")
        return d

    def search(
        self,
        lines: list[str],
        beam: int | None = None,
        alpha: float | None = None,
        n_best: int | None = None,
        attention: bool = False,
        no_unk: bool | None = None,
        prefixes: list[str] | None = None,
        constraints: list[list[str]] | None = None,
    ) -> list[list[Translation]]:
        """The n_best translations of every line, best first. None means the config's default.

        beam 1 is greedy search. An empty (or blank) line gives one empty translation.
        `prefixes`: one per line, the text its outputs must begin with ("" for none; a last word
        not followed by a space may be unfinished: the output completes it, nmt.search.prefix).
        `constraints`: one list per line, the phrases its outputs must contain (nmt.search.constraints;
        an output that reached the length limit without one says so in `unmet_constraints`).
        """
        d = self.decoding(beam, alpha, n_best, no_unk)
        options = SearchOptions.of(d, attention=attention)
        for given, name in ((prefixes, "prefixes"), (constraints, "constraint lists")):
            if given is not None and len(given) != len(lines):
                raise DataError(f"{len(given)} {name} for {len(lines)} lines: expected one per line")
        starts = None if prefixes is None else [self.prefix(text) for text in prefixes]
        terms = None if constraints is None else [tuple(map(self.constraint, phrases)) for phrases in constraints]
        beam_search = d.beam_size > 1 or any(terms or ())  # a beam of one keeps its terms too
        return self._decode(lines, STRATEGIES["beam" if beam_search else "greedy"], options, starts=starts, terms=terms)

    def prefix(self, text: str) -> Prefix:
        """The Prefix of a target text: its complete words' pieces, then its last word's characters;
        after a final space, a new word (nmt.search.prefix)."""
        complete, typed = split_prefix(text)
        tokens = tuple(self.tgt_tok.encode([complete])[0]) if complete.strip() else ()
        return Prefix(tokens, WORD_START + typed if typed else "", new_word=bool(tokens) and not typed)

    def constraint(self, phrase: str) -> Constraint:
        """The Constraint of a target phrase: its pieces at a word's start (as the tokenizer gives
        them), and inside a word (its first word's characters without the word-start mark,
        spelled by the longest pieces that match, then the same pieces: never the output's first
        token). A phrase with characters the target vocabulary cannot spell is a DataError."""
        ids = self.tgt_tok.encode([phrase])[0]
        if not ids or UNK in ids:
            what = "is empty" if not ids else "has characters the target vocabulary cannot spell"
            raise DataError(f"constraint {phrase!r} {what}")
        spellings = [tuple(ids)]
        first = self.target_pieces[ids[0]].removeprefix(WORD_START)
        inside = self._spelled_inside(first) if first else ()
        if inside is not None and (inside + tuple(ids[1:])) != spellings[0]:
            spellings.append(inside + tuple(ids[1:]))
        return Constraint(phrase, tuple(spellings), (False, True)[: len(spellings)])

    def _spelled_inside(self, text: str) -> tuple[int, ...] | None:
        """`text` as pieces that do not start a word, the longest that match first (None: cannot)."""
        ids: list[int] = []
        while text:
            match = next((n for n in range(len(text), 0, -1) if text[:n] in self._piece_ids), None)
            if match is None:
                return None
            ids.append(self._piece_ids[text[:match]])
            text = text[match:]
        return tuple(ids)

    @functools.cached_property
    def _piece_ids(self) -> dict[str, int]:
        """Target piece string -> id (the special tokens left out)."""
        return {piece: i for i, piece in enumerate(self.target_pieces) if i > EOS}

    @functools.cached_property
    def target_pieces(self) -> tuple[str, ...]:
        """The piece string of every target id."""
        return tuple(self.tgt_tok.pieces(list(range(len(self.tgt_tok)))))

    def sample(
        self, lines: list[str], n: int = 1, temperature: float = 1.0, top_k: int = 0, seed: int | None = None
    ) -> list[list[Translation]]:
        """n random translations of every line, drawn from the model (see `nmt.search.sample`).

        The k-th sample of line i draws from its own random stream, seeded from (seed, i, k): the
        same seed gives a line the same samples whatever else is in the input and whatever the
        batch size. Without a seed, one is drawn from the operating system (torch's global
        random state is never used or changed). An empty line gives n empty translations.
        """
        if error := temperature_error(temperature):
            raise ConfigError(error)
        d = self.cfg.decoding
        options = SearchOptions.of(d, beam_size=1, n_best=1, temperature=temperature, top_k=top_k)
        seed = secrets.randbits(63) if seed is None else seed
        return self._decode(lines, STRATEGIES["sample"], options, copies=n, seed=seed)

    def trace(self, line: str, beam: int | None = None, alpha: float | None = None) -> list[TraceStep]:
        """Beam search on one line, step by step, as a lecture draws it: at each output step the
        hypotheses that go on and those that ended (a blank line: no steps). The search is the
        one `search` runs (beam 1 here is a beam of one, which greedy search equals)."""
        d = self.decoding(beam, alpha)
        steps: list[BeamStep] = []
        search = functools.partial(STRATEGIES["beam"], on_step=steps.append)
        self._decode([line], search, SearchOptions.of(d, n_best=1))
        pieces = self.tgt_tok.pieces
        return [
            TraceStep(
                s.t,
                [(pieces(tokens), log_prob) for tokens, log_prob in s.alive],
                [(pieces(h.tokens) + ["</s>"], h.log_prob, h.search_score) for h in s.finished],
            )
            for s in steps
        ]

    def _decode(
        self,
        lines: list[str],
        strategy: Callable,
        options: SearchOptions,
        copies: int = 1,
        seed: int | None = None,
        starts: list[Prefix] | None = None,
        terms: list[tuple[Constraint, ...]] | None = None,
    ) -> list[list[Translation]]:
        """Every line's outputs by search strategy `strategy` (of nmt.search.STRATEGIES), decoded
        `copies` times (sampling, with `seed`): copies x n_best translations per line, in order;
        `starts`: a Prefix per line; `terms`: its Constraints. Lines are batched by length; blank
        lines are not decoded and get empty translations."""
        d = self.cfg.decoding
        ids = self.src_tok.encode(list(lines))
        empty = [Translation("", 0.0, 0.0, [], [])] * (copies * options.n_best)
        outputs: list[list] = [[None] * copies if line.strip() else empty for line in lines]
        todo = [i for i, line in enumerate(lines) if line.strip()]
        for batch in sorted_batches([ids[i] for i in todo for _ in range(copies)], None, d.batch_size):
            src, lengths = batch.src.to(self.device), batch.src_lengths
            limit = max_lengths(lengths, d.max_length_ratio, d.max_length_offset)
            if seed is not None:  # each row its own stream: (seed, line, copy)
                seeds = tuple(sample_seed(seed, todo[row // copies], row % copies) for row in batch.indices)
                options = dataclasses.replace(options, seeds=seeds)
            if starts is not None:  # what each row's output begins with; the length limit counts it
                rows = tuple(starts[todo[row // copies]] for row in batch.indices)
                options = dataclasses.replace(options, prefixes=rows, pieces=self.target_pieces)
                limit = torch.maximum(limit, torch.tensor([len(p) for p in rows]))
            if terms is not None and any(terms):  # what each row's output must contain; the limit makes room
                rows = tuple(terms[todo[row // copies]] for row in batch.indices)
                options = dataclasses.replace(options, constraints=rows)
                limit = limit + torch.tensor([sum(c.length for c in row) for row in rows])
            with self._autocast():
                model = self._search_model([lines[todo[row // copies]] for row in batch.indices])
                hyps = strategy(model, src, lengths, limit, options)
            for row, nbest in zip(batch.indices, hyps):
                line = todo[row // copies]
                phrases = [c.phrase for c in terms[line]] if terms is not None else []
                outputs[line][row % copies] = [self._translation(ids[line], h, phrases) for h in nbest]
        return [out if not line.strip() else [t for copy in out for t in copy] for line, out in zip(lines, outputs)]

    def score(
        self, sources: list[str], targets: list[str] | list[list[int]], alpha: float | None = None
    ) -> list[tuple[float, float]]:
        """(log P(target | source), length-normalised score) of given translations, as beam
        search would score them with this alpha (default: decoding.alpha). A target is text
        or a list of subword ids (Translation.ids: exactly what the search produced)."""
        d = self.decoding(alpha=alpha)
        options = SearchOptions.of(d)
        src_ids = self.src_tok.encode(list(sources))
        tgt_ids = [t if isinstance(t, list) else self.tgt_tok.encode([t])[0] for t in targets]
        out: list[tuple[float, float]] = [(0.0, 0.0)] * len(sources)
        for batch in sorted_batches(src_ids, tgt_ids, d.batch_size):
            b = batch.to(self.device)
            with self._autocast():
                model = self._search_model([sources[i] for i in batch.indices])
                log_probs = sequence_log_probs(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out).tolist()
            for row, lp in zip(batch.indices, log_probs):
                out[row] = (lp, options.search_score(lp, len(tgt_ids[row]) + 1))  # T counts EOS
        return out

    def _search_model(self, texts: list[str]):
        """The model search runs for a batch of these input lines: the model itself, or an
        ensemble bound to the lines (each member encodes them with its own tokenizer)."""
        for_lines = getattr(self.model, "for_lines", None)
        return self.model if for_lines is None else for_lines(texts)

    @property
    def precision(self) -> str:
        """The search's precision: decoding.precision, but a run's fp16 (a GPU's setting) is fp32
        on the CPU, which has no fp16 LSTM."""
        stored = self.cfg.decoding.precision
        return "fp32" if stored == "fp16" and self.device.type == "cpu" else stored

    def _autocast(self) -> torch.autocast:
        """The model's precision in search and scoring: decoding.precision (log-probabilities stay fp32)."""
        return autocast(self.device, self.precision)

    def _translation(self, src_ids: list[int], hyp: Hypothesis, phrases: list[str] = ()) -> Translation:
        """The Translation of a hypothesis; `phrases`: its line's constraints (hyp.unmet indexes them)."""
        eos = ["</s>"]
        return Translation(
            one_line(self.tgt_tok.decode(hyp.tokens)),
            hyp.search_score,
            hyp.log_prob,
            self.src_tok.pieces(src_ids) + eos,
            self.tgt_tok.pieces(hyp.tokens) + eos,
            None if hyp.attention is None else hyp.attention.float().cpu(),
            hyp.tokens,
            [phrases[c] for c in hyp.unmet],
        )

    def too_long(self, lines: list[str]) -> list[tuple[int, int]]:
        """(index, subwords) of the lines longer than any source the model was trained on
        (data.max_src_length). They are translated whole all the same; quality may suffer."""
        limit = self.cfg.data.max_src_length
        return [(i, len(ids)) for i, ids in enumerate(self.src_tok.encode(lines)) if len(ids) > limit]

    def translate(
        self,
        lines: list[str],
        beam: int | None = None,
        alpha: float | None = None,
        prefixes: list[str] | None = None,
        constraints: list[list[str]] | None = None,
    ) -> list[str]:
        """The best translation of every line, as text (beginning with its prefix and containing
        its constraints, if given)."""
        results = self.search(lines, beam, alpha, n_best=1, prefixes=prefixes, constraints=constraints)
        return [nbest[0].text for nbest in results]
