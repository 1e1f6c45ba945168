"""User-supplied tasks: a Python function (``{module: "pkg.mod:fn", params: {...}}``) or an ``.npz`` file.

A task function is called as ``fn(**params)`` and returns a dict::

    def my_task(n: int = 500, seed: int = 0) -> dict:
        return {
            "x_train": ..., "y_train": ...,   # numpy arrays or torch tensors
            "x_val": ...,   "y_val": ...,
            "x_test": ...,  "y_test": ...,
            # optional: "times_train", "times_val", "times_test" (B, T) observation times (all or none),
            # "metric" (accuracy | mse), "input" (sequence | tokens | static), "target" (last | every | static),
            # "input_size" (vocabulary size for tokens), "output_size" (number of classes)
        }

Shapes and dtypes: ``x`` float (B, T, I) sequences, int (B, T) tokens or float (B, I) points; ``y`` int labels
(B,) or (B, T) for ``accuracy`` (-100 marks an unscored step), float (B, O) or (B, T, O) for ``mse``. What
is not given is inferred (see :mod:`momsearch.tasks.arrays`). An ``.npz`` file holds the same keys
(metadata as 0-d string arrays). A wrong signature, shape or dtype raises :class:`~momsearch.errors.TaskError`
naming what was expected; an exception raised inside the function itself propagates unchanged.
"""

from __future__ import annotations

import importlib
import inspect
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TaskError
from .arrays import from_arrays
from .base import Task


def load_function(target: str) -> Any:
    """Import the callable named ``"pkg.mod:fn"``.

    Raises:
        TaskError: a malformed name, a module that does not exist, or a missing / non-callable attribute.
    """
    module_name, sep, attr = str(target).partition(":")
    if not sep or not module_name or not attr:
        raise TaskError(f"task module={target!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not (module_name == err.name or module_name.startswith(err.name + ".")):
            raise  # the user's module exists but imports something missing
        raise TaskError(f"task module={target!r}: no module named {err.name!r}") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise TaskError(f"task module={target!r}: {module_name} has no function {attr!r}")
    return fn


def from_module(target: str, params: Mapping[str, Any]) -> Task:
    """Call the task function ``"pkg.mod:fn"`` with ``params`` and check what it returns.

    Args:
        target: ``"package.module:function"``.
        params: keyword arguments of the function.

    Returns:
        The checked :class:`Task`.
    """
    fn = load_function(target)
    try:
        inspect.signature(fn).bind(**params)
    except TypeError as err:
        raise TaskError(f"task module={target!r}: cannot call it with params {dict(params)!r}: {err}") from None
    except ValueError:
        pass  # no signature to inspect (some builtins): let the call decide
    return from_arrays(target, fn(**params), params)


def from_npz(path: str | Path) -> Task:
    """Load the arrays of an ``.npz`` file (keys as for a task function) and check them.

    Nothing in the file is unpickled (``allow_pickle=False``). A file that is not an ``.npz`` archive, a
    truncated or corrupt one, or one holding object arrays is a TaskError naming the file and the problem.

    Returns:
        The checked :class:`Task`.
    """
    path = Path(path)
    where = f"task npz={str(path)!r}"
    if not path.is_file():
        raise TaskError(f"{where}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        raise TaskError(f"{where}: cannot read the file ({err.strerror or err})") from None
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise TaskError(f"{where}: not a readable .npz file: {_what_it_is(head)}, not a zip archive "
                        "(write one with numpy.savez)")
    key = None
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {}
            for key in archive.files:
                data[key] = archive[key]
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        part = f" (array {key!r})" if key else ""
        raise TaskError(f"{where}: not a readable .npz file: the archive is truncated or corrupt{part} "
                        f"({_first_line(err)})") from None
    except ValueError as err:
        if "pickle" in str(err) or "Object arrays" in str(err):
            raise TaskError(f"{where}: not a readable .npz file: array {key!r} holds Python objects "
                            "(dtype=object); momsearch reads numeric arrays only and never unpickles data") from None
        raise TaskError(f"{where}: not a readable .npz file: array {key!r}: {_first_line(err)}") from None
    except MemoryError:
        raise TaskError(f"{where}: array {key!r} is too large to load into memory") from None
    return from_arrays(str(path), data)


def _what_it_is(head: bytes) -> str:
    """A guess at what a file that is not a zip archive holds, from its first bytes."""
    if not head:
        return "the file is empty"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array"
    if head.startswith(b"\x80"):
        return "it looks like a pickle"
    try:
        head.decode("utf-8")
        return "it is a text file"
    except UnicodeDecodeError:
        return "unknown binary content"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines() or [type(err).__name__])[0][:200] if text else type(err).__name__
