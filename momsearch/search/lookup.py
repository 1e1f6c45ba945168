"""Find an existing study from a study file or a study name (for ``report`` and ``export``)."""

from __future__ import annotations

from pathlib import Path

import optuna

from ..catalog.params import did_you_mean
from ..errors import StudyError
from .storage import ARTIFACT_DIR, default_url, open_storage

DEFAULT_RUNS = Path("runs")


def default_out(name: str) -> Path:
    """The default output directory of a study: ``runs/<name>/``."""
    return DEFAULT_RUNS / name


def locate(target: str, storage: str | None = None, out: str | Path | None = None) -> tuple[str, str, Path]:
    """Resolve ``FILE_OR_STUDY`` to (study name, storage URL, output directory).

    A path to an existing study file gives its name and its ``study.storage``; anything else is a study name.
    Without a storage URL the embedded SQLite file under the output directory (default ``runs/<name>/``) is used.
    """
    path = Path(target)
    file_storage = None
    if path.is_file():
        from ..spec import load_study_file

        study_file = load_study_file(path)
        name, file_storage = study_file.name, study_file.study.get("storage")
    else:
        name = target
    out_dir = Path(out) if out else default_out(name)
    url = storage or file_storage or default_url(out_dir)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise StudyError(f"no study {name!r}: {url[len('sqlite:///'):]} does not exist (run the study first, or "
                         "name its storage URL or output directory)")
    return name, url, out_dir


def open_study(target: str, storage: str | None = None, out: str | Path | None = None) -> tuple[optuna.Study, Path]:
    """Load an existing study; StudyError naming the studies that do exist if it is unknown."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name, url, out_dir = locate(target, storage, out)
    store = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if name not in names:
        raise StudyError(f"unknown study {name!r}{did_you_mean(name, names)} in {url}; "
                         f"studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=store), out_dir


def artifact_dir(study: optuna.Study, out_dir: Path) -> Path:
    """Where the study's weights artifacts live (recorded at creation; ``<out>/artifacts`` otherwise)."""
    recorded = study.user_attrs.get("artifact_dir")
    return Path(recorded) if recorded and Path(recorded).exists() else Path(out_dir) / ARTIFACT_DIR
