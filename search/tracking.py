"""MLflow bookkeeping of a search: one experiment per spec, a parent run per search, a child run per trial.

One writer: only the driver process talks to MLflow (through ``search.callback``, a Ray Tune
callback). Trials never open the store; they put their artifacts in their checkpoint and the
driver logs them. SQLite allows one writer at a time, and with several trial processes writing
the same ``mlflow.db`` you get "database is locked" and lost metrics; a tracking server would fix
that but is one more process to start, port to pick, and thing to leave running after a crash.
The driver already receives every result in order, so it is the natural single writer, and it
is also the one place that knows a trial's history across resumes, which is what makes
"one run per trial, never duplicated" possible: a child run is found again by its Ray trial id.

This module imports MLflow but not Ray, so it can be tested without starting a cluster.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.store import (
    TAG_EXPERIMENT_KIND,
    TAG_ORPHAN,
    TAG_PARENT,
    TAG_ROLE,
    TAG_SEARCH_ID,
    TAG_TRIAL_ID,
    TAG_WRITE_PROBE,
    UI_HOST,
    UI_PORT,
    shown,
    sqlite_uri,
)
from search.paths import Paths
from search.spec import Spec

EXPERIMENT_KIND = {TAG_EXPERIMENT_KIND: "custom_model_development"}


@dataclass(frozen=True)
class Store:
    """Where runs go. ``artifact_location`` is set only when we create the experiment's folder."""

    uri: str
    artifact_location: str | None

    @property
    def is_sqlite(self) -> bool:
        return self.uri.startswith("sqlite:")

    def ui_command(self, host: str = UI_HOST, port: int = UI_PORT) -> str:
        if not self.local_store:
            return f"(the tracking server at {self.uri} already serves the UI)"
        root = f" --default-artifact-root {self.artifact_location}" if self.artifact_location else ""
        # the venv's own interpreter: works from any shell, activated or not
        return f"{sys.executable} -m mlflow ui --backend-store-uri {self.uri}{root} --host {host} --port {port}"

    @property
    def local_store(self) -> bool:
        """A store on this disk, which ``mlflow ui`` serves (a tracking server serves its own UI)."""
        return self.is_sqlite or self.uri.startswith("file:") or "://" not in self.uri

    def runs_url(self, experiment_id: str, host: str = UI_HOST, port: int = UI_PORT) -> str:
        """The runs table in the Model-training workflow (MLflow 3 otherwise opens its GenAI page)."""
        base = f"http://{host}:{port}" if self.local_store else self.uri.rstrip("/")
        return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def resolve_store(spec: Spec, paths: Paths) -> Store:
    """``tracking.uri`` > ``MLFLOW_TRACKING_URI`` > SQLite under ``output.root``."""
    uri = spec.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    artifacts = spec.tracking.artifact_root
    if uri is None:
        uri = sqlite_uri(paths.root)
        artifacts = artifacts or str(paths.mlartifacts)
    if artifacts and "://" not in artifacts:
        artifacts = Path(artifacts).expanduser().resolve().as_uri()
    return Store(uri=uri, artifact_location=artifacts)


class StoreUnreachable(Exception):
    """The tracking store cannot be used (it does not answer): fail before Ray starts, in seconds."""


def check_store(store: Store, timeout: float = 5.0) -> None:
    """An HTTP(S) tracking server must answer ``/health``; a SQLite file, if there, must be SQLite."""
    if store.uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{store.uri.rstrip('/')}/health", timeout=timeout):
                return
        except urllib.error.HTTPError:
            return  # it answers (an auth proxy may refuse /health): reachable
        except (OSError, ValueError) as err:
            raise StoreUnreachable(f"tracking.uri {store.uri}: the tracking server does not answer "
                                   f"({getattr(err, 'reason', err)}); start it, or remove tracking.uri to use "
                                   "the SQLite store under runs/") from None
    if store.is_sqlite:
        path = Path(store.uri.removeprefix("sqlite:///"))
        if path.is_file() and path.stat().st_size and path.read_bytes()[:16] != b"SQLite format 3\x00":
            raise StoreUnreachable(f"tracking.uri {store.uri}: {path} is not an SQLite database")


class StoreRefusesWrites(StoreUnreachable):
    """The tracking server answers but will not take the search's writes (permissions, a read-only
    database): found before Ray starts, not after the first trial's first epoch."""


PROBE_TAG = TAG_WRITE_PROBE


