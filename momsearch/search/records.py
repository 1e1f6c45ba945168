"""A trial's long records — its full configuration and per-epoch history — kept out of its user attributes.

User attributes are what every client shows in a table (optuna-dashboard's trials table, ``optuna trials``,
``study.trials_dataframe()``): a trial keeps only short ones there (its scalar metrics, seed, ``rule``,
``status_reason``). The configuration and the history go into one JSON file per trial in the study's artifact
store, beside the weights; the user attribute ``record_artifact`` holds its id::

    {"trial": 3, "config": {"block": "rnn", "block.rnn.rule": "heavy_ball", ...},
     "history": [{"epoch": 1, "accuracy": 0.41, "loss": 1.62, "train_loss": 2.01}, ...],
     "weights_artifact": "0b6f...-...", "weights_sha256": "9f86d0..."}

``weights_artifact`` is the id of the trial's weights, an Optuna artifact of the trial (listed by
``optuna.artifacts.get_all_artifact_meta`` and by optuna-dashboard); null for a trial without weights.
``weights_sha256`` is the SHA-256 of that file, which export checks before loading it.

Any client reads it with ``optuna.artifacts.download_artifact(artifact_store=FileSystemArtifactStore(DIR),
artifact_id=trial.user_attrs["record_artifact"], file_path=...)``. The file is written with the store's own
``write`` and not registered as an Optuna artifact of the trial: a registered artifact is one more
``system_attrs_artifacts:<uuid>`` column per trial in ``study.trials_dataframe()``.

Studies written before records existed hold ``config``, ``history`` and ``weights_artifact`` as user
attributes; :class:`Records` reads either.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound

RECORD_ATTR = "record_artifact"


def write_record(store, trial: optuna.Trial, config: dict[str, Any], history: list[dict],
                 weights: str | None = None, weights_sha256: str | None = None) -> str:
    """Write the trial's record into ``store`` and its id into the ``record_artifact`` user attribute; return
    the id. ``weights`` is the id of the trial's weights artifact (None: no weights, e.g. a pruned trial),
    ``weights_sha256`` the SHA-256 of that file (export checks the file against it)."""
    artifact_id = f"record_{uuid.uuid4().hex}.json"  # no hyphen: a table cell does not wrap it over lines
    body = json.dumps({"trial": trial.number, "config": config, "history": history, "weights_artifact": weights,
                       "weights_sha256": weights_sha256})
    store.write(artifact_id, io.BytesIO(body.encode()))
    trial.set_user_attr(RECORD_ATTR, artifact_id)
    return artifact_id


def store_for(study: optuna.Study, runs: str | Path | None = None):
    """The study's artifact store: the directory recorded at creation, else ``<runs>/artifacts`` (``runs``
    defaults to ``runs/<study name>/``); None when neither exists."""
    from optuna.artifacts import FileSystemArtifactStore

    from .lookup import artifact_dir, default_out

    directory = artifact_dir(study, Path(runs) if runs else default_out(study.study_name))
    return FileSystemArtifactStore(str(directory)) if directory.is_dir() else None


class Records:
    """Reads trials' records (configuration, history) from the artifact store, once per trial.

    Args:
        store: the study's artifact store, or None (then only records kept as user attributes are found).
    """

    def __init__(self, store=None):
        self.store = store
        self._cache: dict[str, dict] = {}

    def _record(self, trial: optuna.trial.FrozenTrial) -> dict:
        artifact_id = trial.user_attrs.get(RECORD_ATTR)
        if artifact_id is None or self.store is None:
            return {k: trial.user_attrs.get(k) for k in ("config", "history", "weights_artifact")}
        if artifact_id not in self._cache:
            try:
                with self.store.open_reader(artifact_id) as reader:
                    self._cache[artifact_id] = json.loads(reader.read())
            except (OSError, ValueError, ArtifactNotFound):  # missing or unreadable: no record found here
                self._cache[artifact_id] = {}
        return self._cache[artifact_id]

    def config(self, trial: optuna.trial.FrozenTrial) -> dict | None:
        """The trial's full configuration (every active value), or None where none was recorded or found."""
        return self._record(trial).get("config")

    def weights(self, trial: optuna.trial.FrozenTrial) -> str | None:
        """The id of the trial's weights artifact, or None (a trial without weights)."""
        return self._record(trial).get("weights_artifact") or trial.user_attrs.get("weights_artifact")

    def checksum(self, trial: optuna.trial.FrozenTrial) -> str | None:
        """The SHA-256 recorded for the trial's weights file, or None (a study from before checksums)."""
        return self._record(trial).get("weights_sha256") or trial.user_attrs.get("weights_sha256")

    def history(self, trial: optuna.trial.FrozenTrial) -> list[dict]:
        """The trial's per-epoch validation metrics (``epoch``, the task metric, ``loss``, ``train_loss``)."""
        return self._record(trial).get("history") or []
