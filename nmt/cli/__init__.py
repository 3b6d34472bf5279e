"""The `nmt` command (`main`): a thin layer over the library that parses the arguments
(`parser`), runs a command (`commands_*`), prints results and one-line errors, and chooses the
exit code. Only this package prints a user's mistakes; everything below it raises NmtError."""

from nmt.cli.main import main

__all__ = ["main"]

from nmt import submodules_on_use

__getattr__ = submodules_on_use(__name__)  # `nmt.ROOM.MODULE` after `import nmt`
