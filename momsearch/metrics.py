"""Trial measurements: a device timer, NFE collection, parameter count and peak memory.

Conventions: any submodule with attributes ``nfe_forward`` and ``nfe_backward`` is an ODE block (ints, or
``None`` when not measured); a model without one reports no NFE at all. Time on CUDA is measured with CUDA
events (synchronised); on CPU with the process time (``time.process_time``). Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the process's peak resident set size on CPU.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn


def device_name(device: torch.device) -> str:
    """The device as recorded in a trial, e.g. ``"cpu"`` or ``"cuda:0 NVIDIA H100 80GB HBM3"``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return str(device)


class DeviceTimer:
    """Accumulates the time spent inside ``with timer:`` blocks, synchronised on the device.

    On CUDA each block is bracketed by CUDA events and the total is read after a synchronisation; on other
    devices ``time.process_time`` is used (CPU time of the whole process, all threads). Wall-clock time of
    the same blocks is kept too.

    Args:
        device: the device the timed work runs on.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.wall_seconds = 0.0
        self._cpu_seconds = 0.0
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._start: tuple | None = None

    @property
    def cuda(self) -> bool:
        """Whether the timer uses CUDA events."""
        return self.device.type == "cuda"

    def __enter__(self) -> DeviceTimer:
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            start.record(torch.cuda.current_stream(self.device))
            self._start = (start, time.perf_counter())
        else:
            self._start = (time.process_time(), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        begin, wall = self._start
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record(torch.cuda.current_stream(self.device))
            self._events.append((begin, end))
            end.synchronize()
        else:
            self._cpu_seconds += time.process_time() - begin
        self.wall_seconds += time.perf_counter() - wall
        self._start = None

    @property
    def seconds(self) -> float:
        """Device seconds accumulated so far (CUDA: the sum of the event intervals)."""
        if self.cuda:
            return sum(start.elapsed_time(end) for start, end in self._events) / 1000.0
        return self._cpu_seconds


def ode_modules(model: nn.Module) -> list[nn.Module]:
    """The submodules that count function evaluations (attributes ``nfe_forward`` and ``nfe_backward``)."""
    return [m for m in model.modules() if hasattr(m, "nfe_forward") and hasattr(m, "nfe_backward")]


class NFECounter:
    """Collects the NFE of a model's ODE blocks after each training iteration.

    Call :meth:`record` after ``loss.backward()``: it sums ``nfe_forward`` and ``nfe_backward`` over the
    ODE blocks (a ``None`` makes that iteration's sum ``None``: not measured).

    Args:
        model: the trained model.
    """

    def __init__(self, model: nn.Module):
        self.modules = ode_modules(model)
        self.forward: list[int | None] = []
        self.backward: list[int | None] = []

    def record(self) -> None:
        """Add the current iteration's counts."""
        if self.modules:
            self.forward.append(_sum(m.nfe_forward for m in self.modules))
            self.backward.append(_sum(m.nfe_backward for m in self.modules))

    def metrics(self) -> dict[str, float | int | None]:
        """``nfe_forward`` and ``nfe_backward`` (means per iteration) and ``nfe_total``; empty without ODE blocks.

        ``nfe_total`` sums forward and backward evaluations over the training; when the backward is not
        measured (``nfe_backward`` is ``None``) it counts the forward evaluations only.
        """
        if not self.modules:
            return {}
        forward, backward = _total(self.forward), _total(self.backward)
        iterations = len(self.forward)
        return {
            "nfe_forward": None if forward is None or not iterations else forward / iterations,
            "nfe_backward": None if backward is None or not iterations else backward / iterations,
            "nfe_total": None if forward is None else forward + (backward or 0),
        }


def _sum(counts) -> int | None:
    counts = list(counts)
    return None if any(c is None for c in counts) else int(sum(counts))


def _total(counts: list[int | None]) -> int | None:
    return None if not counts or any(c is None for c in counts) else int(sum(counts))


def param_count(model: nn.Module) -> int:
    """Trainable parameters of ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory measurement: CUDA's peak statistics, or on Linux the process's peak resident
    set size (writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM``), so each run of a worker that trains
    many models reports its own peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif _PROC_CLEAR_REFS.exists():
        try:
            _PROC_CLEAR_REFS.write_text("5")
        except OSError:  # not permitted in some sandboxes: the peak then covers the process's life
            pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: ``torch.cuda.max_memory_allocated`` on CUDA (since the last reset), else the
    process's peak resident set size since the last reset (Linux ``VmHWM``; elsewhere ``getrusage``, over
    the process's life)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if _PROC_STATUS.exists():
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
