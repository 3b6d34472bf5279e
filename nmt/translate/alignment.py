"""Word alignments from attention: which source word each output word came from.

A translation's attention (T x S: one row per target subword, one column per source subword,
EOS last on both sides, nmt.translate.Translation) becomes links between words as its text
splits them: each subword belongs to the word of the detokenized text its characters are in
(sentencepiece's "▁" is a space; the unknown token decodes to " ⁇ ", a word of its own; a
subword of spaces only belongs to the word after it). The weight of
(source word i, target word j) is the attention summed over j's subwords (rows) and i's
subwords (columns); each target word links to the source word of highest weight: exactly one
link per target word. EOS is dropped on both sides (its row and its column). `pieces` links
subwords instead, for tasks where a whole output is one word (the dates).

Links print in the Pharaoh format `SRC-TGT` (0-based), as fast_align and Moses write them.
"""

from __future__ import annotations

import torch

from nmt.search.prefix import WORD_START

EOS_PIECE = "</s>"
#: the unknown token's piece, and what sentencepiece decodes it to
UNK_PIECE, UNK_SURFACE = "<unk>", " \u2047 "


def word_of_piece(pieces: list[str]) -> list[int]:
    """The index of the word of the detokenized text each subword (EOS excluded) is part of."""
    words, text = [], ""
    for piece in pieces:
        spelled = UNK_SURFACE if piece == UNK_PIECE else piece.replace(WORD_START, " ")
        text += spelled
        visible = (text + "x" if not spelled.strip() else text).split()  # only spaces: the next word's
        words.append(len(visible) - 1)
    last = len(text.split()) - 1
    return [min(word, last) for word in words]


def _without_eos(pieces: list[str]) -> list[str]:
    return pieces[:-1] if pieces and pieces[-1] == EOS_PIECE else pieces


def piece_alignment(src_pieces: list[str], tgt_pieces: list[str], attention: torch.Tensor) -> list[tuple[int, int]]:
    """(source subword, target subword) links, one per target subword (EOS dropped);
    attention: (len(tgt_pieces), len(src_pieces))."""
    S, T = len(_without_eos(src_pieces)), len(_without_eos(tgt_pieces))
    if S == 0:
        return []
    best = attention[:T, :S].argmax(dim=1).tolist()
    return [(i, j) for j, i in enumerate(best)]


def word_alignment(src_pieces: list[str], tgt_pieces: list[str], attention: torch.Tensor) -> list[tuple[int, int]]:
    """(source word, target word) links, one per target word: attention summed over each word's
    subwords, the highest source word taken (EOS dropped)."""
    src, tgt = _without_eos(src_pieces), _without_eos(tgt_pieces)
    if not src or not tgt:
        return []
    src_words, tgt_words = torch.tensor(word_of_piece(src)), torch.tensor(word_of_piece(tgt))
    weights = attention[: len(tgt), : len(src)].float()
    by_target = torch.zeros(int(tgt_words.max()) + 1, len(src)).index_add_(0, tgt_words, weights)
    by_word = torch.zeros(by_target.size(0), int(src_words.max()) + 1).index_add_(1, src_words, by_target)
    return [(i, j) for j, i in enumerate(by_word.argmax(dim=1).tolist())]


def pharaoh(links: list[tuple[int, int]]) -> str:
    """'0-0 1-2 ...': source-target pairs."""
    return " ".join(f"{i}-{j}" for i, j in links)


ALIGNMENTS = {"words": word_alignment, "pieces": piece_alignment}