def check_writable(store: Store, experiment: str, timeout: float = 10.0) -> None:
    """Make the search's first writes to a tracking server now, where a refusal can still be exit 2.

    The experiment is got, or created (or restored) as the search would create it, and a tag is
    set and deleted on it: real writes to the server's database, leaving nothing the search would
    not leave. Each request is tried once with a short timeout (MLflow's client would retry a 500
    for minutes). Local stores are not probed: creating a SQLite file to test it would create it.
    """
    if not store.uri.startswith(("http://", "https://")):
        return
    import uuid

    exp = _probe(store, "GET", "experiments/get-by-name", timeout, params={"experiment_name": experiment})
    if exp is None:
        tags = [{"key": k, "value": v} for k, v in EXPERIMENT_KIND.items()]
        body = {"name": experiment, "tags": tags, **({"artifact_location": store.artifact_location}
                                                      if store.artifact_location else {})}
        exp_id = _probe(store, "POST", "experiments/create", timeout, json=body)["experiment_id"]
    else:
        exp_id = exp["experiment"]["experiment_id"]
        if exp["experiment"].get("lifecycle_stage") == "deleted":
            _probe(store, "POST", "experiments/restore", timeout, json={"experiment_id": exp_id})
    _probe(store, "POST", "experiments/set-experiment-tag", timeout,
           json={"experiment_id": exp_id, "key": PROBE_TAG, "value": uuid.uuid4().hex})
    _probe(store, "POST", "experiments/delete-experiment-tag", timeout, json={"experiment_id": exp_id, "key": PROBE_TAG})


