"""Find an existing study from a study file or a study name (for ``report`` and ``export``)."""

from __future__ import annotations

import os
from pathlib import Path

import optuna

from ..catalog.params import did_you_mean
from ..errors import StudyError, quote
from ..redact import redact, storage_from_env
from .storage import ARTIFACT_DIR, default_url, open_storage

DEFAULT_RUNS = Path("runs")


def default_out(name: str) -> Path:
    """The default output directory of a study: ``runs/<name>/``."""
    return DEFAULT_RUNS / name


def locate(target: str, storage: str | None = None, out: str | Path | None = None) -> tuple[str, str, Path]:
    """Resolve ``FILE_OR_STUDY`` to (study name, storage URL, output directory).

    A path to an existing study file gives its name and its ``study.storage``; anything else is a study name.
    The storage URL is ``storage``, else the environment variable ``MOMSEARCH_STORAGE``, else the file's
    ``study.storage``, else the embedded SQLite file under the output directory (default ``runs/<name>/``).
    """
    path = Path(target)
    file_storage = None
    if path.is_file():
        from ..spec import load_study_file

        study_file = load_study_file(path)
        name, file_storage = study_file.name, study_file.study.get("storage")
    else:
        from ..errors import SpecError
        from ..spec.study_file import check_name

        try:
            name = check_name(target)  # never '..' or a path: runs/<name>/ must stay inside runs/
        except SpecError:
            raise StudyError(f"{quote(target)}: neither a study file nor a valid study name (letters, digits, "
                             "'_', '.', '-'; not '.' or '..')") from None
    out_dir = Path(out) if out else default_out(name)
    url = storage_from_env(storage) or file_storage or default_url(out_dir)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise StudyError(f"no study {name!r}: {url[len('sqlite:///'):]} does not exist (run the study first, or "
                         "name its storage URL or output directory)")
    return name, url, out_dir


def open_study(target: str, storage: str | None = None, out: str | Path | None = None, *,
               with_url: bool = False) -> tuple:
    """Load an existing study; StudyError naming the studies that do exist if it is unknown.

    Returns:
        ``(study, output directory)``, and the storage URL third if ``with_url``.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name, url, out_dir = locate(target, storage, out)
    store = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
    if name not in names:
        raise StudyError(f"unknown study {name!r}{did_you_mean(name, names)} in {redact(url)}; "
                         f"studies there: {', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=name, storage=store)
    return (study, out_dir, url) if with_url else (study, out_dir)


def study_dir(url: str | None) -> Path | None:
    """The folder of a local SQLite study file (``sqlite:///path``), or None for any other storage."""
    if url and url.startswith("sqlite:///") and url[len("sqlite:///"):] not in ("", ":memory:"):
        return Path(url[len("sqlite:///"):]).resolve().parent
    return None


def artifact_record(artifacts: Path, url: str | None) -> dict:
    """The study attributes that say where its weights store is: the absolute path, and for a local SQLite
    study also the path relative to the study file's folder (so a copied ``runs/<name>/`` finds its own)."""
    record = {"artifact_dir": str(Path(artifacts).resolve())}
    folder = study_dir(url)
    if folder is not None:
        record["artifact_dir_relative"] = os.path.relpath(Path(artifacts).resolve(), folder)
    return record


def recorded_artifact_dir(attrs: dict, url: str | None) -> Path | None:
    """The weights store a study recorded (relative to a local study file first, else absolute), or None."""
    folder = study_dir(url)
    if folder is not None and attrs.get("artifact_dir_relative") is not None:
        return (folder / attrs["artifact_dir_relative"]).resolve()
    recorded = attrs.get("artifact_dir")
    return Path(recorded) if recorded else None


def artifact_dir(study: optuna.Study, out_dir: Path, url: str | None = None) -> Path:
    """Where the study's weights artifacts live: as recorded at creation, else ``<out>/artifacts``.

    A local SQLite study recorded its store relative to its folder: that folder is the study file's (``url``),
    or, where the URL is not known, ``out_dir`` (where ``run`` puts ``study.db``): a copied ``runs/<name>/``
    reads its own store first.
    """
    relative = study.user_attrs.get("artifact_dir_relative")
    candidates = [recorded_artifact_dir(study.user_attrs, url)]
    if relative is not None and study_dir(url) is None:
        candidates.insert(0, (Path(out_dir) / relative).resolve())
    return next((c for c in candidates if c is not None and c.exists()), Path(out_dir) / ARTIFACT_DIR)


def check_artifact_store(study: optuna.Study, artifacts: Path, url: str | None) -> None:
    """Refuse to resume a study with another weights store than the one it recorded (its earlier trials'
    weights are there, and export looks there): StudyError naming both."""
    recorded = recorded_artifact_dir(study.user_attrs, url)
    if recorded is not None and recorded != Path(artifacts).resolve():
        raise StudyError(f"--artifacts={str(artifacts)!r}: study {study.study_name!r} keeps its weights in "
                         f"{recorded}; resume it with that store (or use another study name or storage)")
