"""What ``momsearch run`` checks before it creates the study or starts a worker, so a bad setting or a bad
data file is one line and exit code 2 instead of a study full of failed trials."""

from __future__ import annotations

from ..devices import check_available
from .settings_check import check_study_settings


def check_before_run(study_file, device: str, device_flag: bool) -> None:
    """Check the sampler and pruner, that ``device`` exists here, and an ``.npz`` task's data (read once).

    Args:
        study_file: the validated study (``momsearch.spec.StudyFile``).
        device: the device the run will use (the ``--device`` flag, else the file's ``study.device``).
        device_flag: whether ``device`` came from ``--device`` (for the message).

    Raises:
        SpecError, ConfigError, TaskError: one line naming the setting or the file and what is wrong.
    """
    check_study_settings(study_file.study)
    check_available(device, "--device" if device_flag else "study.device")
    if "npz" in study_file.task:
        from ..tasks import load

        load(study_file.task)  # a truncated, corrupt or mislabelled file fails here, before any trial
