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

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from analysis.store import (
    TAG_ORPHAN,
    TAG_PARENT,
    TAG_ROLE,
    TAG_SEARCH_ID,
    TAG_TRIAL_ID,
    shown,
)
from search.mlflow_store import EXPERIMENT_KIND, Store, prepare_store


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
    """Two decimals from 0.1 up, two significant digits below (0.025 stays 0.025), then 1.0e-04."""
    if isinstance(value, float):
        if value == 0 or abs(value) >= 0.1:
            return f"{value:.2f}"
        return f"{value:.2g}" if abs(value) >= 0.01 else f"{value:.1e}"
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
