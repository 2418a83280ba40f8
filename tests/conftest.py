"""Shared fixtures: run the search CLI in a clean environment, and a tiny search spec."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]

# A search that trains in seconds on 2 CPU cores: synthetic data, a small convnet, two steps an
# epoch, a 5-step MI critic. Tests add their own keys with ``--set`` or by appending YAML.
TINY_SPEC = """\
experiment: tiny
dataset: {name: synthetic, subset: 256, test_subset: 128}
model: {width: 8, proj_dim: 16, proj_hidden: 32}
views: {strength: {uniform: [0.2, 1.0]}}
negatives: {lower: {choice: [0.0, 0.05]}, upper: {choice: [0.5, 1.0]}}
trainer: {epochs: 2, batch_size: 32, max_steps: 2}
evaluation: {knn_k: 10, linear_epochs: 1, monitor_train: 256, monitor_val: 128}
mi: {steps: 5, batch_size: 32, pairs: 128, label_steps: 5, label_batch_size: 32}
search: {num_samples: 4, max_concurrent: 2, scheduler: none}
"""


def cli_env() -> dict[str, str]:
    """The environment of a user who set nothing: no inherited Ray address or MLflow store."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_AUTH_MODE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def search_cmd(spec: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "search.run", str(spec), *args]


def run_search(cwd: Path, spec: Path, *args: str, timeout: float = 420, env: dict | None = None):
    return subprocess.run(search_cmd(spec, *args), check=False, cwd=cwd, env=env or cli_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def search_main(monkeypatch, capsys):
    """``python -m search.run`` in this process, run from ``cwd`` with the environment of a user who
    set nothing (``cli_env``): returns (exit code, stderr). For refusals that need no real process;
    a few cases per refusal kind still run the command itself (``run_search``) to prove its exit 2."""
    from search import run

    def call(cwd: Path, spec: Path, *args: str) -> tuple[int, str]:
        for key in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_AUTH_MODE"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = run.main([str(spec), *args])
        return code, capsys.readouterr().err

    return call


def kill_group(pgid: int) -> None:
    """Kill what a test started in its own session (a SIGKILLed driver leaves Ray agents behind)."""
    import signal

    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_runs(store: Path | str, experiment: str, deleted: bool = False):
    """``(client, parents, children)`` of an experiment in a store: a SQLite file's path or any tracking URI;
    ``deleted`` includes the soft-deleted runs. The tests' one reader of MLflow runs."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}" if isinstance(store, Path) else store)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL if deleted else ViewType.ACTIVE_ONLY,
                              max_results=1000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return client, parents, children


@pytest.fixture(scope="session")
def pg_mlflow_server(tmp_path_factory):
    """A PostgreSQL 15 and an ``mlflow server`` on it with proxied artifacts (``tests/pg_mlflow.py``),
    shared by the tests that need a team's tracking server; a machine without PostgreSQL fails here."""
    from tests.pg_mlflow import postgres_mlflow

    with postgres_mlflow(tmp_path_factory.mktemp("pg_mlflow"), durable=False) as (pg, server):
        yield SimpleNamespace(pg=pg, server=server)


def tiny_train_config(**trainer):
    """One training that runs a step in milliseconds on the CPU: 128 synthetic 16 px images, a
    width-8 ConvNet; ``trainer`` keys override the trainer section."""
    from trainers.config import TrainConfig

    return TrainConfig.model_validate({
        "dataset": {"name": "synthetic", "subset": 128, "test_subset": 64, "image_size": 16},
        "model": {"width": 8, "proj_dim": 8, "proj_hidden": 16},
        "trainer": {"epochs": 2, "batch_size": 32, "seed": 1, "device": "cpu", **trainer},
        "evaluation": {"knn_every_epoch": False, "linear_epochs": 1},
    })


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def probe_dashboard(url: str) -> dict[str, object]:
    """GET /api/version with and without Ray's token; returns the two HTTP statuses."""
    import urllib.error
    import urllib.request

    from search.cluster import read_token

    def status(headers: dict) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/api/version", headers=headers), timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return -1

    return {"url": url, "with_token": status({"Authorization": f"Bearer {read_token()}"}), "without_token": status({})}


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory):
    """One 4-trial search (2 at a time) shared by the search and tracking tests.

    While it runs, the Ray dashboard it announces is probed with and without the token.
    """
    import re
    import threading
    import time

    cwd = tmp_path_factory.mktemp("tiny_search")
    spec = cwd / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    proc = subprocess.Popen(search_cmd(spec), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    dashboard: dict = {}
    listeners: list = []
    deadline = time.time() + 420
    while proc.poll() is None and time.time() < deadline:
        found = [m for line in list(lines) if (m := re.search(r"Ray dashboard: (http://\S+)", line))]
        if found and not dashboard:
            dashboard = probe_dashboard(found[0].group(1))
        if not listeners and any("epoch 1/" in line for line in list(lines)):  # trial workers are up
            from tests.listeners import listeners_of_session

            listeners = listeners_of_session(proc.pid)
        time.sleep(0.5)
    proc.kill() if proc.poll() is None else None
    proc.wait()
    kill_group(proc.pid)
    reader.join(10)
    return SimpleNamespace(cwd=cwd, spec=spec, rc=proc.returncode, out="".join(lines), dashboard=dashboard,
                           listeners=listeners, db=cwd / "runs" / "mlflow.db", epochs=2, num_samples=4)
