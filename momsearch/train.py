"""The training loop: ``fit(model, task, settings, callbacks)`` -> :class:`FitResult`. Knows nothing of Optuna.

Callbacks receive each epoch's validation metrics; a callback that raises :class:`StopRun` ends the run early
with ``status="stopped"`` and what it measured so far (how a pruned trial keeps its cost); any other exception
it raises leaves ``fit`` unchanged. A non-finite loss, an exceeded NFE budget or a CUDA out-of-memory error end the run
with ``status="failed"`` and a one-line ``reason``; every other exception propagates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from . import catalog
from .errors import NFEBudgetExceeded
from .metrics import DeviceTimer, NFECounter, device_name, param_count, peak_memory_mb, reset_peak_memory
from .tasks import Task

Callback = Callable[[int, dict], Any]
STEP_EVERY = 3  # "step" schedule: lr x 0.1 after each third of the epochs


@dataclass
class FitResult:
    """The outcome of :func:`fit`.

    Attributes:
        status: ``"complete"``, ``"stopped"`` (a callback raised :class:`StopRun`) or ``"failed"``.
        reason: ``None``, or one line saying why the run stopped or failed.
        metrics: the ``catalog.METRICS`` keys that apply: validation metrics of the best epoch, or of the last
            epoch run when stopped (the values the callback judged; no test metrics then), and the cost of every
            epoch run (NFE, device and wall seconds, parameters, peak memory, epochs).
        history: one dict per epoch run (``epoch``, the task metric, ``loss``, ``train_loss``).
        state_dict: weights of the best validation epoch on the CPU (``None`` if no epoch finished).
    """

    status: str
    reason: str | None
    metrics: dict[str, Any]
    history: list[dict] = field(default_factory=list)
    state_dict: dict[str, torch.Tensor] | None = None


class StopRun(Exception):
    """Raised by a callback to end the run after this epoch with ``status="stopped"``; its message is the reason
    (e.g. ``pruned at epoch 3 by MedianPruner``)."""


class _Failed(Exception):
    """Internal: ends the run with ``status="failed"`` and this reason."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_optimizer(params: Iterable[nn.Parameter], settings: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer that ``settings`` name (``adam``, ``adamw``, ``rmsprop``, ``sgd``)."""
    lr, wd, momentum = settings["lr"], settings["weight_decay"], settings["momentum"]
    name = settings["optimizer"]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, momentum=momentum)
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=momentum)