def _probe(store: Store, method: str, endpoint: str, timeout: float, **kwargs) -> dict | None:
    """One REST call, no retries; ``None`` for a missing resource; a refusal raises, naming the server and why."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    what = "read from" if method == "GET" else "write to"
    try:
        response = http_request(get_default_host_creds(store.uri), f"/api/2.0/mlflow/{endpoint}", method,
                                max_retries=0, timeout=timeout, raise_on_status=False, **kwargs)
    except MlflowException as err:
        raise StoreRefusesWrites(f"tracking.uri {store.uri}: could not {what} the tracking server "
                                 f"({endpoint}): {err.message[:300]}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200:
        return body
    if response.status_code == 404 and body.get("error_code") == "RESOURCE_DOES_NOT_EXIST":
        return None
    # the first line: a database error's own words ("permission denied for table experiments"), not its SQL
    reason = (body.get("message") or response.text or response.reason or "").strip().splitlines()
    raise StoreRefusesWrites(
        f"tracking.uri {store.uri}: the tracking server refuses to {what.split()[0]} ({endpoint} answered "
        f"HTTP {response.status_code}: {(reason[0] if reason else 'no reason given')[:300]}); give this user write "
        "access to it (MLFLOW_TRACKING_USERNAME / _PASSWORD or _TOKEN), or check its database, or remove "
        "tracking.uri to use the SQLite store under runs/")


def prepare_store(store: Store) -> None:
    """Create the folder of a SQLite store (MLflow will not)."""
    if store.is_sqlite:
        Path(store.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def run_name(values: dict[str, Any]) -> str:
    """A short readable name from the searched values: ``s=0.62 ring=[0.01,0.10] lr=0.003``.
    A whole section searched as one value (``negatives: {grid: [{...}, ...]}``) reads as its keys."""
    values = _flat(values)
    parts: list[str] = []
    for key, value in values.items():
        if key in ("negatives.lower", "negatives.upper"):  # the ring, where its first bound comes
            ring = f"ring=[{_short(values.get('negatives.lower', '-'))},{_short(values.get('negatives.upper', '-'))}]"
            if ring not in parts:
                parts.append(ring)
            continue
        section, _, label = key.rpartition(".")
        label = "s" if key == "views.strength" else (section.rsplit(".", 1)[-1] if label == "name" and section else label)
        parts.append(f"{label}={_short(value)}")
    return " ".join(parts)


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat({f"{key}.{k}": v for k, v in value.items()}))
        else:
            out[key] = value
    return out


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value == 0 or abs(value) >= 0.01 else f"{value:.1e}"
    return str(value)


def _chunks(items: list, size: int = 100) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Tracker:
    """The driver's MLflow writer. Holds only plain data so Ray can pickle it with the Tuner."""

    def __init__(self, store: Store):
        self.store = store
        self._client = None

    def __getstate__(self) -> dict:
        return {"store": self.store, "_client": None}

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            prepare_store(self.store)
            self._client = MlflowClient(tracking_uri=self.store.uri)
        return self._client

    # ------------------------------------------------------------------ experiment and parent

    def experiment_id(self, name: str) -> str:
        """Get or create the spec's experiment (restoring it if it was deleted)."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            exp_id = self.client.create_experiment(name, artifact_location=self.store.artifact_location)
        else:
            exp_id = exp.experiment_id
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp_id)
        for key, value in EXPERIMENT_KIND.items():
            self.client.set_experiment_tag(exp_id, key, value)
        return exp_id

    def start_parent(
        self, experiment_id: str, search_id: str, name: str, spec_yaml: str, tags: dict, params: dict | None = None
    ) -> str:
        run = self.client.create_run(
            experiment_id, run_name=name, tags={TAG_ROLE: "search", TAG_SEARCH_ID: search_id, **tags}
        )
        self.client.log_text(run.info.run_id, spec_yaml, "spec.yaml")
        self.log_params(run.info.run_id, params or {})
        return run.info.run_id

    def reopen(self, run_id: str, tags: dict | None = None) -> None:
        """A resumed search continues its parent run (status back to RUNNING)."""
        self.client.update_run(run_id, status="RUNNING")
        for key, value in (tags or {}).items():
            self.client.set_tag(run_id, key, value)

    def run_exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    # ------------------------------------------------------------------ children

    def children(self, experiment_id: str, parent_id: str) -> list:
        return self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent_id}'", max_results=10_000
        )

    def find_child(self, experiment_id: str, parent_id: str, trial_id: str):
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_PARENT}` = '{parent_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'",
            max_results=2,
        )
        return runs[0] if runs else None

    def open_child(
        self, experiment_id: str, parent_id: str, trial_id: str, name: str, params: dict, tags: dict
    ) -> tuple[str, int, set[str]]:
        """The trial's run: found by its Ray trial id (resume) or created with its params.

        Returns (run_id, last epoch already logged, names of metrics already logged) so a resumed
        trial neither duplicates its run nor logs an epoch twice.
        """
        run = self.find_child(experiment_id, parent_id, trial_id)
        if run is not None:
            self.client.update_run(run.info.run_id, status="RUNNING")
            history = self.client.get_metric_history(run.info.run_id, "train_loss")
            last = max((m.step for m in history), default=0)
            return run.info.run_id, last, set(run.data.metrics)
        run = self.client.create_run(
            experiment_id,
            run_name=name,
            tags={TAG_PARENT: parent_id, TAG_TRIAL_ID: trial_id, TAG_ROLE: "trial", **tags},
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id, 0, set()

    def log_params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, "None" if v is None else str(v)[:6000]) for k, v in sorted(params.items())]
        for chunk in _chunks(items):
            self.client.log_batch(run_id, params=chunk)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, shown(v), now, step) for k, v in metrics.items() if _is_number(v)]
        for chunk in _chunks(items, 1000):
            self.client.log_batch(run_id, metrics=chunk)

    def log_artifacts(self, run_id: str, files: list[tuple[str, Path]]) -> None:
        """``[(artifact_dir, local_file)]``; ``""`` is the run's artifact root; missing files are skipped."""
        for artifact_dir, path in files:
            if Path(path).is_file():
                self.client.log_artifact(run_id, str(path), artifact_path=artifact_dir or None)

    def set_tags(self, run_id: str, tags: dict) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value)[:5000])

    def end(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    # ------------------------------------------------------------------ whole-search bookkeeping

    def close_search(self, experiment_id: str, parent_id: str, status: str) -> int:
        """End the parent and any child still RUNNING (a crash or Ctrl-C); returns how many."""
        left = [r for r in self.children(experiment_id, parent_id) if r.info.status == "RUNNING"]
        for run in left:
            self.end(run.info.run_id, "KILLED")
        self.end(parent_id, status)
        return len(left)

    def prune_children(self, experiment_id: str, parent_id: str, trial_ids: set[str]) -> tuple[int, int]:
        """Soft-delete the empty child runs of trials the experiment does not have; returns
        (deleted, kept).

        A driver killed just after starting a trial but before Tune snapshotted it leaves a run
        for a trial that the resumed experiment never knew; the searcher samples a new trial in
        its place, so that run would be a duplicate. A run that holds results is never deleted:
        it is ended and tagged ``viewsearch.orphan`` instead.
        """
        stale = [r for r in self.children(experiment_id, parent_id) if r.data.tags.get(TAG_TRIAL_ID) not in trial_ids]
        deleted = kept = 0
        for run in stale:
            if run.info.status == "RUNNING":
                self.end(run.info.run_id, "KILLED")
            if run.data.metrics:
                self.set_tags(run.info.run_id, {TAG_ORPHAN: "true"})
                kept += 1
            else:
                self.client.delete_run(run.info.run_id)
                deleted += 1
        return deleted, kept

    def delete_search(self, experiment_id: str, parent_id: str) -> int:
        """``--fresh``: soft-delete an old search (parent and children; ``mlflow gc`` purges them)."""
        runs = self.children(experiment_id, parent_id)
        for run in runs:
            self.client.delete_run(run.info.run_id)
        if self.run_exists(parent_id):
            self.client.delete_run(parent_id)
        return len(runs)


def _is_number(value: Any) -> bool:
    """Numbers of any kind (Python, numpy, torch scalars), NaN included; never strings."""
    if value is None or isinstance(value, (str, bytes)):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
