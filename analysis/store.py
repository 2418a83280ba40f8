"""Where a search's results live and what they are called: the facts the search (which writes)
and the report (which reads) must agree on, defined once.

- ``runs/`` (``output.root``) holds ``mlflow.db`` (the SQLite store), ``mlartifacts/`` and one
  folder per experiment with ``search.json`` (which parent run is this experiment's search;
  ``analysis/state.py`` reads and writes it) and ``report/``.
- An experiment name becomes a folder name and an MLflow experiment: letters, digits, ``_``,
  ``-``, ``.``, at most 100 characters, not ``.`` or ``..``.
- The MLflow names: every tag the project writes or reads (tying trials to their search and
  replicates to their point, the status of a trial, the front page's verdict). The metric names
  are the trainer's (``trainers/results.py``); the lists the search logs are re-exported here.

Imports nothing heavy, so spec validation can use it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

# The metric names live with the trainer that emits them; re-exported for the store's readers.
from trainers.results import (  # noqa: F401
    EPOCH_METRICS,
    FINAL_METRICS,
    FLOOR_METRICS,
    LINEAR_ACC,
    ONCE_METRICS,
    VAL_LINEAR_ACC,
)

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
TAG_VERDICT_LINE = "viewsearch.verdict_line"  # the verdict's one-line headline (parent run)
TAG_BEST_POINT = "viewsearch.best_point"  # the best point's name (parent run)
TAG_ORPHAN = "viewsearch.orphan"  # a run holding results of a trial Tune does not know (kept, never deleted)
TAG_RESUMED_FROM = "viewsearch.resumed_from_epoch"  # the epoch a trial last resumed from
TAG_WRITE_PROBE = "viewsearch.write_probe"  # set and removed at start: proves the store takes writes
TAG_TRIAL_NAME = "ray.trial_name"
TAG_STATUS = "ray.status"  # completed | stopped_early | diverged | interrupted | error (search/summary.py)
TAG_ERROR = "ray.error"  # the failed trial's traceback
TAG_RETRIES = "ray.retries"  # how often Tune restarted the trial from its checkpoint
TAG_RAY_ADDRESS = "ray.address"  # the parent run: the cluster the search ran on
TAG_RAY_STARTED_LOCAL = "ray.started_local"  # the parent run: "true" when the search started its own Ray
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"  # the experiment's layout in the MLflow UI
TAG_SHARED_VIEW_PREFIX = "mlflow.sharedViewState."  # an experiment's saved chart views

SELECT_METRIC = VAL_LINEAR_ACC  # the best trial / point: validation, never test
REPORT_METRIC = LINEAR_ACC  # what the InfoMin fit reads: the test split, which selects nothing


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


REPORT_DIR = "report"  # the report's folder under the experiment's, and its artifact path on the parent run
REPORT_HTML = f"{REPORT_DIR}/report.html"  # where the parent run holds the page (artifact path)


def report_dir(root: Path, experiment: str) -> Path:
    """``summary.json``, ``report.md``, ``report.html`` and the figures (``analysis/report.py``)."""
    return root / experiment / REPORT_DIR


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
