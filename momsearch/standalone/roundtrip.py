"""The round-trip check: an exported directory must reproduce the searched model without momsearch.

``cell.py`` + ``weights.pt`` run in a subprocess (``python -I -B`` plus a finder that refuses ``momsearch``) on
a fixed input; the outputs are compared with the searched model's in this process. One subprocess checks
many exports at once (:func:`verify_many`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import ExportError

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
BATCH, STEPS = 3, 9
RUNNER = Path(__file__).with_name("_isolated.py")


def fixed_inputs(io: Mapping, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """The check's input for a model's ``io``: (B, T, I) floats, (B, T) token ids or (B, I), plus times."""
    gen = torch.Generator().manual_seed(seed)
    n = io["input_size"]
    if io["input"] == "tokens":
        x = torch.randint(0, n, (BATCH, STEPS), generator=gen)  # (B, T)
    elif io["input"] == "static":
        x = torch.randn(BATCH, n, generator=gen, dtype=dtype)  # (B, I)
    else:
        x = torch.randn(BATCH, STEPS, n, generator=gen, dtype=dtype)  # (B, T, I)
    if io.get("times") and io["input"] != "static":
        gaps = torch.rand(BATCH, STEPS, generator=gen, dtype=dtype) + 0.1  # (B, T)
        return x, torch.cumsum(gaps, dim=1) - gaps[:, :1]  # (B, T) irregular, from 0
    return (x,)


def verify_many(checks: Sequence[tuple[Path, nn.Module, Mapping]], dtype: torch.dtype = torch.float32,
                timeout: float = 600.0) -> tuple[list[str | None], bool]:
    """Check several exports in one isolated interpreter.

    Args:
        checks: (export directory, the searched model with its weights loaded, its ``io``) triples.
        dtype: ``torch.float32`` (tolerance 1e-5) or ``torch.float64`` (1e-10).
        timeout: seconds for the subprocess.

    Returns:
        ``(problems, refused)``: per check None or a one-line description of the failure, and whether
        ``import momsearch`` failed in the isolated interpreter.

    Raises:
        ExportError: the isolated interpreter itself failed.
    """
    tolerance = TOLERANCE[dtype]
    name = "float64" if dtype == torch.float64 else "float32"
    with tempfile.TemporaryDirectory(prefix="momsearch-check-") as tmp:
        tmp = Path(tmp)
        jobs, expected = [], []
        for i, (directory, model, io) in enumerate(checks):
            inputs = fixed_inputs(io, dtype)
            model = model.to(dtype).eval()
            with torch.no_grad():
                expected.append(model(*inputs))
            torch.save(inputs, tmp / f"in{i}.pt")
            jobs.append({"dir": str(Path(directory).resolve()), "inputs": str(tmp / f"in{i}.pt"),
                         "output": str(tmp / f"out{i}.pt"), "dtype": name})
        (tmp / "jobs.json").write_text(json.dumps(jobs))
        try:
            command = [sys.executable, "-I", "-B", str(RUNNER), str(tmp / "jobs.json")]
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise ExportError(f"round-trip check: the isolated interpreter took more than {timeout:.0f} s") from None
        try:
            report = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExportError(f"round-trip check: the isolated interpreter failed ({last})") from None
        problems: list[str | None] = []
        for i, error in enumerate(report["errors"]):
            if error is not None:
                problems.append(f"loading it without momsearch failed: {error}")
                continue
            if not (tmp / f"out{i}.pt").is_file():
                problems.append("the isolated interpreter reported success but wrote no output")
                continue
            got = torch.load(tmp / f"out{i}.pt", weights_only=True)
            if got.shape != expected[i].shape:
                problems.append(f"output shape {tuple(got.shape)} != searched model's {tuple(expected[i].shape)}")
                continue
            diff = (got - expected[i]).abs().max().item()
            ok = diff <= tolerance  # also False for NaN
            problems.append(None if ok else f"max abs difference {diff:.3g} > {tolerance:g} ({name})")
    return problems, report["momsearch_refused"]


def verify(directory: str | Path, model: nn.Module, io: Mapping, dtype: torch.dtype = torch.float32) -> None:
    """Check one export; ExportError with a clear reason if it does not reproduce ``model``.

    Args:
        directory: the export (``cell.py``, ``weights.pt``).
        model: the searched model with its weights loaded.
        io: its ``input_size``, ``output_size``, ``input``, ``target``, ``times``.
        dtype: float32 (tolerance 1e-5) or float64 (1e-10).
    """
    (problem,), refused = verify_many([(Path(directory), model, io)], dtype)
    if not refused:
        raise ExportError("round-trip check: momsearch could still be imported in the isolated interpreter")
    if problem is not None:
        raise ExportError(f"round-trip check of {directory}: {problem}")
