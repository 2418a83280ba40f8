"""Where a search's results live and what they are called: the facts the search (which writes)
and the report (which reads) must agree on, defined once.

- ``runs/`` (``output.root``) holds ``mlflow.db`` (the SQLite store), ``mlartifacts/`` and one
  folder per experiment with ``search.json`` (which parent run is this experiment's search) and
  ``report/``.
- An experiment name becomes a folder name and an MLflow experiment: letters, digits, ``_``,
  ``-``, ``.``, at most 100 characters, not ``.`` or ``..``.
- The MLflow names: tags that tie trials to their search and replicates to their point, and the
  metrics users' charts and the report read.

Imports nothing heavy, so spec validation can use it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

DEFAULT_ROOT = Path("runs")
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
EXPERIMENT_NAME_RULE = "letters, digits, '_', '-' or '.', at most 100 characters (it names a folder), not '.' or '..'"

TAG_PARENT = "mlflow.parentRunId"
TAG_NOTE = "mlflow.note.content"  # the run's description in the MLflow UI
TAG_ROLE = "viewsearch.role"  # "search" (parent) | "trial" (child)
TAG_SEARCH_ID = "viewsearch.search_id"
TAG_TRIAL_ID = "ray.trial_id"
TAG_POINT = "viewsearch.point"  # replicates of one point of the space share it
TAG_POINT_NAME = "viewsearch.point_name"
TAG_VERDICT = "viewsearch.verdict"

# Per epoch (step = epoch): what a search compares and what shows how a training went.
EPOCH_METRICS = ("train_loss", "val_knn_acc", "ring_lower", "ring_upper", "imgs_per_s", "diverged")
# Once per trial: the final evaluation (validation for selection, test for reporting), the view MI,
# the task information of one view (I(v; y) >= H(y) - CE, next to H(y); analysis/taskinfo.py) and
# the floor: the same probes on the untrained encoder (init_*), measured before the first step.
FLOOR_METRICS = ("init_val_knn_acc", "init_val_linear_acc", "init_knn_acc", "init_linear_acc")
FINAL_METRICS = ("val_knn_acc", "val_linear_acc", "knn_acc", "linear_acc", "mi_nats", "mi_cap_nats",
                 "label_mi_nats", "label_entropy_nats", *FLOOR_METRICS, "diverged")
ONCE_METRICS = ("mi_nats", "mi_cap_nats", "mi_cached", "label_mi_nats", "label_entropy_nats", *FLOOR_METRICS,
                "n_train_images", "n_val_images", "n_test_images")
SELECT_METRIC = "val_linear_acc"  # the best trial / point: validation, never test
REPORT_METRIC = "linear_acc"  # what the InfoMin fit reads: the test split, which selects nothing


UI_HOST, UI_PORT = "127.0.0.1", 5000  # where the printed ``mlflow ui`` command serves a local store


def ui_base(tracking_uri: str, host: str = UI_HOST, port: int = UI_PORT) -> str:
    """The MLflow UI's address for a store: a tracking server serves its own UI; a local store
    (SQLite, a folder) is served by ``mlflow ui`` on ``host:port``."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return f"http://{host}:{port}"


def shown(value: float) -> float:
    """A metric as logged to MLflow: 6 significant digits, so the UI's cells read 0.7817, not the
    float32 artefact 0.78170001506... (every accuracy here is a count over at most 10^5 images)."""
    return float(f"{float(value):.6g}")


def valid_experiment(name: str) -> bool:
    return name not in (".", "..") and bool(EXPERIMENT_NAME.fullmatch(name))


def sqlite_uri(root: Path) -> str:
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def default_tracking_uri(root: Path = DEFAULT_ROOT) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store under ``root`` (an absolute URI)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or sqlite_uri(root)


def state_file(root: Path, experiment: str) -> Path:
    return root / experiment / "search.json"


def lock_file(root: Path, experiment: str) -> Path:
    """Held (``flock``) by the driver of a running search of ``experiment`` (``search/lock.py``)."""
    return root / experiment / "search.lock"


def running_search(root: Path, experiment: str) -> str | None:
    """Who holds ``experiment``'s lock ("PID 123 on host h"), or None when no search of it runs."""
    import fcntl

    try:
        with open(lock_file(root, experiment)) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder = json.loads(handle.read())
                    return f"PID {holder['pid']} on {holder['host']}"
                except (ValueError, KeyError, TypeError):
                    return "holder unknown"
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        pass
    return None


def read_state(root: Path, experiment: str) -> dict | None:
    """The experiment's ``search.json`` (its parent run, store and spec fingerprint), if any."""
    try:
        return json.loads(state_file(root, experiment).read_text())
    except (OSError, ValueError):
        return None


def write_state(path: Path, state: dict) -> None:
    """Replace ``search.json`` atomically: a driver killed mid-write leaves the old one whole."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)
