"""Translation: a run directory (or checkpoint) in, text out, exactly one result per input line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nmt.checkpoint import latest_run, load_checkpoint, resolve_checkpoint
from nmt.config import Config, config_from_dict, resolve_device
from nmt.data.batching import sorted_batches
from nmt.data.tokenizer import Tokenizer
from nmt.errors import CheckpointError, ConfigError
from nmt.model import Seq2Seq
from nmt.runtime import keep_freed_memory
from nmt.search import Hypothesis, beam_search, greedy, max_lengths


@dataclass
class Translation:
    """One output for one input line.

    score: length-normalised log-probability (what beam search ranks by); log_prob: the sum.
    src_pieces / tgt_pieces: subwords, each ending with "</s>"; attention: (T, S) weights,
    rows = tgt_pieces, columns = src_pieces (only when asked for).
    """

    text: str
    score: float
    log_prob: float
    src_pieces: list[str]
    tgt_pieces: list[str]
    attention: torch.Tensor | None = None


class Translator:
    """A trained model ready to translate: `Translator.load("runs/dates").translate(["3 May 1979"])`."""

    def __init__(self, model: Seq2Seq, src_tok: Tokenizer, tgt_tok: Tokenizer, cfg: Config, device: torch.device):
        self.model, self.src_tok, self.tgt_tok, self.cfg, self.device = model.eval(), src_tok, tgt_tok, cfg, device

    @classmethod
    def from_checkpoint(cls, state: dict, device: str = "auto") -> "Translator":
        """Build from a loaded checkpoint dict (see nmt.checkpoint)."""
        cfg = config_from_dict(state["config"])
        try:
            src_tok = Tokenizer(state["tokenizers"]["src"])
            tgt_tok = src_tok if state["tokenizers"]["tgt"] is None else Tokenizer(state["tokenizers"]["tgt"])
        except (RuntimeError, TypeError, KeyError):
            raise CheckpointError("its sentencepiece models are missing or corrupt") from None
        model = Seq2Seq(cfg.model, len(src_tok), len(tgt_tok))
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, TypeError, AttributeError) as e:
            raise CheckpointError(f"its weights do not fit its config ({str(e).splitlines()[0]})") from None
        dev = resolve_device(device)
        return cls(model.to(dev), src_tok, tgt_tok, cfg, dev)

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto") -> "Translator":
        """Load a run directory (its best checkpoint), a checkpoint file, or (None) the latest run."""
        ckpt = resolve_checkpoint(latest_run() if path is None else path)
        keep_freed_memory()
        state = load_checkpoint(ckpt)  # its errors name the file
        try:
            return cls.from_checkpoint(state, device)
        except (ConfigError, CheckpointError) as e:
            raise CheckpointError(f"{ckpt}: {e}") from None

    def search(self, lines: list[str], beam: int | None = None, alpha: float | None = None,
               n_best: int | None = None, attention: bool = False) -> list[list[Translation]]:
        """The n_best translations of every line, best first. None means the config's default.

        beam 1 is greedy search. An empty (or blank) line gives one empty translation.
        """
        d = self.cfg.decoding
        beam, alpha, n_best = beam or d.beam_size, d.alpha if alpha is None else alpha, n_best or d.n_best
        if n_best > beam:
            raise ConfigError(f"n_best: expected at most the beam size ({beam}), got {n_best}")
        ids = self.src_tok.encode(list(lines))
        results: list[list[Translation]] = [[Translation("", 0.0, 0.0, [], [])] * n_best for _ in lines]
        todo = [i for i, line in enumerate(lines) if line.strip()]
        for batch in sorted_batches([ids[i] for i in todo], None, d.batch_size):
            src, lengths = batch.src.to(self.device), batch.src_lengths
            limit = max_lengths(lengths, d.max_length_ratio, d.max_length_offset)
            if beam == 1:
                hyps = greedy(self.model, src, lengths, limit, alpha, d.length_penalty, attention)
            else:
                hyps = beam_search(self.model, src, lengths, limit, beam, alpha, d.length_penalty, n_best, attention)
            for row, nbest in zip(batch.indices, hyps):
                line = todo[row]
                results[line] = [self._translation(ids[line], h) for h in nbest]
        return results

    def _translation(self, src_ids: list[int], hyp: Hypothesis) -> Translation:
        eos = ["</s>"]
        return Translation(
            self.tgt_tok.decode(hyp.tokens), hyp.score, hyp.log_prob,
            self.src_tok.pieces(src_ids) + eos, self.tgt_tok.pieces(hyp.tokens) + eos,
            None if hyp.attention is None else hyp.attention.float().cpu(),
        )

    def translate(self, lines: list[str], beam: int | None = None, alpha: float | None = None) -> list[str]:
        """The best translation of every line, as text."""
        return [nbest[0].text for nbest in self.search(lines, beam, alpha, n_best=1)]
