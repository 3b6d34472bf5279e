"""Where training stands (`Progress`): what a checkpoint saves as its "progress", what a resumed
run reads back, and what --resume requires."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields


@dataclass
class Progress:
    """Where training stands: what a checkpoint saves as its "progress" dict (`state_dict`), what
    a resumed run reads back (`from_state_dict`) and what --resume requires (`saved_keys`).

    `best` and `best_saved` are both dev metrics (valid_metric, as measured), usually equal.
    `best` is what patience (`bad_validations`) and the plateau schedule compare against; only
    scheduled validations (every training.valid_every steps) change it. `best_saved` is the
    metric of checkpoints/best.pt: the unscheduled validation at the end of a run that stops
    between two scheduled ones may improve it too, keeping the better model without changing
    the training state (see Trainer.validate), so that stopping and resuming trains exactly as
    going on would."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the current epoch, from 1 (0: none begun)
    best: float | None = None  # best dev metric of the scheduled validations (None: none yet)
    bad_validations: int = 0  # scheduled validations since `best` last improved
    batches_done: int = 0  # batches of the current epoch trained on, all ranks together
    last_valid: int = -1  # step of the last validation
    best_saved: float | None = None  # dev metric of checkpoints/best.pt
    dev_metrics: dict[str, float] = field(default_factory=dict)  # str(step) -> its dev metric, higher is better
    started: float = field(default_factory=time.time)  # time.time() less the seconds trained so far

    def state_dict(self) -> dict:
        """The checkpoint's "progress": the fields, by their SAVED_AS names; `started` as the
        seconds trained so far."""
        state = {SAVED_AS.get(f.name, f.name): getattr(self, f.name) for f in fields(self)}
        state["seconds"] = time.time() - self.started
        return state

    @classmethod
    def saved_keys(cls) -> frozenset[str]:
        """The keys of the checkpoint's "progress" dict: a run can resume from it when it has them all."""
        return frozenset(SAVED_AS.get(f.name, f.name) for f in fields(cls))

    @classmethod
    def from_state_dict(cls, state: dict) -> Progress:
        """The progress a checkpoint saved, its clock going on from the seconds trained."""
        values = {f.name: state[SAVED_AS.get(f.name, f.name)] for f in fields(cls) if f.name != "started"}
        values["dev_metrics"] = dict(values["dev_metrics"])
        return cls(**values, started=time.time() - state["seconds"])


#: the names fields are saved under in a checkpoint, where they differ (checkpoints written
#: before the rename keep loading: nmt.rundir.contents reads "scores" as the dev metrics)
SAVED_AS = {"started": "seconds", "dev_metrics": "scores"}
