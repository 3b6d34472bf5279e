"""nmt: neural machine translation with the classic attention model.

Library API (the CLI in nmt.cli is a thin layer over it):

    from nmt import Translator, train, load_config
    run_dir = train("configs/dates.yaml")
    tr = Translator.load(run_dir)
    tr.translate(["3 May 1979"], beam=3)            # ['1979-05-03']
    tr.search(["3 May 1979"], beam=3, n_best=2, attention=True)   # scores, pieces, attention
"""

__version__ = "0.1.0"

from nmt.config import Config, load_config
from nmt.errors import CheckpointError, ConfigError, DataError, NmtError
from nmt.train import train
from nmt.translate import Translation, Translator

__all__ = ["Config", "load_config", "train", "Translator", "Translation",
           "NmtError", "ConfigError", "DataError", "CheckpointError", "__version__"]
