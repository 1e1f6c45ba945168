"""The YAML search-space language: parse, validate against the catalog, the parameter tree, resolve.

Imports neither torch nor optuna (``SearchSpace.suggest`` reaches Optuna through ``momsearch.search.space``).
"""

from .load import load_space, load_study_file
from .resolve import complete, resolve
from .space import SearchSpace
from .study_file import StudyFile

__all__ = ["load_space", "load_study_file", "resolve", "complete", "SearchSpace", "StudyFile"]
