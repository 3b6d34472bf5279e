"""The run directory: its layout (every file's name), checkpoints (atomic writes, safe loads),
the rules of starting, clearing and resuming a run (and its lock), metrics.jsonl, the defaults a
command takes from a run (the latest run, stored decoding defaults), and checkpoint averaging."""

from nmt import submodules_on_use

__getattr__ = submodules_on_use(__name__)  # `nmt.ROOM.MODULE` after `import nmt`
