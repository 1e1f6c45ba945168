"""momsearch: architecture search over momentum cells for PyTorch and Optuna.

Importing the package is cheap (no torch, no optuna): the public functions load their layer on first use.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "load_space": "momsearch.spec",
    "load_study_file": "momsearch.spec",
    "build": "momsearch.builder",
    "export": "momsearch.search.exporting",
    "catalog": "momsearch.catalog",
    "MomsearchError": "momsearch.errors",
    "ConfigError": "momsearch.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name) if name != "catalog" else import_module(_LAZY[name])
    raise AttributeError(f"module 'momsearch' has no attribute {name!r}")
