"""Values from files anyone may have written (configs, the config inside a checkpoint).

YAML aliases let a 1 KB file describe a structure of a billion values ("billion laughs"):
loading it is cheap, because the aliases share their objects, but anything that walks it, a
`repr` in an error message for one, allocates gigabytes. `load_yaml` counts every value as
often as the aliases repeat it while the file is read and refuses a file that expands past a
limit; `short_repr` shows a value in an error message in a bounded number of characters, however
large or shared it is.
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml

from nmt.errors import ConfigError

#: the most values a YAML file may expand to (a whole config has about a hundred)
MAX_YAML_VALUES = 100_000
#: the longest repr of a value in an error message
REPR_LIMIT = 80


class _TooLarge(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that knows, for every node, how many values it stands for with its
    aliases expanded, and stops once one stands for more than `limit`."""

    def __init__(self, text: str, limit: int):
        super().__init__(text)
        self._limit = limit
        self._sizes: dict[int, int] = {}  # id(node) -> values it stands for, expanded

    def compose_node(self, parent, index):
        node = super().compose_node(parent, index)  # an alias gives the anchored node itself
        if id(node) not in self._sizes:
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            else:
                children = []
            # a node that contains itself (an alias inside its own anchor) counts once there
            size = 1 + sum(self._sizes.get(id(child), 1) for child in children)
            if size > self._limit:
                raise _TooLarge
            self._sizes[id(node)] = size
        return node

    def construct_mapping(self, node, deep=False):
        """A mapping whose keys are all different: YAML requires it, and PyYAML would keep the
        last of two `training:` sections without a word."""
        seen = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, key.value) in seen:
                    message = f"the key {key.value!r} appears twice"
                    raise yaml.constructor.ConstructorError(None, None, message, key.start_mark)
                seen.add((key.tag, key.value))
        return super().construct_mapping(node, deep)


def load_yaml(text: str, name: str, limit: int = MAX_YAML_VALUES) -> Any:
    """The data of YAML `text` (PyYAML's safe subset), or a one-line ConfigError that starts
    with `name` (the file): invalid YAML (with its line; a key twice in one mapping is invalid),
    more than `limit` values once aliases are expanded, nesting deeper than Python's stack, an
    integer too long to convert."""
    try:
        return _load_bounded(text, limit)
    except _TooLarge:
        raise ConfigError(f"{name}: refused: more than {limit:,} values once its YAML aliases are expanded") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (a control character, say)
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(
            f"{name} line {line}: not valid YAML (the character U+{e.character:04X} is not allowed)"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    except RecursionError:
        raise ConfigError(f"{name}: not valid YAML (nested too deeply)") from None
    except ValueError as e:  # int() of more than sys.get_int_max_str_digits() digits
        raise ConfigError(f"{name}: not valid YAML ({e})") from None


def _load_bounded(text: str, limit: int) -> Any:
    """The data of `text` through _BoundedLoader (whose constructor already reads the text: a
    character YAML does not allow raises there)."""
    loader = _BoundedLoader(text, limit)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _ShortRepr(reprlib.Repr):
    def repr_bytes(self, x: bytes, level: int) -> str:
        return repr(x[: self.maxstring]) + ("..." if len(x) > self.maxstring else "")

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # more digits than Python converts
            return f"<an integer of about {x.bit_length() * 0.30103:.0f} digits>"


_REPR = _ShortRepr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 6, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 70, 70, 70


def short_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """repr(value) for an error message: at most `limit` characters (a longer one ends in '...'),
    computed without walking more than a few elements of any container."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a repr that fails is still shown as something
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
