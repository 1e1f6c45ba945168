"""Export trials of a study as standalone modules: read the study, trial and weights artifact, write, verify.

Everything is written into a temporary directory next to the destination, checked in an isolated
interpreter (:mod:`momsearch.standalone`), and only then moved into place: a failed export leaves the
destination as it was. Each export carries a marker file (:data:`MARKER`); ``force`` replaces only a
directory that holds that marker and nothing but what an export writes, so it can never delete a working
directory, a study database, an artifact store or anyone's other files.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import optuna
import torch

from ..builder import build
from ..errors import ExportError, StudyError
from ..standalone import verify_many, write_export
from ..standalone.pt2 import export_pt2
from .lookup import artifact_dir, default_out, open_study
from .records import Records
from .results import best_trials

FORMATS = ("py", "pt2")
MARKER = ".momsearch-export"  # written into every export; --force replaces only a directory that has it
EXPORT_FILES = {"cell.py", "weights.pt", "spec.yaml", "cell.pt2", MARKER}
TRIAL_DIR = re.compile(r"trial_\d+")
CORRUPT = "the file is corrupt or was replaced"


def export(study: optuna.Study | str, trial: int | None = None, out: str | Path = "best", *,
           pareto: int | None = None, storage: str | None = None, runs: str | Path | None = None,
           force: bool = False, format: str = "py", artifacts: str | Path | None = None) -> list[Path]:
    """Export a trial (default: the best one) as ``cell.py`` + ``weights.pt`` + ``spec.yaml`` in ``out``.

    Args:
        study: an ``optuna.Study``, or a study file / study name (found like ``momsearch report`` does).
        trial: the trial number; None exports the best trial (multi-objective: the Pareto trial best on
            the first objective).
        out: destination directory; it must not exist or be empty, or (with ``force``) be a previous export.
        pareto: export the K best Pareto-optimal trials instead (single objective: the K best trials),
            each into ``out/trial_<number>/``.
        storage: Optuna storage URL when ``study`` is a file or name (else ``MOMSEARCH_STORAGE``).
        runs: the study's output directory (default ``runs/<study name>/``); its ``artifacts/`` holds the weights
            when the directory recorded in the study does not exist (a study copied or moved elsewhere).
        force: replace ``out`` if it is a previous export (it holds the marker file and only export files).
        format: ``py``, or ``pt2`` to also write ``cell.pt2`` (``torch.export``, fixed sequence length).
        artifacts: the weights store (default: the one the study recorded, else ``<runs>/artifacts``).

    Returns:
        The directories written (one, or one per Pareto trial).

    Raises:
        StudyError: unknown study, no completed trial, unknown trial number.
        ExportError: a trial without stored weights, a corrupt or replaced weights file, a destination that
            may not be replaced, a failed round-trip check.
    """
    if format not in FORMATS:
        raise ExportError(f"format={format!r}: must be one of {', '.join(FORMATS)}")
    if pareto is not None and (trial is not None or pareto < 1):
        raise ExportError(f"pareto={pareto}: must be >= 1 and not combined with trial={trial}")
    out = Path(out)
    check_destination(out, force)  # before the study is opened: nothing is touched for a refused destination
    if isinstance(study, optuna.Study):  # e.g. a copied study: its recorded directory, else <runs>/artifacts
        store_dir = Path(artifacts) if artifacts else artifact_dir(
            study, Path(runs) if runs else default_out(study.study_name))
        protected = []
    else:
        study, runs_dir, url = open_study(str(study), storage, runs, with_url=True)
        store_dir = Path(artifacts) if artifacts else artifact_dir(study, runs_dir, url)
        protected = [Path(runs_dir)] + ([Path(url[len("sqlite:///"):])] if url.startswith("sqlite:///") else [])
    check_destination(out, force, protected + [store_dir])
    if not store_dir.is_dir():
        raise ExportError(f"artifacts={str(store_dir)!r}: no such directory (the study's weights store; "
                          "name it with --artifacts)")
    store = optuna.artifacts.FileSystemArtifactStore(str(store_dir))
    records = Records(store)  # each trial's configuration, weights id and checksum
    chosen = _choose(study, trial, pareto, records)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise ExportError(f"out={str(out)!r}: cannot write next to it ({exc.strerror or exc})") from None
    try:
        dirs = [tmp] if pareto is None else [tmp / f"trial_{t.number}" for t in chosen]
        io = study.user_attrs.get("io")  # one storage read for every chosen trial
        checks = [_write(study, t, io, records, d, store, store_dir, format)
                  for t, d in zip(chosen, dirs, strict=True)]
        problems, refused = verify_many(checks)
        if not refused:
            raise ExportError("round-trip check: momsearch could still be imported in the isolated interpreter")
        for t, problem in zip(chosen, problems, strict=True):
            if problem is not None:
                raise ExportError(f"round-trip check of trial {t.number} failed: {problem}")
        (tmp / MARKER).write_text(json.dumps({"study": study.study_name, "trials": [t.number for t in chosen]}))
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out] if pareto is None else [out / d.name for d in dirs]


def check_destination(out: Path, force: bool, protected: Sequence[Path] = ()) -> None:
    """Refuse a destination that an export may not fill or replace (ExportError, one line).

    ``out`` may be missing or an empty directory. With ``force`` it may also be a previous export: a
    directory holding :data:`MARKER` and only what an export writes. It may never be, or contain, the
    working directory or any of ``protected`` (the study's output directory, database and weights store).
    """
    shown = str(out)
    here = Path.cwd().resolve()
    target = out.resolve()
    if target == here or target in here.parents:
        raise ExportError(f"out={shown!r}: is or contains the working directory; choose a new directory")
    for path in protected:
        path = Path(path).resolve()
        if target == path or target in path.parents:
            raise ExportError(f"out={shown!r}: is or contains the study's files ({path}); choose a new directory")
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise ExportError(f"out={shown!r}: exists and is not a directory; choose a new directory")
    entries = list(out.iterdir())
    if not entries:
        return
    if not force:
        raise ExportError(f"out={shown!r}: exists and is not empty (pass --force to replace a previous export)")
    if not (out / MARKER).is_file():
        raise ExportError(f"out={shown!r}: --force replaces only a previous momsearch export, and this directory "
                          f"has no {MARKER} marker; choose a new directory or remove it yourself")
    for entry in entries:
        if entry.name in EXPORT_FILES and entry.is_file() and not entry.is_symlink():
            continue
        if TRIAL_DIR.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink() and all(
                f.name in EXPORT_FILES and f.is_file() and not f.is_symlink() for f in entry.iterdir()):
            continue
        raise ExportError(f"out={shown!r}: holds {entry.name!r}, which is not part of an export; --force "
                          "replaces only a previous export: choose a new directory or remove it yourself")


def _choose(study: optuna.Study, number: int | None, pareto: int | None,
            records: Records) -> list[optuna.trial.FrozenTrial]:
    """The trials to export; StudyError/ExportError for a missing or unusable trial."""
    trials = study.get_trials(deepcopy=False)
    completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if number is not None:
        found = next((t for t in trials if t.number == number), None)
        if found is None:
            raise StudyError(f"trial={number}: study {study.study_name!r} has no such trial "
                             f"(trials 0..{len(trials) - 1})" if trials else f"trial={number}: the study has no trials")
        if found.state != optuna.trial.TrialState.COMPLETE or records.weights(found) is None:
            reason = found.user_attrs.get("status_reason")
            raise ExportError(f"trial {number} is {found.state.name}" + (f" ({reason})" if reason else "")
                              + f": it has no stored weights; completed trials: {_numbers(completed)}")
        return [found]
    if not completed:
        raise StudyError(f"study {study.study_name!r} has no completed trial to export")
    if len(study.directions) == 1:
        ranked = sorted(completed, key=lambda t: t.values[0],
                        reverse=study.directions[0] == optuna.study.StudyDirection.MAXIMIZE)
        return ranked[:pareto] if pareto else ranked[:1]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    front = sorted(best_trials(study), key=lambda t: (-t.values[0] if maximize else t.values[0], t.number))
    return front[:pareto] if pareto else front[:1]


def _numbers(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    return ", ".join(str(t.number) for t in trials) or "none"


def _write(study: optuna.Study, trial: optuna.trial.FrozenTrial, io: dict | None, records: Records,
           directory: Path, store, store_dir: Path, format: str):
    """Download the trial's weights, rebuild the searched model, write the export; returns a check triple.

    ``io`` is the study's recorded task input/output (None if the study has none); ``records`` reads the
    trial's configuration and weights id.
    """
    attrs, config, weights_id = trial.user_attrs, records.config(trial), records.weights(trial)
    if config is None and "record_artifact" in attrs:
        raise ExportError(f"trial {trial.number}: cannot read its record {attrs['record_artifact']!r} in the "
                          "study's artifact store; name the study's output directory (--runs) or its store "
                          "(--artifacts)")
    if config is None or io is None:
        raise ExportError(f"trial {trial.number}: no recorded configuration/io (a study from an older momsearch?)")
    directory.mkdir(parents=True, exist_ok=True)
    state_dict = load_weights(trial, weights_id, records.checksum(trial), store, store_dir,
                              directory / "weights.pt")
    model = build(config, io["input_size"], io["output_size"], input=io["input"], target=io["target"])
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"trial {trial.number}: stored weights do not fit its configuration ({first})") from None
    info = {"study": study.study_name, "trial": trial.number, "values": list(trial.values),
            "objectives": study.metric_names, "seed": attrs.get("seed"), "metrics": dict(attrs)}
    write_export(directory, config, io, state_dict, info)
    if format == "pt2":
        export_pt2(directory, model, io)
    return directory, model, io


def sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file (what a trial records as ``weights_sha256`` next to its artifact id)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights(trial: optuna.trial.FrozenTrial, artifact_id: str, expected_sha256: str | None, store,
                 store_dir: Path, path: Path) -> dict:
    """Copy a trial's weights artifact to ``path``, check its SHA-256, and load it with ``weights_only=True``.

    Any failure is one ExportError naming the trial and the artifact file; a file that does not match its
    checksum, or that torch refuses or cannot read, is "corrupt or was replaced" (never loaded unsafely).
    """
    where = f"trial {trial.number}: weights artifact {str(Path(store_dir) / str(artifact_id))!r}"
    try:
        optuna.artifacts.download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
    except Exception as exc:  # noqa: BLE001 - the store raises its own errors for a missing or unreadable artifact
        reason = "missing" if isinstance(exc, (FileNotFoundError, optuna.artifacts.exceptions.ArtifactNotFound)) \
            else "unreadable"
        raise ExportError(f"{where}: {reason} (is --artifacts the study's weights store?)") from None
    if expected_sha256 is not None and sha256(path) != expected_sha256:
        raise ExportError(f"{where}: checksum mismatch: {CORRUPT}")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - truncated, empty, not a torch file, or a refused pickle payload
        raise ExportError(f"{where}: cannot be loaded as weights: {CORRUPT}") from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ExportError(f"{where}: does not hold a dict of tensors: {CORRUPT}")
    return state_dict


def _move_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` (an existing ``out`` is moved aside first and removed afterwards)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
