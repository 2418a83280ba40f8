"""Which MLflow store a search writes to, and whether it answers and accepts writes, checked
before anything starts (``search/preflight.py``): the SQLite file under ``runs/`` by default, or
``tracking.uri`` / ``MLFLOW_TRACKING_URI`` (a team's tracking server)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from analysis.store import TAG_EXPERIMENT_KIND, TAG_WRITE_PROBE, UI_HOST, UI_PORT, sqlite_uri
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
        if path.is_file() and path.stat().st_size and _header(path) != b"SQLite format 3\x00":
            raise StoreUnreachable(f"tracking.uri {store.uri}: {path} is not an SQLite database")


def _header(path: Path) -> bytes:
    """The first 16 bytes of a file (an SQLite database's magic string), without reading the rest."""
    with path.open("rb") as f:
        return f.read(16)


class StoreRefusesWrites(StoreUnreachable):
    """The tracking server answers but will not take the search's writes (permissions, a read-only
    database): found before Ray starts, not after the first trial's first epoch."""




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
           json={"experiment_id": exp_id, "key": TAG_WRITE_PROBE, "value": uuid.uuid4().hex})
    _probe(store, "POST", "experiments/delete-experiment-tag", timeout, json={"experiment_id": exp_id, "key": TAG_WRITE_PROBE})


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
