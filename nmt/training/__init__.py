"""Training: the job behind `nmt train` (job: open the run, prepare the data, train, report the
test score), the trainer's loop and validation (trainer), where it stands (state), the objective,
the learning-rate schedule, distributed processes, and the training log."""

from nmt import submodules_on_use

__getattr__ = submodules_on_use(__name__)  # `nmt.ROOM.MODULE` after `import nmt`
