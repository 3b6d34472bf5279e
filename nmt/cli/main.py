"""The `nmt` command's entry point: parse the arguments, run the command, and turn what it
raises into one line and an exit code.

Library code raises NmtError subclasses; `main` prints them as one line, `nmt: <kind>:
<message>`, and exits with their code (2 for config errors, 1 otherwise). A reader that goes
away (`| head`) ends the command quietly, with status 0. The commands are in
training_commands, translation_commands and evaluation_commands; their options in parser.
"""

from __future__ import annotations

import os
import sys

from nmt.cli.checks import bad_combination
from nmt.cli.evaluation_commands import EVALUATION_COMMANDS
from nmt.cli.parser import build_parser
from nmt.cli.streams import say, silence_broken_streams
from nmt.cli.training_commands import TRAINING_COMMANDS
from nmt.cli.translation_commands import TRANSLATION_COMMANDS
from nmt.errors import NmtError

COMMANDS = {**TRAINING_COMMANDS, **TRANSLATION_COMMANDS, **EVALUATION_COMMANDS}


def _rank_prefix() -> str:
    """'rank N: ' in the processes of distributed training other than rank 0 (torchrun sets RANK)."""
    rank = os.environ.get("RANK", "0")
    return "" if rank in ("", "0") else f"rank {rank}: "


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = bad_combination(args)
    if problem:
        parser.error(problem)  # usage line + message, exit 2
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, where a reader that went away is caught, not at the interpreter's exit
        return code
    except NmtError as e:
        if not e.shown_by_rank0:  # distributed training: rank 0 says it
            say(f"nmt: {_rank_prefix()}{e.kind}: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        say("nmt: interrupted")
        return 130
    except BrokenPipeError:  # the reader of stdout or stderr went away (e.g. `| head`): not an error
        silence_broken_streams()
        return 0
