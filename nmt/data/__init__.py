"""Data: corpus files, sentencepiece, the binary corpus, batching, the dates task, preparing a run's data."""

from nmt import submodules_on_use

__getattr__ = submodules_on_use(__name__)  # `nmt.ROOM.MODULE` after `import nmt`
