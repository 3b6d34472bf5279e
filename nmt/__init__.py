"""nmt: neural machine translation with the classic attention model.

Library API (the CLI in nmt.cli is a thin layer over it):

    import nmt
    run_dir = nmt.train("configs/dates.yaml")
    tr = nmt.Translator.load(run_dir)
    tr.translate(["3 May 1979"], beam=3)                          # ['1979-05-03']
    tr.search(["3 May 1979"], beam=3, n_best=2, attention=True)   # scores, pieces, attention

The names below are imported on first use, so `nmt bleu` starts without loading torch; so are
the rooms and their modules: after `import nmt`, `nmt.evaluation.metrics.bleu(...)` works as
written.
"""

import importlib
import importlib.util

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "nmt.config",
    "load_config": "nmt.config",
    "train": "nmt.training.job",
    "Translator": "nmt.translate",
    "Translation": "nmt.translate",
    "NmtError": "nmt.errors",
    "ConfigError": "nmt.errors",
    "DataError": "nmt.errors",
    "CheckpointError": "nmt.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def submodules_on_use(package: str):
    """A module `__getattr__` for `package` (PEP 562): `package.NAME` imports the submodule
    `package.NAME` on first use, as `import package.NAME` would."""

    def __getattr__(name: str):
        if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


_submodule = submodules_on_use("nmt")


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    return _submodule(name)
