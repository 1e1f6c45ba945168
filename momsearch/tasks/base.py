"""The :class:`Task` contract: data splits plus the task's loss and metric.

A split is a tuple of tensors: ``(x, y)``, or ``(x, times, y)`` for irregularly sampled sequences. Shapes:

- ``x``: ``sequence`` (B, T, I) float32, ``tokens`` (B, T) int64 ids, ``static`` (B, I) float32;
- ``y``: classification int64 labels (B,) for ``last``/``static``, (B, T) for ``every`` (``IGNORE`` marks
  steps that are not scored); regression float32 (B, O) or (B, T, O);
- ``times``: (B, T) float32 observation times, non-decreasing along T.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

IGNORE = -100  # label of a step that is neither trained on nor scored (torch's cross-entropy ignore_index)
METRICS = ("accuracy", "mse")


@dataclass(frozen=True, eq=False)
class Task:
    """A task: its splits, what the model sees and predicts, and how predictions are scored.

    Attributes:
        name: built-in name, ``"pkg.mod:fn"`` or the ``.npz`` path.
        metric: ``accuracy`` (classification, cross-entropy loss) or ``mse`` (regression, MSE loss).
        input: ``sequence``, ``tokens`` or ``static``.
        target: ``last``, ``every`` or ``static``.
        input_size: features per step (``sequence``/``static``) or vocabulary size (``tokens``).
        output_size: classes (``accuracy``) or regression outputs (``mse``).
        train, val, test: the splits, ``(x, y)`` or ``(x, times, y)``.
        params: the parameters the data was generated with.
    """

    name: str
    metric: str
    input: str
    target: str
    input_size: int
    output_size: int
    train: tuple[torch.Tensor, ...]
    val: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]
    params: dict = field(default_factory=dict)

    @property
    def has_times(self) -> bool:
        """Whether the splits carry observation times (the model is called as ``model(x, times)``)."""
        return len(self.train) == 3

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss: cross-entropy over scored labels, or mean squared error.

        Args:
            pred: model output, (B, O) or (B, T, O).
            y: targets of the same split rows (see the module docstring).

        Returns:
            A scalar tensor.
        """
        if self.metric == "accuracy":
            return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
        return F.mse_loss(pred, y)

    def score(self, pred: torch.Tensor, y: torch.Tensor) -> float:
        """The task metric: accuracy over scored labels, or mean squared error.

        Args:
            pred: model output, (B, O) or (B, T, O).
            y: targets.

        Returns:
            The metric as a float.
        """
        with torch.no_grad():
            if self.metric == "accuracy":
                scored = y != IGNORE  # (B,) or (B, T)
                hits = (pred.argmax(-1) == y) & scored  # (B,) or (B, T)
                return hits.sum().item() / max(scored.sum().item(), 1)
            return F.mse_loss(pred, y).item()
