"""The few exception types a user sees.

Everything below the CLI raises one of these; `nmt.cli` turns them into a one-line
message (``nmt: config error: training.lr: expected a positive number, got 'abc'``)
and a non-zero exit status. Anything else that escapes is a bug in nmt.
"""


class NmtError(Exception):
    """Base class: a problem with the user's input, not a bug in nmt.

    `shown_by_rank0`: in distributed training, rank 0 prints this error and the other ranks,
    which raise it too (to stop), stay silent. Set True on the other ranks' copies by
    nmt.training.distributed (`Processes.on_main`) and by the Trainer when a stop signal interrupts
    training; read by `nmt.cli.main`."""

    kind = "error"
    exit_code = 1
    shown_by_rank0: bool = False

    def __str__(self) -> str:  # one line, always
        return " ".join(super().__str__().split())


class ConfigError(NmtError):
    """A config key is unknown, has the wrong type, or an impossible value."""

    kind = "config error"
    exit_code = 2


class DataError(NmtError):
    """A data file is missing, unreadable, misaligned or not valid text."""

    kind = "data error"


class ProcessLost(NmtError):
    """In distributed training another process of the group stopped (killed, out of memory) or
    cannot be reached, so this one stops too (nmt.training.distributed)."""

    kind = "stopped"


class OutOfMemory(NmtError):
    """Training ran out of memory (the allocator failed; a process the kernel kills for it gets
    SIGKILL and says nothing, see ProcessLost)."""

    kind = "out of memory"


class CheckpointError(NmtError):
    """A run directory or checkpoint is missing, corrupt or incompatible."""

    kind = "checkpoint error"


class MissingDependency(NmtError):
    """An optional package that a command needs is not installed."""

    kind = "missing dependency"


class Interrupted(NmtError):
    """Training stopped by SIGINT or SIGTERM, after saving a checkpoint to resume from."""

    kind = "interrupted"
    exit_code = 130
