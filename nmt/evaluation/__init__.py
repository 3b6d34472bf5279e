"""Evaluation: corpus metrics as sacrebleu computes them (metrics), paired significance tests,
a split translated and scored (splits), search-error analysis, and tuning beam and alpha."""

from nmt import submodules_on_use

__getattr__ = submodules_on_use(__name__)  # `nmt.ROOM.MODULE` after `import nmt`
