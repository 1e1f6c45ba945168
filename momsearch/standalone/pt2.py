"""``--format pt2``: the exported module traced by ``torch.export`` at a fixed input shape, saved as ``cell.pt2``.

Works for the RNN and attention blocks (every cell and rule): their step loops unroll at the traced sequence
length. ODE blocks do not export: torchdiffeq's adaptive solvers step in data-dependent loops.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import ExportError
from .roundtrip import TOLERANCE, fixed_inputs


def _load_cell(directory: Path) -> nn.Module:
    """``Model()`` of ``directory/cell.py`` with ``weights.pt`` loaded."""
    name = f"_momsearch_export_{abs(hash(str(directory)))}"
    spec = importlib.util.spec_from_file_location(name, directory / "cell.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the export
    try:
        spec.loader.exec_module(module)
        model = module.Model()
    finally:
        del sys.modules[name]
        sys.dont_write_bytecode = writes_bytecode
    model.load_state_dict(torch.load(directory / "weights.pt", weights_only=True), strict=True)
    return model.eval()


def export_pt2(directory: str | Path, model: nn.Module, io: Mapping) -> Path:
    """Trace ``directory/cell.py``'s model with ``torch.export`` and save ``cell.pt2``; check it against ``model``.

    Args:
        directory: an export directory with ``cell.py`` and ``weights.pt``.
        model: the searched model (the reference output).
        io: its ``input_size``, ``output_size``, ``input``, ``target``, ``times``.

    Returns:
        The path of ``cell.pt2`` (load with ``torch.export.load(path).module()``).

    Raises:
        ExportError: ``torch.export`` cannot trace this block, or the traced program differs from ``model``.
    """
    directory = Path(directory)
    inputs = fixed_inputs(io)
    try:
        program = torch.export.export(_load_cell(directory), inputs)
    except Exception as exc:  # torch.export raises many kinds for untraceable code
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"--format pt2: torch.export cannot trace this model ({type(exc).__name__}: {first}); "
                          "pt2 supports the rnn and attention blocks") from None
    path = directory / "cell.pt2"
    torch.export.save(program, path)
    with torch.no_grad():
        expected = model.float().eval()(*inputs)
        got = torch.export.load(path).module()(*inputs)
    diff = (got - expected).abs().max().item()
    if not diff <= TOLERANCE[torch.float32]:
        raise ExportError(f"--format pt2: the traced program differs from the searched model by {diff:.3g}")
    return path
