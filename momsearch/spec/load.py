"""Entry points: read a space file or a study file (a path, or already-parsed data)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .parse import parse_space
from .space import SearchSpace
from .study_file import StudyFile, is_study_file, parse_study_file
from .yaml_io import read_yaml


def read_mapping(source: str | os.PathLike | Mapping[str, Any]) -> tuple[Mapping, Path | None]:
    """The parsed top-level mapping of a file (and its resolved path), or ``source`` itself if already parsed."""
    if isinstance(source, Mapping):
        return source, None
    if not isinstance(source, (str, os.PathLike)):
        raise SpecError(f"expected a file path or a mapping, got {type(source).__name__}")
    path = Path(source).resolve()
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else type(data).__name__
        raise SpecError(f"{path}: the top level must be a mapping, got {got}")
    return data, path


def load_space(source: str | os.PathLike | Mapping[str, Any]) -> SearchSpace:
    """Load and validate a search space.

    Args:
        source: a space file (``block:`` and optional ``train:``) or a study file (its space is used,
            with its fixed training settings), as a path or already-parsed data.

    Returns:
        A :class:`SearchSpace`.

    Raises:
        SpecError: a missing file, bad YAML, or an invalid space (the message starts with the key path).
    """
    data, path = read_mapping(source)
    if is_study_file(data):
        return parse_study_file(data, path).space
    nodes, defaults = parse_space(data)
    return SearchSpace(nodes, defaults, path)


def load_study_file(source: str | os.PathLike | Mapping[str, Any]) -> StudyFile:
    """Load and validate a study file (name, task, objectives, space, train, study).

    Args:
        source: the path of the YAML file, or already-parsed data (relative paths then start at the
            current directory).

    Returns:
        A :class:`StudyFile` with the task normalised and every default filled.

    Raises:
        SpecError: a missing file, bad YAML, or an invalid study file (the message starts with the key path).
    """
    data, path = read_mapping(source)
    return parse_study_file(data, path)