def make_schedule(optimizer: torch.optim.Optimizer, settings: Mapping[str, Any]):
    """The per-epoch learning-rate schedule: ``cosine`` over the epochs, ``step`` (x0.1 every third), or None."""
    if settings["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings["epochs"])
    if settings["schedule"] == "step":
        step = max(1, settings["epochs"] // STEP_EVERY)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=0.1)
    return None


def fit(model: nn.Module, task: Task, train_settings: Mapping[str, Any] | None = None,
        callbacks: Iterable[Callback] = (), device: str | torch.device | None = None, seed: int = 0,
        progress: bool = False) -> FitResult:
    """Train ``model`` on ``task`` and measure the run.

    Args:
        model: any module; called as ``model(x, times)`` when the task has times, else ``model(x)``.
        task: the task (its splits, loss and metric).
        train_settings: keys of ``catalog.TRAIN``; missing keys take the catalog defaults.
        callbacks: ``cb(epoch, metrics)`` after each epoch with that epoch's validation metrics
            (the task metric, ``loss``, ``train_loss``, ``epoch``); :class:`StopRun` ends the run early,
            other exceptions propagate.
        device: ``"cpu"``, ``"cuda:1"``, ...; ``None``: CUDA when available.
        seed: seeds the shuffling and every torch random number drawn during training (the caller's
            random state is restored afterwards); the same seed gives the same metrics on the CPU.
        progress: show a tqdm progress bar over the epochs.

    Returns:
        A :class:`FitResult`; the model is left on ``device`` holding the weights of the best epoch.
    """
    settings = catalog.check_params("train", catalog.TRAIN, train_settings or {})
    device = resolve_device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return _Run(model, task, settings, list(callbacks), device, seed, progress).fit()


class _Run:
    """The state of one :func:`fit` call."""

    def __init__(self, model, task, settings, callbacks, device, seed, progress):
        self.model, self.task, self.settings, self.callbacks = model.to(device), task, settings, callbacks
        self.device, self.progress = device, progress
        self.splits = {name: tuple(t.to(device) for t in getattr(task, name)) for name in ("train", "val", "test")}
        self.generator = torch.Generator().manual_seed(seed)
        self.timer = DeviceTimer(device)
        self.nfe = NFECounter(model)
        self.history: list[dict] = []
        self.best: tuple[float, dict] | None = None  # (score, state_dict)
        self.sign = 1.0 if task.metric == "accuracy" else -1.0  # larger sign * score is better

    def fit(self) -> FitResult:
        optimizer = make_optimizer(self.model.parameters(), self.settings)
        schedule = make_schedule(optimizer, self.settings)
        reset_peak_memory(self.device)
        status, reason, stale = "complete", None, 0
        epochs = tqdm(range(1, self.settings["epochs"] + 1), desc="train", disable=not self.progress, leave=False)
        for epoch in epochs:
            try:
                train_loss = self._train_epoch(optimizer, epoch)
                metric, loss = self._evaluate("val", epoch)
            except _Failed as err:
                status, reason = "failed", str(err)
                break
            if schedule is not None:
                schedule.step()
            entry = {"epoch": epoch, self.task.metric: metric, "loss": loss, "train_loss": train_loss}
            self.history.append(entry)
            epochs.set_postfix({self.task.metric: f"{metric:.4g}"}, refresh=False)
            if self.best is None or self.sign * metric > self.best[0]:
                self.best, stale = (self.sign * metric, _cpu_copy(self.model.state_dict())), 0
            else:
                stale += 1
            try:
                for callback in self.callbacks:
                    callback(epoch, dict(entry))
            except StopRun as stop:
                status, reason = "stopped", str(stop)
                break
            if self.settings["early_stopping"] and stale >= self.settings["early_stopping"]:
                break
        epochs.close()
        return self._result(status, reason)

    def _call(self, split: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.model(split[0], split[1]) if len(split) == 3 else self.model(split[0])

    @contextmanager
    def _guard(self, where: str):
        """Turn an NFE budget or CUDA memory error raised inside the block into a failed run."""
        try:
            yield
        except NFEBudgetExceeded as err:
            raise _Failed(f"NFE budget exceeded: {_line(err)} ({where})") from err
        except torch.OutOfMemoryError as err:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise _Failed(f"CUDA out of memory: {_line(err)} ({where})") from err

    def _train_epoch(self, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        self.model.train()
        x = self.splits["train"]
        n, size = len(x[0]), self.settings["batch_size"]
        order = torch.randperm(n, generator=self.generator).to(self.device)  # (N,)
        batches = math.ceil(n / size)
        if self.settings["max_batches"]:
            batches = min(batches, self.settings["max_batches"])
        total = 0.0
        for b in range(batches):
            rows = order[b * size:(b + 1) * size]  # (B,)
            batch = tuple(t[rows] for t in x)
            with self.timer, self._guard(f"epoch {epoch}, batch {b + 1}"):
                total += self._step(optimizer, batch, epoch, b)
        return total / batches

    def _step(self, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, ...], epoch: int, b: int) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = self.task.loss(self._call(batch), batch[-1])
        value = loss.item()
        if not math.isfinite(value):
            raise _Failed(f"non-finite loss at epoch {epoch}, batch {b + 1}")
        loss.backward()
        self.nfe.record()
        if self.settings["clip"]:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.settings["clip"])
        optimizer.step()
        return value

    def _predict(self, split: tuple[torch.Tensor, ...]) -> torch.Tensor:
        size = 4 * self.settings["batch_size"]
        return torch.cat([self._call(tuple(t[i:i + size] for t in split)) for i in range(0, len(split[0]), size)])

    def _evaluate(self, name: str, epoch: int | None = None) -> tuple[float, float]:
        """The task metric and loss on split ``name``."""
        split = self.splits[name]
        self.model.eval()
        with torch.no_grad():
            where = f"{name}, epoch {epoch}" if epoch is not None else name
            with self._guard(where):
                pred = self._predict(split)
            loss = self.task.loss(pred, split[-1]).item()
            metric = self.task.score(pred, split[-1])
        if not math.isfinite(loss):
            raise _Failed(f"non-finite {name} loss" + (f" at epoch {epoch}" if epoch is not None else ""))
        return metric, loss

    def _result(self, status: str, reason: str | None) -> FitResult:
        metric = self.task.metric
        metrics: dict[str, Any] = {}
        if self.best is not None:
            best_state = self.best[1]
            self.model.load_state_dict(best_state)
            best = (self.history[-1] if status == "stopped"
                    else max(self.history, key=lambda e: self.sign * e[metric]))
            metrics.update({metric: best[metric], "loss": best["loss"], "train_loss": self.history[-1]["train_loss"]})
            if status == "complete":
                try:
                    test_metric, test_loss = self._evaluate("test")
                    metrics.update({f"test_{metric}": test_metric, "test_loss": test_loss})
                except _Failed as err:
                    status, reason = "failed", str(err)
        metrics.update(self.nfe.metrics())
        metrics.update({
            "device_seconds": self.timer.seconds,
            "device": device_name(self.device),
            "wall_seconds": self.timer.wall_seconds,
            "params": param_count(self.model),
            "peak_memory_mb": peak_memory_mb(self.device),
            "epochs": len(self.history),
        })
        return FitResult(status, reason, metrics, self.history, self.best[1] if self.best else None)


def _cpu_copy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def _line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
