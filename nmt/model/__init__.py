"""The attention model, read in this order: encoder, attention, decoder, seq2seq (and
frozen: a trained model prepared for search)."""

from nmt.model.frozen import FrozenSeq2Seq
from nmt.model.seq2seq import ENCODERS, Seq2Seq, build_model

__all__ = ["ENCODERS", "FrozenSeq2Seq", "Seq2Seq", "build_model"]

from nmt import submodules_on_use

__getattr__ = submodules_on_use(__name__)  # `nmt.ROOM.MODULE` after `import nmt`
