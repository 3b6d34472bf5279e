"""The attention model, read in this order: encoder, attention, decoder, seq2seq."""

from nmt.model.seq2seq import ENCODERS, Seq2Seq, build_model

__all__ = ["ENCODERS", "Seq2Seq", "build_model"]
