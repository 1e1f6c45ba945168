"""Turn a dict of arrays (from a task function or an ``.npz`` file) into a checked :class:`Task`.

Keys: ``x_train, y_train, x_val, y_val, x_test, y_test`` (numpy arrays or torch tensors), optionally
``times_train, times_val, times_test`` (all three or none) and the metadata ``metric`` (``accuracy`` |
``mse``), ``input`` (``sequence`` | ``tokens`` | ``static``), ``target`` (``last`` | ``every`` | ``static``),
``input_size``, ``output_size``. Missing metadata is inferred: integer ``y`` -> ``accuracy``, floating ``y``
-> ``mse``; integer ``x`` (B, T) -> ``tokens``, floating (B, T, I) -> ``sequence``, (B, I) -> ``static``;
labels (B,) -> ``last``, (B, T) -> ``every``; sizes from the data (largest id or label + 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import TaskError
from ..model import INPUTS, TARGETS
from .base import IGNORE, METRICS, Task

SPLITS = ("train", "val", "test")
META = ("metric", "input", "target", "input_size", "output_size")
KEYS = tuple(f"{k}_{s}" for k in ("x", "y", "times") for s in SPLITS) + META
MAX_CLASSES = 100_000  # an output head wider than this is a mislabelled file, not a classification task
MAX_VOCAB = 1_000_000  # token ids; the embedding has one row per id
MAX_PARAMETERS = 250_000_000  # 1 GB of float32 weights: no searched cell is meant to be this large
WIDTH_KEYS = ("hidden_size", "d_model", "rnn_hidden_size")
DEPTH_KEYS = ("num_layers", "layers", "depth")
SIZE_KEYS = WIDTH_KEYS + DEPTH_KEYS + ("heads", "augment")


def from_arrays(name: str, data: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Task:
    """Check the arrays of a task and wrap them in a :class:`Task`.

    Args:
        name: the task's name, used in error messages.
        data: the keys described in the module docstring.
        params: the parameters the data was generated with (recorded on the task).

    Returns:
        The task, with float32 inputs/regression targets and int64 tokens/labels.

    Raises:
        TaskError: a missing or unknown key, or an array of the wrong type, dtype or shape.
    """
    if not isinstance(data, Mapping):
        raise TaskError(f"task {name}: expected a dict with keys {', '.join(KEYS[:6])}, got {type(data).__name__}")
    unknown_keys = [k for k in data if k not in KEYS]
    if unknown_keys:
        raise TaskError(f"task {name}: unknown key(s) {', '.join(map(repr, unknown_keys))}; valid: {', '.join(KEYS)}")
    missing = [f"{k}_{s}" for k in ("x", "y") for s in SPLITS if f"{k}_{s}" not in data]
    if missing:
        raise TaskError(f"task {name}: missing key(s) {', '.join(missing)}")
    raw = {key: _tensor(name, key, data[key]) for key in KEYS[:9] if key in data}
    metric = _choice(name, "metric", data.get("metric"), METRICS) or _infer_metric(name, raw["y_train"])
    input = _choice(name, "input", data.get("input"), INPUTS)
    inferred = " (inferred from x_train)" if input is None else ""
    input = input or _infer_input(name, raw["x_train"])
    target = _choice(name, "target", data.get("target"), TARGETS) or _infer_target(input, metric, raw["y_train"])
    splits = {s: _split(name, s, raw, metric, input, target, inferred) for s in SPLITS}
    _check_consistent(name, splits, input)
    input_size = _size(name, "input_size", data.get("input_size"), _data_input_size(splits, input))
    output_size = _size(name, "output_size", data.get("output_size"), _data_output_size(splits, metric))
    _check_sizes(name, splits, input, metric, input_size, output_size)
    return Task(name=name, metric=metric, input=input, target=target, input_size=input_size,
                output_size=output_size, params=dict(params or {}), **splits)


def _tensor(name: str, key: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TaskError(f"task {name}: {key} must hold numbers, got dtype {value.dtype}")
        return torch.from_numpy(np.ascontiguousarray(value))
    raise TaskError(f"task {name}: {key} must be a numpy array or torch tensor, got {type(value).__name__}")


def _choice(name: str, key: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()  # metadata stored in an .npz file
    if value is None or value in choices:
        return value
    raise TaskError(f"task {name}: {key}={value!r}: must be one of {', '.join(choices)}")


def _size(name: str, key: str, value: Any, from_data: int) -> int:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if value is None:
        return from_data
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < from_data:
        raise TaskError(f"task {name}: {key}={value!r}: must be an int >= {from_data} (what the data needs)")
    return int(value)


def _is_int(t: torch.Tensor) -> bool:
    return not t.dtype.is_floating_point and not t.dtype.is_complex and t.dtype != torch.bool


def _infer_metric(name: str, y: torch.Tensor) -> str:
    if _is_int(y):
        return "accuracy"
    if y.dtype.is_floating_point:
        return "mse"
    raise TaskError(f"task {name}: y_train must be integer labels or floating targets, got dtype {y.dtype}")


def _infer_input(name: str, x: torch.Tensor) -> str:
    if _is_int(x) and x.dim() == 2:
        return "tokens"
    if x.dtype.is_floating_point and x.dim() in (2, 3):
        return "sequence" if x.dim() == 3 else "static"
    raise TaskError(f"task {name}: x_train must be int (B, T) tokens, float (B, T, I) sequences or "
                    f"float (B, I) points, got dtype {x.dtype} shape {tuple(x.shape)}")


def _infer_target(input: str, metric: str, y: torch.Tensor) -> str:
    if input == "static":
        return "static"
    every_dims = 2 if metric == "accuracy" else 3
    return "every" if y.dim() == every_dims else "last"


def _split(name: str, split: str, raw: dict, metric: str, input: str, target: str,
           note: str) -> tuple[torch.Tensor, ...]:
    """Check one split; ``note`` says in messages whether ``input`` was inferred."""
    x, y = raw[f"x_{split}"], raw[f"y_{split}"]
    x = _check_x(name, f"x_{split}", x, input, note)
    y = _check_y(name, f"y_{split}", y, metric, target, x)
    if len(x) == 0:
        raise TaskError(f"task {name}: x_{split} is empty")
    has_times = [f"times_{s}" in raw for s in SPLITS]
    if any(has_times) and not all(has_times):
        raise TaskError(f"task {name}: give times_train, times_val and times_test together, or none")
    if not has_times[0]:
        return x, y
    if input == "static":
        raise TaskError(f"task {name}: times_{split} need sequence or tokens input, not static")
    times = raw[f"times_{split}"]
    if not times.dtype.is_floating_point or tuple(times.shape) != tuple(x.shape[:2]):
        raise TaskError(f"task {name}: times_{split} must be float (B, T) = {tuple(x.shape[:2])}, "
                        f"got dtype {times.dtype} shape {tuple(times.shape)}")
    times = times.float()
    if not torch.isfinite(times).all() or (times.diff(dim=1) < 0).any():
        raise TaskError(f"task {name}: times_{split} must be finite and non-decreasing along T")
    return x, times, y


def _check_x(name: str, key: str, x: torch.Tensor, input: str, note: str) -> torch.Tensor:
    if input == "tokens":
        if not _is_int(x) or x.dim() != 2:
            raise TaskError(f"task {name}: {key} must be integer token ids (B, T) for tokens input{note}, "
                            f"got dtype {x.dtype} shape {tuple(x.shape)}")
        if (x < 0).any():
            raise TaskError(f"task {name}: {key} token ids must be >= 0")
        return x.long()
    dims = 3 if input == "sequence" else 2
    shape = "(B, T, I)" if dims == 3 else "(B, I)"
    if not x.dtype.is_floating_point or x.dim() != dims:
        raise TaskError(f"task {name}: {key} must be float {shape} for {input} input{note}, "
                        f"got dtype {x.dtype} shape {tuple(x.shape)}")
    x = x.float()
    if not torch.isfinite(x).all():
        raise TaskError(f"task {name}: {key} holds non-finite values")
    return x


def _check_y(name: str, key: str, y: torch.Tensor, metric: str, target: str, x: torch.Tensor) -> torch.Tensor:
    every = target == "every"
    if metric == "accuracy":
        shape = "(B, T)" if every else "(B,)"
        if not _is_int(y) or y.dim() != (2 if every else 1):
            raise TaskError(f"task {name}: {key} must be integer labels {shape} for accuracy with target "
                            f"{target}, got dtype {y.dtype} shape {tuple(y.shape)}")
        y = y.long()
        if ((y < 0) & (y != IGNORE)).any():
            raise TaskError(f"task {name}: {key} labels must be >= 0 ({IGNORE} marks unscored steps)")
    else:
        if every and y.dim() == 2:
            y = y.unsqueeze(-1)  # (B, T, 1)
        if not every and y.dim() == 1:
            y = y.unsqueeze(-1)  # (B, 1)
        shape = "(B, T, O)" if every else "(B, O)"
        if not y.dtype.is_floating_point or y.dim() != (3 if every else 2):
            raise TaskError(f"task {name}: {key} must be float targets {shape} for mse with target {target}, "
                            f"got dtype {y.dtype} shape {tuple(y.shape)}")
        y = y.float()
        if not torch.isfinite(y).all():
            raise TaskError(f"task {name}: {key} holds non-finite values")
    if target == "static" and x.dim() != 2:
        raise TaskError(f"task {name}: target static needs static (B, I) input")
    if target != "static" and x.dim() == 2 and x.dtype.is_floating_point:
        raise TaskError(f"task {name}: target {target} needs sequence or tokens input; static input "
                        f"takes target static")
    if len(y) != len(x):
        raise TaskError(f"task {name}: {key} has {len(y)} rows but x has {len(x)}")
    if every and y.shape[1] != x.shape[1]:
        raise TaskError(f"task {name}: {key} has {y.shape[1]} steps but x has {x.shape[1]} (target every)")
    return y


def _check_consistent(name: str, splits: dict, input: str) -> None:
    if input == "tokens":
        return
    features = {s: tuple(splits[s][0].shape[2:] if input == "sequence" else splits[s][0].shape[1:])
                for s in SPLITS}
    if len(set(features.values())) > 1:
        raise TaskError(f"task {name}: x features differ between splits: {features}")
    out = {s: tuple(splits[s][-1].shape[2:] if splits[s][-1].dim() == 3 else splits[s][-1].shape[1:])
           for s in SPLITS if splits[s][-1].dtype.is_floating_point}
    if len(set(out.values())) > 1:
        raise TaskError(f"task {name}: y outputs differ between splits: {out}")


def _data_input_size(splits: dict, input: str) -> int:
    if input == "tokens":
        return int(max(splits[s][0].max().item() for s in SPLITS)) + 1
    return int(splits["train"][0].shape[-1])


def _data_output_size(splits: dict, metric: str) -> int:
    """Classes: the largest label in training + 1 (validation and test labels must lie below it); regression
    targets: their last dimension."""
    if metric == "accuracy":
        return int(splits["train"][-1].max().item()) + 1
    return int(splits["train"][-1].shape[-1])


def _check_sizes(name: str, splits: dict, input: str, metric: str, input_size: int, output_size: int) -> None:
    """Refuse labels outside [0, output_size) in any split, token ids outside [0, input_size), and sizes that
    imply an absurd model (more than MAX_CLASSES classes or MAX_VOCAB token ids)."""
    if metric == "accuracy":
        for split in SPLITS:
            largest = int(splits[split][-1].max().item())
            if largest >= MAX_CLASSES:
                raise TaskError(f"task {name}: y_{split} holds label {largest} ({largest:,}): more than "
                                f"{MAX_CLASSES:,} classes (each class is an output unit); labels must be "
                                "0..n_classes-1")
            if largest >= output_size:
                raise TaskError(f"task {name}: y_{split} holds label {largest}, but there are {output_size} classes "
                                f"(labels 0..{output_size - 1}, from y_train or output_size); labels must lie in "
                                f"[0, {output_size})")
        if output_size > MAX_CLASSES:
            raise TaskError(f"task {name}: output_size={output_size}: more than {MAX_CLASSES:,} classes")
    if input == "tokens":
        for split in SPLITS:
            largest = int(splits[split][0].max().item())
            if largest >= MAX_VOCAB:
                raise TaskError(f"task {name}: x_{split} holds token id {largest} ({largest:,}): more than "
                                f"{MAX_VOCAB:,} token ids (each is a row of the embedding); ids must be "
                                "0..vocabulary-1")
            if largest >= input_size:
                raise TaskError(f"task {name}: x_{split} holds token id {largest}, but input_size={input_size}")
        if input_size > MAX_VOCAB:
            raise TaskError(f"task {name}: input_size={input_size}: more than {MAX_VOCAB:,} token ids")


def check_model_size(name: str, config: Mapping[str, Any], io: Mapping[str, Any],
                     limit: int | None = None, *, lower_bound: bool = False) -> int | None:
    """Count the parameters ``config`` would have for this task without allocating them (built on torch's
    ``meta`` device) and refuse more than ``limit`` (default :data:`MAX_PARAMETERS`).

    Args:
        name: the task's name, for the message.
        config: the dotted configuration (what ``space.suggest`` returns).
        io: ``input_size``, ``output_size``, ``input``, ``target``.
        limit: the largest parameter count allowed.
        lower_bound: ``io`` is a stand-in (one input, one output) and the message says "at least".

    Returns:
        The parameter count; None where a rough bound (16 W^2 L + 4 W (input_size + output_size), W the
        widest size, L the most layers) is under a tenth of the limit, or where the model cannot be built
        without data (ODE blocks check their solver options on real tensors): the real build then decides.

    Raises:
        TaskError: too many parameters, naming the count and the configuration's sizes.
    """
    # Imported before entering the meta device: a module imported under it would create its module-level
    # tensors (torchdiffeq's Butcher tableaus, say) on the meta device for good.
    from .. import blocks  # noqa: F401
    from ..builder import build
    from ..rules import ode  # noqa: F401

    limit = MAX_PARAMETERS if limit is None else limit
    if _rough_count(config, io) * 10 < limit:
        return None  # far below the limit: no need to build anything (a tiny trial stays tiny)
    try:
        with torch.device("meta"):
            model = build(config, io["input_size"], io["output_size"], input=io["input"], target=io["target"])
    except Exception:  # noqa: BLE001 - a block that computes while it is built (ODE option checks): not countable
        return None
    count = sum(p.numel() for p in model.parameters())
    if count > limit:
        sizes = {k: v for k, v in config.items() if k.rsplit(".", 1)[-1] in SIZE_KEYS}
        shown = ", ".join(f"{k}={v}" for k, v in sizes.items())
        with_io = (" before the task's input and output layers" if lower_bound else
                   f" with input_size={io['input_size']} and output_size={io['output_size']}")
        raise TaskError(f"task {name}: {shown or 'this configuration'}{with_io} gives "
                        f"{'at least ' if lower_bound else ''}{count:,} parameters, more than {limit:,}")
    return count


def _rough_count(config: Mapping[str, Any], io: Mapping[str, Any]) -> float:
    """A generous bound on the parameter count from the configuration's widths and depths (inf if it names
    no width): 16 W^2 L covers the recurrent, attention and vector-field weights, 4 W (I + O) the heads."""
    widths = [v for k, v in config.items() if k.rsplit(".", 1)[-1] in WIDTH_KEYS and isinstance(v, int)]
    depths = [v for k, v in config.items() if k.rsplit(".", 1)[-1] in DEPTH_KEYS and isinstance(v, int)]
    if not widths:
        return float("inf")
    width, depth = max(widths), max(depths + [1])
    return 16 * width**2 * depth + 4 * width * (io["input_size"] + io["output_size"])
