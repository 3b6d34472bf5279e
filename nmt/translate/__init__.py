"""Translation with a trained model: the translator (search over a frozen model, one result per
input line), loading (run directory, checkpoint, latest run, stored decoding defaults),
ensembles, int8 layers, and forced scoring of given translations."""

from nmt.translate.translator import TEMPERATURES, Translation, Translator, one_line, temperature_error

__all__ = ["TEMPERATURES", "Translation", "Translator", "one_line", "temperature_error"]

from nmt import submodules_on_use

__getattr__ = submodules_on_use(__name__)  # `nmt.ROOM.MODULE` after `import nmt`
