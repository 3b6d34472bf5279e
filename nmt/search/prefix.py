"""Outputs that begin with given text (interactive translation: a translator typed the start).

A `Prefix` is what one output must begin with: `tokens`, target ids forced one per step (the
search continues from them: force-decoding), and `typed`, the characters of a last word still
being typed, as pieces spell them (a word starts with "▁"), which the next tokens must spell
out: a piece is allowed while it and the characters left agree (one begins the other), so
"▁gre" lets the search go on with "▁green", or "▁g" then "re", never "▁grass". A prefix whose
last word is complete (the text ended with a space: `new_word`) goes on with a piece that starts
a word, or ends. The forced
tokens keep the model's own log-probabilities: a hypothesis's score is that of the whole
output, as forced scoring (`nmt score`) gives it.

`PrefixRule.allowed` is applied to every step's log-probabilities (greedy and beam search),
before the search chooses; it only removes choices, so the exact stopping rule of beam search
stays exact. A sentence without a prefix is searched as without the rule.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass

import torch

from nmt.data.tokenizer import EOS

#: the character sentencepiece writes for a word's start
WORD_START = "\u2581"


@dataclass(frozen=True)
class Prefix:
    """The start one output must have: forced target ids, then the typed characters."""

    tokens: tuple[int, ...] = ()
    typed: str = ""
    new_word: bool = False  # after the tokens: a piece that starts a word, or the end

    def __len__(self) -> int:
        """The most output tokens the prefix can take (each typed character at most one)."""
        return len(self.tokens) + len(self.typed)

    def __bool__(self) -> bool:
        return bool(self.tokens or self.typed or self.new_word)


class PrefixRule:
    """The prefixes of a batch's rows (one Prefix per sentence) over a target vocabulary of
    piece strings (`pieces[i]` spells id i; special tokens spell nothing a word has)."""

    def __init__(self, prefixes: tuple[Prefix, ...], pieces: tuple[str, ...]):
        self.prefixes, self.pieces = prefixes, pieces
        self._sorted = sorted((piece, i) for i, piece in enumerate(pieces) if piece)
        self._ids = {piece: i for i, piece in enumerate(pieces)}
        self._not_word_starts = torch.tensor([not piece.startswith(WORD_START) for piece in pieces])
        self._not_word_starts[EOS] = False
        self.longest = max(len(prefix) for prefix in prefixes)  # no row is constrained after so many tokens

    def allowed(self, log_probs: torch.Tensor, sentences: list[int], histories: torch.Tensor) -> torch.Tensor:
        """log_probs (N, V) with what row r may not produce next made -inf: row r extends the
        tokens histories[r] ((N, t), t tokens so far) of sentence `sentences[r]`. Its forced
        token while the prefix's tokens last; then, while typed characters are left, the pieces
        that agree with them (not EOS), or after a complete last word a word's start or EOS;
        then anything."""
        if histories.size(1) > self.longest:  # past every prefix: the search's own step
            return log_probs
        mask = None
        for r, (b, history) in enumerate(zip(sentences, histories.tolist())):
            choices = self._choices(self.prefixes[b], history)
            if choices is None:
                continue
            if mask is None:
                mask = torch.zeros(log_probs.shape, dtype=torch.bool)
            if isinstance(choices, torch.Tensor):
                mask[r] = choices
            else:
                mask[r] = True
                mask[r, list(choices)] = False
        if mask is None:
            return log_probs
        return log_probs.masked_fill(mask.to(log_probs.device), float("-inf"))

    def _choices(self, prefix: Prefix, history: list[int]) -> tuple[int, ...] | torch.Tensor | None:
        """The ids allowed after `history`, or a mask of those forbidden (V,); None: any."""
        t = len(history)
        if t > len(prefix):
            return None
        if t < len(prefix.tokens):
            return (prefix.tokens[t],)
        if t == len(prefix.tokens) and prefix.new_word:
            return self._not_word_starts
        left = self.left_to_type(prefix, history)
        return self._agreeing(left) if left else None

    def left_to_type(self, prefix: Prefix, history: list[int]) -> str:
        """The typed characters the tokens after the prefix's have not spelled yet."""
        left = prefix.typed
        for token in history[len(prefix.tokens) :]:
            piece = self.pieces[token]
            if not left or not left.startswith(piece):
                return ""  # the piece spelled the rest (and more): the word is complete
            left = left[len(piece) :]
        return left

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one rule lives for one batch
    def _agreeing(self, left: str) -> tuple[int, ...] | None:
        """Pieces that begin `left` or that `left` begins; None when no piece does (characters
        the vocabulary cannot spell: the rule lets go rather than wreck the output)."""
        found = [self._ids[left[:k]] for k in range(1, len(left)) if left[:k] in self._ids]
        start = bisect.bisect_left(self._sorted, (left, -1))
        for piece, i in self._sorted[start:]:
            if not piece.startswith(left):
                break
            found.append(i)
        found = [i for i in found if i != EOS]
        return tuple(found) if found else None


def split_prefix(text: str) -> tuple[str, str]:
    """A prefix as typed -> (its complete words, the last word still being typed). A prefix that
    ends with whitespace has no word being typed; otherwise the last word may not be complete
    ("A man" may go on as "A mangy dog")."""
    if not text or text[-1].isspace():
        return text, ""
    cut = max(text.rfind(" "), text.rfind("\t")) + 1
    return text[:cut], text[cut:]
