"""Whether a device a study asks for exists on this machine, checked once before any trial starts."""

from __future__ import annotations

from .errors import ConfigError


def check_available(device: str, where: str = "--device") -> None:
    """Raise ConfigError (one line) if ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) cannot be used here.

    Args:
        device: the device string (its form was already checked by the study-file rules).
        where: the flag or key that set it, for the message.
    """
    if device in ("auto", "cpu"):
        return
    import torch

    if not device.startswith("cuda"):
        raise ConfigError(f"{where}={device!r}: not auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"{where}={device!r}: no CUDA device is available on this machine (use cpu or auto)")
    count = torch.cuda.device_count()
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise ConfigError(f"{where}={device!r}: this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}")
