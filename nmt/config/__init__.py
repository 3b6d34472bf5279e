"""The typed config: `sections` holds every key with its default, range and help; `parse`
reads YAML and `--set KEY=VALUE` onto them and checks every value."""

from nmt.config.parse import (
    config_from_dict,
    config_to_dict,
    load_config,
    reference_yaml,
    replace_checked,
    save_config,
)
from nmt.config.sections import (
    Config,
    DataConfig,
    DecodingConfig,
    ModelConfig,
    SamplingConfig,
    TokenizerConfig,
    TrainingConfig,
)

__all__ = [
    "Config",
    "DataConfig",
    "DecodingConfig",
    "ModelConfig",
    "SamplingConfig",
    "TokenizerConfig",
    "TrainingConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "reference_yaml",
    "replace_checked",
    "save_config",
]

from nmt import submodules_on_use

__getattr__ = submodules_on_use(__name__)  # `nmt.ROOM.MODULE` after `import nmt`
