"""Evaluation: corpus metrics as sacrebleu computes them (metrics), paired significance tests,
a split translated and scored (splits), search-error analysis, and tuning beam and alpha."""
