"""Standalone modules: write a searched model as ``cell.py`` + ``weights.pt`` + ``spec.yaml`` and check it.

Torch only (no optuna): :func:`write_export` generates the files from a built model, its configuration and
the trial's metrics; :func:`verify` loads them in an isolated interpreter where momsearch cannot be
imported and compares the outputs with the in-process model.
"""

from .roundtrip import verify, verify_many
from .writer import module_source, write_export

__all__ = ["module_source", "write_export", "verify", "verify_many"]
