"""What ``momsearch run`` checks before it creates the study or starts a worker, so a bad setting or a bad
data file is one line and exit code 2 instead of a study full of failed trials."""

from __future__ import annotations

from typing import Any

from .. import catalog
from ..devices import check_available
from .settings_check import check_study_settings


def check_before_run(study_file, device: str, device_flag: bool) -> None:
    """Check the sampler and pruner, that ``device`` exists here, an ``.npz`` task's data (read once), and
    that the space's largest configurations are not absurdly large.

    Args:
        study_file: the validated study (``momsearch.spec.StudyFile``).
        device: the device the run will use (the ``--device`` flag, else the file's ``study.device``).
        device_flag: whether ``device`` came from ``--device`` (for the message).

    Raises:
        SpecError, ConfigError, TaskError: one line naming the setting or the file and what is wrong.
    """
    check_study_settings(study_file.study)
    check_available(device, "--device" if device_flag else "study.device")
    io = None
    if "npz" in study_file.task:
        from ..tasks import load

        task = load(study_file.task)  # a truncated, corrupt or mislabelled file fails here, before any trial
        io = {"input_size": task.input_size, "output_size": task.output_size, "input": task.input,
              "target": task.target}
    check_largest(study_file, io)


class _Largest:
    """A stand-in for an Optuna trial that picks, in one block kind, the largest value of every number
    (the upper end of a range, the largest of numeric choices) and the first of any other choice."""

    def __init__(self, kind: str):
        self.kind = kind

    def suggest_categorical(self, name: str, choices: list) -> Any:
        if name == "block":
            return self.kind
        numbers = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        return max(numbers) if numbers and len(numbers) == len(choices) else choices[0]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return high

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None,
                      log: bool = False) -> float:
        return high


def check_largest(study_file, io: dict | None = None) -> None:
    """Refuse a space whose largest configuration of some block kind has more parameters than the limit
    (``momsearch.tasks.arrays.check_model_size``), before any trial.

    Without the task's ``io`` (a built-in or module task is only generated inside the workers) the count
    uses one input feature and one output, a lower bound: only the block's own size is judged here; every
    trial checks its exact count again before it allocates anything.
    """
    from ..tasks.arrays import check_model_size

    lower_bound = io is None
    if io is None:
        known = catalog.TASKS.get(study_file.task.get("name"), {})
        io = {"input_size": 1, "output_size": 1, "input": known.get("input", "sequence"),
              "target": known.get("target", "last")}
    for kind in catalog.BLOCKS:
        try:
            config = study_file.space.suggest(_Largest(kind))
        except Exception:  # noqa: BLE001 - the space has no such block kind (or cannot take this path)
            continue
        if config.get("block") == kind:
            check_model_size(f"{study_file.name} (its largest {kind} configuration)", config, io,
                             lower_bound=lower_bound)
