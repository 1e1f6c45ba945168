"""Export trials of a study as standalone modules: read the study, trial and weights artifact, write, verify.

Everything is written into a temporary directory next to the destination, checked in an isolated
interpreter (:mod:`momsearch.standalone`), and only then moved into place: a failed export leaves the
destination as it was.
"""

from __future__ import annotations

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


def export(study: optuna.Study | str, trial: int | None = None, out: str | Path = "best", *,
           pareto: int | None = None, storage: str | None = None, runs: str | Path | None = None,
           force: bool = False, format: str = "py") -> list[Path]:
    """Export a trial (default: the best one) as ``cell.py`` + ``weights.pt`` + ``spec.yaml`` in ``out``.

    Args:
        study: an ``optuna.Study``, or a study file / study name (found like ``momsearch report`` does).
        trial: the trial number; None exports the best trial (multi-objective: the Pareto trial best on
            the first objective).
        out: destination directory; it must not exist or be empty unless ``force``.
        pareto: export the K best Pareto-optimal trials instead (single objective: the K best trials),
            each into ``out/trial_<number>/``.
        storage: Optuna storage URL when ``study`` is a file or name.
        runs: the study's output directory (default ``runs/<study name>/``); its ``artifacts/`` holds the weights
            when the directory recorded in the study does not exist (a study copied or moved elsewhere).
        force: replace a non-empty ``out``.
        format: ``py``, or ``pt2`` to also write ``cell.pt2`` (``torch.export``, fixed sequence length).

    Returns:
        The directories written (one, or one per Pareto trial).

    Raises:
        StudyError: unknown study, no completed trial, unknown trial number.
        ExportError: a trial without stored weights, a non-empty destination, a failed round-trip check.
    """
    if format not in FORMATS:
        raise ExportError(f"format={format!r}: must be one of {', '.join(FORMATS)}")
    if pareto is not None and (trial is not None or pareto < 1):
        raise ExportError(f"pareto={pareto}: must be >= 1 and not combined with trial={trial}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ExportError(f"out={str(out)!r}: exists and is not empty (pass --force to replace it)")
    if isinstance(study, optuna.Study):  # e.g. a copied study: its recorded directory, else <runs>/artifacts
        artifacts = artifact_dir(study, Path(runs) if runs else default_out(study.study_name))
    else:
        study, runs_dir = open_study(str(study), storage, runs)
        artifacts = artifact_dir(study, runs_dir)
    store = optuna.artifacts.FileSystemArtifactStore(str(artifacts))
    records = Records(store)  # each trial's configuration and weights id
    chosen = _choose(study, trial, pareto, records)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        dirs = [tmp] if pareto is None else [tmp / f"trial_{t.number}" for t in chosen]
        io = study.user_attrs.get("io")  # one storage read for every chosen trial
        checks = [_write(study, t, io, records, d, store, format) for t, d in zip(chosen, dirs, strict=True)]
        problems, refused = verify_many(checks)
        if not refused:
            raise ExportError("round-trip check: momsearch could still be imported in the isolated interpreter")
        for t, problem in zip(chosen, problems, strict=True):
            if problem is not None:
                raise ExportError(f"round-trip check of trial {t.number} failed: {problem}")
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out] if pareto is None else [out / d.name for d in dirs]


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
           directory: Path, store, format: str):
    """Download the trial's weights, rebuild the searched model, write the export; returns a check triple.

    ``io`` is the study's recorded task input/output (None if the study has none); ``records`` reads the
    trial's configuration and weights id.
    """
    attrs, config, weights_id = trial.user_attrs, records.config(trial), records.weights(trial)
    if config is None and "record_artifact" in attrs:
        raise ExportError(f"trial {trial.number}: cannot read its record {attrs['record_artifact']!r} in the "
                          "study's artifact store; name the study's output directory (--runs)")
    if config is None or io is None:
        raise ExportError(f"trial {trial.number}: no recorded configuration/io (a study from an older momsearch?)")
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "weights.pt"
    try:
        optuna.artifacts.download_artifact(artifact_store=store, file_path=str(weights),
                                           artifact_id=weights_id)
    except Exception as exc:  # the store raises its own errors for a missing or unreadable artifact
        raise ExportError(f"trial {trial.number}: cannot read its weights artifact "
                          f"{weights_id!r} ({type(exc).__name__}: {exc})") from None
    state_dict = torch.load(weights, map_location="cpu", weights_only=True)
    model = build(config, io["input_size"], io["output_size"], input=io["input"], target=io["target"])
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"trial {trial.number}: stored weights do not fit its configuration ({exc})") from None
    info = {"study": study.study_name, "trial": trial.number, "values": list(trial.values),
            "objectives": study.metric_names, "seed": attrs.get("seed"), "metrics": dict(attrs)}
    write_export(directory, config, io, state_dict, info)
    if format == "pt2":
        export_pt2(directory, model, io)
    return directory, model, io


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
