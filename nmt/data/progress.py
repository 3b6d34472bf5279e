"""Progress of the long stages of data preparation (sampling for sentencepiece, encoding): a
tqdm bar on a terminal (bytes read of the input with the ETA, and the lines or pairs done and
their rate), nothing elsewhere: there each stage says one log line when it ends."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from tqdm import tqdm

from nmt.rundir.log import Log


@contextlib.contextmanager
def stage(log: Log, what: str, total_bytes: int, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar for one stage, drawn while the `with` block runs; yields the function to
    call with (items done, bytes of input read) since its last call, and with (0, 0) when all
    is read and the stage goes on computing (sentencepiece's training on its sample)."""
    bar = tqdm(
        total=total_bytes,
        desc=what,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        leave=False,
        dynamic_ncols=True,
        disable=log.silent or not log.tty,
        mininterval=0.5,
    )
    done, t0 = [0], time.time()

    def advance(items: int, size: int) -> None:
        done[0] += items
        if not bar.disable and items == size == 0:
            bar.set_postfix_str(f"{done[0]:,} {unit} read, working on them", refresh=True)
        elif not bar.disable:
            rate = done[0] / max(time.time() - t0, 1e-9)
            bar.set_postfix_str(f"{done[0]:,} {unit}, {rate:,.0f} {unit}/s", refresh=False)
            bar.update(size)

    try:
        yield advance
    finally:
        bar.close()
